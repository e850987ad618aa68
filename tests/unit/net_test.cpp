// Unit tests of rg::net: line splitting at limit/limit+1, timeouts against stalled peers, the
// STARTTLS plaintext purge (CVE-2011-0411), TLS files, limits, worker pool and listener.
// Every test uses 127.0.0.1 port 0 and is bounded in time (run_all fails after 10 s).
#include "shared/net/errors.h"
#include "shared/net/limits.h"
#include "shared/net/listener.h"
#include "shared/net/stream.h"
#include "shared/net/tls.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using asio::ip::tcp;
using rg::net::error_code;
using rg::net::Stream;
using Clock = std::chrono::steady_clock;

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Runs the coroutines concurrently on io until all finish; fails the test after `limit`.
void run_all(asio::io_context& io, std::vector<asio::awaitable<void>> tasks, Clock::duration limit = 10s) {
  std::vector<std::future<void>> done;
  for (auto& task : tasks) done.push_back(asio::co_spawn(io, std::move(task), asio::use_future));
  io.restart();
  const auto deadline = Clock::now() + limit;
  auto all_ready = [&] {
    for (auto& f : done)
      if (f.wait_for(0s) != std::future_status::ready) return false;
    return true;
  };
  while (!all_ready() && Clock::now() < deadline) io.run_one_for(50ms);
  ASSERT_TRUE(all_ready()) << "test coroutines did not finish in time";
  for (auto& f : done) f.get();
}

template <class... A>
void run_all(asio::io_context& io, A... tasks) {
  std::vector<asio::awaitable<void>> v;
  (v.push_back(std::move(tasks)), ...);
  run_all(io, std::move(v));
}

struct Connection {
  tcp::socket client;
  Stream server;
};

Connection connect_pair(asio::io_context& io) {
  auto acceptor = rg::net::open_acceptor(io, "127.0.0.1", 0);
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  return {std::move(client), Stream(acceptor.accept())};
}

// A fresh folder under /tmp, removed with its contents at the end of the test.
struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "rg-net-test-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// ---- pure parts -------------------------------------------------------------------------

TEST(NetLineScan, SplitsAtLfWithinLimit) {
  using S = rg::net::LineScan;
  struct Case {
    std::string_view in;
    std::size_t max;
    S::Status status;
    std::size_t len;
  };
  const Case cases[] = {
      {"HELO a\r\n", 8, S::complete, 8},    // CRLF at the limit
      {"HELO ab\r\n", 8, S::too_long, 0},   // limit + 1
      {"NOOP\nrest", 100, S::complete, 5},  // bare LF ends a line
      {"A\rB\r\n", 100, S::complete, 5},    // bare CR is data
      {"abc", 4, S::need_more, 0},         {"abcd", 4, S::too_long, 0}, {"", 4, S::need_more, 0},
  };
  for (const auto& c : cases) {
    const S got = rg::net::scan_line(c.in, c.max);
    EXPECT_EQ(got.status, c.status) << c.in;
    EXPECT_EQ(got.length, c.len) << c.in;
  }
}

TEST(NetCanonicalIp, FoldsV4MappedV6) {
  EXPECT_EQ(rg::net::canonical_ip(asio::ip::make_address("::ffff:192.0.2.7")), "192.0.2.7");
  EXPECT_EQ(rg::net::canonical_ip(asio::ip::make_address("192.0.2.7")), "192.0.2.7");
  EXPECT_EQ(rg::net::canonical_ip(asio::ip::make_address("2001:db8::1")), "2001:db8::1");
}

TEST(NetErrc, HaveOwnCategory) {
  const error_code ec = rg::net::errc::line_too_long;
  EXPECT_EQ(ec, rg::net::errc::line_too_long);
  EXPECT_NE(ec, rg::net::errc::timeout);
  EXPECT_EQ(ec.message(), "line too long");
  EXPECT_STREQ(ec.category().name(), "rg.net");
}

// ---- Stream: lines, limits, timeouts ------------------------------------------------------

using Expected = std::vector<std::pair<error_code, std::string>>;

