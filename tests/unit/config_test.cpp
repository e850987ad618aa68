// Strict config parsing: defaults, every error names the file and the key path.
#include <gtest/gtest.h>

#include "shared/config.h"

namespace {

using rg::config::ConfigError;
using rg::config::parse;

rg::config::Config P(const std::string& text) { return parse(text, "/etc/relaygate/relaygate.json", "/etc/relaygate"); }

std::string error_of(const std::string& text) {
  try {
    P(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Config, EmptyObjectGivesDesignDefaults) {
  auto c = P("{}");
  EXPECT_EQ(c.database, "/etc/relaygate/var/relaygate.db");
  EXPECT_EQ(c.status_file, "/etc/relaygate/var/status.json");
  EXPECT_EQ(c.grants.ttl_seconds, 1800);
  EXPECT_FALSE(c.auth.allow_plaintext_without_tls);
  ASSERT_EQ(c.pop3d.listen.size(), 2u);
  EXPECT_EQ(c.pop3d.listen[1].port, 2995);
  EXPECT_EQ(c.pop3d.listen[1].tls, rg::config::TlsMode::Implicit);
  ASSERT_EQ(c.smtpd.listen.size(), 3u);
  EXPECT_EQ(c.smtpd.listen[1].mode, rg::config::SmtpMode::Submission);
  EXPECT_EQ(c.smtpd.max_message_size, 26214400);
  EXPECT_EQ(c.smtpd.max_recipients, 100);
  EXPECT_EQ(c.pop3d.idle_timeout_seconds, 600);
}

TEST(Config, ReadsEveryDesignKey) {
  auto c = P(R"({
    "hostname": "mail.example.test", "database": "/var/lib/relaygate/db.sqlite",
    "status_file": "run/status.json", "maildir_root": "mail", "spool_dir": "spool",
    "local_domains": ["Example.TEST", "other.test"],
    "tls": {"certificate": "c.pem", "private_key": "k.pem"},
    "grants": {"ttl_seconds": 60}, "auth": {"allow_plaintext_without_tls": true},
    "pop3d": {"listen": [{"address": "::1", "port": 110, "tls": "starttls"}]},
    "smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "mode": "relay", "tls": "none"}],
              "trusted_networks": ["10.0.0.0/8", "::1"], "max_message_size": 1048576}})");
  EXPECT_EQ(c.hostname, "mail.example.test");
  EXPECT_EQ(c.database, "/var/lib/relaygate/db.sqlite");
  EXPECT_EQ(c.status_file, "/etc/relaygate/run/status.json");
  EXPECT_EQ(c.local_domains, (std::vector<std::string>{"example.test", "other.test"}));
  EXPECT_EQ(c.tls.private_key, "/etc/relaygate/k.pem");
  EXPECT_EQ(c.grants.ttl_seconds, 60);
  EXPECT_TRUE(c.auth.allow_plaintext_without_tls);
  EXPECT_EQ(c.pop3d.listen.at(0).address, "::1");
  EXPECT_EQ(c.smtpd.listen.at(0).port, 25);
  EXPECT_EQ(c.smtpd.trusted_networks.size(), 2u);
  EXPECT_EQ(c.smtpd.max_message_size, 1048576);
}

TEST(Config, ErrorsNameFileAndKey) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25}, {"address": "127.0.0.1", "port": "x"}]}})",
       "relaygate.json: smtpd.listen[1].port: expected an integer 1-65535, got \"x\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 65536}]}})",
       "relaygate.json: smtpd.listen[0].port: expected an integer 1-65535, got 65536"},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 0}]}})",
       "relaygate.json: smtpd.listen[0].port: expected an integer 1-65535, got 0"},
      {R"({"hostnam": "x"})", "relaygate.json: hostnam: unknown key (did you mean \"hostname\"?)"},
      {R"({"grants": {"ttl": 5}})", "relaygate.json: grants.ttl: unknown key"},
      {R"({"grants": {"ttl_seconds": "5"}})",
       "relaygate.json: grants.ttl_seconds: expected an integer 1-2592000, got \"5\""},
      {R"({"grants": {"ttl_seconds": 0}})", "relaygate.json: grants.ttl_seconds: expected an integer 1-2592000, got 0"},
      {R"({"auth": {"allow_plaintext_without_tls": "yes"}})",
       "relaygate.json: auth.allow_plaintext_without_tls: expected true or false, got \"yes\""},
      {R"({"pop3d": {"listen": [{"address": "127.0.0.1", "port": 110, "tls": "ssl"}]}})",
       "relaygate.json: pop3d.listen[0].tls: expected one of \"none\" \"starttls\" \"required\" \"implicit\", got "
       "\"ssl\""},
      {R"({"pop3d": {"listen": [{"address": "127.0.0.1", "port": 110, "mode": "relay"}]}})",
       "relaygate.json: pop3d.listen[0].mode: unknown key"},
      {R"({"pop3d": {"listen": [{"address": "localhost", "port": 110}]}})",
       "relaygate.json: pop3d.listen[0].address: expected an IPv4 or IPv6 address, got \"localhost\""},
      {R"({"pop3d": {"listen": [{"port": 110}]}})", "relaygate.json: pop3d.listen[0].address: required"},
      {R"({"smtpd": {"listen": [{"address": "::1", "port": 465, "mode": "submissions", "tls": "starttls"}]}})",
       "relaygate.json: smtpd.listen[0].tls: mode \"submissions\" needs \"implicit\" (RFC 8314)"},
      {R"({"local_domains": []})", "relaygate.json: local_domains: at least one domain is required"},
      {R"({"local_domains": ["a..b"]})", "relaygate.json: local_domains[0]: expected a domain name, got \"a..b\""},
      {R"({"local_domains": "example.test"})",
       "relaygate.json: local_domains: expected an array of strings, got \"example.test\""},
      {R"({"smtpd": {"trusted_networks": ["10.0.0.0/33"]}})",
       "relaygate.json: smtpd.trusted_networks[0]: expected an address or CIDR block, got \"10.0.0.0/33\""},
      {R"({"database": ""})", "relaygate.json: database: expected a non-empty string, got \"\""},
      {R"({"tls": []})", "relaygate.json: tls: expected an object, got []"},
      {R"([])", "relaygate.json: (top level): expected an object, got []"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(Config, ProxyProtocolListenersNeedTheirBalancers) {
  auto c = P(R"({"pop3d": {"listen": [{"address": "127.0.0.1", "port": 110},
                                        {"address": "::1", "port": 995, "tls": "implicit", "proxy_protocol": true,
                                         "proxy_from": ["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"]}]},
                 "smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": false}]}})");
  ASSERT_EQ(c.pop3d.listen.size(), 2u);
  EXPECT_FALSE(c.pop3d.listen[0].proxy_protocol);
  EXPECT_TRUE(c.pop3d.listen[0].proxy_from.empty());
  EXPECT_TRUE(c.pop3d.listen[1].proxy_protocol);
  EXPECT_EQ(c.pop3d.listen[1].proxy_from, (std::vector<std::string>{"127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"}));
  EXPECT_FALSE(c.smtpd.listen[0].proxy_protocol);
  for (const auto& l : P("{}").smtpd.listen) EXPECT_FALSE(l.proxy_protocol);  // defaults: no proxy listener

  const std::pair<const char*, const char*> errors[] = {
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from: required with \"proxy_protocol\": true (the balancers allowed to "
       "send the header)"},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true, "proxy_from": []}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from: required with \"proxy_protocol\": true (the balancers allowed to "
       "send the header)"},
      {R"({"pop3d": {"listen": [{"address": "127.0.0.1", "port": 110, "proxy_from": ["127.0.0.1"]}]}})",
       "relaygate.json: pop3d.listen[0].proxy_from: only used with \"proxy_protocol\": true"},
      {R"({"pop3d": {"listen": [{"address": "127.0.0.1", "port": 110, "proxy_protocol": false, "proxy_from": []}]}})",
       "relaygate.json: pop3d.listen[0].proxy_from: only used with \"proxy_protocol\": true"},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true,
                                  "proxy_from": ["127.0.0.1", "10.0.0.0/33"]}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from[1]: expected an address or CIDR block, got \"10.0.0.0/33\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true,
                                  "proxy_from": ["haproxy.example"]}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from[0]: expected an address or CIDR block, got \"haproxy.example\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true, "proxy_from": [""]}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from[0]: expected a non-empty string, got \"\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": "yes", "proxy_from": ["::1"]}]}})",
       "relaygate.json: smtpd.listen[0].proxy_protocol: expected true or false, got \"yes\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocol": true, "proxy_from": "::1"}]}})",
       "relaygate.json: smtpd.listen[0].proxy_from: expected an array of strings, got \"::1\""},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25, "proxy_protocl": true}]}})",
       "relaygate.json: smtpd.listen[0].proxy_protocl: unknown key (did you mean \"proxy_protocol\"?)"},
  };
  for (const auto& [text, message] : errors) EXPECT_EQ(error_of(text), message) << text;
}

