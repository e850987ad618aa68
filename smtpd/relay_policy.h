// Who may relay (smtpd's one relay decision, used at RCPT for non-local recipients and at MAIL
// on submission listeners), as a pure function (tests/unit/smtp_relay_test.cpp). Order: SMTP
// AUTH, then trusted_networks, then a live POP-before-SMTP grant. Invariant: a database error
// is TempFail (451 4.3.0), never Allowed and never a hard Denied.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "shared/ip.h"

namespace rg::smtp {

// The grant lookup's answer (authdb live_grant for the client address).
struct GrantLookup {
  enum class Kind { Found, None, DatabaseError } kind = Kind::None;
  std::string user;  // Found: the grant's user
};

struct RelayDecision {
  enum class Kind { Allowed, Denied, TempFail } kind = Kind::Denied;
  std::string relay_by;  // Allowed: "sasl:u", "trusted" or "grant:u"
};

// `lookup_grant` is called only when neither AUTH nor trusted_networks decided, so no
// database call happens for those clients.
RelayDecision decide_relay(const std::string& auth_user, const std::string& client_ip, const std::vector<Cidr>& trusted,
                           const std::function<GrantLookup()>& lookup_grant);

}  // namespace rg::smtp
