// One log line per event on stderr: `<level> <program>[pid]: <session id> key=value ...`
// (OpenSMTPD/Postfix style), preceded by an ISO 8601 UTC timestamp, or by a `<N>` syslog
// priority when stderr is the journal (JOURNAL_STREAM; the units set SyslogLevelPrefix=yes).
// Lines about a refusal or failure begin `event= outcome= reason= ip=` in this order, before
// any client-supplied value, so a filter such as fail2ban's can never be fed a forged ip=. Values with spaces, quotes
// or control bytes are quoted and escaped so a hostile client can never forge a line; secrets must never be passed
// here.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <type_traits>

namespace rg::log {

enum class Level { Debug, Info, Warning, Error };

void set_program(std::string_view name);  // e.g. "pop3d"; default "relaygate"
void set_min_level(Level level);

// Builds one line of key=value fields and emits it when destroyed (or on emit()).
class Line {
 public:
  explicit Line(Level level = Level::Info, std::string_view session = {});
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  // A moved-from line emits nothing: lets a helper start a line that its caller completes.
  Line(Line&& other) noexcept : level_(other.level_), emitted_(other.emitted_), text_(std::move(other.text_)) {
    other.emitted_ = true;
  }

  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, bool value) { return kv(key, std::string_view(value ? "yes" : "no")); }
  template <class Int, std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
  Line& kv(std::string_view key, Int value) {
    return kv(key, std::string_view(std::to_string(value)));
  }
  Line& msg(std::string_view text);  // free text field, quoted like a value
  Level level() const { return level_; }
  void emit();

 private:
  Level level_;
  bool emitted_ = false;
  std::string text_;
};

inline Line info(std::string_view session = {}) { return Line(Level::Info, session); }
inline Line warn(std::string_view session = {}) { return Line(Level::Warning, session); }
inline Line error(std::string_view session = {}) { return Line(Level::Error, session); }
inline Line debug(std::string_view session = {}) { return Line(Level::Debug, session); }

// A reason= value as one bare token ("DIGEST-MD5: response mismatch" → "digest-md5-response-mismatch"):
// refusal lines keep `reason=` free of spaces and quotes so filters can match `reason=\S+ ip=`.
std::string token(std::string_view text);

// The completion handler for a coroutine the daemon spawns and does not wait for (a session, an
// accept loop, the queue runner): an exception that escaped it is logged as
// `event=<event> error=<what>` and the daemon goes on (the coroutine's own destructors cleaned up).
struct OnCrash {
  const char* event;  // "session-crashed", "queue-crashed"
  void operator()(std::exception_ptr e) const;
};

// Escapes a value for a key=value field (exposed for tests).
std::string quote_value(std::string_view value);

}  // namespace rg::log
