// SMTP session. States: CONNECTED → GREETED (EHLO/HELO) → MAIL → RCPT, back to GREETED after
// DATA or RSET; STARTTLS returns to CONNECTED. Commands come from one table with flags; each
// handler checks state and arguments (503/501) before doing the work (OpenSMTPD style).
// Invariants: a non-local RCPT is accepted only for SMTP AUTH, a live grant checked at RCPT
// time, or trusted_networks — never when authdb cannot answer (451 4.3.0); only
// CRLF "." CRLF ends DATA (RFC 5321 §4.1.1.4, CVE-2023-51764); 250 after DATA only once the
// message is fsync'd in every Maildir and in the spool; no plaintext byte survives STARTTLS.
#include "smtpd/session.h"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <system_error>

#include "auth/sasl_exchange.h"
#include "authdb/users.h"
#include "shared/log.h"
#include "shared/maildir.h"
#include "shared/net/errors.h"
#include "shared/sasl/codec.h"
#include "shared/sasl/sasl.h"
#include "shared/spool.h"
#include "smtpd/address.h"
#include "smtpd/data_reader.h"
#include "smtpd/received.h"
#include "smtpd/relay_policy.h"
#include "smtpd/server.h"

namespace rg::smtp {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// RFC 5321 §4.5.3.1.4: command lines of at least 512 octets; AUTH lines carry up to 12288
// octets of response (RFC 4954 §4), so the reader allows that and other commands stop at kMaxCommandLine.
constexpr size_t kMaxCommandLine = 2048;
constexpr size_t kMaxAuthLine = 12288 + 64;
constexpr size_t kMaxSaslResponse = 12288 + 2;  // RFC 4954 §4, with CRLF
// DATA is read with a bound larger than the text line limit (kMaxTextLine, data_reader.h) so an
// over-long line is still seen whole, with its real line ending.
constexpr size_t kDataReadLimit = 64 * 1024;
constexpr auto kWriteTimeout = 60s;
constexpr auto kTlsHandshakeTimeout = 30s;

enum class State { Connected, Greeted, Mail, Rcpt };
enum Flags : unsigned {
  kBeforeTls = 1,     // allowed before STARTTLS on a "required" listener
  kSyncCheck = 2,     // unauthenticated pipelining past this command is a sync error (Postfix ≥ 3.9)
};

struct Rcpt {
  Mailbox mailbox;
  bool local = false;
  std::string user;  // local recipients: canonical user name
};

struct CommandStat {
  const char* name;
  unsigned ok = 0, total = 0;
};

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

class Session final : public Drainable {
 public:
  Session(Server& server, config::Listener listener, net::Stream stream)
      : srv_(server), listener_(std::move(listener)), stream_(std::move(stream)) {
    id_ = "smtp-" + std::to_string(getpid()) + "-" + std::to_string(++server.sessions_started);
    srv_.track(this);
  }
  ~Session() override { srv_.untrack(this); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  asio::awaitable<void> run();
  void stop_if_idle() override {
    if (!busy_) stream_.close();  // the pending read ends; run() logs and returns
  }

 private:
  using Handler = asio::awaitable<void> (Session::*)(std::string_view args);
  struct Command {
    std::string_view name;
    std::string_view log_name;  // the log's event name and the disconnect summary's counter
    Handler handler;
    unsigned flags;
  };
  static const Command kCommands[];

  void reply(int code, std::string_view enhanced, std::string_view text) {
    // RFC 5321 §4.2: exactly one space between the code and the text (RFC 2034 enhanced code first).
    std::string line = std::to_string(code);
    line.append(" ");
    if (!enhanced.empty()) line.append(enhanced).append(" ");
    line.append(text).append("\r\n");
    stream_.queue(line);
    if (code >= 400) ++errors_;
  }
  asio::awaitable<bool> flush() {
    if (auto ec = co_await stream_.flush(kWriteTimeout)) {
      closing_ = true;
      co_return false;
    }
    co_return true;
  }
  void count(std::string_view name, bool ok) {
    for (auto& s : stats_)
      if (std::string_view(s.name) == name) {
        ++s.total;
        s.ok += ok;
        return;
      }
  }
  unsigned total_of(std::string_view name) const {
    for (const auto& s : stats_)
      if (std::string_view(s.name) == name) return s.total;
    return 0;
  }
  // One log line about the command being handled (shared/log.h): `event=<command> outcome=
  // reason= ip=` first, so client-supplied values the caller adds come after them.
  log::Line event_line(log::Level level, std::string_view outcome, std::string_view reason) const {
    log::Line line(level, id_);
    line.kv("event", command_).kv("outcome", outcome).kv("reason", log::token(reason)).kv("ip", stream_.remote_ip());
    return line;
  }
  // Every refusal: counted against the command, logged with its reason, then the reply.
  void refuse(int code, std::string_view enhanced, std::string_view text, std::string_view reason,
              log::Level level = log::Level::Info) {
    count(command_, false);
    event_line(level, "rejected", reason).kv("code", code);
    reply(code, enhanced, text);
  }
  bool tls_required_now() const { return listener_.tls == config::TlsMode::Required && !stream_.is_tls(); }
  bool starttls_available() const {
    return !stream_.is_tls() && (listener_.tls == config::TlsMode::StartTls || listener_.tls == config::TlsMode::Required);
  }
  bool submission() const { return listener_.mode != config::SmtpMode::Relay; }
  sasl::Context sasl_context() const { return {srv_.cfg.hostname, "smtp", ""}; }
  std::vector<std::string> offered_mechanisms() const {
    return config::sasl_mechanisms(srv_.cfg, listener_, stream_.is_tls());
  }
  std::string advertised_mechanisms() const;
  bool is_local_domain(const Mailbox& m) const {
    if (m.literal) return false;
    for (const auto& d : srv_.cfg.local_domains)
      if (d == m.domain) return true;
    return false;
  }
  enum class Relay { Allowed, Denied, TempFail };
  Relay relay_permission();
  void reset_transaction() {
    from_.reset();
    rcpts_.clear();
    declared_size_ = 0;
    if (state_ == State::Mail || state_ == State::Rcpt) state_ = State::Greeted;
  }
  asio::awaitable<void> sync_error();

  asio::awaitable<void> dispatch(std::string_view line);
  asio::awaitable<void> cmd_ehlo(std::string_view);
  asio::awaitable<void> cmd_helo(std::string_view);
  asio::awaitable<void> cmd_starttls(std::string_view);
  asio::awaitable<void> cmd_auth(std::string_view);
  asio::awaitable<void> cmd_mail(std::string_view);
  asio::awaitable<void> cmd_rcpt(std::string_view);
  asio::awaitable<void> cmd_data(std::string_view);
  asio::awaitable<void> cmd_rset(std::string_view);
  asio::awaitable<void> cmd_noop(std::string_view);
  asio::awaitable<void> cmd_vrfy(std::string_view);
  asio::awaitable<void> cmd_help(std::string_view);
  asio::awaitable<void> cmd_quit(std::string_view);
  asio::awaitable<void> greet(std::string_view args, bool extended);
  asio::awaitable<void> auth_failed(std::string_view mech, std::string_view login, std::string_view why);
  asio::awaitable<void> auth_succeeded(const std::string& user, std::string_view mech);
  asio::awaitable<void> deliver(std::shared_ptr<const std::string> body);
  class SmtpSaslTransport;

  Server& srv_;
  config::Listener listener_;
  net::Stream stream_;
  std::string id_;
  std::string_view command_ = "unknown";  // lower-case name of the command being handled
  State state_ = State::Connected;
  std::string helo_;
  bool esmtp_ = false;
  std::string auth_user_;   // SMTP AUTH identity, empty if none
  std::string auth_mech_;
  std::string relay_by_;    // how the current transaction may relay: "sasl:u", "grant:u", "trusted"
  std::optional<Path> from_;
  std::vector<Rcpt> rcpts_;
  uint64_t declared_size_ = 0;
  int64_t errors_ = 0;
  bool closing_ = false;
  bool busy_ = false;  // receiving or delivering a message: SIGTERM lets it finish
  std::vector<CommandStat> stats_ = {{"ehlo"}, {"helo"}, {"starttls"}, {"auth"}, {"mail"}, {"rcpt"},
                                     {"data"}, {"rset"}, {"noop"}, {"vrfy"}, {"help"}, {"quit"}, {"unknown"}};
};

const Session::Command Session::kCommands[] = {
    {"EHLO", "ehlo", &Session::cmd_ehlo, kBeforeTls | kSyncCheck},
    {"HELO", "helo", &Session::cmd_helo, kBeforeTls | kSyncCheck},
    {"STARTTLS", "starttls", &Session::cmd_starttls, kBeforeTls},
    {"AUTH", "auth", &Session::cmd_auth, 0},
    {"MAIL", "mail", &Session::cmd_mail, 0},
    {"RCPT", "rcpt", &Session::cmd_rcpt, 0},
    {"DATA", "data", &Session::cmd_data, kSyncCheck},
    {"RSET", "rset", &Session::cmd_rset, kBeforeTls},
    {"NOOP", "noop", &Session::cmd_noop, kBeforeTls},
    {"VRFY", "vrfy", &Session::cmd_vrfy, 0},
    {"HELP", "help", &Session::cmd_help, kBeforeTls},
    {"QUIT", "quit", &Session::cmd_quit, kBeforeTls},
};

// SMTP framing of the SASL exchange (RFC 4954 §4): "334 <base64>" out, one line in, bounded
// by the SASL response limit and the command timeout.
class Session::SmtpSaslTransport final : public SaslTransport {
 public:
  explicit SmtpSaslTransport(Session& s) : s_(s) {}
  asio::awaitable<bool> send_challenge(const std::string& base64) override {
    s_.stream_.queue("334 " + base64 + "\r\n");
    co_return co_await s_.flush();
  }
  asio::awaitable<SaslResponse> read_response() override {
    auto [ec, raw] = co_await s_.stream_.read_line(kMaxSaslResponse, std::chrono::seconds(s_.srv_.cfg.smtpd.command_timeout_seconds));
    SaslResponse r;
    if (ec == net::errc::line_too_long) r.status = SaslResponse::Status::TooLong;
    else if (ec == net::errc::timeout) r.status = SaslResponse::Status::Timeout;
    else if (ec) r.status = SaslResponse::Status::Closed;
    while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.pop_back();
    r.text = std::move(raw);
    co_return r;
  }

