// See preflight.h. Only reads: nothing is created here (the TLS pair is made at start when
// tls.generate_self_signed allows it, the folders by the daemons).
#include "shared/net/preflight.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>

#include "shared/daemon.h"
#include "shared/fd.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "shared/net/tls.h"

namespace rg::preflight {
namespace {

namespace fs = std::filesystem;

std::string describe_owner(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return "missing";
  const passwd* pw = ::getpwuid(st.st_uid);
  const group* gr = ::getgrgid(st.st_gid);
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return std::string("owner ") + (pw ? pw->pw_name : std::to_string(st.st_uid)) + ":" +
         (gr ? gr->gr_name : std::to_string(st.st_gid)) + ", mode " + mode;
}

std::string who() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw ? pw->pw_name : "uid " + std::to_string(::geteuid());
}

// A folder the daemon writes: it exists and is writable, or its nearest existing parent is.
void writable_folder(std::vector<Finding>& out, const std::string& key, const fs::path& dir) {
  fs::path p = dir;
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    out.push_back({true, key + ": " + dir.string() + (p == dir ? "" : " (to be created in " + p.string() + ")") +
                             " is not writable by " + who() + " (" + describe_owner(p) + ")"});
}

void writable_file(std::vector<Finding>& out, const std::string& key, const fs::path& file) {
  std::error_code ec;
  if (fs::exists(file, ec) && ::access(file.c_str(), R_OK | W_OK) != 0)
    out.push_back(
        {true, key + ": " + file.string() + " is not writable by " + who() + " (" + describe_owner(file) + ")"});
  writable_folder(out, key, file.parent_path());  // SQLite's -wal/-shm and the status file's temp file
}

void readable_file(std::vector<Finding>& out, const std::string& key, const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec) && !ec)
    out.push_back({true, key + ": " + file.string() + " does not exist"});
  else if (::access(file.c_str(), R_OK) != 0)
    out.push_back(
        {true, key + ": " + file.string() + " is not readable by " + who() + " (" + describe_owner(file) + ")"});
}

void check_tls(std::vector<Finding>& out, const config::Config& cfg) {
  const auto& t = cfg.tls;
  std::error_code ec1, ec2;
  const bool cert = fs::exists(t.certificate, ec1), key = fs::exists(t.private_key, ec2);
  if (!cert && !key && !ec1 && !ec2 && t.generate_self_signed) {
    writable_folder(out, "tls.certificate", t.certificate.parent_path());  // made at start, and logged
    return;
  }
  readable_file(out, "tls.certificate", t.certificate);
  readable_file(out, "tls.private_key", t.private_key);
  if (!cert || !key || ::access(t.certificate.c_str(), R_OK) != 0 || ::access(t.private_key.c_str(), R_OK) != 0) return;
  try {
    net::make_server_tls_context(t.certificate.string(), t.private_key.string());  // PEM, key matches
  } catch (const std::exception& e) {
    out.push_back({true, std::string("tls: ") + e.what()});
    return;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(t.certificate.c_str(), "r"), std::fclose);
  if (!f) return;
  std::unique_ptr<X509, void (*)(X509*)> x(PEM_read_X509(f.get(), nullptr, nullptr, nullptr), X509_free);
  if (!x) return;
  const std::time_t soon = std::time(nullptr) + kCertificateWarnDays * 86400;
  if (X509_cmp_time(X509_get0_notAfter(x.get()), const_cast<std::time_t*>(&soon)) < 0)
    out.push_back({X509_cmp_current_time(X509_get0_notAfter(x.get())) < 0,
                   "tls.certificate: " + t.certificate.string() +
                       (X509_cmp_current_time(X509_get0_notAfter(x.get())) < 0
                            ? " has expired"
                            : " expires within " + std::to_string(kCertificateWarnDays) + " days")});
}

}  // namespace

std::vector<Finding> check(const config::Config& cfg, bool pop3d, bool smtpd, bool mail) {
  std::vector<Finding> out;
  if (mail) check_tls(out, cfg);
  if (cfg.database_uri.empty()) writable_file(out, "database", cfg.database);  // PostgreSQL: checked by connecting
  writable_folder(out, "status_file", cfg.status_file.parent_path());
  if (mail) writable_folder(out, "maildir_root", cfg.maildir_root);
  if (smtpd) writable_folder(out, "spool_dir", cfg.spool_dir);
  if (smtpd && !cfg.smarthost.password_file.empty())
    readable_file(out, "smarthost.password_file", cfg.smarthost.password_file);
  (void)pop3d;  // pop3d writes nothing of its own beyond the shared folders above
  return out;
}

std::vector<Finding> check_as_service_user(const config::Config& cfg, bool pop3d, bool smtpd, bool mail) {
  if (::geteuid() != 0 || cfg.run_as.allow_root) return check(cfg, pop3d, smtpd, mail);
  if (cfg.run_as.user.empty() || ::getpwnam(cfg.run_as.user.c_str()) == nullptr) {
    auto out = check(cfg, pop3d, smtpd, mail);
    out.insert(out.begin(),
               {true, cfg.run_as.user.empty()
                          ? "running as root: set run_as.user to an unprivileged user (or allow root explicitly)"
                          : "run_as.user: \"" + cfg.run_as.user +
                                "\" does not exist: running as root, a daemon "
                                "refuses to run (create it, or allow root explicitly)"});
    return out;
  }
  int fds[2];
  if (::pipe(fds) != 0) return {{true, std::string("preflight: pipe: ") + std::strerror(errno)}};
  Fd from_child(fds[0]), to_parent(fds[1]);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return {{true, std::string("preflight: fork: ") + std::strerror(errno)}};
  if (pid == 0) {
    from_child.reset();
    std::string text;
    try {
      daemon::drop_privileges(cfg.run_as.user, cfg.run_as.group, false);
      for (const auto& f : check(cfg, pop3d, smtpd, mail)) text += (f.error ? "E" : "W") + f.message + "\n";
    } catch (const std::exception& e) {
      text = std::string("E") + e.what() + "\n";
    }
    (void)fsutil::write_all(to_parent.get(), text);  // a parent that stopped reading gets fewer findings
    ::_exit(0);
  }
  to_parent.reset();
  std::string text;
  (void)fsutil::read_all(from_child.get(), text);  // a read error keeps the findings read before it
  from_child.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::vector<Finding> out;
  for (size_t start = 0, nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    if (nl > start) out.push_back({text[start] == 'E', text.substr(start + 1, nl - start - 1)});
  return out;
}

bool report(const std::vector<Finding>& findings) {
  bool ok = true;
  for (const auto& f : findings) {
    std::cerr << (f.error ? "error: " : "warning: ") << f.message << "\n";
    ok = ok && !f.error;
  }
  return ok;
}

bool log_report(const std::vector<Finding>& findings) {
  bool ok = true;
  for (const auto& f : findings) {
    log::Line(f.error ? log::Level::Error : log::Level::Warning)
        .kv("event", "preflight")
        .kv("outcome", f.error ? "failed" : "warning")
        .msg(f.message);
    ok = ok && !f.error;
  }
  return ok;
}

}  // namespace rg::preflight
