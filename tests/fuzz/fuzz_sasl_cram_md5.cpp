// SASL CRAM-MD5 server side (shared/sasl/mech_cram_md5.cpp) with RFC 2195 §2's fixed
// challenge, so the seed's example response ("tim", secret "tanstaaftanstaaf") succeeds.
#include "tests/fuzz/sasl_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const rg::sasl::Context ctx{"postoffice.reston.mci.net", "smtp", ""};
  auto m = rg::sasl::detail::make_cram_md5(ctx, std::string("<1896.697170952@postoffice.reston.mci.net>"));
  rg::fuzz::run_sasl(*m, data, size, "tanstaaftanstaaf");
  return 0;
}
