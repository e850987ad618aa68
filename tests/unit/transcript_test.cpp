// Transcript tests (OpenSMTPD smtpscript / Postfix .in/.ref style): every file under
// tests/transcripts/{smtp,pop3}/ is one scenario, played over a real loopback TCP socket against
// an in-process smtp::Server or pop3::Server. The format is in tests/transcripts/README.md.
// Invariants: every read has a deadline (no case can hang); a failure names script:line, what
// was expected and what arrived; the daemon log checks run only after the session has ended.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <thread>

#include "authdb/authdb.h"
#include "authdb/password.h"
#include "pop3d/server.h"
#include "shared/config.h"
#include "shared/maildir.h"
#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"
#include "smtpd/server.h"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;

#ifndef RG_TRANSCRIPT_DIR
#error "RG_TRANSCRIPT_DIR must name tests/transcripts"
#endif

// Every reply the scripts expect comes within milliseconds; a missing one fails after this.
constexpr int kReadTimeoutSeconds = 5;
// After the client is done: how long the sessions may take to end (then the case fails).
constexpr auto kDrainLimit = std::chrono::seconds(5);
constexpr auto kDrainPoll = std::chrono::milliseconds(10);
// A fixed DIGEST-MD5 client nonce (RFC 2831 §2.1.2 lets the client choose it).
constexpr const char* kDigestCnonce = "OA6MHXh6VqTrRk";

// ---------------------------------------------------------------------------------------------
// The in-process daemons: the only code that knows smtpd/server.h and pop3d/server.h. When the
// servers' API changes, only these two functions change.
struct Daemon {
  std::shared_ptr<void> server;  // owns the server; destroyed before the io_context
  std::function<void()> stop;    // on the I/O thread: stop accepting, end the sessions
  std::function<bool()> idle;    // on the I/O thread: every session has ended
};

Daemon start_smtpd(asio::io_context& io, rg::config::Config cfg) {
  auto s = std::make_shared<rg::smtp::Server>(io, std::move(cfg));
  s->start();
  return {s, [p = s.get()] { p->stop(); }, [p = s.get()] { return p->idle(); }};
}

Daemon start_pop3d(asio::io_context& io, rg::config::Config cfg) {
  auto s = std::make_shared<rg::pop3::Server>(io, std::move(cfg));
  s->start();
  return {s, [p = s.get()] { p->stop(); }, [p = s.get()] { return p->idle(); }};
}

// ---------------------------------------------------------------------------------------------
// The script.
struct Step {
  int line = 0;
  std::string op;  // ">", ">>", "<", ">apop", ">cram-md5", ">digest-md5", "!starttls", "!expect-close", "?log", "?!log"
  std::string text;  // expanded client bytes, reply pattern, log text, or "USER SECRET"
};

struct Mail {
  std::string user, text;
};

struct Script {
  std::string listener;
  std::vector<std::pair<std::string, json>> config;
  struct User {
    std::string name, password;
    bool legacy = false;
  };
  std::vector<User> users;
  std::vector<Mail> mail;
  std::vector<Step> steps;
};

// `\r \n \t \\ \xHH` escapes, then `{{N*text}}` repeats text N times (long lines at limits).
std::string expand(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in.compare(i, 2, "{{") == 0) {
      const size_t end = in.find("}}", i);
      const size_t star = in.find('*', i);
      if (end == std::string::npos || star == std::string::npos || star > end)
        throw std::runtime_error("bad {{N*text}} in: " + in);
      const size_t n = std::stoul(in.substr(i + 2, star - i - 2));
      const std::string unit = expand(in.substr(star + 1, end - star - 1));
      for (size_t k = 0; k < n; ++k) out += unit;
      i = end + 1;
      continue;
    }
    if (in[i] == '\\' && i + 1 < in.size()) {
      const char c = in[++i];
      if (c == 'r') {
        out += '\r';
      } else if (c == 'n') {
        out += '\n';
      } else if (c == 't') {
        out += '\t';
      } else if (c == 'x' && i + 2 < in.size()) {
        out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += c;
      }
      continue;
    }
    out += in[i];
  }
  return out;
}

