// See smtp_client.h. Timeouts follow RFC 5321 §4.5.3.2 (client side): each command reply
// within command_timeout, the reply to the final "." within data_timeout.
#include "smtpd/outbound/smtp_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "shared/net/errors.h"
#include "shared/net/stream.h"
#include "shared/net/timed.h"
#include "shared/sasl/codec.h"

namespace rg::smtp::client {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kDataChunk = 64 * 1024;  // bytes of the message encoded and written at a time
constexpr auto kQuitTimeout = 10s;

std::string describe(const error_code& ec) {
  if (ec == net::errc::timeout) return "timed out";
  if (ec == asio::error::eof) return "connection closed";
  return ec.message();
}

}  // namespace

Client::Client(asio::any_io_executor executor, std::shared_ptr<const Options> options)
    : executor_(std::move(executor)), opt_(std::move(options)) {
  relay_ = opt_->host + ":" + std::to_string(opt_->port);
}

Client::~Client() = default;

bool Client::is_open() const { return stream_ && stream_->is_open(); }

void Client::close() {
  if (stream_) stream_->close();
  stream_.reset();
}

Reply Client::lost(const char* stage, const std::string& why) {
  close();
  return local_reply(421, "4.4.2", "lost connection with " + relay_ + " while " + stage + ": " + why);
}

asio::awaitable<Reply> Client::read_reply(std::chrono::seconds timeout, const char* stage) {
  if (!stream_) co_return local_reply(421, "4.4.2", "lost connection with " + relay_ + " before " + stage);
  ReplyParser parser(opt_->limits);
  for (;;) {
    auto [ec, line] = co_await stream_->read_line(opt_->limits.max_line, timeout);
    if (ec == net::errc::timeout) {
      close();
      co_return local_reply(421, "4.4.2", "conversation with " + relay_ + " timed out while " + stage);
    }
    if (ec == net::errc::line_too_long) {
      close();
      co_return local_reply(421, "4.5.0", "protocol error: over-long reply line from " + relay_ + " while " + stage);
    }
    if (ec) co_return lost(stage, describe(ec));
    switch (parser.feed(line)) {
      case ReplyParser::complete: co_return parser.take();
      case ReplyParser::need_more: continue;
      case ReplyParser::bad:
        close();
        co_return local_reply(421, "4.5.0", "protocol error: malformed reply from " + relay_ + " while " + stage);
    }
  }
}

asio::awaitable<Reply> Client::command(const std::string& line, std::chrono::seconds timeout, const char* stage) {
  if (!stream_) co_return local_reply(421, "4.4.2", "lost connection with " + relay_ + " before " + stage);
  stream_->queue(line);
  if (auto ec = co_await stream_->flush(timeout)) co_return lost(stage, describe(ec));
  co_return co_await read_reply(timeout, stage);
}

asio::awaitable<Reply> Client::open() {
  close();
  transactions_ = 0;
  caps_ = Capabilities{};
  tls_ = "none";
  const std::string port = std::to_string(opt_->port);
  relay_ = opt_->host + ":" + port;

  asio::ip::tcp::resolver resolver(executor_);
  auto [rec, endpoints] = co_await net::timed(resolver.async_resolve(opt_->host, port, kTuple), opt_->connect_timeout);
  if (rec) co_return local_reply(451, "4.4.3", "cannot resolve " + opt_->host + ": " + describe(rec));
  asio::ip::tcp::socket socket(executor_);
  auto [cec, endpoint] = co_await net::timed(asio::async_connect(socket, endpoints, kTuple), opt_->connect_timeout);
  if (cec) co_return local_reply(451, "4.4.1", "connect to " + relay_ + ": " + describe(cec));
  relay_ = opt_->host + "[" + endpoint.address().to_string() + "]:" + port;
  // Each write is a complete command group or the end of the data: with Nagle, the last
  // small segment would wait for the server's delayed ACK (~40 ms per message on loopback).
  error_code nodelay_ec;
  socket.set_option(asio::ip::tcp::no_delay(true), nodelay_ec);
  stream_ = std::make_unique<net::Stream>(std::move(socket));

  if (opt_->tls == config::TlsMode::Implicit) {
    const std::string name = opt_->host;
    if (auto ec = co_await stream_->start_tls_client(*opt_->tls_context, name, opt_->connect_timeout)) {
      close();
      co_return local_reply(451, "4.7.5", "TLS handshake with " + relay_ + " failed: " + describe(ec));
    }
    tls_ = stream_->tls_description();
  }
  Reply greeting = co_await read_reply(opt_->command_timeout, "receiving the initial server greeting");
  if (greeting.code != 220) {
    if (!greeting.local) co_await quit();
    co_return greeting;
  }
  Reply hello = co_await ehlo();
  if (!hello.positive()) {
    co_await quit();
    co_return hello;
  }
  const bool want_tls = opt_->tls == config::TlsMode::StartTls || opt_->tls == config::TlsMode::Required;
  if (want_tls && !stream_->is_tls()) {
    if (caps_.starttls) {
      Reply t = co_await starttls();
      // Opportunistic TLS goes on in plaintext only after a plain refusal of STARTTLS.
      const bool refused_plainly = !t.positive() && !t.local && is_open() && !stream_->is_tls();
      if (!t.positive() && !(opt_->tls == config::TlsMode::StartTls && refused_plainly)) {
        co_await quit();
        co_return t;
      }
    } else if (opt_->tls == config::TlsMode::Required) {
      co_await quit();
      co_return local_reply(451, "4.7.4", "TLS is required, but was not offered by " + relay_);
    }
  }
  if (!opt_->username.empty()) {
    Reply a = co_await authenticate();
    if (a.code != 235) {
      co_await quit();
      co_return a;
    }
  }
  co_return hello;
}

