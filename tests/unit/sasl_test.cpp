// Unit tests for shared/sasl: codecs, APOP and the PLAIN/LOGIN/CRAM-MD5/DIGEST-MD5 state machines,
// checked against the RFC worked examples, at each limit and limit+1, and with hostile input.
// RFC 4648 §10, RFC 2104 App. (HMAC-MD5), RFC 1939 §7, RFC 4616, RFC 2195 §2, RFC 2831 §4.
#include "shared/sasl/sasl.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"

namespace {

using namespace rg::sasl;
using namespace std::string_literals;
using Kind = Failure::Kind;

// The step's T alternative (a default T, plus a test failure, if it holds another).
template <class T>
T expect_step(const Step& s) {
  const T* p = std::get_if<T>(&s);
  EXPECT_NE(p, nullptr) << "unexpected step variant index " << s.index();
  return p ? *p : T{};
}

// Failure kind, or nullopt if the step is not a Failure.
std::optional<Kind> failure_kind(const Step& s) {
  if (const auto* f = std::get_if<Failure>(&s)) return f->kind;
  return std::nullopt;
}

// ---------------------------------------------------------------- codecs

TEST(Base64, EncodesRfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> table = {{"", ""},
                                                                  {"f", "Zg=="},
                                                                  {"fo", "Zm8="},
                                                                  {"foo", "Zm9v"},
                                                                  {"foob", "Zm9vYg=="},
                                                                  {"fooba", "Zm9vYmE="},
                                                                  {"foobar", "Zm9vYmFy"},
                                                                  {"Username:", "VXNlcm5hbWU6"},
                                                                  {"Password:", "UGFzc3dvcmQ6"}};
  for (const auto& [plain, encoded] : table) {
    EXPECT_EQ(base64_encode(plain), encoded) << plain;
    EXPECT_EQ(base64_decode(encoded), plain) << encoded;
  }
}

TEST(Base64, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    const auto sub = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(sub)), sub) << n;
  }
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
}

TEST(Base64, RejectsInvalidInput) {
  const std::vector<std::string> table = {
      "Zg",           // length not a multiple of 4
      "Zg=",          // ditto
      "Zm9vY",        // ditto
      "=",            // '='-only
      "====",         // '='-only quad
      "Z===",         // too much padding
      "Zg=a",         // '=' before data
      "Zg==Zg==",     // padding in the middle
      "Zm9v====",     // padding quad after full quad
      "Zh==",         // non-zero pad bits (RFC 4648 §3.5)
      "Zm9=",         // non-zero pad bits
      "Zm9v\r\n",     // trailing CRLF
      " Zm9v",        // leading space
      "Zm 9v",        // inner space
      "Zm9v\t",       // tab
      "Zm9*",         // bad char
      "-_-_",         // base64url alphabet
      "Zm9v\0"s,      // NUL
      "\xc3\xa9QQ=",  // non-ASCII
  };
  for (const auto& bad : table) EXPECT_EQ(base64_decode(bad), std::nullopt) << bad;
}

TEST(Base64, DecodesEmptyToEmpty) { EXPECT_EQ(base64_decode(""), ""); }

TEST(SaslHex, EncodesLowercase) {
  EXPECT_EQ(hex_lower(""), "");
  EXPECT_EQ(hex_lower("\x00\x0f\xab\xff"s), "000fabff");
}

