// The outbound queue without sockets: SMTP client reply parser, EHLO capabilities and DATA
// encoder (limits at limit and limit+1), the retry/bounce state machine, DSN rendering, the
// spool's locking/update/recovery primitives, the runner's planning (which messages go out on
// how many connections; what one attempt leaves to persist) and its load/persist steps.
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "shared/spool.h"
#include "smtpd/outbound/queue_dsn.h"
#include "smtpd/outbound/queue_plan.h"
#include "smtpd/outbound/queue_policy.h"
#include "smtpd/outbound/queue_store.h"
#include "smtpd/outbound/smtp_client_wire.h"
#include "smtpd/outbound/spool_watch.h"

namespace {

namespace fs = std::filesystem;
using rg::smtp::client::Capabilities;
using rg::smtp::client::DataEncoder;
using rg::smtp::client::Reply;
using rg::smtp::client::ReplyLimits;
using rg::smtp::client::ReplyParser;
namespace queue = rg::smtp::queue;
namespace spool = rg::spool;

Reply parse(std::initializer_list<std::string> lines, ReplyParser::Status* last = nullptr, ReplyLimits limits = {}) {
  ReplyParser p(limits);
  ReplyParser::Status s = ReplyParser::bad;
  for (const auto& l : lines) {
    s = p.feed(l);
    if (s != ReplyParser::need_more) break;
  }
  if (last) *last = s;
  return s == ReplyParser::complete ? p.take() : Reply{};
}

TEST(ReplyParser, SingleAndMultiLine) {
  ReplyParser::Status s;
  Reply r = parse({"250 2.1.5 Ok\r\n"}, &s);
  ASSERT_EQ(s, ReplyParser::complete);
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.1.5");
  EXPECT_EQ(r.lines, (std::vector<std::string>{"Ok"}));
  EXPECT_EQ(r.text(), "250 2.1.5 Ok");
  EXPECT_EQ(r.status(), "2.1.5");

  r = parse({"250-mail.example.test\r\n", "250-PIPELINING\r\n", "250 SIZE 1000\r\n"}, &s);
  ASSERT_EQ(s, ReplyParser::complete);
  EXPECT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.text(false), "250 mail.example.test");

  r = parse({"354\r\n"}, &s);  // a bare code is a complete reply
  ASSERT_EQ(s, ReplyParser::complete);
  EXPECT_EQ(r.code, 354);
  EXPECT_EQ(r.status(), "2.0.0");

  r = parse({"550 5.1.1 <x@y>: unknown"}, &s);  // no CRLF: still a line
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_TRUE(r.permanent());
  // An enhanced code whose class differs from the reply's is not trusted for the DSN.
  EXPECT_EQ(parse({"451 5.1.1 odd"}).status(), "4.0.0");
  EXPECT_EQ(parse({"421 service closing"}).status(), "4.0.0");
}

TEST(ReplyParser, RejectsMalformed) {
  for (const char* bad : {"", "25", "abc def", "250x", "199 too low", "600 too high", "2500 Ok", "250_Ok"}) {
    ReplyParser::Status s;
    parse({bad}, &s);
    EXPECT_EQ(s, ReplyParser::bad) << bad;
  }
  ReplyParser::Status s;
  parse({"250-one", "251 two"}, &s);  // the code changes within one reply
  EXPECT_EQ(s, ReplyParser::bad);
}

TEST(ReplyParser, LimitsAtLimitAndLimitPlusOne) {
  ReplyLimits limits{16, 3};
  ReplyParser::Status s;
  parse({"250 " + std::string(10, 'x') + "\r\n"}, &s, limits);  // 16 octets with CRLF
  EXPECT_EQ(s, ReplyParser::complete);
  parse({"250 " + std::string(11, 'x') + "\r\n"}, &s, limits);  // 17
  EXPECT_EQ(s, ReplyParser::bad);
  parse({"250-a", "250-b", "250 c"}, &s, limits);  // 3 lines
  EXPECT_EQ(s, ReplyParser::complete);
  parse({"250-a", "250-b", "250-c", "250 d"}, &s, limits);  // 4
  EXPECT_EQ(s, ReplyParser::bad);
}

