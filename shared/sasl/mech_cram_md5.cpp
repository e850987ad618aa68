// SASL CRAM-MD5 server mechanism: fresh msg-id challenge, response "user SP hex(HMAC-MD5(secret,
// challenge))" -> NeedSecret -> constant-time compare. No initial response; unknown users cost the
// same HMAC against a dummy secret; a CRAM-MD5 context imported from Dovecot (codec.h) works as
// the secret itself. RFC 2195 §2 (challenge, response), RFC 2104 (HMAC).
#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"

namespace rg::sasl::detail {
namespace {

constexpr std::size_t kDigestHexLen = 32;  // RFC 2195 §2: 16 octets as lowercase hex
constexpr std::string_view kDummySecret = "rg-cram-md5-no-such-user-secret";

bool is_hex(std::string_view s) {
  for (const char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

class CramMd5 final : public Mechanism {
 public:
  CramMd5(const Context& ctx, std::optional<std::string> fixed_challenge)
      : hostname_(ctx.hostname), fixed_challenge_(std::move(fixed_challenge)) {}

  std::string_view name() const override { return "CRAM-MD5"; }
  bool plaintext() const override { return false; }
  bool needs_legacy_secret() const override { return true; }

  Step start(std::optional<std::string_view> initial_response) override {
    if (state_ != State::Initial || initial_response) return finish_protocol();
    challenge_ = fixed_challenge_ ? *fixed_challenge_ : make_msgid_challenge(hostname_);
    state_ = State::AwaitResponse;
    return Challenge{challenge_};
  }

  Step step(std::string_view response) override {
    if (state_ != State::AwaitResponse) return finish_protocol();
    state_ = State::Done;
    const auto sp = response.rfind(' ');
    if (sp == response.npos || sp == 0 || sp > kMaxIdentityLen)
      return Failure{Failure::Kind::Malformed, "CRAM-MD5: expected 'user digest'"};
    const auto user = response.substr(0, sp);
    const auto digest = response.substr(sp + 1);
    if (digest.size() != kDigestHexLen || !is_hex(digest) || user.find('\0') != user.npos)
      return Failure{Failure::Kind::Malformed, "CRAM-MD5: bad digest"};
    user_ = user;
    digest_ = digest;
    state_ = State::AwaitSecret;
    return NeedSecret{user_};
  }

  Step provide_secret(std::optional<std::string_view> secret) override {
    if (state_ != State::AwaitSecret) return finish_protocol();
    state_ = State::Done;
    // A secret imported from Dovecot may be the key's HMAC context rather than the password.
    const auto context = secret ? cram_md5_context(*secret) : std::nullopt;
    const std::string expected = hex_lower(context ? hmac_md5_from_context(*context, challenge_)
                                                   : hmac_md5(secret.value_or(kDummySecret), challenge_));
    if (ct_equal_hex(expected, digest_) && secret) return Success{"", std::move(user_)};
    return Failure{Failure::Kind::BadCredentials, "CRAM-MD5: digest mismatch"};
  }

 private:
  enum class State { Initial, AwaitResponse, AwaitSecret, Done };

  Step finish_protocol() {
    state_ = State::Done;
    return Failure{Failure::Kind::Protocol, "CRAM-MD5: unexpected call"};
  }

  std::string hostname_;
  std::optional<std::string> fixed_challenge_;
  State state_ = State::Initial;
  std::string challenge_, user_, digest_;
};

}  // namespace

std::unique_ptr<Mechanism> make_cram_md5(const Context& ctx, std::optional<std::string> fixed_challenge) {
  return std::make_unique<CramMd5>(ctx, std::move(fixed_challenge));
}

}  // namespace rg::sasl::detail
