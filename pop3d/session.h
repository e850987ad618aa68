// One POP3 session (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034) over a plain,
// STLS-upgraded or implicit-TLS stream.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "shared/config.h"
#include "shared/net/limits.h"
#include "shared/net/stream.h"

namespace rg::pop3 {

class Server;

// Runs a whole session on `stream`; returns when the client quits or the session ends.
boost::asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                         net::ConnectionLimiter::Token token);

}  // namespace rg::pop3
