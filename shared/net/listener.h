// Listening sockets and the accept loop shared by pop3d and smtpd.
// Invariants: IPv6 listeners are IPv6-only (IPV6_V6ONLY); an accept error never ends the loop
// or spins the CPU; only closing the acceptor (operation_aborted) ends it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace boost::asio {
class io_context;
}

namespace rg::net {

// Binds and listens on address:port (IPv4 or IPv6 literal; port 0 picks a free port) with
// SO_REUSEADDR. Throws std::runtime_error naming "address:port" and the reason on failure.
boost::asio::ip::tcp::acceptor open_acceptor(boost::asio::io_context& io, const std::string& address,
                                             std::uint16_t port);

// Accepts until the acceptor is closed, handing each socket to on_accept (which typically
// checks a ConnectionLimiter and co_spawns a session; it must not throw). Accept errors
// (EMFILE, ENFILE, ENOBUFS...) go to on_error, if set, then the loop pauses `backoff`.
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                         std::function<void(boost::asio::ip::tcp::socket)> on_accept,
                                         std::function<void(const boost::system::error_code&)> on_error = {},
                                         std::chrono::milliseconds backoff = std::chrono::milliseconds(100));

}  // namespace rg::net
