// Unit tests of the PROXY protocol header (shared/net/proxy.h, proxy_reader.h): the parser over
// v1/v2 rows from HAProxy's doc/proxy-protocol.txt, at the length limits and one past them; the
// socket read over a real loopback pair (exact consumption, timeout), bounded in time.
#include "shared/net/proxy.h"
#include "shared/net/errors.h"
#include "shared/net/listener.h"
#include "shared/net/proxy_reader.h"
#include "shared/net/stream.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using asio::ip::tcp;
using rg::net::parse_proxy_header;
using rg::net::ProxyHeader;
using Clock = std::chrono::steady_clock;

// A v2 header: signature, version 2 and `command`, `family`, then `body` as the payload.
std::string v2(unsigned char command, unsigned char family, const std::string& body) {
  std::string h(rg::net::kProxyV2Signature);
  h += static_cast<char>(0x20 | command);
  h += static_cast<char>(family);
  h += static_cast<char>(body.size() >> 8);
  h += static_cast<char>(body.size() & 0xff);
  return h + body;
}
std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s += static_cast<char>(x);
  return s;
}
// TCP over IPv4 192.0.2.7:40000 -> 198.51.100.1:2110.
const std::string kInet4 = bytes({192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0x08, 0x3e});
// TCP over IPv6 2001:db8::7 port 443 -> ::1 port 25.
const std::string kInet6 = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    7,    0, 0,
                                  0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb, 0, 25});

