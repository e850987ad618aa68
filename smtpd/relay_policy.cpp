// See relay_policy.h.
#include "smtpd/relay_policy.h"

namespace rg::smtp {

RelayDecision decide_relay(const std::string& auth_user, const std::string& client_ip, const std::vector<Cidr>& trusted,
                           const std::function<GrantLookup()>& lookup_grant) {
  using K = RelayDecision::Kind;
  if (!auth_user.empty()) return {K::Allowed, "sasl:" + auth_user};
  for (const auto& net : trusted)
    if (cidr_contains(net, client_ip)) return {K::Allowed, "trusted"};
  const GrantLookup g = lookup_grant();
  switch (g.kind) {
    case GrantLookup::Kind::Found: return {K::Allowed, "grant:" + g.user};
    case GrantLookup::Kind::DatabaseError: return {K::TempFail, {}};
    case GrantLookup::Kind::None: break;
  }
  return {K::Denied, {}};
}

}  // namespace rg::smtp