asio::awaitable<void> expect_lines(Stream& s, std::size_t max, Expected want) {
  for (const auto& [want_ec, want_line] : want) {
    auto [ec, line] = co_await s.read_line(max, 5s);
    EXPECT_EQ(ec, want_ec) << ec.message() << " (expected \"" << want_line << "\")";
    EXPECT_EQ(line, want_line);
  }
}

TEST(NetStream, ReadsCrlfAndBareLfAndKeepsBareCr) {
  asio::io_context io;
  auto c = connect_pair(io);
  EXPECT_EQ(c.server.remote_ip(), "127.0.0.1");
  EXPECT_EQ(c.server.remote_port(), c.client.local_endpoint().port());
  EXPECT_EQ(c.server.local_port(), c.client.remote_endpoint().port());
  asio::write(c.client, asio::buffer(std::string_view("HELO a\r\nNOOP\nDATA\rX\r\nlast")));
  c.client.shutdown(tcp::socket::shutdown_send);
  run_all(io, expect_lines(c.server, 100,
                           {{{}, "HELO a\r\n"}, {{}, "NOOP\n"}, {{}, "DATA\rX\r\n"}, {asio::error::eof, ""}}));
  EXPECT_EQ(c.server.buffered(), 4u);  // "last" has no LF: never returned as a line
}

TEST(NetStream, LineAtLimitPassesAndLimitPlusOneIsDroppedThroughItsLf) {
  asio::io_context io;
  auto c = connect_pair(io);
  const std::string huge(100'000, 'x');  // far beyond any buffer: must be discarded in chunks
  asio::write(c.client, asio::buffer("12345678\r\n"
                                     "123456789\r\n"
                                     "next\r\n" +
                                     huge + "\r\nafter\n"));
  run_all(io, expect_lines(c.server, 10,
                           {{{}, "12345678\r\n"},
                            {rg::net::errc::line_too_long, ""},
                            {{}, "next\r\n"},
                            {rg::net::errc::line_too_long, ""},
                            {{}, "after\n"}}));
  EXPECT_EQ(c.server.buffered(), 0u);
}

asio::awaitable<void> expect_read_timeout(Stream& s, Clock::duration timeout) {
  const auto start = Clock::now();
  auto [ec, line] = co_await s.read_line(1000, timeout);
  const auto took = Clock::now() - start;
  EXPECT_EQ(ec, rg::net::errc::timeout) << ec.message();
  EXPECT_GE(took, timeout);
  EXPECT_LT(took, timeout + 1s);
}

TEST(NetStream, ReadTimesOutOnSilentPeer) {
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, expect_read_timeout(c.server, 200ms));
}

// Sends one byte every 50 ms and never an LF: the deadline covers the whole line.
asio::awaitable<void> drip(tcp::socket& s, int bytes) {
  asio::steady_timer t(s.get_executor());
  for (int i = 0; i < bytes; ++i) {
    co_await asio::async_write(s, asio::buffer("x", 1), tuple_awaitable);
    t.expires_after(50ms);
    co_await t.async_wait(tuple_awaitable);
  }
}

TEST(NetStream, ReadDeadlineCoversASlowDrippingLine) {
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, expect_read_timeout(c.server, 300ms), drip(c.client, 12));
}

// ---- Stream: rate floors (issue 11: a trickle without a line end is cut on bytes) ---------

TEST(NetRateFloor, BelowOnlyAfterGraceAndUnderTheRate) {
  using rg::net::RateFloor;
  struct Case {
    RateFloor floor;
    std::uint64_t bytes;
    Clock::duration elapsed;
    bool below;
  };
  const Case cases[] = {
      {{0, 0s}, 0, 100s, false},         // no floor
      {{100, 10s}, 0, 10s, false},       // at the grace: not yet measured
      {{100, 10s}, 0, 10s + 1ms, true},  // just past it with nothing: below
      {{100, 10s}, 1100, 11s, false},    // exactly the rate: not below
      {{100, 10s}, 1099, 11s, true},     // one byte short
      {{100, 0s}, 5, 100ms, true},       // no grace
  };
  for (const auto& c : cases)
    EXPECT_EQ(rg::net::below_rate_floor(c.floor, c.bytes, c.elapsed), c.below)
        << c.floor.bytes_per_second << " B/s, " << c.bytes << " bytes";
}

