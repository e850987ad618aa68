// Log line assembly and the single write(2) per line that keeps lines whole when both
// daemons share one journal.
#include "shared/log.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace rg::log {
namespace {

std::string g_program = "relaygate";
std::atomic<int> g_min_level{static_cast<int>(Level::Info)};

// systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it connected to stdout/stderr
// (systemd.exec(5)); only when stderr is still that stream is the journal our reader.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

const bool g_journal = stderr_is_journal();

// sd-daemon(3) priority prefixes: journald (SyslogLevelPrefix=yes) turns "<N>" into PRIORITY=N,
// so `journalctl -p warning` finds warnings and errors.
const char* syslog_prefix(Level l) {
  switch (l) {
    case Level::Debug: return "<7>";
    case Level::Info: return "<6>";
    case Level::Warning: return "<4>";
    case Level::Error: return "<3>";
  }
  return "<6>";
}

// ISO 8601 UTC with milliseconds for lines read from a file or terminal (the journal keeps its own).
std::string timestamp() {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  std::tm tm{};
  gmtime_r(&tv.tv_sec, &tm);
  char buf[96];  // sized for any int values, so -Wformat-truncation has nothing to say
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  return buf;
}

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

std::string token(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '.' || c == '_') {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "unknown" : out;
}

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
  text_.reserve(192);
  text_ += g_journal ? syslog_prefix(level) : timestamp();
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

void OnCrash::operator()(std::exception_ptr e) const {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    error().kv("event", event).kv("error", ex.what());
  }
}

}  // namespace rg::log
