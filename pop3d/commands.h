// pop3d's commands on the generic engine (shared/protocol/command.h, Dovecot's pop3 command
// list): the ids, the RFC 1939 states, the facts a check may see, the refusals, and the pure
// check_<cmd> of each command. The one table, Session::kCommands (defined in commands.cpp,
// declared in session.h because its rows name Session's proceed_<cmd> members), joins them:
// (§ are RFC 1939's unless another RFC is named; proceed_<cmd> is in session.cpp, the logins'
// in session_login.cpp)
//   command  states                     before TLS  check          proceed_<cmd>
//   CAPA     AUTHORIZATION TRANSACTION  yes         -              capability list (RFC 2449 §5)
//   QUIT     AUTHORIZATION TRANSACTION  yes         -              UPDATE in TRANSACTION (§6)
//   STLS     AUTHORIZATION              yes         check_stls     TLS handshake (RFC 2595 §4)
//   USER     AUTHORIZATION              no          check_user     remember the name (§7)
//   PASS     AUTHORIZATION              no          check_pass     password login (§7)
//   APOP     AUTHORIZATION              no          check_apop     digest login (§7)
//   AUTH     AUTHORIZATION              no          check_auth     SASL login (RFC 5034 §4)
//   STAT     TRANSACTION                no          check_stat     live count and octets (§5)
//   LIST     TRANSACTION                no          check_list     scan listing (§5)
//   UIDL     TRANSACTION                no          check_list     unique-id listing (§7)
//   RETR     TRANSACTION                no          check_retr     the message, byte-stuffed (§5)
//   TOP      TRANSACTION                no          check_top      headers and n lines (§7)
//   DELE     TRANSACTION                no          check_retr     mark deleted (§5)
//   NOOP     TRANSACTION                no          check_noop     +OK (§5)
//   RSET     TRANSACTION                no          check_rset     unmark every message (§5)
// Every command is counted in the disconnect summary. Gates run state first, then TLS (see
// Session::kStateGateFirst): before STLS on a tls=required listener a command valid in
// AUTHORIZATION is told to use STLS, any other that it is not valid in this state.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg::pop3 {

// In table order, which is also the order of the disconnect summary's fields.
enum class CommandId {
  Capa,
  Quit,
  Stls,
  User,
  Pass,
  Apop,
  Auth,
  Stat,
  List,
  Uidl,
  Retr,
  Top,
  Dele,
  Noop,
  Rset,
  Unknown
};
inline constexpr std::size_t kCommandIds = static_cast<std::size_t>(CommandId::Unknown) + 1;

// RFC 1939 §3. UPDATE is entered by QUIT in TRANSACTION and ends the session: no command runs in it.
enum class State { Authorization, Transaction, Update };

// What a check may know of its session, taken when the command begins.
struct Facts {
  State state = State::Authorization;
  bool tls = false;             // the stream is encrypted (implicit TLS or after STLS)
  bool stls_available = false;  // the listener offers STLS and it has not happened yet
  bool plaintext_ok = false;    // USER/PASS may run: TLS, or auth.allow_plaintext_without_tls
  bool user_given = false;      // USER was accepted, PASS is awaited
  // SASL mechanisms offered now (exactly what CAPA's SASL line lists), and those offered once
  // TLS is up (to tell "needs TLS" from "unsupported").
  std::vector<std::string> mechanisms, mechanisms_with_tls;
};

// A -ERR answer before the work starts, and what the session does besides sending it.
struct Refusal {
  enum class Kind {
    BadCommand,  // logged (outcome=rejected, reason= the text as a token); counts towards
                 // pop3d.max_bad_commands
    Policy,      // logged with `reason`; the client followed the protocol, so it is not counted
    Answer,      // only the reply (e.g. no such message: an ordinary answer, RFC 1939 §5)
  };
  Kind kind;
  std::string_view text;    // after "-ERR "
  std::string_view reason;  // Policy: the log's reason=
  bool operator==(const Refusal&) const = default;
};

// The gates' refusals (shared/protocol/command.h).
Refusal refusal_wrong_state();
Refusal refusal_tls_required();  // RFC 2595 §4: nothing but CAPA, STLS and QUIT before TLS

// The checks: pure, arguments as sent after the keyword.
std::optional<Refusal> check_stls(const Facts& f, std::string_view args);
std::optional<Refusal> check_user(const Facts& f, std::string_view args);
std::optional<Refusal> check_pass(const Facts& f, std::string_view args);
std::optional<Refusal> check_apop(const Facts& f, std::string_view args);
std::optional<Refusal> check_auth(const Facts& f, std::string_view args);
std::optional<Refusal> check_stat(const Facts& f, std::string_view args);
std::optional<Refusal> check_list(const Facts& f, std::string_view args);  // also UIDL's
std::optional<Refusal> check_retr(const Facts& f, std::string_view args);  // also DELE's
std::optional<Refusal> check_top(const Facts& f, std::string_view args);
std::optional<Refusal> check_noop(const Facts& f, std::string_view args);
std::optional<Refusal> check_rset(const Facts& f, std::string_view args);

}  // namespace rg::pop3
