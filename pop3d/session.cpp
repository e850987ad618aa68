// POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3). Commands come from one
// table with the states they are valid in; each handler checks arguments first, then works.
// Invariants: messages are removed only by QUIT in TRANSACTION; nothing read before STLS is
// executed after it (RFC 2595 §4, CVE-2011-0411); a login grants relay rights only on success;
// secrets are never logged.
#include "pop3d/session.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>

#include "auth/sasl_exchange.h"
#include "authdb/users.h"
#include "pop3d/command_parse.h"
#include "pop3d/maildrop.h"
#include "pop3d/server.h"
#include "shared/ascii.h"
#include "shared/ip.h"
#include "shared/log.h"
#include "shared/maildir.h"
#include "shared/net/errors.h"
#include "shared/protocol/command.h"
#include "shared/sasl/codec.h"
#include "shared/sasl/sasl.h"

namespace rg::pop3 {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// RFC 2449 §4: a command line is at most 255 octets including CRLF.
constexpr size_t kMaxCommandLine = 255;
// RFC 5034 §4 lets SASL responses exceed the command limit; same bound as SMTP AUTH (RFC 4954 §4).
constexpr size_t kMaxSaslResponse = 12288 + 2;
constexpr auto kWriteTimeout = 60s;
constexpr auto kTlsHandshakeTimeout = 30s;
constexpr size_t kRetrChunk = 64 * 1024;
constexpr size_t kFlushThreshold = 64 * 1024;

enum class State { Authorization, Transaction, Update };
enum StateMask : unsigned { kAuth = 1, kTrans = 2, kAny = kAuth | kTrans };

class Session final : public daemon::Drainable {
 public:
  Session(Server& server, config::Listener listener, net::Stream stream)
      : srv_(server), listener_(std::move(listener)), stream_(std::move(stream)) {
    id_ = "pop3-" + std::to_string(getpid()) + "-" + std::to_string(++server.sessions_started);
    srv_.track(this);
  }
  ~Session() override { srv_.untrack(this); }
  // SIGTERM: closing cancels the pending read or write; run() then logs its end and returns
  // (a POP3 session has no transaction to finish: deletions happen only at QUIT).
  void stop_if_idle() override { stream_.close(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  asio::awaitable<void> run();

 private:
  using Handler = asio::awaitable<void> (Session::*)(std::string_view args);
  struct Command {
    std::string_view name;
    std::string_view log_name;  // the log's event name for refusals of this command
    Handler handler;
    unsigned states;
  };
  static const std::array<Command, 15> kCommands;
  // The disconnect summary's counters: one per row of kCommands (same index), then unknown.
  static constexpr size_t kUnknownId = 15;
  using Stats = protocol::CommandStats<kUnknownId + 1>;
  static const std::array<std::string_view, kUnknownId + 1> kSummaryNames;

  // Replies are queued and sent together when no pipelined input waits (RFC 2449 PIPELINING).
  void ok(std::string_view text) { reply("+OK", text); }
  void err(std::string_view text) {
    failed_ = true;  // the command being handled counts as failed in the summary
    reply("-ERR", text);
  }
  void reply(std::string_view status, std::string_view text) {
    std::string line(status);
    if (!text.empty()) line.append(" ").append(text);
    line += "\r\n";
    stream_.queue(line);
  }
  asio::awaitable<bool> flush() {
    auto ec = co_await stream_.flush(kWriteTimeout);
    if (ec) end("write-error");
    co_return !ec;
  }
  // Ends the session after the current command; the first reason given is the one logged.
  void end(const char* reason) {
    if (!quit_) end_reason_ = reason;
    quit_ = true;
  }
  // Every refusal is logged (issue 9) in the shared order: event (the command), outcome, reason, ip.
  void bad_command(std::string_view text) {
    log::info(id_)
        .kv("event", command_)
        .kv("outcome", "rejected")
        .kv("reason", log::token(text))
        .kv("ip", stream_.remote_ip());
    err(text);
    if (++bad_commands_ >= srv_.cfg.pop3d.max_bad_commands) {
      err("Too many invalid commands, closing connection");
      end("too-many-bad-commands");
    }
  }

  bool tls_required_now() const { return listener_.tls == config::TlsMode::Required && !stream_.is_tls(); }
  bool plaintext_ok() const { return stream_.is_tls() || srv_.cfg.auth.allow_plaintext_without_tls; }
  bool stls_available() const {
    return !stream_.is_tls() &&
           (listener_.tls == config::TlsMode::StartTls || listener_.tls == config::TlsMode::Required);
  }
  // auth.mechanisms / auth.mechanisms_without_tls: what CAPA lists is exactly what AUTH accepts.
  std::vector<std::string> offered_mechanisms() const {
    return config::sasl_mechanisms(srv_.cfg, listener_, stream_.is_tls());
  }
  bool mechanism_offered(std::string_view name) const {
    const auto offered = offered_mechanisms();
    return std::find(offered.begin(), offered.end(), name) != offered.end();
  }
  std::string usable_mechanisms() const;
  sasl::Context sasl_context() const { return {srv_.cfg.hostname, "pop", ""}; }

  asio::awaitable<void> dispatch(std::string_view line);

  asio::awaitable<void> cmd_capa(std::string_view);
  asio::awaitable<void> cmd_quit(std::string_view);
  asio::awaitable<void> cmd_stls(std::string_view);
  asio::awaitable<void> cmd_user(std::string_view);
  asio::awaitable<void> cmd_pass(std::string_view);
  asio::awaitable<void> cmd_apop(std::string_view);
  asio::awaitable<void> cmd_auth(std::string_view);
  asio::awaitable<void> cmd_stat(std::string_view);
  asio::awaitable<void> cmd_list(std::string_view);
  asio::awaitable<void> cmd_uidl(std::string_view);
  asio::awaitable<void> cmd_retr(std::string_view);
  asio::awaitable<void> cmd_top(std::string_view);
  asio::awaitable<void> cmd_dele(std::string_view);
  asio::awaitable<void> cmd_noop(std::string_view);
  asio::awaitable<void> cmd_rset(std::string_view);

  // Authentication helpers.
  asio::awaitable<void> login(const std::string& user, const char* method);
  asio::awaitable<void> login_failed(const char* method, std::string_view login, std::string_view why);
  bool auth_refused_before_tls(bool plaintext_mechanism);

  // TRANSACTION helpers.
  Message* message_arg(std::string_view arg);
  asio::awaitable<void> send_message(Message& m, std::optional<uint64_t> top_lines);
  class Pop3SaslTransport;

  Server& srv_;
  config::Listener listener_;
  net::Stream stream_;
  std::string id_;
  std::string_view command_ = "unknown";  // lower-case name of the command being handled
  State state_ = State::Authorization;
  std::string apop_timestamp_;
  std::optional<std::string> pending_user_;  // USER given, PASS awaited
  std::string user_;
  std::optional<Maildrop> drop_;  // set in TRANSACTION (and UPDATE): the locked maildrop
  int64_t bad_commands_ = 0;
  bool quit_ = false;
  const char* end_reason_ = "quit";
  // Counters for the disconnect summary.
  Stats stats_;
  bool failed_ = false;  // the command being handled has answered -ERR
  unsigned n_auth_fail_ = 0;
  uint64_t bytes_sent_ = 0;
  std::string sasl_mech_ = "-";  // the SASL mechanism of the AUTH command in progress (logs)
  // The log's mech= for a login method: USER/PASS and APOP by name, AUTH by its SASL mechanism.
  std::string_view mech_of(std::string_view method) const {
    if (method == "pop3") return "USER";
    if (method == "apop") return "APOP";
    return sasl_mech_;
  }
  unsigned n_deleted_on_quit_ = 0;
};

const std::array<Session::Command, 15> Session::kCommands = {{
    {"CAPA", "capa", &Session::cmd_capa, kAny},
    {"QUIT", "quit", &Session::cmd_quit, kAny},
    {"STLS", "stls", &Session::cmd_stls, kAuth},
    {"USER", "user", &Session::cmd_user, kAuth},
    {"PASS", "pass", &Session::cmd_pass, kAuth},
    {"APOP", "apop", &Session::cmd_apop, kAuth},
    {"AUTH", "auth", &Session::cmd_auth, kAuth},
    {"STAT", "stat", &Session::cmd_stat, kTrans},
    {"LIST", "list", &Session::cmd_list, kTrans},
    {"UIDL", "uidl", &Session::cmd_uidl, kTrans},
    {"RETR", "retr", &Session::cmd_retr, kTrans},
    {"TOP", "top", &Session::cmd_top, kTrans},
    {"DELE", "dele", &Session::cmd_dele, kTrans},
    {"NOOP", "noop", &Session::cmd_noop, kTrans},
    {"RSET", "rset", &Session::cmd_rset, kTrans},
}};

const std::array<std::string_view, Session::kUnknownId + 1> Session::kSummaryNames = [] {
  std::array<std::string_view, kUnknownId + 1> names{};
  for (size_t i = 0; i < kCommands.size(); ++i) names[i] = kCommands[i].log_name;
  // "user=" of the disconnect line is who logged in (as in smtpd's); the USER command's count
  // takes another name so one line never has the key twice.
  for (size_t i = 0; i < kCommands.size(); ++i)
    if (kCommands[i].log_name == "user") names[i] = "user_cmd";
  names[kUnknownId] = "unknown";
  return names;
}();

// POP3 framing of the SASL exchange (RFC 5034 §4): "+ <base64>" out, one line in, bounded by
// the SASL response limit and the idle timeout.
class Session::Pop3SaslTransport final : public SaslTransport {
 public:
  explicit Pop3SaslTransport(Session& s) : s_(s) {}
  asio::awaitable<bool> send_challenge(const std::string& base64) override {
    s_.stream_.queue("+ " + base64 + "\r\n");
    co_return co_await s_.flush();
  }
  asio::awaitable<SaslResponse> read_response() override {
    auto [ec, raw] =
        co_await s_.stream_.read_line(kMaxSaslResponse, std::chrono::seconds(s_.srv_.cfg.pop3d.idle_timeout_seconds));
    SaslResponse r;
    if (ec == net::errc::line_too_long)
      r.status = SaslResponse::Status::TooLong;
    else if (ec == net::errc::timeout)
      r.status = SaslResponse::Status::Timeout;
    else if (ec)
      r.status = SaslResponse::Status::Closed;
    r.text = strip_eol(std::move(raw));
    co_return r;
  }

 private:
  Session& s_;
};

std::string Session::usable_mechanisms() const {
  std::string out;
  for (const auto& name : offered_mechanisms()) out += (out.empty() ? "" : " ") + name;
  return out;
}

asio::awaitable<void> Session::run() {
  log::info(id_)
      .kv("event", "connect")
      .kv("ip", stream_.remote_ip())
      .kv("port", stream_.remote_port())
      .kv("listener", listener_.port)
      .kv("tls", config::to_string(listener_.tls));
  if (listener_.tls == config::TlsMode::Implicit) {
    const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
    if (auto ec = co_await stream_.start_tls(*tls, kTlsHandshakeTimeout)) {
      log::info(id_).kv("event", "disconnect").kv("reason", "tls-handshake-failed").kv("error", ec.message());
      co_return;
    }
  }
  // RFC 1939 §7: the APOP timestamp is unique per greeting (pid, counter, time, random bytes).
  apop_timestamp_ = sasl::make_msgid_challenge(srv_.cfg.hostname);
  ok("POP3 server ready " + apop_timestamp_);
  while (!quit_) {
    // Replies to pipelined commands go out together (RFC 2449 §6.6), but a client that keeps
    // sending without reading must not make the queue grow without bound.
    if ((!stream_.has_pending_input() || stream_.queued() >= kFlushThreshold) && !co_await flush()) break;
    const auto idle = std::chrono::seconds(srv_.cfg.pop3d.idle_timeout_seconds);
    auto [ec, raw] = co_await stream_.read_line(kMaxCommandLine, idle);
    if (ec == net::errc::timeout) {
      err("Disconnected for inactivity");
      end("idle-timeout");
      break;
    }
    if (ec == net::errc::line_too_long) {
      command_ = "unknown";
      bad_command("Line too long (RFC 2449: at most 255 octets)");
      stats_.count(kUnknownId, false);
      continue;
    }
    if (ec) {
      end(srv_.stopping() ? "server-stopping" : ec == asio::error::eof ? "client-closed" : "read-error");
      break;
    }
    // Named, not a temporary inside co_await: g++ 12 destroys such temporaries twice.
    const std::string line = strip_eol(std::move(raw));
    // RFC 1939 §3: commands are printable ASCII; a NUL or other control character is refused.
    if (ascii::has_control(line)) {
      command_ = "unknown";
      bad_command("Control character in command");
      stats_.count(kUnknownId, false);
      continue;
    }
    co_await dispatch(line);
  }
  // A session that ends any way but QUIT in TRANSACTION removes nothing (RFC 1939 §6); the
  // maildrop is free for the next session before the goodbye is even sent.
  drop_.reset();
  co_await stream_.flush(kWriteTimeout);
  co_await stream_.shutdown(2s);
  // Postfix's summary, the same as smtpd's (shared/protocol/command.h), then pop3d's own totals.
  auto line = log::info(id_);
  line.kv("event", "disconnect")
      .kv("reason", end_reason_)
      .kv("ip", stream_.remote_ip())
      .kv("proto", "pop3")
      .kv("user", user_.empty() ? "-" : user_);
  stats_.append_to(line, kSummaryNames);
  line.kv("deleted", n_deleted_on_quit_).kv("auth_failures", n_auth_fail_).kv("bytes", bytes_sent_);
}

asio::awaitable<void> Session::dispatch(std::string_view line) {
  const auto [keyword, args] = protocol::split_command(line);
  command_ = "unknown";
  failed_ = false;
  for (size_t id = 0; id < kCommands.size(); ++id) {
    const Command& c = kCommands[id];
    if (!ascii::iequals(c.name, keyword)) continue;  // RFC 1939 §3: keywords are case-insensitive
    command_ = c.log_name;
    unsigned mask = state_ == State::Authorization ? kAuth : kTrans;
    if (!(c.states & mask)) {
      bad_command("Command not valid in this state");
    } else {
      co_await (this->*c.handler)(args);
    }
    stats_.count(id, !failed_);
    co_return;
  }
  bad_command(keyword.empty() ? "Empty command" : "Unknown command");
  stats_.count(kUnknownId, false);
}

asio::awaitable<void> Session::cmd_capa(std::string_view) {
  std::string caps = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
  if (state_ == State::Authorization && !tls_required_now()) {
    if (plaintext_ok()) caps += "USER\r\n";
    std::string mechs = usable_mechanisms();
    if (!mechs.empty()) caps += "SASL " + mechs + "\r\n";
  }
  if (state_ == State::Authorization && stls_available()) caps += "STLS\r\n";
  caps += "IMPLEMENTATION relaygate\r\n.\r\n";
  stream_.queue(caps);
  co_return;
}

asio::awaitable<void> Session::cmd_quit(std::string_view) {
  if (state_ == State::Transaction) {
    state_ = State::Update;
    const Maildrop::Commit done = drop_->commit();  // releases the lock before the reply
    n_deleted_on_quit_ = done.removed;
    if (done.failed) {
      log::error(id_).kv("event", "update-failed").kv("user", user_).kv("not_removed", done.failed);
      err("[SYS/TEMP] Some deleted messages were not removed");
    } else {
      ok("Logging out, " + std::to_string(n_deleted_on_quit_) + " messages deleted");
    }
  } else {
    ok("Logging out");
  }
  end("quit");
  co_return;
}

asio::awaitable<void> Session::cmd_stls(std::string_view args) {
  if (!args.empty()) co_return bad_command("STLS takes no arguments");
  if (stream_.is_tls()) co_return bad_command("Already in TLS");
  if (!stls_available()) co_return bad_command("STLS not available on this port");
  ok("Begin TLS negotiation now");
  size_t discarded = stream_.buffered();
  if (!co_await flush()) co_return;
  const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
  if (auto ec = co_await stream_.start_tls(*tls, kTlsHandshakeTimeout)) {
    log::info(id_).kv("event", "stls").kv("outcome", "failed").kv("error", ec.message());
    end("tls-handshake-failed");
    co_return;
  }
  // RFC 2595 §4: forget everything from the plaintext phase (a USER already sent, too).
  pending_user_.reset();
  log::info(id_)
      .kv("event", "stls")
      .kv("outcome", "ok")
      .kv("tls", stream_.tls_description())
      .kv("discarded_plaintext", discarded);
}

bool Session::auth_refused_before_tls(bool plaintext_mechanism) {
  const char* reason = tls_required_now()                       ? "tls-required"
                       : plaintext_mechanism && !plaintext_ok() ? "encryption-required"
                                                                : nullptr;
  if (reason == nullptr) return false;
  log::info(id_).kv("event", command_).kv("outcome", "rejected").kv("reason", reason).kv("ip", stream_.remote_ip());
  err(tls_required_now() ? "[AUTH] TLS required: use STLS first"
                         : "[AUTH] Plaintext authentication disallowed without TLS");
  return true;
}

asio::awaitable<void> Session::cmd_user(std::string_view args) {
  if (auth_refused_before_tls(true)) co_return;
  if (args.empty() || args.size() > 255) co_return bad_command("USER needs a name");
  pending_user_ = std::string(args);
  // The same reply for every name: it must not reveal which users exist.
  ok("Send your password");
}

asio::awaitable<void> Session::cmd_pass(std::string_view args) {
  if (auth_refused_before_tls(true)) co_return;
  if (!pending_user_) co_return bad_command("Send USER first");
  std::string login_name = std::move(*pending_user_);
  pending_user_.reset();
  // RFC 1939 §7: PASS has one argument, which may contain spaces.
  const std::string password(args);
  const AuthOutcome outcome = co_await srv_.auth.check_password(login_name, password);
  if (outcome.result != AuthOutcome::Result::Ok) co_return co_await login_failed("pop3", login_name, outcome.reason());
  co_await login(outcome.user, "pop3");
}

asio::awaitable<void> Session::cmd_apop(std::string_view args) {
  if (auth_refused_before_tls(false)) co_return;
  const auto a = parse_apop(args);
  if (!a) co_return bad_command("Usage: APOP name digest");
  const LegacySecret ls = srv_.auth.legacy_secret(a->name);
  if (ls.tempfail) co_return co_await login_failed("apop", a->name, "tempfail");
  // Unknown users get the same digest work against a dummy secret.
  const bool good = sasl::apop_verify(apop_timestamp_,
                                      ls.secret ? std::string_view(*ls.secret) : "relaygate-no-such-user", a->digest);
  if (!good || !ls.secret)
    co_return co_await login_failed("apop", a->name, ls.secret ? "bad-digest" : "no-legacy-secret-or-unknown-user");
  co_await login(*ls.user, "apop");
}

asio::awaitable<void> Session::login_failed(const char* method, std::string_view login_name, std::string_view why) {
  ++n_auth_fail_;
  if (why == "tempfail") {
    err("[SYS/TEMP] Temporary authentication failure");
    co_return;
  }
  // Escalating delay per client network, shared with smtpd through authdb (auth/authenticator.h).
  const int64_t failures = co_await srv_.auth.failed(stream_.remote_ip());
  log::warn(id_)
      .kv("event", "auth")
      .kv("outcome", "failed")
      .kv("reason", log::token(why))
      .kv("ip", stream_.remote_ip())
      .kv("proto", "pop3")
      .kv("mech", mech_of(method))
      .kv("login", login_name)
      .kv("tls", stream_.is_tls())
      .kv("failures", failures);
  err("[AUTH] Authentication failed");
}

asio::awaitable<void> Session::login(const std::string& user, const char* method) {
  const int64_t now = std::time(nullptr);
  try {
    drop_ = Maildrop::open(srv_.cfg.maildir_root, user);
    if (!drop_) {
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "in-use")
          .kv("reason", "maildrop-locked")
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_of(method))
          .kv("user", user);
      err("[IN-USE] Mailbox is locked by another POP3 session");
      co_return;
    }
  } catch (const std::exception& e) {
    log::error(id_)
        .kv("event", "auth")
        .kv("outcome", "tempfail")
        .kv("reason", "maildrop-error")
        .kv("ip", stream_.remote_ip())
        .kv("method", method)
        .kv("user", user)
        .kv("error", e.what());
    drop_.reset();
    err("[SYS/TEMP] Cannot open the mailbox");
    co_return;
  }
  try {
    if (!srv_.db.grant(stream_.remote_ip(), user, method, srv_.cfg.grants.ttl_seconds, now))
      throw authdb::Error("user " + user + " vanished during login");
    srv_.auth.succeeded(stream_.remote_ip());
  } catch (const std::exception& e) {
    log::error(id_)
        .kv("event", "auth")
        .kv("outcome", "tempfail")
        .kv("reason", "grant-failed")
        .kv("ip", stream_.remote_ip())
        .kv("method", method)
        .kv("user", user)
        .kv("error", e.what());
    drop_.reset();
    err("[SYS/TEMP] Temporary failure, try again later");
    co_return;
  }
  srv_.status.request();
  user_ = user;
  state_ = State::Transaction;
  const Maildrop::Totals all = drop_->all();
  log::info(id_)
      .kv("event", "auth")
      .kv("outcome", "ok")
      .kv("ip", stream_.remote_ip())
      .kv("proto", "pop3")
      .kv("mech", mech_of(method))
      .kv("user", user)
      .kv("method", method)
      .kv("tls", stream_.is_tls() ? stream_.tls_description() : "no")
      .kv("messages", all.count)
      .kv("grant_ttl", srv_.cfg.grants.ttl_seconds);
  ok("Logged in, " + std::to_string(all.count) + " messages (" + std::to_string(all.octets) + " octets)");
}

asio::awaitable<void> Session::cmd_auth(std::string_view args) {
  if (split_args(args).empty()) {
    // Pre-RFC 5034 clients (and fetchmail) list mechanisms with a bare AUTH.
    if (tls_required_now()) co_return err("[AUTH] TLS required: use STLS first");
    const std::string mechs = usable_mechanisms();  // split_args returns views into it
    std::string out = "+OK\r\n";
    for (auto m : split_args(mechs)) out.append(m).append("\r\n");
    stream_.queue(out + ".\r\n");
    co_return;
  }
  const auto a = parse_auth(args);
  if (!a) co_return bad_command("Usage: AUTH mechanism [initial-response]");
  auto mech = sasl::make_mechanism(a->mechanism, sasl_context());
  if (tls_required_now()) co_return err("[AUTH] TLS required: use STLS first");
  if (!mech || !mechanism_offered(mech->name())) {
    const auto with_tls = config::sasl_mechanisms(srv_.cfg, listener_, true);
    if (mech && !stream_.is_tls() && std::find(with_tls.begin(), with_tls.end(), mech->name()) != with_tls.end())
      co_return err(mech->plaintext() ? "[AUTH] Plaintext authentication disallowed without TLS"
                                      : "[AUTH] This mechanism needs TLS: use STLS first");
    co_return bad_command("Unsupported authentication mechanism");
  }
  const std::string mech_name(mech->name());
  sasl_mech_ = mech_name;

  std::optional<std::string> initial;
  if (a->initial) {
    if (*a->initial == "=") {
      initial = "";  // RFC 5034 §4: "=" is a present but empty initial response
    } else {
      initial = sasl::base64_decode(*a->initial);
      if (!initial) co_return err("[AUTH] Invalid base64 in initial response");
    }
  }
  // The exchange itself is auth/sasl_exchange.h; here only its POP3 framing and replies.
  Pop3SaslTransport transport(*this);
  const SaslOutcome out = co_await run_sasl_exchange(*mech, initial, srv_.auth, transport);
  switch (out.kind) {
    case SaslOutcome::Kind::Ok: co_return co_await login(out.user, "pop3-sasl");
    case SaslOutcome::Kind::Failed:
    case SaslOutcome::Kind::TempFail: co_return co_await login_failed("pop3-sasl", out.login, out.reason);
    case SaslOutcome::Kind::Protocol:
      co_return co_await login_failed(
          "pop3-sasl", out.login,
          out.reason.empty() ? std::string_view("bad-credentials") : std::string_view(out.reason));
    case SaslOutcome::Kind::Closed: end(out.timed_out ? "idle-timeout" : "client-closed"); co_return;
    case SaslOutcome::Kind::TooLong: co_return err("[AUTH] Authentication response too long");
    case SaslOutcome::Kind::BadBase64: co_return err("[AUTH] Invalid base64 in response");
    case SaslOutcome::Kind::Cancelled:
      // RFC 5034 §4: the client cancelled; an abort is not a failed password.
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "aborted")
          .kv("reason", "client-cancelled")
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_name);
      co_return err("[AUTH] Authentication cancelled");
    case SaslOutcome::Kind::Malformed:
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "malformed")
          .kv("reason", log::token(out.reason))
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_name);
      co_return err("[AUTH] Malformed authentication response");
  }
}

