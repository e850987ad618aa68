// smtpd/data_reader: the DATA decoder line by line (Dovecot valid/invalid style): the end of
// data, transparency, the 1000-octet line at its limit and one past it, bare CR/LF on relay and
// submission, the size cap, and the smuggling shapes (CVE-2023-51764) that must NOT end DATA.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtpd/data_reader.h"

namespace {

using rg::smtp::DataReader;
using rg::smtp::kMaxTextLine;

struct Fed {
  bool ended = false;
  size_t lines_used = 0;
  std::string body;
  bool too_big = false, too_long = false, bare = false;
  uint64_t received = 0;
  size_t chunks = 0;  // non-empty chunks taken
};

Fed feed(const std::vector<std::string>& lines, bool normalize = false, uint64_t max = 1 << 20) {
  DataReader r(max, normalize);
  Fed out;
  // The session takes a chunk once it is large enough; here after every line, so each row
  // also checks that the chunks concatenate to the message.
  const auto take = [&] {
    if (r.pending() == 0) return;
    out.body += r.take_chunk();
    ++out.chunks;
  };
  for (const auto& l : lines) {
    ++out.lines_used;
    if (r.feed(l) == DataReader::Step::End) {
      out.ended = true;
      break;
    }
    take();
  }
  take();
  out.too_big = r.too_big();
  out.too_long = r.too_long();
  out.bare = r.bare_line_ending();
  out.received = r.received();
  if (out.too_big) out.body.clear();  // the session discards what it wrote
  return out;
}

TEST(DataReader, ValidEnds) {
  struct Row {
    const char* what;
    std::vector<std::string> lines;
    std::string body;
  };
  const Row rows[] = {
      {"empty message", {".\r\n"}, ""},
      {"one line", {"Subject: x\r\n", "\r\n", "hi\r\n", ".\r\n"}, "Subject: x\r\n\r\nhi\r\n"},
      {"dot-stuffed line", {"..leading dot\r\n", ".\r\n"}, ".leading dot\r\n"},
      {"a lone stuffed dot", {"..\r\n", ".\r\n"}, ".\r\n"},
      {"dot then text is data", {".x\r\n", ".\r\n"}, "x\r\n"},
  };
  for (const auto& r : rows) {
    auto f = feed(r.lines);
    EXPECT_TRUE(f.ended) << r.what;
    EXPECT_EQ(f.lines_used, r.lines.size()) << r.what;
    EXPECT_EQ(f.body, r.body) << r.what;
    EXPECT_FALSE(f.too_long || f.too_big || f.bare) << r.what;
  }
}

TEST(DataReader, SmugglingShapesDoNotEnd) {
  struct Row {
    const char* what;
    std::vector<std::string> lines;
  };
  // Each must leave DATA open: the ".\r\n" that finally ends it is the last line.
  const Row rows[] = {
      {"LF . CRLF", {"text\n", ".\r\n", "MAIL FROM:<x@y>\r\n", ".\r\n"}},
      {". LF", {"text\r\n", ".\n", "RCPT TO:<x@y>\r\n", ".\r\n"}},
      {"CR . CR", {"text\r.\r\n", "more\r\n", ".\r\n"}},
      {"dot space", {". \r\n", ".\r\n"}},
  };
  for (const auto& r : rows) {
    auto f = feed(r.lines);
    EXPECT_TRUE(f.ended) << r.what;
    EXPECT_EQ(f.lines_used, r.lines.size()) << r.what << ": ended early";
  }
  // After a bare-LF line the dot line is data, and the line flags it.
  auto lf = feed({"text\n", ".\r\n", ".\r\n"});
  EXPECT_EQ(lf.lines_used, 3u);
  EXPECT_TRUE(lf.bare);
}

TEST(DataReader, OverlongStreamLineNeverLetsTheNextLineEnd) {
  DataReader r(1 << 20, false);
  r.feed_overlong(65536);
  EXPECT_EQ(r.feed(".\r\n"), DataReader::Step::More);  // its ending was lost: this dot is data
  EXPECT_EQ(r.feed(".\r\n"), DataReader::Step::End);
  EXPECT_TRUE(r.too_long());
  EXPECT_EQ(r.received(), 65536u + 6u);
}

TEST(DataReader, TextLineLimitAndOnePast) {
  const std::string at_limit = std::string(kMaxTextLine - 2, 'a') + "\r\n";  // 1000 with CRLF
  const std::string past = std::string(kMaxTextLine - 1, 'a') + "\r\n";      // 1001
  auto ok = feed({at_limit, ".\r\n"});
  EXPECT_TRUE(ok.ended);
  EXPECT_FALSE(ok.too_long);
  EXPECT_EQ(ok.body, at_limit);
  auto bad = feed({past, ".\r\n"});
  EXPECT_TRUE(bad.ended);
  EXPECT_TRUE(bad.too_long);
}

TEST(DataReader, BareLineEndings) {
  struct Row {
    const char* what;
    std::string line;
    bool normalize;
    std::string body;
  };
  const Row rows[] = {
      {"bare LF, submission", "a\n", false, "a\r\n"},
      {"bare LF, relay", "a\n", true, "a\r\n"},
      {"bare CR inside, submission: kept, flagged", "a\rb\r\n", false, "a\rb\r\n"},
      {"bare CR inside, relay: a line break", "a\rb\r\n", true, "a\r\nb\r\n"},
  };
  for (const auto& r : rows) {
    // A CRLF line after it, so that the terminator may end the data (not after a bare LF).
    auto f = feed({r.line, "x\r\n", ".\r\n"}, r.normalize);
    EXPECT_TRUE(f.ended) << r.what;
    EXPECT_EQ(f.lines_used, 3u) << r.what;
    EXPECT_TRUE(f.bare) << r.what;
    EXPECT_EQ(f.body, r.body + "x\r\n") << r.what;
  }
}

TEST(DataReader, SizeCapAtLimitAndOnePast) {
  // The cap counts stored octets: "abc\r\n" is 5.
  auto at = feed({"abc\r\n", ".\r\n"}, false, 5);
  EXPECT_FALSE(at.too_big);
  EXPECT_EQ(at.body, "abc\r\n");
  auto past = feed({"abcd\r\n", "more\r\n", ".\r\n"}, false, 5);
  EXPECT_TRUE(past.ended);
  EXPECT_TRUE(past.too_big);
  EXPECT_EQ(past.body, "");
  EXPECT_EQ(past.chunks, 0u);  // the line that crossed the cap is not emitted
  EXPECT_EQ(past.received, 6u + 6u + 3u);
}

TEST(DataReader, ChunksAreBoundedAndStopAtTheCap) {
  // Lines accumulate in one chunk until taken; once the cap is crossed the chunk is dropped and
  // nothing more is emitted, whatever follows (the memory bound of a session in DATA).
  DataReader r(12, false);
  EXPECT_EQ(r.feed("abcd\r\n"), DataReader::Step::More);
  EXPECT_EQ(r.feed("efgh\r\n"), DataReader::Step::More);
  EXPECT_EQ(r.pending(), 12u);
  EXPECT_EQ(r.body_size(), 12u);
  EXPECT_EQ(r.take_chunk(), "abcd\r\nefgh\r\n");
  EXPECT_EQ(r.pending(), 0u);
  EXPECT_FALSE(r.too_big());
  EXPECT_EQ(r.feed("i\r\n"), DataReader::Step::More);  // 15 > 12
  EXPECT_TRUE(r.too_big());
  EXPECT_EQ(r.pending(), 0u);
  EXPECT_EQ(r.feed(std::string(900, 'x') + "\r\n"), DataReader::Step::More);
  EXPECT_EQ(r.pending(), 0u);
  EXPECT_EQ(r.feed(".\r\n"), DataReader::Step::End);
  EXPECT_EQ(r.take_chunk(), "");
}

}  // namespace
