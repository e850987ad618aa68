// pop3d/commands: the command table (states, TLS gate, summary names) and every pure
// check_<cmd>, Dovecot style: valid / invalid rows, each length limit at the limit and one past.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pop3d/commands.h"
#include "pop3d/limits.h"
#include "pop3d/session.h"
#include "shared/ascii.h"

namespace {

using namespace rg::pop3;
using rg::protocol::kBeforeTls;
using rg::protocol::kCounted;
using rg::protocol::kSyncPoint;
using rg::protocol::state_bit;
using Kind = Refusal::Kind;

// The expected refusal of a row: none, or its kind and text.
struct Expect {
  std::optional<Kind> kind;
  std::string text;
};
const Expect kPass{};
Expect bad(std::string text) { return {Kind::BadCommand, std::move(text)}; }
Expect answer(std::string text) { return {Kind::Answer, std::move(text)}; }
Expect policy(std::string text) { return {Kind::Policy, std::move(text)}; }

struct Row {
  std::string args;
  Expect expect;
};

using Check = std::optional<Refusal> (*)(const Facts&, std::string_view);

void expect_rows(Check check, const Facts& facts, const std::vector<Row>& rows, const char* what) {
  for (const Row& r : rows) {
    const auto got = check(facts, r.args);
    if (!r.expect.kind) {
      EXPECT_FALSE(got) << what << " '" << r.args << "': " << got->text;
      continue;
    }
    ASSERT_TRUE(got) << what << " '" << r.args << "'";
    EXPECT_EQ(got->kind, *r.expect.kind) << what << " '" << r.args << "'";
    EXPECT_EQ(got->text, r.expect.text) << what << " '" << r.args << "'";
  }
}

Facts plain_allowed() {
  Facts f;
  f.plaintext_ok = true;
  f.stls_available = true;
  f.mechanisms = {"PLAIN", "LOGIN"};
  f.mechanisms_with_tls = {"PLAIN", "LOGIN", "CRAM-MD5"};
  return f;
}

TEST(Pop3Table, StatesAndTlsGate) {
  // RFC 1939 §3-§7 and RFC 2595 §4: where each command may run, and whether before STLS.
  struct Spec {
    std::string_view name;
    bool authorization, transaction, before_tls;
  };
  const Spec specs[] = {
      {"CAPA", true, true, true},   {"QUIT", true, true, true},   {"STLS", true, false, true},
      {"USER", true, false, false}, {"PASS", true, false, false}, {"APOP", true, false, false},
      {"AUTH", true, false, false}, {"STAT", false, true, false}, {"LIST", false, true, false},
      {"UIDL", false, true, false}, {"RETR", false, true, false}, {"TOP", false, true, false},
      {"DELE", false, true, false}, {"NOOP", false, true, false}, {"RSET", false, true, false},
  };
  ASSERT_EQ(std::size(specs), Session::kCommands.size());
  for (size_t i = 0; i < std::size(specs); ++i) {
    const Spec& s = specs[i];
    const auto* row = rg::protocol::find_command<Session::Row>(Session::kCommands, rg::ascii::lower(s.name));
    ASSERT_NE(row, nullptr) << s.name;
    EXPECT_EQ(row, &Session::kCommands[i]) << s.name;  // table order is summary order
    EXPECT_EQ(static_cast<size_t>(row->id), i) << s.name;
    EXPECT_EQ(row->name, s.name);
    EXPECT_EQ(row->log_name, rg::ascii::lower(s.name));
    EXPECT_EQ((row->states & state_bit(State::Authorization)) != 0, s.authorization) << s.name;
    EXPECT_EQ((row->states & state_bit(State::Transaction)) != 0, s.transaction) << s.name;
    EXPECT_EQ(row->states & state_bit(State::Update), 0u) << s.name;  // UPDATE ends the session
    EXPECT_EQ((row->flags & kBeforeTls) != 0, s.before_tls) << s.name;
    EXPECT_TRUE(row->flags & kCounted) << s.name;
    EXPECT_FALSE(row->flags & kSyncPoint) << s.name;  // POP3 has no pipelining sync points
    EXPECT_NE(row->proceed, nullptr) << s.name;
  }
  EXPECT_EQ(rg::protocol::find_command<Session::Row>(Session::kCommands, "XTND"), nullptr);
  EXPECT_EQ(rg::protocol::find_command<Session::Row>(Session::kCommands, ""), nullptr);
  static_assert(rg::protocol::state_gate_first<Session>);
}

TEST(Pop3Table, GateRefusals) {
  // Not counted: the client did nothing wrong by asking before STLS; logged with reason=.
  EXPECT_EQ(refusal_tls_required(), (Refusal{Kind::Policy, "[AUTH] TLS required: use STLS first", "tls-required"}));
  EXPECT_EQ(refusal_wrong_state(), (Refusal{Kind::BadCommand, "Command not valid in this state", {}}));
}

TEST(Pop3Table, SummaryNames) {
  const auto& n = Session::kSummaryNames;
  EXPECT_EQ(n[static_cast<size_t>(CommandId::Capa)], "capa");
  EXPECT_EQ(n[static_cast<size_t>(CommandId::User)], "user_cmd");  // "user=" is who logged in
  EXPECT_EQ(n[static_cast<size_t>(CommandId::Pass)], "pass");
  EXPECT_EQ(n[static_cast<size_t>(CommandId::Rset)], "rset");
  EXPECT_EQ(n[static_cast<size_t>(CommandId::Unknown)], "unknown");
}

TEST(Pop3Check, Stls) {
  Facts f = plain_allowed();
  expect_rows(check_stls, f,
              {{"", kPass}, {"x", bad("STLS takes no arguments")}, {" ", bad("STLS takes no arguments")}},
              "STLS offered");
  f.stls_available = false;
  expect_rows(check_stls, f, {{"", bad("STLS not available on this port")}}, "STLS not offered");
  f.tls = true;
  expect_rows(check_stls, f, {{"", bad("Already in TLS")}, {"x", bad("STLS takes no arguments")}}, "after STLS");
}

TEST(Pop3Check, User) {
  Facts f = plain_allowed();
  expect_rows(check_user, f,
              {{"alice", kPass},
               {"alice@example.org", kPass},
               {"two words", kPass},  // the name as sent; authdb decides
               {std::string(Limits::kUserName, 'a'), kPass},
               {std::string(Limits::kUserName + 1, 'a'), bad("USER needs a name")},
               {"", bad("USER needs a name")}},
              "USER");
  f.plaintext_ok = false;  // auth.allow_plaintext_without_tls false, no TLS yet
  const Expect refused = policy("[AUTH] Plaintext authentication disallowed without TLS");
  expect_rows(check_user, f, {{"alice", refused}, {"", refused}}, "USER without TLS");
  EXPECT_EQ(check_user(f, "alice")->reason, "encryption-required");
}

TEST(Pop3Check, Pass) {
  Facts f = plain_allowed();
  expect_rows(check_pass, f, {{"secret", bad("Send USER first")}}, "PASS before USER");
  f.user_given = true;
  expect_rows(check_pass, f, {{"secret", kPass}, {"with  spaces ", kPass}, {"", kPass}}, "PASS");
  f.plaintext_ok = false;
  expect_rows(check_pass, f, {{"secret", policy("[AUTH] Plaintext authentication disallowed without TLS")}},
              "PASS without TLS");
  f.user_given = false;  // the policy answers first
  expect_rows(check_pass, f, {{"secret", policy("[AUTH] Plaintext authentication disallowed without TLS")}},
              "PASS without TLS nor USER");
}

TEST(Pop3Check, Apop) {
  const std::string digest(Limits::kApopDigest, 'a');
  const Expect usage = bad("Usage: APOP name digest");
  Facts f = plain_allowed();
  f.plaintext_ok = false;  // APOP sends no password: allowed without TLS
  expect_rows(check_apop, f,
              {{"alice " + digest, kPass},
               {"alice  " + digest, kPass},
               {"alice " + digest.substr(1), usage},
               {"alice " + digest + "a", usage},
               {"alice", usage},
               {"", usage},
               {"alice " + digest + " x", usage}},
              "APOP");
}

TEST(Pop3Check, Auth) {
  Facts f = plain_allowed();
  expect_rows(check_auth, f,
              {{"", kPass},     // a bare AUTH lists the mechanisms
               {"   ", kPass},  // so does one with only spaces
               {"PLAIN", kPass},
               {"plain", kPass},  // RFC 5034 §4: mechanism names are case-insensitive
               {"PLAIN =", kPass},
               {"PLAIN AGFsaWNlAHNlY3JldA==", kPass},
               {"LOGIN", kPass},
               {"PLAIN ab=c", answer("[AUTH] Invalid base64 in initial response")},
               {"PLAIN a b", bad("Usage: AUTH mechanism [initial-response]")},
               {"NOSUCHMECH", bad("Unsupported authentication mechanism")},
               {"DIGEST-MD5", bad("Unsupported authentication mechanism")},  // not configured at all
               {"CRAM-MD5", answer("[AUTH] This mechanism needs TLS: use STLS first")}},
              "AUTH without TLS");
  f.mechanisms = {"CRAM-MD5"};
  expect_rows(check_auth, f,
              {{"CRAM-MD5", kPass}, {"PLAIN", answer("[AUTH] Plaintext authentication disallowed without TLS")}},
              "AUTH, plaintext only over TLS");
  f.tls = true;
  f.mechanisms = {"PLAIN"};
  expect_rows(check_auth, f, {{"PLAIN", kPass}, {"CRAM-MD5", bad("Unsupported authentication mechanism")}},
              "AUTH over TLS");
}

TEST(Pop3Check, NoArguments) {
  const Facts f;
  struct Case {
    Check check;
    const char* name;
  };
  for (const Case& c : {Case{check_stat, "STAT"}, Case{check_noop, "NOOP"}, Case{check_rset, "RSET"}}) {
    const Expect refused = bad(std::string(c.name) + " takes no arguments");
    expect_rows(c.check, f, {{"", kPass}, {"1", refused}, {" ", refused}}, c.name);
  }
}

TEST(Pop3Check, MessageNumbers) {
  const Facts f;
  const Expect none = answer("No such message");  // an answer, not a bad command (RFC 1939 §5)
  const std::string at_limit(Limits::kNumberDigits, '9'), past_limit(Limits::kNumberDigits + 1, '1');
  expect_rows(check_list, f,
              {{"", kPass},
               {"1", kPass},
               {"0", kPass},  // 0 parses; the maildrop has no message 0
               {at_limit, kPass},
               {past_limit, none},
               {"x", none},
               {"-1", none},
               {"1 2", none},
               {" 1", none}},
              "LIST/UIDL");
  expect_rows(check_retr, f, {{"1", kPass}, {at_limit, kPass}, {past_limit, none}, {"", none}, {"1 2", none}},
              "RETR/DELE");
  expect_rows(check_top, f,
              {{"1 0", kPass},
               {"1  10", kPass},
               {"1 " + at_limit, kPass},
               {"1 " + past_limit, bad("Invalid line count")},
               {"1 x", bad("Invalid line count")},
               {"x 1", none},
               {"x y", bad("Invalid line count")},  // the count is checked first
               {"1", bad("Usage: TOP message lines")},
               {"", bad("Usage: TOP message lines")},
               {"1 2 3", bad("Usage: TOP message lines")}},
              "TOP");
}

}  // namespace
