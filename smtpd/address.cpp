// See address.h. Grammar (RFC 5321 §4.1.2): Path = "<" [ A-d-l ":" ] Mailbox ">";
// Mailbox = Local-part "@" ( Domain / address-literal ); Local-part = Dot-string / Quoted-string.
#include "smtpd/address.h"

#include <arpa/inet.h>
#include <strings.h>

#include <cctype>

#include "shared/ascii.h"

namespace rg::smtp {
namespace {

bool is_atext(unsigned char c) {
  // RFC 5322 §3.2.3 atext; 8-bit octets are refused (no SMTPUTF8).
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~': return true;
    default: return false;
  }
}

bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.' && prev == '.') return false;
    if (c != '.' && !is_atext(static_cast<unsigned char>(c))) return false;
    prev = c;
  }
  return true;
}

bool valid_domain(std::string_view d) {
  if (d.empty()) return false;
  size_t start = 0;
  while (start <= d.size()) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (unsigned char c : label)
      if (!std::isalnum(c) && c != '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// RFC 5321 §4.1.3: IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT of 0-255.
bool valid_ipv4_literal(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    size_t j = i;
    while (j < s.size() && j - i < 4 && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 3) return false;
    if (std::stoi(std::string(s.substr(i, j - i))) > 255) return false;
    ++parts;
    if (j == s.size()) return parts == 4;
    if (s[j] != '.' || parts == 4) return false;
    i = j + 1;
  }
  return false;
}

// "[" ( IPv4-address-literal / "IPv6:" IPv6-addr ) "]" (RFC 5321 §4.1.3). General-address-
// literals need a tag registered with IANA and none but IPv6 is, so any other form is invalid.
bool valid_literal(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string_view inner = lit.substr(1, lit.size() - 2);
  constexpr std::string_view kIpv6Tag = "IPv6:";
  if (inner.size() > kIpv6Tag.size() && strncasecmp(inner.data(), kIpv6Tag.data(), kIpv6Tag.size()) == 0) {
    const std::string addr(inner.substr(kIpv6Tag.size()));
    in6_addr a6{};
    return addr.find_first_not_of("0123456789abcdefABCDEF:.") == std::string::npos &&
           ::inet_pton(AF_INET6, addr.c_str(), &a6) == 1;
  }
  return valid_ipv4_literal(inner);
}

PathError syntax(std::string text) { return PathError{PathError::Kind::Syntax, std::move(text)}; }

}  // namespace

std::string Mailbox::text() const {
  std::string l = local;
  if (quoted || !valid_dot_string(local)) {
    l = "\"";
    for (char c : local) {
      if (c == '"' || c == '\\') l += '\\';
      l += c;
    }
    l += '"';
  }
  return l + "@" + domain;
}

