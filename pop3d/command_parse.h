// POP3 argument parsing (RFC 1939 §3, §7; RFC 5034 §4) without I/O, tested row by row in
// tests/unit/pop3_parse_test.cpp. The session decides what a bad argument answers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pop3d/limits.h"

namespace rg::pop3 {

// A line without its ending: one LF, then one CR, removed.
std::string strip_eol(std::string line);
// Strict decimal message number or line count: digits only, no sign, at most
// Limits::kNumberDigits of them (no overflow).
std::optional<uint64_t> parse_number(std::string_view s);
// Arguments separated by one or more spaces (RFC 1939 §3); empty pieces are dropped. The views
// point into `args`.
std::vector<std::string_view> split_args(std::string_view args);

// "APOP name digest": exactly two arguments, the digest Limits::kApopDigest octets (its hex
// checked by apop_verify).
struct ApopArgs {
  std::string_view name, digest;
};
std::optional<ApopArgs> parse_apop(std::string_view args);

// "AUTH mechanism [initial-response]" (RFC 5034 §4): nullopt for more than two arguments.
// `initial` is absent, "=" (present but empty) or base64 text still to be decoded.
struct AuthArgs {
  std::string_view mechanism;
  std::optional<std::string_view> initial;
};
std::optional<AuthArgs> parse_auth(std::string_view args);
// The initial response decoded: "=" is present but empty (RFC 5034 §4), anything else base64;
// nullopt when it is not base64.
std::optional<std::string> decode_initial_response(std::string_view initial);

}  // namespace rg::pop3
