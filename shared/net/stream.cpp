// Stream: line reads with hard limits and deadlines over plain TCP or TLS (RFC 3207, 2595, 8314).
// Invariants: buffer_ never holds more than max_octets + one 4 KiB chunk; the handshake starts
// with buffer_ empty (CVE-2011-0411); an idle plain stream holds no read buffer.
#include "shared/net/stream.h"

#include "shared/ip.h"
#include "shared/net/timed.h"

#include <algorithm>
#include <utility>

#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace rg::net {

using std::chrono::steady_clock;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t kChunk = 4096;  // bytes per read; also the idle-buffer release bound

void release_if_empty(std::string& s) {
  if (s.empty() && s.capacity() > 64) std::string().swap(s);
}
}  // namespace

LineScan scan_line(std::string_view buffered, std::size_t max_octets) noexcept {
  const auto lf = buffered.substr(0, max_octets).find('\n');
  if (lf != std::string_view::npos) return {LineScan::complete, lf + 1};
  if (buffered.size() >= max_octets) return {LineScan::too_long, 0};
  return {LineScan::need_more, 0};
}

bool below_rate_floor(const RateFloor& floor, std::uint64_t bytes, Duration elapsed) noexcept {
  if (floor.bytes_per_second == 0 || elapsed <= floor.grace) return false;
  const double seconds = std::chrono::duration<double>(elapsed).count();
  return static_cast<double>(bytes) < static_cast<double>(floor.bytes_per_second) * seconds;
}

std::string canonical_ip(const asio::ip::address& address) {
  // One canonical form for grant keys: the text parser's (shared/ip.h), so an address read from
  // a socket and one typed by an administrator make the same key. A scoped link-local address
  // (fe80::1%eth0), which the parser refuses, keeps Asio's text.
  std::string text = address.to_string();
  return rg::canonical_ip(text).value_or(text);
}

struct Stream::Tls {
  Tls(tcp::socket socket, asio::ssl::context& ctx) : stream(std::move(socket), ctx) {}
  asio::ssl::stream<tcp::socket> stream;
};

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {
  error_code ec;
  if (auto ep = socket_.remote_endpoint(ec); !ec) {
    remote_ip_ = canonical_ip(ep.address());
    remote_port_ = ep.port();
  }
  if (auto ep = socket_.local_endpoint(ec); !ec) local_port_ = ep.port();
  socket_.non_blocking(true, ec);  // fill() reads only after readiness, never blocking
}

void Stream::set_proxied_peer(std::string ip, std::uint16_t port) {
  proxy_ip_ = std::exchange(remote_ip_, std::move(ip));
  remote_port_ = port;
}

Stream::~Stream() = default;
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;

tcp::socket& Stream::lowest_layer() { return tls_ ? tls_->stream.next_layer() : socket_; }

bool Stream::is_open() const { return tls_ ? tls_->stream.next_layer().is_open() : socket_.is_open(); }

std::string Stream::tls_description() const {
  if (!tls_) return {};
  SSL* ssl = tls_->stream.native_handle();
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

asio::awaitable<error_code> Stream::start_tls(asio::ssl::context& ctx, Duration timeout) {
  co_return co_await handshake(ctx, false, {}, timeout);
}

asio::awaitable<error_code> Stream::start_tls_client(asio::ssl::context& ctx, std::string server_name,
                                                     Duration timeout) {
  co_return co_await handshake(ctx, true, std::move(server_name), timeout);
}

asio::awaitable<error_code> Stream::handshake(asio::ssl::context& ctx, bool client, std::string server_name,
                                              Duration timeout) {
  if (tls_) co_return make_error_code(boost::system::errc::operation_not_permitted);
  const auto deadline = steady_clock::now() + timeout;
  if (auto ec = co_await flush(timeout)) co_return ec;
  // Nothing the peer sent in plaintext may be read after the upgrade (CVE-2011-0411).
  buffer_.clear();
  release_if_empty(buffer_);
  discarding_ = false;
  error_code ec;
  socket_.non_blocking(false, ec);
  tls_ = std::make_unique<Tls>(std::move(socket_), ctx);
  SSL* ssl = tls_->stream.native_handle();
  if (client) {  // SNI for names; the name or IP is checked when the context verifies peers
    error_code not_ip;
    asio::ip::make_address(server_name, not_ip);
    if (not_ip) {
      SSL_set_tlsext_host_name(ssl, server_name.c_str());
      SSL_set1_host(ssl, server_name.c_str());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
    }
  }
  const auto type = client ? asio::ssl::stream_base::client : asio::ssl::stream_base::server;
  std::tie(ec) = co_await timed(tls_->stream.async_handshake(type, tuple_awaitable), deadline);
  co_return ec;
}

asio::awaitable<error_code> Stream::fill(steady_clock::time_point deadline) {
  if (tls_) {
    const std::size_t old = buffer_.size();
    buffer_.resize(old + kChunk);
    auto [ec, n] = co_await timed(
        tls_->stream.async_read_some(asio::buffer(buffer_.data() + old, kChunk), tuple_awaitable), deadline);
    buffer_.resize(old + n);
    received_ += n;
    co_return ec;
  }
  // Plain: read what is there; otherwise wait for readability holding no read buffer.
  for (;;) {
    const std::size_t old = buffer_.size();
    buffer_.resize(old + kChunk);
    error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(buffer_.data() + old, kChunk), ec);
    buffer_.resize(old + n);
    received_ += n;
    if (ec != asio::error::would_block && ec != asio::error::try_again) co_return ec;
    if (buffer_.empty())
      std::string().swap(buffer_);
    else
      buffer_.shrink_to_fit();
    std::tie(ec) = co_await timed(socket_.async_wait(tcp::socket::wait_read, tuple_awaitable), deadline);
    if (ec) co_return ec;
  }
}

