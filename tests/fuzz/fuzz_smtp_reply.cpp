// The smarthost reply parser and EHLO keywords (smtpd/outbound/smtp_client_wire.*): one input
// is what the server sends, cut into lines; every complete reply is taken and, when positive,
// read as an EHLO reply. Invariants: a reply's code is three digits, its line count within the
// limits, its text printable; the parser resets after take(); from_json-free, so no
// exceptions are expected at all. The DATA encoder runs over the same bytes: its output ends
// in CRLF "." CRLF and has no bare CR or LF.
#include <string>

#include "smtpd/outbound/smtp_client_wire.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rg::smtp::client;
  const std::string_view in = rg::fuzz::as_view(data, size);
  const ReplyLimits limits{512, 8};
  ReplyParser parser(limits);
  for (std::string_view line : rg::fuzz::lines(in)) {
    const ReplyParser::Status st = parser.feed(line);
    if (st == ReplyParser::bad) break;
    if (st != ReplyParser::complete) continue;
    const Reply r = parser.take();
    RG_FUZZ_CHECK(r.code >= 100 && r.code <= 999);
    RG_FUZZ_CHECK(!r.lines.empty() && r.lines.size() <= limits.max_lines);
    for (char c : r.text()) RG_FUZZ_CHECK(c >= 0x20 && c < 0x7f);
    const std::string status = r.status();
    RG_FUZZ_CHECK(status.empty() || (status.size() >= 5 && status[1] == '.'));
    if (r.positive()) {
      const Capabilities caps = Capabilities::from_ehlo(r);
      for (const std::string& m : caps.auth) RG_FUZZ_CHECK(!m.empty());
      (void)caps.has_auth("PLAIN");
    }
  }

  const std::string wire = encode_data(in);
  RG_FUZZ_CHECK(wire.size() >= 3 && wire.substr(wire.size() - 3) == ".\r\n");
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') RG_FUZZ_CHECK(i + 1 < wire.size() && wire[i + 1] == '\n');
    if (wire[i] == '\n') RG_FUZZ_CHECK(i > 0 && wire[i - 1] == '\r');
  }
  return 0;
}