TEST(Config, CommentsAreAllowed) {
  auto c = P(R"(// the office gateway
    {
      /* block comment
         over two lines */
      "hostname": "mail.example.test",  // trailing comment
      "grants": { "ttl_seconds": 60 /* inline */ }
    })");
  EXPECT_EQ(c.hostname, "mail.example.test");
  EXPECT_EQ(c.grants.ttl_seconds, 60);
  // A comment marker inside a string is text, not a comment.
  EXPECT_EQ(P(R"({"hostname": "a//b.test"})").hostname, "a//b.test");
}

TEST(Config, DuplicateKeyIsAnErrorAtAnyDepth) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {R"({"hostname": "a.test", "hostname": "b.test"})", "relaygate.json: hostname: duplicate key"},
      {R"({"smtpd": {"max_errors": 5, "max_errors": 50}})", "relaygate.json: smtpd.max_errors: duplicate key"},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "port": 25},
                                {"address": "127.0.0.1", "port": 26, "port": 27}]}})",
       "relaygate.json: smtpd.listen[1].port: duplicate key"},
      {R"({"pop3d": {"listen": [[], {"address": "::1", "tls": "none", "tls": "implicit"}]}})",
       "relaygate.json: pop3d.listen[1].tls: duplicate key"},
      {R"({"smtpd": {}, "grants": {}, "smtpd": {}})", "relaygate.json: smtpd: duplicate key"},
      {R"({"auth": {"mechanisms": ["PLAIN"]}, "x": {"a": {"b": 1, "b": 2}}})", "relaygate.json: x.a.b: duplicate key"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(Config, SameKeyInDifferentObjectsIsFine) {
  auto c = P(R"({"smtpd": {"max_connections": 7, "listen": [{"address": "127.0.0.1", "port": 25},
                                                            {"address": "127.0.0.1", "port": 587, "mode": "submission"}]},
                 "pop3d": {"max_connections": 8, "listen": [{"address": "127.0.0.1", "port": 110}]},
                 "queue": {"max_connections": 3}})");
  EXPECT_EQ(c.smtpd.max_connections, 7);
  EXPECT_EQ(c.pop3d.max_connections, 8);
  EXPECT_EQ(c.queue.max_connections, 3);
  EXPECT_EQ(c.smtpd.listen.at(1).port, 587);
}

