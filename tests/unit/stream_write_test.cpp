// The streaming writers smtpd's DATA feeds chunk by chunk (shared/stream_file.h,
// maildir::Incoming, spool::Incoming): a partial write that is abandoned leaves nothing
// published and no temp file; publish makes the whole message visible at once, with the names,
// sizes and envelope the one-shot writers (Maildir::deliver, Spool::enqueue) produce.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "shared/maildir.h"
#include "shared/spool.h"
#include "shared/stream_file.h"

namespace fs = std::filesystem;

namespace {

class StreamWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "rg-stream-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static std::vector<std::string> names(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
  }
  fs::path root_;
};

TEST_F(StreamWrite, StreamFileDiscardsUnpublishedAndRefusesAStrangersFile) {
  {
    rg::fsutil::StreamFile f(root_ / "a.tmp");
    f.write("partial");
    EXPECT_TRUE(fs::exists(root_ / "a.tmp"));
  }
  EXPECT_FALSE(fs::exists(root_ / "a.tmp"));  // destroyed unpublished: gone
  std::ofstream(root_ / "b.tmp") << "someone else's";
  EXPECT_THROW(rg::fsutil::StreamFile(root_ / "b.tmp"), std::system_error);  // O_EXCL
  EXPECT_EQ(slurp(root_ / "b.tmp"), "someone else's");
  rg::fsutil::StreamFile f(root_ / "c.tmp");
  EXPECT_THROW(f.publish(root_ / "c"), std::system_error);  // not synced yet
  f.write("whole");
  f.sync();
  f.publish(root_ / "c");
  EXPECT_FALSE(fs::exists(root_ / "c.tmp"));
  EXPECT_EQ(slurp(root_ / "c"), "whole");
}

TEST_F(StreamWrite, MaildirPartialThenAbortLeavesNothing) {
  rg::maildir::Maildir md(root_, "alice");
  md.ensure();
  {
    rg::maildir::Incoming in(md);
    in.write("Return-Path: <a@b>\r\n");
    in.write(std::string(100000, 'x'));
    EXPECT_EQ(names(root_ / "alice" / "tmp").size(), 1u);
    EXPECT_TRUE(names(root_ / "alice" / "new").empty());  // nothing visible while it grows
  }
  EXPECT_TRUE(names(root_ / "alice" / "tmp").empty());
  EXPECT_TRUE(names(root_ / "alice" / "new").empty());
  EXPECT_TRUE(md.scan().empty());
  {
    rg::maildir::Incoming in(md);
    in.write("a\r\n");
    in.sync();  // synced but never published: still removed
  }
  EXPECT_TRUE(names(root_ / "alice" / "tmp").empty());
  EXPECT_TRUE(md.scan().empty());
}

TEST_F(StreamWrite, MaildirPublishIsWholeWithTheSizesOfDeliver) {
  rg::maildir::Maildir md(root_, "alice");
  md.ensure();
  struct Row {
    const char* what;
    std::vector<std::string> chunks;
  };
  const Row rows[] = {
      {"CRLF lines", {"Subject: x\r\n", "\r\n", "body\r\n"}},
      {"CRLF split across chunks", {"a\r", "\nb\r", "\n"}},
      {"bare LF counted as CRLF", {"a\nb\n"}},
      {"no final line end", {"abc"}},
      {"empty", {}},
  };
  for (const auto& r : rows) {
    std::string whole;
    for (const auto& c : r.chunks) whole += c;
    rg::maildir::Incoming in(md);
    for (const auto& c : r.chunks) in.write(c);
    in.sync();
    const fs::path p = in.publish();
    EXPECT_EQ(p.parent_path(), root_ / "alice" / "new") << r.what;
    EXPECT_EQ(slurp(p), whole) << r.what;
    const std::string name = p.filename().string();
    const std::string sizes =
        ",S=" + std::to_string(whole.size()) + ",W=" + std::to_string(rg::maildir::crlf_size(whole));
    EXPECT_EQ(name.substr(name.size() - sizes.size()), sizes) << r.what;
    EXPECT_TRUE(names(root_ / "alice" / "tmp").empty()) << r.what;
  }
  EXPECT_EQ(md.scan().size(), std::size(rows));
  // unpublish: a later destination of the same message failed.
  rg::maildir::Incoming in(md);
  in.write("x\r\n");
  in.sync();
  const fs::path p = in.publish();
  in.unpublish();
  EXPECT_FALSE(fs::exists(p));
  EXPECT_EQ(md.scan().size(), std::size(rows));
}

rg::spool::Envelope envelope(const std::string& id, uint64_t size) {
  rg::spool::Envelope env;
  env.id = id;
  env.sender = "a@example.org";
  env.recipients.push_back({"b@example.net"});
  env.created_at = 1700000000;
  env.size = size;
  return env;
}

TEST_F(StreamWrite, SpoolPartialThenAbortLeavesNothing) {
  rg::spool::Spool spool(root_ / "spool");
  spool.ensure();
  {
    rg::spool::Incoming in(spool, "ABC123");
    in.write("Received: x\r\n");
    in.write(std::string(100000, 'y'));
    EXPECT_EQ(names(spool.dir() / "tmp"), std::vector<std::string>{"ABC123.msg"});
    EXPECT_TRUE(names(spool.queue_dir()).empty());
  }
  {
    rg::spool::Incoming in(spool, "ABC124");
    in.write("z\r\n");
    in.sync(envelope("ABC124", 3));  // .msg and .env written, not renamed
    EXPECT_EQ(names(spool.dir() / "tmp").size(), 2u);
  }
  EXPECT_TRUE(names(spool.dir() / "tmp").empty());
  EXPECT_TRUE(names(spool.queue_dir()).empty());
  EXPECT_TRUE(spool.list().empty());
}

TEST_F(StreamWrite, SpoolPublishQueuesMessageAndEnvelope) {
  rg::spool::Spool spool(root_ / "spool");
  spool.ensure();
  const std::string msg = "Received: x\r\n\r\n" + std::string(200000, 'm') + "\r\n";
  rg::spool::Incoming in(spool, "ABC125");
  for (size_t i = 0; i < msg.size(); i += 65536) in.write(std::string_view(msg).substr(i, 65536));
  in.sync(envelope("ABC125", msg.size()));
  EXPECT_FALSE(spool.read("ABC125"));
  in.publish();
  auto env = spool.read("ABC125");
  ASSERT_TRUE(env);
  EXPECT_EQ(env->size, msg.size());
  EXPECT_EQ(env->recipients.at(0).address, "b@example.net");
  EXPECT_EQ(spool.read_message("ABC125"), msg);
  EXPECT_TRUE(names(spool.dir() / "tmp").empty());
  ASSERT_EQ(spool.list().size(), 1u);
  in.unpublish();  // a later destination failed: gone again, envelope first
  EXPECT_FALSE(spool.read("ABC125"));
  EXPECT_TRUE(names(spool.queue_dir()).empty());
}

// A publish that cannot complete (here: the queue folder is gone) leaves nothing queued.
TEST_F(StreamWrite, SpoolFailedPublishLeavesNothing) {
  rg::spool::Spool spool(root_ / "spool");
  spool.ensure();
  rg::spool::Incoming in(spool, "ABC126");
  in.write("x\r\n");
  in.sync(envelope("ABC126", 3));
  fs::remove(spool.queue_dir());
  EXPECT_THROW(in.publish(), std::system_error);
  fs::create_directory(spool.queue_dir());
  EXPECT_TRUE(names(spool.queue_dir()).empty());
}

}  // namespace
