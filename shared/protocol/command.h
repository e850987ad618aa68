// The command engine both protocol sessions run (STYLE.md habits 1-3: Postfix's smtpd command
// table, Dovecot's pop3 command list, OpenSMTPD's check_<cmd>/proceed_<cmd> split).
//
// A protocol declares ONE constant table of Command rows. Each row names the command, the
// states it is valid in, its flags, a pure check and the member coroutine that does the work:
//   check_<cmd>(facts, args) -> optional<Refusal>   pure: the session's protocol facts (a plain
//                                                   struct) and the arguments; no I/O, testable
//   proceed_<cmd>(args)                              the work: reads/writes, database, delivery;
//                                                   may still refuse for what only the work finds
// dispatch() applies the gates in one fixed order for both protocols:
//   unknown keyword → s.refuse_unknown(keyword)
//   TLS gate: on a tls=required listener only kBeforeTls rows run before TLS (RFC 3207 §4,
//             RFC 2595 §4)                          → s.refuse(Session::refusal_tls_required(row))
//   state gate: the row's allowed states            → s.refuse(Session::refusal_wrong_state(row, facts))
//   sync gate (kSyncPoint rows, RFC 2920 §3.1)       → co_await s.sync_error()
//   check_<cmd>                                      → s.refuse(refusal)
//   proceed_<cmd>
// A kLateState row moves its state gate after the check (SMTP DATA answers a pipelining error
// first, then "501 Syntax: DATA" for arguments, then 503 for the wrong state).
// A Session may declare `static constexpr bool kStateGateFirst = true` to run the state gate
// before the TLS gate: in POP3 a command not valid in the current state is answered so even
// before STLS, and only a command valid now is told to wait for TLS (RFC 2595 §4).
// A Session type provides: `CommandId` (enum, rows' ids < kCommandIds), `State` (enum), `Facts`
// (with a `state` member), `Refusal`; and members facts(), begin(row or nullptr),
// tls_required_now(), refuse(const Refusal&), refuse_unknown(keyword), sync_violation() and
// sync_error() (only if some row has kSyncPoint), static refusal_tls_required(row) and
// refusal_wrong_state(row, facts).
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "shared/ascii.h"
#include "shared/log.h"

namespace rg::protocol {

enum CommandFlag : unsigned {
  kBeforeTls = 1u << 0,  // allowed before STARTTLS/STLS on a listener that requires TLS
  kSyncPoint = 1u << 1,  // ends a pipelined group (RFC 2920 §3.1): input already waiting behind it
                         // is a synchronization error for a client that may not pipeline past it
  kCounted = 1u << 2,    // appears in the disconnect summary (Postfix: "ehlo=1 auth=0/1 ...")
  kLateState = 1u << 3,  // the state gate comes after the sync gate and the check, not before
};

// The state mask of a row: state_bit(A) | state_bit(B).
template <class State>
constexpr unsigned state_bit(State s) {
  return 1u << static_cast<unsigned>(s);
}
inline constexpr unsigned kAnyState = ~0u;

template <class Session>
struct Command {
  using Facts = typename Session::Facts;
  using Refusal = typename Session::Refusal;
  using Check = std::optional<Refusal> (*)(const Facts&, std::string_view args);
  using Proceed = boost::asio::awaitable<void> (Session::*)(std::string_view args);

  typename Session::CommandId id;
  std::string_view name;      // the keyword on the wire, upper case
  std::string_view log_name;  // event= of its log lines and its name in the disconnect summary
  unsigned states;            // state_bit() of every state it is valid in, or kAnyState
  unsigned flags;             // CommandFlag bits
  Check check;                // nullptr: nothing to check beyond the gates
  Proceed proceed;
};

// "KEYWORD args": the keyword ends at the first space; the rest, as sent, is the argument text.
struct CommandLine {
  std::string_view keyword;
  std::string_view args;
};
constexpr CommandLine split_command(std::string_view line) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return {line, {}};
  return {line.substr(0, sp), line.substr(sp + 1)};
}

