// See spool.h.
#include "shared/spool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <system_error>
#include <thread>

#include "shared/fd.h"
#include "shared/fsutil.h"

namespace rg::spool {
namespace {

[[noreturn]] void fail(int err, const std::string& what, const fs::path& p) {
  throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

// Queue files are the service user's alone (spool.h).
fsutil::DurableOptions queue_file_options(bool undo_on_failure) {
  fsutil::DurableOptions o;
  o.mode = 0600;
  o.undo_on_failure = undo_on_failure;
  return o;
}

bool path_exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// The pid in a temp name ".<id>.env.<pid>.<n>", or 0.
pid_t pid_of_temp(const std::string& name) {
  auto last = name.rfind('.');
  if (last == std::string::npos || last == 0) return 0;
  auto prev = name.rfind('.', last - 1);
  if (prev == std::string::npos) return 0;
  std::string digits = name.substr(prev + 1, last - prev - 1);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(digits));
}

bool process_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

}  // namespace

std::string new_queue_id() {
  static std::atomic<uint32_t> counter{0};
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
  uint64_t v = (static_cast<uint64_t>(us) << 16) ^ (static_cast<uint64_t>(getpid()) << 8) ^ counter++;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%012llX", static_cast<unsigned long long>(v & 0xFFFFFFFFFFFFULL));
  return buf;
}

std::string dsn_id(const std::string& id, int64_t n) { return id + "R" + std::to_string(n); }

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 40) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) return false;
  return true;
}

// The envelope's JSON is its fields by name (nlohmann's type macros: one list per struct, so a
// new field cannot be written and forgotten when read). Reading takes a missing optional key
// from the default-constructed struct, which is how envelopes of older versions still load.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Recipient, address, state, last_error, status, diagnostic,
                                                last_attempt_at, notified)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Envelope, id, sender, recipients, created_at, size, attempts,
                                                next_attempt_at, held, client_ip, auth, last_attempt_at, dsn_count,
                                                warned, dsn_of, dsn_seq)

namespace {

// Keys an envelope cannot do without (the defaults would make a different message of it).
constexpr std::string_view kRequiredKeys[] = {"id", "sender", "recipients", "created_at", "size"};
constexpr std::string_view kRequiredRecipientKeys[] = {"address", "state"};

void require(const nlohmann::json& j, std::span<const std::string_view> keys, const char* what) {
  if (!j.is_object()) throw std::runtime_error(std::string(what) + " is not an object");
  for (auto key : keys)
    if (!j.contains(key)) throw std::runtime_error(std::string(what) + " has no \"" + std::string(key) + "\"");
}

// Every number in an envelope is an integer. nlohmann converts a JSON float into an integer
// field with a plain cast, undefined behaviour out of range (fuzz_spool_envelope found
// "created_at": 1.8e28), so a float anywhere is refused before the fields are read.
void require_no_float(const nlohmann::json& j) {
  if (j.is_number_float()) throw std::runtime_error("a number is not an integer");
  if (j.is_structured())
    for (const auto& v : j) require_no_float(v);
}

}  // namespace

std::string to_json(const Envelope& e) {
  nlohmann::json j = e;
  if (e.dsn_of.empty()) {  // only a DSN names the message it reports on
    j.erase("dsn_of");
    j.erase("dsn_seq");
  }
  return j.dump() + "\n";
}

