// Delivery status notifications (RFC 3464) as multipart/report (RFC 6522) messages: a human
// part, a message/delivery-status part with one block per recipient (Action failed or
// delayed, RFC 3463 Status, Remote-MTA and Diagnostic-Code when the smarthost answered), and
// the original headers as text/rfc822-headers. Pure: the caller gives the time and ids.
// Invariants: CRLF line endings, lines under 998 octets, ASCII except the copied original
// headers; sent with the null reverse-path so that a DSN never causes another (RFC 5321 §6.1);
// Auto-Submitted: auto-replied (RFC 3834).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/spool.h"

namespace rg::smtp::queue {

enum class DsnKind { Failed, Delayed };

struct DsnInput {
  DsnKind kind = DsnKind::Failed;
  std::string id;             // the DSN's own queue id (its Message-ID is built from it)
  std::string reporting_mta;  // our host name
  std::string remote_mta;     // the smarthost's name
  const spool::Envelope* original = nullptr;
  std::vector<size_t> recipients;  // indices into original->recipients
  std::string_view original_message;
  int64_t now = 0;
  int64_t retry_until = 0;  // Delayed: when the message will bounce
};

// The whole DSN message (headers and body, CRLF).
std::string render_dsn(const DsnInput& in);

// The header section of a stored message (through the empty line), capped at `max` octets.
std::string_view header_section(std::string_view message, size_t max = 64 * 1024);

// RFC 5322 date-time in UTC: "Thu, 26 Nov 2026 04:11:42 +0000".
std::string rfc5322_date(int64_t t);

}  // namespace rg::smtp::queue
