// RFC 5321 §4.1.2 parsing of MAIL FROM / RCPT TO arguments: the reverse- or forward-path and
// its ESMTP parameters. Pure functions over bytes, no I/O. Source routes (@a,@b:) are parsed
// and dropped as §4.1.2 / Appendix C allow; the mailbox left is what relay policy judges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg::smtp {

// RFC 5321 §4.5.3.1.1 / §4.5.3.1.2.
constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomain = 255;
constexpr size_t kMaxPath = 256;  // §4.5.3.1.3, including the angle brackets

struct Mailbox {
  std::string local;    // as written, quotes removed from a quoted-string local part
  bool quoted = false;  // the local part was a quoted-string
  std::string domain;   // lower-cased, one trailing dot removed; "[...]" for address literals
  bool literal = false;
  std::string text() const;  // local@domain for logs and headers (re-quoted when needed)
};

struct Path {
  bool null = false;  // "<>" (reverse-path only)
  Mailbox mailbox;
  std::vector<std::pair<std::string, std::string>> params;  // upper-cased keyword, value
};

struct PathError {
  enum class Kind { Syntax, LocalTooLong, DomainTooLong } kind;
  std::string text;
};

// Parses "FROM:<path> params" (reverse path: allow_null) or "TO:<path> params".
// `prefix` is "FROM:" or "TO:" and is matched case-insensitively; one optional space after
// the colon is tolerated (common clients send it).
struct ParseResult {
  std::optional<Path> path;
  std::optional<PathError> error;
};
ParseResult parse_path_arg(std::string_view arg, std::string_view prefix, bool allow_null);

// Text safe to echo in a reply or a header: printable ASCII only (others become '?'), at most
// `max` octets.
std::string printable(std::string_view s, size_t max = 255);
// An unsupported MAIL or RCPT parameter's keyword is echoed in the 555 reply this short.
constexpr size_t kEchoedParameter = 32;

// RFC 1870 §6: at most 19 digits, so any accepted SIZE fits in 64 bits.
constexpr size_t kMaxSizeDigits = 19;

// A MAIL FROM parameter refused: the reply and the log reason the session gives.
struct ParamRefusal {
  int code;
  std::string enhanced;
  std::string text;
  std::string reason;
};
struct MailParams {
  uint64_t size = 0;  // declared SIZE, 0 when none
  std::optional<ParamRefusal> refusal;
};

// The ESMTP parameters of MAIL FROM, in order, the first bad one refused: SIZE (RFC 1870,
// over `max_size` is 552 5.3.4), BODY=7BIT|8BITMIME (RFC 6152), AUTH= accepted and ignored
// (RFC 4954 §5: never trusted for relaying); anything else 555 5.5.4.
MailParams parse_mail_params(const std::vector<std::pair<std::string, std::string>>& params, uint64_t max_size);

}  // namespace rg::smtp
