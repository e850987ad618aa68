// See smtp_client_wire.h.
#include "smtpd/outbound/smtp_client_wire.h"

#include <algorithm>
#include <cctype>

#include "shared/ascii.h"

namespace rg::smtp::client {
namespace {

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

bool digit(char c) { return c >= '0' && c <= '9'; }

// "X.Y.Z" with X in 2,4,5, Y 1-3 digits, Z 1-3 digits (RFC 3463 §2), followed by space or end.
size_t enhanced_length(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
  size_t i = 2, n = 0;
  while (i < s.size() && digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0 || i >= s.size() || s[i] != '.') return 0;
  ++i;
  n = 0;
  while (i < s.size() && digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0 || (i < s.size() && s[i] != ' ')) return 0;
  return i;
}

}  // namespace

std::string Reply::text(bool all) const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  for (size_t i = 0; i < lines.size() && (all || i == 0); ++i) {
    out += i == 0 ? " " : "; ";
    out += printable(lines[i]);
  }
  return out;
}

std::string Reply::status() const {
  if (!enhanced.empty() && enhanced[0] == static_cast<char>('0' + code / 100)) return enhanced;
  if (positive()) return "2.0.0";
  if (permanent()) return "5.0.0";
  return "4.0.0";
}

Reply local_reply(int code, std::string enhanced, std::string text) {
  Reply r;
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.lines.push_back(std::move(text));
  r.local = true;
  return r;
}

ReplyParser::Status ReplyParser::feed(std::string_view line) {
  if (line.size() > limits_.max_line) return bad;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.size() < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) || line[0] < '2' || line[0] > '5')
    return bad;
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!current_.lines.empty() && code != current_.code) return bad;
  bool last = true;
  std::string_view text;
  if (line.size() > 3) {
    if (line[3] == '-')
      last = false;
    else if (line[3] != ' ')
      return bad;
    text = line.substr(4);
  }
  if (current_.lines.size() >= limits_.max_lines) return bad;
  current_.code = code;
  if (size_t n = enhanced_length(text)) {
    if (current_.lines.empty()) current_.enhanced = std::string(text.substr(0, n));
    text.remove_prefix(std::min(text.size(), n + 1));
  }
  current_.lines.emplace_back(text);
  return last ? complete : need_more;
}

Reply ReplyParser::take() {
  Reply r = std::move(current_);
  current_ = Reply{};
  return r;
}

bool Capabilities::has_auth(std::string_view mech) const {
  return std::find(auth.begin(), auth.end(), ascii::upper(mech)) != auth.end();
}

Capabilities Capabilities::from_ehlo(const Reply& ehlo) {
  Capabilities c;
  c.esmtp = true;
  for (size_t i = 1; i < ehlo.lines.size(); ++i) {
    std::string line = ascii::upper(ehlo.lines[i]);
    std::vector<std::string> words;
    size_t pos = 0;
    while (pos < line.size()) {
      size_t end = line.find_first_of(" =", pos);
      if (end == std::string::npos) end = line.size();
      if (end > pos) words.push_back(line.substr(pos, end - pos));
      pos = end + 1;
    }
    if (words.empty()) continue;
    const std::string& kw = words[0];
    if (kw == "PIPELINING")
      c.pipelining = true;
    else if (kw == "STARTTLS")
      c.starttls = true;
    else if (kw == "8BITMIME")
      c.eightbitmime = true;
    else if (kw == "ENHANCEDSTATUSCODES")
      c.enhanced = true;
    else if (kw == "SIZE") {
      uint64_t v = 0;
      if (words.size() > 1 && words[1].size() <= 19 && words[1].find_first_not_of("0123456789") == std::string::npos)
        v = std::stoull(words[1]);
      c.size = v;
    } else if (kw == "AUTH") {  // "AUTH PLAIN LOGIN" and the old "AUTH=PLAIN LOGIN"
      for (size_t w = 1; w < words.size(); ++w)
        if (std::find(c.auth.begin(), c.auth.end(), words[w]) == c.auth.end()) c.auth.push_back(words[w]);
    }
  }
  return c;
}

bool has_8bit(std::string_view data) {
  return std::any_of(data.begin(), data.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::string path(std::string_view address) { return "<" + std::string(address) + ">"; }

void DataEncoder::feed(std::string_view chunk, std::string& out) {
  out.reserve(out.size() + chunk.size() + chunk.size() / 64 + 8);
  for (char c : chunk) {
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      at_line_start_ = true;
      if (c == '\n') continue;  // CR LF: one line ending
    }
    if (c == '\r') {
      pending_cr_ = true;
      continue;
    }
    if (c == '\n') {  // bare LF
      out += "\r\n";
      at_line_start_ = true;
      continue;
    }
    if (at_line_start_ && c == '.') out += '.';
    at_line_start_ = false;
    out += c;
  }
}

void DataEncoder::finish(std::string& out) {
  if (pending_cr_) {
    pending_cr_ = false;
    out += "\r\n";
    at_line_start_ = true;
  }
  if (!at_line_start_) out += "\r\n";
  out += ".\r\n";
  at_line_start_ = true;
}

std::string encode_data(std::string_view message) {
  DataEncoder e;
  std::string out;
  e.feed(message, out);
  e.finish(out);
  return out;
}

}  // namespace rg::smtp::client
