// ASCII-only text helpers (protocol keywords, domains, hex): locale-independent on purpose,
// since RFC 5321 §2.4 and RFC 1939 §3 make keywords case-insensitive in US-ASCII only.
#pragma once

#include <string>
#include <string_view>

namespace rg::ascii {

constexpr char to_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }
constexpr char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = to_upper(c);
  return out;
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = to_lower(c);
  return out;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// RFC 5321 §4.1 / RFC 1939 §3: a command is printable US-ASCII (tab allowed); NUL, CR, LF and
// other control characters inside one are refused before any handler sees it.
constexpr bool has_control(std::string_view s) {
  for (char ch : s)
    if ((ch >= 0 && ch < 0x20 && ch != '\t') || ch == 0x7f) return true;
  return false;
}

}  // namespace rg::ascii
