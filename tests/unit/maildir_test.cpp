// shared/maildir: the POP3 wire encoder (RFC 1939 §3 CRLF + byte-stuffing, TOP), the CRLF size
// that LIST/STAT report, delivery → scan → mark_seen with stable UIDs (RFC 1939 §7), and the
// exclusive maildrop lock between objects and processes. Table-driven; no sockets.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "shared/maildir.h"

namespace fs = std::filesystem;
using rg::maildir::crlf_size;
using rg::maildir::Maildir;
using rg::maildir::WireEncoder;

namespace {

// Encodes `in` fed as chunks of `chunk` bytes (0: all at once) and returns the wire bytes.
std::string encode(std::string_view in, std::optional<uint64_t> top = std::nullopt, size_t chunk = 0) {
  WireEncoder enc(top);
  std::string out;
  if (chunk == 0) chunk = in.size() + 1;
  for (size_t i = 0; i < in.size(); i += chunk)
    if (!enc.feed(in.substr(i, chunk), out)) break;
  enc.finish(out);
  return out;
}

// Removes the terminator and the byte-stuffing: what the client's message is on the wire.
std::string unstuff(const std::string& wire) {
  EXPECT_GE(wire.size(), 3u);
  EXPECT_EQ(wire.substr(wire.size() - 3), ".\r\n");
  std::string body = wire.substr(0, wire.size() - 3), out;
  bool line_start = true;
  for (size_t i = 0; i < body.size(); ++i) {
    if (line_start && body[i] == '.') {
      EXPECT_TRUE(i + 1 < body.size() && body[i + 1] == '.') << "unstuffed dot at " << i;
      ++i;
    }
    out += body[i];
    line_start = body[i] == '\n' && i > 0 && body[i - 1] == '\r';
  }
  return out;
}

struct WireCase {
  const char* name;
  std::string in;
  std::optional<uint64_t> top;
  std::string want;
};

const std::vector<WireCase>& wire_cases() {
  static const std::vector<WireCase> cases = {
      {"empty", "", std::nullopt, ".\r\n"},
      {"bare LF", "a\nb\n", std::nullopt, "a\r\nb\r\n.\r\n"},
      {"CRLF kept", "a\r\nb\r\n", std::nullopt, "a\r\nb\r\n.\r\n"},
      {"mixed endings", "a\r\nb\nc\r\n", std::nullopt, "a\r\nb\r\nc\r\n.\r\n"},
      {"no final newline", "a\nlast", std::nullopt, "a\r\nlast\r\n.\r\n"},
      {"bare CR is data", "a\rb\n", std::nullopt, "a\rb\r\n.\r\n"},
      {"CR CR LF", "a\r\r\n", std::nullopt, "a\r\r\n.\r\n"},
      {"dot line stuffed", ".\n", std::nullopt, "..\r\n.\r\n"},
      {"leading dots stuffed", ".a\n..b\nc.\n", std::nullopt, "..a\r\n...b\r\nc.\r\n.\r\n"},
      {"dot at start of message", ".x", std::nullopt, "..x\r\n.\r\n"},
      {"dot after bare CR not stuffed", "a\r.b\n", std::nullopt, "a\r.b\r\n.\r\n"},
      {"dot after CRLF stuffed", "a\r\n.b\r\n", std::nullopt, "a\r\n..b\r\n.\r\n"},
      {"empty lines", "\n\n\n", std::nullopt, "\r\n\r\n\r\n.\r\n"},
      {"TOP 0: headers and separator", "H: 1\nH: 2\n\nb1\nb2\n", 0, "H: 1\r\nH: 2\r\n\r\n.\r\n"},
      {"TOP 1", "H: 1\n\nb1\nb2\n", 1, "H: 1\r\n\r\nb1\r\n.\r\n"},
      {"TOP N beyond the body", "H: 1\n\nb1\nb2", 10, "H: 1\r\n\r\nb1\r\nb2\r\n.\r\n"},
      {"TOP 2 stuffs body lines", "H: 1\r\n\r\n.b1\r\n..b2\r\nb3\r\n", 2, "H: 1\r\n\r\n..b1\r\n...b2\r\n.\r\n"},
      {"TOP without a header end", "H: 1\nH: 2", 0, "H: 1\r\nH: 2\r\n.\r\n"},
      {"TOP 0 of headers only", "H: 1\n\n", 0, "H: 1\r\n\r\n.\r\n"},
      {"TOP counts empty body lines", "H\n\n\n\nx\n", 2, "H\r\n\r\n\r\n\r\n.\r\n"},
  };
  return cases;
}

TEST(MaildirWireEncoder, Table) {
  for (const auto& c : wire_cases()) EXPECT_EQ(encode(c.in, c.top), c.want) << c.name;
}

TEST(MaildirWireEncoder, SameOutputForEveryChunking) {
  for (const auto& c : wire_cases())
    for (size_t chunk = 1; chunk <= c.in.size(); ++chunk)
      EXPECT_EQ(encode(c.in, c.top, chunk), c.want) << c.name << " in chunks of " << chunk;
}

TEST(MaildirWireEncoder, ChunkBoundarySplitsCrLf) {
  // Split exactly between CR and LF, and before a leading dot.
  for (const std::string in : {"ab\r\ncd\r\n", "ab\r\n.d\r\n", "ab\n.\r\n"}) {
    const std::string want = encode(in);
    for (size_t cut = 0; cut <= in.size(); ++cut) {
      WireEncoder enc;
      std::string out;
      enc.feed(std::string_view(in).substr(0, cut), out);
      enc.feed(std::string_view(in).substr(cut), out);
      enc.finish(out);
      EXPECT_EQ(out, want) << "cut at " << cut << " of " << testing::PrintToString(in);
    }
  }
}

TEST(MaildirWireEncoder, FeedReportsTopLimit) {
  WireEncoder enc(1);
  std::string out;
  EXPECT_TRUE(enc.feed("H: 1\n\n", out));
  EXPECT_FALSE(enc.feed("b1\nb2\n", out));  // the limit is reached inside this chunk
  EXPECT_FALSE(enc.feed("b3\n", out));
  enc.finish(out);
  EXPECT_EQ(out, "H: 1\r\n\r\nb1\r\n.\r\n");
}

TEST(MaildirWireEncoder, LargeMessageAcrossRetrChunks) {
  std::string in;
  for (int i = 0; i < 50000; ++i) in += (i % 5 == 0 ? "." : "x") + std::to_string(i) + (i % 3 ? "\n" : "\r\n");
  const std::string whole = encode(in);
  EXPECT_EQ(encode(in, std::nullopt, 64 * 1024), whole);
  EXPECT_EQ(encode(in, std::nullopt, 4093), whole);
  EXPECT_EQ(unstuff(whole).size(), crlf_size(in));
}

struct SizeCase {
  std::string in;
  uint64_t want;
};

TEST(MaildirCrlfSize, Table) {
  const std::vector<SizeCase> cases = {
      {"", 0},     {"a", 3},    {"a\n", 3},    {"a\r\n", 3},   {"a\nb", 6}, {"\n", 2},
      {"\r\n", 2}, {"\n\n", 4}, {"a\rb\n", 5}, {"a\r\r\n", 4}, {".\n", 3},  {"x\r\ny\nz", 9},
  };
  for (const auto& c : cases) EXPECT_EQ(crlf_size(c.in), c.want) << testing::PrintToString(c.in);
}

// What LIST/STAT report equals the octets RETR sends before byte-stuffing, for every message
// over a small alphabet up to 7 bytes (all orders of CR, LF, dots and text).
TEST(MaildirCrlfSize, MatchesWireBytesExhaustively) {
  const std::string alphabet = "a.\r\n";
  std::vector<size_t> digits;
  for (size_t len = 0; len <= 7; ++len) {
    digits.assign(len, 0);
    for (;;) {
      std::string in;
      for (size_t d : digits) in += alphabet[d];
      EXPECT_EQ(unstuff(encode(in)).size(), crlf_size(in)) << testing::PrintToString(in);
      size_t i = 0;
      while (i < len && ++digits[i] == alphabet.size()) digits[i++] = 0;
      if (i == len) break;
    }
  }
}

// A stored message ending in a lone CR: the CR is data (as everywhere else), then the final
// CRLF, so LIST's size equals the octets RETR sends before stuffing.
TEST(MaildirCrlfSize, TrailingBareCrMatchesWireBytes) {
  for (const std::string in : {"a\r", "a\nb\r", "\r"})
    EXPECT_EQ(unstuff(encode(in)).size(), crlf_size(in)) << testing::PrintToString(in);
}

class MaildirStore : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "rg-maildir-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void spew(const fs::path& p, std::string_view data) {
    std::ofstream out(p, std::ios::binary);
    out << data;
  }
  fs::path root_;
};

