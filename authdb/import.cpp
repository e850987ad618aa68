// Parsers of relaygatectl user import (import.h).
#include "authdb/import.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <variant>

#include "authdb/password.h"
#include "authdb/users.h"
#include "shared/sasl/codec.h"

namespace rg::authdb {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
  return out;
}

std::vector<std::string_view> split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t at = line.find(sep);
    out.push_back(line.substr(0, at));
    if (at == std::string_view::npos) return out;
    line.remove_prefix(at + 1);
  }
}

// Calls f(line_number, line) for each line; CR before LF tolerated, over-long lines refused.
template <class F>
void each_line(std::string_view text, const std::string& file, F&& f) {
  int number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxImportLineOctets)
      throw ImportError(file + ":" + std::to_string(number) + ": line longer than " +
                        std::to_string(kMaxImportLineOctets) + " octets");
    f(number, line);
  }
}

std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(hex.data() + i, hex.data() + i + 2, v, 16);
    if (ec != std::errc() || p != hex.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<char>(v));
  }
  return out;
}

std::optional<int64_t> number(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

enum class Encoding { Default, Base64, Hex };

// The schemes the issue names (Dovecot's doc "Password Schemes"), by how relaygate stores them.
enum class Kind { Crypt, Argon2, Salted, Plain, CramMd5 };
const std::map<std::string, Kind>& schemes() {
  static const std::map<std::string, Kind> m = {
      {"CRYPT", Kind::Crypt},        {"MD5-CRYPT", Kind::Crypt},  {"SHA256-CRYPT", Kind::Crypt},
      {"SHA512-CRYPT", Kind::Crypt}, {"BLF-CRYPT", Kind::Crypt},  {"ARGON2ID", Kind::Argon2},
      {"ARGON2I", Kind::Argon2},     {"SSHA512", Kind::Salted},   {"SSHA256", Kind::Salted},
      {"SSHA", Kind::Salted},        {"PLAIN", Kind::Plain},      {"CLEAR", Kind::Plain},
      {"CLEARTEXT", Kind::Plain},    {"CRAM-MD5", Kind::CramMd5},
  };
  return m;
}

// The user's credentials from one password field, or a message saying what is wrong with it.
std::variant<ImportedUser, std::string> credentials(std::string_view field) {
  ImportedUser u;
  std::string scheme = "CRYPT";
  Encoding enc = Encoding::Default;
  std::string_view value = field;
  if (field.starts_with("{")) {
    size_t close = field.find('}');
    if (close == std::string_view::npos) return std::string("no '}' after the scheme");
    scheme = upper(field.substr(1, close - 1));
    value = field.substr(close + 1);
    if (scheme.ends_with(".B64") || scheme.ends_with(".BASE64") || scheme.ends_with(".HEX")) {
      enc = scheme.ends_with(".HEX") ? Encoding::Hex : Encoding::Base64;
      scheme.erase(scheme.rfind('.'));
    }
  }
  u.scheme = scheme;
  auto it = schemes().find(scheme);
  if (it == schemes().end())
    return "scheme {" + scheme +
           "} is not supported (supported: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, "
           "MD5-CRYPT, CRYPT, ARGON2ID, ARGON2I, SSHA512, SSHA256, SSHA, PLAIN, CRAM-MD5)";
  auto decoded = [&](Encoding dflt) -> std::optional<std::string> {
    Encoding e = enc == Encoding::Default ? dflt : enc;
    if (e == Encoding::Default) return std::string(value);
    return e == Encoding::Hex ? hex_decode(value) : sasl::base64_decode(value);
  };
  switch (it->second) {
    case Kind::Crypt:
    case Kind::Argon2:
      if (enc != Encoding::Default) return "{" + scheme + "} takes no encoding suffix";
      if (!is_supported_hash(value)) return "not a {" + scheme + "} hash this system can verify";
      u.hash = std::string(value);
      break;
    case Kind::Salted: {
      auto raw = decoded(Encoding::Base64);
      if (!raw) return "{" + scheme + "} value does not decode";
      std::string hash = "{" + scheme + "}" + sasl::base64_encode(*raw);
      if (!is_supported_hash(hash)) return "not a well-formed {" + scheme + "} value";
      u.hash = std::move(hash);
      break;
    }
    case Kind::Plain: {
      auto pw = decoded(Encoding::Default);
      if (!pw) return "{" + scheme + "} value does not decode";
      if (auto problem = password_problem(*pw)) return "the password is not acceptable: " + *problem;
      u.plaintext = std::move(*pw);
      break;
    }
    case Kind::CramMd5: {
      auto raw = decoded(Encoding::Hex);
      if (!raw || raw->size() != sasl::kCramMd5ContextOctets) return "not a {CRAM-MD5} context (32 octets)";
      u.cram_context = std::string(sasl::kCramMd5ContextPrefix) + sasl::hex_lower(*raw);
      break;
    }
  }
  return u;
}

std::string where(const std::string& file, int line) { return file + ":" + std::to_string(line) + ": "; }

}  // namespace

