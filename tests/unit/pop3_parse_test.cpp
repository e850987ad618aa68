// pop3d/command_parse: numbers, argument splitting, APOP and AUTH arguments (Dovecot style
// valid/invalid rows, with each length limit at the limit and one past it).
#include <gtest/gtest.h>

#include "pop3d/command_parse.h"

namespace {

using namespace rg::pop3;

TEST(Pop3Parse, Numbers) {
  struct Row {
    std::string in;
    std::optional<uint64_t> out;
  };
  const Row rows[] = {
      {"1", 1},
      {"0", 0},  // parsed; the session refuses message 0
      {"007", 7},
      {std::string(Limits::kNumberDigits, '9'), 999999999999999999ull},  // at the limit
      {std::string(Limits::kNumberDigits + 1, '1'), std::nullopt},       // one past it
      {"", std::nullopt},
      {"-1", std::nullopt},
      {"+1", std::nullopt},
      {"1a", std::nullopt},
      {" 1", std::nullopt},
      {"1.0", std::nullopt},
  };
  for (const auto& r : rows) EXPECT_EQ(parse_number(r.in), r.out) << r.in;
}

TEST(Pop3Parse, SplitArgs) {
  EXPECT_EQ(split_args(""), std::vector<std::string_view>{});
  EXPECT_EQ(split_args("   "), std::vector<std::string_view>{});
  EXPECT_EQ(split_args("1 10"), (std::vector<std::string_view>{"1", "10"}));
  EXPECT_EQ(split_args("  a   b  "), (std::vector<std::string_view>{"a", "b"}));
  EXPECT_EQ(split_args("a\tb"), (std::vector<std::string_view>{"a\tb"}));  // only spaces separate
}

TEST(Pop3Parse, StripEol) {
  EXPECT_EQ(strip_eol("USER a\r\n"), "USER a");
  EXPECT_EQ(strip_eol("USER a\n"), "USER a");
  EXPECT_EQ(strip_eol("USER a"), "USER a");
  EXPECT_EQ(strip_eol("x\r\r\n"), "x\r");  // one CR only: the rest is the client's
  EXPECT_EQ(strip_eol("\n"), "");
}

TEST(Pop3Parse, Apop) {
  const std::string digest(Limits::kApopDigest, 'a');
  const std::string line = "alice " + digest;  // the result views into it
  auto ok = parse_apop(line);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->name, "alice");
  EXPECT_EQ(ok->digest, digest);
  EXPECT_TRUE(parse_apop("alice  " + digest));            // RFC 1939 §3 separators: one or more spaces
  EXPECT_FALSE(parse_apop("alice " + digest.substr(1)));  // 31
  EXPECT_FALSE(parse_apop("alice " + digest + "a"));      // 33
  EXPECT_FALSE(parse_apop("alice"));
  EXPECT_FALSE(parse_apop("alice " + digest + " extra"));
  EXPECT_FALSE(parse_apop(""));
}

TEST(Pop3Parse, Auth) {
  auto bare = parse_auth("PLAIN");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->mechanism, "PLAIN");
  EXPECT_FALSE(bare->initial);
  auto ir = parse_auth("PLAIN AGFsaWNlAHB3");
  ASSERT_TRUE(ir);
  EXPECT_EQ(*ir->initial, "AGFsaWNlAHB3");
  auto empty = parse_auth("PLAIN =");  // RFC 5034 §4: present but empty
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty->initial, "=");
  EXPECT_FALSE(parse_auth("PLAIN a b"));
  EXPECT_FALSE(parse_auth(""));
}

TEST(Pop3Parse, InitialResponse) {
  struct Row {
    std::string in;
    std::optional<std::string> out;
  };
  const Row rows[] = {
      {"=", ""},  // RFC 5034 §4: present but empty
      {"AGFsaWNlAHB3", std::string("\0alice\0pw", 9)},
      {"YQ==", "a"},
      {"ab=c", std::nullopt},
      {"!!", std::nullopt},
      {"==", std::nullopt},
  };
  for (const auto& r : rows) EXPECT_EQ(decode_initial_response(r.in), r.out) << r.in;
}

}  // namespace