ParseResult parse_path_arg(std::string_view arg, std::string_view prefix, bool allow_null) {
  ParseResult r;
  if (arg.size() < prefix.size() || !ascii::iequals(arg.substr(0, prefix.size()), prefix)) {
    r.error = syntax("Syntax: " + std::string(prefix) + "<address>");
    return r;
  }
  std::string_view rest = arg.substr(prefix.size());
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest.front() != '<') {
    r.error = syntax("Syntax: " + std::string(prefix) + "<address> (angle brackets required)");
    return r;
  }
  // Find the closing '>' outside a quoted-string.
  size_t i = 1;
  bool in_quotes = false;
  for (; i < rest.size(); ++i) {
    char c = rest[i];
    if (in_quotes && c == '\\') {
      ++i;
      continue;
    }
    if (c == '"')
      in_quotes = !in_quotes;
    else if (c == '>' && !in_quotes)
      break;
  }
  if (i >= rest.size()) {
    r.error = syntax("Unterminated address");
    return r;
  }
  std::string_view inner = rest.substr(1, i - 1);
  std::string_view params = rest.substr(i + 1);
  if (i + 1 > kMaxPath) {
    r.error = syntax("Path too long (RFC 5321 §4.5.3.1.3)");
    return r;
  }
  Path path;
  if (inner.empty()) {
    if (!allow_null) {
      r.error = syntax("Empty recipient address");
      return r;
    }
    path.null = true;
  } else {
    // Source route "@a,@b:" (RFC 5321 §4.1.2 A-d-l): syntax-checked, then ignored (Appendix C).
    if (inner.front() == '@') {
      size_t colon = inner.find(':');
      if (colon == std::string_view::npos) {
        r.error = syntax("Invalid source route");
        return r;
      }
      std::string_view route = inner.substr(0, colon);
      size_t pos = 0;
      while (pos < route.size()) {
        size_t comma = route.find(',', pos);
        std::string_view hop =
            route.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (hop.size() < 2 || hop.front() != '@' || !valid_domain(hop.substr(1))) {
          r.error = syntax("Invalid source route");
          return r;
        }
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
      }
      inner = inner.substr(colon + 1);
    }
    Mailbox mb;
    std::string_view domain_part;
    if (!inner.empty() && inner.front() == '"') {
      size_t j = 1;
      std::string local;
      bool closed = false;
      for (; j < inner.size(); ++j) {
        unsigned char c = static_cast<unsigned char>(inner[j]);
        if (c == '\\') {
          if (j + 1 >= inner.size()) break;
          unsigned char n = static_cast<unsigned char>(inner[++j]);
          if (n < 32 || n > 126) break;
          local += static_cast<char>(n);
          continue;
        }
        if (c == '"') {
          closed = true;
          break;
        }
        if (c < 32 || c > 126) break;  // qtextSMTP: printable US-ASCII only
        local += static_cast<char>(c);
      }
      if (!closed || j + 1 >= inner.size() || inner[j + 1] != '@') {
        r.error = syntax("Invalid quoted local part");
        return r;
      }
      mb.local = local;
      mb.quoted = true;
      domain_part = inner.substr(j + 2);
    } else {
      size_t at = inner.rfind('@');
      if (at == std::string_view::npos) {
        r.error = syntax("Address needs a domain (local@domain)");
        return r;
      }
      std::string_view local = inner.substr(0, at);
      if (!valid_dot_string(local)) {
        r.error = syntax("Invalid local part");  // also catches u@ext@local: '@' is not atext
        return r;
      }
      mb.local = std::string(local);
      domain_part = inner.substr(at + 1);
    }
    if (mb.local.size() > kMaxLocalPart) {
      r.error = PathError{PathError::Kind::LocalTooLong, "Local part longer than 64 octets (RFC 5321 §4.5.3.1.1)"};
      return r;
    }
    if (domain_part.size() > kMaxDomain) {
      r.error = PathError{PathError::Kind::DomainTooLong, "Domain longer than 255 octets (RFC 5321 §4.5.3.1.2)"};
      return r;
    }
    if (!domain_part.empty() && domain_part.front() == '[') {
      if (!valid_literal(domain_part)) {
        r.error = syntax("Invalid address literal");
        return r;
      }
      mb.literal = true;
      mb.domain = ascii::lower(domain_part);
    } else {
      std::string d = ascii::lower(domain_part);
      if (!d.empty() && d.back() == '.') d.pop_back();  // "bob@local." is "bob@local"
      if (!valid_domain(d)) {
        r.error = syntax("Invalid domain");
        return r;
      }
      mb.domain = d;
    }
    path.mailbox = std::move(mb);
  }
  // ESMTP parameters: SP-separated keyword[=value] (RFC 5321 §4.1.2 Mail-parameters).
  size_t p = 0;
  while (p < params.size()) {
    if (params[p] != ' ') {
      r.error = syntax("Garbage after the address");
      return r;
    }
    while (p < params.size() && params[p] == ' ') ++p;
    size_t end = params.find(' ', p);
    std::string_view kv = params.substr(p, end == std::string_view::npos ? std::string_view::npos : end - p);
    p = end == std::string_view::npos ? params.size() : end;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    std::string key = ascii::upper(kv.substr(0, eq));
    if (key.empty()) {
      r.error = syntax("Invalid parameter");
      return r;
    }
    for (unsigned char c : key)
      if (!std::isalnum(c) && c != '-') {
        r.error = syntax("Invalid parameter");
        return r;
      }
    path.params.emplace_back(key, eq == std::string_view::npos ? std::string() : std::string(kv.substr(eq + 1)));
  }
  r.path = std::move(path);
  return r;
}

std::string printable(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

MailParams parse_mail_params(const std::vector<std::pair<std::string, std::string>>& params, uint64_t max_size) {
  MailParams r;
  for (const auto& [key, value] : params) {
    if (key == "SIZE") {
      // RFC 1870 §6: a declared size over the limit is refused at MAIL.
      bool digits = !value.empty() && value.size() <= kMaxSizeDigits &&
                    value.find_first_not_of("0123456789") == std::string::npos;
      if (!digits) {
        r.refusal = ParamRefusal{501, "5.5.4", "Bad SIZE parameter", "syntax"};
        return r;
      }
      r.size = std::stoull(value);
      if (r.size > max_size) {
        r.refusal = ParamRefusal{552, "5.3.4", "Message size exceeds fixed limit", "declared-size-too-big"};
        return r;
      }
    } else if (key == "BODY") {
      std::string v = ascii::upper(value);
      if (v != "7BIT" && v != "8BITMIME") {
        r.refusal = ParamRefusal{501, "5.5.4", "Bad BODY parameter", "syntax"};
        return r;
      }
    } else if (key == "AUTH") {
      // RFC 4954 §5: accepted and not trusted (we never relay on its say-so).
    } else {
      r.refusal =
          ParamRefusal{555, "5.5.4", "Unsupported option: " + printable(key, kEchoedParameter), "unsupported-option"};
      return r;
    }
  }
  return r;
}

}  // namespace rg::smtp
