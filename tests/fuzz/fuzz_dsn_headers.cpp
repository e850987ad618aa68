// The DSN writer's one reader (smtpd/outbound/queue_dsn.*): relaygate reads no DSNs, it only
// writes them; what it reads is the original message's header section, which it quotes in the
// DSN (RFC 6522 text/rfc822-headers), and the envelope's and smarthost's strings it reports.
// Input: "<sender>\n<diagnostic>\n<message>". Invariants (queue_dsn.h): the header section
// is a bounded prefix of the message; the DSN outside the copied headers has CRLF line
// endings only, lines under 998 octets and ASCII only.
#include <string>

#include "smtpd/outbound/queue_dsn.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rg::smtp::queue;
  const std::string_view in = rg::fuzz::as_view(data, size);
  const std::string_view msg = in;
  constexpr size_t kMax = 4096;
  const std::string_view head = header_section(msg, kMax);
  RG_FUZZ_CHECK(head.size() <= kMax && head.size() <= msg.size());
  RG_FUZZ_CHECK(msg.substr(0, head.size()) == head);

  const auto parts = rg::fuzz::split(in, '\n');
  if (parts.size() < 3) return 0;
  rg::spool::Envelope env;
  env.id = "0123456789AB";
  env.sender = std::string(parts[0]);
  env.recipients.emplace_back(std::string(parts[1]), "failed", std::string(parts[1]));
  env.recipients.back().diagnostic = std::string(parts[1]);
  env.recipients.back().status = "5.1.1";
  const std::string_view original = in.substr(parts[0].size() + parts[1].size() + 2);
  DsnInput d;
  d.kind = (size & 1) ? DsnKind::Failed : DsnKind::Delayed;
  d.id = "0123456789ABR1";
  d.reporting_mta = "mx.example.test";
  d.remote_mta = "smarthost.example.test";
  d.original = &env;
  d.recipients = {0};
  d.original_message = original;
  d.now = 1'800'000'000;
  d.retry_until = d.now + 86400;
  const std::string dsn = render_dsn(d);
  const std::string_view copied = header_section(original);
  // The copied headers come last, before the closing boundary (RFC 2046 §5.1.1).
  const std::string close = "\r\n--" + d.id + "/" + d.reporting_mta + "--\r\n";
  RG_FUZZ_CHECK(dsn.size() >= close.size() + copied.size());
  RG_FUZZ_CHECK(dsn.ends_with(close));
  const size_t at = dsn.size() - close.size() - copied.size();
  RG_FUZZ_CHECK(std::string_view(dsn).substr(at, copied.size()) == copied);
  const std::string_view ours = std::string_view(dsn).substr(0, at);
  size_t line = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const unsigned char c = ours[i];
    RG_FUZZ_CHECK(c < 0x80);
    if (c == '\r') RG_FUZZ_CHECK(i + 1 < ours.size() && ours[i + 1] == '\n');
    if (c == '\n') {
      RG_FUZZ_CHECK(i > 0 && ours[i - 1] == '\r');
      line = 0;
    } else {
      RG_FUZZ_CHECK(++line < 998);
    }
  }
  return 0;
}