asio::awaitable<void> expect_too_slow(Stream& s, Clock::duration grace, bool per_line_calls) {
  const auto start = Clock::now();
  error_code ec;
  std::string line;
  do {
    std::tie(ec, line) = co_await s.read_line(1000, 5s);
  } while (!ec && per_line_calls);
  const auto took = Clock::now() - start;
  EXPECT_EQ(ec, rg::net::errc::too_slow) << ec.message();
  EXPECT_EQ(ec.message(), "data rate too low");
  EXPECT_GT(took, grace);
  EXPECT_LT(took, grace + rg::net::kRateCheckInterval + 500ms);
}

TEST(NetStream, TransferFloorCutsATrickleWithoutLineEnd) {
  asio::io_context io;
  auto c = connect_pair(io);
  c.server.set_transfer_rate_floor({100, 300ms});  // the drip is 20 B/s
  run_all(io, expect_too_slow(c.server, 300ms, false), drip(c.client, 20));
}

// "x\n" every 50 ms: each line completes, but 40 B/s is under the 100 B/s floor of the transfer.
asio::awaitable<void> drip_lines(tcp::socket& s, int lines) {
  asio::steady_timer t(s.get_executor());
  for (int i = 0; i < lines; ++i) {
    co_await asio::async_write(s, asio::buffer("x\n", 2), tuple_awaitable);
    t.expires_after(50ms);
    co_await t.async_wait(tuple_awaitable);
  }
}

TEST(NetStream, TransferFloorIsMeasuredAcrossLines) {
  asio::io_context io;
  auto c = connect_pair(io);
  c.server.set_transfer_rate_floor({100, 300ms});
  run_all(io, expect_too_slow(c.server, 300ms, true), drip_lines(c.client, 20));
}

TEST(NetStream, LineFloorCutsALineThatNeverEnds) {
  asio::io_context io;
  auto c = connect_pair(io);
  c.server.set_line_rate_floor({100, 300ms});
  run_all(io, expect_too_slow(c.server, 300ms, false), drip(c.client, 20));
}

// Idle longer than the grace, then a whole line at once: the line floor starts at its first byte.
asio::awaitable<void> late_line(tcp::socket& s) {
  asio::steady_timer t(s.get_executor(), 600ms);
  co_await t.async_wait(tuple_awaitable);
  co_await asio::async_write(s, asio::buffer(std::string_view("NOOP\r\n")), tuple_awaitable);
}

TEST(NetStream, LineFloorLeavesIdleTimeToTheTimeout) {
  asio::io_context io;
  auto c = connect_pair(io);
  c.server.set_line_rate_floor({100, 200ms});
  run_all(io, expect_lines(c.server, 100, {{{}, "NOOP\r\n"}}), late_line(c.client));
  run_all(io, expect_read_timeout(c.server, 700ms));  // silent peer: the timeout, not too_slow
  c.server.clear_rate_floor();
  run_all(io, expect_read_timeout(c.server, 700ms), drip(c.client, 12));
}

asio::awaitable<void> cancelled_then_write(Stream& s, tcp::socket& client) {
  auto [ec, line] = co_await s.read_line(100, 5s);
  EXPECT_EQ(ec, asio::error::operation_aborted) << ec.message();
  const error_code wec = co_await s.write("421 bye\r\n", 1s);
  EXPECT_FALSE(wec) << wec.message();  // the stream still writes after it
  std::string got(9, '\0');
  auto [rec, n] = co_await asio::async_read(client, asio::buffer(got), tuple_awaitable);
  EXPECT_FALSE(rec) << rec.message();
  EXPECT_EQ(n, got.size());
  EXPECT_EQ(got, "421 bye\r\n");
  // cancel_read before a read: that read ends at once, the one after waits again
  s.cancel_read();
  std::tie(ec, line) = co_await s.read_line(100, 5s);
  EXPECT_EQ(ec, asio::error::operation_aborted);
  co_await asio::async_write(client, asio::buffer(std::string_view("QUIT\r\n")), tuple_awaitable);
  std::tie(ec, line) = co_await s.read_line(100, 5s);
  EXPECT_FALSE(ec);
  EXPECT_EQ(line, "QUIT\r\n");
}

