// A small bounded cache of positive user lookups, for smtpd's RCPT to local users only: mail to
// a known user keeps flowing while the database is slow or locked (issue 11). Single-threaded
// (the I/O thread). Never used by AUTH or logins: a changed password or a disabled user must
// take effect at the next login.
// Only positive answers are cached, never "no such user": `relaygatectl user add` followed by
// a mail to the new user must not get 550 5.1.1 from a stale negative entry (a hard bounce the
// sender cannot retry), while a stale positive entry costs at most kTtl of accepting mail for a
// user just deleted or disabled (delivery then finds no Maildir user or files it as before).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

namespace rg::authdb {

class UserCache {
 public:
  static constexpr std::size_t kEntries = 1024;    // bound on memory: names are short
  static constexpr std::chrono::seconds kTtl{60};  // how long a deletion may go unseen by RCPT
  using Clock = std::chrono::steady_clock;

  // The canonical name of `name`'s user if it was found (enabled) within kTtl.
  std::optional<std::string> find(const std::string& name, Clock::time_point now = Clock::now()) {
    auto it = map_.find(name);
    if (it == map_.end()) return std::nullopt;
    if (now >= it->second.expires) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second.user;
  }
  // Records a positive lookup (an enabled user). When full, expired entries go first, then
  // any one entry: the bound holds whatever the traffic.
  void put(const std::string& name, const std::string& user, Clock::time_point now = Clock::now()) {
    if (map_.size() >= kEntries && !map_.count(name)) {
      std::erase_if(map_, [&](const auto& kv) { return now >= kv.second.expires; });
      if (map_.size() >= kEntries) map_.erase(map_.begin());
    }
    map_[name] = Entry{user, now + kTtl};
  }
  void forget(const std::string& name) { map_.erase(name); }  // the database said "no such user"
  std::size_t size() const { return map_.size(); }

 private:
  struct Entry {
    std::string user;
    Clock::time_point expires;
  };
  std::unordered_map<std::string, Entry> map_;
};

}  // namespace rg::authdb
