// One client or server connection: plain TCP, upgradable in place to TLS (STARTTLS RFC 3207,
// STLS RFC 2595) or TLS from the start (RFC 8314). Invariants: no network outcome throws; no
// byte read before the TLS handshake is ever returned after it; memory per idle stream is small.
#pragma once

#include "shared/net/errors.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

namespace boost::asio::ssl {
class context;
}

namespace rg::net {

namespace asio = boost::asio;
using boost::system::error_code;
using Duration = std::chrono::steady_clock::duration;

// Where the first line of `buffered` ends. A line ends at LF (bare CR is data); its length
// includes the LF and must be <= max_octets. Pure, no I/O: the line splitter of read_line.
struct LineScan {
  enum Status { complete, need_more, too_long } status;
  std::size_t length;  // bytes of the line including "\n" when complete, else 0
};
LineScan scan_line(std::string_view buffered, std::size_t max_octets) noexcept;

// A floor on the rate bytes arrive at, which read_line enforces while it waits for bytes: once
// `grace` has passed since the floor's start, fewer than bytes_per_second * elapsed bytes
// received since the start end the read with errc::too_slow. This bounds a peer that trickles
// bytes without a line end, which a line deadline alone lets hold its slot for the whole
// timeout. bytes_per_second == 0 is no floor.
struct RateFloor {
  std::uint64_t bytes_per_second = 0;
  Duration grace{};
};
// Whether `bytes` received in `elapsed` since the floor's start are below it. Pure.
bool below_rate_floor(const RateFloor& floor, std::uint64_t bytes, Duration elapsed) noexcept;
// How often read_line wakes to check a rate floor while no byte arrives.
inline constexpr std::chrono::milliseconds kRateCheckInterval{500};

// Canonical text form of an address, as rg::canonical_ip (shared/ip.h) makes it from text:
// IPv4-mapped IPv6 (::ffff:a.b.c.d) folds to a.b.c.d.
std::string canonical_ip(const asio::ip::address& address);

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket);
  ~Stream();
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Peer address in canonical form and ports, captured at construction (valid after close), or
  // the client a PROXY protocol header named (set_proxied_peer).
  const std::string& remote_ip() const { return remote_ip_; }
  std::uint16_t remote_port() const { return remote_port_; }
  std::uint16_t local_port() const { return local_port_; }
  // After a valid PROXY protocol header (proxy_reader.h): `ip` (canonical) and `port` become the
  // peer every caller sees, and the connection's own peer, the balancer, becomes proxy_ip(). A
  // header without a client address (LOCAL, UNKNOWN) passes the balancer's own address and port.
  void set_proxied_peer(std::string ip, std::uint16_t port);
  // The balancer's address when the connection came through one, else "".
  const std::string& proxy_ip() const { return proxy_ip_; }

  // Server-side TLS handshake (STARTTLS/STLS after the go-ahead reply, or implicit TLS).
  // Flushes queued output in plaintext first, then DISCARDS all buffered input (read
  // buffered() before calling to log it). Fails with operation_not_permitted if already TLS.
  asio::awaitable<error_code> start_tls(asio::ssl::context& ctx, Duration timeout);
  // Client-side handshake (SMTP client to a smarthost): sends SNI for server_name and, if ctx
  // verifies peers (make_client_tls_context), checks the certificate matches server_name.
  asio::awaitable<error_code> start_tls_client(asio::ssl::context& ctx, std::string server_name, Duration timeout);
  // True once a handshake has been started on this stream.
  bool is_tls() const { return tls_ != nullptr; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" for a plain stream.
  std::string tls_description() const;

  // One line including its terminator as received ("...\r\n" or bare "...\n"), at most
  // max_octets (>= 1) bytes. Errors: errc::timeout (one deadline for the whole call),
  // errc::line_too_long (the line was consumed and dropped through its LF, the next call
  // reads the next line), asio::error::eof, socket/TLS errors.
  asio::awaitable<std::tuple<error_code, std::string>> read_line(std::size_t max_octets, Duration timeout);
  // Rate floors for read_line (see RateFloor). A transfer floor is measured from this call over
  // every byte received until it is cleared, across lines (SMTP DATA). A line floor is measured
  // afresh for each line from the moment its first byte is received, so a peer idle between
  // lines is left to the read's timeout (a command line that never ends). Either replaces the
  // other; clear_rate_floor ends both.
  void set_transfer_rate_floor(RateFloor floor);
  void set_line_rate_floor(RateFloor floor);
  void clear_rate_floor();
  // Ends a pending read_line (or its next wait for bytes) with asio::error::operation_aborted,
  // leaving the stream usable for writes: SIGTERM's drain, so the session writes its own
  // goodbye, inside TLS if the stream is TLS. One-shot: the next read after that one waits again.
  void cancel_read();
  // Bytes received and buffered but not yet returned by read_line.
  std::size_t buffered() const { return buffer_.size(); }
  // Input waiting beyond the last line returned: buffered, inside TLS, or in the kernel.
  // Used for RFC 2920 / RFC 5321 4.5.3.2 synchronization checks.
  bool has_pending_input() const;
  // True if input is pending or arrives within `wait` (greeting pause); consumes nothing.
  asio::awaitable<bool> input_ready_within(Duration wait);

  // Appends to the output queue (batched replies, RFC 2920); nothing is sent until flush.
  void queue(std::string_view data) { out_.append(data); }
  // Bytes queued and not yet flushed.
  std::size_t queued() const { return out_.size(); }
  // Sends all queued output. After an error or errc::timeout the stream must be closed.
  asio::awaitable<error_code> flush(Duration timeout);
  // queue(data) + flush(timeout).
  asio::awaitable<error_code> write(std::string_view data, Duration timeout);

  // Graceful end: TLS close_notify bounded by timeout (never waits longer), then close().
  asio::awaitable<void> shutdown(Duration timeout);
  // Shuts down and closes the socket now; idempotent; pending operations end with an error.
  void close();
  bool is_open() const;

  // The TCP socket under TLS, for socket options. Do not read or write through it, but for the
  // PROXY protocol header (read_proxy_header), read from it before anything else.
  asio::ip::tcp::socket& lowest_layer();

 private:
  struct Tls;
  asio::awaitable<error_code> handshake(asio::ssl::context& ctx, bool client, std::string server_name,
                                        Duration timeout);
  asio::awaitable<error_code> fill(std::chrono::steady_clock::time_point deadline);
  // fill() in slices of kRateCheckInterval while a rate floor applies; errc::too_slow when
  // the floor is not met. The overall deadline still ends it with errc::timeout.
  asio::awaitable<error_code> fill_checked(std::chrono::steady_clock::time_point deadline);
  bool rate_too_low(std::chrono::steady_clock::time_point now) const;

  asio::ip::tcp::socket socket_;  // moved into tls_ on upgrade
  std::unique_ptr<Tls> tls_;
  std::string buffer_;          // received, not yet returned; released when empty
  std::string out_;             // queued output
  bool discarding_ = false;     // inside an over-long line, dropping through its LF
  std::uint64_t received_ = 0;  // bytes received since construction (after TLS: plaintext)
  enum class FloorKind { none, transfer, line } floor_kind_ = FloorKind::none;
  RateFloor floor_;
  std::chrono::steady_clock::time_point floor_start_{};  // transfer: the set call; line: its first byte
  std::uint64_t floor_base_ = 0;                         // received_ before the measured bytes
  bool line_started_ = false;                            // line floor: the current line has a byte
  bool read_cancelled_ = false;                          // cancel_read() not yet delivered
  bool reading_ = false;                                 // fill_checked is waiting for bytes
  std::string remote_ip_;
  std::uint16_t remote_port_ = 0;
  std::string proxy_ip_;
  std::uint16_t local_port_ = 0;
};

}  // namespace rg::net
