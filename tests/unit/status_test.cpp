// Status file: format, expired grants never listed, atomic replacement under a polling reader.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "authdb/status.h"

namespace fs = std::filesystem;
using rg::authdb::Grant;

namespace {

TEST(StatusFile, RendersDesignFormatAndSkipsExpired) {
  std::vector<Grant> grants = {
      {"192.0.2.1", "alice", "pop3", 1800000000, 1800000000, 1800001800, std::nullopt, 1800, "node-a"},
      {"2001:db8::1", "bob", "apop", 1800000000, 1800000100, 1800001900, 1800000200, 1800, "node-a"},
      {"192.0.2.9", "old", "pop3", 1700000000, 1700000000, 1700001800, std::nullopt, 1800, "node-a"},
  };
  auto j = nlohmann::json::parse(rg::authdb::render_status(grants, 1800000500));
  EXPECT_EQ(j["generated_at"], "2027-01-15T08:08:20Z");
  ASSERT_EQ(j["grants"].size(), 2u);
  EXPECT_EQ(j["grants"][0]["ip"], "192.0.2.1");
  EXPECT_EQ(j["grants"][0]["user"], "alice");
  EXPECT_EQ(j["grants"][0]["method"], "pop3");
  EXPECT_EQ(j["grants"][0]["granted_at"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(j["grants"][0]["expires_at"], "2027-01-15T08:30:00Z");
  EXPECT_TRUE(j["grants"][0]["last_used_at"].is_null());
  EXPECT_EQ(j["grants"][1]["last_used_at"], "2027-01-15T08:03:20Z");
}

// grant_json is the one rendering of a grant (status file and relaygatectl grant list --json).
TEST(StatusFile, GrantJsonFieldsInOrder) {
  const Grant used{"2001:db8::1", "bob", "apop", 1800000000, 1800000100, 1800001900, 1800000200, 1800, "node-a"};
  EXPECT_EQ(rg::authdb::grant_json(used).dump(),
            R"({"ip":"2001:db8::1","user":"bob","method":"apop","granted_at":"2027-01-15T08:00:00Z",)"
            R"("expires_at":"2027-01-15T08:31:40Z","last_used_at":"2027-01-15T08:03:20Z","node":"node-a"})");
  const Grant unused{"192.0.2.1", "alice", "pop3", 1800000000, 1800000000, 1800001800, std::nullopt, 1800, "node-a"};
  EXPECT_TRUE(rg::authdb::grant_json(unused)["last_used_at"].is_null());
  // The status file lists exactly grant_json of each live grant.
  auto j = nlohmann::ordered_json::parse(rg::authdb::render_status({unused, used}, 1800000500));
  EXPECT_EQ(j["grants"][0], rg::authdb::grant_json(unused));
  EXPECT_EQ(j["grants"][1], rg::authdb::grant_json(used));
}

TEST(StatusFile, ReaderNeverSeesPartialJsonDuring1000Rewrites) {
  char tmpl[] = "/tmp/rg-status-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::path file = dir / "status.json";
  std::vector<Grant> grants;
  for (int i = 0; i < 200; ++i)
    grants.push_back({"10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), "user" + std::to_string(i),
                      "pop3", 1800000000, 1800000000, 1800001800, std::nullopt, 1800, "node-a"});
  rg::authdb::write_status_file(file, grants, 1800000000);
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    while (!done) {
      std::ifstream in(file);
      std::stringstream ss;
      ss << in.rdbuf();
      try {
        auto j = nlohmann::json::parse(ss.str());
        if (!j.contains("generated_at")) ++bad;
      } catch (...) {
        ++bad;
      }
      ++reads;
    }
  });
  for (int i = 0; i < 1000; ++i) {
    grants.resize(static_cast<size_t>(100 + i % 100));
    rg::authdb::write_status_file(file, grants, 1800000000 + i);
  }
  done = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  size_t leftovers = 0;
  for (auto& e : fs::directory_iterator(dir)) leftovers += e.path().filename() != "status.json";
  EXPECT_EQ(leftovers, 0u);  // no temp files left behind
  fs::remove_all(dir);
}

// The "queue" object (README): count and the age of the oldest message, null when empty; no
// "queue" key at all when no summary is given.
TEST(StatusFile, QueueSummaryRows) {
  using Q = rg::authdb::QueueSummary;
  const int64_t now = 1800000500;
  struct Row {
    Q queue;
    const char* json;
  };
  const Row rows[] = {
      {{0, 0}, R"({"count":0,"oldest_age_seconds":null})"},
      {{1, now}, R"({"count":1,"oldest_age_seconds":0})"},
      {{3, now - 90}, R"({"count":3,"oldest_age_seconds":90})"},
  };
  for (const Row& r : rows) {
    auto j = nlohmann::ordered_json::parse(rg::authdb::render_status({}, now, &r.queue));
    EXPECT_EQ(j["queue"].dump(), r.json) << r.queue.count;
  }
  EXPECT_FALSE(nlohmann::json::parse(rg::authdb::render_status({}, now)).contains("queue"));
}

// The status file from authdb alone: what read_status takes is what the file shows, byte for byte.
TEST(StatusFile, WrittenFromAuthDbAlone) {
  char tmpl[] = "/tmp/rg-status-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const int64_t now = 1800000500;
  rg::authdb::AuthDb db(dir / "relaygate.db");
  ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, now));
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", 1800, now));
  db.set_queue_summary({2, now - 60});
  const auto snap = rg::authdb::read_status(db, now);
  ASSERT_EQ(snap.grants.size(), 1u);
  EXPECT_EQ(snap.queue, (rg::authdb::QueueSummary{2, now - 60}));
  rg::authdb::write_status_file(dir / "run/status.json", snap);
  std::ifstream in(dir / "run/status.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), rg::authdb::render_status(snap.grants, now, &snap.queue));
  auto j = nlohmann::json::parse(text.str());
  EXPECT_EQ(j["grants"][0]["ip"], "192.0.2.1");
  EXPECT_EQ(j["queue"]["count"], 2);
  EXPECT_EQ(j["queue"]["oldest_age_seconds"], 60);
  fs::remove_all(dir);
}

}  // namespace
