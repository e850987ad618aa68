// IP canonicalization, failure keys and CIDR matching.
#include <gtest/gtest.h>

#include "shared/ip.h"
#include "shared/log.h"

namespace {

TEST(CanonicalIp, FoldsAndNormalizes) {
  struct Case {
    const char* in;
    const char* out;  // nullptr = invalid
  } cases[] = {
      {"127.0.0.1", "127.0.0.1"},
      {"::ffff:192.0.2.7", "192.0.2.7"},
      {"::FFFF:c000:0207", "192.0.2.7"},
      {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
      {"::1", "::1"},
      {"fe80::1%eth0", nullptr},
      {"1.2.3", nullptr},
      {"256.1.1.1", nullptr},
      {" 1.2.3.4", nullptr},
      {"1.2.3.4 ", nullptr},
      {"", nullptr},
      {"[::1]", nullptr},
      {"10.0.0.0/8", nullptr},
      {"not-an-ip", nullptr},
  };
  for (const auto& c : cases) {
    auto got = rg::canonical_ip(c.in);
    if (c.out == nullptr)
      EXPECT_FALSE(got) << c.in;
    else
      EXPECT_EQ(got.value_or("<invalid>"), c.out) << c.in;
  }
}

TEST(CanonicalIp, RejectsEmbeddedNulAndHugeInput) {
  EXPECT_FALSE(rg::canonical_ip(std::string("1.2.3.4\0", 8)));
  EXPECT_FALSE(rg::canonical_ip(std::string(10000, '1')));
}

TEST(FailureNetKey, GroupsIpv6By64) {
  EXPECT_EQ(rg::failure_net_key("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(rg::failure_net_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(rg::failure_net_key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
}

TEST(Cidr, MatchesAtPrefixBoundaries) {
  auto net = rg::parse_cidr("192.168.1.0/24");
  ASSERT_TRUE(net);
  EXPECT_TRUE(rg::cidr_contains(*net, "192.168.1.255"));
  EXPECT_FALSE(rg::cidr_contains(*net, "192.168.2.0"));
  EXPECT_FALSE(rg::cidr_contains(*net, "::1"));
  auto v6 = rg::parse_cidr("2001:db8::/33");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(rg::cidr_contains(*v6, "2001:db8:7fff::1"));
  EXPECT_FALSE(rg::cidr_contains(*v6, "2001:db8:8000::1"));
  auto host = rg::parse_cidr("10.1.2.3");
  ASSERT_TRUE(host);
  EXPECT_TRUE(rg::cidr_contains(*host, "10.1.2.3"));
  EXPECT_FALSE(rg::cidr_contains(*host, "10.1.2.4"));
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "foo/8", "10.0.0.0/-1"})
    EXPECT_FALSE(rg::parse_cidr(bad)) << bad;
}

TEST(LogQuote, EscapesWhatCouldForgeALine) {
  EXPECT_EQ(rg::log::quote_value("alice"), "alice");
  EXPECT_EQ(rg::log::quote_value("a b"), "\"a b\"");
  EXPECT_EQ(rg::log::quote_value("x\r\ninfo y=1"), "\"x\\x0d\\x0ainfo y=1\"");
  EXPECT_EQ(rg::log::quote_value(""), "\"\"");
  EXPECT_EQ(rg::log::quote_value("q\"\\"), "\"q\\\"\\\\\"");
}

}  // namespace
