// The SASL byte codecs (shared/sasl/codec.*). Invariants: strict base64 (RFC 4648 §3.5: pad
// bits zero, no whitespace) has one spelling per byte string, so decode ∘ encode is the
// identity and an accepted text re-encodes to itself; hex is two lowercase digits per byte;
// ct_equal agrees with ==.
#include <string>

#include "shared/sasl/codec.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rg::sasl;
  const std::string_view in = rg::fuzz::as_view(data, size);

  const std::string enc = base64_encode(in);
  RG_FUZZ_CHECK(enc.size() == (in.size() + 2) / 3 * 4);
  const auto back = base64_decode(enc);
  RG_FUZZ_CHECK(back && *back == in);

  if (const auto dec = base64_decode(in)) {
    RG_FUZZ_CHECK(dec->size() <= in.size());
    RG_FUZZ_CHECK(base64_encode(*dec) == in);
  }

  const std::string hex = hex_lower(in);
  RG_FUZZ_CHECK(hex.size() == 2 * in.size());
  for (char c : hex) RG_FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  const size_t half = in.size() / 2;
  RG_FUZZ_CHECK(ct_equal(in.substr(0, half), in.substr(half, half)) == (in.substr(0, half) == in.substr(half, half)));
  return 0;
}
