// See timefmt.h. gmtime_r, never localtime: the appliance's logs and headers are in UTC.
#include "shared/timefmt.h"

#include <ctime>

namespace rg::timefmt {
namespace {

std::string format(int64_t t, const char* pattern) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, pattern, &tm);
  return buf;
}

}  // namespace

std::string iso8601(int64_t t) { return format(t, "%Y-%m-%dT%H:%M:%SZ"); }
// RFC 5322 §3.3 date-time; %a and %b are English in the "C" locale the daemons never change.
std::string rfc5322(int64_t t) { return format(t, "%a, %d %b %Y %H:%M:%S +0000"); }

}  // namespace rg::timefmt
