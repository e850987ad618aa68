// The user lists relaygatectl user import reads: a Dovecot passwd-file and /etc/shadow (with
// /etc/passwd for the uids). Pure parsers: text in, the credentials each user would get out;
// they touch no database, so the dry run and the real import see the same result, and a file
// with one bad line is refused before anything is written (Store::write_users).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace rg::authdb {

// A line that cannot be imported: "FILE:LINE: field FIELD: problem".
class ImportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ImportedUser {
  std::string name;  // canonical (users.h)
  int line = 0;
  std::string scheme;  // as the file named it ("SHA512-CRYPT", "PLAIN", "shadow $6$"), for the report
  // Exactly one of: a hash verify_password takes; a plaintext to hash on import ({PLAIN});
  // a CRAM-MD5 context for legacy_secret (shared/sasl/codec.h; the user then has no password
  // hash and can log in by CRAM-MD5 only).
  std::optional<std::string> hash;
  std::optional<std::string> plaintext;
  std::optional<std::string> cram_context;
};

struct SkippedUser {
  std::string name;
  int line = 0;
  std::string reason;  // "system account (uid 0)", "locked", "no password", "account expired", ...
};

struct ImportList {
  std::vector<ImportedUser> users;
  std::vector<SkippedUser> skipped;
};

// Limits: a passwd-file/shadow line longer than this is not one (Dovecot's own are < 1 KiB).
constexpr size_t kMaxImportLineOctets = 8192;

// Dovecot passwd-file (doc: "Passwd-file"): "user:password[:uid:gid:gecos:home:shell:extra]",
// password "{SCHEME}value" or "{SCHEME.B64}"/"{SCHEME.HEX}" (case-insensitive, as Dovecot
// prints upper case), no scheme = CRYPT; blank lines and '#' comments ignored. "user@domain"
// is accepted for a domain in `local_domains`. Unsupported scheme, malformed value, a
// duplicate user: ImportError.
ImportList parse_dovecot_passwd(std::string_view text, const std::string& file,
                                const std::vector<std::string>& local_domains);

// shadow(5) with the uids of passwd(5): accounts whose uid is outside [uid_min, uid_max]
// (login.defs UID_MIN/UID_MAX; this skips root, daemons and nobody) or absent from passwd are
// skipped as system accounts, as are locked ('!', '*'), empty, expired (field 8 <= today) and
// expired-password (lastchg 0, or lastchg + max + inactive < today) entries. `today` is days
// since 1970-01-01.
struct UidRange {
  int64_t min = 1000;
  int64_t max = 60000;
};
ImportList parse_shadow(std::string_view shadow, const std::string& shadow_file, std::string_view passwd,
                        const std::string& passwd_file, UidRange uids, int64_t today);

// UID_MIN/UID_MAX of a login.defs text (defaults for absent keys).
UidRange parse_login_defs(std::string_view text);

}  // namespace rg::authdb