TEST_F(MaildirStore, EnsureCreatesFolders) {
  Maildir md(root_, "alice");
  EXPECT_EQ(md.path(), root_ / "alice");
  md.ensure();
  md.ensure();  // idempotent
  for (const char* sub : {"tmp", "new", "cur"}) EXPECT_TRUE(fs::is_directory(root_ / "alice" / sub)) << sub;
  EXPECT_EQ(fs::status(root_ / "alice" / "new").permissions() & fs::perms::all, fs::perms::owner_all);
}

// Bounces may be redone after a crash: the token makes the second delivery a no-op, also
// after the first copy was read (moved to cur/), and a stale tmp/ leftover does not block it.
TEST_F(MaildirStore, DeliverOnceIsIdempotentPerToken) {
  Maildir md(root_, "alice");
  md.ensure();
  auto first = md.deliver_once("QID1R1", {"Subject: bounce\r\n\r\nbody\r\n"});
  ASSERT_TRUE(first);
  EXPECT_EQ(slurp(*first), "Subject: bounce\r\n\r\nbody\r\n");
  EXPECT_FALSE(md.deliver_once("QID1R1", {"again"}));
  auto entries = md.scan();
  ASSERT_EQ(entries.size(), 1u);
  md.mark_seen(entries[0]);
  EXPECT_FALSE(md.deliver_once("QID1R1", {"again"}));
  EXPECT_TRUE(md.deliver_once("QID1R2", {"other"}));
  EXPECT_EQ(md.scan().size(), 2u);
}

