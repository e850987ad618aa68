// SASL PLAIN server side (shared/sasl/mech_plain.cpp) through the shared exchange driver.
#include "tests/fuzz/sasl_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = rg::sasl::detail::make_plain();
  rg::fuzz::run_sasl(*m, data, size, "secret");
  return 0;
}
