// smtpd/received: the Received: and Return-Path: trace headers byte for byte, one row per
// RFC 3848 protocol name (SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA), the POP-before-SMTP comment,
// "for <rcpt>" only with exactly one recipient, and the RFC 5322 date.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/timefmt.h"
#include "smtpd/received.h"

namespace {

using rg::smtp::trace_headers;
using rg::smtp::TraceInput;

constexpr int64_t kTime = 1795746874;  // Fri, 27 Nov 2026 02:34:34 +0000

TraceInput base() {
  TraceInput in;
  in.helo = "client.example";
  in.client_ip = "192.0.2.7";
  in.hostname = "mx.example.org";
  in.queue_id = "Q1";
  in.time = kTime;
  in.recipients = {"bob@example.net"};
  return in;
}

struct Row {
  const char* name;
  bool esmtp;
  bool tls;
  const char* auth_user;
  const char* relay_by;
  std::vector<std::string> rcpts;
  const char* expected;
};

const Row kRows[] = {
    {"helo",
     false,
     false,
     "",
     "",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with SMTP id Q1\r\n"
     "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    // HELO stays "SMTP" even with TLS and AUTH (RFC 3848 names only ESMTP variants).
    {"helo-tls-auth",
     false,
     true,
     "alice",
     "",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with SMTP id Q1\r\n"
     "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n\t(authenticated as alice by PLAIN)\r\n"
     "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"esmtp",
     true,
     false,
     "",
     "",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTP id Q1\r\n"
     "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"esmtps",
     true,
     true,
     "",
     "",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTPS id Q1\r\n"
     "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"esmtpa",
     true,
     false,
     "alice",
     "sasl:alice",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTPA id Q1\r\n"
     "\t(authenticated as alice by PLAIN)\r\n\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"esmtpsa",
     true,
     true,
     "alice",
     "sasl:alice",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTPSA id Q1\r\n"
     "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n\t(authenticated as alice by PLAIN)\r\n"
     "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"grant",
     true,
     false,
     "",
     "grant:carol",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTP id Q1\r\n"
     "\t(POP-before-SMTP grant of carol)\r\n\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"trusted",
     true,
     false,
     "",
     "trusted",
     {"bob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTP id Q1\r\n"
     "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
    // Two recipients: none is named (RFC 5321 §7.2, no envelope disclosure).
    {"two-rcpts",
     true,
     false,
     "",
     "",
     {"bob@example.net", "eve@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTP id Q1;\r\n"
     "\tFri, 27 Nov 2026 02:34:34 +0000\r\n"},
    // Two recipients after a comment line: the ";" ends that line.
    {"two-rcpts-tls",
     true,
     true,
     "",
     "",
     {"bob@example.net", "eve@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTPS id Q1\r\n"
     "\t(using TLSv1.3 TLS_AES_256_GCM_SHA384);\r\n\tFri, 27 Nov 2026 02:34:34 +0000\r\n"},
    {"rcpt-unprintable",
     true,
     false,
     "",
     "",
     {"b\x01ob@example.net"},
     "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with ESMTP id Q1\r\n"
     "\tfor <b?ob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n"},
};

TEST(SmtpReceived, EachProtocolName) {
  for (const auto& row : kRows) {
    TraceInput in = base();
    in.esmtp = row.esmtp;
    if (row.tls) in.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
    in.auth_user = row.auth_user;
    if (!in.auth_user.empty()) in.auth_mech = "PLAIN";
    in.relay_by = row.relay_by;
    in.recipients = row.rcpts;
    const std::string got = trace_headers(in, "alice@example.org").received;
    EXPECT_EQ(got, row.expected) << row.name;
    // RFC 5322 §2.2.3: every line after the first is a folded continuation (starts with WSP).
    for (size_t at = got.find("\r\n"); at + 2 < got.size(); at = got.find("\r\n", at + 2))
      EXPECT_EQ(got[at + 2], '\t') << row.name << " at " << at;
  }
}

TEST(SmtpReceived, UnknownHelo) {
  TraceInput in = base();
  in.helo.clear();
  EXPECT_EQ(trace_headers(in, "").received,
            "Received: from unknown ([192.0.2.7])\r\n\tby mx.example.org (relaygate) with SMTP id Q1\r\n"
            "\tfor <bob@example.net>; Fri, 27 Nov 2026 02:34:34 +0000\r\n");
}

TEST(SmtpReceived, ReturnPath) {
  struct {
    const char* sender;
    const char* expected;
  } rows[] = {
      {"alice@example.org", "Return-Path: <alice@example.org>\r\n"},
      {"", "Return-Path: <>\r\n"},  // the null reverse-path
      {"a\tb@example.org", "Return-Path: <a?b@example.org>\r\n"},
  };
  for (const auto& r : rows) EXPECT_EQ(trace_headers(base(), r.sender).return_path, r.expected) << r.sender;
}

// The session's own strftime copy was deleted in favour of rg::timefmt::rfc5322: same text.
TEST(SmtpReceived, DateIsRfc5322) {
  EXPECT_EQ(rg::timefmt::rfc5322(kTime), "Fri, 27 Nov 2026 02:34:34 +0000");
  EXPECT_EQ(rg::timefmt::rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
}

}  // namespace
