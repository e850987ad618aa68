// The config loader (shared/config.*) over a string: parse() is load() without the read.
// A bad config is a ConfigError naming the file (and the field); any other exception escapes
// and is a crash, as are sanitizer findings. An accepted config keeps its invariants: at least
// one local domain, retry bounds ordered.
#include <string>

#include "shared/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(rg::fuzz::as_view(data, size));
  try {
    const rg::config::Config c = rg::config::parse(text, "fuzz.json", "/nonexistent-fuzz-base");
    RG_FUZZ_CHECK(!c.local_domains.empty());
    RG_FUZZ_CHECK(c.queue.first_retry_seconds <= c.queue.max_retry_seconds);
  } catch (const rg::config::ConfigError& e) {
    RG_FUZZ_CHECK(std::string_view(e.what()).starts_with("fuzz.json: "));
  }
  return 0;
}
