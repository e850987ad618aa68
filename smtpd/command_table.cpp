// SMTP's command table (Session::kCommands): the pure checks of commands.cpp bound to the
// session's proceed_<cmd>. Kept apart from the checks so they link without the session.
#include "smtpd/commands.h"
#include "smtpd/session.h"

namespace rg::smtp {

using protocol::kAnyState;
using protocol::kBeforeTls;
using protocol::kCounted;
using protocol::kLateState;
using protocol::kSyncPoint;
using protocol::state_bit;

// STARTTLS, the greeting and the small commands run in any state; AUTH and MAIL only between
// transactions, RCPT inside one, DATA after a recipient (RFC 5321 §4.1.4). On a tls=required
// listener only kBeforeTls rows run before STARTTLS (RFC 3207 §4). DATA's state gate comes after
// its sync gate and its "no arguments" check (kLateState), as the session always answered.
const std::array<Session::Row, Session::kRows> Session::kCommands = {{
    {CommandId::Ehlo, "EHLO", "ehlo", kAnyState, kBeforeTls | kSyncPoint | kCounted, &check_ehlo,
     &Session::proceed_ehlo},
    {CommandId::Helo, "HELO", "helo", kAnyState, kBeforeTls | kSyncPoint | kCounted, &check_helo,
     &Session::proceed_helo},
    {CommandId::StartTls, "STARTTLS", "starttls", kAnyState, kBeforeTls | kCounted, &check_starttls,
     &Session::proceed_starttls},
    {CommandId::Auth, "AUTH", "auth", state_bit(State::Greeted), kCounted, &check_auth, &Session::proceed_auth},
    {CommandId::Mail, "MAIL", "mail", state_bit(State::Greeted), kCounted, &check_mail, &Session::proceed_mail},
    {CommandId::Rcpt, "RCPT", "rcpt", state_bit(State::Mail) | state_bit(State::Rcpt), kCounted, &check_rcpt,
     &Session::proceed_rcpt},
    {CommandId::Data, "DATA", "data", state_bit(State::Rcpt), kSyncPoint | kLateState | kCounted, &check_data,
     &Session::proceed_data},
    {CommandId::Rset, "RSET", "rset", kAnyState, kBeforeTls | kCounted, &check_rset, &Session::proceed_rset},
    {CommandId::Noop, "NOOP", "noop", kAnyState, kBeforeTls | kCounted, nullptr, &Session::proceed_noop},
    {CommandId::Vrfy, "VRFY", "vrfy", kAnyState, kCounted, &check_vrfy, &Session::proceed_vrfy},
    {CommandId::Help, "HELP", "help", kAnyState, kBeforeTls | kCounted, nullptr, &Session::proceed_help},
    {CommandId::Quit, "QUIT", "quit", kAnyState, kBeforeTls | kCounted, nullptr, &Session::proceed_quit},
}};

}  // namespace rg::smtp
