// See queue_dsn.h.
#include "smtpd/outbound/queue_dsn.h"

#include "shared/timefmt.h"

#include <ctime>

namespace rg::smtp::queue {
namespace {

constexpr size_t kMaxField = 900;          // keeps every generated line under 998 octets (RFC 5322 §2.1.1)
constexpr size_t kMaxAddressInLine = 300;  // an address on a line with other text

// Printable ASCII only, bounded: what a server or a sender gave us never breaks the structure.
std::string ascii(std::string_view s, size_t max = kMaxField) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

}  // namespace

std::string rfc5322_date(int64_t t) { return timefmt::rfc5322(t); }

std::string_view header_section(std::string_view message, size_t max) {
  size_t end = message.find("\r\n\r\n");
  size_t len = end == std::string_view::npos ? message.size() : end + 2;
  if (message.substr(0, 2) == "\r\n") len = 0;  // no headers at all
  if (len > max) {
    len = max;
    size_t last = message.substr(0, len).rfind("\r\n");
    len = last == std::string_view::npos ? 0 : last + 2;
  }
  return message.substr(0, len);
}

std::string render_dsn(const DsnInput& in) {
  const spool::Envelope& orig = *in.original;
  const bool failed = in.kind == DsnKind::Failed;
  const std::string boundary = in.id + "/" + ascii(in.reporting_mta, 200);
  const std::string host = ascii(in.reporting_mta, 200);
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + host + ">\r\n";
  m += "To: <" + ascii(orig.sender, 300) + ">\r\n";
  m += std::string("Subject: ") +
       (failed ? "Undelivered Mail Returned to Sender" : "Delayed Mail (still being retried)") + "\r\n";
  m += "Date: " + rfc5322_date(in.now) + "\r\n";
  m += "Message-ID: <" + in.id + "." + std::to_string(in.now) + "@" + host + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
  m += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at host " + host + ".\r\n\r\n";
  if (failed) {
    m += "Your message could not be delivered to one or more recipients.\r\n";
    m += "It is attached below (headers only). The errors were:\r\n\r\n";
  } else {
    m += "Your message could not be delivered yet to one or more recipients.\r\n";
    m += "It is still in the queue and delivery will be retried until " + rfc5322_date(in.retry_until) + ".\r\n";
    m += "You do not need to send it again. The latest errors were:\r\n\r\n";
  }
  for (size_t i : in.recipients) {
    const auto& r = orig.recipients.at(i);
    // Address and error share one line: both bounded so that it stays under 998 octets (a
    // 900-octet error after a long address did not; found by fuzz_dsn_headers).
    m += "<" + ascii(r.address, kMaxAddressInLine) +
         ">: " + ascii(r.last_error.empty() ? "no details" : r.last_error, kMaxField - kMaxAddressInLine - 4) + "\r\n";
  }
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + host + "\r\n";
  m += "X-Relaygate-Queue-ID: " + orig.id + "\r\n";
  m += "Arrival-Date: " + rfc5322_date(orig.created_at) + "\r\n";
  for (size_t i : in.recipients) {
    const auto& r = orig.recipients.at(i);
    m += "\r\n";
    m += "Final-Recipient: rfc822; " + ascii(r.address, 300) + "\r\n";
    m += std::string("Action: ") + (failed ? "failed" : "delayed") + "\r\n";
    std::string status = r.status.empty() ? (failed ? "5.0.0" : "4.0.0") : r.status;
    if (failed && status[0] == '2') status = "5.0.0";
    if (!failed) status[0] = '4';
    m += "Status: " + ascii(status, 16) + "\r\n";
    if (!r.diagnostic.empty()) {
      m += "Remote-MTA: dns; " + ascii(in.remote_mta, 255) + "\r\n";
      m += "Diagnostic-Code: smtp; " + ascii(r.diagnostic) + "\r\n";
    }
    if (r.last_attempt_at) m += "Last-Attempt-Date: " + rfc5322_date(r.last_attempt_at) + "\r\n";
    if (!failed) m += "Will-Retry-Until: " + rfc5322_date(in.retry_until) + "\r\n";
  }
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n";
  m += std::string(header_section(in.original_message));
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace rg::smtp::queue
