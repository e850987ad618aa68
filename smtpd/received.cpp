// See received.h. The exact text is what existing messages carry: tests and downstream
// filters read it, so it changes only on purpose.
#include "smtpd/received.h"

#include "shared/timefmt.h"
#include "smtpd/address.h"

namespace rg::smtp {

std::string protocol_name(bool esmtp, bool tls, bool authenticated) {
  std::string protocol = esmtp ? "ESMTP" : "SMTP";
  if (esmtp && tls) protocol += "S";
  if (esmtp && authenticated) protocol += "A";
  return protocol;
}

TraceHeaders trace_headers(const TraceInput& in, const std::string& sender) {
  const std::string protocol = protocol_name(in.esmtp, in.tls.has_value(), !in.auth_user.empty());
  std::string received = "Received: from " + (in.helo.empty() ? std::string("unknown") : in.helo) + " ([" +
                         in.client_ip + "])\r\n\tby " + in.hostname + " (relaygate) with " + protocol + " id " +
                         in.queue_id + "\r\n";
  if (in.tls) received += "\t(using " + *in.tls + ")\r\n";
  if (!in.auth_user.empty())
    received += "\t(authenticated as " + in.auth_user + " by " + in.auth_mech + ")\r\n";
  else if (in.relay_by.rfind("grant:", 0) == 0)
    received += "\t(POP-before-SMTP grant of " + in.relay_by.substr(6) + ")\r\n";
  // RFC 5322 §3.6.7: "; date-time" ends the field. After "for <rcpt>" it shares that line;
  // without one it is appended to the last line ("...;" then a folded date line, as Postfix
  // writes it) — a line of its own starting with ";" would not be a folded continuation.
  if (in.recipients.size() == 1) {
    received += "\tfor <" + printable(in.recipients[0]) + ">; " + timefmt::rfc5322(in.time) + "\r\n";
  } else {
    received.resize(received.size() - 2);  // the last line's CRLF
    received += ";\r\n\t" + timefmt::rfc5322(in.time) + "\r\n";
  }
  return {received, "Return-Path: <" + printable(sender) + ">\r\n"};
}

}  // namespace rg::smtp
