// smtpd/relay_policy: who may relay, one row per outcome, in today's order (SMTP AUTH, then
// trusted_networks, then a live grant), and the grant lookup is made only when needed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtpd/relay_policy.h"

namespace {

using rg::smtp::decide_relay;
using rg::smtp::GrantLookup;
using rg::smtp::RelayDecision;
using K = RelayDecision::Kind;
using G = GrantLookup::Kind;

std::vector<rg::Cidr> nets(std::initializer_list<const char*> texts) {
  std::vector<rg::Cidr> out;
  for (const char* t : texts) out.push_back(*rg::parse_cidr(t));
  return out;
}

TEST(SmtpRelay, Decision) {
  struct {
    const char* name;
    const char* auth_user;
    const char* ip;
    std::vector<rg::Cidr> trusted;
    GrantLookup grant;
    K kind;
    const char* relay_by;
    int lookups;  // database calls made
  } rows[] = {
      {"sasl", "alice", "198.51.100.1", {}, {G::Found, "carol"}, K::Allowed, "sasl:alice", 0},
      {"sasl-before-trusted", "alice", "10.1.2.3", nets({"10.0.0.0/8"}), {G::None, ""}, K::Allowed, "sasl:alice", 0},
      {"sasl-despite-db-error", "alice", "198.51.100.1", {}, {G::DatabaseError, ""}, K::Allowed, "sasl:alice", 0},
      {"trusted", "", "10.1.2.3", nets({"10.0.0.0/8"}), {G::DatabaseError, ""}, K::Allowed, "trusted", 0},
      {"trusted-second-net", "", "2001:db8::5", nets({"10.0.0.0/8", "2001:db8::/32"}), {G::None, ""}, K::Allowed,
       "trusted", 0},
      {"trusted-host-prefix", "", "192.0.2.1", nets({"192.0.2.1/32"}), {G::None, ""}, K::Allowed, "trusted", 0},
      {"trusted-before-grant", "", "10.1.2.3", nets({"10.0.0.0/8"}), {G::Found, "carol"}, K::Allowed, "trusted", 0},
      {"grant", "", "198.51.100.1", nets({"10.0.0.0/8"}), {G::Found, "carol"}, K::Allowed, "grant:carol", 1},
      {"outside-trusted-by-one", "", "192.0.2.2", nets({"192.0.2.1/32"}), {G::None, ""}, K::Denied, "", 1},
      {"denied", "", "198.51.100.1", {}, {G::None, ""}, K::Denied, "", 1},
      {"db-error", "", "198.51.100.1", nets({"10.0.0.0/8"}), {G::DatabaseError, ""}, K::TempFail, "", 1},
  };
  for (const auto& r : rows) {
    int lookups = 0;
    const RelayDecision d = decide_relay(r.auth_user, r.ip, r.trusted, [&] {
      ++lookups;
      return r.grant;
    });
    EXPECT_EQ(d.kind, r.kind) << r.name;
    EXPECT_EQ(d.relay_by, r.relay_by) << r.name;
    EXPECT_EQ(lookups, r.lookups) << r.name;
  }
}

}  // namespace