Envelope from_json(std::string_view text, const std::string& source) {
  try {
    auto j = nlohmann::json::parse(text);
    require(j, kRequiredKeys, "the envelope");
    if (!j.at("recipients").is_array()) throw std::runtime_error("\"recipients\" is not an array");
    for (auto& r : j.at("recipients")) require(r, kRequiredRecipientKeys, "a recipient");
    require_no_float(j);
    auto e = j.get<Envelope>();
    for (auto& rc : e.recipients)
      if (rc.state != "pending" && rc.state != "delivered" && rc.state != "failed")
        throw std::runtime_error("unknown recipient state \"" + rc.state + "\"");
    if (!valid_id(e.id)) throw std::runtime_error("invalid id \"" + e.id + "\"");
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
  const std::string json = to_json(env);
  // .msg is renamed before .env: a message is queued once its envelope exists (spool.h); on
  // any error both are unlinked again, nothing is left in tmp/ or queue/.
  const fsutil::DurableFile files[] = {{tmp_msg, msg, message}, {tmp_env, envf, {json}}};
  fsutil::write_durably(files, queue_file_options(true));
}

Incoming::Incoming(const Spool& spool, const std::string& id)
    : dir_(spool.dir()), id_(id), msg_(dir_ / "tmp" / (id + ".msg"), 0600) {}

void Incoming::sync(const Envelope& env) {
  msg_.sync();
  env_ = fsutil::StreamFile(dir_ / "tmp" / (id_ + ".env"), 0600);
  env_.write(to_json(env));
  env_.sync();
}

void Incoming::publish() {
  const fs::path msg = dir_ / "queue" / (id_ + ".msg");
  const fs::path envf = dir_ / "queue" / (id_ + ".env");
  msg_.publish(msg);  // .msg before .env: a message is queued once its envelope exists
  try {
    env_.publish(envf);
    published_ = true;
    fsutil::fsync_dir(dir_ / "queue");
  } catch (...) {
    if (published_) ::unlink(envf.c_str());
    ::unlink(msg.c_str());
    published_ = false;
    throw;
  }
}

void Incoming::unpublish() noexcept {
  if (!published_) return;
  const int saved = errno;
  ::unlink((dir_ / "queue" / (id_ + ".env")).c_str());
  ::unlink((dir_ / "queue" / (id_ + ".msg")).c_str());
  try {
    fsutil::fsync_dir(dir_ / "queue");
  } catch (...) {
  }
  errno = saved;
  published_ = false;
}

bool Spool::enqueue_once(const Envelope& env, const std::vector<std::string_view>& message) const {
  if (path_exists(dir_ / "queue" / (env.id + ".env"))) return false;
  // Leftovers of an attempt cut short in this process (recover() handles earlier runs).
  ::unlink((dir_ / "tmp" / (env.id + ".msg")).c_str());
  ::unlink((dir_ / "tmp" / (env.id + ".env")).c_str());
  enqueue(env, message);
  return true;
}

std::vector<Envelope> Spool::list(std::vector<std::string>* problems) const {
  std::vector<Envelope> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir_ / "queue", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".env") continue;
    std::string text;
    try {
      text = fsutil::read_file(it->path());
    } catch (const std::system_error&) {
      continue;  // removed meanwhile
    }
    try {
      out.push_back(from_json(text, it->path().string()));
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

std::optional<Envelope> Spool::read(const std::string& id) const {
  const fs::path p = dir_ / "queue" / (id + ".env");
  std::string text;
  try {
    text = fsutil::read_file(p);
  } catch (const std::system_error& e) {
    if (e.code().value() == ENOENT) return std::nullopt;
    throw;
  }
  return from_json(text, p.string());
}

std::string Spool::read_message(const std::string& id) const {
  return fsutil::read_file(dir_ / "queue" / (id + ".msg"));
}

void Spool::update(const Envelope& env) const {
  static std::atomic<unsigned> counter{0};
  const fs::path tmp =
      dir_ / "tmp" / ("." + env.id + ".env." + std::to_string(::getpid()) + "." + std::to_string(counter++));
  const fs::path dst = dir_ / "queue" / (env.id + ".env");
  // Without undo: once renamed the new envelope is the only one, complete if not yet durable.
  fsutil::write_durably(tmp, dst, {to_json(env)}, queue_file_options(false));
}

void Spool::remove(const std::string& id) const {
  const fs::path envf = dir_ / "queue" / (id + ".env");
  const fs::path msg = dir_ / "queue" / (id + ".msg");
  if (::unlink(envf.c_str()) != 0 && errno != ENOENT) fail(errno, "cannot remove", envf);
  if (::unlink(msg.c_str()) != 0 && errno != ENOENT) fail(errno, "cannot remove", msg);
  fsutil::fsync_dir(dir_ / "queue");
}

LockStatus Spool::try_lock(const std::string& id, Lock& out) const {
  const fs::path p = dir_ / "queue" / (id + ".msg");
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return LockStatus::Gone;
    fail(errno, "cannot open", p);
  }
  bool busy = false;
  Lock lock = Lock::try_lock(std::move(fd), &busy);
  if (!lock) {
    if (busy) return LockStatus::Busy;
    fail(errno, "cannot lock", p);
  }
  // Removed while we waited for the lock: the file we hold is no longer the queued one.
  if (!path_exists(dir_ / "queue" / (id + ".env"))) return LockStatus::Gone;
  out = std::move(lock);
  return LockStatus::Locked;
}

LockStatus Spool::lock_wait(const std::string& id, Lock& out, std::chrono::milliseconds wait) const {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    LockStatus s = try_lock(id, out);
    if (s != LockStatus::Busy || std::chrono::steady_clock::now() >= deadline) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Recovery Spool::recover() const {
  Recovery r;
  std::error_code ec;
  for (fs::directory_iterator it(dir_ / "tmp", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Envelope updates of a live relaygatectl are left alone; anything else here was cut short.
    if (name[0] == '.' && process_alive(pid_of_temp(name)) && pid_of_temp(name) != ::getpid()) continue;
    if (::unlink(it->path().c_str()) == 0) ++r.removed_partial;
  }
  std::set<std::string> envs, msgs;
  for (fs::directory_iterator it(dir_ / "queue", ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".env")
      envs.insert(p.stem().string());
    else if (p.extension() == ".msg")
      msgs.insert(p.stem().string());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) fail(ec.value(), "cannot list", dir_ / "queue");
  for (const auto& id : msgs) {
    if (envs.count(id)) continue;
    if (::unlink((dir_ / "queue" / (id + ".msg")).c_str()) == 0) ++r.removed_orphans;
  }
  for (const auto& id : envs)
    if (!msgs.count(id)) r.problems.push_back((dir_ / "queue" / (id + ".env")).string() + ": envelope without message");
  if (r.removed_orphans) fsutil::fsync_dir(dir_ / "queue");
  return r;
}

Summary Spool::summary() const {
  Summary s;
  std::set<std::string> envs;
  std::vector<std::pair<std::string, int64_t>> msgs;
  std::error_code ec;
  for (fs::directory_iterator it(dir_ / "queue", ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".env") {
      envs.insert(p.stem().string());
    } else if (p.extension() == ".msg") {
      struct stat st {};
      // .msg is written once: its mtime is the time the message was queued.
      if (::stat(p.c_str(), &st) == 0) msgs.emplace_back(p.stem().string(), static_cast<int64_t>(st.st_mtime));
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) fail(ec.value(), "cannot list", dir_ / "queue");
  for (const auto& [id, t] : msgs) {
    if (!envs.count(id)) continue;
    ++s.count;
    if (s.oldest_created_at == 0 || t < s.oldest_created_at) s.oldest_created_at = t;
  }
  return s;
}

}  // namespace rg::spool
