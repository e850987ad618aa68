// SASL server mechanism interface shared by pop3d (RFC 5034 AUTH, RFC 1939 §7 APOP) and smtpd
// (RFC 4954 AUTH). Mechanisms are pure state machines over decoded bytes: no I/O, no database;
// one fresh object per AUTH command, and every call after a final Step returns Failure{Protocol}.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace rg::sasl {

// Per-server facts the mechanisms embed in challenges.
struct Context {
  std::string hostname;  // FQDN used in CRAM-MD5 challenges and as the default realm
  std::string service;   // "smtp" or "pop": DIGEST-MD5 digest-uri serv-type (RFC 2831 §2.1.2)
  std::string realm;     // DIGEST-MD5 realm; empty => hostname
};

// What the mechanism asks of its caller after each step. Data is raw bytes: the caller
// base64-encodes challenges and decodes client responses, and handles "*" cancel and bad base64.
struct Challenge {  // send "334 base64(data)" (SMTP) / "+ base64(data)" (POP3)
  std::string data;
};
struct VerifyPassword {  // caller checks password against the slow hash, then ends the exchange
  std::string authzid, authcid, password;
};
struct NeedSecret {  // caller looks up authcid's legacy secret and calls provide_secret()
  std::string authcid;
};
struct Success {  // authenticated; authzid may be empty (caller decides whether it is allowed)
  std::string authzid, authcid;
};
struct Failure {
  // Malformed = response does not parse (smtpd: 501 5.5.2); BadCredentials = wrong
  // digest/password or a well-formed response we refuse (535 5.7.8); Protocol = a call at a
  // wrong time, e.g. an initial response to a mechanism that has none.
  enum class Kind { Malformed, BadCredentials, Protocol } kind;
  std::string reason;  // short, for logs; never contains secrets
};
using Step = std::variant<Challenge, VerifyPassword, NeedSecret, Success, Failure>;

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  // "PLAIN", "LOGIN", "CRAM-MD5" or "DIGEST-MD5".
  virtual std::string_view name() const = 0;
  // True for PLAIN/LOGIN: the password crosses the wire (offer only over TLS unless allowed).
  virtual bool plaintext() const = 0;
  // True for CRAM-MD5/DIGEST-MD5: needs the user's plaintext-equivalent legacy secret.
  virtual bool needs_legacy_secret() const = 0;
  // First step. initial_response: the decoded SASL initial response if the client sent one
  // (RFC 4954 §4; "=" means present-but-empty, pass ""), nullopt if none.
  virtual Step start(std::optional<std::string_view> initial_response) = 0;
  // Next decoded client response after a Challenge.
  virtual Step step(std::string_view response) = 0;
  // Answer to NeedSecret: the user's secret, or nullopt if the user is unknown or has no legacy
  // secret (the mechanism then does the same work against a dummy and returns BadCredentials).
  virtual Step provide_secret(std::optional<std::string_view> secret) = 0;
};

// Every mechanism make_mechanism() knows, in advertising order; daemons filter by plaintext() /
// needs_legacy_secret() and their TLS/legacy settings before advertising.
inline constexpr std::array<std::string_view, 4> kMechanismNames = {"PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"};

// Case-insensitive name lookup; nullptr if unknown. Call once per AUTH command: a fresh object
// means no state survives a cancel or a failure (CVE-2011-1720 class).
std::unique_ptr<Mechanism> make_mechanism(std::string_view name, const Context& ctx);

// RFC 1939 §7 APOP: client_hex_digest == hex(MD5(timestamp + secret)), hex case-insensitive,
// compared in constant time. timestamp is the full "<...>" string from the greeting.
bool apop_verify(std::string_view timestamp, std::string_view secret, std::string_view client_hex_digest);

}  // namespace rg::sasl
