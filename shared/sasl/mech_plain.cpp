// SASL PLAIN server mechanism: one message "[authzid] NUL authcid NUL passwd" -> VerifyPassword.
// Exactly two NULs, authcid and passwd non-empty and within limits; authzid policy is the caller's.
// RFC 4616 §2 (message), §3 (no judgement of authzid here), RFC 4954 §4 (initial response).
#include "shared/sasl/mech.h"

namespace rg::sasl::detail {
namespace {

class Plain final : public Mechanism {
 public:
  std::string_view name() const override { return "PLAIN"; }
  bool plaintext() const override { return true; }
  bool needs_legacy_secret() const override { return false; }

  Step start(std::optional<std::string_view> initial_response) override {
    if (state_ != State::Initial) return finish_protocol();
    if (!initial_response) {
      state_ = State::AwaitMessage;
      return Challenge{""};  // RFC 4616 §2: empty challenge, client sends the message
    }
    return parse(*initial_response);
  }

  Step step(std::string_view response) override {
    if (state_ != State::AwaitMessage) return finish_protocol();
    return parse(response);
  }

  Step provide_secret(std::optional<std::string_view>) override { return finish_protocol(); }

 private:
  enum class State { Initial, AwaitMessage, Done };

  Step finish_protocol() {
    state_ = State::Done;
    return Failure{Failure::Kind::Protocol, "PLAIN: unexpected call"};
  }

  Step parse(std::string_view msg) {
    state_ = State::Done;
    const auto nul1 = msg.find('\0');
    const auto nul2 = nul1 == msg.npos ? msg.npos : msg.find('\0', nul1 + 1);
    if (nul2 == msg.npos || msg.find('\0', nul2 + 1) != msg.npos)
      return Failure{Failure::Kind::Malformed, "PLAIN: need exactly two NULs"};
    const auto authzid = msg.substr(0, nul1);
    const auto authcid = msg.substr(nul1 + 1, nul2 - nul1 - 1);
    const auto passwd = msg.substr(nul2 + 1);
    if (authcid.empty() || passwd.empty()) return Failure{Failure::Kind::Malformed, "PLAIN: empty authcid or password"};
    if (authzid.size() > kMaxIdentityLen || authcid.size() > kMaxIdentityLen || passwd.size() > kMaxPasswordLen)
      return Failure{Failure::Kind::Malformed, "PLAIN: field too long"};
    return VerifyPassword{std::string(authzid), std::string(authcid), std::string(passwd)};
  }

  State state_ = State::Initial;
};

}  // namespace

std::unique_ptr<Mechanism> make_plain() { return std::make_unique<Plain>(); }

}  // namespace rg::sasl::detail
