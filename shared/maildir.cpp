// See maildir.h. Unique names follow the Maildir convention
// <sec>.M<usec>P<pid>Q<counter>R<random>.<host>,S=<bytes>,W=<crlf bytes>.
#include "shared/maildir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>
#include <system_error>

#include "shared/fd.h"
#include "shared/fsutil.h"

namespace rg::maildir {
namespace {

constexpr size_t kMaxUidLength = 70;  // RFC 1939 §7 unique-id: 1 to 70 characters
constexpr size_t kReadChunk = 64 * 1024;

[[noreturn]] void fail(int err, const std::string& what, const fs::path& p) {
  throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

std::string host_part() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  std::string h;
  for (char* p = buf; *p; ++p) h += (*p == '/' || *p == ':' || *p == ',') ? '_' : *p;  // Maildir-safe
  return h.empty() ? "localhost" : h;
}

std::string unique_base() {
  static std::atomic<uint64_t> counter{0};
  static const std::string host = host_part();
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  timeval tv{};
  gettimeofday(&tv, nullptr);
  char buf[128];
  std::snprintf(buf, sizeof buf, "%ld.M%06ldP%dQ%luR%08lx.", static_cast<long>(tv.tv_sec),
                static_cast<long>(tv.tv_usec), static_cast<int>(getpid()), static_cast<unsigned long>(++counter),
                static_cast<unsigned long>(rng() & 0xffffffffUL));
  return buf + host;
}

std::string base_name(const std::string& name) {
  std::string b = name.substr(0, name.find(':'));
  return b.substr(0, b.find(','));
}

// A UID usable on the wire: the base name if it fits RFC 1939 §7, else a stable hex digest of it.
std::string uid_for(const std::string& base) {
  bool ok = !base.empty() && base.size() <= kMaxUidLength;
  for (unsigned char c : base) ok = ok && c >= 0x21 && c <= 0x7e;
  if (ok) return base;
  uint64_t h = 1469598103934665603ULL;  // FNV-1a, stable across runs
  for (unsigned char c : base) h = (h ^ c) * 1099511628211ULL;
  char buf[32];
  std::snprintf(buf, sizeof buf, "x%016llx%zu", static_cast<unsigned long long>(h), base.size());
  return buf;
}

std::optional<uint64_t> size_from_name(const std::string& name, const char* key) {
  auto pos = name.find(key);
  if (pos == std::string::npos) return std::nullopt;
  pos += std::strlen(key);
  uint64_t v = 0;
  size_t digits = 0;
  while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9' && digits < 19)
    v = v * 10 + static_cast<uint64_t>(name[pos++] - '0'), ++digits;
  return digits ? std::optional<uint64_t>(v) : std::nullopt;
}

uint64_t crlf_size_of_file(const fs::path& p) {
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) fail(errno, "cannot open", p);
  std::string buf(kReadChunk, '\0');
  uint64_t size = 0;
  char last = '\n';
  bool any = false;
  for (;;) {
    const ssize_t n = fsutil::read_some(fd.get(), buf.data(), buf.size());
    if (n < 0) fail(errno, "cannot read", p);
    if (n == 0) break;
    any = true;
    for (ssize_t i = 0; i < n; ++i) {
      char c = buf[static_cast<size_t>(i)];
      if (c == '\n')
        size += (last == '\r') ? 1 : 2;
      else
        size += 1;
      last = c;
    }
  }
  if (any && last != '\n') size += 2;
  return size;
}

}  // namespace

Maildir::Maildir(const fs::path& root, const std::string& user) : dir_(root / user) {}

void Maildir::ensure() const {
  for (const char* sub : {"tmp", "new", "cur"}) {
    fs::path p = dir_ / sub;
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    fsutil::make_dirs(p, 0700);
  }
}

std::optional<Lock> Maildir::try_lock() const {
  fs::path p = dir_ / ".relaygate.lock";
  Fd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) fail(errno, "cannot open lock file", p);
  bool busy = false;
  Lock lock = Lock::try_lock(std::move(fd), &busy);
  if (lock) return lock;
  if (busy) return std::nullopt;
  fail(errno, "cannot lock", p);
}

std::vector<Entry> Maildir::scan() const {
  std::vector<Entry> out;
  for (const char* sub : {"new", "cur"}) {
    std::error_code ec;
    for (fs::directory_iterator it(dir_ / sub, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      if (!it->is_regular_file(ec)) continue;
      Entry e;
      e.file = it->path();
      e.uid = uid_for(base_name(name));
      auto info = name.find(":2,");
      e.seen = info != std::string::npos && name.find('S', info + 3) != std::string::npos;
      auto w = size_from_name(name.substr(0, name.find(':')), ",W=");
      e.size = w ? *w : crlf_size_of_file(e.file);
      out.push_back(std::move(e));
    }
    if (ec) fail(ec.value(), "cannot list", dir_ / sub);
  }
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.file.filename().string() < b.file.filename().string(); });
  return out;
}

namespace {

bool has_token(const fs::path& dir, const std::string& needle) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(needle) != std::string::npos) return true;
  if (ec && ec != std::errc::no_such_file_or_directory) fail(ec.value(), "cannot list", dir);
  return false;
}

