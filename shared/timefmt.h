// Time stamps in the two text forms the project writes: ISO 8601 UTC for JSON (status file,
// relaygatectl --json) and RFC 5322 §3.3 dates for mail headers (Received:, DSNs).
#pragma once

#include <cstdint>
#include <string>

namespace rg::timefmt {

std::string iso8601(int64_t unix_seconds);  // "2026-11-26T03:34:34Z"
std::string rfc5322(int64_t unix_seconds);  // "Thu, 26 Nov 2026 03:34:34 +0000"

}  // namespace rg::timefmt