asio::awaitable<void> cancel_soon(Stream& s) {
  asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
  co_await t.async_wait(tuple_awaitable);
  s.cancel_read();
}

TEST(NetStream, CancelReadEndsThePendingReadAndKeepsTheStreamWritable) {
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, cancelled_then_write(c.server, c.client), cancel_soon(c.server));
}

asio::awaitable<void> expect_write_timeout(Stream& s, std::string payload) {
  const auto start = Clock::now();
  const error_code ec = co_await s.write(payload, 300ms);
  EXPECT_EQ(ec, rg::net::errc::timeout) << ec.message();
  EXPECT_LT(Clock::now() - start, 2s);
}

TEST(NetStream, WriteTimesOutWhenPeerNeverReads) {
  asio::io_context io;
  auto c = connect_pair(io);
  c.client.set_option(tcp::socket::receive_buffer_size(4096));
  c.server.lowest_layer().set_option(tcp::socket::send_buffer_size(4096));
  run_all(io, expect_write_timeout(c.server, std::string(32 << 20, 'x')));
  c.server.close();
  c.server.close();  // idempotent
  EXPECT_FALSE(c.server.is_open());
}

asio::awaitable<void> greeting_pause(Stream& s, tcp::socket& client) {
  const bool early = co_await s.input_ready_within(100ms);
  EXPECT_FALSE(early);
  co_await asio::async_write(client, asio::buffer(std::string_view("EHLO early\r\n")), tuple_awaitable);
  const bool talked = co_await s.input_ready_within(1s);
  EXPECT_TRUE(talked);
  EXPECT_TRUE(s.has_pending_input());
  auto [ec, line] = co_await s.read_line(100, 1s);  // the probe consumed nothing
  EXPECT_EQ(line, "EHLO early\r\n");
  EXPECT_FALSE(s.has_pending_input());
}

TEST(NetStream, InputReadyWithinSeesEarlyTalkWithoutConsumingIt) {
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, greeting_pause(c.server, c.client));
}

asio::awaitable<void> pipelined_then_sync(Stream& s, tcp::socket& client) {
  co_await asio::async_write(client, asio::buffer(std::string_view("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")),
                             tuple_awaitable);
  auto [ec, line] = co_await s.read_line(100, 1s);
  EXPECT_EQ(line, "MAIL FROM:<a@b>\r\n");
  EXPECT_TRUE(s.has_pending_input());
  std::tie(ec, line) = co_await s.read_line(100, 1s);
  EXPECT_FALSE(s.has_pending_input());
  s.queue("250 ok\r\n");
  s.queue("250 ok\r\n");
  EXPECT_EQ(s.queued(), 16u);
  ec = co_await s.flush(1s);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(s.queued(), 0u);
  std::string got;
  co_await asio::async_read(client, asio::dynamic_buffer(got), asio::transfer_exactly(16), tuple_awaitable);
  EXPECT_EQ(got, "250 ok\r\n250 ok\r\n");
}

TEST(NetStream, ReportsPendingInputAndFlushesQueuedReplies) {
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, pipelined_then_sync(c.server, c.client));
}

// ---- TLS ------------------------------------------------------------------------------------

struct TlsFiles {
  TempDir dir;
  std::string cert = (dir.path / "tls" / "cert.pem").string();
  std::string key = (dir.path / "tls" / "key.pem").string();
  TlsFiles() { rg::net::ensure_self_signed_certificate(cert, key, "mail.example.test"); }
};

