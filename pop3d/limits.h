// Every limit of a POP3 session, named and cited. The fixed ones are here, those shared with
// smtpd taken from shared/protocol/limits.h so the two daemons cannot drift apart; the
// config-driven ones are read from config::Pop3d: pop3d.idle_timeout_seconds (the idle read
// timeout, for commands and SASL responses alike) and pop3d.max_bad_commands (refused commands
// before the session ends).
#pragma once

#include <chrono>
#include <cstddef>

#include "shared/net/stream.h"
#include "shared/protocol/limits.h"

namespace rg::pop3 {

struct Limits {
  // RFC 2449 §4: a command line is at most 255 octets including CRLF.
  static constexpr std::size_t kCommandLine = 255;
  // USER's argument. No longer name fits in a command line; the check guards the day the line
  // limit grows (RFC 1939 §7 sets none for the name itself).
  static constexpr std::size_t kUserName = 255;
  // Longest message number or line count accepted (RFC 1939 §5 sets no bound): 18 digits
  // always fit in uint64_t.
  static constexpr std::size_t kNumberDigits = 18;
  // RFC 1939 §7: an APOP digest is 32 hexadecimal digits (MD5).
  static constexpr std::size_t kApopDigest = 32;
  // RFC 5034 §4 lets SASL responses exceed the command limit; the bound is SMTP AUTH's.
  static constexpr std::size_t kSaslResponse = protocol::kMaxSaslResponse;
  // A queued reply must reach the client within this time, or the session ends.
  static constexpr std::chrono::seconds kWriteTimeout = protocol::kWriteTimeout;
  // Implicit TLS and STLS (RFC 2595 §4) handshakes must finish within this time.
  static constexpr std::chrono::seconds kTlsHandshakeTimeout = protocol::kTlsHandshakeTimeout;
  // At disconnect, the TLS close_notify and TCP shutdown wait at most this long.
  static constexpr std::chrono::seconds kShutdownTimeout = protocol::kShutdownTimeout;
  // A command line or SASL response must arrive at >= 64 octets/s, measured from its first
  // octet, once 30 s have passed: a client trickling a line that never ends holds its slot no
  // longer than that (smtpd's min_data_rate for the same trickle). No 255-octet line a client
  // sends at once comes near it; a client idle between commands is the idle timeout's.
  static constexpr net::RateFloor kLineRateFloor{64, std::chrono::seconds(30)};
  // RETR/TOP read the message file in chunks of this size.
  static constexpr std::size_t kRetrChunk = 64 * 1024;
  // Queued output is flushed once it reaches this size, even with pipelined input waiting
  // (RFC 2449 §6.6 PIPELINING must not let the queue grow without bound).
  static constexpr std::size_t kFlushThreshold = 64 * 1024;
};

}  // namespace rg::pop3
