// The trace headers smtpd prepends to every accepted message (RFC 5321 §4.4): the Received:
// line with the RFC 3848 protocol name, and the Return-Path: local delivery adds. A pure
// function of the session's facts, so each protocol-name case is tested byte for byte
// (tests/unit/smtp_received_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rg::smtp {

struct TraceInput {
  std::string helo;                    // as the client gave it (already printable); empty: "unknown"
  std::string client_ip;
  std::string hostname;                // this gateway's name (cfg.hostname)
  bool esmtp = false;                  // EHLO rather than HELO
  std::optional<std::string> tls;      // the TLS description, none on a plaintext session
  std::string auth_user, auth_mech;    // SMTP AUTH identity and mechanism, empty if none
  std::string relay_by;                // "grant:u" adds the POP-before-SMTP comment
  std::vector<std::string> recipients; // mailbox texts; named in "for <...>" only when exactly one
  std::string queue_id;
  int64_t time = 0;                    // unix seconds
};

struct TraceHeaders {
  std::string received;     // "Received: ...\r\n", folded lines included
  std::string return_path;  // "Return-Path: <sender>\r\n"
};

// RFC 3848 §2: SMTP, ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both); HELO is always "SMTP".
std::string protocol_name(bool esmtp, bool tls, bool authenticated);

// `sender`: the reverse-path's mailbox text, empty for the null path "<>".
TraceHeaders trace_headers(const TraceInput& in, const std::string& sender);

}  // namespace rg::smtp
