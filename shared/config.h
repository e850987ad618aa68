// relaygate configuration: one strict JSON file parsed into typed, validated structs.
// Invariants: every key has a default (the embedded defaults below); an unknown key or a
// wrong type is a ConfigError naming the file and the key path; paths are absolute after load.
#pragma once

#include <cstdint>
#include <filesystem>
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
};

struct Tls {
  fs::path certificate;  // generated self-signed on first start when both files are missing
  fs::path private_key;
};

struct Grants {
  int64_t ttl_seconds = 1800;                 // POP-before-SMTP relay window
  int64_t status_interval_seconds = 60;       // purge + status rewrite period (DESIGN: ≤ 1 min)
};

struct Auth {
  bool allow_plaintext_without_tls = false;   // USER/PASS, PLAIN, LOGIN outside TLS
  bool digest_md5 = false;                    // RFC 6331 made it historic: off by default
  int64_t failure_delay_max_ms = 5000;        // cap of the escalating failed-login delay
};

struct Pop3d {
  std::vector<Listener> listen;
  int64_t idle_timeout_seconds = 600;         // RFC 1939 §3: at least 10 minutes
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
  int64_t command_timeout_seconds = 300;      // RFC 5321 §4.5.3.2.7 server timeout: 5 min
  int64_t data_timeout_seconds = 600;         // RFC 5321 §4.5.3.2.6 DATA block: 3 min client side
  int64_t min_data_rate = 1024;               // bytes/s averaged over DATA; slower is cut off
  int64_t data_rate_grace_seconds = 30;       // DATA time before min_data_rate is enforced
  int64_t greeting_pause_ms = 0;              // wait for early talkers before the 220 (0 = off)
};

struct Config {
  fs::path file;                   // the file loaded ("" for embedded defaults)
  std::string hostname;            // defaults to the system host name
  fs::path database;
  fs::path status_file;
  fs::path maildir_root;
  fs::path spool_dir;
  std::vector<std::string> local_domains;
  Tls tls;
  Grants grants;
  Auth auth;
  Pop3d pop3d;
  Smtpd smtpd;
};

// The embedded defaults, with relative paths resolved against base_dir.
Config defaults(const fs::path& base_dir);

// Loads and validates a config file; relative paths resolve against the file's folder.
// Throws ConfigError on any problem.
Config load(const fs::path& file);

// Parses config text (name is used in messages only); exposed for tests.
Config parse(const std::string& text, const fs::path& name, const fs::path& base_dir);

// Loads `file`, or the embedded defaults relative to the working directory when empty.
Config load_or_defaults(const fs::path& file);

const char* to_string(TlsMode);
const char* to_string(SmtpMode);

}  // namespace rg::config
