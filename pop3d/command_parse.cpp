// See command_parse.h.
#include "pop3d/command_parse.h"

#include "shared/sasl/codec.h"

namespace rg::pop3 {

std::string strip_eol(std::string line) {
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::optional<uint64_t> parse_number(std::string_view s) {
  if (s.empty() || s.size() > Limits::kNumberDigits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

std::vector<std::string_view> split_args(std::string_view args) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < args.size()) {
    while (i < args.size() && args[i] == ' ') ++i;
    size_t j = i;
    while (j < args.size() && args[j] != ' ') ++j;
    if (j > i) out.push_back(args.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<ApopArgs> parse_apop(std::string_view args) {
  const auto a = split_args(args);
  if (a.size() != 2 || a[1].size() != Limits::kApopDigest) return std::nullopt;
  return ApopArgs{a[0], a[1]};
}

std::optional<AuthArgs> parse_auth(std::string_view args) {
  const auto a = split_args(args);
  if (a.empty() || a.size() > 2) return std::nullopt;
  AuthArgs out{a[0], std::nullopt};
  if (a.size() == 2) out.initial = a[1];
  return out;
}

std::optional<std::string> decode_initial_response(std::string_view initial) {
  if (initial == "=") return std::string();
  return sasl::base64_decode(initial);
}

}  // namespace rg::pop3