TEST(NetProxyHeader, ParsesValidHeaders) {
  struct Row {
    std::string in;
    int version;
    bool local;
    std::string ip;
    uint16_t port;
    size_t length;
  };
  const std::string tlv = bytes({0x04, 0x00, 0x03, 0, 0, 0, 0x01, 0x00, 0x02, 'h', '2'});  // NOOP, ALPN
  const Row rows[] = {
      {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 1, false, "192.168.0.1", 56324, 47},  // §2.1 example
      {"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 1, false, "255.255.255.255", 65535, 56},
      {"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", 1, false, "0.0.0.0", 0, 32},
      {"PROXY TCP6 2001:DB8::7 ::1 1 2\r\n", 1, false, "2001:db8::7", 1, 32},
      {"PROXY TCP6 ::ffff:10.1.2.3 ::1 7 8\r\n", 1, false, "10.1.2.3", 7, 36},  // v4-mapped folds
      {"PROXY UNKNOWN\r\n", 1, true, "", 0, 15},
      {"PROXY UNKNOWN anything at all 1 2\r\n", 1, true, "", 0, 35},
      {v2(1, 0x11, kInet4), 2, false, "192.0.2.7", 40000, 28},
      {v2(1, 0x21, kInet6), 2, false, "2001:db8::7", 443, 52},
      {v2(1, 0x11, kInet4 + tlv), 2, false, "192.0.2.7", 40000, 28 + tlv.size()},  // TLVs skipped
      {v2(0, 0x00, ""), 2, true, "", 0, 16},                                       // LOCAL: health check
      {v2(0, 0x11, kInet4), 2, true, "", 0, 28},                                   // LOCAL ignores the block it carries
      {v2(0, 0xff, "x"), 2, true, "", 0, 17},                                      // ... even its family
      {v2(1, 0x00, ""), 2, true, "", 0, 16},      // PROXY over AF_UNSPEC: the real endpoints
      {v2(1, 0x10, kInet4), 2, true, "", 0, 28},  // transport UNSPEC likewise
      {v2(1, 0x11, std::string(rg::net::kProxyV2MaxPayload, '\x01')), 2, false, "1.1.1.1", 257,
       16 + rg::net::kProxyV2MaxPayload},  // the payload limit passes
  };
  for (const Row& r : rows) {
    const ProxyHeader h = parse_proxy_header(r.in + "EHLO x\r\n");  // what follows is not looked at
    ASSERT_EQ(h.status, ProxyHeader::parsed) << r.in << " " << h.reason;
    EXPECT_EQ(h.version, r.version) << r.in;
    EXPECT_EQ(h.local, r.local) << r.in;
    EXPECT_EQ(h.source_ip, r.ip) << r.in;
    EXPECT_EQ(h.source_port, r.port) << r.in;
    EXPECT_EQ(h.length, r.length) << r.in;
    EXPECT_EQ(h.length, r.in.size()) << r.in;
  }
}

TEST(NetProxyHeader, RefusesInvalidHeadersWithAReason) {
  struct Row {
    std::string in;
    std::string_view reason;
  };
  // "PROXY UNKNOWN " + padding + CRLF is exactly the §2.1 maximum.
  constexpr size_t kUnknownPad = rg::net::kProxyV1MaxLength - std::string_view("PROXY UNKNOWN \r\n").size();
  const std::string v1_max_unknown = "PROXY UNKNOWN " + std::string(kUnknownPad, 'x') + "\r\n";
  const Row rows[] = {
      {"EHLO client.example\r\n", "not-a-proxy-header"},
      {std::string("\x16\x03\x01", 3), "not-a-proxy-header"},  // a TLS ClientHello
      {"PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad-signature"},
      {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not-a-proxy-header"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1-bad-protocol"},
      {"PROXY \r\n", "v1-bad-protocol"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1-bad-fields"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1-bad-fields"},
      {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1-bad-fields"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1-bad-fields"},
      {"PROXY TCP4 ::1 ::1 1 2\r\n", "v1-bad-address"},  // family dictates the form
      {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "v1-bad-address"},
      {"PROXY TCP4 010.0.0.1 5.6.7.8 1 2\r\n", "v1-bad-address"},  // §2.1: no heading zeroes
      {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1-bad-address"},
      {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1-bad-address"},
      {std::string("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33), "v1-bad-address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1-bad-port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1-bad-port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1-bad-port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", "v1-bad-port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1-bare-cr-lf"},  // §2.1: only CRLF ends the line
      {"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "v1-bare-cr-lf"},
      {"PROXY UNKNOWN " + std::string(kUnknownPad + 1, 'x') + "\r\n", "v1-too-long"},  // 108 bytes
      {std::string(rg::net::kProxyV2Signature.substr(0, 11)) + "X", "bad-signature"},
      {v2(1, 0x11, kInet4).replace(12, 1, "\x11"), "v2-bad-version"},
      {v2(2, 0x11, kInet4), "v2-bad-command"},
      {v2(0xf, 0x11, kInet4), "v2-bad-command"},
      {v2(1, 0x41, kInet4), "v2-bad-family"},
      {v2(1, 0x13, kInet4), "v2-bad-family"},
      {v2(1, 0x31, std::string(216, 'a')), "v2-unix-family"},
      {v2(1, 0x32, std::string(216, 'a')), "v2-unix-family"},
      {v2(1, 0x12, kInet4), "v2-datagram"},
      {v2(1, 0x22, kInet6), "v2-datagram"},
      {v2(1, 0x11, kInet4.substr(0, 11)), "v2-short-address"},
      {v2(1, 0x21, kInet6.substr(0, 35)), "v2-short-address"},
      {v2(1, 0x11, std::string(rg::net::kProxyV2MaxPayload + 1, '\x01')), "v2-too-long"},  // limit + 1
  };
  // The longest v1 line (§2.1: 107 bytes with its CRLF) is accepted; one byte more is refused.
  ASSERT_EQ(v1_max_unknown.size(), rg::net::kProxyV1MaxLength);
  EXPECT_EQ(parse_proxy_header(v1_max_unknown).status, ProxyHeader::parsed);
  for (const Row& r : rows) {
    const ProxyHeader h = parse_proxy_header(r.in);
    EXPECT_EQ(h.status, ProxyHeader::invalid) << r.in;
    EXPECT_EQ(h.reason, r.reason) << r.in;
  }
}

// Every proper prefix of a valid header is incomplete and asks for no byte beyond the header;
// so a reader that reads exactly `need` bytes at a time never consumes what follows it.
TEST(NetProxyHeader, PrefixesAreIncompleteAndNeverAskPastTheHeader) {
  const std::string headers[] = {
      "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",  // the shortest of each kind
      "PROXY TCP6 :: :: 0 0\r\n",
      "PROXY UNKNOWN\r\n",
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      "PROXY TCP6 2001:db8::7 ::1 1 2\r\n",
      v2(1, 0x11, kInet4),
      v2(1, 0x21, kInet6),
      v2(0, 0x00, ""),
  };
  for (const std::string& full : headers) {
    size_t reads = 0;
    std::string got;
    for (;;) {
      const ProxyHeader h = parse_proxy_header(got);
      if (h.status == ProxyHeader::parsed) break;
      ASSERT_EQ(h.status, ProxyHeader::incomplete) << full << " at " << got.size() << ": " << h.reason;
      ASSERT_GE(h.need, 1u);
      ASSERT_LE(got.size() + h.need, full.size()) << full << " asks past its end at " << got.size();
      got += full.substr(got.size(), h.need);
      ++reads;
    }
    EXPECT_EQ(got, full);
    if (full[0] == '\r') {
      EXPECT_LE(reads, 3u) << "v2: one byte, the fixed part, the payload";
    }
  }
  EXPECT_EQ(parse_proxy_header("").need, 1u);  // the first byte alone tells v1, v2 or neither
}

// ---- the socket read --------------------------------------------------------------------

struct Pair {
  tcp::socket client;
  tcp::socket server;
};
Pair connect_pair(asio::io_context& io) {
  auto acceptor = rg::net::open_acceptor(io, "127.0.0.1", 0);
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  return {std::move(client), acceptor.accept()};
}

// Runs `task` on io; fails the test (instead of hanging) if it has not finished after `limit`.
template <class T>
T run_bounded(asio::io_context& io, asio::awaitable<T> task, Clock::duration limit = 10s) {
  auto done = asio::co_spawn(io, std::move(task), asio::use_future);
  const auto deadline = Clock::now() + limit;
  while (done.wait_for(0s) != std::future_status::ready && Clock::now() < deadline) io.run_one_for(50ms);
  if (done.wait_for(0s) != std::future_status::ready) {
    ADD_FAILURE() << "the read did not finish in time";
    io.stop();
    throw std::runtime_error("hung");
  }
  return done.get();
}

struct ReadThenLine {
  boost::system::error_code ec;
  ProxyHeader header;
  std::string line;  // the first line the session's Stream reads after the header
};
asio::awaitable<ReadThenLine> read_then_line(tcp::socket& server, Clock::duration timeout) {
  auto [ec, header] = co_await rg::net::read_proxy_header(server, timeout);
  ReadThenLine r{ec, std::move(header), {}};
  if (ec) co_return r;
  rg::net::Stream stream(std::move(server));
  auto [lec, line] = co_await stream.read_line(512, 2s);
  r.line = lec ? "<" + lec.message() + ">" : line;
  co_return r;
}

TEST(NetProxyReader, ConsumesExactlyTheHeaderOfEachVersion) {
  for (const std::string& header :
       {std::string("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n"), std::string("PROXY UNKNOWN\r\n"),
        v2(1, 0x11, kInet4), v2(1, 0x21, kInet6 + bytes({0x04, 0, 1, 0})), v2(0, 0, "")}) {
    asio::io_context io;
    auto [client, server] = connect_pair(io);
    // Header and protocol in one segment, as a balancer sends them: the read must stop between.
    asio::write(client, asio::buffer(header + "EHLO client\r\nQUIT\r\n"));
    const auto r = run_bounded(io, read_then_line(server, 2s));
    ASSERT_FALSE(r.ec) << r.ec.message() << " " << r.header.reason;
    EXPECT_EQ(r.header.length, header.size());
    EXPECT_EQ(r.line, "EHLO client\r\n") << "bytes after the header were consumed";
  }
}

TEST(NetProxyReader, HeaderSplitAcrossSegmentsIsReassembled) {
  asio::io_context io;
  auto [client, server] = connect_pair(io);
  const std::string header = "PROXY TCP6 2001:db8::7 ::1 1234 110\r\n";
  auto writer = std::async(std::launch::async, [&client, header] {
    for (char c : header + "USER a\r\n") {  // one byte per segment: TCP may deliver it so (§2)
      asio::write(client, asio::buffer(&c, 1));
      std::this_thread::sleep_for(1ms);
    }
  });
  const auto r = run_bounded(io, read_then_line(server, 5s));
  writer.get();
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.header.source_ip, "2001:db8::7");
  EXPECT_EQ(r.header.source_port, 1234);
  EXPECT_EQ(r.line, "USER a\r\n");
}

TEST(NetProxyReader, SilentOrPartialPeerTimesOut) {
  for (const std::string& sent :
       {std::string(), std::string("PROXY TCP4 1.2.3.4"), v2(1, 0x11, kInet4).substr(0, 20)}) {
    asio::io_context io;
    auto [client, server] = connect_pair(io);
    if (!sent.empty()) asio::write(client, asio::buffer(sent));
    const auto start = Clock::now();
    const auto r = run_bounded(io, read_then_line(server, 300ms), 5s);
    EXPECT_EQ(r.ec, rg::net::errc::timeout) << r.ec.message();
    EXPECT_GE(Clock::now() - start, 250ms);
    EXPECT_LT(Clock::now() - start, 3s);
  }
}

TEST(NetProxyReader, GarbageFailsAtOnceAndEofIsAnError) {
  {
    asio::io_context io;
    auto [client, server] = connect_pair(io);
    asio::write(client, asio::buffer(std::string("EHLO x\r\n")));  // a client that skipped the balancer
    const auto start = Clock::now();
    const auto r = run_bounded(io, read_then_line(server, 5s));
    EXPECT_EQ(r.ec, rg::net::errc::bad_proxy_header);
    EXPECT_EQ(r.header.reason, "not-a-proxy-header");
    EXPECT_LT(Clock::now() - start, 1s) << "garbage must not wait for the timeout";
  }
  {
    asio::io_context io;
    auto [client, server] = connect_pair(io);
    asio::write(client, asio::buffer(std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")));
    const auto r = run_bounded(io, read_then_line(server, 5s));
    EXPECT_EQ(r.ec, rg::net::errc::bad_proxy_header);
    EXPECT_EQ(r.header.reason, "v1-bad-port");
  }
  {
    asio::io_context io;
    auto [client, server] = connect_pair(io);
    asio::write(client, asio::buffer(std::string("PROXY TC")));
    client.close();
    const auto r = run_bounded(io, read_then_line(server, 5s));
    EXPECT_EQ(r.ec, asio::error::eof) << r.ec.message();
  }
}

}  // namespace
