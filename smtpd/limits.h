// Every SMTP protocol limit of the inbound session, named and cited (STYLE.md habit 4). Line
// lengths count the octets read_line returns, i.e. INCLUDING the line ending. The limits the
// administrator sets are in config::Smtpd (shared/config.h), referred to here by name:
// max_message_size (RFC 1870 SIZE), max_recipients (RFC 5321 §4.5.3.1.8, at least 100),
// max_errors, command_timeout_seconds and data_timeout_seconds (§4.5.3.2), min_data_rate,
// data_rate_grace_seconds, greeting_pause_ms. The limits of one parser sit beside it:
// kMaxLocalPart, kMaxDomain, kMaxPath (§4.5.3.1.1-3) and kMaxSizeDigits (RFC 1870 §6) in
// address.h, kMaxTextLine (§4.5.3.1.6) in data_reader.h.
#pragma once

#include <cstddef>

#include "shared/protocol/limits.h"

namespace rg::smtp::limits {

// RFC 5321 §4.5.3.1.4: command lines of at least 512 octets; ours up to 2048 including CRLF
// (2048 accepted, 2049 refused with 500 5.5.2).
inline constexpr std::size_t kCommandLine = 2048;
// An AUTH command line carries an initial response of up to 12288 octets (RFC 4954 §4) plus
// "AUTH <mechanism> ": the read bound of every command line; only AUTH may use it past kCommandLine.
inline constexpr std::size_t kAuthLine = 12288 + 64;
// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF (1001 refused):
// kMaxTextLine in data_reader.h, beside the decoder that enforces it.
// DATA is read with a larger bound so an over-long line is still seen whole, with its real
// line ending; a line beyond even this is dropped and poisons the end of DATA (data_reader.h).
inline constexpr std::size_t kDataRead = 64 * 1024;
// The DATA buffer's first reservation when the client declared no SIZE (RFC 1870), and the
// slack above a declared SIZE (our Received: header and the client's CRLF accounting).
inline constexpr std::size_t kDataReserve = 16384;
inline constexpr std::size_t kDataReserveSlack = 1024;

using protocol::kMaxSaslResponse;
using protocol::kShutdownTimeout;
using protocol::kTlsHandshakeTimeout;
using protocol::kWriteTimeout;

}  // namespace rg::smtp::limits
