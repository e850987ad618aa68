// The spool envelope loader (shared/spool.*: from_json). A bad envelope is a
// std::runtime_error naming its source (the queue runner reports it and leaves the file);
// anything else escaping is a crash. Invariant: an accepted envelope survives its own
// writer: to_json → from_json → to_json is stable.
#include <stdexcept>
#include <string>

#include "shared/spool.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rg::spool::Envelope e;
  try {
    e = rg::spool::from_json(rg::fuzz::as_view(data, size), "fuzz.env");
  } catch (const std::runtime_error& err) {
    RG_FUZZ_CHECK(std::string_view(err.what()).find("fuzz.env") != std::string_view::npos);
    return 0;
  }
  const std::string once = rg::spool::to_json(e);
  const std::string twice = rg::spool::to_json(rg::spool::from_json(once, "fuzz.env (rewritten)"));
  RG_FUZZ_CHECK(once == twice);
  return 0;
}
