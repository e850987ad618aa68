// Limits both protocol sessions share (smtpd and pop3d): one place, so the two daemons cannot
// drift apart. Protocol-specific limits live in smtpd/limits.h and pop3d/limits.h.
#pragma once

#include <chrono>
#include <cstddef>

namespace rg::protocol {

// A queued reply must reach the client within this time, or the session ends.
inline constexpr std::chrono::seconds kWriteTimeout{60};
// The TLS handshake (implicit TLS, STARTTLS, STLS) must finish within this time.
inline constexpr std::chrono::seconds kTlsHandshakeTimeout{30};
// RFC 4954 §4: a SASL response line carries up to 12288 octets; +2 for its CRLF.
inline constexpr std::size_t kMaxSaslResponse = 12288 + 2;
// The TLS close_notify / TCP shutdown at the end of a session gets this long, then the
// connection is simply closed.
inline constexpr std::chrono::seconds kShutdownTimeout{2};

}  // namespace rg::protocol
