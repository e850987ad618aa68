// pop3d/maildrop on a temporary Maildir: numbering and sizes, the exclusive lock, deletion
// marks that remove nothing until commit(), RSET, mark_seen, a message gone before commit.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "pop3d/maildrop.h"
#include "shared/maildir.h"

namespace {

namespace fs = std::filesystem;
using rg::pop3::Maildrop;

struct MaildropTest : ::testing::Test {
  fs::path root = [] {
    char tmpl[] = "/tmp/rg-maildrop-test-XXXXXX";
    return fs::path(mkdtemp(tmpl));
  }();
  ~MaildropTest() override { fs::remove_all(root); }
  void deliver(const std::string& body) {
    rg::maildir::Maildir md(root, "alice");
    md.ensure();
    md.deliver({body});
  }
  size_t files() {
    size_t n = 0;
    for (const char* sub : {"new", "cur"})
      for (auto it = fs::directory_iterator(root / "alice" / sub); it != fs::directory_iterator(); ++it) ++n;
    return n;
  }
};

TEST_F(MaildropTest, EmptyMaildropIsCreated) {
  auto drop = Maildrop::open(root, "bob");
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->all().count, 0u);
  EXPECT_TRUE(fs::is_directory(root / "bob" / "new"));
  EXPECT_EQ(drop->find(1), nullptr);
}

TEST_F(MaildropTest, NumberingSizesAndUids) {
  deliver("Subject: one\r\n\r\n1\r\n");
  deliver("Subject: two\n\n22\n");  // bare LF: counted as CRLF on the wire (RFC 1939 size)
  auto drop = Maildrop::open(root, "alice");
  ASSERT_TRUE(drop);
  ASSERT_EQ(drop->messages().size(), 2u);
  EXPECT_EQ(drop->all().count, 2u);
  EXPECT_EQ(drop->messages()[0].entry.size, 19u);
  EXPECT_EQ(drop->messages()[1].entry.size, 20u);  // 17 octets, 3 bare LFs
  EXPECT_EQ(drop->all().octets, 39u);
  ASSERT_NE(drop->find(2), nullptr);
  EXPECT_EQ(drop->number_of(*drop->find(2)), 2u);
  EXPECT_EQ(drop->find(0), nullptr);
  EXPECT_EQ(drop->find(3), nullptr);  // one past the last
  EXPECT_NE(drop->messages()[0].entry.uid, drop->messages()[1].entry.uid);
}

TEST_F(MaildropTest, SecondOpenIsRefusedWhileLocked) {
  auto first = Maildrop::open(root, "alice");
  ASSERT_TRUE(first);
  EXPECT_FALSE(Maildrop::open(root, "alice"));  // [IN-USE], even within one process
  first->release();
  EXPECT_TRUE(Maildrop::open(root, "alice"));
}

TEST_F(MaildropTest, DeletionsOnlyAtCommit) {
  deliver("a\r\n");
  deliver("b\r\n");
  deliver("c\r\n");
  {
    auto drop = Maildrop::open(root, "alice");
    ASSERT_TRUE(drop);
    drop->mark_deleted(*drop->find(2));
    EXPECT_EQ(drop->find(2), nullptr);  // RFC 1939 §5: a deleted message may not be referenced
    EXPECT_EQ(drop->live().count, 2u);
    EXPECT_EQ(files(), 3u);  // nothing removed without UPDATE
  }
  EXPECT_EQ(files(), 3u);  // a session that ends without commit() removes nothing
  auto drop = Maildrop::open(root, "alice");
  ASSERT_TRUE(drop);
  drop->mark_deleted(*drop->find(1));
  drop->reset();  // RSET
  EXPECT_EQ(drop->live().count, 3u);
  drop->mark_deleted(*drop->find(1));
  drop->mark_deleted(*drop->find(3));
  fs::remove(drop->messages()[2].entry.file);  // gone meanwhile: still counts as removed
  const auto done = drop->commit();
  EXPECT_EQ(done.removed, 2u);
  EXPECT_EQ(done.failed, 0u);
  EXPECT_EQ(files(), 1u);
  EXPECT_TRUE(Maildrop::open(root, "alice"));  // commit() released the lock
}

TEST_F(MaildropTest, MarkSeenMovesToCurOnce) {
  deliver("x\r\n");
  auto drop = Maildrop::open(root, "alice");
  ASSERT_TRUE(drop);
  auto* m = drop->find(1);
  const std::string uid = m->entry.uid;
  drop->mark_seen(*m);
  EXPECT_TRUE(m->entry.seen);
  EXPECT_EQ(m->entry.file.parent_path().filename(), "cur");
  drop->mark_seen(*m);  // idempotent
  drop->release();
  auto again = Maildrop::open(root, "alice");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->messages()[0].entry.uid, uid);  // the UID survives the move (RFC 1939 §7)
  EXPECT_TRUE(again->messages()[0].entry.seen);
}

}  // namespace
