// relaygate configuration: one strict JSON file parsed into typed, validated structs.
// Invariants: every key has a default (the embedded defaults below); an unknown key or a
// wrong type is a ConfigError naming the file and the key path; paths are absolute after load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rg::config {

namespace fs = std::filesystem;

// Start-up error: the message names the file and the key, e.g.
// `relaygate.json: smtpd.listen[1].port: expected an integer 1-65535, got "x"`.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class TlsMode { None, StartTls, Required, Implicit };
enum class SmtpMode { Relay, Submission, Submissions };

struct Listener {
  std::string address;
  uint16_t port = 0;
  TlsMode tls = TlsMode::None;
  SmtpMode mode = SmtpMode::Relay;  // smtpd listeners only
  // Every connection starts with a PROXY protocol header (v1 or v2, HAProxy's proxy-protocol.txt)
  // naming the real client, from a load balancer listed in proxy_from; anyone else, and a
  // balancer that sends no valid header, is refused. Needs a non-empty proxy_from.
  bool proxy_protocol = false;
  std::vector<std::string> proxy_from;  // addresses or CIDR blocks (v4/v6) of the balancers
};

struct Tls {
  fs::path certificate;
  fs::path private_key;
  // Make a self-signed pair when both files are missing. Default: only while both paths are the
  // embedded defaults, so a typo in a configured path is an error, never a silent new certificate.
  bool generate_self_signed = true;
};

struct Grants {
  int64_t ttl_seconds = 1800;            // POP-before-SMTP relay window
  int64_t status_interval_seconds = 60;  // purge + status rewrite period (DESIGN: ≤ 1 min)
};

// SASL mechanism names the administrator may list (RFC 4616, RFC 4954 LOGIN, RFC 2195, RFC 2831).
inline constexpr const char* kSaslMechanisms[] = {"PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"};

struct Auth {
  bool allow_plaintext_without_tls = false;  // USER/PASS, PLAIN, LOGIN outside TLS
  int64_t failure_delay_max_ms = 5000;       // cap of the escalating failed-login delay
  // SASL mechanisms offered (EHLO AUTH, POP3 CAPA SASL) and accepted, in this order, once TLS is
  // active; others get 504 / -ERR. DIGEST-MD5 (historic, RFC 6331) only when listed.
  std::vector<std::string> mechanisms = {"PLAIN", "LOGIN"};
  // The same before TLS. Unset: nothing on submission listeners (RFC 8314: a submission port is
  // for clients that use TLS; a sniffed CRAM-MD5 exchange can be cracked offline); on relay
  // listeners and POP3 PLAIN LOGIN where plaintext is allowed, else CRAM-MD5.
  std::optional<std::vector<std::string>> mechanisms_without_tls;
};

struct Pop3d {
  std::vector<Listener> listen;
  int64_t idle_timeout_seconds = 600;  // RFC 1939 §3: at least 10 minutes
  int64_t max_connections = 1000;
  int64_t max_connections_per_ip = 20;
  int64_t max_bad_commands = 10;
};

struct Smtpd {
  std::vector<Listener> listen;
  std::vector<std::string> trusted_networks;  // CIDR blocks that may relay without auth
  int64_t max_message_size = 26214400;        // RFC 1870 SIZE
  int64_t max_recipients = 100;               // RFC 5321 §4.5.3.1.8 requires ≥ 100
  int64_t max_connections = 1000;
  int64_t max_connections_per_ip = 50;
  int64_t max_errors = 10;
  int64_t command_timeout_seconds = 300;  // RFC 5321 §4.5.3.2.7 server timeout: 5 min
  int64_t data_timeout_seconds = 600;     // RFC 5321 §4.5.3.2.6 DATA block: 3 min client side
  int64_t min_data_rate = 1024;           // bytes/s averaged over DATA; slower is cut off
  int64_t data_rate_grace_seconds = 30;   // DATA time before min_data_rate is enforced
  int64_t greeting_pause_ms = 0;          // wait for early talkers before the 220 (0 = off)
};

// relaygate-policyd (issue 13): Postfix's SMTPD policy delegation protocol (SMTPD_POLICY_README)
// on loopback TCP and/or unix sockets, and the grant socket Dovecot's post-login program writes to.
// 10046: no well-known policy service uses it (postgrey 10023, amavis 10024-10027, cluebringer
// 10031, postfwd 10040, policyd-weight 12525, sqlgrey 2501, quota-status 12340, mtpolicyd 12345,
// Postfix's own example 9998) and /etc/services names nothing there.
inline constexpr uint16_t kDefaultPolicyPort = 10046;
// Paths under the unit's RuntimeDirectory=relaygate-policyd (systemd/relaygate-policyd.service).
inline constexpr const char* kDefaultPolicySocket = "/run/relaygate-policyd/policy.sock";
inline constexpr const char* kDefaultGrantSocket = "/run/relaygate-policyd/grant.sock";

struct PolicyListener {
  std::string address;  // TCP (loopback by default): address and port
  uint16_t port = 0;
  fs::path path;         // or a unix socket (address empty)
  unsigned mode = 0666;  // the socket file's mode: Postfix's smtpd runs as user postfix
  bool operator==(const PolicyListener&) const = default;
};

struct GrantSocket {
  fs::path path;                                         // "" = off
  std::vector<std::string> allowed_users = {"dovecot"};  // names or numeric uids, as written
  std::vector<uint32_t> allowed_uids;                    // resolved at load (getpwnam), when path is set
  unsigned mode = 0660;
  bool operator==(const GrantSocket&) const = default;
};

