// shared/fd.h and shared/fsutil: the flock guard between two opens of one file, the one read
// loop (files and pipes, across chunk boundaries), the one write loop, and the one durable
// writer: content, mode, owner, rename order, and what is left after each kind of failure.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "shared/fd.h"
#include "shared/fsutil.h"

namespace fs = std::filesystem;
using rg::Fd;
using rg::FlockGuard;
namespace fsutil = rg::fsutil;

namespace {

constexpr size_t kChunk = 64 * 1024;  // fsutil's read chunk: the sizes below straddle it

class FsutilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rg-fsutil-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Every name in `dir`, sorted: what a writer left behind.
  static std::vector<std::string> names(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void spit(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
  static std::string pattern(size_t n) {
    std::string s(n, '\0');
    std::mt19937 rng(static_cast<unsigned>(n));
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }
  static unsigned mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }

  fs::path dir_;
};

TEST_F(FsutilTest, FlockGuardExcludesASecondOpenOfTheSameFile) {
  const fs::path p = dir_ / "lock";
  auto open_it = [&] { return Fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)); };
  bool busy = true;
  FlockGuard first = FlockGuard::try_lock(open_it(), &busy);
  ASSERT_TRUE(first);
  EXPECT_FALSE(busy);
  // A second open is a second open file description: flock(2) refuses it, even in this process.
  FlockGuard second = FlockGuard::try_lock(open_it(), &busy);
  EXPECT_FALSE(second);
  EXPECT_TRUE(busy);
  // Moving keeps the lock; destroying the holder releases it.
  FlockGuard moved = std::move(first);
  EXPECT_FALSE(first);
  EXPECT_FALSE(FlockGuard::try_lock(open_it(), &busy));
  EXPECT_TRUE(busy);
  moved = FlockGuard();
  FlockGuard third = FlockGuard::try_lock(open_it(), &busy);
  EXPECT_TRUE(third);
  EXPECT_FALSE(busy);
}

TEST_F(FsutilTest, FlockGuardErrorsAreNotBusy) {
  bool busy = true;
  errno = 0;
  EXPECT_FALSE(FlockGuard::try_lock(Fd(), &busy));  // no descriptor: EBADF, not "held"
  EXPECT_FALSE(busy);
  EXPECT_EQ(errno, EBADF);
  EXPECT_FALSE(FlockGuard::lock(Fd()));
}

TEST_F(FsutilTest, BlockingLockWaitsForTheHolder) {
  const fs::path p = dir_ / "lock";
  FlockGuard held = FlockGuard::try_lock(Fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)));
  ASSERT_TRUE(held);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child drops its inherited copy of the parent's lock (the same open file description),
    // then blocks until the parent lets go, and reports through its exit status.
    held = FlockGuard();
    FlockGuard g = FlockGuard::lock(Fd(::open(p.c_str(), O_RDWR | O_CLOEXEC)));
    char c = g ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    ::_exit(g ? 0 : 1);
  }
  ::close(ready[1]);
  ::usleep(100 * 1000);
  char c = 0;
  ASSERT_EQ(::fcntl(ready[0], F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(::read(ready[0], &c, 1), -1) << "the child got the lock while it was held";
  held = FlockGuard();
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ::close(ready[0]);
}

TEST_F(FsutilTest, ReadFileAcrossChunkBoundaries) {
  for (size_t n : {size_t{0}, size_t{1}, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 7}) {
    SCOPED_TRACE(n);
    const fs::path p = dir_ / ("f" + std::to_string(n));
    const std::string want = pattern(n);
    spit(p, want);
    EXPECT_EQ(fsutil::read_file(p), want);
  }
}

TEST_F(FsutilTest, ReadAllFromAPipeFedInPieces) {
  // A pipe returns short reads: the loop must go on until end of file, not stop at a chunk.
  const std::string want = pattern(5 * kChunk + 3);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    for (size_t off = 0; off < want.size(); off += 1000) {
      if (!fsutil::write_all(fds[1], std::string_view(want).substr(off, 1000))) ::_exit(1);
      if (off % 50000 == 0) ::usleep(1000);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got = "prefix:";
  EXPECT_TRUE(fsutil::read_all(fds[0], got));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(got, "prefix:" + want);  // appended to what was there
}

TEST_F(FsutilTest, ReadErrorsNameThePath) {
  const fs::path missing = dir_ / "missing";
  try {
    fsutil::read_file(missing);
    FAIL() << "read_file of a missing file returned";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("cannot open " + missing.string()), std::string::npos) << e.what();
  }
  try {
    fsutil::read_file(dir_);  // a directory opens, but read(2) fails with EISDIR
    FAIL() << "read_file of a directory returned";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EISDIR);
    EXPECT_NE(std::string(e.what()).find("cannot read " + dir_.string()), std::string::npos) << e.what();
  }
  std::string out;
  EXPECT_FALSE(fsutil::read_all(-1, out));
  EXPECT_EQ(errno, EBADF);
  EXPECT_FALSE(fsutil::write_all(-1, "x"));
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(fsutil::read_some(-1, out.data(), 0), -1);
}

