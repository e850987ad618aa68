// Strict JSON config reader: walks each object once, marks the keys it knows and reports
// the first unknown key or wrong type with its full path (e.g. `smtpd.listen[1].port`).
// `//` and `/* */` comments are allowed; a key given twice in one object is an error (JSON
// parsers disagree on which one wins, so the file would not say what it seems to say).
#include "shared/config.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/ascii.h"
#include "shared/ip.h"

namespace rg::config {
namespace {

using json = nlohmann::json;

// Unknown keys within this edit distance of a known key get a "did you mean" hint.
constexpr size_t kMaxSuggestionDistance = 2;

// Optimal string alignment distance (Levenshtein plus adjacent transpositions): a typo such as
// "prot" for "port" is one edit, not two.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The known key closest to `key` (case-insensitive), if it is close enough to be a typo. Short
// keys allow fewer edits, so "tls" never suggests "ttl".
std::optional<std::string> nearest_key(const std::string& key, const std::set<std::string>& known) {
  const size_t limit = std::min(kMaxSuggestionDistance, std::max<size_t>(1, key.size() / 3));
  std::optional<std::string> best;
  size_t best_d = limit + 1;
  for (const auto& k : known) {
    const size_t d = edit_distance(ascii::lower(key), ascii::lower(k));
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

// Parses JSON with comments and rejects a key given twice in one object (nlohmann keeps the last
// one silently). The callback sees the keys of each object between its start and end events.
json parse_strict(const std::string& text, const std::string& file) {
  struct Frame {
    bool array = false;
    std::string path;            // key path of this object or array ("" at the top level)
    size_t index = 0;            // arrays: index of the next element
    std::set<std::string> keys;  // objects: keys seen so far
    std::string key;             // objects: the key whose value comes next
  };
  std::vector<Frame> stack;
  // Key path of the value that starts now, from its parent frame.
  auto child_path = [&stack]() -> std::string {
    if (stack.empty()) return "";
    const Frame& p = stack.back();
    if (p.array) return p.path + "[" + std::to_string(p.index) + "]";
    return p.path.empty() ? p.key : p.path + "." + p.key;
  };
  auto element_done = [&stack]() {
    if (!stack.empty() && stack.back().array) ++stack.back().index;
  };
  json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        Frame f;
        f.array = event == json::parse_event_t::array_start;
        f.path = child_path();
        stack.push_back(std::move(f));
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        element_done();
        break;
      case json::parse_event_t::key: {
        Frame& f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second)
          throw ConfigError(file + ": " + (f.path.empty() ? f.key : f.path + "." + f.key) + ": duplicate key");
        break;
      }
      case json::parse_event_t::value: element_done(); break;
    }
    return true;
  };
  return json::parse(text, cb, /*allow_exceptions=*/true, /*ignore_comments=*/true);
}

std::string describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads one JSON object; every get_* marks its key as known; finish() rejects the rest.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string path, const std::string& file)
      : obj_(obj), path_(std::move(path)), file_(file) {
    if (!obj_.is_object()) fail(path_.empty() ? "(top level)" : path_, "expected an object", obj_);
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what, const json& got) const {
    throw ConfigError(file_ + ": " + key + ": " + what + ", got " + describe(got));
  }
  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const json* find(const std::string& key) {
    known_.insert(key);
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }

  void get_string(const std::string& key, std::string& out, bool allow_empty = false) {
    if (const json* v = find(key)) {
      if (!v->is_string() || (!allow_empty && v->get_ref<const std::string&>().empty()))
        fail(key_path(key), allow_empty ? "expected a string" : "expected a non-empty string", *v);
      out = v->get<std::string>();
    }
  }
  void get_path(const std::string& key, fs::path& out, const fs::path& base) {
    std::string s;
    if (find(key) == nullptr) return;
    get_string(key, s);
    out = fs::path(s).is_absolute() ? fs::path(s) : base / s;
  }
  void get_bool(const std::string& key, bool& out) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) fail(key_path(key), "expected true or false", *v);
      out = v->get<bool>();
    }
  }
  void get_int(const std::string& key, int64_t& out, int64_t lo, int64_t hi) {
    if (const json* v = find(key)) {
      if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi)
        fail(key_path(key), "expected an integer " + std::to_string(lo) + "-" + std::to_string(hi), *v);
      out = v->get<int64_t>();
    }
  }
  void get_string_list(const std::string& key, std::vector<std::string>& out) {
    if (const json* v = find(key)) {
      if (!v->is_array()) fail(key_path(key), "expected an array of strings", *v);
      out.clear();
      for (size_t i = 0; i < v->size(); ++i) {
        const json& e = (*v)[i];
        if (!e.is_string() || e.get_ref<const std::string&>().empty())
          fail(key_path(key) + "[" + std::to_string(i) + "]", "expected a non-empty string", e);
        out.push_back(e.get<std::string>());
      }
    }
  }
  template <class Enum, size_t N>
  void get_enum(const std::string& key, Enum& out, const std::pair<const char*, Enum> (&names)[N]) {
    if (const json* v = find(key)) {
      std::string expected = "expected one of";
      for (auto& [n, e] : names) {
        expected += std::string(" \"") + n + "\"";
        if (v->is_string() && v->get_ref<const std::string&>() == n) {
          out = e;
          return;
        }
      }
      fail(key_path(key), expected, *v);
    }
  }

  void finish() const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!known_.count(it.key())) {
        std::string hint;
        if (auto near = nearest_key(it.key(), known_)) hint = " (did you mean \"" + *near + "\"?)";
        throw ConfigError(file_ + ": " + key_path(it.key()) + ": unknown key" + hint);
      }
  }

 private:
  const json& obj_;
  std::string path_;
  const std::string& file_;
  std::set<std::string> known_;
};