TEST(Config, UnknownKeySuggestsTheNearestKnownKey) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {R"({"local_domain": ["x.test"]})",
       "relaygate.json: local_domain: unknown key (did you mean \"local_domains\"?)"},
      {R"({"Hostname": "x"})", "relaygate.json: Hostname: unknown key (did you mean \"hostname\"?)"},
      {R"({"smtpd": {"max_erors": 5}})", "relaygate.json: smtpd.max_erors: unknown key (did you mean \"max_errors\"?)"},
      {R"({"smtpd": {"listen": [{"address": "127.0.0.1", "prot": 25}]}})",
       "relaygate.json: smtpd.listen[0].prot: unknown key (did you mean \"port\"?)"},
      {R"({"run_as": {"usr": "mail"}})", "relaygate.json: run_as.usr: unknown key (did you mean \"user\"?)"},
      // Nothing close: no suggestion (and a short key never matches a distant short one).
      {R"({"colour": "blue"})", "relaygate.json: colour: unknown key"},
      {R"({"tls": {"key": "k.pem"}})", "relaygate.json: tls.key: unknown key"},
      {R"({"grants": {"ttl": 5}})", "relaygate.json: grants.ttl: unknown key"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

// The shipped example (installed as /etc/relaygate/relaygate.json by the package) must load.
TEST(Config, ExampleFileLoads) {
  auto c = rg::config::load(RG_EXAMPLE_CONFIG);
  EXPECT_EQ(c.database, "/var/lib/relaygate/relaygate.db");
  EXPECT_EQ(c.spool_dir, "/var/spool/relaygate");
  ASSERT_FALSE(c.smtpd.listen.empty());
  EXPECT_EQ(c.smtpd.listen.front().port, 25);
  EXPECT_EQ(c.run_as.user, "relaygate");
  EXPECT_FALSE(c.tls.generate_self_signed);
  EXPECT_EQ(c.auth.mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_FALSE(c.auth.mechanisms_without_tls.has_value());
  EXPECT_FALSE(c.smarthost.configured());
}

TEST(Config, InvalidJsonNamesTheFile) {
  std::string e = error_of("{\"hostname\": ");
  EXPECT_EQ(e.rfind("relaygate.json: not valid JSON", 0), 0u) << e;
}

// Found by fuzz_config (tests/fuzz/corpus/config/crash-number-overflow): a number
// beyond a double was nlohmann's out_of_range, which escaped as an unexpected exception.
TEST(Config, NumberOverflowIsAConfigError) {
  for (const char* text : {"1e808", "{\"queue\": {\"max_retry_seconds\": 1e999}}", "-1e400"}) {
    std::string e = error_of(text);
    EXPECT_EQ(e.rfind("relaygate.json: not valid JSON", 0), 0u) << text << ": " << e;
  }
}

TEST(Config, MissingFileNamesThePath) {
  try {
    rg::config::load("/nonexistent/relaygate.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/relaygate.json"), std::string::npos);
  }
}

TEST(Config, SmarthostAndQueueDefaults) {
  auto c = P("{}");
  EXPECT_FALSE(c.smarthost.configured());  // no smarthost: non-local mail is refused at RCPT
  EXPECT_EQ(c.smarthost.tls, rg::config::TlsMode::Required);
  EXPECT_TRUE(c.smarthost.verify);
  EXPECT_EQ(c.queue.max_lifetime_seconds, 5 * 86400);
  EXPECT_EQ(c.queue.first_retry_seconds, 300);
  EXPECT_EQ(c.queue.max_retry_seconds, 3600);
  EXPECT_EQ(c.queue.delay_warning_seconds, 14400);
}

TEST(Config, ReadsSmarthostAndQueue) {
  auto c = P(R"({"smarthost": {"host": "relay.isp.test", "port": 587, "tls": "starttls", "ca_file": "ca.pem",
                               "verify": false, "username": "office", "password_file": "/etc/relaygate/sh.pw",
                               "connect_timeout_seconds": 5, "command_timeout_seconds": 60, "data_timeout_seconds": 120},
                 "queue": {"max_lifetime_seconds": 3600, "first_retry_seconds": 1, "max_retry_seconds": 2,
                           "delay_warning_seconds": 0, "max_connections": 2, "max_messages_per_connection": 10,
                           "scan_interval_seconds": 5}})");
  EXPECT_TRUE(c.smarthost.configured());
  EXPECT_EQ(c.smarthost.host, "relay.isp.test");
  EXPECT_EQ(c.smarthost.port, 587);
  EXPECT_EQ(c.smarthost.tls, rg::config::TlsMode::StartTls);
  EXPECT_EQ(c.smarthost.ca_file, "/etc/relaygate/ca.pem");
  EXPECT_FALSE(c.smarthost.verify);
  EXPECT_EQ(c.smarthost.username, "office");
  EXPECT_EQ(c.smarthost.password_file, "/etc/relaygate/sh.pw");
  EXPECT_EQ(c.smarthost.connect_timeout_seconds, 5);
  EXPECT_EQ(c.smarthost.data_timeout_seconds, 120);
  EXPECT_EQ(c.queue.max_lifetime_seconds, 3600);
  EXPECT_EQ(c.queue.first_retry_seconds, 1);
  EXPECT_EQ(c.queue.max_retry_seconds, 2);
  EXPECT_EQ(c.queue.delay_warning_seconds, 0);
  EXPECT_EQ(c.queue.max_connections, 2);
  EXPECT_EQ(c.queue.scan_interval_seconds, 5);
  // The port follows the TLS mode unless given: 465 for implicit TLS (RFC 8314), else 25.
  EXPECT_EQ(P(R"({"smarthost": {"host": "192.0.2.1", "tls": "implicit"}})").smarthost.port, 465);
  EXPECT_EQ(P(R"({"smarthost": {"host": "192.0.2.1", "tls": "none"}})").smarthost.port, 25);
  EXPECT_EQ(P(R"({"smarthost": {"host": "::1"}})").smarthost.host, "::1");
}

