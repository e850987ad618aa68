// authdb::Client (issue 11): the time limit, skipping jobs whose waiter gave up, the read lane
// not queuing behind a blocked write, a failed Store reopened, a database server down at start
// (issue 12); and the RCPT user cache bounds.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <thread>

#include "authdb/client.h"
#include "authdb/user_cache.h"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using rg::authdb::Client;
using rg::authdb::Lane;
using rg::authdb::Store;

namespace {

// A Store that answers find_user with its own id; everything else is unused here.
struct FakeStore : Store {
  explicit FakeStore(int id) : id(id) {}
  int id;
  std::optional<rg::authdb::UserAuth> find_user(const std::string& name) override {
    return rg::authdb::UserAuth{name + "#" + std::to_string(id), true, "", std::nullopt};
  }
  bool grant(const std::string&, const std::string&, const std::string&, int64_t, int64_t) override { return true; }
  std::optional<rg::authdb::Grant> live_grant(const std::string&, int64_t) override { return std::nullopt; }
  void touch(const std::string&, int64_t) override {}
  int purge_expired(int64_t) override { return 0; }
  std::vector<rg::authdb::Grant> list(int64_t) override { return {}; }
  void set_queue_summary(const rg::authdb::QueueSummary&) override {}
  rg::authdb::QueueSummary queue_summary() override { return {}; }
  int64_t failure_count(const std::string&, int64_t) override { return 0; }
  void record_failure(const std::string&, int64_t) override {}
  void clear_failures(const std::string&) override {}
  // Administrative operations: not used by Client.
  const char* backend() const override { return "fake"; }
  std::string name() const override { return "fake"; }
  int schema_version() override { return kSchemaVersion; }
  bool add_user(const std::string&, const std::string&, const std::optional<std::string>&, int64_t) override {
    return false;
  }
  bool set_password(const std::string&, const std::string&, const std::optional<std::string>&, int64_t) override {
    return false;
  }
  bool delete_user(const std::string&) override { return false; }
  bool set_enabled(const std::string&, bool, int64_t) override { return false; }
  std::vector<rg::authdb::User> list_users() override { return {}; }
  bool import_user(const rg::authdb::User&, const rg::authdb::UserAuth&) override { return false; }
  bool replace_user(const rg::authdb::User&, const rg::authdb::UserAuth&) override { return false; }
  std::optional<std::string> write_users(const std::vector<rg::authdb::UserWrite>&, int64_t) override {
    return std::nullopt;
  }
  bool revoke(const std::string&) override { return false; }
  int revoke_user(const std::string&) override { return 0; }
  bool import_grant(const rg::authdb::Grant&) override { return false; }
};

struct ClientTest : ::testing::Test {
  std::atomic<int> opened{0};
  asio::io_context io;
  Client client{[this] { return std::make_unique<FakeStore>(++opened); }, "fake", 200ms, 1, 1};

