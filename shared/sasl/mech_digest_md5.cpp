// SASL DIGEST-MD5 server mechanism (historic, RFC 6331): qop=auth only, no subsequent auth,
// nonce-count 1; responses parsed defensively (limits, no duplicates); constant-time compare.
// RFC 2831 §2.1.1 challenge, §2.1.2 response, §2.1.2.1 digest, §2.1.3 rspauth, §7.1 lists.
#include <cstdint>
#include <initializer_list>

#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"

namespace rg::sasl::detail {
namespace {

constexpr std::size_t kNonceRandomBytes = 16;  // RFC 2831 §2.1.1: at least 64 bits of entropy
constexpr std::size_t kResponseHexLen = 32;    // §2.1.2: response = 32LHEX
constexpr std::size_t kNonceCountLen = 8;      // §2.1.2: nc-value = 8LHEX
constexpr std::string_view kFirstNonceCount = "00000001";
constexpr std::string_view kDummySecret = "rg-digest-md5-no-such-user-secret";

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_ctl(char c) { return (std::uint8_t(c) < 32 && c != '\t') || c == 127; }
// RFC 2616 §2.2 token character: CHAR except CTLs and separators.
bool is_token_char(char c) {
  const auto u = std::uint8_t(c);
  if (u <= 32 || u >= 127) return false;
  return std::string_view("()<>@,;:\\\"/[]?={}").find(c) == std::string_view::npos;
}
bool is_hex(std::string_view s) {
  for (const char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}
char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Single-valued directive slot for a (lowercased) name, or nullptr for an ignored auth-param.
std::optional<std::string>* slot_for(DigestResponse& r, std::string_view key) {
  if (key == "username") return &r.username;
  if (key == "realm") return &r.realm;
  if (key == "nonce") return &r.nonce;
  if (key == "cnonce") return &r.cnonce;
  if (key == "nc") return &r.nc;
  if (key == "qop") return &r.qop;
  if (key == "digest-uri") return &r.digest_uri;
  if (key == "response") return &r.response;
  if (key == "maxbuf") return &r.maxbuf;
  if (key == "charset") return &r.charset;
  if (key == "cipher") return &r.cipher;
  if (key == "authzid") return &r.authzid;
  return nullptr;
}

DigestParse parse_error(std::string why) { return DigestParse{std::nullopt, std::move(why)}; }

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

class DigestMd5 final : public Mechanism {
 public:
  DigestMd5(const Context& ctx, std::optional<std::string> fixed_nonce)
      : service_(ctx.service),
        realm_(ctx.realm.empty() ? ctx.hostname : ctx.realm),
        fixed_nonce_(std::move(fixed_nonce)) {}

  std::string_view name() const override { return "DIGEST-MD5"; }
  bool plaintext() const override { return false; }
  bool needs_legacy_secret() const override { return true; }

  Step start(std::optional<std::string_view> initial_response) override {
    // Initial response would mean subsequent authentication (§2.2), which we do not support.
    if (state_ != State::Initial || initial_response) return finish_protocol();
    nonce_ = fixed_nonce_ ? *fixed_nonce_ : random_hex(kNonceRandomBytes);
    state_ = State::AwaitResponse;
    return Challenge{"realm=" + quote(realm_) + ",nonce=" + quote(nonce_) +
                     ",qop=\"auth\",charset=utf-8,algorithm=md5-sess"};
  }

  Step step(std::string_view response) override {
    if (state_ == State::AwaitFinal) {  // §2.1.3: client's (normally empty) reply to rspauth
      state_ = State::Done;
      return Success{resp_.authzid.value_or(""), resp_.username.value_or("")};
    }
    if (state_ != State::AwaitResponse) return finish_protocol();
    state_ = State::Done;
    auto parsed = parse_digest_response(response);
    if (!parsed.value) return malformed(parsed.error);
    const DigestResponse& r = *parsed.value;
    if (!r.username || r.username->empty()) return malformed("missing username");
    if (!r.nonce || !r.cnonce || r.cnonce->empty() || !r.nc || !r.digest_uri || !r.response)
      return malformed("missing required directive");
    if (r.username->size() > kMaxIdentityLen || (r.authzid && r.authzid->size() > kMaxIdentityLen))
      return malformed("identity too long");
    if (r.response->size() != kResponseHexLen || !is_hex(*r.response))
      return malformed("response is not 32 hex digits");
    if (r.nc->size() != kNonceCountLen || !is_hex(*r.nc)) return malformed("bad nonce-count");
    // Without charset=utf-8 the username/password are ISO-8859-1 (§2.1.2); we treat them as
    // opaque bytes, so such clients authenticate only if their bytes match the stored secret.
    if (r.charset && !iequals(*r.charset, "utf-8")) return malformed("bad charset");
    const auto slash = r.digest_uri->find('/');
    if (slash == std::string::npos) return malformed("bad digest-uri");

    if (*r.nonce != nonce_) return refused("nonce mismatch");
    if (*r.nc != kFirstNonceCount) return refused("nonce-count must be 00000001");
    if (r.qop && !iequals(*r.qop, "auth")) return refused("only qop=auth is offered");
    if (r.realm && *r.realm != realm_) return refused("realm mismatch");
    const std::string_view uri = *r.digest_uri;
    const auto host = uri.substr(slash + 1);  // host [ "/" serv-name ]
    if (!iequals(uri.substr(0, slash), service_) || host.empty() || host.front() == '/')
      return refused("digest-uri mismatch");

    resp_ = std::move(*parsed.value);
    state_ = State::AwaitSecret;
    return NeedSecret{*resp_.username};
  }

  Step provide_secret(std::optional<std::string_view> secret) override {
    if (state_ != State::AwaitSecret) return finish_protocol();
    state_ = State::Done;
    // A CRAM-MD5 context (codec.h) cannot make A1, which needs the password: no secret then.
    if (secret && cram_md5_context(*secret)) secret = std::nullopt;
    using sv = std::string_view;  // absent realm = "" and absent qop = "auth" (§2.1.2)
    DigestInput in{*resp_.username,
                   resp_.realm ? sv(*resp_.realm) : sv(),
                   secret.value_or(kDummySecret),
                   nonce_,
                   *resp_.cnonce,
                   *resp_.nc,
                   resp_.qop ? sv(*resp_.qop) : sv("auth"),
                   *resp_.digest_uri,
                   std::nullopt};
    if (resp_.authzid) in.authzid = *resp_.authzid;
    const std::string expected = digest_md5_response(in, "AUTHENTICATE");
    if (!ct_equal_hex(expected, *resp_.response) || !secret)
      return Failure{Failure::Kind::BadCredentials, "DIGEST-MD5: response mismatch"};
    state_ = State::AwaitFinal;
    return Challenge{"rspauth=" + digest_md5_response(in, "")};
  }

 private:
  enum class State { Initial, AwaitResponse, AwaitSecret, AwaitFinal, Done };

  Step finish_protocol() {
    state_ = State::Done;
    return Failure{Failure::Kind::Protocol, "DIGEST-MD5: unexpected call"};
  }
  static Step malformed(std::string_view why) {
    return Failure{Failure::Kind::Malformed, "DIGEST-MD5: " + std::string(why)};
  }
  static Step refused(std::string_view why) {
    return Failure{Failure::Kind::BadCredentials, "DIGEST-MD5: " + std::string(why)};
  }

  std::string service_, realm_;
  std::optional<std::string> fixed_nonce_;
  State state_ = State::Initial;
  std::string nonce_;
  DigestResponse resp_;
};

}  // namespace

std::unique_ptr<Mechanism> make_digest_md5(const Context& ctx, std::optional<std::string> fixed_nonce) {
  return std::make_unique<DigestMd5>(ctx, std::move(fixed_nonce));
}

DigestParse parse_digest_response(std::string_view in) {
  if (in.size() > kMaxDigestResponseLen) return parse_error("response too long");
  DigestResponse r;
  std::size_t pos = 0, count = 0;
  const auto skip_ws = [&] {
    while (pos < in.size() && is_ws(in[pos])) ++pos;
  };
  const auto take_token = [&] {
    const std::size_t start = pos;
    while (pos < in.size() && is_token_char(in[pos])) ++pos;
    return in.substr(start, pos - start);
  };
  for (;;) {
    skip_ws();
    if (pos == in.size()) break;
    if (in[pos] == ',') {  // §7.1 #rule: null elements are allowed
      ++pos;
      continue;
    }
    const auto raw_key = take_token();
    if (raw_key.empty()) return parse_error("expected directive name");
    std::string key;
    for (const char c : raw_key) key += lower(c);
    skip_ws();
    if (pos == in.size() || in[pos] != '=') return parse_error("expected '='");
    ++pos;
    skip_ws();
    std::string value;
    if (pos < in.size() && in[pos] == '"') {  // quoted-string with quoted-pair escapes
      ++pos;
      bool closed = false;
      while (pos < in.size()) {
        char c = in[pos++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (pos == in.size()) break;
          c = in[pos++];
        }
        if (is_ctl(c)) return parse_error("control character in quoted-string");
        value += c;
      }
      if (!closed) return parse_error("unterminated quoted-string");
    } else {
      value = take_token();
      if (value.empty()) return parse_error("expected value");
    }
    if (++count > kMaxDigestDirectives) return parse_error("too many directives");
    if (auto* slot = slot_for(r, key)) {
      if (*slot) return parse_error("duplicate directive " + key);
      *slot = std::move(value);
    }
    skip_ws();
    if (pos < in.size() && in[pos] != ',') return parse_error("expected ','");
  }
  if (count == 0) return parse_error("empty response");
  return DigestParse{std::move(r), {}};
}

std::string digest_md5_response(const DigestInput& in, std::string_view a2_prefix) {
  const auto join = [](std::initializer_list<std::string_view> parts) {  // "a:b:c"
    std::string out;
    bool first = true;
    for (const auto p : parts) {
      if (!first) out += ':';
      out += p;
      first = false;
    }
    return out;
  };
  std::string a1 = md5(join({in.username, in.realm, in.password}));
  a1 += ':';
  a1 += join({in.nonce, in.cnonce});
  if (in.authzid) {
    a1 += ':';
    a1 += *in.authzid;
  }
  const std::string a2 = join({a2_prefix, in.digest_uri});  // qop=auth: no ":00..." suffix
  return hex_lower(md5(join({hex_lower(md5(a1)), in.nonce, in.nc, in.cnonce, in.qop, hex_lower(md5(a2))})));
}

}  // namespace rg::sasl::detail