constexpr std::pair<const char*, TlsMode> kTlsModes[] = {{"none", TlsMode::None},
                                                         {"starttls", TlsMode::StartTls},
                                                         {"required", TlsMode::Required},
                                                         {"implicit", TlsMode::Implicit}};
constexpr std::pair<const char*, SmtpMode> kSmtpModes[] = {
    {"relay", SmtpMode::Relay}, {"submission", SmtpMode::Submission}, {"submissions", SmtpMode::Submissions}};

void read_listeners(ObjectReader& parent, const std::string& key, std::vector<Listener>& out, bool smtp,
                    const std::string& file) {
  const json* v = parent.find(key);
  if (v == nullptr) return;
  if (!v->is_array()) parent.fail(parent.key_path(key), "expected an array of listener objects", *v);
  out.clear();
  for (size_t i = 0; i < v->size(); ++i) {
    std::string path = parent.key_path(key) + "[" + std::to_string(i) + "]";
    ObjectReader r((*v)[i], path, file);
    Listener l;
    l.tls = TlsMode::None;
    int64_t port = -1;
    r.get_string("address", l.address);
    r.get_int("port", port, 1, 65535);
    r.get_enum("tls", l.tls, kTlsModes);
    if (smtp) r.get_enum("mode", l.mode, kSmtpModes);
    r.get_bool("proxy_protocol", l.proxy_protocol);
    const bool proxy_from_given = r.find("proxy_from") != nullptr;
    r.get_string_list("proxy_from", l.proxy_from);
    r.finish();
    if (l.address.empty()) throw ConfigError(file + ": " + path + ".address: required");
    if (port < 0) throw ConfigError(file + ": " + path + ".port: required");
    if (!canonical_ip(l.address))
      throw ConfigError(file + ": " + path + ".address: expected an IPv4 or IPv6 address, got \"" + l.address + "\"");
    l.port = static_cast<uint16_t>(port);
    if (smtp && l.mode == SmtpMode::Submissions && l.tls != TlsMode::Implicit)
      throw ConfigError(file + ": " + path + ".tls: mode \"submissions\" needs \"implicit\" (RFC 8314)");
    for (size_t j = 0; j < l.proxy_from.size(); ++j)
      if (!parse_cidr(l.proxy_from[j]))
        throw ConfigError(file + ": " + path + ".proxy_from[" + std::to_string(j) +
                          "]: expected an address or CIDR block, got \"" + l.proxy_from[j] + "\"");
    // The header names any address it likes: only listed balancers may send it (proxy-protocol.txt
    // §5), so a listener that takes it without a list would let every client pick its address. A
    // list without the header is an error too: it would read as a restriction that is not there.
    if (l.proxy_protocol && l.proxy_from.empty())
      throw ConfigError(
          file + ": " + path +
          ".proxy_from: required with \"proxy_protocol\": true (the balancers allowed to send the header)");
    if (!l.proxy_protocol && proxy_from_given)
      throw ConfigError(file + ": " + path + ".proxy_from: only used with \"proxy_protocol\": true");
    out.push_back(l);
  }
}