  // Runs `body` as a coroutine on io and returns what it returned.
  template <class F>
  auto run(F body) {
    auto f = asio::co_spawn(io, body(), asio::use_future);
    io.restart();
    io.run();
    return f.get();
  }
};

TEST_F(ClientTest, AnswersWithinTheLimit) {
  auto r = run([this]() -> asio::awaitable<std::string> {
    auto job = [](Store& s) { return s.find_user("alice")->name; };
    co_return co_await client.run(Lane::Read, "look up user", job);
  });
  EXPECT_EQ(r, "alice#2");  // the read lane opens its own Store (#1 is the write lane's)
}

TEST_F(ClientTest, TimeoutThenAbandonedJobIsSkipped) {
  std::atomic<int> second_ran{0};
  auto r = run([&]() -> asio::awaitable<std::string> {
    std::string out;
    // Blocks the one write thread past the limit: its waiter times out.
    auto slow = [](Store&) { std::this_thread::sleep_for(700ms); };
    try {
      co_await client.run(Lane::Write, "slow write", slow);
      out += "no-timeout;";
    } catch (const rg::authdb::Timeout& e) {
      out += std::string(e.what()).find("timeout") != std::string::npos ? "timeout;" : "bad-message;";
    }
    // Queued behind it: its waiter gives up too, and the job must never run late.
    auto second = [&](Store&) { ++second_ran; };
    try {
      co_await client.run(Lane::Write, "second write", second);
      out += "no-timeout;";
    } catch (const rg::authdb::Timeout&) {
      out += "timeout;";
    }
    co_return out;
  });
  EXPECT_EQ(r, "timeout;timeout;");
  std::this_thread::sleep_for(500ms);  // the slow job ends; the thread takes the second and skips it
  EXPECT_EQ(second_ran.load(), 0);
  EXPECT_EQ(client.skipped(), 1u);
}

TEST_F(ClientTest, ReadLaneDoesNotQueueBehindABlockedWrite) {
  auto r = run([&]() -> asio::awaitable<std::string> {
    auto slow = [](Store&) { std::this_thread::sleep_for(150ms); };
    auto read = [](Store& s) { return s.find_user("bob")->name; };
    // Start the write without awaiting it, then read.
    asio::co_spawn(io, client.run(Lane::Write, "slow write", slow), asio::detached);
    const auto t0 = std::chrono::steady_clock::now();
    std::string name = co_await client.run(Lane::Read, "look up user", read);
    const bool fast = std::chrono::steady_clock::now() - t0 < 100ms;
    co_return name.substr(0, 4) + (fast ? ";fast" : ";slow");
  });
  EXPECT_EQ(r, "bob#;fast");
}

TEST_F(ClientTest, ErrorDropsTheStoreAndTheNextJobReopens) {
  auto r = run([&]() -> asio::awaitable<std::string> {
    std::string out;
    auto fail = [](Store&) -> int { throw rg::authdb::Error("database fake: broken"); };
    try {
      co_await client.run(Lane::Write, "fail", fail);
    } catch (const rg::authdb::Error& e) {
      out += e.what();
    }
    auto read = [](Store& s) { return s.find_user("c")->name; };
    out += ";" + co_await client.run(Lane::Write, "again", read);
    co_return out;
  });
  EXPECT_EQ(r, "database fake: broken;c#2");  // the write lane opened a second Store
}

// A network database down when the daemon starts (issue 12): the Client still comes up, its jobs
// fail with the database's error, and the first job after the server is back opens a Store. A
// plain Error at start (a missing SQLite file, a malformed URI) still stops the daemon.
TEST(ClientStart, UnavailableAtStartIsToleratedAndTheFirstJobAfterReconnects) {
  std::atomic<bool> server_up{false};
  std::atomic<int> attempts{0};
  auto factory = [&]() -> std::unique_ptr<Store> {
    ++attempts;
    if (!server_up.load()) throw rg::authdb::Unavailable("database pg://node: connect failed: no such socket");
    return std::make_unique<FakeStore>(attempts.load());
  };
  asio::io_context io;
  std::unique_ptr<Client> client;
  ASSERT_NO_THROW(client = std::make_unique<Client>(factory, "pg://node", 200ms, 1, 1));
  EXPECT_EQ(attempts.load(), 1);
  auto ask = [&](Lane lane) {
    auto body = [&client, lane]() -> asio::awaitable<std::string> {
      auto job = [](Store& s) { return s.find_user("alice")->name; };
      try {
        co_return co_await client->run(lane, "look up user", job);
      } catch (const rg::authdb::Error& e) {
        co_return std::string("error: ") + e.what();
      }
    };
    auto f = asio::co_spawn(io, body(), asio::use_future);
    io.restart();
    io.run();
    return f.get();
  };
  EXPECT_EQ(ask(Lane::Write), "error: database pg://node: connect failed: no such socket");
  EXPECT_EQ(ask(Lane::Read), "error: database pg://node: connect failed: no such socket");
  server_up.store(true);
  EXPECT_EQ(ask(Lane::Write), "alice#4");
  EXPECT_EQ(ask(Lane::Read), "alice#5");
  EXPECT_EQ(ask(Lane::Write), "alice#4");  // kept: no reopen while it works
}

TEST(ClientStart, ErrorAtStartStopsTheDaemon) {
  auto factory = []() -> std::unique_ptr<Store> { throw rg::authdb::Error("database x.db: does not exist"); };
  EXPECT_THROW(Client(factory, "x.db", 200ms, 1, 1), rg::authdb::Error);
}

// The RCPT cache: positive entries only, kTtl, bounded by kEntries (limit and limit + 1).
TEST(UserCache, TtlAndBound) {
  using rg::authdb::UserCache;
  UserCache c;
  const auto t0 = UserCache::Clock::now();
  c.put("alice", "alice", t0);
  EXPECT_EQ(c.find("alice", t0 + UserCache::kTtl - 1s), "alice");
  EXPECT_EQ(c.find("alice", t0 + UserCache::kTtl), std::nullopt);
  for (size_t i = 0; i < UserCache::kEntries; ++i) c.put("u" + std::to_string(i), "u", t0);
  EXPECT_EQ(c.size(), UserCache::kEntries);
  c.put("one-more", "one-more", t0);
  EXPECT_EQ(c.size(), UserCache::kEntries);
  EXPECT_EQ(c.find("one-more", t0), "one-more");
}

}  // namespace
