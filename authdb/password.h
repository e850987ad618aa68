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

// Constant-time comparison of crypt(password, hash) with hash; false for malformed hashes.
bool verify_password(std::string_view hash, std::string_view password);

// Burns the same time as verifying a real yescrypt hash, then returns false: used for
// unknown users so timing does not reveal which names exist.
bool verify_dummy(std::string_view password);

// True if `hash` is a crypt(3) string this libcrypt can verify (for --hash-stdin).
bool is_supported_hash(std::string_view hash);

}  // namespace rg::authdb
