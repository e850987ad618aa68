// policyd/policy_request: SMTPD_POLICY_README's request format and our answers; the "policyd"
// config section.
#include <gtest/gtest.h>

#include <string>

#include "policyd/policy_request.h"
#include "shared/config.h"

namespace rg::policy {
namespace {

const std::string kRequest =
    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.10\n"
    "client_name=host.example\nsender=alice@example.test\nrecipient=bob@remote.example\ninstance=123.456.7\n"
    "sasl_username=\nfuture_attribute=whatever\n\n";

TEST(PolicyReader, WholeRequestInOneRead) {
  RequestReader r;
  EXPECT_EQ(r.feed(kRequest), kRequest.size());
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  const Request q = r.take();
  EXPECT_EQ(q.get("client_address"), "192.0.2.10");
  EXPECT_EQ(q.get("instance"), "123.456.7");
  EXPECT_EQ(q.get("future_attribute"), "whatever");  // unknown attributes are kept, and ignored
  EXPECT_EQ(q.get("sasl_username"), "");
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.state(), RequestReader::State::Reading);
}

TEST(PolicyReader, ByteByByteIsTheSame) {
  RequestReader r;
  for (size_t i = 0; i < kRequest.size(); ++i) {
    ASSERT_EQ(r.state(), RequestReader::State::Reading) << i;
    EXPECT_EQ(r.feed(std::string_view(kRequest).substr(i, 1)), 1u);
  }
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  EXPECT_EQ(r.take().get("recipient"), "bob@remote.example");
}

TEST(PolicyReader, TwoRequestsBackToBackOnOneConnection) {
  const std::string two = kRequest + "request=smtpd_access_policy\nclient_address=2001:db8::1\n\n";
  RequestReader r;
  const size_t used = r.feed(two);
  EXPECT_EQ(used, kRequest.size());  // stops after the first request's empty line
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  EXPECT_EQ(r.take().get("client_address"), "192.0.2.10");
  EXPECT_EQ(r.feed(std::string_view(two).substr(used)), two.size() - used);
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  EXPECT_EQ(r.take().get("client_address"), "2001:db8::1");
}

TEST(PolicyReader, CrLfAndLeadingEmptyLinesAreTolerated) {
  RequestReader r;
  r.feed("\n\nrequest=smtpd_access_policy\r\nclient_address=192.0.2.1\r\n\r\n");
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  const Request q = r.take();
  EXPECT_EQ(q.get("request"), "smtpd_access_policy");
  EXPECT_EQ(q.get("client_address"), "192.0.2.1");
}

TEST(PolicyReader, ValueMayContainEquals) {
  RequestReader r;
  r.feed("ccert_subject=CN=x,O=y\n\n");
  ASSERT_EQ(r.state(), RequestReader::State::Complete);
  EXPECT_EQ(r.take().get("ccert_subject"), "CN=x,O=y");
}

TEST(PolicyReader, LineWithoutEqualsIsBad) {
  RequestReader r;
  r.feed("request=smtpd_access_policy\ngarbage\n\n");
  EXPECT_EQ(r.state(), RequestReader::State::Bad);
  EXPECT_EQ(r.error(), "malformed-line");
  RequestReader r2;
  r2.feed("=value\n\n");
  EXPECT_EQ(r2.state(), RequestReader::State::Bad);
}

TEST(PolicyReader, LineLimit) {
  RequestReader ok;
  const std::string at_limit = "a=" + std::string(kMaxLineOctets - 3, 'x') + "\n";  // exactly the limit with LF
  ok.feed(at_limit + "\n");
  EXPECT_EQ(ok.state(), RequestReader::State::Complete);
  RequestReader r;
  const std::string over = "a=" + std::string(kMaxLineOctets, 'x');  // no LF yet: still caught
  r.feed(over.substr(0, 1000));
  EXPECT_EQ(r.state(), RequestReader::State::Reading);
  r.feed(over.substr(1000));
  EXPECT_EQ(r.state(), RequestReader::State::Bad);
  EXPECT_EQ(r.error(), "line-too-long");
}

TEST(PolicyReader, AttributeLimit) {
  std::string req;
  for (size_t i = 0; i < kMaxAttributes; ++i) req += "a" + std::to_string(i) + "=1\n";
  RequestReader ok;
  ok.feed(req + "a0=repeated\n\n");  // a repeated name is no new attribute
  ASSERT_EQ(ok.state(), RequestReader::State::Complete);
  EXPECT_EQ(ok.take().get("a0"), "repeated");
  RequestReader r;
  r.feed(req + "one_more=1\n\n");
  EXPECT_EQ(r.state(), RequestReader::State::Bad);
  EXPECT_EQ(r.error(), "too-many-attributes");
}

TEST(PolicyReader, RequestLimit) {
  RequestReader r;
  const std::string line = "k=" + std::string(1000, 'v') + "\n";
  std::string req;
  for (int i = 0; req.size() <= kMaxRequestOctets; ++i) req += "k" + std::to_string(i) + line;
  r.feed(req);
  EXPECT_EQ(r.state(), RequestReader::State::Bad);
  EXPECT_EQ(r.error(), "request-too-long");
}

Request request(std::string client, std::string sasl = "", std::string type = "smtpd_access_policy") {
  Request r;
  r.attrs = {{"request", type}, {"client_address", client}, {"sasl_username", sasl}, {"sender", "a@b"}};
  return r;
}

TEST(PolicyDecision, Table) {
  std::string ip;
  auto pre = precheck(request("192.0.2.1", "", "junk"), ip);
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->action, "DUNNO");
  EXPECT_EQ(pre->reason, "not-smtpd-request");
  pre = precheck(request("192.0.2.1", "alice"), ip);
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->action, "DUNNO");
  EXPECT_EQ(pre->reason, "sasl");
  for (const char* bad : {"", "unknown", "[192.0.2.1]", "192.0.2.1 ", "host.example"}) {
    pre = precheck(request(bad), ip);
    ASSERT_TRUE(pre) << bad;
    EXPECT_EQ(pre->action, "DUNNO") << bad;
    EXPECT_EQ(pre->reason, "bad-address") << bad;
  }
  // The forms Postfix sends, canonicalised as grants are stored.
  EXPECT_FALSE(precheck(request("192.0.2.1"), ip));
  EXPECT_EQ(ip, "192.0.2.1");
  EXPECT_FALSE(precheck(request("2001:DB8:0::1"), ip));
  EXPECT_EQ(ip, "2001:db8::1");
  EXPECT_FALSE(precheck(request("::ffff:192.0.2.7"), ip));
  EXPECT_EQ(ip, "192.0.2.7");

  Lookup none;
  EXPECT_EQ(decide(none, "a@b").action, "DUNNO");
  EXPECT_EQ(decide(none, "a@b").reason, "no-grant");
  Lookup live;
  live.grant = authdb::Grant{};
  live.grant->user = "alice";
  const Decision ok = decide(live, "a@b");
  EXPECT_EQ(ok.action, "OK");
  EXPECT_EQ(ok.reason, "grant");
  EXPECT_EQ(ok.user, "alice");
  Lookup failed;
  failed.failed = true;
  failed.grant = live.grant;  // an error wins over anything half-read
  const Decision defer = decide(failed, "a@b");
  EXPECT_EQ(defer.action.rfind("DEFER_IF_REJECT 4.3.0 ", 0), 0u) << defer.action;
  EXPECT_EQ(defer.reason, "database-error");
  EXPECT_EQ(bad_request().action, "DUNNO");
  EXPECT_EQ(reply(ok), "action=OK\n\n");
}

}  // namespace
}  // namespace rg::policy