// An ordered list of distinct SASL mechanism names (case-insensitive in the file, upper case after).
void read_mechanisms(ObjectReader& r, const std::string& key, std::vector<std::string>& out) {
  r.get_string_list(key, out);
  for (size_t i = 0; i < out.size(); ++i) {
    std::string& m = out[i];
    m = ascii::upper(m);
    const std::string at = r.key_path(key) + "[" + std::to_string(i) + "]";
    if (std::find(std::begin(kSaslMechanisms), std::end(kSaslMechanisms), m) == std::end(kSaslMechanisms))
      r.fail(at, "expected one of \"PLAIN\" \"LOGIN\" \"CRAM-MD5\" \"DIGEST-MD5\"", json(m));
    if (std::find(out.begin(), out.begin() + static_cast<long>(i), m) != out.begin() + static_cast<long>(i))
      r.fail(at, "listed twice", json(m));
  }
}

// A socket file mode as an octal string ("0660"); at most 0777.
unsigned read_mode(ObjectReader& r, const std::string& key, unsigned fallback) {
  std::string s;
  r.get_string(key, s);
  if (s.empty()) return fallback;
  if (s.size() > 4 || s.find_first_not_of("01234567") != std::string::npos)
    r.fail(r.key_path(key), "expected an octal mode such as \"0660\"", json(s));
  return static_cast<unsigned>(std::stoul(s, nullptr, 8)) & 0777U;
}

void read_policyd(const json& v, Policyd& out, const std::string& file, const fs::path& base) {
  ObjectReader p(v, "policyd", file);
  if (const json* l = p.find("listen")) {
    if (!l->is_array()) p.fail("policyd.listen", "expected an array of listener objects", *l);
    out.listen.clear();
    for (size_t i = 0; i < l->size(); ++i) {
      const std::string path = "policyd.listen[" + std::to_string(i) + "]";
      ObjectReader r((*l)[i], path, file);
      PolicyListener pl;
      int64_t port = -1;
      r.get_string("address", pl.address);
      r.get_int("port", port, 1, 65535);
      r.get_path("path", pl.path, base);
      const bool mode_given = r.find("mode") != nullptr;
      pl.mode = read_mode(r, "mode", pl.mode);
      r.finish();
      if (!pl.path.empty()) {
        if (!pl.address.empty() || port >= 0)
          throw ConfigError(file + ": " + path + ": either \"path\" (unix socket) or \"address\" and \"port\"");
      } else {
        if (mode_given) throw ConfigError(file + ": " + path + ".mode: only for a unix socket (\"path\")");
        if (pl.address.empty()) throw ConfigError(file + ": " + path + ".address: required (or \"path\")");
        if (port < 0) throw ConfigError(file + ": " + path + ".port: required");
        if (!canonical_ip(pl.address))
          throw ConfigError(file + ": " + path + ".address: expected an IPv4 or IPv6 address, got \"" + pl.address +
                            "\"");
        pl.port = static_cast<uint16_t>(port);
      }
      out.listen.push_back(pl);
    }
  }
  if (const json* g = p.find("grant_socket")) {
    ObjectReader r(*g, "policyd.grant_socket", file);
    std::string path;
    r.get_string("path", path, true);
    out.grant_socket.path = path.empty() ? fs::path() : (fs::path(path).is_absolute() ? fs::path(path) : base / path);
    r.get_string_list("allowed_users", out.grant_socket.allowed_users);
    out.grant_socket.mode = read_mode(r, "mode", out.grant_socket.mode);
    r.finish();
  }
  p.get_int("request_timeout_seconds", out.request_timeout_seconds, 1, 3600);
  p.get_int("idle_timeout_seconds", out.idle_timeout_seconds, 1, 86400);
  p.get_int("max_connections", out.max_connections, 1, 100000);
  p.finish();
}

std::string system_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

bool valid_domain(const std::string& d) {
  if (d.empty() || d.size() > 255 || d.front() == '.' || d.back() == '.') return false;
  for (unsigned char c : d)
    if (!(std::isalnum(c) || c == '-' || c == '.')) return false;
  return d.find("..") == std::string::npos;
}

}  // namespace