Message* Session::message_arg(std::string_view arg) {
  const auto n = parse_number(arg);
  return n ? drop_->find(*n) : nullptr;
}

asio::awaitable<void> Session::cmd_stat(std::string_view args) {
  if (!args.empty()) co_return bad_command("STAT takes no arguments");
  const Maildrop::Totals live = drop_->live();
  ok(std::to_string(live.count) + " " + std::to_string(live.octets));
}

asio::awaitable<void> Session::cmd_list(std::string_view args) {
  if (!args.empty()) {
    Message* m = message_arg(args);
    if (!m) co_return err("No such message");
    co_return ok(std::to_string(drop_->number_of(*m)) + " " + std::to_string(m->entry.size));
  }
  std::string out = "+OK scan listing follows\r\n";
  for (const Message& m : drop_->messages())
    if (!m.deleted) out += std::to_string(drop_->number_of(m)) + " " + std::to_string(m.entry.size) + "\r\n";
  stream_.queue(out + ".\r\n");
}

asio::awaitable<void> Session::cmd_uidl(std::string_view args) {
  if (!args.empty()) {
    Message* m = message_arg(args);
    if (!m) co_return err("No such message");
    co_return ok(std::to_string(drop_->number_of(*m)) + " " + m->entry.uid);
  }
  std::string out = "+OK unique-id listing follows\r\n";
  for (const Message& m : drop_->messages())
    if (!m.deleted) out += std::to_string(drop_->number_of(m)) + " " + m.entry.uid + "\r\n";
  stream_.queue(out + ".\r\n");
}

