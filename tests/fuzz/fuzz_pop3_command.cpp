// The POP3 argument parsers (pop3d/command_parse.*): one input is a command line.
// Invariants: strip_eol leaves no trailing line ending of the kind it strips; a number is
// digits only, at most kNumberDigits, and prints back to itself without leading zeros;
// split_args pieces are non-empty and space-free; APOP's digest has its fixed length; an AUTH
// initial response decodes only when it is "=" or base64.
#include <string>

#include "pop3d/command_parse.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rg::pop3;
  const std::string line = strip_eol(std::string(rg::fuzz::as_view(data, size)));
  RG_FUZZ_CHECK(line.size() <= size);
  const size_t sp = line.find(' ');
  const std::string_view args = sp == std::string::npos ? std::string_view() : std::string_view(line).substr(sp + 1);

  if (const auto n = parse_number(args)) {
    RG_FUZZ_CHECK(!args.empty() && args.size() <= Limits::kNumberDigits);
    for (char c : args) RG_FUZZ_CHECK(c >= '0' && c <= '9');
    const size_t first = args.find_first_not_of('0');
    const std::string_view digits = first == std::string_view::npos ? std::string_view("0") : args.substr(first);
    RG_FUZZ_CHECK(std::to_string(*n) == digits);
  }
  const auto pieces = split_args(args);
  size_t total = 0;
  for (std::string_view p : pieces) {
    RG_FUZZ_CHECK(!p.empty() && p.find(' ') == std::string_view::npos);
    total += p.size();
  }
  RG_FUZZ_CHECK(total <= args.size());
  if (const auto apop = parse_apop(args)) {
    RG_FUZZ_CHECK(apop->digest.size() == Limits::kApopDigest);
    RG_FUZZ_CHECK(!apop->name.empty());
  }
  if (const auto auth = parse_auth(args)) {
    RG_FUZZ_CHECK(!auth->mechanism.empty());
    if (auth->initial) {
      const auto decoded = decode_initial_response(*auth->initial);
      if (*auth->initial == "=") RG_FUZZ_CHECK(decoded && decoded->empty());
    }
  }
  return 0;
}
