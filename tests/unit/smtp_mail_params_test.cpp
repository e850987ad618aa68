// smtpd/address parse_mail_params: MAIL FROM's ESMTP parameters (SIZE RFC 1870, BODY RFC 6152,
// AUTH RFC 4954 §5), valid and invalid rows, SIZE at the limit and one past it, 19 and 20 digits.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "smtpd/address.h"

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;
using rg::smtp::parse_mail_params;

constexpr uint64_t kLimit = 10485760;

TEST(SmtpMailParams, Valid) {
  struct {
    Params params;
    uint64_t max;
    uint64_t size;
  } rows[] = {
      {{}, kLimit, 0},
      {{{"SIZE", "0"}}, kLimit, 0},
      {{{"SIZE", "1000"}}, kLimit, 1000},
      {{{"SIZE", "10485760"}}, kLimit, kLimit},  // at the limit
      {{{"SIZE", "9999999999999999999"}}, UINT64_MAX, 9999999999999999999ULL},  // 19 digits
      {{{"SIZE", "0000000000000000012"}}, kLimit, 12},                        // 19 digits, small
      {{{"BODY", "7BIT"}}, kLimit, 0},
      {{{"BODY", "8bitmime"}}, kLimit, 0},
      {{{"AUTH", "<>"}}, kLimit, 0},
      {{{"AUTH", ""}}, kLimit, 0},
      {{{"BODY", "8BITMIME"}, {"SIZE", "42"}, {"AUTH", "alice@example.org"}}, kLimit, 42},
  };
  for (const auto& r : rows) {
    const auto got = parse_mail_params(r.params, r.max);
    EXPECT_FALSE(got.refusal) << (r.params.empty() ? "" : r.params[0].first + "=" + r.params[0].second) << ": "
                              << (got.refusal ? got.refusal->text : "");
    EXPECT_EQ(got.size, r.size);
  }
}

TEST(SmtpMailParams, Invalid) {
  struct {
    Params params;
    int code;
    const char* enhanced;
    std::string text;
    const char* reason;
  } rows[] = {
      {{{"SIZE", "10485761"}}, 552, "5.3.4", "Message size exceeds fixed limit", "declared-size-too-big"},  // limit+1
      {{{"SIZE", "10000000000000000000"}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},                // 20 digits
      {{{"SIZE", "00000000000000000001"}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},                // 20 digits
      {{{"SIZE", ""}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},
      {{{"SIZE", "12a"}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},
      {{{"SIZE", "-1"}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},
      {{{"SIZE", "+1"}}, 501, "5.5.4", "Bad SIZE parameter", "syntax"},
      {{{"BODY", "BINARYMIME"}}, 501, "5.5.4", "Bad BODY parameter", "syntax"},
      {{{"BODY", ""}}, 501, "5.5.4", "Bad BODY parameter", "syntax"},
      {{{"SMTPUTF8", ""}}, 555, "5.5.4", "Unsupported option: SMTPUTF8", "unsupported-option"},
      {{{"RET", "HDRS"}}, 555, "5.5.4", "Unsupported option: RET", "unsupported-option"},
      // The echoed keyword is bounded at 32 octets.
      {{{std::string(40, 'X'), ""}}, 555, "5.5.4", "Unsupported option: " + std::string(32, 'X'),
       "unsupported-option"},
      // The first bad parameter is the one refused.
      {{{"SIZE", "1"}, {"BODY", "X"}, {"FOO", ""}}, 501, "5.5.4", "Bad BODY parameter", "syntax"},
      {{{"FOO", ""}, {"SIZE", "x"}}, 555, "5.5.4", "Unsupported option: FOO", "unsupported-option"},
  };
  for (const auto& r : rows) {
    const auto got = parse_mail_params(r.params, kLimit);
    const std::string label = r.params[0].first + "=" + r.params[0].second;
    ASSERT_TRUE(got.refusal) << label;
    EXPECT_EQ(got.refusal->code, r.code) << label;
    EXPECT_EQ(got.refusal->enhanced, r.enhanced) << label;
    EXPECT_EQ(got.refusal->text, r.text) << label;
    EXPECT_EQ(got.refusal->reason, r.reason) << label;
  }
}

TEST(SmtpMailParams, Printable) {
  EXPECT_EQ(rg::smtp::printable("ab\x01\x7f" "c\xc3"), "ab??c?");
  EXPECT_EQ(rg::smtp::printable(std::string(300, 'a')).size(), 255u);
  EXPECT_EQ(rg::smtp::printable("abcdef", 3), "abc");
}

}  // namespace