// Server half of a STARTTLS dialog (RFC 3207 section 4): the client pipelined a line after
// STARTTLS in the same packet; it must be dropped, never executed after the handshake.
asio::awaitable<void> starttls_server(Stream& s, asio::ssl::context& ctx) {
  auto [ec, line] = co_await s.read_line(512, 5s);
  EXPECT_EQ(line, "STARTTLS\r\n");
  EXPECT_EQ(s.buffered(), std::string_view("INJECTED\r\n").size());
  s.queue("220 2.0.0 Ready to start TLS\r\n");
  EXPECT_FALSE(s.is_tls());
  ec = co_await s.start_tls(ctx, 5s);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(s.is_tls());
  EXPECT_EQ(s.buffered(), 0u);
  EXPECT_EQ(s.tls_description().rfind("TLSv1.", 0), 0u) << s.tls_description();
  std::tie(ec, line) = co_await s.read_line(512, 5s);
  EXPECT_EQ(line, "EHLO after\r\n");   // not "INJECTED\r\n"
  EXPECT_TRUE(s.has_pending_input());  // "NOOP" was pipelined inside TLS
  std::tie(ec, line) = co_await s.read_line(512, 5s);
  EXPECT_EQ(line, "NOOP\r\n");
  EXPECT_FALSE(s.has_pending_input());
  ec = co_await s.write("250 ok\r\n", 5s);
  EXPECT_FALSE(ec) << ec.message();
  co_await s.shutdown(300ms);
}

asio::awaitable<void> starttls_client(tcp::socket& socket) {
  co_await asio::async_write(socket, asio::buffer(std::string_view("STARTTLS\r\nINJECTED\r\n")), tuple_awaitable);
  std::string reply;
  co_await asio::async_read_until(socket, asio::dynamic_buffer(reply), "\r\n", tuple_awaitable);
  EXPECT_EQ(reply, "220 2.0.0 Ready to start TLS\r\n");
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_verify_mode(asio::ssl::verify_none);
  asio::ssl::stream<tcp::socket&> tls(socket, ctx);
  auto [ec] = co_await tls.async_handshake(asio::ssl::stream_base::client, tuple_awaitable);
  EXPECT_FALSE(ec) << ec.message();
  co_await asio::async_write(tls, asio::buffer(std::string_view("EHLO after\r\nNOOP\r\n")), tuple_awaitable);
  reply.clear();
  co_await asio::async_read_until(tls, asio::dynamic_buffer(reply), "\r\n", tuple_awaitable);
  EXPECT_EQ(reply, "250 ok\r\n");
}

TEST(NetStream, StartTlsDiscardsPlaintextPipelinedAfterStarttls) {
  TlsFiles files;
  auto ctx = rg::net::make_server_tls_context(files.cert, files.key);
  asio::io_context io;
  auto c = connect_pair(io);
  run_all(io, starttls_server(c.server, *ctx), starttls_client(c.client));
}

asio::awaitable<void> implicit_tls_server(Stream& s, asio::ssl::context& ctx, bool expect_ok) {
  const error_code ec = co_await s.start_tls(ctx, 5s);
  if (!expect_ok) co_return;  // the client aborts: any error is fine, but no hang
  EXPECT_FALSE(ec) << ec.message();
  const error_code wec = co_await s.write("220 hi\r\n", 5s);
  EXPECT_FALSE(wec) << wec.message();
}

asio::awaitable<void> verifying_client(Stream& s, asio::ssl::context& ctx, std::string name, bool expect_ok) {
  const error_code ec = co_await s.start_tls_client(ctx, name, 5s);
  EXPECT_EQ(!ec, expect_ok) << name << ": " << ec.message();
  if (ec) {
    s.close();
    co_return;
  }
  auto [rec, line] = co_await s.read_line(100, 5s);
  EXPECT_EQ(line, "220 hi\r\n");
}

TEST(NetStream, ImplicitTlsWithVerifyingClientChecksHostName) {
  TlsFiles files;
  auto server_ctx = rg::net::make_server_tls_context(files.cert, files.key);
  auto client_ctx = rg::net::make_client_tls_context(files.cert, true);
  const std::pair<const char*, bool> cases[] = {
      {"localhost", true}, {"mail.example.test", true}, {"127.0.0.1", true}, {"other.example", false}};
  for (const auto& [name, ok] : cases) {
    asio::io_context io;
    auto c = connect_pair(io);
    Stream client(std::move(c.client));
    run_all(io, implicit_tls_server(c.server, *server_ctx, ok), verifying_client(client, *client_ctx, name, ok));
  }
}

