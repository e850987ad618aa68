// The SMTP client's pure protocol pieces (no I/O): reply parser (RFC 5321 §4.2, multi-line
// replies §4.2.1, enhanced codes RFC 3463/2034), EHLO capabilities (PIPELINING RFC 2920, SIZE
// RFC 1870, STARTTLS RFC 3207, AUTH RFC 4954, 8BITMIME RFC 6152), and the DATA encoder:
// every line ending on the wire is CRLF (a stored bare CR or LF becomes CRLF), lines starting
// with "." are doubled (§4.5.2), and the data ends with CRLF "." CRLF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg::smtp::client {

// RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets; servers exceed it, so we allow more.
struct ReplyLimits {
  size_t max_line = 4096;  // octets per reply line, CRLF included
  size_t max_lines = 100;  // lines per multi-line reply (EHLO lists are the long ones)
};

// One reply. Replies the client makes up (connection refused, timeout, TLS not offered) have
// `local` set: their code says how to treat the recipient (4xx retry, 5xx bounce).
struct Reply {
  int code = 0;
  std::string enhanced;            // "2.1.5" when the server sent one, else ""
  std::vector<std::string> lines;  // text after "NNN-"/"NNN " (and after the enhanced code)
  bool local = false;

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500 && code < 600; }
  // "250 2.1.5 Ok" (first line, or every line joined with "; " when `all`), printable ASCII.
  std::string text(bool all = true) const;
  // The RFC 3463 status for a DSN: the enhanced code, else derived from the code class.
  std::string status() const;
};

// A reply made by the client itself.
Reply local_reply(int code, std::string enhanced, std::string text);

// Feeds reply lines one at a time (with or without CRLF) until a reply is complete.
class ReplyParser {
 public:
  enum Status { complete, need_more, bad };
  explicit ReplyParser(ReplyLimits limits = {}) : limits_(limits) {}
  // `bad`: not "NNN-"/"NNN "/"NNN", a code change within one reply, or over the limits.
  Status feed(std::string_view line);
  // The completed reply; resets the parser for the next one.
  Reply take();

 private:
  ReplyLimits limits_;
  Reply current_;
};

struct Capabilities {
  bool esmtp = false;
  bool pipelining = false;
  bool starttls = false;
  bool eightbitmime = false;
  bool enhanced = false;
  std::optional<uint64_t> size;   // SIZE offered; 0 = no fixed limit
  std::vector<std::string> auth;  // mechanisms, upper-case
  bool has_auth(std::string_view mech) const;
  // From a positive EHLO reply (the first line is the greeting text, not a capability).
  static Capabilities from_ehlo(const Reply& ehlo);
};

// True if the data has a byte >= 0x80 (BODY=8BITMIME is then declared when offered).
bool has_8bit(std::string_view data);

// "<addr>" for MAIL FROM / RCPT TO; "" gives "<>". Stored addresses were parsed by smtpd.
std::string path(std::string_view address);

// Streams a stored message into SMTP DATA form chunk by chunk (see the file comment).
class DataEncoder {
 public:
  // Appends the wire form of `chunk` to `out`.
  void feed(std::string_view chunk, std::string& out);
  // Ends the last line if it is open and appends "." CRLF.
  void finish(std::string& out);

 private:
  bool at_line_start_ = true;
  bool pending_cr_ = false;
};

// Whole-message convenience: DataEncoder over `message`.
std::string encode_data(std::string_view message);

}  // namespace rg::smtp::client