// tmp/ (O_EXCL) → write → fsync → rename into new/ → fsync new/, under the name base + sizes.
fs::path write_message(const fs::path& dir, const std::string& base, const std::vector<std::string_view>& pieces) {
  // Sizes over the concatenation, without copying: the last byte carries across pieces.
  uint64_t bytes = 0, wire = 0;
  char last = '\n';
  for (auto p : pieces) {
    bytes += p.size();
    for (char c : p) {
      wire += (c == '\n' && last != '\r') ? 2 : 1;
      last = c;
    }
  }
  if (bytes != 0 && last != '\n') wire += 2;
  std::string name = base + ",S=" + std::to_string(bytes) + ",W=" + std::to_string(wire);
  fs::path tmp = dir / "tmp" / name;
  fs::path dst = dir / "new" / name;
  fsutil::DurableOptions options;
  options.mode = 0600;
  options.undo_on_failure = true;  // not durable: do not acknowledge, and do not leave it to be delivered twice
  fsutil::write_durably(tmp, dst, pieces, options);
  return dst;
}

}  // namespace

fs::path Maildir::deliver(const std::vector<std::string_view>& pieces) const {
  return write_message(dir_, unique_base(), pieces);
}

std::optional<fs::path> Maildir::deliver_once(const std::string& token,
                                              const std::vector<std::string_view>& pieces) const {
  const std::string needle = "." + token + ".";
  if (has_token(dir_ / "new", needle) || has_token(dir_ / "cur", needle)) return std::nullopt;
  static const std::string host = host_part();
  const std::string base = std::to_string(std::time(nullptr)) + "." + token + "." + host;
  // A leftover in tmp/ from an attempt cut short in the same second would block O_EXCL.
  std::error_code ec;
  for (fs::directory_iterator it(dir_ / "tmp", ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind(base + ",", 0) == 0) ::unlink(it->path().c_str());
  return write_message(dir_, base, pieces);
}

fs::path Maildir::mark_seen(const Entry& e) const {
  std::string name = e.file.filename().string();
  std::string flags;
  std::string base = name;
  if (auto info = name.find(":2,"); info != std::string::npos) {
    base = name.substr(0, info);
    flags = name.substr(info + 3);
  }
  if (flags.find('S') == std::string::npos) flags += 'S';
  std::sort(flags.begin(), flags.end());  // Maildir flags are kept in ASCII order
  fs::path dst = dir_ / "cur" / (base + ":2," + flags);
  if (dst == e.file) return dst;
  if (::rename(e.file.c_str(), dst.c_str()) != 0) fail(errno, "cannot rename", e.file);
  return dst;
}

Incoming::Incoming(const Maildir& md) : dir_(md.path()), base_(unique_base()), file_(dir_ / "tmp" / base_, 0600) {}

void Incoming::write(std::string_view data) {
  file_.write(data);
  bytes_ += data.size();
  for (char c : data) {
    wire_ += (c == '\n' && last_ != '\r') ? 2 : 1;
    last_ = c;
  }
}

fs::path Incoming::publish() {
  const uint64_t wire = wire_ + (bytes_ != 0 && last_ != '\n' ? 2 : 0);
  const fs::path dst = dir_ / "new" / (base_ + ",S=" + std::to_string(bytes_) + ",W=" + std::to_string(wire));
  file_.publish(dst);
  published_ = dst;
  try {
    fsutil::fsync_dir(dir_ / "new");
  } catch (...) {
    unpublish();
    throw;
  }
  return dst;
}

void Incoming::unpublish() noexcept {
  if (published_.empty()) return;
  const int saved = errno;
  ::unlink(published_.c_str());
  errno = saved;
  published_.clear();
}

uint64_t crlf_size(std::string_view data) {
  uint64_t size = 0;
  char last = '\n';
  for (char c : data) {
    size += (c == '\n' && last != '\r') ? 2 : 1;
    last = c;
  }
  if (!data.empty() && last != '\n') size += 2;
  return size;
}

bool WireEncoder::feed(std::string_view chunk, std::string& out) {
  for (char c : chunk) {
    if (done_) return false;
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') {
        out += "\r\n";
        goto line_end;
      }
      out += '\r';  // a bare CR is data
      line_empty_ = false;
      at_line_start_ = false;
    }
    if (c == '\r') {
      pending_cr_ = true;
      continue;
    }
    if (c == '\n') {
      out += "\r\n";
      goto line_end;
    }
    if (at_line_start_ && c == '.') out += '.';  // RFC 1939 §3 byte-stuffing
    out += c;
    at_line_start_ = false;
    line_empty_ = false;
    continue;
  line_end:
    if (in_body_) {
      ++body_lines_;
    } else if (line_empty_) {
      in_body_ = true;  // the empty line ends the header section (RFC 5322 §2.1)
    }
    at_line_start_ = true;
    line_empty_ = true;
    if (body_limit_ && in_body_ && body_lines_ >= *body_limit_) done_ = true;
  }
  return !done_;
}

void WireEncoder::finish(std::string& out) {
  if (!done_) {
    if (pending_cr_) {
      out += "\r\r\n";  // a trailing bare CR is data, as everywhere else, then the final CRLF
      at_line_start_ = true;
    } else if (!at_line_start_) {
      out += "\r\n";
    }
  }
  out += ".\r\n";
}

}  // namespace rg::maildir