asio::awaitable<Reply> Client::ehlo() {
  const std::string line = "EHLO " + opt_->helo + "\r\n";
  Reply r = co_await command(line, opt_->command_timeout, "sending EHLO");
  if (r.positive()) {
    caps_ = Capabilities::from_ehlo(r);
    co_return r;
  }
  if (r.local || !is_open()) co_return r;
  caps_ = Capabilities{};  // RFC 5321 §3.2: fall back to HELO, no extensions
  const std::string helo = "HELO " + opt_->helo + "\r\n";
  co_return co_await command(helo, opt_->command_timeout, "sending HELO");
}

asio::awaitable<Reply> Client::starttls() {
  const std::string line = "STARTTLS\r\n";
  Reply r = co_await command(line, opt_->command_timeout, "sending STARTTLS");
  if (r.code != 220) co_return r;
  const std::string name = opt_->host;
  if (auto ec = co_await stream_->start_tls_client(*opt_->tls_context, name, opt_->connect_timeout)) {
    close();
    co_return local_reply(451, "4.7.5", "TLS handshake with " + relay_ + " failed: " + describe(ec));
  }
  tls_ = stream_->tls_description();
  // RFC 3207 §4.2: everything learned before TLS is forgotten; EHLO again.
  co_return co_await ehlo();
}

asio::awaitable<Reply> Client::authenticate() {
  if (!stream_->is_tls() && opt_->tls != config::TlsMode::None)
    co_return local_reply(451, "4.7.0", "not sending credentials to " + relay_ + " without TLS");
  if (caps_.has_auth("PLAIN")) {
    std::string token;
    token.push_back('\0');
    token += opt_->username;
    token.push_back('\0');
    token += opt_->password;
    const std::string line = "AUTH PLAIN " + sasl::base64_encode(token) + "\r\n";
    Reply r = co_await command(line, opt_->command_timeout, "authenticating (AUTH PLAIN)");
    if (r.code == 334 && is_open()) {  // a server that ignored the initial response: cancel
      const std::string cancel = "*\r\n";
      co_await command(cancel, opt_->command_timeout, "cancelling AUTH");
    }
    co_return r;
  }
  if (caps_.has_auth("LOGIN")) {
    const std::string start = "AUTH LOGIN\r\n";
    Reply r = co_await command(start, opt_->command_timeout, "authenticating (AUTH LOGIN)");
    if (r.code != 334) co_return r;
    const std::string user = sasl::base64_encode(opt_->username) + "\r\n";
    r = co_await command(user, opt_->command_timeout, "authenticating (AUTH LOGIN)");
    if (r.code != 334) co_return r;
    const std::string pass = sasl::base64_encode(opt_->password) + "\r\n";
    co_return co_await command(pass, opt_->command_timeout, "authenticating (AUTH LOGIN)");
  }
  co_return local_reply(451, "4.7.0", relay_ + " offers no AUTH mechanism we can use (PLAIN, LOGIN)");
}

asio::awaitable<Reply> Client::send_data(const std::string& message) {
  DataEncoder encoder;
  std::string chunk;
  const std::string_view all(message);
  size_t off = 0;
  do {  // the last chunk goes out together with the terminating "." line
    chunk.clear();
    encoder.feed(all.substr(off, kDataChunk), chunk);
    off += kDataChunk;
    if (off >= all.size()) encoder.finish(chunk);
    stream_->queue(chunk);
    if (auto ec = co_await stream_->flush(opt_->command_timeout)) co_return lost("sending the message", describe(ec));
  } while (off < all.size());
  co_return co_await read_reply(opt_->data_timeout, "sending end of data");
}