TEST(Capabilities, FromEhlo) {
  Reply r = parse({"250-smtp.isp.test Hello", "250-pipelining", "250-SIZE 10240000", "250-STARTTLS",
                   "250-AUTH PLAIN LOGIN", "250-AUTH=LOGIN CRAM-MD5", "250-ENHANCEDSTATUSCODES", "250 8BITMIME"});
  Capabilities c = Capabilities::from_ehlo(r);
  EXPECT_TRUE(c.pipelining);
  EXPECT_TRUE(c.starttls);
  EXPECT_TRUE(c.eightbitmime);
  EXPECT_TRUE(c.enhanced);
  ASSERT_TRUE(c.size.has_value());
  EXPECT_EQ(*c.size, 10240000u);
  EXPECT_EQ(c.auth, (std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5"}));
  EXPECT_TRUE(c.has_auth("plain"));
  EXPECT_FALSE(c.has_auth("XOAUTH2"));

  Capabilities bare = Capabilities::from_ehlo(parse({"250 only.the.greeting STARTTLS"}));
  EXPECT_FALSE(bare.starttls);  // the first line is the greeting, never a capability
  EXPECT_FALSE(bare.size.has_value());
  Capabilities nosize = Capabilities::from_ehlo(parse({"250-x", "250 SIZE"}));
  ASSERT_TRUE(nosize.size.has_value());
  EXPECT_EQ(*nosize.size, 0u);
}

TEST(DataEncoder, CrlfAndDotStuffing) {
  struct Case {
    std::string in, out;
  } cases[] = {
      {"", ".\r\n"},
      {"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
      {"no final newline", "no final newline\r\n.\r\n"},
      {".\r\n", "..\r\n.\r\n"},
      {".starts\r\n..two\r\nmid.dle\r\n", "..starts\r\n...two\r\nmid.dle\r\n.\r\n"},
      {"bare\nLF\n.x\n", "bare\r\nLF\r\n..x\r\n.\r\n"},
      {"bare\rCR\r.x", "bare\r\nCR\r\n..x\r\n.\r\n"},
      {"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
      {"end with CR\r", "end with CR\r\n.\r\n"},
      {"\r\n.\r\n", "\r\n..\r\n.\r\n"},  // a stored "." line can never end DATA early
      {std::string("nul\0byte\r\n", 10), std::string("nul\0byte\r\n.\r\n", 13)},
  };
  for (const auto& c : cases) EXPECT_EQ(rg::smtp::client::encode_data(c.in), c.out) << c.in;
}

TEST(DataEncoder, ChunkBoundariesDoNotMatter) {
  const std::string msg = "Subject: x\r\n\r\n.a\r\nb\rc\nd\r\n.\r\n..\r\nlast\r";
  const std::string whole = rg::smtp::client::encode_data(msg);
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    DataEncoder e;
    std::string out;
    size_t off = 0;
    while (off < msg.size()) {
      size_t n = std::uniform_int_distribution<size_t>(0, 4)(rng);
      e.feed(std::string_view(msg).substr(off, n), out);
      off += n;
    }
    e.finish(out);
    ASSERT_EQ(out, whole) << "round " << round;
  }
  // Only CRLF on the wire: every LF is preceded by CR and every CR followed by LF.
  for (size_t i = 0; i < whole.size(); ++i) {
    if (whole[i] == '\n') {
      EXPECT_TRUE(i > 0 && whole[i - 1] == '\r');
    }
    if (whole[i] == '\r') {
      EXPECT_TRUE(i + 1 < whole.size() && whole[i + 1] == '\n');
    }
  }
}

TEST(Policy, RetryDelayDoublesUpToTheCap) {
  queue::Policy p{300, 3600, 5 * 86400, 14400};
  EXPECT_EQ(queue::retry_delay(p, 1), 300);
  EXPECT_EQ(queue::retry_delay(p, 2), 600);
  EXPECT_EQ(queue::retry_delay(p, 3), 1200);
  EXPECT_EQ(queue::retry_delay(p, 4), 2400);
  EXPECT_EQ(queue::retry_delay(p, 5), 3600);
  EXPECT_EQ(queue::retry_delay(p, 1000000), 3600);  // no overflow
  queue::Policy q{1, 2, 60, 0};
  EXPECT_EQ(queue::retry_delay(q, 1), 1);
  EXPECT_EQ(queue::retry_delay(q, 2), 2);
  EXPECT_EQ(queue::retry_delay(q, 3), 2);
}

spool::Envelope envelope(std::string sender, std::vector<std::string> rcpts, int64_t created = 1000) {
  spool::Envelope e;
  e.id = "0123456789AB";
  e.sender = std::move(sender);
  for (auto& r : rcpts) e.recipients.emplace_back(r);
  e.created_at = created;
  e.next_attempt_at = created;
  e.size = 100;
  return e;
}

TEST(Policy, AttemptTransitions) {
  queue::Policy p{300, 3600, 86400, 0};
  auto e = envelope("alice@example.test", {"a@r.test", "b@r.test", "c@r.test"});
  auto ok = parse({"250 2.0.0 Ok: queued as X"});
  auto temp = parse({"451 4.3.0 try later"});
  auto perm = parse({"550 5.1.1 <b@r.test>: unknown user"});
  auto events = queue::apply_attempt(e, {{0, ok}, {1, perm}, {2, temp}}, 1010, p);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].result, queue::Result::Sent);
  EXPECT_EQ(events[1].result, queue::Result::Bounced);
  EXPECT_EQ(events[2].result, queue::Result::Deferred);
  EXPECT_EQ(e.recipients[0].state, "delivered");
  EXPECT_EQ(e.recipients[1].state, "failed");
  EXPECT_FALSE(e.recipients[1].notified);
  EXPECT_EQ(e.recipients[1].status, "5.1.1");
  EXPECT_EQ(e.recipients[1].diagnostic, "550 5.1.1 <b@r.test>: unknown user");
  EXPECT_EQ(e.recipients[2].state, "pending");
  EXPECT_EQ(e.recipients[2].last_error, "451 4.3.0 try later");
  EXPECT_EQ(e.attempts, 1);
  EXPECT_EQ(e.next_attempt_at, 1010 + 300);
  EXPECT_EQ(queue::unnotified_failures(e), (std::vector<size_t>{1}));
  EXPECT_FALSE(queue::finished(e));

  // A 5xx that did not come from this message's transaction (TLS missing, AUTH refused) defers.
  auto e2 = envelope("alice@example.test", {"a@r.test"});
  auto local = rg::smtp::client::local_reply(554, "5.7.0", "greeting refused");
  events = queue::apply_attempt(e2, {{0, local, true}}, 1010, p);
  EXPECT_EQ(events[0].result, queue::Result::Deferred);
  EXPECT_EQ(e2.recipients[0].state, "pending");
  EXPECT_EQ(e2.recipients[0].diagnostic, "");  // a local error is no smarthost diagnostic
  events = queue::apply_attempt(e2, {{0, temp}}, 2000, p);
  EXPECT_EQ(e2.attempts, 2);
  EXPECT_EQ(e2.next_attempt_at, 2000 + 600);
}

TEST(Policy, ExpiryAndNullSender) {
  queue::Policy p{300, 3600, 3600, 0};
  auto e = envelope("alice@example.test", {"a@r.test"});
  auto temp = parse({"451 4.3.0 try later"});
  auto events = queue::apply_attempt(e, {{0, temp}}, 1000 + 3599, p);
  EXPECT_EQ(events[0].result, queue::Result::Deferred);
  events = queue::apply_attempt(e, {{0, temp}}, 1000 + 3600, p);  // limit reached
  EXPECT_EQ(events[0].result, queue::Result::Expired);
  EXPECT_EQ(e.recipients[0].state, "failed");
  EXPECT_EQ(e.recipients[0].status, "4.4.7");
  EXPECT_FALSE(e.recipients[0].notified);

  // Never a DSN for the null sender: the failure starts notified and the message can go.
  auto bounce = envelope("", {"x@r.test"});
  queue::apply_attempt(bounce, {{0, parse({"550 no"})}}, 1001, p);
  EXPECT_TRUE(bounce.recipients[0].notified);
  EXPECT_TRUE(queue::finished(bounce));
}

TEST(Policy, DelayWarning) {
  queue::Policy p{300, 3600, 86400, 600};
  auto e = envelope("alice@example.test", {"a@r.test"});
  EXPECT_FALSE(queue::delay_warning_due(e, 1000 + 599, p));
  EXPECT_TRUE(queue::delay_warning_due(e, 1000 + 600, p));
  e.warned = true;
  EXPECT_FALSE(queue::delay_warning_due(e, 1000 + 600, p));
  auto null_sender = envelope("", {"a@r.test"});
  EXPECT_FALSE(queue::delay_warning_due(null_sender, 5000, p));
  p.delay_warning = 0;
  EXPECT_FALSE(queue::delay_warning_due(envelope("a@b.test", {"c@d.test"}), 99999, p));
}

// The dispatcher's plan, valid/limit rows: {slots, waiting, connections, idle, max} ->
// {due ids, connections to open, wake time}. now = 100, next scan at 160.
TEST(QueuePlan, Dispatch) {
  using Slots = std::map<std::string, queue::Slot>;
  const Slots mixed = {{"A", {0, false, false}},    // due now
                       {"B", {100, false, false}},  // due at now (limit)
                       {"C", {101, false, false}},  // due at now+1: wakes the dispatcher then
                       {"D", {0, true, false}},     // held
                       {"E", {0, false, true}}};    // busy
  struct Row {
    const char* name;
    Slots slots;
    size_t waiting, connections, idle, max;
    std::vector<std::string> due;
    size_t open;
    int64_t wake_at;
  } rows[] = {
      {"empty queue: nothing, wake at the scan", {}, 0, 0, 0, 4, {}, 0, 160},
      {"due, held, busy and later slots", mixed, 0, 0, 0, 4, {"A", "B"}, 2, 101},
      {"busy connections take the rest when done", mixed, 0, 2, 0, 4, {"A", "B"}, 0, 101},
      {"one busy, two messages: one more", mixed, 0, 1, 0, 4, {"A", "B"}, 1, 101},
      {"cap reached (limit): none opened", mixed, 5, 4, 0, 4, {"A", "B"}, 0, 101},
      {"one below the cap (limit-1): one opened", mixed, 5, 3, 0, 4, {"A", "B"}, 1, 101},
      {"idle ones are no busy ones, but count to the cap", mixed, 0, 3, 2, 4, {"A", "B"}, 1, 101},
      {"already waiting ids count", {}, 3, 1, 0, 8, {}, 2, 160},
      {"max 1 (limit): one at a time", mixed, 0, 0, 0, 1, {"A", "B"}, 1, 101},
  };
  for (const auto& r : rows) {
    queue::DispatchInput in;
    in.now = 100;
    in.next_scan = 160;
    in.waiting = r.waiting;
    in.connections = r.connections;
    in.idle = r.idle;
    in.max_connections = r.max;
    const auto d = queue::plan_dispatch(r.slots, in);
    EXPECT_EQ(d.due, r.due) << r.name;
    EXPECT_EQ(d.open, r.open) << r.name;
    EXPECT_EQ(d.wake_at, r.wake_at) << r.name;
  }
}

TEST(QueuePlan, NextLook) {
  auto e = envelope("alice@example.test", {"a@r.test", "b@r.test"});
  e.next_attempt_at = 5000;
  EXPECT_EQ(queue::next_look(e), 5000);  // only an attempt to make: at its time
  e.recipients[1].state = "failed";      // a failure without its DSN: now
  EXPECT_EQ(queue::next_look(e), 0);
  e.recipients[1].notified = true;
  EXPECT_EQ(queue::next_look(e), 5000);
  e.recipients[0].state = "delivered";  // nothing pending: remove now
  EXPECT_EQ(queue::next_look(e), 0);
}

TEST(QueuePlan, AfterAttemptPerDsnTarget) {
  auto e = envelope("alice@example.test", {"a@r.test", "b@r.test"});
  e.recipients[1].state = "failed";
  e.recipients[1].status = "5.1.1";
  queue::AttemptInput in;
  in.reporting_mta = "mx.example.test";
  in.remote_mta = "smarthost.test";
  in.policy = queue::Policy{300, 3600, 86400, 0};
  in.now = 2000;

  in.target = queue::DsnTarget::Remote;  // queued to the smarthost with the null sender
  auto r = queue::plan_after_attempt(e, "Subject: x\r\n\r\nbody\r\n", in);
  ASSERT_EQ(r.plan.dsns.size(), 1u);
  EXPECT_FALSE(r.dropped);
  EXPECT_TRUE(r.plan.write_recorded);  // the failure is recorded before its DSN exists
  EXPECT_FALSE(r.plan.recorded.recipients[1].notified);
  EXPECT_EQ(r.plan.dsns[0].id, spool::dsn_id(e.id, 1));
  EXPECT_EQ(r.plan.dsns[0].local_user, "");
  EXPECT_EQ(r.plan.dsns[0].env.sender, "");
  ASSERT_EQ(r.plan.dsns[0].env.recipients.size(), 1u);
  EXPECT_EQ(r.plan.dsns[0].env.recipients[0].address, "alice@example.test");
  EXPECT_EQ(r.plan.dsns[0].env.dsn_of, e.id);
  EXPECT_EQ(r.plan.dsns[0].env.size, r.plan.dsns[0].message.size());
  EXPECT_NE(r.plan.dsns[0].message.find("mx.example.test"), std::string::npos);
  EXPECT_TRUE(r.plan.final.recipients[1].notified);
  EXPECT_EQ(r.plan.final.dsn_count, 1);
  EXPECT_FALSE(r.plan.remove);  // a@r.test is still pending

  in.target = queue::DsnTarget::Local;  // into the sender's Maildir, with Return-Path: <>
  in.local_user = "alice";
  r = queue::plan_after_attempt(e, "x\r\n", in);
  ASSERT_EQ(r.plan.dsns.size(), 1u);
  EXPECT_EQ(r.plan.dsns[0].local_user, "alice");
  EXPECT_EQ(r.plan.dsns[0].message.rfind("Return-Path: <>\r\n", 0), 0u);

  in.target = queue::DsnTarget::Drop;  // no such local user: no DSN, but notified (logged)
  r = queue::plan_after_attempt(e, "x\r\n", in);
  EXPECT_TRUE(r.dropped);
  EXPECT_TRUE(r.plan.dsns.empty());
  EXPECT_FALSE(r.plan.write_recorded);
  EXPECT_TRUE(r.plan.final.recipients[1].notified);

  in.target = queue::DsnTarget::Retry;  // the lookup failed: nothing decided, nothing lost
  r = queue::plan_after_attempt(e, "x\r\n", in);
  EXPECT_FALSE(r.dropped);
  EXPECT_TRUE(r.plan.dsns.empty());
  EXPECT_FALSE(r.plan.final.recipients[1].notified);
  EXPECT_EQ(r.plan.final.dsn_count, 0);

  // Every recipient done and notified: remove the message.
  e.recipients[0].state = "delivered";
  in.target = queue::DsnTarget::Remote;
  r = queue::plan_after_attempt(e, "x\r\n", in);
  EXPECT_EQ(r.plan.dsns.size(), 1u);
  EXPECT_TRUE(r.plan.remove);
}

TEST(QueuePlan, DelayWarningOnceAtItsAge) {
  auto e = envelope("alice@example.test", {"a@r.test"});
  queue::AttemptInput in;
  in.policy = queue::Policy{300, 3600, 86400, 600};
  in.now = e.created_at + 599;  // limit-1: not yet
  auto r = queue::plan_after_attempt(e, "x\r\n", in);
  EXPECT_TRUE(r.plan.dsns.empty());
  EXPECT_FALSE(r.plan.final.warned);
  in.now = e.created_at + 600;  // limit: one "delayed" DSN, then never again
  r = queue::plan_after_attempt(e, "x\r\n", in);
  ASSERT_EQ(r.plan.dsns.size(), 1u);
  EXPECT_TRUE(r.plan.final.warned);
  r = queue::plan_after_attempt(r.plan.final, "x\r\n", in);
  EXPECT_TRUE(r.plan.dsns.empty());
}

void expect_crlf_lines_under_998(const std::string& m) {
  size_t start = 0;
  while (start < m.size()) {
    size_t end = m.find("\r\n", start);
    ASSERT_NE(end, std::string::npos) << "unterminated last line";
    EXPECT_LT(end - start, 998u);
    EXPECT_EQ(m.substr(start, end - start).find('\n'), std::string::npos);
    EXPECT_EQ(m.substr(start, end - start).find('\r'), std::string::npos);
    start = end + 2;
  }
}

TEST(Dsn, FailedReportIsMultipartReport) {
  auto e = envelope("alice@example.test", {"a@r.test", "b@r.test"});
  e.recipients[1].state = "failed";
  e.recipients[1].status = "5.1.1";
  e.recipients[1].last_error = "550 5.1.1 <b@r.test>: unknown";
  e.recipients[1].diagnostic = "550 5.1.1 <b@r.test>: unknown " + std::string(2000, 'x');
  e.recipients[1].last_attempt_at = 1010;
  const std::string original = "Subject: hi\r\nFrom: alice@example.test\r\n\r\nsecret body\r\n";
  queue::DsnInput in;
  in.kind = queue::DsnKind::Failed;
  in.id = spool::dsn_id(e.id, 1);
  in.reporting_mta = "mail.example.test";
  in.remote_mta = "smtp.isp.test";
  in.original = &e;
  in.recipients = {1};
  in.original_message = original;
  in.now = 1020;
  std::string m = queue::render_dsn(in);
  expect_crlf_lines_under_998(m);
  EXPECT_NE(m.find("Content-Type: multipart/report; report-type=delivery-status;"), std::string::npos);
  EXPECT_NE(m.find("To: <alice@example.test>\r\n"), std::string::npos);
  EXPECT_NE(m.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  EXPECT_NE(m.find("Content-Type: message/delivery-status\r\n"), std::string::npos);
  EXPECT_NE(m.find("Reporting-MTA: dns; mail.example.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Final-Recipient: rfc822; b@r.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                   "Remote-MTA: dns; smtp.isp.test\r\nDiagnostic-Code: smtp; 550 5.1.1"),
            std::string::npos);
  EXPECT_EQ(m.find("Final-Recipient: rfc822; a@r.test"), std::string::npos);  // only the failed one
  EXPECT_NE(m.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n"), std::string::npos);
  EXPECT_EQ(m.find("secret body"), std::string::npos);  // headers only, never the body
  const std::string boundary = in.id + "/mail.example.test";
  EXPECT_NE(m.find("boundary=\"" + boundary + "\""), std::string::npos);
  EXPECT_NE(m.find("\r\n--" + boundary + "--\r\n"), std::string::npos);
}

TEST(Dsn, DelayedReport) {
  auto e = envelope("alice@example.test", {"a@r.test"});
  e.recipients[0].status = "4.4.1";
  e.recipients[0].last_error = "451 4.4.1 connect to smtp.isp.test: Connection refused";
  queue::DsnInput in;
  in.kind = queue::DsnKind::Delayed;
  in.id = spool::dsn_id(e.id, 1);
  in.reporting_mta = "mail.example.test";
  in.original = &e;
  in.recipients = {0};
  in.original_message = "Subject: x\r\n\r\nbody\r\n";
  in.now = 2000;
  in.retry_until = 1000 + 5 * 86400;
  std::string m = queue::render_dsn(in);
  expect_crlf_lines_under_998(m);
  EXPECT_NE(m.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos);
  EXPECT_NE(m.find("Action: delayed\r\nStatus: 4.4.1\r\n"), std::string::npos);
  EXPECT_NE(m.find("Will-Retry-Until: "), std::string::npos);
  EXPECT_EQ(m.find("Diagnostic-Code"), std::string::npos);  // a local error has no remote diagnostic
}

TEST(Dsn, HeaderSection) {
  EXPECT_EQ(queue::header_section("A: 1\r\nB: 2\r\n\r\nbody\r\n"), "A: 1\r\nB: 2\r\n");
  EXPECT_EQ(queue::header_section("\r\nbody only\r\n"), "");
  EXPECT_EQ(queue::header_section("A: 1\r\nB: 2\r\n"), "A: 1\r\nB: 2\r\n");
  EXPECT_EQ(queue::header_section("A: 1\r\nB: 2\r\n\r\n", 8), "A: 1\r\n");  // cut at a line end
}

// A fresh spool folder per test.
class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rg-queue-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sp_ = std::make_unique<spool::Spool>(dir_ / "spool");
    sp_->ensure();
  }
  void TearDown() override { fs::remove_all(dir_); }
  spool::Envelope queued(const std::string& id, std::string sender = "alice@example.test", int64_t created = 1000) {
    auto e = envelope(std::move(sender), {"far@remote.test"}, created);
    e.id = id;
    sp_->enqueue(e, {"Subject: t\r\n\r\nbody\r\n"});
    return e;
  }
  std::vector<std::string> files(const std::string& sub) {
    std::vector<std::string> out;
    for (auto& f : fs::directory_iterator(dir_ / "spool" / sub)) out.push_back(f.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  fs::path dir_;
  std::unique_ptr<spool::Spool> sp_;
};

TEST_F(SpoolTest, IdsAndJsonCompatibility) {
  EXPECT_TRUE(spool::valid_id("0123456789AB"));
  EXPECT_TRUE(spool::valid_id(spool::dsn_id("0123456789AB", 2)));
  EXPECT_EQ(spool::dsn_id("0123456789AB", 2), "0123456789ABR2");
  for (const char* bad : {"", "abc", "../x", "A B", "0123456789AB.env"}) EXPECT_FALSE(spool::valid_id(bad)) << bad;
  EXPECT_FALSE(spool::valid_id(std::string(41, 'A')));
  EXPECT_TRUE(spool::valid_id(std::string(40, 'A')));
  // Envelopes written before issue 5 (no per-recipient status fields) still read.
  auto old = spool::from_json(
      R"({"id":"0123456789AB","sender":"a@b","recipients":[{"address":"x@y","state":"pending","last_error":""}],"created_at":5,"size":9})",
      "old");
  EXPECT_EQ(old.recipients.at(0).notified, false);
  EXPECT_EQ(old.dsn_count, 0);
  EXPECT_THROW(
      spool::from_json(
          R"({"id":"0123456789AB","sender":"","recipients":[{"address":"x","state":"lost"}],"created_at":5,"size":9})",
          "x"),
      std::runtime_error);
  // Found by fuzz_spool_envelope (corpus crash-float-created-at): a float into an integer field
  // was a cast out of range (undefined behaviour); any float is refused, huge or not.
  for (const char* number : {"1.8e28", "5.0", "-1e400"})
    EXPECT_THROW(spool::from_json(std::string(R"({"id":"0123456789AB","sender":"","recipients":[],"created_at":)") +
                                      number + R"(,"size":9})",
                                  "float"),
                 std::runtime_error)
        << number;
  auto e = envelope("", {"x@y.test"});
  e.dsn_of = "0123456789AB";
  e.dsn_seq = 3;
  e.recipients[0].notified = true;
  auto back = spool::from_json(spool::to_json(e), "rt");
  EXPECT_EQ(back.dsn_of, "0123456789AB");
  EXPECT_EQ(back.dsn_seq, 3);
  EXPECT_TRUE(back.recipients[0].notified);
}

TEST_F(SpoolTest, UpdateLockRemove) {
  auto e = queued("0000000000A1");
  e.attempts = 3;
  e.recipients[0].last_error = "451 later";
  spool::Lock lock;
  ASSERT_EQ(sp_->try_lock(e.id, lock), spool::LockStatus::Locked);
  spool::Lock other;  // a second open file description: flock excludes it, even in this process
  EXPECT_EQ(sp_->try_lock(e.id, other), spool::LockStatus::Busy);
  EXPECT_EQ(sp_->lock_wait(e.id, other, std::chrono::milliseconds(120)), spool::LockStatus::Busy);
  sp_->update(e);
  EXPECT_EQ(sp_->read(e.id)->attempts, 3);
  EXPECT_EQ(sp_->read(e.id)->recipients[0].last_error, "451 later");
  EXPECT_EQ(files("tmp"), std::vector<std::string>{});  // no temp file left behind
  EXPECT_EQ(sp_->read_message(e.id), "Subject: t\r\n\r\nbody\r\n");
  sp_->remove(e.id);
  lock = spool::Lock();
  EXPECT_EQ(sp_->try_lock(e.id, other), spool::LockStatus::Gone);
  EXPECT_FALSE(sp_->read(e.id).has_value());
  EXPECT_EQ(files("queue"), std::vector<std::string>{});
}

TEST_F(SpoolTest, EnqueueOnceAndSummary) {
  EXPECT_EQ(sp_->summary().count, 0u);
  auto e = envelope("", {"alice@remote.test"});
  e.id = spool::dsn_id("0000000000A1", 1);
  EXPECT_TRUE(sp_->enqueue_once(e, {"first"}));
  EXPECT_FALSE(sp_->enqueue_once(e, {"second"}));
  EXPECT_EQ(sp_->read_message(e.id), "first");
  queued("0000000000A2");
  auto s = sp_->summary();
  EXPECT_EQ(s.count, 2u);
  EXPECT_GT(s.oldest_created_at, 0);
}

TEST_F(SpoolTest, RecoveryRemovesPartialFilesAndOrphans) {
  queued("0000000000A1");
  // An enqueue cut short (tmp/), an update cut short by a dead process, a removal cut short
  // (.msg without .env) and a message without envelope (reported, kept).
  std::ofstream(dir_ / "spool/tmp/0000000000B1.msg") << "partial";
  std::ofstream(dir_ / "spool/tmp/.0000000000A1.env.999999999.0") << "{";
  std::ofstream(dir_ / "spool/queue/0000000000C1.msg") << "orphan";
  std::ofstream(dir_ / "spool/queue/0000000000D1.env") << "{}";
  auto r = sp_->recover();
  EXPECT_EQ(r.removed_partial, 2u);
  EXPECT_EQ(r.removed_orphans, 1u);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("0000000000D1.env"), std::string::npos);
  EXPECT_EQ(files("tmp"), std::vector<std::string>{});
  EXPECT_EQ(files("queue"), (std::vector<std::string>{"0000000000A1.env", "0000000000A1.msg", "0000000000D1.env"}));
}

TEST_F(SpoolTest, LoadSaysWhatToDo) {
  auto e = queued("0000000000A1");
  auto l = queue::load(*sp_, e.id, 999);  // next_attempt_at 1000 > now
  EXPECT_EQ(l.status, queue::Loaded::NotDue);
  EXPECT_EQ(l.next, 1000);
  l = queue::load(*sp_, e.id, 1000);
  ASSERT_EQ(l.status, queue::Loaded::Ready);
  EXPECT_TRUE(l.attempt);
  EXPECT_EQ(*l.message, "Subject: t\r\n\r\nbody\r\n");
  EXPECT_EQ(queue::load(*sp_, e.id, 1000).status, queue::Loaded::Busy);  // l holds the lock
  l = queue::Loaded();
  e.held = true;
  sp_->update(e);
  EXPECT_EQ(queue::load(*sp_, e.id, 5000).status, queue::Loaded::Held);
  EXPECT_EQ(queue::load(*sp_, "0000000000FF", 5000).status, queue::Loaded::Gone);

  // An unnotified failure is work even before the next attempt is due.
  e.held = false;
  e.next_attempt_at = 9999;
  e.recipients.emplace_back("b@r.test", "failed", "550 no");
  sp_->update(e);
  l = queue::load(*sp_, e.id, 1000);
  EXPECT_EQ(l.status, queue::Loaded::Ready);
  EXPECT_FALSE(l.attempt);
}

TEST_F(SpoolTest, DsnWaitsUntilItsParentRecordsIt) {
  auto parent = queued("0000000000A1");
  auto d = envelope("", {"alice@remote.test"});
  d.id = spool::dsn_id(parent.id, 1);
  d.dsn_of = parent.id;
  d.dsn_seq = 1;
  sp_->enqueue(d, {"dsn"});
  EXPECT_EQ(queue::load(*sp_, d.id, 5000).status, queue::Loaded::WaitParent);
  parent.dsn_count = 1;
  sp_->update(parent);
  EXPECT_EQ(queue::load(*sp_, d.id, 5000).status, queue::Loaded::Ready);
  spool::Lock lock;
  sp_->try_lock(parent.id, lock);
  sp_->remove(parent.id);
  lock = spool::Lock();
  EXPECT_EQ(queue::load(*sp_, d.id, 5000).status, queue::Loaded::Ready);  // parent done
}

TEST_F(SpoolTest, PersistRecordsThenNotifiesAndRedoIsIdempotent) {
  auto e = queued("0000000000A1");
  e.recipients[0].state = "failed";
  queue::Plan plan;
  plan.id = e.id;
  plan.write_recorded = true;
  plan.recorded = e;
  queue::DsnOut local;
  local.id = spool::dsn_id(e.id, 1);
  local.local_user = "alice";
  local.message = "Return-Path: <>\r\nSubject: bounce\r\n\r\nx\r\n";
  plan.dsns.push_back(local);
  queue::DsnOut remote;
  remote.id = spool::dsn_id(e.id, 2);
  remote.env = envelope("", {"bob@remote.test"});
  remote.env.id = remote.id;
  remote.message = "Subject: bounce\r\n\r\ny\r\n";
  plan.dsns.push_back(remote);
  plan.final = e;
  plan.final.recipients[0].notified = true;
  plan.final.dsn_count = 2;
  plan.remove = true;

  const fs::path mail = dir_ / "mail";
  auto r = queue::persist(*sp_, mail, plan);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.dsn_existing.empty());
  EXPECT_FALSE(sp_->read(e.id).has_value());
  EXPECT_TRUE(sp_->read(remote.id).has_value());
  std::vector<fs::path> delivered;
  for (auto& f : fs::directory_iterator(mail / "alice/new")) delivered.push_back(f.path());
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_NE(delivered[0].filename().string().find("." + local.id + "."), std::string::npos);

  // A crash before the removal means the whole plan is redone: nothing is made twice.
  queued("0000000000A1");
  r = queue::persist(*sp_, mail, plan);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.dsn_existing, (std::vector<std::string>{local.id, remote.id}));
  size_t n = 0;
  for ([[maybe_unused]] auto& f : fs::directory_iterator(mail / "alice/new")) ++n;
  EXPECT_EQ(n, 1u);
  // Also once the user's client moved it to cur/.
  fs::rename(delivered[0], mail / "alice/cur" / (delivered[0].filename().string() + ":2,S"));
  EXPECT_FALSE(queue::deliver_local_once(mail, "alice", local.id, "again"));
}

TEST_F(SpoolTest, PersistFailureLeavesTheOldEnvelope) {
  auto e = queued("0000000000A1");
  queue::Plan plan;
  plan.id = e.id;
  plan.final = e;
  plan.final.attempts = 7;
  // tmp/ replaced by a file: the update cannot create its temp file (even as root).
  fs::remove_all(dir_ / "spool/tmp");
  std::ofstream(dir_ / "spool/tmp") << "not a folder";
  auto r = queue::persist(*sp_, dir_ / "mail", plan);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.err, ENOTDIR);
  EXPECT_NE(r.error.find("cannot create"), std::string::npos) << r.error;
  EXPECT_EQ(sp_->read(e.id)->attempts, 0);
}

}  // namespace

