// RFC 5321 §4.1.2 path parsing: valid forms, routing tricks, limits at limit and limit+1.
#include <gtest/gtest.h>

#include "smtpd/address.h"

namespace {

using rg::smtp::parse_path_arg;
using rg::smtp::PathError;

struct Ok {
  const char* arg;
  const char* local;
  const char* domain;
  bool quoted;
};

TEST(SmtpPath, ParsesValidForwardPaths) {
  Ok cases[] = {
      {"TO:<bob@example.test>", "bob", "example.test", false},
      {"to:<Bob@EXAMPLE.Test>", "Bob", "example.test", false},
      {"TO: <bob@example.test>", "bob", "example.test", false},
      {"TO:<bob@example.test.>", "bob", "example.test", false},
      {"TO:<@relay.test,@other.test:bob@ext.test>", "bob", "ext.test", false},
      {"TO:<\"u@ext\"@example.test>", "u@ext", "example.test", true},
      {"TO:<u%ext@example.test>", "u%ext", "example.test", false},
      {"TO:<ext!u@example.test>", "ext!u", "example.test", false},
      {"TO:<bob@[192.0.2.1]>", "bob", "[192.0.2.1]", false},
      {"TO:<bob@[IPv6:2001:db8::1]>", "bob", "[ipv6:2001:db8::1]", false},
  };
  for (const auto& c : cases) {
    auto r = parse_path_arg(c.arg, "TO:", false);
    ASSERT_TRUE(r.path) << c.arg << ": " << (r.error ? r.error->text : "");
    EXPECT_EQ(r.path->mailbox.local, c.local) << c.arg;
    EXPECT_EQ(r.path->mailbox.domain, c.domain) << c.arg;
    EXPECT_EQ(r.path->mailbox.quoted, c.quoted) << c.arg;
  }
}

TEST(SmtpPath, RejectsMalformed) {
  for (const char* bad : {"TO:bob@example.test", "TO:<bob@example.test", "TO:<>", "TO:<bob>", "TO:<u@ext@example.test>",
                          "TO:<.bob@example.test>", "TO:<bob.@example.test>", "TO:<bo..b@example.test>",
                          "TO:<bob@-example.test>", "TO:<bob@exa_mple.test>", "TO:<bob@>", "TO:<@x.test:>",
                          "TO:<@x.test bob@y.test>", "TO:<\"unterminated@example.test>", "TO:<b\xc3\xa9@example.test>",
                          "FROM:<bob@example.test>", "TO:<bob@example.test>junk", "TO:<bob@[1.2.3.4>"}) {
    auto r = parse_path_arg(bad, "TO:", false);
    EXPECT_FALSE(r.path) << bad;
    EXPECT_TRUE(r.error) << bad;
  }
}

// RFC 5321 §4.1.3: an address literal is a dotted quad of 0-255 or "IPv6:" and an IPv6
// address; anything else is a syntax error (501 / 553 5.1.3), never a relay decision.
TEST(SmtpPath, AddressLiteralsAtTheBoundary) {
  for (const char* good :
       {"TO:<u@[0.0.0.0]>", "TO:<u@[255.255.255.255]>", "TO:<u@[IPv6:::1]>", "TO:<u@[ipv6:2001:db8::192.0.2.1]>"})
    EXPECT_TRUE(parse_path_arg(good, "TO:", false).path) << good;
  for (const char* bad : {"TO:<u@[321.1.2.3]>", "TO:<u@[256.0.0.1]>", "TO:<u@[1.2.3]>", "TO:<u@[1.2.3.4.5]>",
                          "TO:<u@[1.2.3.]>", "TO:<u@[0001.2.3.4]>", "TO:<u@[a.b.c.d]>", "TO:<u@[IPv6:2001:db8::g]>",
                          "TO:<u@[IPv6:1.2.3.4]>", "TO:<u@[x-tag:text]>", "TO:<u@[]>", "TO:<u@[ 1.2.3.4]>"}) {
    auto r = parse_path_arg(bad, "TO:", false);
    EXPECT_FALSE(r.path) << bad;
    ASSERT_TRUE(r.error) << bad;
    EXPECT_EQ(r.error->kind, PathError::Kind::Syntax) << bad;
  }
}

TEST(SmtpPath, NullReversePathOnlyForMail) {
  auto r = parse_path_arg("FROM:<>", "FROM:", true);
  ASSERT_TRUE(r.path);
  EXPECT_TRUE(r.path->null);
  EXPECT_FALSE(parse_path_arg("TO:<>", "TO:", false).path);
}

TEST(SmtpPath, ParametersAreUpperCasedKeywords) {
  auto r = parse_path_arg("FROM:<a@b.test> size=1000 BODY=8BITMIME", "FROM:", true);
  ASSERT_TRUE(r.path);
  ASSERT_EQ(r.path->params.size(), 2u);
  EXPECT_EQ(r.path->params[0].first, "SIZE");
  EXPECT_EQ(r.path->params[0].second, "1000");
  EXPECT_EQ(r.path->params[1].first, "BODY");
  EXPECT_FALSE(parse_path_arg("FROM:<a@b.test> =x", "FROM:", true).path);
}

TEST(SmtpPath, LimitsAtBoundary) {
  std::string local64(64, 'a'), local65(65, 'a');
  EXPECT_TRUE(parse_path_arg("TO:<" + local64 + "@example.test>", "TO:", false).path);
  auto r = parse_path_arg("TO:<" + local65 + "@example.test>", "TO:", false);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->kind, PathError::Kind::LocalTooLong);
  // A 255-octet domain of 63-octet labels fits; 256 does not (and the path limit is 256 too).
  std::string label(63, 'd');
  std::string d255 = label + "." + label + "." + label + "." + std::string(63, 'e');
  ASSERT_EQ(d255.size(), 255u);
  r = parse_path_arg("TO:<a@" + d255 + ">", "TO:", false);
  EXPECT_TRUE(r.error);  // path = 1 + 1 + 1 + 255 + 1 = 259 > 256 octets (§4.5.3.1.3)
  std::string d256 = d255 + "e";
  r = parse_path_arg("TO:<a@" + d256 + ">", "TO:", false);
  ASSERT_TRUE(r.error);
}

TEST(SmtpPath, HostileInputNeverCrashes) {
  std::string junk;
  for (int i = 0; i < 2000; ++i) junk += static_cast<char>((i * 37) % 256);
  for (size_t n = 0; n < junk.size(); n += 97) {
    (void)parse_path_arg("TO:<" + junk.substr(0, n), "TO:", false);
    (void)parse_path_arg("FROM:<\"" + junk.substr(n) + "\"@x>", "FROM:", true);
  }
  (void)parse_path_arg(std::string(100000, '<'), "TO:", false);
  (void)parse_path_arg("TO:<" + std::string(100000, '\\') + ">", "TO:", false);
}

}  // namespace