TEST_F(FsutilTest, WriteDurablyConcatenatesPiecesWithTheMode) {
  const fs::path tmp = dir_ / "t", dst = dir_ / "d";
  const std::string big = pattern(2 * kChunk + 5);
  fsutil::DurableOptions o;
  o.mode = 0640;
  const mode_t old = ::umask(0);
  fsutil::write_durably(tmp, dst, {"head\n", "", big}, o);
  ::umask(old);
  EXPECT_EQ(slurp(dst), "head\n" + big);
  EXPECT_EQ(mode_of(dst), 0640u);
  EXPECT_EQ(names(dir_), std::vector<std::string>{"d"});
}

TEST_F(FsutilTest, UmaskAppliesUnlessExactMode) {
  const mode_t old = ::umask(077);
  fsutil::DurableOptions o;
  o.mode = 0644;
  fsutil::write_durably(dir_ / "t1", dir_ / "masked", {"x"}, o);
  o.exact_mode = true;
  fsutil::write_durably(dir_ / "t2", dir_ / "exact", {"x"}, o);
  ::umask(old);
  EXPECT_EQ(mode_of(dir_ / "masked"), 0600u);
  EXPECT_EQ(mode_of(dir_ / "exact"), 0644u);
}

TEST_F(FsutilTest, OwnerIsApplied) {
  // Only root can give a file away; anyone can "chown" to themselves, which still runs fchown.
  const bool root = ::geteuid() == 0;
  const fsutil::Owner want = root ? fsutil::Owner{65534, 65534} : fsutil::Owner{::geteuid(), ::getegid()};
  fsutil::DurableOptions o;
  o.owner = want;
  fsutil::write_durably(dir_ / "t", dir_ / "owned", {"x"}, o);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, want.uid);
  EXPECT_EQ(st.st_gid, want.gid);
  if (!root) {
    o.owner = fsutil::Owner{0, 0};  // refused: the temp file goes, nothing appears
    EXPECT_THROW(fsutil::write_durably(dir_ / "t", dir_ / "root-owned", {"x"}, o), std::system_error);
    EXPECT_EQ(names(dir_), std::vector<std::string>{"owned"});
  }
}

TEST_F(FsutilTest, AnExistingTempFileIsNeverOverwritten) {
  spit(dir_ / "t", "someone else's");
  try {
    fsutil::write_durably(dir_ / "t", dir_ / "d", {"mine"}, {});
    FAIL() << "O_EXCL create succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST);
    EXPECT_NE(std::string(e.what()).find("cannot create " + (dir_ / "t").string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(dir_ / "t"), "someone else's");
  EXPECT_FALSE(fs::exists(dir_ / "d"));
}

TEST_F(FsutilTest, AFailedWriteLeavesNoTempFile) {
  // RLIMIT_FSIZE makes write(2) fail with EFBIG (SIGXFSZ ignored) past the limit.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1000;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string what;
  int code = 0;
  try {
    fsutil::write_durably(dir_ / "t", dir_ / "d", {pattern(999), "ab"}, {});
  } catch (const std::system_error& e) {
    what = e.what();
    code = e.code().value();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(code, EFBIG);
  EXPECT_NE(what.find("cannot write " + (dir_ / "t").string()), std::string::npos) << what;
  EXPECT_TRUE(names(dir_).empty());
}

TEST_F(FsutilTest, AFailedRenameLeavesNoTempFile) {
  const fs::path dst = dir_ / "no-such-folder" / "d";
  try {
    fsutil::write_durably(dir_ / "t", dst, {"x"}, {});
    FAIL() << "rename into a missing folder succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("cannot rename into " + dst.string()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(names(dir_).empty());
}

TEST_F(FsutilTest, SeveralFilesAreRenamedInOrderAndUndoneOnFailure) {
  fs::create_directories(dir_ / "tmp");
  fs::create_directories(dir_ / "queue");
  const std::string msg = "message", env = "envelope";
  struct Row {
    const char* name;
    bool second_fails;  // the second rename's folder is missing
    bool undo;
    std::vector<std::string> queue_after;
  };
  const Row rows[] = {
      {"both written", false, true, {"1.env", "1.msg"}},
      {"second fails, undone", true, true, {}},
      {"second fails, first kept", true, false, {"1.msg"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    fs::remove_all(dir_ / "queue");
    fs::create_directories(dir_ / "queue");
    const fs::path env_dst = r.second_fails ? dir_ / "gone" / "1.env" : dir_ / "queue" / "1.env";
    const fsutil::DurableFile files[] = {{dir_ / "tmp" / "1.msg", dir_ / "queue" / "1.msg", {msg}},
                                         {dir_ / "tmp" / "1.env", env_dst, {env}}};
    fsutil::DurableOptions o;
    o.undo_on_failure = r.undo;
    if (r.second_fails)
      EXPECT_THROW(fsutil::write_durably(files, o), std::system_error);
    else
      fsutil::write_durably(files, o);
    EXPECT_TRUE(names(dir_ / "tmp").empty());
    EXPECT_EQ(names(dir_ / "queue"), r.queue_after);
  }
  EXPECT_EQ(slurp(dir_ / "queue" / "1.msg"), msg);
}

TEST_F(FsutilTest, AtomicWriteReplacesAndLeavesOnlyTheFile) {
  const fs::path p = dir_ / "status.json";
  spit(p, "old");
  const mode_t old = ::umask(022);
  fsutil::atomic_write(p, "new\n", 0644);
  ::umask(old);
  EXPECT_EQ(slurp(p), "new\n");
  EXPECT_EQ(mode_of(p), 0644u);
  EXPECT_EQ(names(dir_), std::vector<std::string>{"status.json"});
}

}  // namespace
