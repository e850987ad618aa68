// SMTP's pure checks (commands.h). Each check answers in the order the session always has:
// sequence (503), then syntax (501), then parameters and limits. The table binding them to the
// session is command_table.cpp, so the checks link without the session (tests/fuzz/).
#include "smtpd/commands.h"

#include "shared/ascii.h"
#include "smtpd/limits.h"

namespace rg::smtp {

namespace {

// A 501-class or 503-class refusal, logged at info.
Refusal refusal(int code, std::string_view enhanced, std::string text, std::string_view reason) {
  return {code, std::string(enhanced), std::move(text), std::string(reason)};
}
Refusal bad_sequence(std::string text) { return refusal(503, "5.5.1", std::move(text), "bad-sequence"); }
Refusal syntax(std::string text) { return refusal(501, "5.5.4", std::move(text), "syntax"); }

// RFC 4954 §4: AUTH only after EHLO, only once, and not inside a mail transaction, judged in
// this order whatever the state.
std::optional<Refusal> auth_sequence(const Facts& f) {
  if (f.state == State::Connected || !f.esmtp) return bad_sequence("Error: send EHLO first");
  if (f.authenticated) return bad_sequence("Error: already authenticated");
  if (f.state != State::Greeted) return bad_sequence("Error: MAIL transaction in progress");
  return std::nullopt;
}

std::optional<Refusal> check_greet(std::string_view args, std::string_view usage) {
  if (args.substr(0, args.find(' ')).empty()) return syntax(std::string(usage));
  return std::nullopt;
}

}  // namespace

Refusal refusal_unknown() { return refusal(500, "5.5.2", "Error: command not recognized", "unknown-command"); }

Refusal refusal_tls_required() { return refusal(530, "5.7.0", "Must issue a STARTTLS command first", "tls-required"); }

Refusal refusal_wrong_state(CommandId id, const Facts& f) {
  switch (id) {
    case CommandId::Auth:
      if (auto r = auth_sequence(f)) return *r;
      break;
    case CommandId::Mail:
      return bad_sequence(f.state == State::Connected ? "Error: send HELO/EHLO first" : "Error: nested MAIL command");
    case CommandId::Data:
      if (f.state == State::Mail) return bad_sequence("Error: need RCPT command");
      break;
    default: break;
  }
  return bad_sequence("Error: need MAIL command");  // RCPT, DATA before MAIL
}

std::optional<Refusal> check_ehlo(const Facts&, std::string_view args) {
  return check_greet(args, "Syntax: EHLO hostname");
}
std::optional<Refusal> check_helo(const Facts&, std::string_view args) {
  return check_greet(args, "Syntax: HELO hostname");
}

std::optional<Refusal> check_starttls(const Facts& f, std::string_view args) {
  if (!args.empty()) return syntax("Syntax: STARTTLS");
  if (f.tls_active) return bad_sequence("Error: TLS already active");
  if (!f.starttls_offered) return refusal(502, "5.5.1", "Error: command not implemented", "not-implemented");
  return std::nullopt;
}

AuthArgs split_auth_args(std::string_view args) {
  const size_t sp = args.find(' ');
  if (sp == std::string_view::npos) return {args, {}};
  return {args.substr(0, sp), args.substr(sp + 1)};
}

// The mechanism and the initial response's base64 are the work's (proceed_auth): which
// mechanisms exist and are offered is the SASL library's and the listener's answer.
std::optional<Refusal> check_auth(const Facts& f, std::string_view args) {
  if (auto r = auth_sequence(f)) return r;
  const AuthArgs a = split_auth_args(args);
  if (a.mechanism.empty() || a.initial.find(' ') != std::string_view::npos)
    return syntax("Syntax: AUTH mechanism [initial-response]");
  return std::nullopt;
}

std::optional<Refusal> check_mail(const Facts& f, std::string_view args) {
  const ParseResult parsed = parse_path_arg(args, "FROM:", true);
  if (!parsed.path) return refusal(501, "5.1.7", "Bad sender address syntax: " + parsed.error->text, "syntax");
  const MailParams mp = parse_mail_params(parsed.path->params, f.max_message_size);
  if (mp.refusal) return refusal(mp.refusal->code, mp.refusal->enhanced, mp.refusal->text, mp.refusal->reason);
  return std::nullopt;
}

MailCommand parse_mail(const Facts& f, std::string_view args) {
  ParseResult parsed = parse_path_arg(args, "FROM:", true);
  const MailParams mp = parse_mail_params(parsed.path->params, f.max_message_size);
  return {std::move(*parsed.path), mp.size};
}

std::optional<Refusal> check_rcpt(const Facts& f, std::string_view args) {
  const ParseResult parsed = parse_path_arg(args, "TO:", false);
  if (!parsed.path) return refusal(501, "5.1.3", "Bad recipient address syntax: " + parsed.error->text, "syntax");
  if (!parsed.path->params.empty())
    return refusal(555, "5.5.4",
                   "Unsupported option: " + printable(parsed.path->params.front().first, kEchoedParameter),
                   "unsupported-option");
  if (f.recipients >= f.max_recipients)
    return refusal(452, "4.5.3", "Error: too many recipients", "too-many-recipients");
  return std::nullopt;
}

Mailbox parse_rcpt(std::string_view args) { return std::move(parse_path_arg(args, "TO:", false).path->mailbox); }

std::optional<Refusal> check_data(const Facts&, std::string_view args) {
  if (!args.empty()) return syntax("Syntax: DATA");
  return std::nullopt;
}

std::optional<Refusal> check_rset(const Facts&, std::string_view args) {
  if (!args.empty()) return syntax("Syntax: RSET");
  return std::nullopt;
}

std::optional<Refusal> check_vrfy(const Facts&, std::string_view args) {
  if (args.empty()) return syntax("Syntax: VRFY address");
  return std::nullopt;
}

CommandLine check_command_line(std::string_view raw) {
  // Only AUTH may use the longer read bound (its initial response, RFC 4954 §4).
  if (raw.size() > limits::kCommandLine && !ascii::istarts_with(raw, "AUTH "))
    return {CommandLine::Problem::TooLong, {}};
  while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.remove_suffix(1);
  if (ascii::has_control(raw)) return {CommandLine::Problem::ControlCharacter, {}};
  return {CommandLine::Problem::None, raw};
}

}  // namespace rg::smtp
