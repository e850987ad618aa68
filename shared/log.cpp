// Log line assembly and the single write(2) per line that keeps lines whole when both
// daemons share one journal.
#include "shared/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace rg::log {
namespace {

std::string g_program = "relaygate";
std::atomic<int> g_min_level{static_cast<int>(Level::Info)};

const char* level_name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
  }
  return "info";
}

}  // namespace

void set_program(std::string_view name) { g_program = std::string(name); }
void set_min_level(Level level) { g_min_level = static_cast<int>(level); }

std::string quote_value(std::string_view v) {
  bool plain = !v.empty();
  for (unsigned char c : v)
    if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c >= 0x7f) plain = false;
  if (plain) return std::string(v);
  std::string out = "\"";
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < ' ' || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

Line::Line(Level level, std::string_view session) : level_(level) {
  text_.reserve(160);
  text_ += level_name(level);
  text_ += ' ';
  text_ += g_program;
  text_ += '[';
  text_ += std::to_string(getpid());
  text_ += "]:";
  if (!session.empty()) {
    text_ += ' ';
    text_ += session;
  }
}

Line::~Line() { emit(); }

Line& Line::kv(std::string_view key, std::string_view value) {
  text_ += ' ';
  text_ += key;
  text_ += '=';
  text_ += quote_value(value);
  return *this;
}
Line& Line::msg(std::string_view text) { return kv("msg", text); }

void Line::emit() {
  if (emitted_) return;
  emitted_ = true;
  if (static_cast<int>(level_) < g_min_level.load()) return;
  text_ += '\n';
  // One write per line: lines from concurrent writers never interleave mid-line.
  ssize_t n = ::write(STDERR_FILENO, text_.data(), text_.size());
  (void)n;
}

}  // namespace rg::log