void Stream::set_transfer_rate_floor(RateFloor floor) {
  floor_kind_ = floor.bytes_per_second ? FloorKind::transfer : FloorKind::none;
  floor_ = floor;
  floor_start_ = steady_clock::now();
  floor_base_ = received_ - buffer_.size();  // bytes already buffered count as received now
}

void Stream::set_line_rate_floor(RateFloor floor) {
  floor_kind_ = floor.bytes_per_second ? FloorKind::line : FloorKind::none;
  floor_ = floor;
  line_started_ = false;
}

void Stream::clear_rate_floor() { floor_kind_ = FloorKind::none; }

void Stream::cancel_read() {
  read_cancelled_ = true;
  // Only a pending read is cancelled: a write under way (a reply, a RETR) finishes first.
  if (reading_) {
    error_code ignored;
    lowest_layer().cancel(ignored);
  }
}

bool Stream::rate_too_low(steady_clock::time_point now) const {
  if (floor_kind_ == FloorKind::none || (floor_kind_ == FloorKind::line && !line_started_)) return false;
  return below_rate_floor(floor_, received_ - floor_base_, now - floor_start_);
}

asio::awaitable<error_code> Stream::fill_checked(steady_clock::time_point deadline) {
  for (;;) {
    if (read_cancelled_) {
      read_cancelled_ = false;
      co_return error_code(asio::error::operation_aborted);
    }
    const auto now = steady_clock::now();
    if (rate_too_low(now)) co_return make_error_code(errc::too_slow);
    const bool measuring = floor_kind_ == FloorKind::transfer || (floor_kind_ == FloorKind::line && line_started_);
    // While a floor is measured, wake every kRateCheckInterval to look at the bytes so far.
    const auto until = measuring ? std::min(deadline, now + kRateCheckInterval) : deadline;
    const std::uint64_t before = received_;
    reading_ = true;
    const error_code ec = co_await fill(until);
    reading_ = false;
    if (read_cancelled_ && ec == asio::error::operation_aborted) continue;  // reported above
    if (ec == errc::timeout && until < deadline) continue;                  // a check slice, not the deadline
    if (floor_kind_ == FloorKind::line && !line_started_ && received_ > before) {
      line_started_ = true;  // the line's first byte: its floor is measured from here
      floor_start_ = steady_clock::now();
      floor_base_ = before;
    }
    co_return ec;
  }
}

asio::awaitable<std::tuple<error_code, std::string>> Stream::read_line(std::size_t max_octets, Duration timeout) {
  const auto deadline = steady_clock::now() + timeout;
  if (floor_kind_ == FloorKind::line) {
    // Each line is measured from its first byte; bytes of it already buffered arrived now.
    line_started_ = !buffer_.empty();
    floor_start_ = steady_clock::now();
    floor_base_ = received_ - buffer_.size();
  }
  for (;;) {
    if (discarding_) {
      const auto lf = buffer_.find('\n');
      buffer_.erase(0, lf == std::string::npos ? buffer_.size() : lf + 1);
      release_if_empty(buffer_);
      if (lf != std::string::npos) {
        discarding_ = false;
        co_return std::tuple{make_error_code(errc::line_too_long), std::string()};
      }
    } else {
      const LineScan scan = scan_line(buffer_, max_octets);
      if (scan.status == LineScan::complete) {
        std::string line = buffer_.substr(0, scan.length);
        buffer_.erase(0, scan.length);
        release_if_empty(buffer_);
        co_return std::tuple{error_code(), std::move(line)};
      }
      if (scan.status == LineScan::too_long) {
        discarding_ = true;
        continue;
      }
    }
    if (auto ec = co_await fill_checked(deadline)) co_return std::tuple{ec, std::string()};
  }
}

bool Stream::has_pending_input() const {
  if (!buffer_.empty()) return true;
  // const_cast: available() is a read-only FIONREAD that Asio does not mark const.
  auto& self = const_cast<Stream&>(*this);
  if (tls_) {
    SSL* ssl = tls_->stream.native_handle();
    if (SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) return true;
  }
  error_code ec;
  return self.lowest_layer().available(ec) > 0;
}

asio::awaitable<bool> Stream::input_ready_within(Duration wait) {
  if (has_pending_input()) co_return true;
  auto [ec] =
      co_await timed(lowest_layer().async_wait(tcp::socket::wait_read, tuple_awaitable), steady_clock::now() + wait);
  if (ec) co_return false;
  if (tls_) co_return true;       // a TLS record arrived
  co_return has_pending_input();  // readable with nothing to read is EOF, not talk
}

asio::awaitable<error_code> Stream::flush(Duration timeout) {
  if (out_.empty()) co_return error_code();
  std::string data;
  data.swap(out_);
  const auto deadline = steady_clock::now() + timeout;
  error_code ec;
  if (tls_)
    std::tie(ec, std::ignore) =
        co_await timed(asio::async_write(tls_->stream, asio::buffer(data), tuple_awaitable), deadline);
  else
    std::tie(ec, std::ignore) =
        co_await timed(asio::async_write(socket_, asio::buffer(data), tuple_awaitable), deadline);
  co_return ec;
}

asio::awaitable<error_code> Stream::write(std::string_view data, Duration timeout) {
  queue(data);
  co_return co_await flush(timeout);
}

asio::awaitable<void> Stream::shutdown(Duration timeout) {
  if (tls_ && is_open()) co_await timed(tls_->stream.async_shutdown(tuple_awaitable), steady_clock::now() + timeout);
  close();
}

void Stream::close() {
  auto& socket = lowest_layer();
  if (!socket.is_open()) return;
  error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace rg::net