ImportList parse_dovecot_passwd(std::string_view text, const std::string& file,
                                const std::vector<std::string>& local_domains) {
  ImportList out;
  std::set<std::string> seen;
  each_line(text, file, [&](int n, std::string_view line) {
    if (line.find_first_not_of(" \t") == std::string_view::npos || line.front() == '#') return;
    auto fields = split(line, ':');
    if (fields.size() < 2) throw ImportError(where(file, n) + "field password: missing (expected user:{SCHEME}value)");
    auto name = login_to_user(fields[0], local_domains);
    if (!name) {
      std::string why =
          fields[0].find('@') != std::string_view::npos ? "its domain is not a local domain" : "not a valid user name";
      if (auto problem = user_name_problem(fields[0]); problem && fields[0].find('@') == std::string_view::npos)
        why = *problem;
      throw ImportError(where(file, n) + "field user: '" + std::string(fields[0]) + "': " + why);
    }
    if (!seen.insert(*name).second) throw ImportError(where(file, n) + "field user: " + *name + " appears twice");
    if (fields[1].empty()) {
      out.skipped.push_back({*name, n, "no password"});
      return;
    }
    auto c = credentials(fields[1]);
    if (auto* problem = std::get_if<std::string>(&c))
      throw ImportError(where(file, n) + "field password of " + *name + ": " + *problem);
    auto u = std::get<ImportedUser>(std::move(c));
    u.name = *name;
    u.line = n;
    out.users.push_back(std::move(u));
  });
  return out;
}

ImportList parse_shadow(std::string_view shadow, const std::string& shadow_file, std::string_view passwd,
                        const std::string& passwd_file, UidRange uids, int64_t today) {
  std::map<std::string, int64_t> uid_of;
  each_line(passwd, passwd_file, [&](int n, std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    auto f = split(line, ':');
    auto uid = f.size() >= 3 ? number(f[2]) : std::nullopt;
    if (!uid) throw ImportError(where(passwd_file, n) + "field uid: missing or not a number");
    uid_of.emplace(std::string(f[0]), *uid);
  });
  ImportList out;
  std::set<std::string> seen;
  each_line(shadow, shadow_file, [&](int n, std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    auto f = split(line, ':');
    // shadow(5): name:password:lastchg:min:max:warn:inactive:expire:reserved
    if (f.size() != 9)
      throw ImportError(where(shadow_file, n) + "expected 9 fields, found " + std::to_string(f.size()));
    std::string name(f[0]);
    auto skip = [&](std::string reason) { out.skipped.push_back({name, n, std::move(reason)}); };
    auto uid = uid_of.find(name);
    if (uid == uid_of.end()) return skip("system account (not in " + passwd_file + ")");
    if (uid->second < uids.min || uid->second > uids.max)
      return skip("system account (uid " + std::to_string(uid->second) + ")");
    if (auto problem = user_name_problem(name)) return skip("name not usable: " + *problem);
    name = canonical_user_name(name);
    if (!seen.insert(name).second) throw ImportError(where(shadow_file, n) + "field name: " + name + " appears twice");
    const std::string_view pw = f[1];
    if (pw.empty()) return skip("no password");
    if (pw.front() == '!' || pw.front() == '*') return skip("locked");
    auto day = [&](int i, const char* field) -> std::optional<int64_t> {
      if (f[i].empty()) return std::nullopt;
      auto v = number(f[i]);
      if (!v) throw ImportError(where(shadow_file, n) + "field " + field + ": not a number");
      return v;
    };
    auto lastchg = day(2, "lastchg"), max = day(4, "max"), inactive = day(6, "inactive"), expire = day(7, "expire");
    if (expire && *expire <= today) return skip("account expired");
    if (lastchg && *lastchg == 0) return skip("password must be changed first (lastchg 0)");
    if (lastchg && max && *lastchg + *max + inactive.value_or(0) < today) return skip("password expired");
    if (!is_supported_hash(pw))
      throw ImportError(where(shadow_file, n) + "field password of " + name +
                        ": not a crypt(3) hash this system can verify");
    ImportedUser u;
    u.name = name;
    u.line = n;
    u.scheme = "shadow " + std::string(pw.substr(0, pw.find('$', 1) + 1));
    u.hash = std::string(pw);
    out.users.push_back(std::move(u));
  });
  return out;
}

UidRange parse_login_defs(std::string_view text) {
  UidRange r;
  each_line(text, "login.defs", [&](int, std::string_view line) {
    auto f = split(line, ' ');
    std::vector<std::string_view> words;
    for (auto w : f)
      for (auto t : split(w, '\t'))
        if (!t.empty()) words.push_back(t);
    if (words.size() < 2) return;
    auto v = number(words[1]);
    if (!v) return;
    if (words[0] == "UID_MIN") r.min = *v;
    if (words[0] == "UID_MAX") r.max = *v;
  });
  return r;
}

}  // namespace rg::authdb