TEST(NetTls, ServerContextIsTls12PlusWithoutTicketsOrCompression) {
  TlsFiles files;
  auto ctx = rg::net::make_server_tls_context(files.cert, files.key);
  SSL_CTX* c = ctx->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
  const auto options = SSL_CTX_get_options(c);
  for (auto opt : {SSL_OP_NO_COMPRESSION, SSL_OP_NO_RENEGOTIATION, SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_NO_TICKET})
    EXPECT_TRUE(options & opt) << opt;
  EXPECT_EQ(SSL_CTX_get_num_tickets(c), 0u);
}

asio::awaitable<void> tls12_client(Stream& s, asio::ssl::context& ctx) {
  const error_code ec = co_await s.start_tls_client(ctx, "localhost", 5s);
  EXPECT_FALSE(ec) << ec.message();
  const std::string d = s.tls_description();
  EXPECT_EQ(d.rfind("TLSv1.2 ECDHE-", 0), 0u) << d;
  EXPECT_TRUE(d.find("-GCM-") != std::string::npos || d.find("CHACHA20") != std::string::npos) << d;
}

TEST(NetTls, Tls12ClientGetsEcdheAeadCipher) {
  TlsFiles files;
  auto server_ctx = rg::net::make_server_tls_context(files.cert, files.key);
  auto client_ctx = rg::net::make_client_tls_context(std::nullopt, false);
  SSL_CTX_set_max_proto_version(client_ctx->native_handle(), TLS1_2_VERSION);
  asio::io_context io;
  auto c = connect_pair(io);
  Stream client(std::move(c.client));
  run_all(io, implicit_tls_server(c.server, *server_ctx, true), tls12_client(client, *client_ctx));
}

TEST(NetTls, SelfSignedCertificateIsGeneratedOnceAndLoads) {
  TlsFiles files;
  struct stat st {};
  ASSERT_EQ(stat(files.key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string cert_pem = read_file(files.cert);
  rg::net::ensure_self_signed_certificate(files.cert, files.key, "other.example");  // no-op
  EXPECT_EQ(read_file(files.cert), cert_pem);
  EXPECT_NE(rg::net::make_server_tls_context(files.cert, files.key), nullptr);

  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())),
                                                BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_host(cert.get(), "mail.example.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(cert.get()), nullptr), 0);
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no exception)";
}

// pop3d and smtpd start together on a fresh install: concurrent first starts must end with one
// matching key and certificate, and every process must be able to load them.
TEST(NetTls, ConcurrentGenerationAcrossProcessesYieldsOneMatchingPair) {
  TempDir dir;
  const std::string cert = (dir.path / "tls/cert.pem").string(), key = (dir.path / "tls/key.pem").string();
  std::vector<pid_t> kids;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        rg::net::ensure_self_signed_certificate(cert, key, "mail.example.test");
        rg::net::make_server_tls_context(cert, key);
      } catch (...) {
        rc = 3;
      }
      _exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_NO_THROW(rg::net::make_server_tls_context(cert, key));
}

