// The one SASL exchange both daemons run (RFC 4422 §3; SMTP AUTH RFC 4954 §4, POP3 AUTH
// RFC 5034 §4): drives a mechanism from its first step to an outcome — challenges out, client
// responses in ("*" cancels, responses are base64), passwords checked on the worker pool, legacy
// secrets looked up, the authorization identity (authzid) held to the authenticated user.
// Protocol-neutral: the session supplies the transport (LineSaslTransport: how a challenge is
// framed, with which limit and timeout a line is read) and turns the outcome into its own reply
// and log line.
// Invariants: no secret is ever part of an outcome; a login succeeds only with a user that
// authdb knows and an authzid that is empty or the same user (RFC 4616 §2: no proxying).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "auth/authenticator.h"
#include "shared/net/stream.h"
#include "shared/sasl/sasl.h"

namespace rg {

// One client response line as the session's reader delivered it (line ending removed).
struct SaslResponse {
  enum class Status { Ok, TooLong, Closed, Timeout } status = Status::Ok;
  std::string text;
};

// What a protocol provides for the exchange.
class SaslTransport {
 public:
  virtual ~SaslTransport() = default;
  // Sends one challenge, already base64 ("334 <b64>" / "+ <b64>"), and flushes it; false when
  // the connection is gone.
  virtual boost::asio::awaitable<bool> send_challenge(const std::string& base64) = 0;
  // Reads the client's answer to it, bounded by the protocol's SASL line limit and timeout.
  virtual boost::asio::awaitable<SaslResponse> read_response() = 0;
};

// The transport both protocols use: a challenge is one line `<prefix><base64>` (SMTP "334 ",
// RFC 4954 §4; POP3 "+ ", RFC 5034 §4), flushed by the session's own flush (its write timeout
// and log); a response is one line read from the session's stream within `max_line` octets
// and `timeout`, its one line ending (CRLF or LF) removed.
class LineSaslTransport final : public SaslTransport {
 public:
  using Flush = std::function<boost::asio::awaitable<bool>()>;
  LineSaslTransport(net::Stream& stream, std::string_view prefix, std::size_t max_line,
                    std::chrono::steady_clock::duration timeout, Flush flush)
      : stream_(stream), prefix_(prefix), max_line_(max_line), timeout_(timeout), flush_(std::move(flush)) {}
  boost::asio::awaitable<bool> send_challenge(const std::string& base64) override;
  boost::asio::awaitable<SaslResponse> read_response() override;

 private:
  net::Stream& stream_;
  std::string prefix_;
  std::size_t max_line_;
  std::chrono::steady_clock::duration timeout_;
  Flush flush_;
};

struct SaslOutcome {
  enum class Kind {
    Ok,         // `user` logged in
    Failed,     // wrong credentials (or a response we refuse); `reason` says which
    TempFail,   // authdb could not answer: nothing is known about the credentials
    Cancelled,  // the client sent "*" (RFC 4954 §4, RFC 5034 §4): not a failed password
    BadBase64,  // a response that is not base64
    Malformed,  // a decoded response the mechanism cannot parse (sasl::Failure::Kind::Malformed)
    Protocol,   // the mechanism was called out of turn (sasl::Failure::Kind::Protocol)
    TooLong,    // a response over the transport's line limit
    Closed,     // the connection ended (or timed out) mid-exchange; `timed_out` tells which
  } kind = Kind::Failed;
  std::string user;         // Ok: the canonical user name
  std::string login = "-";  // the authentication identity the client named, for logs
  std::string reason;       // Failed, Malformed, Protocol: short and secret-free, for logs
  bool timed_out = false;   // Closed: by the read timeout rather than the client
};

// Runs the exchange of `mech` from its first step. `initial` is the decoded initial response
// (RFC 4954 §4: "=" is present but empty, pass ""), nullopt when the client sent none. Never
// throws for client or database behaviour. Arguments are references (the caller awaits): g++ 12
// destroys prvalue arguments of a coroutine called inside co_await twice (GCC PR 100611 family).
boost::asio::awaitable<SaslOutcome> run_sasl_exchange(sasl::Mechanism& mech, const std::optional<std::string>& initial,
                                                      Authenticator& auth, SaslTransport& transport);

}  // namespace rg