 private:
  Session& s_;
};

// The administrator's ordered list for this listener and TLS state (auth.mechanisms,
// auth.mechanisms_without_tls): what EHLO advertises is exactly what AUTH accepts.
std::string Session::advertised_mechanisms() const {
  std::string out;
  for (const auto& name : offered_mechanisms()) out += (out.empty() ? "" : " ") + name;
  return out;
}

asio::awaitable<void> Session::sync_error() {
  reply(554, "5.5.0", "Error: SMTP protocol synchronization");
  log::warn(id_).kv("event", "sync-error").kv("outcome", "rejected").kv("reason", "pipelining").kv("ip", stream_.remote_ip())
      .kv("state", static_cast<int>(state_));
  closing_ = true;
  co_return;
}

asio::awaitable<void> Session::run() {
  log::info(id_).kv("event", "connect").kv("ip", stream_.remote_ip()).kv("port", stream_.remote_port())
      .kv("listener", listener_.port).kv("mode", config::to_string(listener_.mode));
  if (listener_.tls == config::TlsMode::Implicit) {
    const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
    if (auto ec = co_await stream_.start_tls(*tls, kTlsHandshakeTimeout)) {
      log::info(id_).kv("event", "disconnect").kv("reason", "tls-handshake-failed").kv("error", ec.message());
      co_return;
    }
  }
  // RFC 5321 §4.3.1: the client waits for the greeting; one that talks first is a spammer
  // or a smuggling probe (Postfix postscreen "pregreet").
  bool early = srv_.cfg.smtpd.greeting_pause_ms > 0
                   ? co_await stream_.input_ready_within(std::chrono::milliseconds(srv_.cfg.smtpd.greeting_pause_ms))
                   : stream_.has_pending_input();
  std::string reason = "quit";
  if (early) {
    co_await sync_error();
    reason = "pregreet";
  } else {
    reply(220, "", srv_.cfg.hostname + " ESMTP relaygate");
  }
  const auto idle = std::chrono::seconds(srv_.cfg.smtpd.command_timeout_seconds);
  while (!closing_) {
    if (!stream_.has_pending_input() && !co_await flush()) {
      reason = "write-error";
      break;
    }
    auto [ec, raw] = co_await stream_.read_line(kMaxAuthLine, idle);
    if (ec == net::errc::timeout) {
      reply(421, "4.4.2", srv_.cfg.hostname + " Error: timeout exceeded");
      reason = "timeout";
      break;
    }
    if (ec == net::errc::line_too_long) {
      reply(500, "5.5.2", "Error: line too long");
      count("unknown", false);
    } else if (ec) {
      reason = srv_.stopping() ? "server-stopping" : ec == asio::error::eof ? "client-closed" : "read-error";
      break;
    } else {
      if (raw.size() > kMaxCommandLine && upper(std::string_view(raw).substr(0, 5)) != "AUTH ") {
        reply(500, "5.5.2", "Error: line too long");
        count("unknown", false);
      } else {
        while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.pop_back();
        // RFC 5321 §4.1: commands are printable US-ASCII; a NUL, a bare CR or another control
        // character inside a command is a syntax error, never passed to a handler.
        if (std::any_of(raw.begin(), raw.end(), [](char ch) { return (ch >= 0 && ch < 0x20 && ch != '\t') || ch == 0x7f; })) {
          command_ = "unknown";
          refuse(501, "5.5.2", "Syntax error: control character in command", "control-character");
        } else {
          co_await dispatch(raw);
        }
      }
    }
    if (!closing_ && srv_.stopping()) {
      // A transaction that was under way when SIGTERM came has finished: now end politely.
      reply(421, "4.3.2", srv_.cfg.hostname + " Service shutting down");
      reason = "server-stopping";
      break;
    }
    if (!closing_ && errors_ >= srv_.cfg.smtpd.max_errors) {
      reply(421, "4.7.0", srv_.cfg.hostname + " Error: too many errors");
      reason = "too-many-errors";
      break;
    }
  }
  if (closing_ && reason == "quit" && errors_ > 0 && total_of("quit") == 0) reason = "closed-by-server";
  co_await stream_.flush(kWriteTimeout);
  co_await stream_.shutdown(2s);
  auto line = log::info(id_);
  line.kv("event", "disconnect").kv("reason", reason).kv("ip", stream_.remote_ip()).kv("proto", "smtp")
      .kv("user", auth_user_.empty() ? std::string("-") : auth_user_);
  for (const auto& s : stats_) {
    if (s.total == 0) continue;
    line.kv(s.name, s.ok == s.total ? std::to_string(s.total) : std::to_string(s.ok) + "/" + std::to_string(s.total));
  }
}

asio::awaitable<void> Session::dispatch(std::string_view line) {
  std::string_view keyword = line.substr(0, line.find(' '));
  std::string_view args = keyword.size() < line.size() ? line.substr(keyword.size() + 1) : std::string_view();
  std::string name = upper(keyword);
  command_ = "unknown";
  for (const auto& c : kCommands) {
    if (c.name != name) continue;
    command_ = c.log_name;
    if (tls_required_now() && !(c.flags & kBeforeTls))
      co_return refuse(530, "5.7.0", "Must issue a STARTTLS command first", "tls-required");
    // RFC 2920 §3.1: EHLO/HELO and DATA end a pipelined group; an unauthenticated client that
    // sends on without waiting for the reply is refused (Postfix smtpd_forbid_unauth_pipelining).
    if ((c.flags & kSyncCheck) && auth_user_.empty() && stream_.has_pending_input()) co_return co_await sync_error();
    co_await (this->*c.handler)(args);
    co_return;
  }
  refuse(500, "5.5.2", "Error: command not recognized", "unknown-command");
}

asio::awaitable<void> Session::greet(std::string_view args, bool extended) {
  const char* name = extended ? "ehlo" : "helo";
  std::string_view host = args.substr(0, args.find(' '));
  if (host.empty()) {
    count(name, false);
    co_return reply(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
  }
  count(name, true);
  helo_ = printable(host, 255);
  esmtp_ = extended;
  reset_transaction();
  state_ = State::Greeted;
  if (!extended) co_return reply(250, "", srv_.cfg.hostname);
  std::vector<std::string> lines = {srv_.cfg.hostname, "PIPELINING", "SIZE " + std::to_string(srv_.cfg.smtpd.max_message_size),
                                    "ENHANCEDSTATUSCODES", "8BITMIME"};
  if (starttls_available()) lines.push_back("STARTTLS");
  if (!tls_required_now() && auth_user_.empty()) {
    std::string mechs = advertised_mechanisms();
    if (!mechs.empty()) lines.push_back("AUTH " + mechs);
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += "250" + std::string(i + 1 < lines.size() ? "-" : " ") + lines[i] + "\r\n";
  stream_.queue(out);
}

asio::awaitable<void> Session::cmd_ehlo(std::string_view args) { co_await greet(args, true); }
asio::awaitable<void> Session::cmd_helo(std::string_view args) { co_await greet(args, false); }

asio::awaitable<void> Session::cmd_starttls(std::string_view args) {
  if (!args.empty()) {
    co_return refuse(501, "5.5.4", "Syntax: STARTTLS", "syntax");
  }
  if (stream_.is_tls()) {
    co_return refuse(503, "5.5.1", "Error: TLS already active", "bad-sequence");
  }
  if (!starttls_available()) {
    co_return refuse(502, "5.5.1", "Error: command not implemented", "not-implemented");
  }
  count("starttls", true);
  reply(220, "2.0.0", "Ready to start TLS");
  const size_t discarded = stream_.buffered();
  if (!co_await flush()) co_return;
  const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
  if (auto ec = co_await stream_.start_tls(*tls, kTlsHandshakeTimeout)) {
    log::info(id_).kv("event", "starttls").kv("outcome", "failed").kv("error", ec.message());
    closing_ = true;
    co_return;
  }
  // RFC 3207 §4.2: forget everything learned before TLS; the client must EHLO again.
  state_ = State::Connected;
  helo_.clear();
  auth_user_.clear();
  auth_mech_.clear();
  reset_transaction();
  state_ = State::Connected;
  log::info(id_).kv("event", "starttls").kv("outcome", "ok").kv("tls", stream_.tls_description())
      .kv("discarded_plaintext", discarded);
}

asio::awaitable<void> Session::auth_failed(std::string_view mech, std::string_view login, std::string_view why) {
  count("auth", false);
  if (why == "tempfail") co_return reply(454, "4.7.0", "Temporary authentication failure");
  int64_t failures = co_await srv_.auth.failed(stream_.remote_ip());
  log::warn(id_).kv("event", "auth").kv("outcome", "failed").kv("reason", log::token(why)).kv("ip", stream_.remote_ip())
      .kv("proto", "smtp").kv("mech", mech).kv("login", login).kv("tls", stream_.is_tls()).kv("failures", failures);
  reply(535, "5.7.8", "Error: authentication failed");
}

asio::awaitable<void> Session::auth_succeeded(const std::string& user, std::string_view mech) {
  count("auth", true);
  srv_.auth.succeeded(stream_.remote_ip());
  auth_user_ = user;
  auth_mech_ = std::string(mech);
  log::info(id_).kv("event", "auth").kv("outcome", "ok").kv("ip", stream_.remote_ip()).kv("proto", "smtp").kv("mech", mech)
      .kv("user", user)
      .kv("tls", stream_.is_tls() ? stream_.tls_description() : "no");
  reply(235, "2.7.0", "Authentication successful");
  co_return;
}

asio::awaitable<void> Session::cmd_auth(std::string_view args) {
  // Checks first (RFC 4954 §4): state, then mechanism, then TLS policy.
  if (state_ == State::Connected || !esmtp_) {
    co_return refuse(503, "5.5.1", "Error: send EHLO first", "bad-sequence");
  }
  if (!auth_user_.empty()) {
    co_return refuse(503, "5.5.1", "Error: already authenticated", "bad-sequence");
  }
  if (state_ != State::Greeted) {
    co_return refuse(503, "5.5.1", "Error: MAIL transaction in progress", "bad-sequence");
  }
  std::string_view mech_name = args.substr(0, args.find(' '));
  std::string_view rest = mech_name.size() < args.size() ? args.substr(mech_name.size() + 1) : std::string_view();
  if (mech_name.empty() || rest.find(' ') != std::string_view::npos) {
    co_return refuse(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]", "syntax");
  }
  auto mech = sasl::make_mechanism(mech_name, sasl_context());
  const auto offered = offered_mechanisms();
  if (!mech) {
    co_return refuse(504, "5.5.4", "Unrecognized authentication type", "unknown-mechanism");
  }
  if (std::find(offered.begin(), offered.end(), mech->name()) == offered.end()) {
    count("auth", false);
    // RFC 4954 §6: 538 when the mechanism would be allowed once TLS is active.
    const auto with_tls = config::sasl_mechanisms(srv_.cfg, listener_, true);
    if (!stream_.is_tls() && std::find(with_tls.begin(), with_tls.end(), mech->name()) != with_tls.end())
      co_return reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
    co_return reply(504, "5.5.4", "Unrecognized authentication type");
  }
  const std::string mname(mech->name());
  std::optional<std::string> initial;
  if (!rest.empty()) {
    if (rest == "=") {
      initial = "";  // RFC 4954 §4: "=" is an empty initial response
    } else {
      initial = sasl::base64_decode(rest);
      if (!initial) {
        co_return refuse(501, "5.5.2", "Error: invalid base64 data", "bad-base64");
      }
    }
  }
  // The exchange itself is auth/sasl_exchange.h; here only its SMTP framing and replies.
  SmtpSaslTransport transport(*this);
  const SaslOutcome out = co_await run_sasl_exchange(*mech, initial, srv_.auth, transport);
  switch (out.kind) {
    case SaslOutcome::Kind::Ok: co_return co_await auth_succeeded(out.user, mname);
    case SaslOutcome::Kind::Failed:
    case SaslOutcome::Kind::TempFail: co_return co_await auth_failed(mname, out.login, out.reason);
    case SaslOutcome::Kind::Closed: closing_ = true; co_return;
    case SaslOutcome::Kind::TooLong:
      co_return refuse(500, "5.5.6", "Error: authentication exchange line is too long", "syntax");
    case SaslOutcome::Kind::BadBase64: co_return refuse(501, "5.5.2", "Error: invalid base64 data", "bad-base64");
    case SaslOutcome::Kind::Cancelled:
      count("auth", false);
      event_line(log::Level::Info, "aborted", "client-cancelled").kv("proto", "smtp").kv("mech", mname);
      co_return reply(501, "5.7.0", "Authentication aborted");
    case SaslOutcome::Kind::Malformed:
    case SaslOutcome::Kind::Protocol:
      count("auth", false);
      event_line(log::Level::Info, "malformed", out.reason.empty() ? std::string_view("malformed") : std::string_view(out.reason))
          .kv("proto", "smtp").kv("mech", mname);
      co_return reply(501, "5.5.2", "Error: malformed authentication response");
  }
}

// The decision is smtpd/relay_policy.h; here the authdb calls and their logging.
Session::Relay Session::relay_permission() {
  // Checked in authdb on every call: a grant made a second ago by pop3d counts, an expired
  // one never does (no cache that could go stale).
  const int64_t now = std::time(nullptr);
  const RelayDecision d = decide_relay(auth_user_, stream_.remote_ip(), srv_.trusted, [&]() -> GrantLookup {
    try {
      if (auto g = srv_.db.live_grant(stream_.remote_ip(), now)) return {GrantLookup::Kind::Found, g->user};
      return {GrantLookup::Kind::None, {}};
    } catch (const authdb::Error& e) {
      log::error(id_).kv("event", "relay-check-failed").kv("error", e.what());
      return {GrantLookup::Kind::DatabaseError, {}};
    }
  });
  switch (d.kind) {
    case RelayDecision::Kind::Denied: return Relay::Denied;
    case RelayDecision::Kind::TempFail: return Relay::TempFail;
    case RelayDecision::Kind::Allowed: break;
  }
  relay_by_ = d.relay_by;
  if (d.relay_by.rfind("grant:", 0) == 0) {
    try {
      srv_.db.touch(stream_.remote_ip(), now);
    } catch (const authdb::Error& e) {
      log::error(id_).kv("event", "relay-check-failed").kv("error", e.what());
      return Relay::TempFail;
    }
  }
  return Relay::Allowed;
}

asio::awaitable<void> Session::cmd_mail(std::string_view args) {
  if (state_ == State::Connected) {
    co_return refuse(503, "5.5.1", "Error: send HELO/EHLO first", "bad-sequence");
  }
  if (state_ != State::Greeted) {
    co_return refuse(503, "5.5.1", "Error: nested MAIL command", "bad-sequence");
  }
  auto parsed = parse_path_arg(args, "FROM:", true);
  if (!parsed.path) {
    co_return refuse(501, "5.1.7", "Bad sender address syntax: " + parsed.error->text, "syntax");
  }
  const MailParams mp = parse_mail_params(parsed.path->params, static_cast<uint64_t>(srv_.cfg.smtpd.max_message_size));
  if (mp.refusal) {
    co_return refuse(mp.refusal->code, mp.refusal->enhanced, mp.refusal->text, mp.refusal->reason);
  }
  const uint64_t size = mp.size;
  // RFC 6409 §4.3 / RFC 8314: submission ports take mail only from authorized clients.
  if (submission()) {
    Relay r = relay_permission();
    if (r == Relay::TempFail) {
      co_return refuse(451, "4.3.0", "Temporary lookup failure", "database");
    }
    if (r == Relay::Denied) {
      co_return refuse(530, "5.7.0", "Authentication required", "auth-required", log::Level::Warning);
    }
  }
  count("mail", true);
  from_ = std::move(parsed.path);
  declared_size_ = size;
  state_ = State::Mail;
  log::info(id_).kv("event", "mail").kv("outcome", "accepted").kv("ip", stream_.remote_ip())
      .kv("from", from_->null ? "<>" : from_->mailbox.text()).kv("size", size);
  reply(250, "2.1.0", "Ok");
}

asio::awaitable<void> Session::cmd_rcpt(std::string_view args) {
  if (state_ != State::Mail && state_ != State::Rcpt) {
    co_return refuse(503, "5.5.1", "Error: need MAIL command", "bad-sequence");
  }
  auto parsed = parse_path_arg(args, "TO:", false);
  if (!parsed.path) {
    co_return refuse(501, "5.1.3", "Bad recipient address syntax: " + parsed.error->text, "syntax");
  }
  if (!parsed.path->params.empty()) {
    co_return refuse(555, "5.5.4", "Unsupported option: " + printable(parsed.path->params.front().first, 32), "unsupported-option");
  }
  if (rcpts_.size() >= static_cast<size_t>(srv_.cfg.smtpd.max_recipients)) {
    co_return refuse(452, "4.5.3", "Error: too many recipients", "too-many-recipients");
  }
  Rcpt r{parsed.path->mailbox, false, {}};
  const std::string addr = r.mailbox.text();
  if (is_local_domain(r.mailbox)) {
    // A local part is a user name or nothing: u%ext, ext!u, "u@ext" never name a user and
    // never relay; and a name can never reach a path (authdb/users.h rules).
    bool valid_name = !r.mailbox.quoted && !authdb::user_name_problem(r.mailbox.local);
    std::optional<authdb::UserAuth> user;
    try {
      if (valid_name) user = srv_.db.find_user(authdb::canonical_user_name(r.mailbox.local));
    } catch (const authdb::Error& e) {
      log::error(id_).kv("event", "rcpt-lookup-failed").kv("error", e.what());
      co_return refuse(451, "4.3.0", "<" + printable(addr) + ">: Temporary lookup failure", "database");
    }
    if (!user || !user->enabled) {
      count("rcpt", false);
      event_line(log::Level::Info, "rejected", "unknown-user").kv("to", addr);
      co_return reply(550, "5.1.1", "<" + printable(addr) + ">: Recipient address rejected: User unknown in local recipient table");
    }
    r.local = true;
    r.user = user->name;
  } else {
    // Unauthorized clients learn nothing about the configuration: 554 whether or not a
    // smarthost exists; "no smarthost" is only for clients that would have been allowed.
    Relay rel = relay_permission();
    if (rel == Relay::TempFail) {
      count("rcpt", false);
      event_line(log::Level::Error, "tempfail", "database").kv("to", addr);
      co_return reply(451, "4.3.0", "<" + printable(addr) + ">: Temporary lookup failure");
    }
    if (rel == Relay::Denied) {
      count("rcpt", false);
      event_line(log::Level::Warning, "rejected", "relay-denied").kv("to", addr);
      co_return reply(554, "5.7.1", "<" + printable(addr) + ">: Relay access denied");
    }
    // Issue 5: without a smarthost the gateway never relays (it is no Internet MTA).
    if (!srv_.cfg.smarthost.configured()) {
      count("rcpt", false);
      event_line(log::Level::Warning, "rejected", "no-smarthost").kv("to", addr).kv("by", relay_by_);
      co_return reply(550, "5.7.1", "<" + printable(addr) + ">: Relay access denied: no smarthost is configured");
    }
  }
  count("rcpt", true);
  log::info(id_).kv("event", "rcpt").kv("outcome", "accepted").kv("ip", stream_.remote_ip()).kv("to", addr).kv("local", r.local)
      .kv("by", r.local ? std::string("local") : relay_by_);
  rcpts_.push_back(std::move(r));
  state_ = State::Rcpt;
  reply(250, "2.1.5", "Ok");
}

asio::awaitable<void> Session::cmd_data(std::string_view args) {
  if (!args.empty()) {
    co_return refuse(501, "5.5.4", "Syntax: DATA", "syntax");
  }
  if (state_ != State::Rcpt) {
    co_return refuse(503, "5.5.1", state_ == State::Mail ? "Error: need RCPT command" : "Error: need MAIL command", "bad-sequence");
  }
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  if (!co_await flush()) co_return;
  busy_ = true;
  struct Idle {  // busy_ ends with this command however it ends
    bool& flag;
    ~Idle() { flag = false; }
  } idle_again{busy_};

  const uint64_t max_size = static_cast<uint64_t>(srv_.cfg.smtpd.max_message_size);
  const bool normalize = listener_.mode == config::SmtpMode::Relay;
  DataReader data(max_size, normalize,
                  static_cast<size_t>(std::min<uint64_t>(declared_size_ ? declared_size_ + 1024 : 16384, max_size + 1024)));
  const auto start = Clock::now();
  const auto timeout = std::chrono::seconds(srv_.cfg.smtpd.data_timeout_seconds);
  for (;;) {
    auto [ec, line] = co_await stream_.read_line(kDataReadLimit, timeout);
    if (ec == net::errc::line_too_long) {
      // How the dropped line ended is unknown, so the next line never ends DATA (no
      // smuggling); such a client ends in the data timeout and nothing is accepted.
      data.feed_overlong(kDataReadLimit);
      continue;
    }
    if (ec) {
      if (ec == net::errc::timeout) reply(421, "4.4.2", srv_.cfg.hostname + " Error: timeout exceeded");
      log::info(id_).kv("event", "data").kv("outcome", "aborted").kv("error", ec.message()).kv("bytes", data.received());
      count("data", false);
      closing_ = true;
      co_return;
    }
    if (data.feed(line) == DataReader::Step::End) break;
    const auto elapsed = Clock::now() - start;
    if (srv_.cfg.smtpd.min_data_rate > 0 && elapsed > std::chrono::seconds(srv_.cfg.smtpd.data_rate_grace_seconds)) {
      double secs = std::chrono::duration<double>(elapsed).count();
      if (static_cast<double>(data.received()) / secs < static_cast<double>(srv_.cfg.smtpd.min_data_rate)) {
        reply(421, "4.4.2", srv_.cfg.hostname + " Error: data rate too low");
        log::info(id_).kv("event", "data").kv("outcome", "too-slow").kv("bytes", data.received());
        count("data", false);
        closing_ = true;
        co_return;
      }
    }
  }
  // RFC 2920 §3.1: without PIPELINING (a HELO session) the client must wait for the reply to
  // the final dot; bytes already behind it are a synchronization error like the other sync points.
  if (!esmtp_ && auth_user_.empty() && stream_.has_pending_input()) {
    count("data", false);
    reset_transaction();
    co_return co_await sync_error();
  }
  if (data.too_big()) {
    count("data", false);
    reset_transaction();
    co_return reply(552, "5.3.4", "Error: message file too big");
  }
  if (data.too_long()) {
    count("data", false);
    reset_transaction();
    co_return reply(500, "5.5.2", "Error: message has a line longer than 998 octets (RFC 5321 §4.5.3.1.6)");
  }
  if (data.bare_line_ending() && !normalize) {
    // Submission clients must send CRLF only (RFC 5321 §2.3.8); refusing avoids smuggling.
    count("data", false);
    reset_transaction();
    co_return reply(550, "5.5.2", "Error: bare <CR> or <LF> received; use CRLF line endings");
  }
  const auto body = std::make_shared<const std::string>(data.take_body());
  co_await deliver(body);
}

// Writes the message into each local recipient's Maildir and the spool (for the rest) on the
// disk pool, all fsync'd before the 250; any failure removes what was already written so a
// retry by the client cannot deliver twice.
asio::awaitable<void> Session::deliver(std::shared_ptr<const std::string> body) {
  const std::string qid = spool::new_queue_id();
  const std::time_t now = std::time(nullptr);
  TraceInput trace{helo_, stream_.remote_ip(), srv_.cfg.hostname, esmtp_, std::nullopt, auth_user_, auth_mech_, relay_by_,
                    {}, qid, static_cast<int64_t>(now)};
  if (stream_.is_tls()) trace.tls = stream_.tls_description();
  for (const auto& r : rcpts_) trace.recipients.push_back(r.mailbox.text());
  const std::string sender = from_->null ? "" : from_->mailbox.text();
  const TraceHeaders headers = trace_headers(trace, sender);
  const std::string& received = headers.received;
  const std::string& return_path = headers.return_path;

  std::vector<std::string> local_users;
  spool::Envelope env;
  for (const auto& r : rcpts_) {
    if (r.local) {
      if (std::find(local_users.begin(), local_users.end(), r.user) == local_users.end()) local_users.push_back(r.user);
    } else {
      env.recipients.push_back({r.mailbox.text(), "pending", ""});
    }
  }
  env.id = qid;
  env.sender = sender;
  env.created_at = now;
  env.next_attempt_at = now;
  env.size = received.size() + body->size();
  env.client_ip = stream_.remote_ip();
  env.auth = relay_by_;

  struct Result {
    int err = 0;
    std::string error;
  };
  auto job = [root = srv_.cfg.maildir_root, spool = srv_.spool, local_users, env, body, received, return_path]() {
    Result res;
    std::vector<std::filesystem::path> written;
    try {
      for (const auto& u : local_users) {
        maildir::Maildir md(root, u);
        md.ensure();
        written.push_back(md.deliver({return_path, received, *body}));
      }
      if (!env.recipients.empty()) spool.enqueue(env, {received, *body});
    } catch (const std::system_error& e) {
      res.err = e.code().value();
      res.error = e.what();
    } catch (const std::exception& e) {
      res.err = EIO;
      res.error = e.what();
    }
    if (res.err)
      for (const auto& p : written) ::unlink(p.c_str());
    return res;
  };
  Result res = co_await srv_.disk_pool.run(job);
  if (res.err) {
    count("data", false);
    log::error(id_).kv("event", "delivery-failed").kv("id", qid).kv("error", res.error);
    reset_transaction();
    if (res.err == ENOSPC || res.err == EDQUOT) co_return reply(452, "4.3.1", "Insufficient system storage");
    co_return reply(451, "4.3.0", "Error: local delivery failed, try again later");
  }
  count("data", true);
  log::info(id_).kv("event", "queued").kv("id", qid).kv("from", sender.empty() ? "<>" : sender)
      .kv("local", local_users.size()).kv("relay", env.recipients.size()).kv("size", body->size())
      .kv("by", relay_by_.empty() ? std::string("local") : relay_by_);
  reset_transaction();
  reply(250, "2.0.0", "Ok: queued as " + qid);
}

asio::awaitable<void> Session::cmd_rset(std::string_view args) {
  if (!args.empty()) {
    co_return refuse(501, "5.5.4", "Syntax: RSET", "syntax");
  }
  count("rset", true);
  reset_transaction();
  reply(250, "2.0.0", "Ok");
}

asio::awaitable<void> Session::cmd_noop(std::string_view) {
  count("noop", true);
  reply(250, "2.0.0", "Ok");
  co_return;
}

asio::awaitable<void> Session::cmd_vrfy(std::string_view args) {
  if (args.empty()) {
    co_return refuse(501, "5.5.4", "Syntax: VRFY address", "syntax");
  }
  count("vrfy", true);
  // RFC 5321 §3.5.3: 252 neither confirms nor denies, so names cannot be harvested.
  reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

asio::awaitable<void> Session::cmd_help(std::string_view) {
  count("help", true);
  reply(214, "2.0.0", "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
  co_return;
}

asio::awaitable<void> Session::cmd_quit(std::string_view) {
  count("quit", true);
  reply(221, "2.0.0", "Bye");
  closing_ = true;
  co_return;
}

}  // namespace

asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                  net::ConnectionLimiter::Token token) {
  (void)token;  // held for the session's lifetime
  Session session(server, std::move(listener), std::move(stream));
  co_await session.run();
}

}  // namespace rg::smtp