namespace rg::config {
namespace {

TEST(PolicydConfig, DefaultsAndSection) {
  const Config d = defaults("/base");
  ASSERT_EQ(d.policyd.listen.size(), 1u);
  EXPECT_EQ(d.policyd.listen[0].address, "127.0.0.1");
  EXPECT_EQ(d.policyd.listen[0].port, kDefaultPolicyPort);
  EXPECT_TRUE(d.policyd.grant_socket.path.empty());
  EXPECT_EQ(d.policyd.idle_timeout_seconds, 330);
  const Config c = parse(R"({"policyd": {"listen": [{"address": "::1", "port": 10099},
      {"path": "run/policy.sock", "mode": "0660"}],
      "grant_socket": {"path": "/run/g.sock", "allowed_users": ["root", "4242"]},
      "request_timeout_seconds": 5}})",
                         "/etc/relaygate.json", "/etc");
  ASSERT_EQ(c.policyd.listen.size(), 2u);
  EXPECT_EQ(c.policyd.listen[0].port, 10099);
  EXPECT_EQ(c.policyd.listen[1].path, "/etc/run/policy.sock");
  EXPECT_EQ(c.policyd.listen[1].mode, 0660u);
  EXPECT_EQ(c.policyd.grant_socket.allowed_uids, (std::vector<uint32_t>{0, 4242}));
  EXPECT_EQ(c.policyd.request_timeout_seconds, 5);
}

TEST(PolicydConfig, ErrorsNameFileAndKey) {
  auto error = [](const std::string& text) {
    try {
      parse(text, "/etc/relaygate.json", "/etc");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error(R"({"policyd": {"listen": [{"address": "127.0.0.1", "port": 1, "tls": "none"}]}})")
                .find("relaygate.json: policyd.listen[0].tls: unknown key"),
            std::string::npos);
  EXPECT_NE(error(R"({"policyd": {"listen": [{"path": "/x", "port": 1}]}})").find("policyd.listen[0]"),
            std::string::npos);
  EXPECT_NE(error(R"({"policyd": {"listen": [{"path": "/x", "mode": "rw"}]}})").find("policyd.listen[0].mode"),
            std::string::npos);
  EXPECT_NE(error(R"({"policyd": {"grant_socket": {"path": "/g", "allowed_users": ["no-such-user-rg13"]}}})")
                .find("relaygate.json: policyd.grant_socket.allowed_users[0]: no such user"),
            std::string::npos);
  // Off: the default "dovecot" need not exist.
  EXPECT_EQ(error(R"({"policyd": {"grant_socket": {"allowed_users": ["no-such-user-rg13"]}}})"), "no error");
  EXPECT_NE(error(R"({"policyd": {"idle_timeout_secnds": 5}})").find("did you mean"), std::string::npos);
}

}  // namespace
}  // namespace rg::config
