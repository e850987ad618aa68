// Postfix's SMTPD policy delegation protocol (SMTPD_POLICY_README, "Protocol description"), the
// pure half: an incremental reader of `name=value` lines ending with an empty line, and the
// decision for one request from the grant lookup's result. No I/O, no clock: table-tested.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "authdb/store.h"

namespace rg::policy {

// One line, name=value plus LF. Postfix's own line_length_limit default is 2048, and no
// attribute it sends comes near it: addresses are at most 254 octets (RFC 5321 §4.5.3.1.3),
// host names 255, ccert_subject/ccert_issuer a few hundred; 2048 leaves room and bounds memory.
inline constexpr size_t kMaxLineOctets = 2048;
// Postfix 3.7 sends about 35 attributes per request; 100 leaves room for future versions.
inline constexpr size_t kMaxAttributes = 100;
// A whole request: a real one is 1-2 KB; 16 KiB is 8 maximal lines, far above that.
inline constexpr size_t kMaxRequestOctets = 16384;

struct Request {
  std::unordered_map<std::string, std::string> attrs;  // the last value of a repeated name wins
  std::string get(const std::string& name) const {
    const auto it = attrs.find(name);
    return it == attrs.end() ? std::string() : it->second;
  }
};

// Feeds bytes as they arrive; a request is complete at its empty line. After Bad the stream is
// out of step (where the next request starts is unknown): the caller answers and closes.
class RequestReader {
 public:
  enum class State { Reading, Complete, Bad };
  // Consumes bytes of `in` up to and including the empty line that ends a request (returns how
  // many were consumed: the rest belongs to the next request, Postfix may pipeline nothing, but a
  // test or another client might), or all of them while Reading.
  size_t feed(std::string_view in);
  State state() const { return state_; }
  // True while nothing of the current request has arrived (the idle timeout applies, not the
  // request timeout).
  bool empty() const { return octets_ == 0; }
  const std::string& error() const { return error_; }  // why Bad: "line-too-long" ...
  // After Complete: takes the request and starts over.
  Request take();

 private:
  void line(std::string_view l);
  void bad(const char* why);
  State state_ = State::Reading;
  std::string partial_;
  size_t octets_ = 0;
  Request req_;
  std::string error_;
};

// What to answer and why (the log's reason=): grant, no-grant, sasl, not-smtpd-request,
// bad-address, database-error, bad-request.
struct Decision {
  std::string action;  // the reply's value, e.g. "OK", "DUNNO", "DEFER_IF_REJECT 4.3.0 ..."
  std::string reason;
  std::string user;  // the grant's user, for the log
};

// The answer to a request the reader could not take (framing lost, limit passed): DUNNO, so
// Postfix goes on with its next restriction (reject_unauth_destination) exactly as if we had
// said nothing — never OK, and never a deferral a broken client could provoke for everyone.
// The connection is then closed (Postfix reconnects for its next request).
Decision bad_request();

inline constexpr const char* kDatabaseDefer =
    "DEFER_IF_REJECT 4.3.0 Service unavailable: relay grant database not answering";

// First step: the requests that need no lookup. Returns their decision, or nullopt with `ip`
// set to the canonical client address (shared/ip.h, as grants are stored: IPv6 without brackets
// as Postfix sends it, ::ffff:a.b.c.d as a.b.c.d) whose grant must be looked up.
std::optional<Decision> precheck(const Request& r, std::string& ip);

// The lookup's outcome, for decide().
struct Lookup {
  bool failed = false;  // authdb::Error (Unavailable, Timeout...): the database did not answer
  std::optional<authdb::Grant> grant;
};

// Second step, with the grant of precheck's ip. `sender` is the request's envelope sender:
// issue 14 (grants.require_sender_match) will demand here that it belongs to grant->user; today
// any live grant is enough.
Decision decide(const Lookup& lookup, const std::string& sender);

// The reply on the wire: "action=...\n\n".
std::string reply(const Decision& d);

}  // namespace rg::policy
