// Password hashing for PLAIN/LOGIN/USER-PASS. New hashes are yescrypt (`$y$`) through libcrypt:
// it is Debian 12's /etc/shadow default, memory-hard (unlike PBKDF2), and the same crypt(3)
// call also verifies imported `$6$`, `$5$`, `$2b$`, `$y$`, `$gy$` hashes from Dovecot or shadow.
// Verification is slow by design: daemons run it on their worker pool, never the I/O thread.
#pragma once

#include <string>
#include <string_view>

namespace rg::authdb {

constexpr size_t kMaxPasswordOctets = 1024;

// A fresh yescrypt hash of `password` with a random salt. Throws std::runtime_error on failure.
std::string hash_password(std::string_view password);

// Constant-time check of password against hash; false for malformed hashes. Besides crypt(3)
// strings, two forms imported from Dovecot (relaygatectl user import) that libcrypt cannot check:
// "$argon2id$..."/"$argon2i$..." (libargon2's encoded form, Dovecot's {ARGON2ID}/{ARGON2I}) and
// "{SSHA512}"/"{SSHA256}"/"{SSHA}" + base64(digest || salt) (salted SHA-2/SHA-1, as Dovecot).
bool verify_password(std::string_view hash, std::string_view password);

// Burns the same time as verifying a real yescrypt hash, then returns false: used for
// unknown users so timing does not reveal which names exist.
bool verify_dummy(std::string_view password);

// True if `hash` is a form verify_password can check: a crypt(3) string this libcrypt knows,
// or one of the imported forms above (for --hash-stdin and user import).
bool is_supported_hash(std::string_view hash);

}  // namespace rg::authdb
