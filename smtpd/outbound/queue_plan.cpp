// See queue_plan.h.
#include "smtpd/outbound/queue_plan.h"

#include <algorithm>

#include "smtpd/outbound/queue_dsn.h"

namespace rg::smtp::queue {

int64_t next_look(const spool::Envelope& env) {
  const bool other_work = pending(env).empty() || !unnotified_failures(env).empty();
  return other_work ? 0 : env.next_attempt_at;
}

Dispatch plan_dispatch(const std::map<std::string, Slot>& slots, const DispatchInput& in) {
  Dispatch d;
  d.wake_at = in.next_scan;
  for (const auto& [id, slot] : slots) {
    if (slot.busy || slot.held) continue;
    if (slot.next <= in.now)
      d.due.push_back(id);
    else
      d.wake_at = std::min(d.wake_at, slot.next);
  }
  const size_t ready = in.waiting + d.due.size();
  const size_t busy = in.connections - std::min(in.idle, in.connections);
  if (ready > busy && in.connections < in.max_connections)
    d.open = std::min(ready - busy, in.max_connections - in.connections);
  return d;
}

AttemptPlan plan_after_attempt(const spool::Envelope& env, const std::string& message, const AttemptInput& in) {
  AttemptPlan out;
  Plan& p = out.plan;
  p.id = env.id;
  p.recorded = env;
  spool::Envelope fin = env;

  auto make = [&](DsnKind kind, const std::vector<size_t>& recipients) {
    ++fin.dsn_count;
    DsnInput dsn;
    dsn.kind = kind;
    dsn.id = spool::dsn_id(fin.id, fin.dsn_count);
    dsn.reporting_mta = in.reporting_mta;
    dsn.remote_mta = in.remote_mta;
    dsn.original = &fin;
    dsn.recipients = recipients;
    dsn.original_message = message;
    dsn.now = in.now;
    dsn.retry_until = fin.created_at + in.policy.max_lifetime;
    DsnOut d;
    d.id = dsn.id;
    std::string text = render_dsn(dsn);
    if (in.target == DsnTarget::Local) {
      d.local_user = in.local_user;
      d.message = "Return-Path: <>\r\n" + text;
    } else {
      d.message = std::move(text);
      d.env.id = d.id;
      d.env.sender = "";  // RFC 5321 §6.1: a DSN has the null reverse-path
      d.env.recipients.push_back(spool::Recipient{fin.sender});
      d.env.created_at = in.now;
      d.env.next_attempt_at = in.now;
      d.env.size = d.message.size();
      d.env.auth = "dsn";
      d.env.dsn_of = fin.id;
      d.env.dsn_seq = fin.dsn_count;
    }
    p.dsns.push_back(std::move(d));
  };

  const std::vector<size_t> failed = unnotified_failures(fin);
  if (!failed.empty() && in.target != DsnTarget::Retry) {
    if (in.target == DsnTarget::Drop)
      out.dropped = true;
    else
      make(DsnKind::Failed, failed);
    for (size_t i : failed) fin.recipients[i].notified = true;
  }
  if (delay_warning_due(fin, in.now, in.policy) && in.target != DsnTarget::Retry) {
    if (in.target != DsnTarget::Drop) make(DsnKind::Delayed, pending(fin));
    fin.warned = true;
  }
  p.final = std::move(fin);
  p.remove = finished(p.final);
  p.write_recorded = !p.dsns.empty();
  return out;
}

}  // namespace rg::smtp::queue