TEST(Config, SmarthostAndQueueErrors) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {R"({"smarthost": {}})", "relaygate.json: smarthost.host: required"},
      {R"({"smarthost": {"host": "a b"}})",
       "relaygate.json: smarthost.host: expected a host name or an IP address, got \"a b\""},
      {R"({"smarthost": {"host": "x.test", "port": 0}})",
       "relaygate.json: smarthost.port: expected an integer 1-65535, got 0"},
      {R"({"smarthost": {"host": "x.test", "tls": "yes"}})",
       "relaygate.json: smarthost.tls: expected one of \"none\" \"starttls\" \"required\" \"implicit\", got \"yes\""},
      {R"({"smarthost": {"host": "x.test", "verify": "no"}})",
       "relaygate.json: smarthost.verify: expected true or false, got \"no\""},
      {R"({"smarthost": {"host": "x.test", "username": "u"}})",
       "relaygate.json: smarthost.password_file: required with smarthost.username"},
      {R"({"smarthost": {"host": "x.test", "password_file": "p"}})",
       "relaygate.json: smarthost.username: required with smarthost.password_file"},
      {R"({"smarthost": {"host": "x.test", "password": "secret"}})", "relaygate.json: smarthost.password: unknown key"},
      {R"({"queue": {"first_retry_seconds": 0}})",
       "relaygate.json: queue.first_retry_seconds: expected an integer 1-86400, got 0"},
      {R"({"queue": {"first_retry_seconds": 600, "max_retry_seconds": 60}})",
       "relaygate.json: queue.max_retry_seconds: must be at least queue.first_retry_seconds (600)"},
      {R"({"queue": {"delay_warning_seconds": -1}})",
       "relaygate.json: queue.delay_warning_seconds: expected an integer 0-5184000, got -1"},
      {R"({"queue": {"max_lifetime": 5}})", "relaygate.json: queue.max_lifetime: unknown key"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

}  // namespace
