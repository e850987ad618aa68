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
// DATA streams to disk (session_data.cpp): the decoded message collects in one chunk of at
// least this size, which is then written to the destinations' temp files on the disk pool
// while reading waits. What one session in DATA holds is thus bounded by kDataChunk + one
// read line (kDataRead) + the stream's read buffer, about 200 KiB whatever the message size.
// 64 KiB keeps the writes large (few disk-pool jobs: ~400 for a 25 MiB message) and the
// bound small.
//
// Why no global cap on bytes in flight per client IP: with this bound, memory per client IP
// is at most smtpd.max_connections_per_ip sessions × that bound (50 × ~200 KiB = ~10 MiB),
// and for the whole server max_connections × the bound: both already fixed by the connection
// limits, independent of message sizes. Disk use is bounded by the message size limit per
// session and refused with 452 when the disk is full. A separate byte budget would only add
// a second, coarser way to stall clients.
inline constexpr std::size_t kDataChunk = 64 * 1024;

using protocol::kMaxSaslResponse;
using protocol::kShutdownTimeout;
using protocol::kTlsHandshakeTimeout;
using protocol::kWriteTimeout;

}  // namespace rg::smtp::limits
