// SMTP session (session.h): the run loop, the command engine's contract, and the proceed_<cmd>
// of EHLO/HELO, STARTTLS, MAIL, RCPT and the small commands. Their refusals that need only the
// facts and the arguments are commands.cpp's check_<cmd>; what is left here is the work and
// what only the work can find (authdb lookups, the relay decision).
#include "smtpd/session.h"

#include <unistd.h>

#include <boost/asio/error.hpp>
#include <chrono>
#include <ctime>

#include "authdb/users.h"
#include "shared/log.h"
#include "shared/net/errors.h"
#include "smtpd/limits.h"
#include "smtpd/relay_policy.h"

namespace rg::smtp {

namespace asio = boost::asio;

namespace {
// The disconnect summary's field names, from the table (every row kCounted), at their ids.
const std::array<std::string_view, kCommandIds>& summary_names() {
  static const auto names =
      protocol::summary_names<kCommandIds, Session::Row>(Session::kCommands, static_cast<size_t>(CommandId::Unknown));
  return names;
}
}  // namespace

Session::Session(Server& server, config::Listener listener, net::Stream stream)
    : srv_(server), listener_(std::move(listener)), stream_(std::move(stream)) {
  id_ = "smtp-" + std::to_string(getpid()) + "-" + std::to_string(++server.sessions_started);
  srv_.track(this);
}

Session::~Session() { srv_.untrack(this); }

Facts Session::facts() const {
  Facts f;
  f.state = state_;
  f.esmtp = esmtp_;
  f.tls_active = stream_.is_tls();
  f.starttls_offered = listener_.tls == config::TlsMode::StartTls || listener_.tls == config::TlsMode::Required;
  f.authenticated = !auth_user_.empty();
  f.recipients = rcpts_.size();
  f.max_recipients = static_cast<size_t>(srv_.cfg.smtpd.max_recipients);
  f.max_message_size = static_cast<uint64_t>(srv_.cfg.smtpd.max_message_size);
  return f;
}

void Session::begin(const Row* row) {
  command_ = row ? row->log_name : "unknown";
  current_ = row ? row->id : CommandId::Unknown;
}

void Session::reply(int code, std::string_view enhanced, std::string_view text) {
  // RFC 5321 §4.2: exactly one space between the code and the text (RFC 2034 enhanced code first).
  std::string line = std::to_string(code);
  line.append(" ");
  if (!enhanced.empty()) line.append(enhanced).append(" ");
  line.append(text).append("\r\n");
  stream_.queue(line);
  if (code >= 400) ++errors_;
}

asio::awaitable<bool> Session::flush() {
  if (auto ec = co_await stream_.flush(limits::kWriteTimeout)) {
    closing_ = true;
    co_return false;
  }
  co_return true;
}

// One log line about the command being handled (shared/log.h): `event=<command> outcome=
// reason= ip=` first, so client-supplied values the caller adds come after them.
log::Line Session::event_line(log::Level level, std::string_view outcome, std::string_view reason) const {
  log::Line line(level, id_);
  line.kv("event", command_).kv("outcome", outcome).kv("reason", log::token(reason)).kv("ip", stream_.remote_ip());
  return line;
}

// Every refusal: counted against the command, logged with its reason, then the reply.
void Session::refuse(const Refusal& r) {
  count(false);
  event_line(r.level, "rejected", r.reason).kv("code", r.code);
  reply(r.code, r.enhanced, r.text);
}

void Session::refuse_unknown(std::string_view) { refuse(smtp::refusal_unknown()); }

net::RateFloor Session::rate_floor() const {
  const auto& c = srv_.cfg.smtpd;
  return {static_cast<std::uint64_t>(std::max<int64_t>(c.min_data_rate, 0)),
          std::chrono::seconds(c.data_rate_grace_seconds)};
}

void Session::rate_too_low(std::string_view event, uint64_t bytes) {
  reply(451, "4.4.2", srv_.cfg.hostname + " Error: data rate too low");
  log::info(id_).kv("event", event).kv("outcome", "too-slow").kv("ip", stream_.remote_ip()).kv("bytes", bytes);
  count(false);
  closing_ = true;
}

asio::awaitable<void> Session::sync_error() {
  reply(554, "5.5.0", "Error: SMTP protocol synchronization");
  log::warn(id_)
      .kv("event", "sync-error")
      .kv("outcome", "rejected")
      .kv("reason", "pipelining")
      .kv("ip", stream_.remote_ip())
      .kv("state", static_cast<int>(state_));
  closing_ = true;
  co_return;
}

std::vector<std::string> Session::offered_mechanisms() const {
  return config::sasl_mechanisms(srv_.cfg, listener_, stream_.is_tls());
}

bool Session::is_local_domain(const Mailbox& m) const {
  if (m.literal) return false;
  for (const auto& d : srv_.cfg.local_domains)
    if (d == m.domain) return true;
  return false;
}

void Session::reset_transaction() {
  from_.reset();
  rcpts_.clear();
  declared_size_ = 0;
  if (state_ == State::Mail || state_ == State::Rcpt) state_ = State::Greeted;
}

asio::awaitable<void> Session::run() {
  if (!co_await srv_.begin_session(stream_, listener_, id_, limits::kTlsHandshakeTimeout)) co_return;
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
  const auto line_too_long = [this] {
    reply(500, "5.5.2", "Error: line too long");
    stats_.count(static_cast<size_t>(CommandId::Unknown), false);
  };
  while (!closing_) {
    if (!stream_.has_pending_input() && !co_await flush()) {
      reason = "write-error";
      break;
    }
    // A command line is held to the data rate from its first byte (a line that never ends);
    // between commands only the command timeout applies. DATA measures the whole message.
    stream_.set_line_rate_floor(rate_floor());
    auto [ec, raw] = co_await stream_.read_line(limits::kAuthLine, idle);
    if (ec == net::errc::timeout) {
      reply(421, "4.4.2", srv_.cfg.hostname + " Error: timeout exceeded");
      reason = "timeout";
      break;
    }
    if (ec == net::errc::too_slow) {
      rate_too_low("command", stream_.buffered());
      reason = "too-slow";
      break;
    }
    if (ec == asio::error::operation_aborted && srv_.stopping()) {
      // SIGTERM's drain cancelled the idle read (stop_if_idle): RFC 5321 §3.8's goodbye, written
      // here, inside TLS when the session is TLS, bounded by the shutdown timeout below.
      reply(421, "4.3.2", srv_.cfg.hostname + " Service shutting down");
      reason = "server-stopping";
      break;
    }
    if (ec == net::errc::line_too_long) {
      line_too_long();
    } else if (ec) {
      reason = srv_.stopping() ? "server-stopping" : ec == asio::error::eof ? "client-closed" : "read-error";
      break;
    } else {
      const CommandLine line = check_command_line(raw);
      switch (line.problem) {
        case CommandLine::Problem::TooLong: line_too_long(); break;
        case CommandLine::Problem::ControlCharacter:
          // RFC 5321 §4.1: a NUL, a bare CR or another control character inside a command is a
          // syntax error, never passed to the table.
          begin(nullptr);
          refuse({501, "5.5.2", "Syntax error: control character in command", "control-character"});
          break;
        case CommandLine::Problem::None: co_await protocol::dispatch<Session>(*this, kCommands, line.text); break;
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
  if (closing_ && reason == "quit" && !data_aborted_.empty()) reason = data_aborted_;  // not a QUIT
  if (closing_ && reason == "quit" && errors_ > 0 && stats_.total(static_cast<size_t>(CommandId::Quit)) == 0)
    reason = "closed-by-server";
  // While the daemon stops, the goodbye gets the shutdown timeout, not a full write timeout.
  co_await stream_.flush(reason == "server-stopping" ? limits::kShutdownTimeout : limits::kWriteTimeout);
  co_await stream_.shutdown(limits::kShutdownTimeout);
  // Postfix's summary (shared/protocol/command.h) without its commands= total, as smtpd always wrote it.
  auto line = log::info(id_);
  line.kv("event", "disconnect")
      .kv("reason", reason)
      .kv("ip", stream_.remote_ip())
      .kv("proto", "smtp")
      .kv("user", auth_user_.empty() ? std::string("-") : auth_user_);
  stats_.append_fields_to(line, summary_names());
}

asio::awaitable<void> Session::greet(std::string_view args, bool extended) {
  count(true);
  helo_ = printable(args.substr(0, args.find(' ')), kMaxDomain);
  esmtp_ = extended;
  reset_transaction();
  state_ = State::Greeted;
  if (!extended) co_return reply(250, "", srv_.cfg.hostname);
  std::vector<std::string> lines = {srv_.cfg.hostname, "PIPELINING",
                                    "SIZE " + std::to_string(srv_.cfg.smtpd.max_message_size), "ENHANCEDSTATUSCODES",
                                    "8BITMIME"};
  if (starttls_available()) lines.push_back("STARTTLS");
  if (!tls_required_now() && auth_user_.empty()) {
    // The administrator's ordered list for this listener and TLS state (auth.mechanisms,
    // auth.mechanisms_without_tls): what EHLO advertises is exactly what AUTH accepts.
    std::string mechs;
    for (const auto& name : offered_mechanisms()) mechs += (mechs.empty() ? "" : " ") + name;
    if (!mechs.empty()) lines.push_back("AUTH " + mechs);
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i)
    out += "250" + std::string(i + 1 < lines.size() ? "-" : " ") + lines[i] + "\r\n";
  stream_.queue(out);
}

asio::awaitable<void> Session::proceed_ehlo(std::string_view args) { co_await greet(args, true); }
asio::awaitable<void> Session::proceed_helo(std::string_view args) { co_await greet(args, false); }

asio::awaitable<void> Session::proceed_starttls(std::string_view) {
  count(true);
  reply(220, "2.0.0", "Ready to start TLS");
  const size_t discarded = stream_.buffered();
  if (!co_await flush()) co_return;
  const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
  if (auto ec = co_await stream_.start_tls(*tls, limits::kTlsHandshakeTimeout)) {
    log::info(id_).kv("event", "starttls").kv("outcome", "failed").kv("error", ec.message());
    closing_ = true;
    co_return;
  }
  // RFC 3207 §4.2: forget everything learned before TLS; the client must EHLO again.
  helo_.clear();
  auth_user_.clear();
  auth_mech_.clear();
  reset_transaction();
  state_ = State::Connected;
  log::info(id_)
      .kv("event", "starttls")
      .kv("outcome", "ok")
      .kv("tls", stream_.tls_description())
      .kv("discarded_plaintext", discarded);
}

// The decision is smtpd/relay_policy.h; here the authdb calls (on the database threads, within
// database_timeout_ms: authdb/client.h) and their logging.
asio::awaitable<Session::Relay> Session::relay_permission() {
  // Checked in authdb on every call: a grant made a second ago by pop3d counts, an expired
  // one never does (no cache that could go stale).
  const int64_t now = std::time(nullptr);
  const std::string ip = stream_.remote_ip();
  // decide_relay is pure: a first pass tells whether the grant is needed at all (AUTH and
  // trusted_networks decide without the database), the second takes the grant looked up.
  bool needs_grant = false;
  RelayDecision d = decide_relay(auth_user_, ip, srv_.trusted, [&]() -> GrantLookup {
    needs_grant = true;
    return {GrantLookup::Kind::None, {}};
  });
  if (needs_grant) {
    GrantLookup found;
    try {
      auto lookup = [ip, now](authdb::Store& s) { return s.live_grant(ip, now); };
      if (auto g = co_await srv_.db.run(authdb::Lane::Read, "check grant", lookup))
        found = {GrantLookup::Kind::Found, g->user};
    } catch (const authdb::Error& e) {
      log::error(id_).kv("event", "relay-check-failed").kv("error", e.what());
      found = {GrantLookup::Kind::DatabaseError, {}};
    }
    d = decide_relay(auth_user_, ip, srv_.trusted, [&] { return found; });
  }
  switch (d.kind) {
    case RelayDecision::Kind::Denied: co_return Relay::Denied;
    case RelayDecision::Kind::TempFail: co_return Relay::TempFail;
    case RelayDecision::Kind::Allowed: break;
  }
  relay_by_ = d.relay_by;
  if (d.relay_by.rfind("grant:", 0) == 0) {
    try {
      auto touch = [ip, now](authdb::Store& s) { s.touch(ip, now); };
      co_await srv_.db.run(authdb::Lane::Write, "touch grant", touch);
    } catch (const authdb::Error& e) {
      log::error(id_).kv("event", "relay-check-failed").kv("error", e.what());
      co_return Relay::TempFail;
    }
  }
  co_return Relay::Allowed;
}

asio::awaitable<void> Session::proceed_mail(std::string_view args) {
  // RFC 6409 §4.3 / RFC 8314: submission ports take mail only from authorized clients.
  if (submission()) {
    const Relay r = co_await relay_permission();
    if (r == Relay::TempFail) co_return refuse({451, "4.3.0", "Temporary lookup failure", "database"});
    if (r == Relay::Denied)
      co_return refuse({530, "5.7.0", "Authentication required", "auth-required", log::Level::Warning});
  }
  MailCommand mail = parse_mail(facts(), args);
  count(true);
  from_ = std::move(mail.from);
  declared_size_ = mail.size;
  state_ = State::Mail;
  log::info(id_)
      .kv("event", "mail")
      .kv("outcome", "accepted")
      .kv("ip", stream_.remote_ip())
      .kv("from", from_->null ? "<>" : from_->mailbox.text())
      .kv("size", mail.size);
  reply(250, "2.1.0", "Ok");
}

asio::awaitable<void> Session::proceed_rcpt(std::string_view args) {
  Rcpt r{parse_rcpt(args), false, {}};
  const std::string addr = r.mailbox.text();
  if (is_local_domain(r.mailbox)) {
    // A local part is a user name or nothing: u%ext, ext!u, "u@ext" never name a user and
    // never relay; and a name can never reach a path (authdb/users.h rules).
    bool valid_name = !r.mailbox.quoted && !authdb::user_name_problem(r.mailbox.local);
    // A cached positive answer needs no database (authdb/user_cache.h): local mail flows while
    // the database is locked. A miss asks the read lane.
    std::optional<std::string> user;
    if (valid_name) {
      const std::string name = authdb::canonical_user_name(r.mailbox.local);
      user = srv_.rcpt_users.find(name);
      if (!user) {
        try {
          auto find = [name](authdb::Store& s) { return s.find_user(name); };
          const auto rec = co_await srv_.db.run(authdb::Lane::Read, "look up user", find);
          if (rec && rec->enabled) {
            user = rec->name;
            srv_.rcpt_users.put(name, rec->name);
          }
        } catch (const authdb::Error& e) {
          log::error(id_).kv("event", "rcpt-lookup-failed").kv("error", e.what());
          co_return refuse({451, "4.3.0", "<" + printable(addr) + ">: Temporary lookup failure", "database"});
        }
      }
    }
    if (!user) {
      count(false);
      event_line(log::Level::Info, "rejected", "unknown-user").kv("to", addr);
      co_return reply(550, "5.1.1",
                      "<" + printable(addr) + ">: Recipient address rejected: User unknown in local recipient table");
    }
    r.local = true;
    r.user = *user;
  } else {
    // Unauthorized clients learn nothing about the configuration: 554 whether or not a
    // smarthost exists; "no smarthost" is only for clients that would have been allowed.
    Relay rel = co_await relay_permission();
    if (rel == Relay::TempFail) {
      count(false);
      event_line(log::Level::Error, "tempfail", "database").kv("to", addr);
      co_return reply(451, "4.3.0", "<" + printable(addr) + ">: Temporary lookup failure");
    }
    if (rel == Relay::Denied) {
      count(false);
      event_line(log::Level::Warning, "rejected", "relay-denied").kv("to", addr);
      co_return reply(554, "5.7.1", "<" + printable(addr) + ">: Relay access denied");
    }
    // Issue 5: without a smarthost the gateway never relays (it is no Internet MTA).
    if (!srv_.cfg.smarthost.configured()) {
      count(false);
      event_line(log::Level::Warning, "rejected", "no-smarthost").kv("to", addr).kv("by", relay_by_);
      co_return reply(550, "5.7.1", "<" + printable(addr) + ">: Relay access denied: no smarthost is configured");
    }
  }
  count(true);
  log::info(id_)
      .kv("event", "rcpt")
      .kv("outcome", "accepted")
      .kv("ip", stream_.remote_ip())
      .kv("to", addr)
      .kv("local", r.local)
      .kv("by", r.local ? std::string("local") : relay_by_);
  rcpts_.push_back(std::move(r));
  state_ = State::Rcpt;
  reply(250, "2.1.5", "Ok");
}

asio::awaitable<void> Session::proceed_rset(std::string_view) {
  count(true);
  reset_transaction();
  reply(250, "2.0.0", "Ok");
  co_return;
}

asio::awaitable<void> Session::proceed_noop(std::string_view) {
  count(true);
  reply(250, "2.0.0", "Ok");
  co_return;
}

asio::awaitable<void> Session::proceed_vrfy(std::string_view) {
  count(true);
  // RFC 5321 §3.5.3: 252 neither confirms nor denies, so names cannot be harvested.
  reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
  co_return;
}

asio::awaitable<void> Session::proceed_help(std::string_view) {
  count(true);
  reply(214, "2.0.0", "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
  co_return;
}

asio::awaitable<void> Session::proceed_quit(std::string_view) {
  count(true);
  reply(221, "2.0.0", "Bye");
  closing_ = true;
  co_return;
}

asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                  net::ConnectionLimiter::Token token) {
  (void)token;  // held for the session's lifetime
  Session session(server, std::move(listener), std::move(stream));
  co_await session.run();
}

}  // namespace rg::smtp
