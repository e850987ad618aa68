// Reading a PROXY protocol header (proxy.h) off a freshly accepted socket, before anything else
// happens on it (before a TLS handshake, before a greeting: the spec's §2 "The receiver MUST NOT
// start processing the connection before it receives a complete and valid PROXY protocol
// header"). Invariant: exactly the header's bytes are consumed; the protocol after it is still
// in the socket for the session to read.
#pragma once

#include "shared/net/errors.h"
#include "shared/net/proxy.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <tuple>

namespace rg::net {

// How long a peer allowed to send the header has to send all of it. The spec (§2) suggests "a
// short timeout ... at least 3 seconds to cover a TCP retransmit"; a balancer sends it at once.
inline constexpr std::chrono::seconds kProxyHeaderTimeout{5};

// Reads one header within `timeout`, in reads of exactly the sizes parse_proxy_header asks for.
// Success: a parsed header. Errors: errc::bad_proxy_header (the ProxyHeader's reason says why),
// errc::timeout, asio::error::eof and socket errors (the ProxyHeader is then incomplete).
boost::asio::awaitable<std::tuple<boost::system::error_code, ProxyHeader>> read_proxy_header(
    boost::asio::ip::tcp::socket& socket, std::chrono::steady_clock::duration timeout);

}  // namespace rg::net
