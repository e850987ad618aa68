// See queue_policy.h.
#include "smtpd/outbound/queue_policy.h"

#include <algorithm>

namespace rg::smtp::queue {

int64_t retry_delay(const Policy& p, int64_t attempts) {
  int64_t d = std::max<int64_t>(p.first_retry, 1);
  for (int64_t i = 1; i < attempts && d < p.max_retry; ++i) d *= 2;
  return std::min(d, std::max<int64_t>(p.max_retry, 1));
}

const char* to_string(Result r) {
  switch (r) {
    case Result::Sent: return "sent";
    case Result::Deferred: return "deferred";
    case Result::Bounced: return "bounced";
    case Result::Expired: return "expired";
  }
  return "?";
}

std::vector<Event> apply_attempt(spool::Envelope& env, const std::vector<Outcome>& outcomes, int64_t now,
                                 const Policy& p) {
  std::vector<Event> events;
  const bool expired = now - env.created_at >= p.max_lifetime;
  for (const auto& o : outcomes) {
    if (o.index >= env.recipients.size()) continue;
    auto& r = env.recipients[o.index];
    if (r.state != "pending") continue;
    r.last_attempt_at = now;
    r.status = o.reply.status();
    r.diagnostic = o.reply.local ? std::string() : o.reply.text();
    Event ev{o.index, Result::Deferred, o.reply};
    if (o.reply.positive() && !o.force_retry) {
      r.state = "delivered";
      r.last_error.clear();
      ev.result = Result::Sent;
    } else if (o.reply.permanent() && !o.force_retry) {
      r.state = "failed";
      r.last_error = o.reply.text();
      r.notified = env.sender.empty();
      ev.result = Result::Bounced;
    } else if (expired) {
      r.state = "failed";
      r.status = "4.4.7";  // RFC 3463: delivery time expired
      r.last_error = "delivery time expired; last error: " + o.reply.text();
      r.notified = env.sender.empty();
      ev.result = Result::Expired;
    } else {
      r.last_error = o.reply.text();
    }
    events.push_back(std::move(ev));
  }
  if (!events.empty()) {
    ++env.attempts;
    env.last_attempt_at = now;
  }
  if (!pending(env).empty()) env.next_attempt_at = now + retry_delay(p, std::max<int64_t>(env.attempts, 1));
  return events;
}

std::vector<size_t> unnotified_failures(const spool::Envelope& env) {
  std::vector<size_t> out;
  for (size_t i = 0; i < env.recipients.size(); ++i)
    if (env.recipients[i].state == "failed" && !env.recipients[i].notified) out.push_back(i);
  return out;
}

std::vector<size_t> pending(const spool::Envelope& env) {
  std::vector<size_t> out;
  for (size_t i = 0; i < env.recipients.size(); ++i)
    if (env.recipients[i].state == "pending") out.push_back(i);
  return out;
}

bool delay_warning_due(const spool::Envelope& env, int64_t now, const Policy& p) {
  return p.delay_warning > 0 && !env.sender.empty() && !env.warned && now - env.created_at >= p.delay_warning &&
         !pending(env).empty();
}

bool finished(const spool::Envelope& env) { return pending(env).empty() && unnotified_failures(env).empty(); }

}  // namespace rg::smtp::queue