void resolve_allowed_users(GrantSocket& g, const std::string& file) {
  g.allowed_uids.clear();
  if (g.path.empty()) return;  // off: nobody to resolve (the default "dovecot" may not exist)
  for (size_t i = 0; i < g.allowed_users.size(); ++i) {
    const std::string& u = g.allowed_users[i];
    if (u.find_first_not_of("0123456789") == std::string::npos && u.size() <= 10) {
      g.allowed_uids.push_back(static_cast<uint32_t>(std::stoul(u)));
      continue;
    }
    const passwd* pw = ::getpwnam(u.c_str());
    if (pw == nullptr)
      throw ConfigError(file + ": policyd.grant_socket.allowed_users[" + std::to_string(i) + "]: no such user \"" + u +
                        "\"");
    g.allowed_uids.push_back(pw->pw_uid);
  }
}

bool is_postgres_uri(const std::string& s) {
  for (const char* scheme : kPostgresUriSchemes)
    if (s.rfind(scheme, 0) == 0) return true;
  return false;
}

Config defaults(const fs::path& base_dir) {
  Config c;
  c.hostname = system_hostname();
  c.database = base_dir / "var/relaygate.db";
  c.status_file = base_dir / "var/status.json";
  c.maildir_root = base_dir / "var/mail";
  c.spool_dir = base_dir / "var/spool";
  c.local_domains = {"example.test"};
  c.tls.certificate = base_dir / "var/tls/cert.pem";
  c.tls.private_key = base_dir / "var/tls/key.pem";
  const auto loopback = [](uint16_t port, TlsMode tls, SmtpMode mode) {
    Listener l;
    l.address = "127.0.0.1";
    l.port = port;
    l.tls = tls;
    l.mode = mode;
    return l;
  };
  c.pop3d.listen = {loopback(2110, TlsMode::StartTls, SmtpMode::Relay),
                    loopback(2995, TlsMode::Implicit, SmtpMode::Relay)};
  PolicyListener policy;
  policy.address = "127.0.0.1";
  policy.port = kDefaultPolicyPort;
  c.policyd.listen = {policy};
  c.smtpd.listen = {loopback(2525, TlsMode::StartTls, SmtpMode::Relay),
                    loopback(2587, TlsMode::StartTls, SmtpMode::Submission),
                    loopback(2465, TlsMode::Implicit, SmtpMode::Submissions)};
  return c;
}

