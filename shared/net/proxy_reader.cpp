// read_proxy_header (see proxy_reader.h): async_read of exactly `need` bytes at a time, one
// deadline for the whole header (timed.h). No MSG_PEEK: nothing beyond the header is ever asked
// of the socket, so nothing needs to be put back.
#include "shared/net/proxy_reader.h"

#include "shared/net/timed.h"

#include <boost/asio/read.hpp>

#include <string>

namespace rg::net {

namespace asio = boost::asio;

asio::awaitable<std::tuple<boost::system::error_code, ProxyHeader>> read_proxy_header(
    asio::ip::tcp::socket& socket, std::chrono::steady_clock::duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string bytes;
  bytes.reserve(kProxyV1MaxLength);
  for (;;) {
    ProxyHeader header = parse_proxy_header(bytes);
    if (header.status == ProxyHeader::parsed) co_return std::tuple{boost::system::error_code(), std::move(header)};
    if (header.status == ProxyHeader::invalid)
      co_return std::tuple{make_error_code(errc::bad_proxy_header), std::move(header)};
    const std::size_t old = bytes.size();
    bytes.resize(old + header.need);
    auto [ec, n] = co_await timed(
        asio::async_read(socket, asio::buffer(bytes.data() + old, header.need), tuple_awaitable), deadline);
    bytes.resize(old + n);
    if (ec) co_return std::tuple{ec, std::move(header)};
  }
}

}  // namespace rg::net
