// One POP3 session (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034) over a plain,
// STLS-upgraded or implicit-TLS stream: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3).
// Each command line goes through the generic engine (shared/protocol/command.h) with pop3d's
// table (commands.h): the gates and a pure check_<cmd> first, then the proceed_<cmd> member
// here that does the work.
// Invariants: messages are removed only by QUIT in TRANSACTION; nothing read before STLS is
// executed after it (RFC 2595 §4, CVE-2011-0411); a login grants relay rights only on success;
// secrets are never logged.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pop3d/commands.h"
#include "pop3d/maildrop.h"
#include "shared/config.h"
#include "shared/daemon_server.h"
#include "shared/net/limits.h"
#include "shared/net/stream.h"
#include "shared/protocol/command.h"

namespace rg::pop3 {

class Server;

// Runs a whole session on `stream`; returns when the client quits or the session ends.
boost::asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                         net::ConnectionLimiter::Token token);

class Session final : public daemon::Drainable {
 public:
  using CommandId = pop3::CommandId;
  using State = pop3::State;
  using Facts = pop3::Facts;
  using Refusal = pop3::Refusal;
  using Row = protocol::Command<Session>;
  // The one command table (commands.cpp) and the disconnect summary's field names, by id.
  static const std::array<Row, kCommandIds - 1> kCommands;
  static const std::array<std::string_view, kCommandIds> kSummaryNames;
  // RFC 1939 §3 before RFC 2595 §4: "not valid in this state" even before STLS.
  static constexpr bool kStateGateFirst = true;

  Session(Server& server, config::Listener listener, net::Stream stream);
  ~Session() override;
  void stop_if_idle() override;  // the daemon skeleton's drain (SIGTERM)
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  boost::asio::awaitable<void> run();

  // The engine's contract (shared/protocol/command.h).
  const Facts& facts() const { return facts_; }
  void begin(const Row* row);
  bool tls_required_now() const;
  void refuse(const Refusal& r);
  void refuse_unknown(std::string_view keyword);
  static Refusal refusal_tls_required(const Row&) { return pop3::refusal_tls_required(); }
  static Refusal refusal_wrong_state(const Row&, const Facts&) { return pop3::refusal_wrong_state(); }

 private:
  // The work of each command, after the gates and its check (commands.h).
  boost::asio::awaitable<void> proceed_capa(std::string_view);
  boost::asio::awaitable<void> proceed_quit(std::string_view);
  boost::asio::awaitable<void> proceed_stls(std::string_view);
  boost::asio::awaitable<void> proceed_user(std::string_view name);
  boost::asio::awaitable<void> proceed_pass(std::string_view password);
  boost::asio::awaitable<void> proceed_apop(std::string_view args);
  boost::asio::awaitable<void> proceed_auth(std::string_view args);
  boost::asio::awaitable<void> proceed_stat(std::string_view);
  boost::asio::awaitable<void> proceed_list(std::string_view args);
  boost::asio::awaitable<void> proceed_uidl(std::string_view args);
  boost::asio::awaitable<void> proceed_retr(std::string_view args);
  boost::asio::awaitable<void> proceed_top(std::string_view args);
  boost::asio::awaitable<void> proceed_dele(std::string_view args);
  boost::asio::awaitable<void> proceed_noop(std::string_view);
  boost::asio::awaitable<void> proceed_rset(std::string_view);

  // Replies are queued and sent together when no pipelined input waits (RFC 2449 PIPELINING).
  void ok(std::string_view text) { reply("+OK", text); }
  void err(std::string_view text) {
    failed_ = true;  // the command being handled counts as failed in the summary
    reply("-ERR", text);
  }
  void reply(std::string_view status, std::string_view text);
  boost::asio::awaitable<bool> flush();
  // Ends the session after the current command; the first reason given is the one logged.
  void end(const char* reason) {
    if (!quit_) end_reason_ = reason;
    quit_ = true;
  }
  // A refused command line: logged, answered, counted towards pop3d.max_bad_commands.
  void bad_command(std::string_view text);

  bool plaintext_ok() const;
  bool stls_available() const;
  // auth.mechanisms / auth.mechanisms_without_tls: what CAPA lists is exactly what AUTH accepts.
  std::vector<std::string> offered_mechanisms() const;
  std::string usable_mechanisms() const;
  // The log's mech= for a login method: USER/PASS and APOP by name, AUTH by its SASL mechanism.
  std::string_view mech_of(std::string_view method) const;

  // Authentication (session_login.cpp), and the POP3 framing of the SASL exchange.
  boost::asio::awaitable<void> login(const std::string& user, const char* method);
  boost::asio::awaitable<void> login_failed(const char* method, std::string_view login, std::string_view why);

  // TRANSACTION helpers.
  Message* message_arg(std::string_view arg);
  boost::asio::awaitable<void> send_message(Message& m, std::optional<uint64_t> top_lines);

  Server& srv_;
  config::Listener listener_;
  net::Stream stream_;
  std::string id_;
  Facts facts_;                                // taken by begin() for the gates and the check
  CommandId command_id_ = CommandId::Unknown;  // the command being handled
  std::string_view command_ = "unknown";       // its log name
  State state_ = State::Authorization;
  std::string apop_timestamp_;
  std::optional<std::string> pending_user_;  // USER given, PASS awaited
  std::string user_;
  std::optional<Maildrop> drop_;  // set in TRANSACTION (and UPDATE): the locked maildrop
  int64_t bad_commands_ = 0;
  bool quit_ = false;
  const char* end_reason_ = "quit";
  // Counters for the disconnect summary.
  protocol::CommandStats<kCommandIds> stats_;
  bool failed_ = false;  // the command being handled has answered -ERR
  unsigned n_auth_fail_ = 0;
  uint64_t bytes_sent_ = 0;
  unsigned n_deleted_on_quit_ = 0;
  std::string sasl_mech_ = "-";  // the SASL mechanism of the AUTH command in progress (logs)
};

}  // namespace rg::pop3
