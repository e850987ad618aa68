// open_acceptor and accept_loop (see listener.h). Invariants: a failed bind names its
// address:port; after an accept error the loop sleeps before the next accept (no busy loop).
#include "shared/net/listener.h"

#include "shared/net/timed.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <stdexcept>

namespace rg::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

asio::ip::tcp::acceptor open_acceptor(asio::io_context& io, const std::string& address, std::uint16_t port) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  const std::string where = (ip.is_v6() && !ec ? "[" + address + "]" : address) + ":" + std::to_string(port);
  if (ec) throw std::runtime_error("cannot listen on " + where + ": not an IP address");
  const tcp::endpoint endpoint(ip, port);
  tcp::acceptor acceptor(io);
  auto check = [&](const char* step) {
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + step + ": " + ec.message());
  };
  acceptor.open(endpoint.protocol(), ec);
  check("socket");
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  check("SO_REUSEADDR");
  if (ip.is_v6()) {
    acceptor.set_option(asio::ip::v6_only(true), ec);
    check("IPV6_V6ONLY");
  }
  acceptor.bind(endpoint, ec);
  check("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  check("listen");
  return acceptor;
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::function<void(tcp::socket)> on_accept,
                                  std::function<void(const boost::system::error_code&)> on_error,
                                  std::chrono::milliseconds backoff) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
    if (!ec) {
      on_accept(std::move(socket));
      continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec == asio::error::connection_aborted) continue;  // peer gave up while queued
    if (on_error) on_error(ec);
    pause.expires_after(backoff);
    co_await pause.async_wait(tuple_awaitable);
    if (!acceptor.is_open()) co_return;
  }
}

}  // namespace rg::net