Config parse(const std::string& text, const fs::path& name, const fs::path& base_dir) {
  const std::string file = name.filename().string();
  json root;
  try {
    root = parse_strict(text, file);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double (1e999): both bad input.
    throw ConfigError(file + ": not valid JSON: " + e.what());
  }
  Config c = defaults(base_dir);
  c.file = name;
  ObjectReader r(root, "", file);
  r.get_string("hostname", c.hostname);
  if (const json* v = r.find("database"); v && v->is_string() && is_postgres_uri(v->get<std::string>())) {
    c.database_uri = v->get<std::string>();
    // libpq reads a password in the URI too, but the config file is readable by more than the
    // daemons (and shown in logs): the password belongs in a passfile.
    const auto at = c.database_uri.find('@');
    const auto authority = c.database_uri.substr(0, at == std::string::npos ? 0 : at);
    if (authority.find(':', authority.find("://") + 3) != std::string::npos ||
        c.database_uri.find("password=") != std::string::npos)
      throw ConfigError(file +
                        ": database: a password must not be in the config; put it in libpq's passfile "
                        "(~/.pgpass or ?passfile=FILE)");
    c.database.clear();
  } else {
    r.get_path("database", c.database, base_dir);
  }
  r.get_int("database_timeout_ms", c.database_timeout_ms, kMinDatabaseTimeoutMs, kMaxDatabaseTimeoutMs);
  r.get_path("status_file", c.status_file, base_dir);
  r.get_path("maildir_root", c.maildir_root, base_dir);
  r.get_path("spool_dir", c.spool_dir, base_dir);
  r.get_string_list("local_domains", c.local_domains);
  for (size_t i = 0; i < c.local_domains.size(); ++i) {
    std::string& d = c.local_domains[i];
    d = ascii::lower(d);
    if (!valid_domain(d))
      throw ConfigError(file + ": local_domains[" + std::to_string(i) + "]: expected a domain name, got \"" + d + "\"");
  }
  if (const json* v = r.find("tls")) {
    ObjectReader t(*v, "tls", file);
    t.get_path("certificate", c.tls.certificate, base_dir);
    t.get_path("private_key", c.tls.private_key, base_dir);
    const Config d = defaults(base_dir);
    c.tls.generate_self_signed = c.tls.certificate == d.tls.certificate && c.tls.private_key == d.tls.private_key;
    t.get_bool("generate_self_signed", c.tls.generate_self_signed);
    t.finish();
  }
  if (const json* v = r.find("grants")) {
    ObjectReader g(*v, "grants", file);
    g.get_int("ttl_seconds", c.grants.ttl_seconds, 1, 30LL * 24 * 3600);
    g.get_int("status_interval_seconds", c.grants.status_interval_seconds, 1, 60);
    g.finish();
  }
  if (const json* v = r.find("auth")) {
    ObjectReader a(*v, "auth", file);
    a.get_bool("allow_plaintext_without_tls", c.auth.allow_plaintext_without_tls);
    if (const json* d = a.find("digest_md5"))
      a.fail("auth.digest_md5", "replaced by listing \"DIGEST-MD5\" in auth.mechanisms", *d);
    a.get_int("failure_delay_max_ms", c.auth.failure_delay_max_ms, 0, 60000);
    read_mechanisms(a, "mechanisms", c.auth.mechanisms);
    if (a.find("mechanisms_without_tls") != nullptr) {
      c.auth.mechanisms_without_tls.emplace();
      read_mechanisms(a, "mechanisms_without_tls", *c.auth.mechanisms_without_tls);
      if (!c.auth.allow_plaintext_without_tls)
        for (const auto& m : *c.auth.mechanisms_without_tls)
          if (m == "PLAIN" || m == "LOGIN")
            throw ConfigError(file + ": auth.mechanisms_without_tls: " + m +
                              " sends the password in clear; it needs auth.allow_plaintext_without_tls");
    }
    a.finish();
  }
  if (const json* v = r.find("pop3d")) {
    ObjectReader p(*v, "pop3d", file);
    read_listeners(p, "listen", c.pop3d.listen, false, file);
    p.get_int("idle_timeout_seconds", c.pop3d.idle_timeout_seconds, 1, 86400);
    p.get_int("max_connections", c.pop3d.max_connections, 1, 1000000);
    p.get_int("max_connections_per_ip", c.pop3d.max_connections_per_ip, 1, 1000000);
    p.get_int("max_bad_commands", c.pop3d.max_bad_commands, 1, 1000);
    p.finish();
  }
  if (const json* v = r.find("smtpd")) {
    ObjectReader s(*v, "smtpd", file);
    read_listeners(s, "listen", c.smtpd.listen, true, file);
    s.get_string_list("trusted_networks", c.smtpd.trusted_networks);
    for (size_t i = 0; i < c.smtpd.trusted_networks.size(); ++i)
      if (!parse_cidr(c.smtpd.trusted_networks[i]))
        throw ConfigError(file + ": smtpd.trusted_networks[" + std::to_string(i) +
                          "]: expected an address or CIDR block, got \"" + c.smtpd.trusted_networks[i] + "\"");
    s.get_int("max_message_size", c.smtpd.max_message_size, 1024, 1LL << 40);
    s.get_int("max_recipients", c.smtpd.max_recipients, 1, 100000);
    s.get_int("max_connections", c.smtpd.max_connections, 1, 1000000);
    s.get_int("max_connections_per_ip", c.smtpd.max_connections_per_ip, 1, 1000000);
    s.get_int("max_errors", c.smtpd.max_errors, 1, 1000);
    s.get_int("command_timeout_seconds", c.smtpd.command_timeout_seconds, 1, 86400);
    s.get_int("data_timeout_seconds", c.smtpd.data_timeout_seconds, 1, 86400);
    s.get_int("min_data_rate", c.smtpd.min_data_rate, 0, 1LL << 30);
    s.get_int("data_rate_grace_seconds", c.smtpd.data_rate_grace_seconds, 1, 3600);
    s.get_int("greeting_pause_ms", c.smtpd.greeting_pause_ms, 0, 60000);
    s.finish();
  }
  if (const json* v = r.find("policyd")) read_policyd(*v, c.policyd, file, base_dir);
  if (const json* v = r.find("smarthost")) {
    ObjectReader h(*v, "smarthost", file);
    int64_t port = -1;
    h.get_string("host", c.smarthost.host);
    h.get_int("port", port, 1, 65535);
    h.get_enum("tls", c.smarthost.tls, kTlsModes);
    h.get_path("ca_file", c.smarthost.ca_file, base_dir);
    h.get_bool("verify", c.smarthost.verify);
    h.get_string("username", c.smarthost.username);
    h.get_path("password_file", c.smarthost.password_file, base_dir);
    h.get_int("connect_timeout_seconds", c.smarthost.connect_timeout_seconds, 1, 3600);
    h.get_int("command_timeout_seconds", c.smarthost.command_timeout_seconds, 1, 3600);
    h.get_int("data_timeout_seconds", c.smarthost.data_timeout_seconds, 1, 7200);
    h.finish();
    if (c.smarthost.host.empty()) throw ConfigError(file + ": smarthost.host: required");
    if (!canonical_ip(c.smarthost.host) && !valid_domain(c.smarthost.host))
      throw ConfigError(file + ": smarthost.host: expected a host name or an IP address, got \"" + c.smarthost.host +
                        "\"");
    c.smarthost.port = port > 0 ? static_cast<uint16_t>(port) : (c.smarthost.tls == TlsMode::Implicit ? 465 : 25);
    if (!c.smarthost.username.empty() && c.smarthost.password_file.empty())
      throw ConfigError(file + ": smarthost.password_file: required with smarthost.username");
    if (c.smarthost.username.empty() && !c.smarthost.password_file.empty())
      throw ConfigError(file + ": smarthost.username: required with smarthost.password_file");
  }
  if (const json* v = r.find("queue")) {
    ObjectReader q(*v, "queue", file);
    constexpr int64_t kDay = 86400;
    q.get_int("max_lifetime_seconds", c.queue.max_lifetime_seconds, 1, 60 * kDay);
    q.get_int("first_retry_seconds", c.queue.first_retry_seconds, 1, kDay);
    q.get_int("max_retry_seconds", c.queue.max_retry_seconds, 1, 7 * kDay);
    q.get_int("delay_warning_seconds", c.queue.delay_warning_seconds, 0, 60 * kDay);
    q.get_int("max_connections", c.queue.max_connections, 1, 100);
    q.get_int("max_messages_per_connection", c.queue.max_messages_per_connection, 1, 100000);
    q.get_int("scan_interval_seconds", c.queue.scan_interval_seconds, 1, 3600);
    q.finish();
    if (c.queue.max_retry_seconds < c.queue.first_retry_seconds)
      throw ConfigError(file + ": queue.max_retry_seconds: must be at least queue.first_retry_seconds (" +
                        std::to_string(c.queue.first_retry_seconds) + ")");
  }
  if (const json* v = r.find("run_as")) {
    ObjectReader ra(*v, "run_as", file);
    ra.get_string("user", c.run_as.user, true);
    ra.get_string("group", c.run_as.group, true);
    ra.get_bool("allow_root", c.run_as.allow_root);
    ra.finish();
  }
  r.finish();
  resolve_allowed_users(c.policyd.grant_socket, file);
  if (c.local_domains.empty()) throw ConfigError(file + ": local_domains: at least one domain is required");
  return c;
}

Config load(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(file.string() + ": cannot read the config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  fs::path abs = fs::absolute(file);
  return parse(ss.str(), abs, abs.parent_path());
}

Config load_or_defaults(const fs::path& file) { return file.empty() ? defaults(fs::current_path()) : load(file); }

std::vector<std::string> sasl_mechanisms(const Config& cfg, const Listener& listener, bool tls_active) {
  if (tls_active) return cfg.auth.mechanisms;
  if (cfg.auth.mechanisms_without_tls) return *cfg.auth.mechanisms_without_tls;
  if (listener.mode != SmtpMode::Relay) return {};
  if (cfg.auth.allow_plaintext_without_tls) return {"PLAIN", "LOGIN"};
  return {"CRAM-MD5"};
}

const char* to_string(TlsMode m) {
  for (auto& [n, e] : kTlsModes)
    if (e == m) return n;
  return "?";
}
const char* to_string(SmtpMode m) {
  for (auto& [n, e] : kSmtpModes)
    if (e == m) return n;
  return "?";
}

}  // namespace rg::config
