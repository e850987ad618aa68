// One SMTP session (RFC 5321 with AUTH RFC 4954, STARTTLS RFC 3207, PIPELINING RFC 2920, SIZE
// RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034/3463) on a relay, submission or
// submissions listener. Every command line goes through protocol::dispatch (shared/protocol/
// command.h) with the one table Session::kCommands (command_table.cpp): gates, the pure check_<cmd>
// (commands.h), then the proceed_<cmd> below, which does the work.
// Where each part lives: session.cpp the run loop, the engine's contract, EHLO/HELO, STARTTLS,
// MAIL, RCPT and the small commands; session_auth.cpp AUTH and its SASL framing;
// session_data.cpp DATA and the delivery into Maildirs and the spool.
// Invariants: a non-local RCPT is accepted only for SMTP AUTH, a live grant checked at RCPT
// time, or trusted_networks — never when authdb cannot answer (451 4.3.0); only
// CRLF "." CRLF ends DATA (RFC 5321 §4.1.1.4, CVE-2023-51764); 250 after DATA only once the
// message is fsync'd in every Maildir and in the spool; no plaintext byte survives STARTTLS.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"
#include "shared/log.h"
#include "shared/net/limits.h"
#include "shared/net/stream.h"
#include "shared/protocol/command.h"
#include "smtpd/address.h"
#include "smtpd/commands.h"
#include "smtpd/server.h"

namespace rg::smtp {

class Delivery;  // session_data.cpp: one message's temp files while it arrives

boost::asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                         net::ConnectionLimiter::Token token);

class Session final : public Drainable {
 public:
  // The engine's contract (shared/protocol/command.h).
  using CommandId = smtp::CommandId;
  using State = smtp::State;
  using Facts = smtp::Facts;
  using Refusal = smtp::Refusal;
  using Row = protocol::Command<Session>;
  static constexpr size_t kRows = kCommandIds - 1;  // a row for every id but Unknown
  // The protocol's one command table (command_table.cpp).
  static const std::array<Row, kRows> kCommands;

  Session(Server& server, config::Listener listener, net::Stream stream);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  boost::asio::awaitable<void> run();
  // SIGTERM: an idle session's pending read ends and run() writes the 421 4.3.2 itself (never
  // written from here: a TLS stream may be mid-record); a busy one finishes its message first.
  void stop_if_idle() override {
    if (!busy_) stream_.cancel_read();
  }

  Facts facts() const;
  void begin(const Row* row);
  bool tls_required_now() const { return listener_.tls == config::TlsMode::Required && !stream_.is_tls(); }
  void refuse(const Refusal& r);
  void refuse_unknown(std::string_view keyword);
  // RFC 2920 §3.1: EHLO/HELO and DATA end a pipelined group; an unauthenticated client that
  // sends on without waiting for the reply is refused (Postfix smtpd_forbid_unauth_pipelining).
  bool sync_violation() const { return auth_user_.empty() && stream_.has_pending_input(); }
  boost::asio::awaitable<void> sync_error();
  static Refusal refusal_tls_required(const Row&) { return smtp::refusal_tls_required(); }
  static Refusal refusal_wrong_state(const Row& row, const Facts& f) { return smtp::refusal_wrong_state(row.id, f); }

 private:
  struct Rcpt {
    Mailbox mailbox;
    bool local = false;
    std::string user;  // local recipients: canonical user name
  };
  enum class Relay { Allowed, Denied, TempFail };

  // proceed_<cmd>: the work, after the gates and the check passed.
  boost::asio::awaitable<void> proceed_ehlo(std::string_view args);
  boost::asio::awaitable<void> proceed_helo(std::string_view args);
  boost::asio::awaitable<void> proceed_starttls(std::string_view args);
  boost::asio::awaitable<void> proceed_auth(std::string_view args);  // session_auth.cpp
  boost::asio::awaitable<void> proceed_mail(std::string_view args);
  boost::asio::awaitable<void> proceed_rcpt(std::string_view args);
  boost::asio::awaitable<void> proceed_data(std::string_view args);  // session_data.cpp
  boost::asio::awaitable<void> proceed_rset(std::string_view args);
  boost::asio::awaitable<void> proceed_noop(std::string_view args);
  boost::asio::awaitable<void> proceed_vrfy(std::string_view args);
  boost::asio::awaitable<void> proceed_help(std::string_view args);
  boost::asio::awaitable<void> proceed_quit(std::string_view args);

  void reply(int code, std::string_view enhanced, std::string_view text);
  boost::asio::awaitable<bool> flush();
  // min_data_rate after data_rate_grace_seconds, for DATA and for command lines (net::RateFloor).
  net::RateFloor rate_floor() const;
  // The 451 4.4.2 and the too-slow log line of a client below the rate floor; ends the session.
  void rate_too_low(std::string_view event, uint64_t bytes);
  // The command being handled (begin()) counts as succeeded or failed in the summary.
  void count(bool ok) { stats_.count(static_cast<size_t>(current_), ok); }
  log::Line event_line(log::Level level, std::string_view outcome, std::string_view reason) const;
  bool starttls_available() const {
    return !stream_.is_tls() &&
           (listener_.tls == config::TlsMode::StartTls || listener_.tls == config::TlsMode::Required);
  }
  bool submission() const { return listener_.mode != config::SmtpMode::Relay; }
  std::vector<std::string> offered_mechanisms() const;
  bool is_local_domain(const Mailbox& m) const;
  boost::asio::awaitable<Relay> relay_permission();
  void reset_transaction();
  boost::asio::awaitable<void> greet(std::string_view args, bool extended);
  boost::asio::awaitable<void> auth_failed(std::string_view mech, std::string_view login, std::string_view why);
  boost::asio::awaitable<void> auth_succeeded(const std::string& user, std::string_view mech);
  boost::asio::awaitable<void> deliver(std::shared_ptr<Delivery> msg, uint64_t body_size);

  Server& srv_;
  config::Listener listener_;
  net::Stream stream_;
  std::string id_;
  std::string_view command_ = "unknown";  // log name of the command being handled
  CommandId current_ = CommandId::Unknown;
  State state_ = State::Connected;
  std::string helo_;
  bool esmtp_ = false;
  std::string auth_user_;  // SMTP AUTH identity, empty if none
  std::string auth_mech_;
  std::string relay_by_;  // how the current transaction may relay: "sasl:u", "grant:u", "trusted"
  std::optional<Path> from_;
  std::vector<Rcpt> rcpts_;
  uint64_t declared_size_ = 0;
  int64_t errors_ = 0;
  bool closing_ = false;
  std::string_view data_aborted_;  // why DATA ended the session (the disconnect line's reason=)
  bool busy_ = false;              // receiving or delivering a message: SIGTERM lets it finish
  protocol::CommandStats<kCommandIds> stats_;
};

}  // namespace rg::smtp