Script parse(const fs::path& file, const std::string& name) {
  Script s;
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    const auto starts = [&](const char* p) { return line.rfind(p, 0) == 0; };
    const auto rest = [&](size_t k) { return k < line.size() ? line.substr(k) : std::string(); };
    const auto fail = [&](const std::string& why) {
      throw std::runtime_error(name + ":" + std::to_string(n) + ": " + why + ": " + line);
    };
    if (starts("@listener ")) {
      s.listener = rest(10);
    } else if (starts("@config ")) {
      const std::string kv = rest(8);
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) fail("expected @config key=JSON");
      s.config.emplace_back(kv.substr(0, eq), json::parse(kv.substr(eq + 1)));
    } else if (starts("@user ")) {
      std::istringstream ss(rest(6));
      Script::User u;
      std::string flag;
      ss >> u.name >> u.password >> flag;
      if (u.password.empty() || !(flag.empty() || flag == "legacy")) fail("expected @user NAME PASSWORD [legacy]");
      u.legacy = flag == "legacy";
      s.users.push_back(u);
    } else if (starts("@mail ")) {
      const std::string r = rest(6);
      const size_t sp = r.find(' ');
      if (sp == std::string::npos) fail("expected @mail USER TEXT");
      s.mail.push_back({r.substr(0, sp), expand(r.substr(sp + 1))});
    } else if (starts(">> ")) {
      s.steps.push_back({n, ">>", expand(rest(3))});
    } else if (starts("> ") || line == ">") {
      s.steps.push_back({n, ">", expand(rest(2)) + "\r\n"});
    } else if (starts(">apop ") || starts(">cram-md5 ") || starts(">digest-md5 ")) {
      const size_t sp = line.find(' ');
      s.steps.push_back({n, line.substr(0, sp), line.substr(sp + 1)});
    } else if (starts("< ")) {
      s.steps.push_back({n, "<", rest(2)});
    } else if (line == "!starttls" || line == "!expect-close") {
      s.steps.push_back({n, line, ""});
    } else if (starts("?!log ")) {
      s.steps.push_back({n, "?!log", expand(rest(6))});
    } else if (starts("?log ")) {
      s.steps.push_back({n, "?log", expand(rest(5))});
    } else {
      fail("cannot parse");
    }
  }
  return s;
}

// A reply pattern: `*` matches any run of characters (also none), `\*` and `\\` are a literal
// star and backslash; everything else is literal (`[AUTH]` and `?` included).
bool matches(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, resume = 0;  // the last `*` seen and where its match ends
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = ++p;
      resume = t;
      continue;
    }
    if (p < pattern.size()) {
      const bool escaped = pattern[p] == '\\' && p + 1 < pattern.size();
      const char want = escaped ? pattern[p + 1] : pattern[p];
      if (want == text[t]) {
        p += escaped ? 2 : 1;
        ++t;
        continue;
      }
    }
    if (star == std::string_view::npos) return false;
    p = star;  // let the last `*` swallow one more character
    t = ++resume;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// ---------------------------------------------------------------------------------------------
// The client side: a blocking socket with read and write deadlines, optionally wrapped in TLS
// (no verification: the server's certificate is the self-signed one made in the temp folder).
class Client {
 public:
  enum class Got { Line, Closed, Timeout };

  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const timeval tv{kReadTimeoutSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  bool starttls() {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_);
    return SSL_connect(ssl_.get()) == 1;
  }
  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      const int n = ssl_ ? SSL_write(ssl_.get(), data.data() + off, static_cast<int>(data.size() - off))
                         : static_cast<int>(::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL));
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // The next line, without its CRLF.
  Got line(std::string& out) {
    for (;;) {
      const size_t nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        out = buf_.substr(0, nl);
        buf_.erase(0, nl + 2);
        return Got::Line;
      }
      char tmp[4096];
      errno = 0;
      const int n = ssl_ ? SSL_read(ssl_.get(), tmp, sizeof tmp) : static_cast<int>(::recv(fd_, tmp, sizeof tmp, 0));
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? Got::Timeout : Got::Closed;
    }
  }
  const std::string& unread() const { return buf_; }

 private:
  struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  int fd_ = -1;
  bool connected_ = false;
  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
  std::unique_ptr<SSL, SslFree> ssl_;  // declared after ctx_: freed first
  std::string buf_;
};

