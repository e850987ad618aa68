// The POP3 session: its run loop, the engine's contract (shared/protocol/command.h) and the
// work of the commands that need no login (CAPA, QUIT, STLS) or run in TRANSACTION (RFC 1939
// §5). The logins are in session_login.cpp; which command runs when, and its checks, in
// commands.h.
#include "pop3d/session.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "pop3d/command_parse.h"
#include "pop3d/limits.h"
#include "pop3d/server.h"
#include "shared/ascii.h"
#include "shared/fd.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "shared/maildir.h"
#include "shared/net/errors.h"
#include "shared/sasl/codec.h"
#include "shared/sasl/sasl.h"

namespace rg::pop3 {

namespace asio = boost::asio;

Session::Session(Server& server, config::Listener listener, net::Stream stream)
    : srv_(server), listener_(std::move(listener)), stream_(std::move(stream)) {
  id_ = "pop3-" + std::to_string(getpid()) + "-" + std::to_string(++server.sessions_started);
  srv_.track(this);
}

Session::~Session() { srv_.untrack(this); }

// SIGTERM: the pending read ends (or the next one, when a reply such as a RETR is being
// written: it finishes first) and run() writes the -ERR goodbye itself, inside TLS when the
// session is TLS, then closes. Nothing is removed: deletions happen only at QUIT (RFC 1939 §6).
void Session::stop_if_idle() { stream_.cancel_read(); }

void Session::reply(std::string_view status, std::string_view text) {
  std::string line(status);
  if (!text.empty()) line.append(" ").append(text);
  line += "\r\n";
  stream_.queue(line);
}

asio::awaitable<bool> Session::flush() {
  auto ec = co_await stream_.flush(Limits::kWriteTimeout);
  if (ec) end("write-error");
  co_return !ec;
}

// Every refusal is logged (issue 9) in the shared order: event (the command), outcome, reason, ip.
void Session::bad_command(std::string_view text) {
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

bool Session::tls_required_now() const { return listener_.tls == config::TlsMode::Required && !stream_.is_tls(); }
bool Session::plaintext_ok() const { return stream_.is_tls() || srv_.cfg.auth.allow_plaintext_without_tls; }
bool Session::stls_available() const {
  return !stream_.is_tls() &&
         (listener_.tls == config::TlsMode::StartTls || listener_.tls == config::TlsMode::Required);
}

std::vector<std::string> Session::offered_mechanisms() const {
  return config::sasl_mechanisms(srv_.cfg, listener_, stream_.is_tls());
}

std::string Session::usable_mechanisms() const {
  std::string out;
  for (const auto& name : offered_mechanisms()) out += (out.empty() ? "" : " ") + name;
  return out;
}

std::string_view Session::mech_of(std::string_view method) const {
  if (method == "pop3") return "USER";
  if (method == "apop") return "APOP";
  return sasl_mech_;
}

void Session::begin(const Row* row) {
  command_id_ = row ? row->id : CommandId::Unknown;
  command_ = row ? row->log_name : "unknown";
  failed_ = false;
  facts_ = Facts{state_,
                 stream_.is_tls(),
                 stls_available(),
                 plaintext_ok(),
                 pending_user_.has_value(),
                 offered_mechanisms(),
                 config::sasl_mechanisms(srv_.cfg, listener_, true)};
}

void Session::refuse(const Refusal& r) {
  switch (r.kind) {
    case Refusal::Kind::BadCommand: return bad_command(r.text);
    case Refusal::Kind::Policy:
      log::info(id_)
          .kv("event", command_)
          .kv("outcome", "rejected")
          .kv("reason", r.reason)
          .kv("ip", stream_.remote_ip());
      return err(r.text);
    case Refusal::Kind::Answer: return err(r.text);
  }
}

void Session::refuse_unknown(std::string_view keyword) {
  bad_command(keyword.empty() ? "Empty command" : "Unknown command");
}

asio::awaitable<void> Session::run() {
  if (!co_await srv_.begin_session(stream_, listener_, id_, Limits::kTlsHandshakeTimeout)) co_return;
  // RFC 1939 §7: the APOP timestamp is unique per greeting (pid, counter, time, random bytes).
  apop_timestamp_ = sasl::make_msgid_challenge(srv_.cfg.hostname);
  ok("POP3 server ready " + apop_timestamp_);
  while (!quit_) {
    // Replies to pipelined commands go out together (RFC 2449 §6.6), but a client that keeps
    // sending without reading must not make the queue grow without bound.
    if ((!stream_.has_pending_input() || stream_.queued() >= Limits::kFlushThreshold) && !co_await flush()) break;
    const auto idle = std::chrono::seconds(srv_.cfg.pop3d.idle_timeout_seconds);
    // A command line is held to a rate floor from its first byte (Limits::kLineRateFloor); a
    // client idle between commands is left to the idle timeout.
    stream_.set_line_rate_floor(Limits::kLineRateFloor);
    auto [ec, raw] = co_await stream_.read_line(Limits::kCommandLine, idle);
    if (ec == net::errc::timeout) {
      err("Disconnected for inactivity");
      end("idle-timeout");
      break;
    }
    if (ec == net::errc::too_slow) {
      log::info(id_).kv("event", "command").kv("outcome", "too-slow").kv("ip", stream_.remote_ip());
      err("Line rate too low, closing connection");
      end("too-slow");
      break;
    }
    if (ec == asio::error::operation_aborted && srv_.stopping()) {
      err("[SYS/TEMP] Server shutting down");
      end("server-stopping");
      break;
    }
    if (ec && ec != net::errc::line_too_long) {
      end(srv_.stopping() ? "server-stopping" : ec == asio::error::eof ? "client-closed" : "read-error");
      break;
    }
    // Named, not a temporary inside co_await: g++ 12 destroys such temporaries twice.
    const std::string line = strip_eol(std::move(raw));
    if (ec == net::errc::line_too_long) {
      begin(nullptr);
      bad_command("Line too long (RFC 2449: at most 255 octets)");
    } else if (ascii::has_control(line)) {
      // RFC 1939 §3: commands are printable ASCII; a NUL or other control character is refused.
      begin(nullptr);
      bad_command("Control character in command");
    } else {
      co_await protocol::dispatch<Session>(*this, kCommands, line);
    }
    stats_.count(static_cast<size_t>(command_id_), !failed_);
    if (!quit_ && srv_.stopping()) {  // SIGTERM came while this command ran: end after it
      err("[SYS/TEMP] Server shutting down");
      end("server-stopping");
    }
  }
  // A session that ends any way but QUIT in TRANSACTION removes nothing (RFC 1939 §6); the
  // maildrop is free for the next session before the goodbye is even sent.
  drop_.reset();
  // While the daemon stops, the goodbye gets the shutdown timeout, not a full write timeout.
  co_await stream_.flush(std::string_view(end_reason_) == "server-stopping" ? Limits::kShutdownTimeout
                                                                            : Limits::kWriteTimeout);
  co_await stream_.shutdown(Limits::kShutdownTimeout);
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

asio::awaitable<void> Session::proceed_capa(std::string_view) {
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

asio::awaitable<void> Session::proceed_quit(std::string_view) {
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

asio::awaitable<void> Session::proceed_stls(std::string_view) {
  ok("Begin TLS negotiation now");
  size_t discarded = stream_.buffered();
  if (!co_await flush()) co_return;
  const auto tls = srv_.tls;  // kept alive across the handshake even if SIGHUP replaces it
  if (auto ec = co_await stream_.start_tls(*tls, Limits::kTlsHandshakeTimeout)) {
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

Message* Session::message_arg(std::string_view arg) {
  const auto n = parse_number(arg);
  return n ? drop_->find(*n) : nullptr;
}

asio::awaitable<void> Session::proceed_stat(std::string_view) {
  const Maildrop::Totals live = drop_->live();
  ok(std::to_string(live.count) + " " + std::to_string(live.octets));
  co_return;
}

asio::awaitable<void> Session::proceed_list(std::string_view args) {
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

asio::awaitable<void> Session::proceed_uidl(std::string_view args) {
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
  Fd fd(::open(m.entry.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    log::error(id_)
        .kv("event", "retr")
        .kv("user", user_)
        .kv("file", m.entry.file.string())
        .kv("error", std::strerror(errno));
    co_return err("[SYS/TEMP] Cannot read the message");
  }
  ok(top_lines ? "top of message follows" : std::to_string(m.entry.size) + " octets");
  maildir::WireEncoder enc(top_lines);
  std::string chunk(Limits::kRetrChunk, '\0');
  std::string out;
  bool more = true;
  while (more) {
    const ssize_t n = fsutil::read_some(fd.get(), chunk.data(), chunk.size());
    if (n <= 0) break;  // a read error mid-message truncates it; the terminator still follows
    more = enc.feed(std::string_view(chunk.data(), static_cast<size_t>(n)), out);
    if (out.size() >= Limits::kFlushThreshold) {
      bytes_sent_ += out.size();
      stream_.queue(out);
      out.clear();
      if (!co_await flush()) break;
    }
  }
  fd.reset();
  enc.finish(out);
  bytes_sent_ += out.size();
  stream_.queue(out);
}

asio::awaitable<void> Session::proceed_retr(std::string_view args) {
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

asio::awaitable<void> Session::proceed_top(std::string_view args) {
  const auto a = split_args(args);  // check_top: two numbers
  Message* m = message_arg(a[0]);
  if (!m) co_return err("No such message");
  co_await send_message(*m, *parse_number(a[1]));
}

asio::awaitable<void> Session::proceed_dele(std::string_view args) {
  Message* m = message_arg(args);
  if (!m) co_return err("No such message");
  drop_->mark_deleted(*m);
  ok("Marked to be deleted");
}

asio::awaitable<void> Session::proceed_noop(std::string_view) {
  ok("");
  co_return;
}

asio::awaitable<void> Session::proceed_rset(std::string_view) {
  drop_->reset();
  ok("Maildrop has " + std::to_string(drop_->messages().size()) + " messages");
  co_return;
}

asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                  net::ConnectionLimiter::Token token) {
  (void)token;  // held for the session's lifetime: releases the connection slot at the end
  Session session(server, std::move(listener), std::move(stream));
  co_await session.run();
}

}  // namespace rg::pop3