// ---- spool watch: inotify(7) read buffers ----

namespace {

// One struct inotify_event followed by `name` NUL-padded to `len` bytes (the kernel pads to
// the struct's alignment; len counts the padding).
std::string inotify_bytes(uint32_t mask, const std::string& name, uint32_t len) {
  inotify_event ev{};
  ev.wd = 1;
  ev.mask = mask;
  ev.len = len;
  std::string out(reinterpret_cast<const char*>(&ev), sizeof ev);
  std::string padded = name;
  padded.resize(len, '\0');
  return out + padded;
}

}  // namespace

TEST(SpoolWatch, ParsesEventsFromOneRead) {
  using rg::smtp::queue::parse_inotify_events;
  using rg::smtp::queue::WatchEvent;
  const std::string a = inotify_bytes(IN_MOVED_TO, "abc.env", 16);
  const std::string b = inotify_bytes(IN_DELETE, "d.msg", 8);
  const std::string overflow = inotify_bytes(IN_Q_OVERFLOW, "", 0);
  struct Row {
    const char* what;
    std::string bytes;
    std::vector<WatchEvent> want;
  } rows[] = {
      {"empty read", "", {}},
      {"one event, name padded with NULs", a, {{IN_MOVED_TO, "abc.env"}}},
      {"name exactly filling len (no NUL)",
       inotify_bytes(IN_CLOSE_WRITE, "12345678", 8),
       {{IN_CLOSE_WRITE, "12345678"}}},
      {"several events in one read",
       a + b + overflow,
       {{IN_MOVED_TO, "abc.env"}, {IN_DELETE, "d.msg"}, {IN_Q_OVERFLOW, ""}}},
      {"header one byte short", a.substr(0, sizeof(inotify_event) - 1), {}},
      {"name one byte short: dropped", a.substr(0, a.size() - 1), {}},
      {"complete event then a truncated one", b + a.substr(0, a.size() - 1), {{IN_DELETE, "d.msg"}}},
  };
  for (const auto& r : rows) EXPECT_EQ(parse_inotify_events(r.bytes), r.want) << r.what;
}