// The daemon's log (stderr) goes to a file for the length of one script.
class StderrCapture {
 public:
  explicit StderrCapture(const fs::path& file) : file_(file) {
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::string text() const {
    std::ifstream in(file_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  fs::path file_;
  int saved_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Client lines the script cannot spell out because they depend on the server's challenge.
std::pair<std::string, std::string> user_and_secret(const std::string& text) {
  std::istringstream ss(text);
  std::string user, secret;
  ss >> user >> secret;
  return {user, secret};
}

// RFC 1939 §7: APOP name digest, digest = MD5(greeting timestamp + secret).
std::string apop_line(const std::string& greeting, const std::string& text) {
  const auto [user, secret] = user_and_secret(text);
  const size_t lt = greeting.find('<'), gt = greeting.find('>', lt);
  if (lt == std::string::npos || gt == std::string::npos) throw std::runtime_error("no <timestamp> in the greeting");
  const std::string ts = greeting.substr(lt, gt - lt + 1);
  return "APOP " + user + " " + rg::sasl::hex_lower(rg::sasl::md5(ts + secret)) + "\r\n";
}

// RFC 2195 §2: base64(user SP hex(HMAC-MD5(secret, challenge))).
std::string cram_md5_line(const std::string& challenge, const std::string& text) {
  const auto [user, secret] = user_and_secret(text);
  const auto ch = rg::sasl::base64_decode(challenge);
  if (!ch) throw std::runtime_error("challenge is not base64: " + challenge);
  return rg::sasl::base64_encode(user + " " + rg::sasl::hex_lower(rg::sasl::hmac_md5(secret, *ch))) + "\r\n";
}

// RFC 2831 §2.1.2: the digest-response to the server's realm and nonce, for `service`.
std::string digest_md5_line(const std::string& challenge, const std::string& text, const std::string& service) {
  const auto [user, secret] = user_and_secret(text);
  const auto ch = rg::sasl::base64_decode(challenge);
  if (!ch) throw std::runtime_error("challenge is not base64: " + challenge);
  const auto value = [&](const std::string& key) {
    const size_t at = ch->find(key + "=\"");
    if (at == std::string::npos) throw std::runtime_error("no " + key + " in the challenge: " + *ch);
    const size_t start = at + key.size() + 2;
    return ch->substr(start, ch->find('"', start) - start);
  };
  const std::string realm = value("realm"), nonce = value("nonce"), uri = service + "/" + realm;
  rg::sasl::detail::DigestInput in{user, realm, secret, nonce, kDigestCnonce, "00000001", "auth", uri, std::nullopt};
  const std::string response = rg::sasl::detail::digest_md5_response(in, "AUTHENTICATE");
  return rg::sasl::base64_encode("charset=utf-8,username=\"" + user + "\",realm=\"" + realm + "\",nonce=\"" + nonce +
                                 "\",nc=00000001,cnonce=\"" + kDigestCnonce + "\",digest-uri=\"" + uri +
                                 "\",response=" + response + ",qop=auth") +
         "\r\n";
}

// ---------------------------------------------------------------------------------------------
// The configuration of one case.
void set_dotted(json& j, const std::string& key, const json& v) {
  json* cur = &j;
  size_t start = 0;
  for (size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1)
    cur = &(*cur)[key.substr(start, dot - start)];
  (*cur)[key.substr(start)] = v;
}

json listener_json(const std::string& kind, uint16_t port) {
  json l = {{"address", "127.0.0.1"}, {"port", port}};
  if (kind == "relay") {
    l["mode"] = "relay";
    l["tls"] = "starttls";
  } else if (kind == "plain") {
    l["mode"] = "relay";
    l["tls"] = "none";
  } else if (kind == "submission") {
    l["mode"] = "submission";
    l["tls"] = "required";
  } else if (kind == "submissions") {
    l["mode"] = "submissions";
    l["tls"] = "implicit";
  } else if (kind == "pop3") {
    l["tls"] = "starttls";
  } else if (kind == "pop3-plain") {
    l["tls"] = "none";
  } else if (kind == "pop3-required") {
    l["tls"] = "required";
  } else if (kind == "pop3s") {
    l["tls"] = "implicit";
  } else {
    throw std::runtime_error("unknown @listener " + kind);
  }
  return l;
}

enum class Proto { Smtp, Pop3 };

// Plays the client side of the script; returns "" or the first mismatch as "file:line: ...".
std::string converse(Client& c, const Script& s, const std::string& name, bool implicit_tls, Proto proto) {
  if (!c.connected()) return name + ": cannot connect";
  if (implicit_tls && !c.starttls()) return name + ": implicit TLS handshake failed";
  std::string greeting, challenge;  // the first line received; the last 334 / + challenge
  for (const Step& st : s.steps) {
    const std::string where = name + ":" + std::to_string(st.line) + ": ";
    std::string out;
    if (st.op == ">" || st.op == ">>") {
      out = st.text;
    } else if (st.op == ">apop") {
      out = apop_line(greeting, st.text);
    } else if (st.op == ">cram-md5") {
      out = cram_md5_line(challenge, st.text);
    } else if (st.op == ">digest-md5") {
      out = digest_md5_line(challenge, st.text, proto == Proto::Smtp ? "smtp" : "pop");
    } else if (st.op == "<") {
      std::string got;
      switch (c.line(got)) {
        case Client::Got::Closed: return where + "connection closed, expected: " + st.text;
        case Client::Got::Timeout: return where + "no reply within the timeout, expected: " + st.text;
        case Client::Got::Line: break;
      }
      if (!matches(st.text, got)) return where + "expected: " + st.text + "\n     got: " + got;
      if (greeting.empty()) greeting = got;
      if (got.rfind("334 ", 0) == 0) challenge = got.substr(4);
      if (got.rfind("+ ", 0) == 0) challenge = got.substr(2);
      continue;
    } else if (st.op == "!starttls") {
      if (!c.unread().empty()) return where + "unexpected bytes before the TLS handshake: " + c.unread();
      if (!c.starttls()) return where + "TLS handshake failed";
      continue;
    } else if (st.op == "!expect-close") {
      std::string got;
      switch (c.line(got)) {
        case Client::Got::Line: return where + "expected the connection to close, got: " + got;
        case Client::Got::Timeout: return where + "expected the connection to close, it stayed open";
        case Client::Got::Closed: break;
      }
      if (!c.unread().empty()) return where + "expected the connection to close, got: " + c.unread();
      continue;
    } else {
      continue;  // ?log / ?!log: after the session
    }
    if (!c.send(out)) return where + "send failed";
  }
  if (!c.unread().empty()) return name + ": the server sent more than the script expects: " + c.unread();
  return "";
}

void play(const std::string& proto_dir, Proto proto) {
  const std::string name = proto_dir;  // "smtp/basic_commands.txt": what failures name
  const Script s = parse(fs::path(RG_TRANSCRIPT_DIR) / name, name);
  char tmpl[] = "/tmp/rg-transcript-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path dir = tmpl;
  const bool smtp = proto == Proto::Smtp;
  const std::string kind = s.listener.empty() ? (smtp ? "relay" : "pop3") : s.listener;
  const uint16_t port = free_port();
  json j = {
      {"hostname", "mx.example.test"}, {"local_domains", {"example.test"}}, {"auth", {{"failure_delay_max_ms", 1}}}};
  j[smtp ? "smtpd" : "pop3d"]["listen"] = json::array({listener_json(kind, port)});
  j[smtp ? "pop3d" : "smtpd"]["listen"] = json::array();
  for (const auto& [k, v] : s.config) set_dotted(j, k, v);
  rg::config::Config cfg = rg::config::parse(j.dump(), dir / "transcript.json", dir);
  fs::create_directories(cfg.maildir_root);
  fs::create_directories(cfg.spool_dir);
  {
    rg::authdb::AuthDb db{cfg.database, rg::authdb::OpenMode::Create};
    for (const auto& u : s.users)
      ASSERT_TRUE(db.add_user(u.name, rg::authdb::hash_password(u.password),
                              u.legacy ? std::optional<std::string>(u.password) : std::nullopt, 1));
  }
  for (const auto& m : s.mail) {
    rg::maildir::Maildir md(cfg.maildir_root, m.user);
    md.ensure();
    md.deliver({m.text});
  }

  std::string failure;
  std::string text;
  bool drained = false;
  {
    StderrCapture log(dir / "daemon.log");
    asio::io_context io(1);
    Daemon d = smtp ? start_smtpd(io, cfg) : start_pop3d(io, cfg);
    std::promise<void> ran;
    std::thread runner([&io, &ran] {
      io.run();
      ran.set_value();
    });
    {
      Client c(port);
      try {
        failure = converse(c, s, name, kind == "submissions" || kind == "pop3s", proto);
      } catch (const std::exception& e) {
        failure = name + ": " + e.what();
      }
    }  // the client closes: the session logs its disconnect summary
    // Drain like daemon_main: stop, then wait until every session has ended.
    std::promise<bool> done;
    asio::steady_timer poll(io);
    const auto deadline = std::chrono::steady_clock::now() + kDrainLimit;
    std::function<void()> check = [&] {
      if (d.idle() || std::chrono::steady_clock::now() >= deadline) return done.set_value(d.idle());
      poll.expires_after(kDrainPoll);
      poll.async_wait([&](const boost::system::error_code&) { check(); });
    };
    asio::post(io, [&] {
      d.stop();
      check();
    });
    drained = done.get_future().get();
    // With every session ended nothing is left to run; anything still running is a bug too.
    if (!drained || ran.get_future().wait_for(kDrainLimit) != std::future_status::ready) {
      drained = false;
      io.stop();
    }
    runner.join();
    if (!drained) new Daemon(std::move(d));  // suspended sessions still refer to it: leak it, as daemon_main does
    log.restore();
    text = log.text();
  }
  for (const Step& st : s.steps) {
    if (!failure.empty()) break;
    const std::string where = name + ":" + std::to_string(st.line) + ": ";
    if (st.op == "?log" && text.find(st.text) == std::string::npos) failure = where + "not in the log: " + st.text;
    if (st.op == "?!log" && text.find(st.text) != std::string::npos) failure = where + "in the log: " + st.text;
  }
  EXPECT_TRUE(drained) << "sessions did not end within " << kDrainLimit.count() << " s";
  EXPECT_EQ(failure, "") << "daemon log:\n" << text;
  fs::remove_all(dir);
}

// The scripts the runner was built with (tests/unit/transcript.cmake globs the folder).
const std::vector<std::string> kScripts = {
#include "transcript_files.inc"
};

std::vector<std::string> scripts(const std::string& proto) {
  std::vector<std::string> out;
  for (const auto& s : kScripts)
    if (s.rfind(proto + "/", 0) == 0) out.push_back(s);
  return out;
}

// A script added since the last build would silently not run: the folder and the list agree.
TEST(transcript, EveryScriptIsBuiltIn) {
  std::vector<std::string> found;
  for (const char* proto : {"pop3", "smtp"})
    for (const auto& e : fs::directory_iterator(fs::path(RG_TRANSCRIPT_DIR) / proto))
      if (e.path().extension() == ".txt") found.push_back(std::string(proto) + "/" + e.path().filename().string());
  std::sort(found.begin(), found.end());
  std::vector<std::string> built = kScripts;
  std::sort(built.begin(), built.end());
  EXPECT_EQ(found, built) << "rebuild the runner: cmake --build build --target transcript_test";
}

class SmtpTranscript : public ::testing::TestWithParam<std::string> {};
class Pop3Transcript : public ::testing::TestWithParam<std::string> {};
TEST_P(SmtpTranscript, Plays) { play(GetParam(), Proto::Smtp); }
TEST_P(Pop3Transcript, Plays) { play(GetParam(), Proto::Pop3); }

std::string name_of(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}
INSTANTIATE_TEST_SUITE_P(transcript, SmtpTranscript, ::testing::ValuesIn(scripts("smtp")), name_of);
INSTANTIATE_TEST_SUITE_P(transcript, Pop3Transcript, ::testing::ValuesIn(scripts("pop3")), name_of);

}  // namespace