// Keywords are case-insensitive (RFC 5321 §2.4, RFC 1939 §3); nullptr when unknown.
template <class Row>
constexpr const Row* find_command(std::span<const Row> table, std::string_view keyword) {
  for (const Row& row : table)
    if (ascii::iequals(row.name, keyword)) return &row;
  return nullptr;
}

// Per-command counters for the disconnect summary, indexed by command id (N = ids, including
// the protocol's id for unknown commands).
template <size_t N>
class CommandStats {
 public:
  void count(size_t id, bool ok) {
    ++total_[id];
    ok_[id] += ok ? 1 : 0;
  }
  unsigned total(size_t id) const { return total_[id]; }
  unsigned ok(size_t id) const { return ok_[id]; }

  // Postfix's summary (smtpd.c, "disconnect from"): one field per command used, in id order,
  // "n" when every one succeeded, "ok/n" otherwise, then commands= over all of them.
  // `names[id]` is the field name; an empty name is left out of the line (not counted).
  void append_to(log::Line& line, const std::array<std::string_view, N>& names) const {
    const auto [all_ok, all] = append_fields_to(line, names);
    line.kv("commands", field(all_ok, all));
  }
  // The per-command fields alone, without commands= (smtpd's summary has always ended with
  // its last command field); returns {ok, total} over the fields written.
  std::pair<unsigned, unsigned> append_fields_to(log::Line& line, const std::array<std::string_view, N>& names) const {
    unsigned all_ok = 0, all = 0;
    for (size_t id = 0; id < N; ++id) {
      if (total_[id] == 0 || names[id].empty()) continue;
      line.kv(names[id], field(ok_[id], total_[id]));
      all_ok += ok_[id];
      all += total_[id];
    }
    return {all_ok, all};
  }

 private:
  static std::string field(unsigned ok, unsigned total) {
    return ok == total ? std::to_string(total) : std::to_string(ok) + "/" + std::to_string(total);
  }
  std::array<unsigned, N> total_{};
  std::array<unsigned, N> ok_{};
};

// The summary's field names from a table: a row's log_name when it has kCounted, at its id.
template <size_t N, class Row>
constexpr std::array<std::string_view, N> summary_names(std::span<const Row> table, size_t unknown_id,
                                                        std::string_view unknown_name = "unknown") {
  std::array<std::string_view, N> names{};
  for (const Row& row : table)
    if (row.flags & kCounted) names[static_cast<size_t>(row.id)] = row.log_name;
  names[unknown_id] = unknown_name;
  return names;
}

template <class Session>
inline constexpr bool state_gate_first = requires {
  requires Session::kStateGateFirst;
};

// One command line through the gates in the order above; `line` has no line ending and no
// control characters (the session's reader refuses those first).
template <class Session>
boost::asio::awaitable<void> dispatch(Session& s, std::span<const Command<Session>> table, std::string_view line) {
  const CommandLine cl = split_command(line);
  const Command<Session>* row = find_command(table, cl.keyword);
  s.begin(row);
  if (row == nullptr) {
    s.refuse_unknown(cl.keyword);
    co_return;
  }
  const bool valid_now = (row->states & state_bit(s.facts().state)) != 0;
  const bool late_state = (row->flags & kLateState) != 0;
  if constexpr (state_gate_first<Session>) {
    if (!late_state && !valid_now) {
      s.refuse(Session::refusal_wrong_state(*row, s.facts()));
      co_return;
    }
  }
  if (!(row->flags & kBeforeTls) && s.tls_required_now()) {
    s.refuse(Session::refusal_tls_required(*row));
    co_return;
  }
  if (!late_state && !valid_now) {
    s.refuse(Session::refusal_wrong_state(*row, s.facts()));
    co_return;
  }
  if constexpr (requires { s.sync_violation(); }) {
    if ((row->flags & kSyncPoint) && s.sync_violation()) {
      co_await s.sync_error();
      co_return;
    }
  }
  if (row->check != nullptr) {
    if (auto refusal = row->check(s.facts(), cl.args)) {
      s.refuse(*refusal);
      co_return;
    }
  }
  if (late_state && !valid_now) {
    s.refuse(Session::refusal_wrong_state(*row, s.facts()));
    co_return;
  }
  co_await (s.*(row->proceed))(cl.args);
}

}  // namespace rg::protocol