TEST(SaslMd5, MatchesRfc1321Vectors) {
  EXPECT_EQ(hex_lower(md5("")), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(hex_lower(md5("abc")), "900150983cd24fb0d6963f7d28e17f72");
}

TEST(SaslHmacMd5, MatchesRfc2104Vectors) {
  EXPECT_EQ(hex_lower(hmac_md5("Jefe", "what do ya want for nothing?")), "750c783e6ab0b503eaa86e310a5db738");
  EXPECT_EQ(hex_lower(hmac_md5(std::string(16, '\x0b'), "Hi There")), "9294727a3638bb1c13f48ef8158bfc9d");
  EXPECT_EQ(hex_lower(hmac_md5("", "")), "74e6f7298a9c2d168935f58c001bad88");
  // Keys longer than the 64-byte block are hashed first (RFC 2104 §2).
  EXPECT_EQ(hex_lower(hmac_md5(std::string(80, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
}

TEST(SaslCtEqual, ComparesContentsAndLength) {
  struct Case {
    std::string a, b;
    bool equal;
  };
  const std::vector<Case> table = {{"", "", true},           {"abc", "abc", true},     {"abc", "abd", false},
                                   {"abc", "ab", false},     {"ab", "abc", false},     {"", "a", false},
                                   {"a\0b"s, "a\0b"s, true}, {"a\0b"s, "a\0c"s, false}};
  for (const auto& c : table) EXPECT_EQ(ct_equal(c.a, c.b), c.equal) << c.a << " vs " << c.b;
  EXPECT_TRUE(ct_equal_hex("00ff", "00FF"));
  EXPECT_FALSE(ct_equal_hex("00ff", "00fe"));
}

TEST(SaslRandomHex, ReturnsTwoHexDigitsPerByte) {
  const auto h = random_hex(8);
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(random_hex(16), random_hex(16));
  EXPECT_EQ(random_hex(0), "");
}

TEST(SaslChallenge, HasMsgIdShape) {
  const auto c = make_msgid_challenge("mail.example.test");
  ASSERT_GE(c.size(), 2u);
  EXPECT_EQ(c.front(), '<');
  EXPECT_EQ(c.back(), '>');
  EXPECT_NE(c.find("@mail.example.test>"), std::string::npos);
  // <PID.COUNTER.UNIXTIME.RANDHEX@host>: four dot-separated fields before '@'.
  const auto local = c.substr(1, c.find('@') - 1);
  EXPECT_EQ(std::count(local.begin(), local.end(), '.'), 3) << c;
  EXPECT_EQ(local.substr(local.rfind('.') + 1).size(), 16u) << c;
}

TEST(SaslChallenge, ThousandAreUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(make_msgid_challenge("h"));
  EXPECT_EQ(seen.size(), 1000u);
}

// ---------------------------------------------------------------- APOP

TEST(Apop, MatchesRfc1939Example) {
  const std::string ts = "<1896.697170952@dbc.mtview.ca.us>";
  EXPECT_TRUE(apop_verify(ts, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
  EXPECT_TRUE(apop_verify(ts, "tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
}

TEST(Apop, RejectsWrongDigests) {
  const std::string ts = "<1896.697170952@dbc.mtview.ca.us>";
  const std::vector<std::string> table = {
      "c4c9334bac560ecc979e58001b3e22fc",   // last digit off
      "c4c9334bac560ecc979e58001b3e22f",    // short
      "c4c9334bac560ecc979e58001b3e22fb0",  // long
      "",
      "g4c9334bac560ecc979e58001b3e22fb",  // not hex
  };
  for (const auto& d : table) EXPECT_FALSE(apop_verify(ts, "tanstaaf", d)) << d;
  EXPECT_FALSE(apop_verify(ts, "tanstaaF", "c4c9334bac560ecc979e58001b3e22fb"));
  EXPECT_FALSE(apop_verify("<other@host>", "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
}

// ---------------------------------------------------------------- lookup

TEST(Sasl, MakeMechanismLooksUpCaseInsensitively) {
  const Context ctx{"mail.example.test", "smtp", ""};
  for (const auto name : kMechanismNames) {
    auto m = make_mechanism(name, ctx);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ(m->name(), name);
  }
  auto m = make_mechanism("cram-md5", ctx);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "CRAM-MD5");
  EXPECT_TRUE(m->needs_legacy_secret());
  EXPECT_FALSE(m->plaintext());
  EXPECT_TRUE(make_mechanism("Plain", ctx)->plaintext());
  EXPECT_TRUE(make_mechanism("digest-md5", ctx)->needs_legacy_secret());
  for (const auto bad : {"", "GSSAPI", "PLAIN ", "XOAUTH2", "CRAM-MD"})
    EXPECT_EQ(make_mechanism(bad, ctx), nullptr) << bad;
}

TEST(Sasl, CallsAfterTheEndAreProtocolFailures) {
  const Context ctx{"h", "smtp", ""};
  for (const auto name : kMechanismNames) {
    auto m = make_mechanism(name, ctx);
    (void)m->start(std::nullopt);
    EXPECT_EQ(failure_kind(m->step("")), Kind::Malformed) << name;  // ends each mechanism
    EXPECT_EQ(failure_kind(m->step("more")), Kind::Protocol) << name;
    EXPECT_EQ(failure_kind(m->start(std::nullopt)), Kind::Protocol) << name;
    EXPECT_EQ(failure_kind(m->provide_secret("x")), Kind::Protocol) << name;
  }
  auto fresh = make_mechanism("PLAIN", ctx);
  EXPECT_EQ(failure_kind(fresh->step("\0u\0p"s)), Kind::Protocol);  // step before start
}

// ---------------------------------------------------------------- PLAIN

TEST(SaslPlain, AcceptsBothForms) {
  struct Case {
    std::string msg, authzid, authcid, password;
  };
  const std::vector<Case> table = {
      {"\0user\0pass"s, "", "user", "pass"},
      {"user\0user\0pass"s, "user", "user", "pass"},
      {"admin\0user\0pass"s, "admin", "user", "pass"},  // authzid policy is the caller's
      {"\0u\0p w d"s, "", "u", "p w d"},
      {"\0"s + std::string(detail::kMaxIdentityLen, 'u') + "\0"s + std::string(detail::kMaxPasswordLen, 'p'), "",
       std::string(detail::kMaxIdentityLen, 'u'), std::string(detail::kMaxPasswordLen, 'p')},
  };
  for (const auto& c : table) {
    // As an initial response...
    auto m = detail::make_plain();
    const auto v = expect_step<VerifyPassword>(m->start(c.msg));
    EXPECT_EQ(v.authzid, c.authzid);
    EXPECT_EQ(v.authcid, c.authcid);
    EXPECT_EQ(v.password, c.password);
    // ...and after an empty challenge.
    auto m2 = detail::make_plain();
    EXPECT_EQ(expect_step<Challenge>(m2->start(std::nullopt)).data, "");
    EXPECT_EQ(expect_step<VerifyPassword>(m2->step(c.msg)).authcid, c.authcid);
  }
}

TEST(SaslPlain, RejectsMalformedMessages) {
  const auto id = [](std::size_t n) { return std::string(n, 'u'); };
  const std::vector<std::string> table = {
      "",                                                        // "=" initial response
      "userpass",                                                // no NUL
      "user\0pass"s,                                             // one NUL
      "\0user\0pass\0"s,                                         // three NULs
      "a\0b\0c\0d"s,                                             // three NULs
      "\0user\0"s,                                               // empty password
      "\0\0pass"s,                                               // empty authcid
      "\0\0"s,                                                   // both empty
      "\0"s + id(detail::kMaxIdentityLen + 1) + "\0p"s,          // authcid limit+1
      id(detail::kMaxIdentityLen + 1) + "\0u\0p"s,               // authzid limit+1
      "\0u\0"s + std::string(detail::kMaxPasswordLen + 1, 'p'),  // passwd limit+1
  };
  for (const auto& msg : table) {
    auto m = detail::make_plain();
    EXPECT_EQ(failure_kind(m->start(msg)), Kind::Malformed) << testing::PrintToString(msg);
  }
}

// ---------------------------------------------------------------- LOGIN

TEST(SaslLogin, AsksUsernameThenPassword) {
  auto m = detail::make_login();
  const auto c1 = expect_step<Challenge>(m->start(std::nullopt));
  EXPECT_EQ(base64_encode(c1.data), "VXNlcm5hbWU6");
  const auto c2 = expect_step<Challenge>(m->step("alice"));
  EXPECT_EQ(base64_encode(c2.data), "UGFzc3dvcmQ6");
  const auto v = expect_step<VerifyPassword>(m->step("s3cret pass"));
  EXPECT_EQ(v.authzid, "");
  EXPECT_EQ(v.authcid, "alice");
  EXPECT_EQ(v.password, "s3cret pass");
}

TEST(SaslLogin, TakesInitialResponseAsUsername) {
  auto m = detail::make_login();
  EXPECT_EQ(expect_step<Challenge>(m->start("alice")).data, "Password:");
  EXPECT_EQ(expect_step<VerifyPassword>(m->step("pw")).authcid, "alice");
}

TEST(SaslLogin, RejectsBadUsernames) {
  const std::vector<std::string> table = {"", "a\0b"s, std::string(detail::kMaxIdentityLen + 1, 'u')};
  for (const auto& user : table) {
    auto m = detail::make_login();
    EXPECT_EQ(failure_kind(m->start(user)), Kind::Malformed);
    auto m2 = detail::make_login();
    (void)m2->start(std::nullopt);
    EXPECT_EQ(failure_kind(m2->step(user)), Kind::Malformed);
  }
  auto m = detail::make_login();
  EXPECT_TRUE(std::holds_alternative<Challenge>(m->start(std::string(detail::kMaxIdentityLen, 'u'))));
  EXPECT_EQ(failure_kind(m->step(std::string(detail::kMaxPasswordLen + 1, 'p'))), Kind::Malformed);
}

// ---------------------------------------------------------------- CRAM-MD5

const Context kRestonCtx{"postoffice.reston.mci.net", "smtp", ""};
const std::string kRfc2195Challenge = "<1896.697170952@postoffice.reston.mci.net>";

TEST(CramMd5, MatchesRfc2195Example) {
  auto m = detail::make_cram_md5(kRestonCtx, kRfc2195Challenge);
  EXPECT_EQ(expect_step<Challenge>(m->start(std::nullopt)).data, kRfc2195Challenge);
  EXPECT_EQ(base64_encode(kRfc2195Challenge), "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+");
  EXPECT_EQ(expect_step<NeedSecret>(m->step("tim b913a602c7eda7a495b4e6e7334d3890")).authcid, "tim");
  const auto ok = expect_step<Success>(m->provide_secret("tanstaaftanstaaf"));
  EXPECT_EQ(ok.authcid, "tim");
  EXPECT_EQ(ok.authzid, "");
}

TEST(CramMd5, AcceptsUppercaseHexAndSpacesInUser) {
  const std::string digest = hex_lower(hmac_md5("pw", kRfc2195Challenge));
  std::string upper = digest;
  for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  auto m = detail::make_cram_md5(kRestonCtx, kRfc2195Challenge);
  (void)m->start(std::nullopt);
  EXPECT_EQ(expect_step<NeedSecret>(m->step("john doe " + upper)).authcid, "john doe");
  EXPECT_TRUE(std::holds_alternative<Success>(m->provide_secret("pw")));
}

TEST(CramMd5, RejectsWrongSecretAndUnknownUser) {
  for (const std::optional<std::string_view> secret :
       {std::optional<std::string_view>("wrong"), std::optional<std::string_view>()}) {
    auto m = detail::make_cram_md5(kRestonCtx, kRfc2195Challenge);
    (void)m->start(std::nullopt);
    (void)m->step("tim b913a602c7eda7a495b4e6e7334d3890");
    EXPECT_EQ(failure_kind(m->provide_secret(secret)), Kind::BadCredentials);
  }
}

TEST(CramMd5, RejectsMalformedResponses) {
  const std::vector<std::string> table = {
      "",
      "tim",
      "b913a602c7eda7a495b4e6e7334d3890",        // no user
      " b913a602c7eda7a495b4e6e7334d3890",       // empty user
      "tim b913a602c7eda7a495b4e6e7334d389",     // 31 hex
      "tim b913a602c7eda7a495b4e6e7334d38900",   // 33 hex
      "tim b913a602c7eda7a495b4e6e7334d389z",    // not hex
      "tim b913a602c7eda7a495b4e6e7334d3890 ",   // trailing space
      "t\0m b913a602c7eda7a495b4e6e7334d3890"s,  // NUL in user
      std::string(detail::kMaxIdentityLen + 1, 'u') + " b913a602c7eda7a495b4e6e7334d3890",
  };
  for (const auto& r : table) {
    auto m = detail::make_cram_md5(kRestonCtx, kRfc2195Challenge);
    (void)m->start(std::nullopt);
    EXPECT_EQ(failure_kind(m->step(r)), Kind::Malformed) << testing::PrintToString(r);
  }
}

// What `doveadm pw -s CRAM-MD5 -p tanstaaftanstaaf` (Dovecot 2.3.19) prints: the key's HMAC-MD5
// context, imported by relaygatectl user import as the legacy secret (codec.h).
const std::string kDovecotCramContext = "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b";

TEST(CramMd5, DovecotContextAnswersLikeThePassword) {
  const auto raw = cram_md5_context(kDovecotCramContext);
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(raw->size(), kCramMd5ContextOctets);
  EXPECT_EQ(hmac_md5_from_context(*raw, kRfc2195Challenge), hmac_md5("tanstaaftanstaaf", kRfc2195Challenge));
  EXPECT_EQ(hmac_md5_from_context(*raw, ""), hmac_md5("tanstaaftanstaaf", ""));
  auto m = detail::make_cram_md5(kRestonCtx, kRfc2195Challenge);
  (void)m->start(std::nullopt);
  (void)m->step("tim b913a602c7eda7a495b4e6e7334d3890");
  EXPECT_EQ(expect_step<Success>(m->provide_secret(kDovecotCramContext)).authcid, "tim");
}

TEST(CramMd5, PlaintextSecretsAndMalformedContextsAreNotContexts) {
  EXPECT_FALSE(cram_md5_context("tanstaaftanstaaf"));
  EXPECT_FALSE(cram_md5_context(kDovecotCramContext.substr(0, kDovecotCramContext.size() - 2)));
  std::string upper = kDovecotCramContext;
  upper.back() = 'G';
  EXPECT_FALSE(cram_md5_context(upper));
}

TEST(CramMd5, ApopRefusesADovecotContext) {
  const std::string ts = "<1896.697170952@dbc.mtview.ca.us>";
  EXPECT_FALSE(apop_verify(ts, kDovecotCramContext, hex_lower(md5(ts + kDovecotCramContext))));
}

TEST(CramMd5, RefusesInitialResponseAndUsesFreshChallenges) {
  auto m = make_mechanism("CRAM-MD5", kRestonCtx);
  EXPECT_EQ(failure_kind(m->start("tim")), Kind::Protocol);
  const auto c1 = expect_step<Challenge>(make_mechanism("CRAM-MD5", kRestonCtx)->start(std::nullopt));
  const auto c2 = expect_step<Challenge>(make_mechanism("CRAM-MD5", kRestonCtx)->start(std::nullopt));
  EXPECT_NE(c1.data, c2.data);
  EXPECT_NE(c1.data.find("@postoffice.reston.mci.net>"), std::string::npos);
}

// ---------------------------------------------------------------- DIGEST-MD5

const Context kElwoodCtx{"elwood.innosoft.com", "imap", ""};
const std::string kRfc2831Nonce = "OA6MG9tEQGm2hh";
const std::string kRfc2831Response =
    "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
    "nc=00000001,cnonce=\"OA6MHXh6VqTrRk\",digest-uri=\"imap/elwood.innosoft.com\","
    "response=d388dad90d4bbd760a152321f2143af7,qop=auth";

TEST(DigestMd5, ComputesRfc2831ExampleDigests) {
  const detail::DigestInput in{"chris",       "elwood.innosoft.com",      "secret",
                               kRfc2831Nonce, "OA6MHXh6VqTrRk",           "00000001",
                               "auth",        "imap/elwood.innosoft.com", std::nullopt};
  EXPECT_EQ(detail::digest_md5_response(in, "AUTHENTICATE"), "d388dad90d4bbd760a152321f2143af7");
  EXPECT_EQ(detail::digest_md5_response(in, ""), "ea40f60335c427b5527b84dbabcdfffd");
}

TEST(DigestMd5, AuthenticatesRfc2831Example) {
  auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
  EXPECT_EQ(expect_step<Challenge>(m->start(std::nullopt)).data,
            "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",qop=\"auth\",charset=utf-8,"
            "algorithm=md5-sess");
  EXPECT_EQ(expect_step<NeedSecret>(m->step(kRfc2831Response)).authcid, "chris");
  EXPECT_EQ(expect_step<Challenge>(m->provide_secret("secret")).data, "rspauth=ea40f60335c427b5527b84dbabcdfffd");
  const auto ok = expect_step<Success>(m->step(""));
  EXPECT_EQ(ok.authcid, "chris");
  EXPECT_EQ(ok.authzid, "");
}

TEST(DigestMd5, IncludesAuthzidAndAcceptsLooseSyntax) {
  const std::string cnonce = "c\"n";
  detail::DigestInput in{
      "bob", "", "pw", kRfc2831Nonce, cnonce, "00000001", "auth", "IMAP/mail.example.test", std::string_view("admin")};
  const auto digest = detail::digest_md5_response(in, "AUTHENTICATE");
  // No realm (=> ""), escaped quote in cnonce, spaces and empty list elements, qop absent,
  // upper-case directive names and service, upper-case hex.
  std::string upper = digest;
  for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  const std::string resp =
      " ,USERNAME = \"bob\" ,, nonce=\"OA6MG9tEQGm2hh\", cnonce=\"c\\\"n\","
      "nc=00000001,digest-uri=\"IMAP/mail.example.test\",authzid=\"admin\","
      "response=" +
      upper + ", x-unknown=ignored ,";
  auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
  (void)m->start(std::nullopt);
  EXPECT_EQ(expect_step<NeedSecret>(m->step(resp)).authcid, "bob");
  EXPECT_TRUE(std::holds_alternative<Challenge>(m->provide_secret("pw")));
  const auto ok = expect_step<Success>(m->step(""));
  EXPECT_EQ(ok.authzid, "admin");
  EXPECT_EQ(ok.authcid, "bob");
}

TEST(DigestMd5, RejectsWrongSecretAndUnknownUser) {
  for (const std::optional<std::string_view> secret :
       {std::optional<std::string_view>("Secret"), std::optional<std::string_view>()}) {
    auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
    (void)m->start(std::nullopt);
    (void)m->step(kRfc2831Response);
    EXPECT_EQ(failure_kind(m->provide_secret(secret)), Kind::BadCredentials);
  }
}

TEST(DigestMd5, RefusesADovecotCramContext) {
  // The response is right for the context taken as a password: only the refusal fails it.
  detail::DigestInput in{"bob",      "",     kDovecotCramContext,      kRfc2831Nonce, "cn",
                         "00000001", "auth", "IMAP/mail.example.test", std::nullopt};
  const std::string resp =
      "username=\"bob\",nonce=\"OA6MG9tEQGm2hh\",cnonce=\"cn\",nc=00000001,"
      "digest-uri=\"IMAP/mail.example.test\",response=" +
      detail::digest_md5_response(in, "AUTHENTICATE");
  auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
  (void)m->start(std::nullopt);
  EXPECT_EQ(expect_step<NeedSecret>(m->step(resp)).authcid, "bob");
  EXPECT_EQ(failure_kind(m->provide_secret(kDovecotCramContext)), Kind::BadCredentials);
}

TEST(DigestMd5, RefusesInitialResponseAndUsesFreshNonces) {
  EXPECT_EQ(failure_kind(make_mechanism("DIGEST-MD5", kElwoodCtx)->start("x")), Kind::Protocol);
  const auto c1 = expect_step<Challenge>(make_mechanism("DIGEST-MD5", kElwoodCtx)->start(std::nullopt));
  const auto c2 = expect_step<Challenge>(make_mechanism("DIGEST-MD5", kElwoodCtx)->start(std::nullopt));
  EXPECT_NE(c1.data, c2.data);
  const Context quoted{"h", "smtp", "we\"ird\\realm"};
  EXPECT_EQ(expect_step<Challenge>(detail::make_digest_md5(quoted, "n")->start(std::nullopt)).data,
            "realm=\"we\\\"ird\\\\realm\",nonce=\"n\",qop=\"auth\",charset=utf-8,algorithm=md5-sess");
}

// The RFC example response with directive `key`'s whole "key=value" element replaced.
std::string with(const std::string& key, std::string_view element) {
  std::string r = "," + kRfc2831Response;
  const auto start = r.find("," + key + "=") + 1;
  const auto value = start + key.size() + 1;
  const auto end = r.find(',', r[value] == '"' ? r.find('"', value + 1) : value);
  r.replace(start, (end == std::string::npos ? r.size() : end) - start, element);
  return r.substr(1);
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(DigestMd5, RejectsHostileOrWrongResponses) {
  struct Case {
    std::string name, response;
    Kind kind;
  };
  const std::vector<Case> table = {
      {"empty", "", Kind::Malformed},
      {"commas only", ",,, ,", Kind::Malformed},
      {"unterminated quote", "username=\"chris", Kind::Malformed},
      {"backslash at end", "username=\"chris\\", Kind::Malformed},
      {"no equals", "username", Kind::Malformed},
      {"no value", "username=,nonce=\"x\"", Kind::Malformed},
      {"no comma", "username=\"a\" nonce=\"b\"", Kind::Malformed},
      {"bad key", "=\"x\"", Kind::Malformed},
      {"NUL in value", "username=\"ch\0ris\""s, Kind::Malformed},
      {"CR in value", "username=\"ch\rris\"", Kind::Malformed},
      {"duplicate nonce", kRfc2831Response + ",nonce=\"OA6MG9tEQGm2hh\"", Kind::Malformed},
      {"duplicate username", kRfc2831Response + ",UserName=\"eve\"", Kind::Malformed},
      {"duplicate qop", kRfc2831Response + ",qop=auth", Kind::Malformed},
      {"missing response", with("response", "x=y"), Kind::Malformed},
      {"missing username", with("username", "x=y"), Kind::Malformed},
      {"empty username", with("username", "username=\"\""), Kind::Malformed},
      {"missing cnonce", with("cnonce", "x=y"), Kind::Malformed},
      {"missing nc", with("nc", "x=y"), Kind::Malformed},
      {"missing digest-uri", with("digest-uri", "x=y"), Kind::Malformed},
      {"short response", with("response", "response=d388dad90d4bbd760a152321f2143af"), Kind::Malformed},
      {"non-hex response", with("response", "response=x388dad90d4bbd760a152321f2143af7"), Kind::Malformed},
      {"bad nc", with("nc", "nc=1"), Kind::Malformed},
      {"bad charset", with("charset", "charset=latin1"), Kind::Malformed},
      {"digest-uri without slash", with("digest-uri", "digest-uri=\"imap\""), Kind::Malformed},
      {"too many directives", kRfc2831Response + repeat(",x=y", 30), Kind::Malformed},
      {"huge input", kRfc2831Response + ",x=\"" + std::string(5000, 'a') + "\"", Kind::Malformed},
      {"huge backslashes", "username=\"" + std::string(10000, '\\'), Kind::Malformed},
      {"wrong nonce", with("nonce", "nonce=\"OA6MG9tEQGm2hX\""), Kind::BadCredentials},
      {"nc 2", with("nc", "nc=00000002"), Kind::BadCredentials},
      {"qop auth-int", with("qop", "qop=auth-int"), Kind::BadCredentials},
      {"wrong realm", with("realm", "realm=\"evil.example\""), Kind::BadCredentials},
      {"wrong service", with("digest-uri", "digest-uri=\"smtp/elwood.innosoft.com\""), Kind::BadCredentials},
      {"empty host", with("digest-uri", "digest-uri=\"imap/\""), Kind::BadCredentials},
  };
  for (const auto& c : table) {
    auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
    (void)m->start(std::nullopt);
    EXPECT_EQ(failure_kind(m->step(c.response)), c.kind) << c.name << ": " << c.response;
  }
}

TEST(DigestMd5, ParsesUpToTheLengthLimit) {
  // Null list elements pad the valid example to exactly the limit, then one past it.
  std::string at_limit = kRfc2831Response;
  at_limit.append(detail::kMaxDigestResponseLen - at_limit.size(), ',');
  EXPECT_TRUE(detail::parse_digest_response(at_limit).value.has_value());
  EXPECT_FALSE(detail::parse_digest_response(at_limit + ",").value.has_value());
}

TEST(DigestMd5, SurvivesRandomMutations) {
  std::mt19937 rng(2831);
  for (int i = 0; i < 5000; ++i) {
    std::string r = kRfc2831Response;
    const int edits = 1 + int(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % (r.size() + 1);
      switch (rng() % 3) {
        case 0: r.insert(r.begin() + long(at), char(rng() % 256)); break;
        case 1:
          if (at < r.size()) r.erase(at, 1);
          break;
        default:
          if (at < r.size()) r[at] = "\",=\\ \0a"[rng() % 7];
          break;
      }
    }
    (void)detail::parse_digest_response(r);
    auto m = detail::make_digest_md5(kElwoodCtx, kRfc2831Nonce);
    (void)m->start(std::nullopt);
    const Step s = m->step(r);
    if (std::holds_alternative<NeedSecret>(s))
      EXPECT_FALSE(std::holds_alternative<Success>(m->provide_secret("wrong")));
    else
      EXPECT_TRUE(std::holds_alternative<Failure>(s));
  }
}

}  // namespace
