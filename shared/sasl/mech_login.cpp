// SASL LOGIN server mechanism: challenges "Username:" then "Password:" -> VerifyPassword; an
// initial response is the username. Empty username, NULs, over-limit fields are Malformed.
// draft-murchison-sasl-login-00 §2, RFC 4954 §4 (initial response).
#include "shared/sasl/mech.h"

namespace rg::sasl::detail {
namespace {

class Login final : public Mechanism {
 public:
  std::string_view name() const override { return "LOGIN"; }
  bool plaintext() const override { return true; }
  bool needs_legacy_secret() const override { return false; }

  Step start(std::optional<std::string_view> initial_response) override {
    if (state_ != State::Initial) return finish_protocol();
    if (!initial_response) {
      state_ = State::AwaitUser;
      return Challenge{"Username:"};
    }
    return take_user(*initial_response);
  }

  Step step(std::string_view response) override {
    if (state_ == State::AwaitUser) return take_user(response);
    if (state_ != State::AwaitPassword) return finish_protocol();
    state_ = State::Done;
    if (response.size() > kMaxPasswordLen || response.find('\0') != response.npos)
      return Failure{Failure::Kind::Malformed, "LOGIN: bad password field"};
    return VerifyPassword{"", std::move(user_), std::string(response)};
  }

  Step provide_secret(std::optional<std::string_view>) override { return finish_protocol(); }

 private:
  enum class State { Initial, AwaitUser, AwaitPassword, Done };

  Step finish_protocol() {
    state_ = State::Done;
    return Failure{Failure::Kind::Protocol, "LOGIN: unexpected call"};
  }

  Step take_user(std::string_view user) {
    if (user.empty() || user.size() > kMaxIdentityLen || user.find('\0') != user.npos) {
      state_ = State::Done;
      return Failure{Failure::Kind::Malformed, "LOGIN: bad username"};
    }
    user_ = user;
    state_ = State::AwaitPassword;
    return Challenge{"Password:"};
  }

  State state_ = State::Initial;
  std::string user_;
};

}  // namespace

std::unique_ptr<Mechanism> make_login() { return std::make_unique<Login>(); }

}  // namespace rg::sasl::detail
