// The SMTP protocol's pure half (shared/protocol/command.h): its states, the facts a check may
// look at, every command's check_<cmd> and the reader's check of a raw command line. No I/O:
// tests/unit/smtp_commands_test.cpp calls each one with made-up facts. The command table itself
// (Session::kCommands, defined in command_table.cpp) binds these checks to the session's proceed_<cmd>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/log.h"
#include "smtpd/address.h"

namespace rg::smtp {

// CONNECTED → GREETED (EHLO/HELO) → MAIL → RCPT, back to GREETED after DATA or RSET (RFC 5321
// §4.1.4); STARTTLS returns to CONNECTED (RFC 3207 §4.2). The sync-error log line writes the
// number (state=0..3), so the order is fixed.
enum class State { Connected, Greeted, Mail, Rcpt };

// Every command's id, in the order of the disconnect summary ("ehlo=1 mail=1 ... quit=1").
enum class CommandId { Ehlo, Helo, StartTls, Auth, Mail, Rcpt, Data, Rset, Noop, Vrfy, Help, Quit, Unknown, kCount };
inline constexpr size_t kCommandIds = static_cast<size_t>(CommandId::kCount);

// What a check may know of the session: plain values, copied from the session per command.
// (Whether the listener requires TLS is the TLS gate's, Session::tls_required_now(), before any check.)
struct Facts {
  State state = State::Connected;
  bool esmtp = false;             // greeted with EHLO, not HELO
  bool tls_active = false;        // implicit TLS or after STARTTLS
  bool starttls_offered = false;  // listener tls=starttls|required
  bool authenticated = false;     // SMTP AUTH succeeded in this TLS epoch
  size_t recipients = 0;          // accepted RCPTs of the current transaction
  size_t max_recipients = 0;      // smtpd.max_recipients (RFC 5321 §4.5.3.1.8)
  uint64_t max_message_size = 0;  // smtpd.max_message_size (RFC 1870 SIZE)
};

// A reply that refuses the command, and how the refusal is logged (event=<command>
// outcome=rejected reason=<reason> ip= code=).
struct Refusal {
  int code = 0;
  std::string enhanced;  // RFC 2034 / RFC 3463 enhanced status code
  std::string text;
  std::string reason;
  log::Level level = log::Level::Info;

  bool operator==(const Refusal&) const = default;
};

// The gates' refusals (shared/protocol/command.h dispatch order).
Refusal refusal_unknown();
Refusal refusal_tls_required();
// A command outside the states of its table row: the 503 that says what to send first.
Refusal refusal_wrong_state(CommandId id, const Facts& f);

// check_<cmd>: the refusals that need nothing but the facts and the arguments, in the order
// the client sees them; nullopt means the command goes on to its proceed_<cmd>.
std::optional<Refusal> check_ehlo(const Facts& f, std::string_view args);
std::optional<Refusal> check_helo(const Facts& f, std::string_view args);
std::optional<Refusal> check_starttls(const Facts& f, std::string_view args);
std::optional<Refusal> check_auth(const Facts& f, std::string_view args);
std::optional<Refusal> check_mail(const Facts& f, std::string_view args);
std::optional<Refusal> check_rcpt(const Facts& f, std::string_view args);
std::optional<Refusal> check_data(const Facts& f, std::string_view args);
std::optional<Refusal> check_rset(const Facts& f, std::string_view args);
std::optional<Refusal> check_vrfy(const Facts& f, std::string_view args);

// What check_mail / check_rcpt accepted, for their proceed_<cmd> (parsed once more there: the
// checks stay pure and the parse is cheap). Precondition: the check returned nullopt.
struct MailCommand {
  Path from;
  uint64_t size = 0;  // declared SIZE, 0 when none
};
MailCommand parse_mail(const Facts& f, std::string_view args);
Mailbox parse_rcpt(std::string_view args);

// AUTH's arguments: "mechanism [initial-response]" (RFC 4954 §4).
struct AuthArgs {
  std::string_view mechanism;
  std::string_view initial;  // empty when none; "=" is an empty initial response
};
AuthArgs split_auth_args(std::string_view args);

// The reader's verdict on one command line as read_line returned it (line ending included),
// before the command table sees it.
struct CommandLine {
  enum class Problem {
    None,
    TooLong,           // over limits::kCommandLine and not AUTH: 500 5.5.2 "line too long"
    ControlCharacter,  // RFC 5321 §4.1: printable US-ASCII only: 501 5.5.2
  } problem = Problem::None;
  std::string_view text;  // the line without its ending (None only)
};
CommandLine check_command_line(std::string_view raw);

}  // namespace rg::smtp
