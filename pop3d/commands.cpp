// See commands.h: the table, the gates' refusals and the pure checks.
#include "pop3d/commands.h"

#include <algorithm>

#include "pop3d/command_parse.h"
#include "pop3d/limits.h"
#include "pop3d/session.h"
#include "shared/sasl/sasl.h"

namespace rg::pop3 {
namespace {

using protocol::kBeforeTls;
using protocol::kCounted;
using protocol::state_bit;

constexpr unsigned kAuthorization = state_bit(State::Authorization);
constexpr unsigned kTransaction = state_bit(State::Transaction);

Refusal bad(std::string_view text) { return {Refusal::Kind::BadCommand, text, {}}; }
Refusal answer(std::string_view text) { return {Refusal::Kind::Answer, text, {}}; }

// RFC 1939 §7, RFC 2595 §2: USER/PASS send the password in the clear.
std::optional<Refusal> plaintext_refused(const Facts& f) {
  if (f.plaintext_ok) return std::nullopt;
  return Refusal{Refusal::Kind::Policy, "[AUTH] Plaintext authentication disallowed without TLS",
                 "encryption-required"};
}

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const std::array<Session::Row, kCommandIds - 1> Session::kCommands = {{
    {CommandId::Capa, "CAPA", "capa", kAuthorization | kTransaction, kBeforeTls | kCounted, nullptr,
     &Session::proceed_capa},
    {CommandId::Quit, "QUIT", "quit", kAuthorization | kTransaction, kBeforeTls | kCounted, nullptr,
     &Session::proceed_quit},
    {CommandId::Stls, "STLS", "stls", kAuthorization, kBeforeTls | kCounted, &check_stls, &Session::proceed_stls},
    {CommandId::User, "USER", "user", kAuthorization, kCounted, &check_user, &Session::proceed_user},
    {CommandId::Pass, "PASS", "pass", kAuthorization, kCounted, &check_pass, &Session::proceed_pass},
    {CommandId::Apop, "APOP", "apop", kAuthorization, kCounted, &check_apop, &Session::proceed_apop},
    {CommandId::Auth, "AUTH", "auth", kAuthorization, kCounted, &check_auth, &Session::proceed_auth},
    {CommandId::Stat, "STAT", "stat", kTransaction, kCounted, &check_stat, &Session::proceed_stat},
    {CommandId::List, "LIST", "list", kTransaction, kCounted, &check_list, &Session::proceed_list},
    {CommandId::Uidl, "UIDL", "uidl", kTransaction, kCounted, &check_list, &Session::proceed_uidl},
    {CommandId::Retr, "RETR", "retr", kTransaction, kCounted, &check_retr, &Session::proceed_retr},
    {CommandId::Top, "TOP", "top", kTransaction, kCounted, &check_top, &Session::proceed_top},
    {CommandId::Dele, "DELE", "dele", kTransaction, kCounted, &check_retr, &Session::proceed_dele},
    {CommandId::Noop, "NOOP", "noop", kTransaction, kCounted, &check_noop, &Session::proceed_noop},
    {CommandId::Rset, "RSET", "rset", kTransaction, kCounted, &check_rset, &Session::proceed_rset},
}};

const std::array<std::string_view, kCommandIds> Session::kSummaryNames = [] {
  auto names = protocol::summary_names<kCommandIds, Row>(kCommands, static_cast<size_t>(CommandId::Unknown));
  // "user=" of the disconnect line is who logged in (as in smtpd's); the USER command's count
  // takes another name so one line never has the key twice.
  names[static_cast<size_t>(CommandId::User)] = "user_cmd";
  return names;
}();

Refusal refusal_wrong_state() { return bad("Command not valid in this state"); }

Refusal refusal_tls_required() {
  return {Refusal::Kind::Policy, "[AUTH] TLS required: use STLS first", "tls-required"};
}

std::optional<Refusal> check_stls(const Facts& f, std::string_view args) {
  if (!args.empty()) return bad("STLS takes no arguments");
  if (f.tls) return bad("Already in TLS");
  if (!f.stls_available) return bad("STLS not available on this port");
  return std::nullopt;
}

std::optional<Refusal> check_user(const Facts& f, std::string_view args) {
  if (auto r = plaintext_refused(f)) return r;
  if (args.empty() || args.size() > Limits::kUserName) return bad("USER needs a name");
  return std::nullopt;
}

std::optional<Refusal> check_pass(const Facts& f, std::string_view) {
  if (auto r = plaintext_refused(f)) return r;
  if (!f.user_given) return bad("Send USER first");
  return std::nullopt;  // RFC 1939 §7: one argument, which may contain spaces, even be empty
}

std::optional<Refusal> check_apop(const Facts&, std::string_view args) {
  if (!parse_apop(args)) return bad("Usage: APOP name digest");
  return std::nullopt;
}

std::optional<Refusal> check_auth(const Facts& f, std::string_view args) {
  if (split_args(args).empty()) return std::nullopt;  // a bare AUTH lists the mechanisms
  const auto a = parse_auth(args);
  if (!a) return bad("Usage: AUTH mechanism [initial-response]");
  // Only for its canonical name and kind: the exchange gets a fresh object (proceed_auth).
  const auto mech = sasl::make_mechanism(a->mechanism, {});
  if (!mech || !listed(f.mechanisms, mech->name())) {
    if (mech && !f.tls && listed(f.mechanisms_with_tls, mech->name()))
      return answer(mech->plaintext() ? "[AUTH] Plaintext authentication disallowed without TLS"
                                      : "[AUTH] This mechanism needs TLS: use STLS first");
    return bad("Unsupported authentication mechanism");
  }
  if (a->initial && !decode_initial_response(*a->initial)) return answer("[AUTH] Invalid base64 in initial response");
  return std::nullopt;
}

std::optional<Refusal> check_stat(const Facts&, std::string_view args) {
  if (!args.empty()) return bad("STAT takes no arguments");
  return std::nullopt;
}

// LIST and UIDL: no argument lists every message; one must be a message number. Whether the
// message exists (and is not deleted) only the maildrop knows: proceed answers that the same way.
std::optional<Refusal> check_list(const Facts&, std::string_view args) {
  if (!args.empty() && !parse_number(args)) return answer("No such message");
  return std::nullopt;
}

// RETR and DELE: exactly one message number.
std::optional<Refusal> check_retr(const Facts&, std::string_view args) {
  if (!parse_number(args)) return answer("No such message");
  return std::nullopt;
}

std::optional<Refusal> check_top(const Facts&, std::string_view args) {
  const auto a = split_args(args);
  if (a.size() != 2) return bad("Usage: TOP message lines");
  if (!parse_number(a[1])) return bad("Invalid line count");
  if (!parse_number(a[0])) return answer("No such message");
  return std::nullopt;
}

std::optional<Refusal> check_noop(const Facts&, std::string_view args) {
  if (!args.empty()) return bad("NOOP takes no arguments");
  return std::nullopt;
}

std::optional<Refusal> check_rset(const Facts&, std::string_view args) {
  if (!args.empty()) return bad("RSET takes no arguments");
  return std::nullopt;
}

}  // namespace rg::pop3
