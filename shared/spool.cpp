// See spool.h.
#include "shared/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "shared/fsutil.h"

namespace rg::spool {
namespace {

[[noreturn]] void fail(int err, const std::string& what, const fs::path& p) {
  throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

void write_file_synced(const fs::path& p, const std::vector<std::string_view>& pieces) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(errno, "cannot create", p);
  for (auto piece : pieces) {
    while (!piece.empty()) {
      ssize_t n = ::write(fd, piece.data(), piece.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        ::close(fd);
        ::unlink(p.c_str());
        fail(e, "cannot write", p);
      }
      piece.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(p.c_str());
    fail(e, "cannot fsync", p);
  }
  ::close(fd);
}

}  // namespace

std::string new_queue_id() {
  static std::atomic<uint32_t> counter{0};
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  uint64_t v = (static_cast<uint64_t>(us) << 16) ^ (static_cast<uint64_t>(getpid()) << 8) ^ counter++;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%012llX", static_cast<unsigned long long>(v & 0xFFFFFFFFFFFFULL));
  return buf;
}

std::string to_json(const Envelope& e) {
  nlohmann::ordered_json j;
  j["id"] = e.id;
  j["sender"] = e.sender;
  auto& rcpts = j["recipients"] = nlohmann::ordered_json::array();
  for (auto& r : e.recipients) rcpts.push_back({{"address", r.address}, {"state", r.state}, {"last_error", r.last_error}});
  j["created_at"] = e.created_at;
  j["size"] = e.size;
  j["attempts"] = e.attempts;
  j["next_attempt_at"] = e.next_attempt_at;
  j["held"] = e.held;
  j["client_ip"] = e.client_ip;
  j["auth"] = e.auth;
  return j.dump() + "\n";
}

Envelope from_json(std::string_view text, const std::string& source) {
  try {
    auto j = nlohmann::json::parse(text);
    Envelope e;
    e.id = j.at("id").get<std::string>();
    e.sender = j.at("sender").get<std::string>();
    for (auto& r : j.at("recipients"))
      e.recipients.push_back({r.at("address").get<std::string>(), r.at("state").get<std::string>(), r.value("last_error", "")});
    e.created_at = j.at("created_at").get<int64_t>();
    e.size = j.at("size").get<uint64_t>();
    e.attempts = j.value("attempts", int64_t{0});
    e.next_attempt_at = j.value("next_attempt_at", int64_t{0});
    e.held = j.value("held", false);
    e.client_ip = j.value("client_ip", "");
    e.auth = j.value("auth", "");
    return e;
  } catch (const std::exception& ex) {
    throw std::runtime_error(source + ": not a valid envelope: " + ex.what());
  }
}

void Spool::ensure() const {
  fsutil::make_dirs(dir_ / "tmp", 0700);
  fsutil::make_dirs(dir_ / "queue", 0700);
}

void Spool::enqueue(const Envelope& env, const std::vector<std::string_view>& message) const {
  const fs::path tmp_msg = dir_ / "tmp" / (env.id + ".msg");
  const fs::path tmp_env = dir_ / "tmp" / (env.id + ".env");
  const fs::path msg = dir_ / "queue" / (env.id + ".msg");
  const fs::path envf = dir_ / "queue" / (env.id + ".env");
  std::string json = to_json(env);
  try {
    write_file_synced(tmp_msg, message);
    write_file_synced(tmp_env, {json});
    if (::rename(tmp_msg.c_str(), msg.c_str()) != 0) fail(errno, "cannot rename into", msg);
    if (::rename(tmp_env.c_str(), envf.c_str()) != 0) fail(errno, "cannot rename into", envf);
    fsutil::fsync_dir(dir_ / "queue");
  } catch (...) {
    ::unlink(tmp_msg.c_str());
    ::unlink(tmp_env.c_str());
    ::unlink(envf.c_str());
    ::unlink(msg.c_str());
    throw;
  }
}

std::vector<Envelope> Spool::list(std::vector<std::string>* problems) const {
  std::vector<Envelope> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir_ / "queue", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".env") continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      out.push_back(from_json(ss.str(), it->path().string()));
    } catch (const std::exception& e) {
      if (problems) problems->push_back(e.what());
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) fail(ec.value(), "cannot list", dir_ / "queue");
  std::sort(out.begin(), out.end(), [](const Envelope& a, const Envelope& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at : a.id < b.id;
  });
  return out;
}

}  // namespace rg::spool