TEST(NetTls, ErrorsNameTheFileAndTheProblem) {
  TlsFiles a, b;
  auto msg = error_of([&] { rg::net::make_server_tls_context(a.cert, b.key); });
  EXPECT_NE(msg.find(b.key), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not match"), std::string::npos) << msg;

  const std::string missing = (a.dir.path / "nope.pem").string();
  msg = error_of([&] { rg::net::make_server_tls_context(missing, a.key); });
  EXPECT_NE(msg.find(missing + "': missing"), std::string::npos) << msg;

  const std::string junk = (a.dir.path / "junk.pem").string();
  std::ofstream(junk) << "hello\n";
  msg = error_of([&] { rg::net::make_server_tls_context(junk, a.key); });
  EXPECT_NE(msg.find(junk + "': not a PEM certificate"), std::string::npos) << msg;
  msg = error_of([&] { rg::net::make_server_tls_context(a.cert, junk); });
  EXPECT_NE(msg.find(junk + "': not an unencrypted PEM private key"), std::string::npos) << msg;

  fs::remove(b.cert);
  msg = error_of([&] { rg::net::ensure_self_signed_certificate(b.cert, b.key, "x.test"); });
  EXPECT_NE(msg.find(b.cert + "': missing"), std::string::npos) << msg;
}

// ---- limits and worker pool -----------------------------------------------------------------

TEST(NetConnectionLimiter, EnforcesTotalAndPerIpAtLimitAndReleases) {
  rg::net::ConnectionLimiter limiter(3, 2);
  auto a1 = limiter.try_acquire("192.0.2.1");
  auto a2 = limiter.try_acquire("192.0.2.1");
  ASSERT_TRUE(a1 && a2);                           // per-IP at the limit
  EXPECT_FALSE(limiter.try_acquire("192.0.2.1"));  // per-IP limit + 1
  auto b1 = limiter.try_acquire("192.0.2.2");
  ASSERT_TRUE(b1);                                 // total at the limit
  EXPECT_FALSE(limiter.try_acquire("192.0.2.3"));  // total limit + 1
  EXPECT_EQ(limiter.total(), 3u);
  EXPECT_EQ(limiter.count("192.0.2.3"), 0u);

  auto moved = std::move(*a1);  // moving keeps exactly one count
  a1.reset();
  EXPECT_EQ(limiter.count("192.0.2.1"), 2u);
  { auto gone = std::move(moved); }  // release frees a slot
  EXPECT_EQ(limiter.count("192.0.2.1"), 1u);
  auto c1 = limiter.try_acquire("192.0.2.3");
  ASSERT_TRUE(c1);
  EXPECT_EQ(c1->ip(), "192.0.2.3");
  a2.reset();
  b1.reset();
  c1.reset();
  EXPECT_EQ(limiter.total(), 0u);

  rg::net::ConnectionLimiter unlimited(0, 0);
  std::vector<rg::net::ConnectionLimiter::Token> many;
  for (int i = 0; i < 100; ++i) many.push_back(*unlimited.try_acquire("192.0.2.9"));
  EXPECT_EQ(unlimited.count("192.0.2.9"), 100u);
}

std::string add_suffix(const std::string& s, const std::string& suffix) { return s + suffix; }

asio::awaitable<void> use_pool(rg::net::WorkerPool& pool, std::thread::id io_thread) {
  const auto worker = co_await pool.run([] { return std::this_thread::get_id(); });
  EXPECT_NE(worker, io_thread);
  EXPECT_EQ(std::this_thread::get_id(), io_thread);

  // Move-only job, named first (GCC 12: no lambda with owning captures inside co_await).
  auto job = [p = std::make_unique<int>(41)] { return *p + 1; };
  const int v = co_await pool.run(std::move(job));
  EXPECT_EQ(v, 42);
  EXPECT_EQ(std::this_thread::get_id(), io_thread);
  const std::string joined = co_await pool.run(&add_suffix, std::string("pass"), std::string("word"));
  EXPECT_EQ(joined, "password");
  EXPECT_EQ(std::this_thread::get_id(), io_thread);

  int side = 0;
  co_await pool.run([&side] { side = 7; });  // void; the caller waits, so this is safe here
  EXPECT_EQ(side, 7);

  bool thrown = false;
  try {
    co_await pool.run([]() -> int { throw std::runtime_error("boom"); });
  } catch (const std::runtime_error& e) {
    thrown = std::string_view(e.what()) == "boom";
  }
  EXPECT_TRUE(thrown);
  EXPECT_EQ(std::this_thread::get_id(), io_thread);
}

TEST(NetWorkerPool, ReturnsResultsAndResumesOnTheIoThread) {
  asio::io_context io;  // outlives the pool (see WorkerPool)
  rg::net::WorkerPool pool(2);
  run_all(io, use_pool(pool, std::this_thread::get_id()));
}

// ---- listener -------------------------------------------------------------------------------

TEST(NetListener, BindErrorsNameAddressAndPort) {
  asio::io_context io;
  auto first = rg::net::open_acceptor(io, "127.0.0.1", 0);
  const auto port = first.local_endpoint().port();
  auto msg = error_of([&] { rg::net::open_acceptor(io, "127.0.0.1", port); });
  EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
  msg = error_of([&] { rg::net::open_acceptor(io, "mail.example", 25); });
  EXPECT_NE(msg.find("mail.example:25"), std::string::npos) << msg;
}

TEST(NetListener, Ipv6ListenerIsV6Only) {
  asio::io_context io;
  tcp::acceptor acceptor(io);
  try {
    acceptor = rg::net::open_acceptor(io, "::1", 0);
  } catch (const std::runtime_error& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  asio::ip::v6_only v6only;
  acceptor.get_option(v6only);
  EXPECT_TRUE(v6only.value());
}

struct Counter {
  int accepted = 0;
  int errors = 0;
  std::vector<tcp::socket> sockets;
};

asio::awaitable<void> accept_until_closed(tcp::acceptor& acceptor, Counter& n) {
  co_await rg::net::accept_loop(
      acceptor,
      [&n](tcp::socket s) {
        ++n.accepted;
        n.sockets.push_back(std::move(s));
      },
      [&n](const error_code&) { ++n.errors; }, 100ms);
}

// Lowers RLIMIT_NOFILE so that no new descriptor can be opened; restores it on scope exit.
struct NoMoreFds {
  rlimit saved{};
  NoMoreFds() {
    getrlimit(RLIMIT_NOFILE, &saved);
    const int lowest_free = open("/dev/null", O_RDONLY);
    close(lowest_free);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    setrlimit(RLIMIT_NOFILE, &low);
  }
  ~NoMoreFds() { restore(); }
  void restore() { setrlimit(RLIMIT_NOFILE, &saved); }
};

TEST(NetListener, AcceptLoopBacksOffOnEmfileAndKeepsGoing) {
  asio::io_context io;
  auto acceptor = rg::net::open_acceptor(io, "127.0.0.1", 0);
  Counter n;
  auto done = asio::co_spawn(io, accept_until_closed(acceptor, n), asio::use_future);
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  {
    NoMoreFds guard;
    io.run_for(450ms);  // 100 ms back-off: a handful of errors, not a busy loop
    guard.restore();
    EXPECT_EQ(n.accepted, 0);
    EXPECT_GE(n.errors, 2);
    EXPECT_LE(n.errors, 8);
  }
  const auto deadline = Clock::now() + 5s;
  while (n.accepted == 0 && Clock::now() < deadline) io.run_one_for(50ms);
  EXPECT_EQ(n.accepted, 1);  // the queued connection is accepted once descriptors are back
  acceptor.close();
  while (done.wait_for(0s) != std::future_status::ready && Clock::now() < deadline) io.run_one_for(50ms);
  ASSERT_EQ(done.wait_for(0s), std::future_status::ready) << "closing the acceptor must end the loop";
  done.get();
}

// ---- memory per idle connection -------------------------------------------------------------

long resident_bytes() {
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

asio::awaitable<void> idle_reader(Stream& s) {
  auto [ec, line] = co_await s.read_line(1000, 60s);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(NetStream, IdlePlainConnectionCostsUnder20KiB) {
  constexpr int kConnections = 300;
  asio::io_context io;
  auto acceptor = rg::net::open_acceptor(io, "127.0.0.1", 0);
  std::vector<tcp::socket> clients;
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::future<void>> readers;
  clients.reserve(kConnections);
  streams.reserve(kConnections);
  readers.reserve(kConnections);
  const long before = resident_bytes();
  for (int i = 0; i < kConnections; ++i) {
    clients.emplace_back(io).connect(acceptor.local_endpoint());
    streams.push_back(std::make_unique<Stream>(acceptor.accept()));
    readers.push_back(asio::co_spawn(io, idle_reader(*streams.back()), asio::use_future));
  }
  io.run_for(200ms);  // every reader is now parked waiting for input
  const long per_connection = (resident_bytes() - before) / kConnections;
  RecordProperty("idle_bytes_per_connection", static_cast<int>(per_connection));
#if !defined(__SANITIZE_ADDRESS__)  // ASan redzones inflate every allocation
  EXPECT_LT(per_connection, 20 * 1024);
#endif
  std::printf("idle plain connection: %ld bytes RSS\n", per_connection);
  for (auto& c : clients) c.close();
  const auto deadline = Clock::now() + 5s;
  for (auto& r : readers)
    while (r.wait_for(0s) != std::future_status::ready && Clock::now() < deadline) io.run_one_for(50ms);
  for (auto& r : readers) r.get();
}

}  // namespace
