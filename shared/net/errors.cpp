// The "rg.net" error category: messages for rg::net::errc.
// Invariant: values never change meaning (they may be logged and compared across versions).
#include "shared/net/errors.h"

#include <string>

namespace rg::net {
namespace {

class NetCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "rg.net"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::timeout: return "operation timed out";
      case errc::line_too_long: return "line too long";
      case errc::too_slow: return "data rate too low";
      case errc::bad_proxy_header: return "invalid PROXY protocol header";
    }
    return "unknown rg.net error";
  }
};

}  // namespace

const boost::system::error_category& net_category() noexcept {
  static const NetCategory category;
  return category;
}

}  // namespace rg::net
