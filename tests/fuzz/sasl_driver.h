// The one exchange every SASL target runs (shared/sasl/mech.h): an input is
//   <flags byte> <response> '\n' <response> '\n' ...
// flags bit 0: the first response is the initial response (RFC 4954 §4) rather than a reply
// to the first challenge; bit 1: NeedSecret is answered with the test secret (else "unknown
// user"). Responses are the decoded bytes (the transport's base64 is the codec target's).
// Invariants: a Step is final or a Challenge/NeedSecret; NeedSecret only from a mechanism
// that needs_legacy_secret(); every call after a final Step is Failure{Protocol}; names and
// reasons are bounded.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"
#include "tests/fuzz/fuzz_util.h"

namespace rg::fuzz {

// Enough to go past the mechanisms' own bound (kMaxDigestResponseLen is the largest).
constexpr size_t kMaxSaslSteps = 8;

inline void check_final_protocol(sasl::Mechanism& m) {
  const sasl::Step again = m.step("x");
  RG_FUZZ_CHECK(std::holds_alternative<sasl::Failure>(again));
  RG_FUZZ_CHECK(std::get<sasl::Failure>(again).kind == sasl::Failure::Kind::Protocol);
}

inline void run_sasl(sasl::Mechanism& m, const uint8_t* data, size_t size, std::string_view secret) {
  if (size == 0) return;
  const bool initial = data[0] & 1;
  const bool known = data[0] & 2;
  const std::vector<std::string_view> responses = split(as_view(data + 1, size - 1), '\n');
  size_t next = 0;
  sasl::Step s = m.start(initial ? std::optional<std::string_view>(responses[next++]) : std::nullopt);
  for (size_t steps = 0; steps < kMaxSaslSteps; ++steps) {
    if (auto* c = std::get_if<sasl::Challenge>(&s)) {
      RG_FUZZ_CHECK(c->data.size() <= 8192);
      if (next >= responses.size()) return;  // the client went away mid-exchange
      s = m.step(responses[next++]);
    } else if (auto* n = std::get_if<sasl::NeedSecret>(&s)) {
      RG_FUZZ_CHECK(m.needs_legacy_secret());
      RG_FUZZ_CHECK(n->authcid.size() <= sasl::detail::kMaxIdentityLen);
      s = m.provide_secret(known ? std::optional<std::string_view>(secret) : std::nullopt);
    } else if (auto* v = std::get_if<sasl::VerifyPassword>(&s)) {
      RG_FUZZ_CHECK(m.plaintext());
      RG_FUZZ_CHECK(v->authcid.size() <= sasl::detail::kMaxIdentityLen);
      RG_FUZZ_CHECK(v->authzid.size() <= sasl::detail::kMaxIdentityLen);
      RG_FUZZ_CHECK(v->password.size() <= sasl::detail::kMaxPasswordLen);
      check_final_protocol(m);
      return;
    } else if (auto* ok = std::get_if<sasl::Success>(&s)) {
      RG_FUZZ_CHECK(!m.plaintext());
      RG_FUZZ_CHECK(known);  // never a success without the secret
      RG_FUZZ_CHECK(ok->authcid.size() <= sasl::detail::kMaxIdentityLen);
      check_final_protocol(m);
      return;
    } else {
      RG_FUZZ_CHECK(std::get<sasl::Failure>(s).reason.size() <= 256);
      check_final_protocol(m);
      return;
    }
  }
}

}  // namespace rg::fuzz