asio::awaitable<std::vector<Reply>> Client::send(const std::string& sender, const std::vector<std::string>& recipients,
                                                 std::shared_ptr<const std::string> message) {
  const size_t n = recipients.size();
  std::vector<Reply> out(n);
  if (!is_open()) {
    for (auto& r : out) r = local_reply(421, "4.4.2", "no connection with " + relay_);
    co_return out;
  }
  const uint64_t size = message->size();
  if (caps_.size && *caps_.size > 0 && size > *caps_.size) {
    for (auto& r : out)
      r = local_reply(552, "5.3.4",
                      "message size " + std::to_string(size) + " exceeds size limit " + std::to_string(*caps_.size) +
                          " of " + relay_);
    co_return out;
  }
  ++transactions_;
  std::string mail = "MAIL FROM:" + path(sender);
  if (caps_.size) mail += " SIZE=" + std::to_string(size);
  if (caps_.eightbitmime && has_8bit(*message)) mail += " BODY=8BITMIME";
  mail += "\r\n";
  std::vector<std::string> rcpt_lines;
  for (const auto& r : recipients) rcpt_lines.push_back("RCPT TO:" + path(r) + "\r\n");
  const std::string data = "DATA\r\n";

  Reply mail_reply, data_reply;
  std::vector<Reply> rcpt_replies(n);
  bool data_sent = false;
  if (caps_.pipelining) {  // RFC 2920 §3.1: MAIL, RCPTs and DATA in one go, replies in order
    stream_->queue(mail);
    for (const auto& l : rcpt_lines) stream_->queue(l);
    stream_->queue(data);
    data_sent = true;
    if (auto ec = co_await stream_->flush(opt_->command_timeout)) {
      Reply r = lost("sending MAIL FROM", describe(ec));
      for (auto& o : out) o = r;
      co_return out;
    }
    mail_reply = co_await read_reply(opt_->command_timeout, "sending MAIL FROM");
    for (size_t i = 0; i < n; ++i) rcpt_replies[i] = co_await read_reply(opt_->command_timeout, "sending RCPT TO");
    data_reply = co_await read_reply(opt_->command_timeout, "sending DATA");
  } else {
    mail_reply = co_await command(mail, opt_->command_timeout, "sending MAIL FROM");
    bool any = false;
    for (size_t i = 0; i < n && mail_reply.positive(); ++i) {
      rcpt_replies[i] = co_await command(rcpt_lines[i], opt_->command_timeout, "sending RCPT TO");
      any = any || rcpt_replies[i].positive();
    }
    if (any) {
      data_reply = co_await command(data, opt_->command_timeout, "sending DATA");
      data_sent = true;
    }
  }

  std::vector<size_t> accepted;
  for (size_t i = 0; i < n; ++i) {
    if (!mail_reply.positive())
      out[i] = mail_reply;
    else if (!rcpt_replies[i].positive())
      out[i] = rcpt_replies[i];
    else
      accepted.push_back(i);
  }
  bool delivered = false;
  if (!accepted.empty()) {
    Reply decided = data_reply;
    if (data_reply.code == 354) {
      decided = co_await send_data(*message);
      delivered = decided.positive();
    } else if (data_reply.positive()) {
      decided =
          local_reply(451, "4.5.0", "protocol error: " + relay_ + " answered DATA with " + data_reply.text(false));
    }
    for (size_t i : accepted) out[i] = decided;
  } else if (data_sent && data_reply.code == 354) {
    // A server that took DATA without any recipient: end the empty message at once.
    const std::string dot = ".\r\n";
    co_await command(dot, opt_->data_timeout, "sending end of data");
  }
  if (!delivered && is_open()) {
    const std::string rset = "RSET\r\n";
    Reply r = co_await command(rset, opt_->command_timeout, "sending RSET");
    if (!r.positive()) close();
  }
  co_return out;
}

asio::awaitable<void> Client::quit() {
  if (!is_open()) {
    close();
    co_return;
  }
  const std::string line = "QUIT\r\n";
  const auto timeout = std::min<std::chrono::seconds>(opt_->command_timeout, kQuitTimeout);
  stream_->queue(line);
  if (!co_await stream_->flush(timeout)) co_await read_reply(timeout, "sending QUIT");
  if (stream_) co_await stream_->shutdown(2s);
  close();
}

}  // namespace rg::smtp::client
