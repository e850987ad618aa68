// User-name and login rules shared by relaygatectl, pop3d and smtpd.
// A name is the Maildir folder name and the local part of the user's address, so it is
// restricted to characters that are safe as both (never '/', never '.' first, no controls).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg::authdb {

// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets; a longer name could not receive mail.
constexpr size_t kMaxUserNameOctets = 64;

// nullopt if `name` is a valid user name, else a message saying what is wrong.
std::optional<std::string> user_name_problem(std::string_view name);

// Lower-cased canonical form (names are case-insensitive).
std::string canonical_user_name(std::string_view name);

// Maps a login ("alice", "Alice", "alice@example.test" for a local domain) to the canonical
// user name, or nullopt when it cannot be one of ours.
std::optional<std::string> login_to_user(std::string_view login, const std::vector<std::string>& local_domains);

// nullopt if `password` is acceptable, else what is wrong (empty, too long, NUL/CR/LF).
std::optional<std::string> password_problem(std::string_view password);

}  // namespace rg::authdb
