// The DATA reader (smtpd/data_reader.*): one input is the client's bytes after "354", cut into
// lines as read_line returns them (a line over the stream's bound is fed as feed_overlong).
// The first byte picks the listener kind (bit 0: relay, bare CR normalised), a small size
// cap (bit 1, so the too-big path is reached) and how often the session takes the chunk
// (bits 2-7: once it holds at least that many octets, as the session does at kDataChunk).
// Invariants (data_reader.h): the data ends only at CRLF "." CRLF after a CRLF; every stored
// line ends in CRLF; what is emitted never exceeds the cap, is body_size() while not too big,
// and nothing is pending once too big; received() counts every octet fed up to the end.
#include <string>

#include "smtpd/data_reader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {
// The stream's read bound in DATA (a text line and some slack, as the session reads it).
constexpr size_t kReadBound = 2 * rg::smtp::kMaxTextLine;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool relay = data[0] & 1;
  const uint64_t cap = (data[0] & 2) ? 64 : 1024 * 1024;
  const std::string_view in = rg::fuzz::as_view(data + 1, size - 1);

  const size_t take_at = data[0] >> 2;
  rg::smtp::DataReader reader(cap, relay);
  std::string body;  // every chunk taken, in order: what the session writes to disk
  uint64_t fed = 0;
  bool ended = false;
  bool prev_crlf = true;
  for (std::string_view line : rg::fuzz::lines(in)) {
    if (line.size() > kReadBound) {
      reader.feed_overlong(line.size());
      fed += line.size();
      prev_crlf = false;
      continue;
    }
    fed += line.size();
    const bool crlf = line.size() >= 2 && line.substr(line.size() - 2) == "\r\n";
    if (reader.feed(line) == rg::smtp::DataReader::Step::End) {
      RG_FUZZ_CHECK(line == ".\r\n" && prev_crlf);
      ended = true;
      break;
    }
    RG_FUZZ_CHECK(!(line == ".\r\n" && prev_crlf));
    prev_crlf = crlf;
    if (reader.too_big()) RG_FUZZ_CHECK(reader.pending() == 0);
    if (reader.pending() >= take_at) body += reader.take_chunk();
  }
  body += reader.take_chunk();
  RG_FUZZ_CHECK(reader.received() == fed);
  (void)ended;
  RG_FUZZ_CHECK(body.size() <= cap);
  if (!reader.too_big()) RG_FUZZ_CHECK(body.size() == reader.body_size());
  if (!body.empty()) RG_FUZZ_CHECK(body.size() >= 2 && body.substr(body.size() - 2) == "\r\n");
  // No bare LF stored; a bare CR only where the listener keeps it (submission refuses the
  // message on bare_line_ending() instead).
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n') RG_FUZZ_CHECK(i > 0 && body[i - 1] == '\r');
    if (relay && body[i] == '\r') RG_FUZZ_CHECK(i + 1 < body.size() && body[i + 1] == '\n');
  }
  return 0;
}