TEST_F(MaildirStore, DeliverScanMarkSeenRoundTrip) {
  Maildir md(root_, "alice");
  md.ensure();
  const std::string head = "Subject: one\n\n";
  const std::string body = ".dot\nlast line";
  fs::path p = md.deliver({head, body});
  EXPECT_EQ(p.parent_path(), root_ / "alice" / "new");
  EXPECT_EQ(slurp(p), head + body);
  EXPECT_TRUE(fs::is_empty(root_ / "alice" / "tmp"));
  fs::path p2 = md.deliver({"Subject: two\r\n\r\nbody\r\n"});

  auto entries = md.scan();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].file, p);  // oldest first
  EXPECT_EQ(entries[1].file, p2);
  EXPECT_EQ(entries[0].size, crlf_size(head + body));
  EXPECT_EQ(entries[1].size, crlf_size("Subject: two\r\n\r\nbody\r\n"));
  EXPECT_FALSE(entries[0].seen);
  EXPECT_NE(entries[0].uid, entries[1].uid);
  for (const auto& e : entries) {
    EXPECT_FALSE(e.uid.empty());
    EXPECT_LE(e.uid.size(), 70u);
    for (unsigned char c : e.uid) EXPECT_TRUE(c >= 0x21 && c <= 0x7e) << e.uid;
  }
  const std::string uid = entries[0].uid;

  fs::path seen = md.mark_seen(entries[0]);
  EXPECT_EQ(seen, root_ / "alice" / "cur" / (p.filename().string() + ":2,S"));
  EXPECT_FALSE(fs::exists(p));
  EXPECT_EQ(slurp(seen), head + body);
  entries = md.scan();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].file, seen);
  EXPECT_EQ(entries[0].uid, uid);  // RFC 1939 §7: the unique-id survives the move
  EXPECT_TRUE(entries[0].seen);
  EXPECT_EQ(entries[0].size, crlf_size(head + body));
  EXPECT_EQ(md.mark_seen(entries[0]), seen);  // already seen: unchanged
  EXPECT_TRUE(fs::exists(seen));

  Maildir again(root_, "alice");  // a new object (a restart) sees the same UIDs
  auto entries2 = again.scan();
  ASSERT_EQ(entries2.size(), 2u);
  EXPECT_EQ(entries2[0].uid, entries[0].uid);
  EXPECT_EQ(entries2[1].uid, entries[1].uid);
}

