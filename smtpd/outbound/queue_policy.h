// The queue's state machine, pure (no I/O, no clock): how one delivery attempt changes an
// envelope, the retry schedule, and when DSNs are due. Recipient states:
//   pending --2xx--> delivered                       (terminal)
//   pending --5xx, or 4xx past max_lifetime--> failed, notified=false --DSN made--> notified
//   pending --4xx / no connection--> pending, next attempt after the backoff
// A null-sender message never gets a DSN (RFC 5321 §4.5.5, §6.1): its failures start notified.
// Backoff: first_retry · 2^(attempts-1), capped at max_retry (RFC 5321 §4.5.4.1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/spool.h"
#include "smtpd/outbound/smtp_client_wire.h"

namespace rg::smtp::queue {

struct Policy {
  int64_t first_retry = 300;
  int64_t max_retry = 3600;
  int64_t max_lifetime = 5 * 86400;
  int64_t delay_warning = 14400;  // 0 = never
  static Policy from(const config::Queue& q) {
    return {q.first_retry_seconds, q.max_retry_seconds, q.max_lifetime_seconds, q.delay_warning_seconds};
  }
};

// Seconds to wait after the attempts-th failed attempt (attempts >= 1).
int64_t retry_delay(const Policy& p, int64_t attempts);

// The result of one attempt for one recipient. `force_retry`: the reply did not come from a
// transaction about this message (no connection, TLS or AUTH refused), so even a 5xx only defers.
struct Outcome {
  size_t index = 0;  // into Envelope::recipients
  client::Reply reply;
  bool force_retry = false;
};

enum class Result { Sent, Deferred, Bounced, Expired };
const char* to_string(Result r);

// What happened to one recipient, for the log line.
struct Event {
  size_t index = 0;
  Result result = Result::Deferred;
  client::Reply reply;
};

// Applies the outcomes of one attempt at time `now` (see the file comment) and schedules the
// next attempt if any recipient is still pending.
std::vector<Event> apply_attempt(spool::Envelope& env, const std::vector<Outcome>& outcomes, int64_t now,
                                 const Policy& p);

// Failed recipients whose DSN is still to be made.
std::vector<size_t> unnotified_failures(const spool::Envelope& env);
std::vector<size_t> pending(const spool::Envelope& env);
// The "delayed" DSN is due: a real sender, not yet warned, old enough, something pending.
bool delay_warning_due(const spool::Envelope& env, int64_t now, const Policy& p);
// Nothing left to do: no recipient pending, every failure notified. The message can go.
bool finished(const spool::Envelope& env);

}  // namespace rg::smtp::queue
