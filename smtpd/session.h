// One SMTP session (RFC 5321 with AUTH RFC 4954, STARTTLS RFC 3207, PIPELINING RFC 2920, SIZE
// RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034/3463) on a relay, submission or
// submissions listener.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "shared/config.h"
#include "shared/net/limits.h"
#include "shared/net/stream.h"

namespace rg::smtp {

class Server;

boost::asio::awaitable<void> run_session(Server& server, config::Listener listener, net::Stream stream,
                                         net::ConnectionLimiter::Token token);

}  // namespace rg::smtp