TEST_F(MaildirStore, ScanOfForeignFiles) {
  Maildir md(root_, "bob");
  md.ensure();
  const fs::path cur = root_ / "bob" / "cur";
  spew(root_ / "bob" / "new" / "1000.A.host", "a\nb\n");  // no W=: size from the content
  spew(cur / "1001.B.host,S=3:2,F", "a\nb");              // S= is the stored size, not the wire size
  spew(cur / ".hidden", "x");
  spew(root_ / "bob" / "tmp" / "1002.C.host", "in delivery");
  spew(cur / (std::string(100, 'l') + ":2,"), "x\n");  // too long for a UID
  spew(cur / "1003 with space", "x\n");
  auto entries = md.scan();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].file.filename(), "1000.A.host");
  EXPECT_EQ(entries[0].size, 6u);
  EXPECT_EQ(entries[0].uid, "1000.A.host");
  EXPECT_EQ(entries[1].file.filename(), "1001.B.host,S=3:2,F");
  EXPECT_EQ(entries[1].size, 6u);
  EXPECT_EQ(entries[1].uid, "1001.B.host");
  EXPECT_FALSE(entries[1].seen);
  for (const auto& e : entries) {
    EXPECT_LE(e.uid.size(), 70u) << e.file;
    EXPECT_EQ(e.uid.find(' '), std::string::npos) << e.file;
  }
  fs::path flagged = md.mark_seen(entries[1]);
  EXPECT_EQ(flagged.filename(), "1001.B.host,S=3:2,FS");
  EXPECT_EQ(md.scan()[1].uid, "1001.B.host");
}

TEST_F(MaildirStore, LockContentionBetweenObjects) {
  Maildir a(root_, "carol"), b(root_, "carol"), other(root_, "dave");
  a.ensure();
  other.ensure();
  auto first = a.try_lock();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(static_cast<bool>(*first));
  EXPECT_FALSE(b.try_lock().has_value());
  EXPECT_FALSE(a.try_lock().has_value());     // not re-entrant either: one session per maildrop
  EXPECT_TRUE(other.try_lock().has_value());  // per user
  rg::maildir::Lock moved = std::move(*first);
  first.reset();
  EXPECT_FALSE(b.try_lock().has_value());  // the moved-to lock still holds
  moved = rg::maildir::Lock();
  auto second = b.try_lock();
  EXPECT_TRUE(second.has_value());
}

TEST_F(MaildirStore, LockHoldsAcrossProcesses) {
  Maildir md(root_, "erin");
  md.ensure();
  auto held = md.try_lock();
  ASSERT_TRUE(held.has_value());
  auto child_can_lock = [&]() {
    pid_t pid = fork();
    if (pid == 0) {
      Maildir mine(root_, "erin");
      _exit(mine.try_lock().has_value() ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  EXPECT_FALSE(child_can_lock());
  held.reset();
  EXPECT_TRUE(child_can_lock());
}

}  // namespace