asio::awaitable<void> Session::send_message(Message& m, std::optional<uint64_t> top_lines) {
  int fd = ::open(m.entry.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    log::error(id_)
        .kv("event", "retr")
        .kv("user", user_)
        .kv("file", m.entry.file.string())
        .kv("error", std::strerror(errno));
    co_return err("[SYS/TEMP] Cannot read the message");
  }
  ok(top_lines ? "top of message follows" : std::to_string(m.entry.size) + " octets");
  maildir::WireEncoder enc(top_lines);
  std::string chunk(kRetrChunk, '\0');
  std::string out;
  bool more = true;
  while (more) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a read error mid-message truncates it; the terminator still follows
    more = enc.feed(std::string_view(chunk.data(), static_cast<size_t>(n)), out);
    if (out.size() >= kFlushThreshold) {
      bytes_sent_ += out.size();
      stream_.queue(out);
      out.clear();
      if (!co_await flush()) break;
    }
  }
  ::close(fd);
  enc.finish(out);
  bytes_sent_ += out.size();
  stream_.queue(out);
}

asio::awaitable<void> Session::cmd_retr(std::string_view args) {
  Message* m = message_arg(args);
  if (!m) co_return err("No such message");
  co_await send_message(*m, std::nullopt);
  if (!m->entry.seen) {
    try {
      drop_->mark_seen(*m);
    } catch (const std::exception& e) {
      log::warn(id_).kv("event", "mark-seen").kv("user", user_).kv("error", e.what());
    }
  }
}

