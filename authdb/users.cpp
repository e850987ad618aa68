// See users.h.
#include "authdb/users.h"

#include "authdb/password.h"
#include "shared/ascii.h"

namespace rg::authdb {

std::optional<std::string> user_name_problem(std::string_view name) {
  if (name.empty()) return "the user name is empty";
  if (name.size() > kMaxUserNameOctets)
    return "the user name is longer than " + std::to_string(kMaxUserNameOctets) + " octets";
  if (name.front() == '.' || name.front() == '-') return "the user name must not start with '.' or '-'";
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return "the user name contains a control character";
    if (c >= 0x80) return "the user name must be ASCII";
    if (c == '/' || c == '\\') return "the user name contains a '/' or '\\'";
    if (c == ' ' || c == '@' || c == '"' || c == ':' || c == '%' || c == '!' || c == '<' || c == '>' || c == ',' ||
        c == ';' || c == '(' || c == ')' || c == '[' || c == ']')
      return std::string("the user name contains '") + static_cast<char>(c) + "'";
  }
  if (name.find("..") != std::string_view::npos || name.back() == '.')
    return "the user name has an empty dot-atom part";
  return std::nullopt;
}

std::string canonical_user_name(std::string_view name) { return ascii::lower(name); }

std::optional<std::string> login_to_user(std::string_view login, const std::vector<std::string>& local_domains) {
  std::string_view local = login;
  if (auto at = login.rfind('@'); at != std::string_view::npos) {
    std::string domain = canonical_user_name(login.substr(at + 1));
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    bool ours = false;
    for (const auto& d : local_domains) ours = ours || d == domain;
    if (!ours) return std::nullopt;
    local = login.substr(0, at);
  }
  if (user_name_problem(local)) return std::nullopt;
  return canonical_user_name(local);
}

std::optional<std::string> password_problem(std::string_view password) {
  if (password.empty()) return "the password is empty";
  if (password.size() > kMaxPasswordOctets)
    return "the password is longer than " + std::to_string(kMaxPasswordOctets) + " octets";
  for (char c : password)
    if (c == '\0' || c == '\r' || c == '\n') return "the password contains a NUL, CR or LF";
  return std::nullopt;
}

}  // namespace rg::authdb
