// smtpd/commands: SMTP's command table (its states, TLS and sync flags), the gates' refusals,
// every pure check_<cmd> in valid / invalid rows, and the reader's command line check at the
// limit and one past it (RFC 5321 §4.5.3.1.4). No socket: the checks take made-up Facts.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "shared/protocol/command.h"
#include "smtpd/commands.h"
#include "smtpd/limits.h"
#include "smtpd/session.h"

namespace {

using namespace rg::smtp;
using rg::protocol::find_command;
using rg::protocol::state_bit;
using Row = Session::Row;

const Row& row(std::string_view keyword) {
  const Row* r = find_command<Row>(Session::kCommands, keyword);
  EXPECT_NE(r, nullptr) << keyword;
  return *r;
}

constexpr State kStates[] = {State::Connected, State::Greeted, State::Mail, State::Rcpt};

std::string states_of(const Row& r) {
  std::string out;
  for (State s : kStates) out += (r.states & state_bit(s)) ? "1" : "0";
  return out;
}

// The table, row by row: what the gates of shared/protocol/command.h make of each command.
TEST(SmtpCommandTable, Rows) {
  struct Expect {
    std::string_view keyword, log_name;
    CommandId id;
    std::string_view states;  // Connected Greeted Mail Rcpt
    bool before_tls, sync, late_state;
  };
  const Expect rows[] = {
      {"EHLO", "ehlo", CommandId::Ehlo, "1111", true, true, false},
      {"HELO", "helo", CommandId::Helo, "1111", true, true, false},
      {"STARTTLS", "starttls", CommandId::StartTls, "1111", true, false, false},
      {"AUTH", "auth", CommandId::Auth, "0100", false, false, false},
      {"MAIL", "mail", CommandId::Mail, "0100", false, false, false},
      {"RCPT", "rcpt", CommandId::Rcpt, "0011", false, false, false},
      {"DATA", "data", CommandId::Data, "0001", false, true, true},
      {"RSET", "rset", CommandId::Rset, "1111", true, false, false},
      {"NOOP", "noop", CommandId::Noop, "1111", true, false, false},
      {"VRFY", "vrfy", CommandId::Vrfy, "1111", false, false, false},
      {"HELP", "help", CommandId::Help, "1111", true, false, false},
      {"QUIT", "quit", CommandId::Quit, "1111", true, false, false},
  };
  ASSERT_EQ(std::size(rows), Session::kCommands.size());
  for (size_t i = 0; i < std::size(rows); ++i) {
    const Expect& e = rows[i];
    const Row& r = Session::kCommands[i];  // in summary order, ids ascending
    EXPECT_EQ(r.name, e.keyword);
    EXPECT_EQ(r.log_name, e.log_name) << e.keyword;
    EXPECT_EQ(r.id, e.id) << e.keyword;
    EXPECT_EQ(static_cast<size_t>(r.id), i) << e.keyword;
    EXPECT_EQ(states_of(r), e.states) << e.keyword;
    EXPECT_EQ((r.flags & rg::protocol::kBeforeTls) != 0, e.before_tls) << e.keyword;
    EXPECT_EQ((r.flags & rg::protocol::kSyncPoint) != 0, e.sync) << e.keyword;
    EXPECT_EQ((r.flags & rg::protocol::kLateState) != 0, e.late_state) << e.keyword;
    EXPECT_NE(r.flags & rg::protocol::kCounted, 0u) << e.keyword;  // every command is in the summary
    EXPECT_TRUE(r.proceed != nullptr) << e.keyword;
  }
}

TEST(SmtpCommandTable, KeywordsAreCaseInsensitive) {
  struct {
    std::string_view keyword;
    std::optional<CommandId> id;
  } rows[] = {
      {"mail", CommandId::Mail}, {"MaIl", CommandId::Mail}, {"starttls", CommandId::StartTls},
      {"MAILX", std::nullopt},   {"MAI", std::nullopt},     {"", std::nullopt},
      {"EXPN", std::nullopt},    {"TURN", std::nullopt},
  };
  for (const auto& r : rows) {
    const Row* found = find_command<Row>(Session::kCommands, r.keyword);
    EXPECT_EQ(found ? std::optional(found->id) : std::nullopt, r.id) << r.keyword;
  }
}

// The gates' refusals. On a tls=required listener the 530 comes before any state or argument
// check (the TLS gate is first); the table's kBeforeTls column is the list above.
TEST(SmtpCommandGates, Refusals) {
  EXPECT_EQ(refusal_unknown(), (Refusal{500, "5.5.2", "Error: command not recognized", "unknown-command"}));
  EXPECT_EQ(refusal_tls_required(), (Refusal{530, "5.7.0", "Must issue a STARTTLS command first", "tls-required"}));
  EXPECT_EQ(Session::refusal_tls_required(row("MAIL")), refusal_tls_required());
}

TEST(SmtpCommandGates, WrongState) {
  struct {
    std::string_view keyword;
    Facts facts;
    std::string_view text;
  } rows[] = {
      {"MAIL", {.state = State::Connected}, "Error: send HELO/EHLO first"},
      {"MAIL", {.state = State::Mail}, "Error: nested MAIL command"},
      {"MAIL", {.state = State::Rcpt}, "Error: nested MAIL command"},
      {"RCPT", {.state = State::Connected}, "Error: need MAIL command"},
      {"RCPT", {.state = State::Greeted}, "Error: need MAIL command"},
      {"DATA", {.state = State::Connected}, "Error: need MAIL command"},
      {"DATA", {.state = State::Greeted}, "Error: need MAIL command"},
      {"DATA", {.state = State::Mail}, "Error: need RCPT command"},
      {"AUTH", {.state = State::Connected}, "Error: send EHLO first"},
      {"AUTH", {.state = State::Mail, .esmtp = false}, "Error: send EHLO first"},
      {"AUTH", {.state = State::Mail, .esmtp = true, .authenticated = true}, "Error: already authenticated"},
      {"AUTH", {.state = State::Rcpt, .esmtp = true}, "Error: MAIL transaction in progress"},
  };
  for (const auto& r : rows) {
    const Row& cmd = row(r.keyword);
    EXPECT_FALSE(cmd.states & state_bit(r.facts.state)) << r.keyword << " is valid in this state";
    EXPECT_EQ(Session::refusal_wrong_state(cmd, r.facts), (Refusal{503, "5.5.1", std::string(r.text), "bad-sequence"}))
        << r.keyword << " " << r.text;
  }
}

// One check row: the command, the facts, the arguments, and the refusal (nullopt: accepted).
struct CheckRow {
  std::string_view keyword;
  Facts facts;
  std::string_view args;
  std::optional<Refusal> want;
};

void run_checks(const std::vector<CheckRow>& rows) {
  for (const auto& r : rows) {
    const Row& cmd = row(r.keyword);
    ASSERT_NE(cmd.check, nullptr) << r.keyword;
    EXPECT_EQ(cmd.check(r.facts, r.args), r.want) << r.keyword << " " << r.args;
  }
}

Refusal syntax(std::string text) { return {501, "5.5.4", std::move(text), "syntax"}; }
Refusal sequence(std::string text) { return {503, "5.5.1", std::move(text), "bad-sequence"}; }

const Facts kGreeted{.state = State::Greeted, .esmtp = true, .max_recipients = 3, .max_message_size = 1000};

TEST(SmtpChecks, Greeting) {
  run_checks({
      {"EHLO", {}, "client.example", std::nullopt},
      {"EHLO", {}, "client.example trailing words", std::nullopt},
      {"EHLO", kGreeted, "[192.0.2.1]", std::nullopt},  // any state: EHLO again resets
      {"EHLO", {}, "", syntax("Syntax: EHLO hostname")},
      {"EHLO", {}, " client.example", syntax("Syntax: EHLO hostname")},  // two spaces: empty name
      {"HELO", {}, "client.example", std::nullopt},
      {"HELO", {}, "", syntax("Syntax: HELO hostname")},
  });
}

TEST(SmtpChecks, StartTls) {
  const Facts offered{.starttls_offered = true};
  run_checks({
      {"STARTTLS", offered, "", std::nullopt},
      {"STARTTLS", {.state = State::Mail, .starttls_offered = true}, "", std::nullopt},
      {"STARTTLS", offered, "now", syntax("Syntax: STARTTLS")},
      {"STARTTLS", {.tls_active = true, .starttls_offered = true}, "", sequence("Error: TLS already active")},
      {"STARTTLS", {.tls_active = true}, "", sequence("Error: TLS already active")},  // implicit TLS
      {"STARTTLS", {}, "", Refusal{502, "5.5.1", "Error: command not implemented", "not-implemented"}},
      {"STARTTLS", {}, "x", syntax("Syntax: STARTTLS")},  // syntax first
  });
}

TEST(SmtpChecks, Auth) {
  Facts helo = kGreeted;
  helo.esmtp = false;
  Facts authed = kGreeted;
  authed.authenticated = true;
  run_checks({
      {"AUTH", kGreeted, "PLAIN", std::nullopt},
      {"AUTH", kGreeted, "PLAIN dGVzdA==", std::nullopt},
      {"AUTH", kGreeted, "PLAIN =", std::nullopt},
      {"AUTH", kGreeted, "NOSUCH", std::nullopt},  // the mechanism is proceed_auth's (504)
      {"AUTH", kGreeted, "", syntax("Syntax: AUTH mechanism [initial-response]")},
      {"AUTH", kGreeted, " PLAIN", syntax("Syntax: AUTH mechanism [initial-response]")},
      {"AUTH", kGreeted, "PLAIN a b", syntax("Syntax: AUTH mechanism [initial-response]")},
      {"AUTH", helo, "PLAIN", sequence("Error: send EHLO first")},
      {"AUTH", authed, "PLAIN", sequence("Error: already authenticated")},
      {"AUTH", {.state = State::Connected}, "", sequence("Error: send EHLO first")},  // sequence before syntax
  });
  const AuthArgs a = split_auth_args("PLAIN dGVzdA==");
  EXPECT_EQ(a.mechanism, "PLAIN");
  EXPECT_EQ(a.initial, "dGVzdA==");
  EXPECT_EQ(split_auth_args("LOGIN").initial, "");
}

TEST(SmtpChecks, Mail) {
  run_checks({
      {"MAIL", kGreeted, "FROM:<alice@example.org>", std::nullopt},
      {"MAIL", kGreeted, "FROM:<>", std::nullopt},
      {"MAIL", kGreeted, "from: <alice@example.org>", std::nullopt},
      {"MAIL", kGreeted, "FROM:<alice@example.org> SIZE=1000 BODY=8BITMIME", std::nullopt},  // SIZE at the limit
      {"MAIL", kGreeted, "FROM:<alice@example.org> SIZE=1001",                               // one past it
       Refusal{552, "5.3.4", "Message size exceeds fixed limit", "declared-size-too-big"}},
      {"MAIL", kGreeted, "FROM:<alice@example.org> SIZE=x", Refusal{501, "5.5.4", "Bad SIZE parameter", "syntax"}},
      {"MAIL", kGreeted, "FROM:<alice@example.org> XFOO=1",
       Refusal{555, "5.5.4", "Unsupported option: XFOO", "unsupported-option"}},
  });
  for (std::string_view bad : {"", "FROM:", "TO:<alice@example.org>", "FROM:alice@example.org", "FROM:<a@b"}) {
    const auto got = check_mail(kGreeted, bad);
    ASSERT_TRUE(got) << bad;
    EXPECT_EQ(got->code, 501) << bad;
    EXPECT_EQ(got->enhanced, "5.1.7") << bad;
    EXPECT_EQ(got->reason, "syntax") << bad;
    EXPECT_EQ(got->text.rfind("Bad sender address syntax: ", 0), 0u) << got->text;
  }
  const MailCommand m = parse_mail(kGreeted, "FROM:<Alice@Example.ORG> SIZE=42");
  EXPECT_FALSE(m.from.null);
  EXPECT_EQ(m.from.mailbox.text(), "Alice@example.org");
  EXPECT_EQ(m.size, 42u);
  EXPECT_TRUE(parse_mail(kGreeted, "FROM:<>").from.null);
}

TEST(SmtpChecks, Rcpt) {
  Facts in_mail = kGreeted;
  in_mail.state = State::Mail;
  Facts below_limit = in_mail;  // max_recipients = 3
  below_limit.recipients = 2;
  Facts at_limit = in_mail;
  at_limit.recipients = 3;
  const Refusal too_many{452, "4.5.3", "Error: too many recipients", "too-many-recipients"};
  const std::string long_param = "TO:<bob@example.org> " + std::string(40, 'X') + "=1";
  run_checks({
      {"RCPT", in_mail, "TO:<bob@example.org>", std::nullopt},
      {"RCPT", below_limit, "TO:<bob@example.org>", std::nullopt},  // the 3rd of 3
      {"RCPT", at_limit, "TO:<bob@example.org>", too_many},         // the 4th of 3
      {"RCPT", in_mail, "TO:<bob@example.org> NOTIFY=NEVER",
       Refusal{555, "5.5.4", "Unsupported option: NOTIFY", "unsupported-option"}},
      {"RCPT", at_limit, "TO:<bob@example.org> NOTIFY=NEVER",  // parameters before the count
       Refusal{555, "5.5.4", "Unsupported option: NOTIFY", "unsupported-option"}},
      {"RCPT", in_mail, long_param,
       Refusal{555, "5.5.4", "Unsupported option: " + std::string(kEchoedParameter, 'X'), "unsupported-option"}},
  });
  for (std::string_view bad : {"", "TO:<>", "FROM:<bob@example.org>", "TO:bob"}) {
    const auto got = check_rcpt(at_limit, bad);  // syntax before the count
    ASSERT_TRUE(got) << bad;
    EXPECT_EQ(got->code, 501) << bad;
    EXPECT_EQ(got->enhanced, "5.1.3") << bad;
    EXPECT_EQ(got->text.rfind("Bad recipient address syntax: ", 0), 0u) << got->text;
  }
  EXPECT_EQ(parse_rcpt("TO:<bob@Example.org>").text(), "bob@example.org");
}

TEST(SmtpChecks, SmallCommands) {
  run_checks({
      {"DATA", kGreeted, "", std::nullopt},  // the state is the late gate's (WrongState)
      {"DATA", kGreeted, "x", syntax("Syntax: DATA")},
      {"RSET", {}, "", std::nullopt},
      {"RSET", {}, "all", syntax("Syntax: RSET")},
      {"VRFY", {}, "bob", std::nullopt},
      {"VRFY", {}, "", syntax("Syntax: VRFY address")},
  });
  for (std::string_view keyword : {"NOOP", "HELP", "QUIT"}) EXPECT_EQ(row(keyword).check, nullptr) << keyword;
}

// The reader's check of one command line, its CRLF counted (limits::kCommandLine = 2048).
TEST(SmtpCommandLine, LimitAndControlCharacters) {
  using P = CommandLine::Problem;
  const auto line_of = [](std::string_view prefix, size_t total) {  // `total` octets with CRLF
    std::string s(prefix);
    s.append(total - 2 - s.size(), 'a');
    return s + "\r\n";
  };
  struct {
    std::string raw;
    P problem;
    std::string_view text;  // checked for P::None
  } rows[] = {
      {"NOOP\r\n", P::None, "NOOP"},
      {"NOOP\n", P::None, "NOOP"},
      {"NOOP", P::None, "NOOP"},
      {"NOOP\t x\r\n", P::None, "NOOP\t x"},  // a tab is no control character here
      {line_of("NOOP ", limits::kCommandLine), P::None, {}},
      {line_of("NOOP ", limits::kCommandLine + 1), P::TooLong, {}},
      {line_of("MAIL FROM:<", limits::kCommandLine + 1), P::TooLong, {}},
      {line_of("AUTH PLAIN ", limits::kCommandLine + 1), P::None, {}},  // AUTH may be longer
      {line_of("auth plain ", limits::kAuthLine), P::None, {}},
      {line_of("AUTHX ", limits::kCommandLine + 1), P::TooLong, {}},
      {std::string("NO\0OP\r\n", 7), P::ControlCharacter, {}},
      {"NO\rOP\r\n", P::ControlCharacter, {}},
      {"NOOP\x7f\r\n", P::ControlCharacter, {}},
      {"NOOP \x1b[1m\r\n", P::ControlCharacter, {}},
  };
  for (const auto& r : rows) {
    const CommandLine got = check_command_line(r.raw);
    EXPECT_EQ(got.problem, r.problem) << r.raw.size() << " " << r.raw.substr(0, 12);
    if (r.problem != P::None) continue;
    if (!r.text.empty()) {
      EXPECT_EQ(got.text, r.text);
    }
    EXPECT_EQ(got.text.find_first_of("\r\n"), std::string_view::npos);
  }
  const std::string at_limit = line_of("NOOP ", limits::kCommandLine);
  EXPECT_EQ(check_command_line(at_limit).text.size(), limits::kCommandLine - 2);
}

}  // namespace