asio::awaitable<void> Session::cmd_top(std::string_view args) {
  auto a = split_args(args);
  if (a.size() != 2) co_return bad_command("Usage: TOP message lines");
  auto lines = parse_number(a[1]);
  if (!lines) co_return bad_command("Invalid line count");
  Message* m = message_arg(a[0]);
  if (!m) co_return err("No such message");
  co_await send_message(*m, *lines);
}

asio::awaitable<void> Session::cmd_dele(std::string_view args) {
  Message* m = message_arg(args);
  if (!m) co_return err("No such message");
  drop_->mark_deleted(*m);
  ok("Marked to be deleted");
}

asio::awaitable<void> Session::cmd_noop(std::string_view args) {
  if (!args.empty()) co_return bad_command("NOOP takes no arguments");
  ok("");
}

asio::awaitable<void> Session::cmd_rset(std::string_view args) {
  if (!args.empty()) co_return bad_command("RSET takes no arguments");
  drop_->reset();
  ok("Maildrop has " + std::to_string(drop_->messages().size()) + " messages");
}

}  // namespace

asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                  net::ConnectionLimiter::Token token) {
  (void)token;  // held for the session's lifetime: releases the connection slot at the end
  Session session(server, std::move(listener), std::move(stream));
  co_await session.run();
}

}  // namespace rg::pop3
