// Helpers shared by the fuzz targets: an invariant check that stops the run (libFuzzer reports
// it as a crash with the input saved), and the splits the targets use to turn one input into
// the pieces a protocol sees (lines as a stream's read_line returns them, records).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace rg::fuzz {

// Not assert(): it must hold in every build type.
#define RG_FUZZ_CHECK(cond)                                                                   \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Lines with their LF kept (the last one may have none), as net::Stream::read_line returns them.
inline std::vector<std::string_view> lines(std::string_view in) {
  std::vector<std::string_view> out;
  while (!in.empty()) {
    const size_t lf = in.find('\n');
    const size_t n = lf == std::string_view::npos ? in.size() : lf + 1;
    out.push_back(in.substr(0, n));
    in.remove_prefix(n);
  }
  return out;
}

// Pieces separated by `sep` (not kept); an empty input is one empty piece.
inline std::vector<std::string_view> split(std::string_view in, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t at = in.find(sep);
    out.push_back(in.substr(0, at));
    if (at == std::string_view::npos) return out;
    in.remove_prefix(at + 1);
  }
}

}  // namespace rg::fuzz