struct Policyd {
  std::vector<PolicyListener> listen;
  GrantSocket grant_socket;
  int64_t request_timeout_seconds = 10;  // a started request (or grant line) must complete
  // Between requests on a reused connection: above Postfix's smtpd_policy_service_max_idle
  // (300 s), so Postfix is the one that closes an idle connection.
  int64_t idle_timeout_seconds = 330;
  int64_t max_connections = 200;
};

// The one relay all non-local mail goes to (issue 5). No host: non-local RCPTs are refused with
// 550 5.7.1 and nothing is ever queued for relay. Timeouts: RFC 5321 §4.5.3.2 (client side).
struct Smarthost {
  std::string host;                       // DNS name or IP literal; "" = no smarthost
  uint16_t port = 25;                     // 465 when tls is "implicit" and no port is given
  TlsMode tls = TlsMode::Required;        // none | starttls (when offered) | required | implicit
  fs::path ca_file;                       // "" = the system CA store
  bool verify = true;                     // certificate chain and host name (RFC 6125)
  std::string username;                   // "" = no AUTH; else AUTH PLAIN or LOGIN (RFC 4954)
  fs::path password_file;                 // first line is the password; needed with username
  int64_t connect_timeout_seconds = 30;   // TCP connect and TLS handshake
  int64_t command_timeout_seconds = 300;  // §4.5.3.2.1-5: greeting, EHLO, MAIL, RCPT, DATA, data blocks
  int64_t data_timeout_seconds = 600;     // §4.5.3.2.6: the reply to the final "."
  bool configured() const { return !host.empty(); }
};

// The outbound queue's retry policy (issue 5): exponential backoff between first_retry and
// max_retry, bounce after max_lifetime, optional delay warning.
struct Queue {
  int64_t max_lifetime_seconds = 5 * 86400;   // then undeliverable recipients bounce (RFC 5321 §4.5.4.1)
  int64_t first_retry_seconds = 300;          // delay after the first failed attempt, doubled each time
  int64_t max_retry_seconds = 3600;           // cap of the retry delay
  int64_t delay_warning_seconds = 14400;      // "delayed" DSN to the sender after this (0 = never)
  int64_t max_connections = 4;                // parallel connections to the smarthost
  int64_t max_messages_per_connection = 100;  // then QUIT and reconnect
  int64_t scan_interval_seconds = 60;         // full rescan of the spool (changes are also watched)
};

// Started as root (by hand, without the unit): bind the ports, then become this user.
struct RunAs {
  std::string user = "relaygate";
  std::string group;        // empty: the user's primary group
  bool allow_root = false;  // explicitly keep running as uid 0 (never by default)
};

// database_timeout_ms: a few seconds by default; the bounds keep it above a scheduling hiccup
// and below the SMTP command timeouts a client waits (RFC 5321 §4.5.3.2: 5 minutes for RCPT).
inline constexpr int64_t kDefaultDatabaseTimeoutMs = 3000;
inline constexpr int64_t kMinDatabaseTimeoutMs = 100;
inline constexpr int64_t kMaxDatabaseTimeoutMs = 60000;

// "database" is a file path (SQLite, the embedded default) or a libpq connection URI with one of
// these schemes (PostgreSQL, shared by several nodes; issue 12). A password never goes in the
// JSON: libpq's passfile (~/.pgpass, PGPASSFILE or ?passfile=) holds it.
inline constexpr const char* kPostgresUriSchemes[] = {"postgresql://", "postgres://"};
bool is_postgres_uri(const std::string& s);

struct Config {
  fs::path file;             // the file loaded ("" for embedded defaults)
  std::string hostname;      // defaults to the system host name; also this node's name in grants
  fs::path database;         // SQLite file; empty when database_uri is set
  std::string database_uri;  // PostgreSQL connection URI; empty for SQLite
  // The database as messages name it: the SQLite path, or the URI.
  std::string database_name() const { return database_uri.empty() ? database.string() : database_uri; }
  // How long a session waits for the database (authdb::Client) before it answers a temporary
  // failure; also bounds the daemons' wait for another process's lock (issue 11).
  int64_t database_timeout_ms = kDefaultDatabaseTimeoutMs;
  fs::path status_file;
  fs::path maildir_root;
  fs::path spool_dir;
  std::vector<std::string> local_domains;
  Tls tls;
  Grants grants;
  Auth auth;
  Pop3d pop3d;
  Smtpd smtpd;
  Policyd policyd;
  Smarthost smarthost;
  Queue queue;
  RunAs run_as;
};

// Fills grant_socket.allowed_uids from allowed_users (getpwnam; numeric strings are uids) when
// the socket is on; an unknown name is a ConfigError naming the key. parse() calls it.
void resolve_allowed_users(GrantSocket& g, const std::string& file);

// The embedded defaults, with relative paths resolved against base_dir.
Config defaults(const fs::path& base_dir);

// Loads and validates a config file; relative paths resolve against the file's folder.
// Throws ConfigError on any problem.
Config load(const fs::path& file);

// Parses config text (name is used in messages only); exposed for tests.
Config parse(const std::string& text, const fs::path& name, const fs::path& base_dir);

// Loads `file`, or the embedded defaults relative to the working directory when empty.
Config load_or_defaults(const fs::path& file);

// The SASL mechanisms a session on `listener` offers and accepts, with or without TLS active.
std::vector<std::string> sasl_mechanisms(const Config& cfg, const Listener& listener, bool tls_active);

const char* to_string(TlsMode);
const char* to_string(SmtpMode);

}  // namespace rg::config
