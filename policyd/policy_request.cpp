// The policy protocol's reader and decision table (see policy_request.h).
#include "policyd/policy_request.h"

#include "shared/ip.h"

namespace rg::policy {

size_t RequestReader::feed(std::string_view in) {
  size_t used = 0;
  while (used < in.size() && state_ == State::Reading) {
    const size_t lf = in.find('\n', used);
    const size_t end = lf == std::string_view::npos ? in.size() : lf + 1;
    const std::string_view chunk = in.substr(used, end - used);
    octets_ += chunk.size();
    used = end;
    if (octets_ > kMaxRequestOctets) {
      bad("request-too-long");
      break;
    }
    if (partial_.size() + chunk.size() > kMaxLineOctets) {
      bad("line-too-long");
      break;
    }
    partial_.append(chunk);
    if (lf == std::string_view::npos) break;
    std::string l = std::move(partial_);
    partial_.clear();
    l.pop_back();                                      // the LF
    if (!l.empty() && l.back() == '\r') l.pop_back();  // tolerated; Postfix sends bare LF
    line(l);
  }
  return used;
}

void RequestReader::line(std::string_view l) {
  if (l.empty()) {
    // An empty line before any attribute is no request (SMTPD_POLICY_README: "terminated by an
    // empty line"); ignore it rather than answer a request nobody asked.
    if (req_.attrs.empty()) {
      octets_ = 0;
      return;
    }
    state_ = State::Complete;
    return;
  }
  const size_t eq = l.find('=');
  if (eq == std::string_view::npos || eq == 0) return bad("malformed-line");
  if (req_.attrs.size() >= kMaxAttributes && !req_.attrs.count(std::string(l.substr(0, eq))))
    return bad("too-many-attributes");
  req_.attrs[std::string(l.substr(0, eq))] = std::string(l.substr(eq + 1));
}

void RequestReader::bad(const char* why) {
  state_ = State::Bad;
  error_ = why;
}

Request RequestReader::take() {
  Request r = std::move(req_);
  req_ = {};
  partial_.clear();
  octets_ = 0;
  state_ = State::Reading;
  return r;
}

Decision bad_request() { return {"DUNNO", "bad-request", ""}; }

std::optional<Decision> precheck(const Request& r, std::string& ip) {
  // "request=smtpd_access_policy" is the only request type Postfix defines; anything else is
  // not ours to judge.
  if (r.get("request") != "smtpd_access_policy") return Decision{"DUNNO", "not-smtpd-request", ""};
  // An SASL-authenticated client is Postfix's business (permit_sasl_authenticated).
  if (!r.get("sasl_username").empty()) return Decision{"DUNNO", "sasl", ""};
  const auto canonical = canonical_ip(r.get("client_address"));
  if (!canonical) return Decision{"DUNNO", "bad-address", ""};
  ip = *canonical;
  return std::nullopt;
}

Decision decide(const Lookup& lookup, const std::string& sender) {
  // Hook for issue 14 (grants.require_sender_match): compare `sender` with lookup.grant->user
  // here and answer DUNNO (reason=sender-mismatch) when it is not theirs.
  (void)sender;
  if (lookup.failed) return {kDatabaseDefer, "database-error", ""};
  if (lookup.grant) return {"OK", "grant", lookup.grant->user};
  return {"DUNNO", "no-grant", ""};
}

std::string reply(const Decision& d) { return "action=" + d.action + "\n\n"; }

}  // namespace rg::policy
