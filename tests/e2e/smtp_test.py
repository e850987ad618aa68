#!/usr/bin/env python3
"""smtpd end to end (issue 4): real clients over loopback against the real daemons.

Each test class starts one Gateway (smtpd, and pop3d where POP-before-SMTP is involved) and
stops it at the end; every socket operation is bounded by a timeout."""
import base64
import hashlib
import hmac
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import POP3From, HOSTNAME, Gateway, LineClient, assert_secret_not_logged, client_tls_context  # noqa: E402

PW = "s3cret-pass"
LEGACY_PW = "legacy-pass"
T = 15  # seconds, per client operation


def tool(name):
    return harness.require_tool(name)  # a failure in CI, a visible skip elsewhere


def run(argv, input=None, timeout=60):
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout)


def smtp(gw, mode="relay", source=None):
    port = gw.port("smtpd", mode=mode)
    if mode == "submissions":
        return smtplib.SMTP_SSL("127.0.0.1", port, timeout=T, context=client_tls_context(),
                                source_address=(source, 0) if source else None)
    return smtplib.SMTP("127.0.0.1", port, timeout=T, source_address=(source, 0) if source else None)


def expect_code(test, fn, code, enhanced=None):
    try:
        fn()
    except smtplib.SMTPResponseException as e:
        test.assertEqual(e.smtp_code, code, e.smtp_error)
        if enhanced:
            test.assertTrue(e.smtp_error.decode().startswith(enhanced), e.smtp_error)
        return e
    except smtplib.SMTPRecipientsRefused as e:
        (c, msg), = e.recipients.values()
        test.assertEqual(c, code, msg)
        if enhanced:
            test.assertTrue(msg.decode().startswith(enhanced), msg)
        return e
    test.fail("expected %d" % code)


class SmtpBase(unittest.TestCase):
    overrides = {}
    daemons = ("smtpd",)

    @classmethod
    def setUpClass(cls):
        cls.gw = Gateway(harness.deep_merge({"auth": {"failure_delay_max_ms": 300}}, cls.overrides))
        cls.gw.add_user("alice", PW)
        cls.gw.add_user("bob", LEGACY_PW, legacy=True)
        for d in cls.daemons:
            cls.gw.start(d)

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()

    def local_messages(self, user):
        md = self.gw.maildir(user)
        out = []
        for name in self.gw.messages(user, "new"):
            with open(os.path.join(md, "new", name), "rb") as f:
                out.append(f.read())
        return out

    def queued(self):
        return json.loads(self.gw.ctl("queue", "list", "--json").stdout)


class Submission(SmtpBase):
    """SMTP AUTH with every mechanism and the common clients. CRAM-MD5 is offered because the
    administrator lists it (auth.mechanisms, issue 9), as an office with legacy mailers would."""
    overrides = {"smtpd": {"max_errors": 30},
                 "auth": {"mechanisms": ["PLAIN", "LOGIN", "CRAM-MD5"], "mechanisms_without_tls": ["CRAM-MD5"]}}

    def test_smtplib_each_mechanism_over_starttls(self):
        for mech, user, pw in (("PLAIN", "alice", PW), ("LOGIN", "alice", PW), ("CRAM-MD5", "bob", LEGACY_PW)):
            with self.subTest(mech=mech):
                with smtp(self.gw, "submission") as s:
                    s.starttls(context=client_tls_context())
                    s.ehlo("client.test")
                    # Over TLS exactly the configured list, in its order.
                    self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN", "CRAM-MD5"])
                    s.user, s.password = user, pw
                    code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
                    self.assertEqual(code, 235)
                    s.sendmail(user + "@example.test", ["far@remote.test"], b"Subject: t\r\n\r\nbody\r\n")
        self.assertTrue(any(q["recipients"][0]["address"] == "far@remote.test" for q in self.queued()))

    def test_smtp_ssl_and_multiple_recipients(self):
        before = len(self.local_messages("alice"))
        with smtp(self.gw, "submissions") as s:
            s.login("alice@example.test", PW)
            refused = s.sendmail("alice@example.test", ["alice@example.test", "bob@example.test", "x@remote.test"],
                                 b"Subject: many\r\n\r\nto three\r\n")
            self.assertEqual(refused, {})
        self.assertEqual(len(self.local_messages("alice")), before + 1)
        msg = self.local_messages("alice")[-1]
        self.assertTrue(msg.startswith(b"Return-Path: <alice@example.test>\r\nReceived: from "))
        self.assertIn(b"with ESMTPSA id", msg)
        self.assertIn(b"(authenticated as alice by ", msg)
        self.assertIn(b"(using TLSv1.", msg)

    def test_plain_authzid_forms(self):
        for blob, ok in ((b"alice\0alice\0" + PW.encode(), True), (b"\0alice\0" + PW.encode(), True),
                         (b"bob\0alice\0" + PW.encode(), False), (b"\0alice\0wrong", False)):
            with self.subTest(blob=blob):
                with smtp(self.gw, "submissions") as s:
                    s.ehlo("c.test")
                    code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(blob).decode())
                    if ok:
                        self.assertEqual((code, msg[:5]), (235, b"2.7.0"))
                    else:
                        self.assertEqual((code, msg[:5]), (535, b"5.7.8"))

    def test_plaintext_mechanisms_need_tls(self):
        with smtp(self.gw, "submission") as s:
            s.ehlo("c.test")
            self.assertNotIn("PLAIN", s.esmtp_features.get("auth", ""))
            self.assertIn("CRAM-MD5", s.esmtp_features.get("auth", ""))
            code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0" + PW.encode()).decode())
            self.assertEqual((code, msg[:6]), (538, b"5.7.11"))
            code, msg = s.docmd("MAIL", "FROM:<alice@example.test>")
            self.assertEqual((code, msg[:5]), (530, b"5.7.0"))

    def test_auth_errors(self):
        with LineClient.open(self.gw.port("smtpd", mode="submissions"), tls=True) as c:
            self.assertTrue(c.line().startswith("220 "))
            c.send("EHLO c.test\r\n")
            while not c.line().startswith("250 "):
                pass
            self.assertTrue(c.cmd("AUTH FOO").startswith("504 5.5.4"))
            self.assertTrue(c.cmd("AUTH PLAIN !!!").startswith("501 5.5.2"))
            self.assertTrue(c.cmd("AUTH LOGIN").startswith("334 VXNlcm5hbWU6"))
            self.assertTrue(c.cmd("*").startswith("501 5.7.0"))
            # Switching mechanisms after '*' many times stays correct (CVE-2011-1720 class).
            for _ in range(5):
                self.assertTrue(c.cmd("AUTH CRAM-MD5").startswith("334 "))
                self.assertTrue(c.cmd("*").startswith("501 5.7.0"))
                self.assertTrue(c.cmd("AUTH LOGIN").startswith("334 "))
                self.assertTrue(c.cmd("*").startswith("501 5.7.0"))
            self.assertTrue(c.cmd("AUTH LOGIN").startswith("334 VXNlcm5hbWU6"))
            self.assertTrue(c.cmd("A" * 12400).startswith("500 5.5.6"))
            self.assertTrue(c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PW.encode()).decode()).startswith("235 2.7.0"))
            self.assertTrue(c.cmd("AUTH PLAIN AAAA").startswith("503 5.5.1"))
            self.assertTrue(c.cmd("MAIL FROM:<alice@example.test>").startswith("250 "))
        log = self.gw.log("smtpd")
        self.assertIn("outcome=aborted", log)
        # Only base64 crossed the wire: the raw password, its base64 and the whole PLAIN blob's.
        assert_secret_not_logged(self, log, PW, b"\0alice\0" + PW.encode())

    def test_cram_md5_challenge_is_fresh(self):
        seen = set()
        for _ in range(5):
            with LineClient.open(self.gw.port("smtpd", mode="relay")) as c:
                c.line()
                c.send("EHLO c.test\r\n")
                while not c.line().startswith("250 "):
                    pass
                ch = c.cmd("AUTH CRAM-MD5")
                self.assertTrue(ch.startswith("334 "))
                challenge = base64.b64decode(ch[4:])
                self.assertRegex(challenge.decode(), r"^<[^<>@]+@mail\.example\.test>$")
                seen.add(challenge)
                digest = hmac.new(LEGACY_PW.encode(), challenge, hashlib.md5).hexdigest()
                self.assertTrue(c.cmd(base64.b64encode(b"bob " + digest.encode()).decode()).startswith("235 2.7.0"))
        self.assertEqual(len(seen), 5)

    def test_swaks(self):
        swaks = tool("swaks")
        port = self.gw.port("smtpd", mode="submission")
        # CRAM-MD5 is what legacy clients use without TLS, where it is the mechanism advertised.
        for auth, user, pw, tls in (("PLAIN", "alice", PW, ["--tls"]), ("LOGIN", "alice", PW, ["--tls"]),
                                    ("CRAM-MD5", "bob", LEGACY_PW, [])):
            with self.subTest(auth=auth):
                argv = [swaks, "--server", "127.0.0.1", "--port", str(port), "--from", user + "@example.test",
                        "--to", "far@remote.test", "--auth", auth, "--auth-user", user, "--auth-password", pw,
                        "--timeout", "15"] + tls
                p = run(argv)
                self.assertEqual(p.returncode, 0, p.stdout.decode()[-2000:])
                self.assertIn(b"235 2.7.0", p.stdout)
                self.assertIn(b"250 2.0.0 Ok: queued as", p.stdout)
        p = run([swaks, "--server", "127.0.0.1", "--port", str(self.gw.port("smtpd", mode="submissions")), "--tlsc",
                 "--from", "alice@example.test", "--to", "alice@example.test", "--auth", "PLAIN",
                 "--auth-user", "alice", "--auth-password", PW, "--timeout", "15"])
        self.assertEqual(p.returncode, 0, p.stdout.decode()[-2000:])

    def test_cram_md5_forced_over_starttls_and_465(self):
        # Issue 9: legacy mailers set to "encrypted password" work over TLS once the administrator
        # lists CRAM-MD5 (this class's auth.mechanisms): swaks, curl and msmtp, STARTTLS and 465.
        sub, subs = self.gw.port("smtpd", mode="submission"), self.gw.port("smtpd", mode="submissions")
        base = ["--from", "bob@example.test", "--to", "far@remote.test", "--auth", "CRAM-MD5",
                "--auth-user", "bob", "--auth-password", LEGACY_PW, "--timeout", "15", "--server", "127.0.0.1"]
        for extra in (["--port", str(sub), "--tls"], ["--port", str(subs), "--tlsc"]):
            with self.subTest(client="swaks", extra=extra):
                p = run([tool("swaks")] + base + extra)
                self.assertEqual(p.returncode, 0, p.stdout.decode()[-2000:])
                self.assertIn(b"235 2.7.0", p.stdout)
        msg = b"From: bob@example.test\r\nSubject: cram\r\n\r\nvia curl\r\n"
        for url, extra in (("smtp://127.0.0.1:%d" % sub, ["--ssl-reqd"]), ("smtps://127.0.0.1:%d" % subs, [])):
            with self.subTest(client="curl", url=url):
                p = run([tool("curl"), "-sS", "-k", "--max-time", "20", url] + extra +
                        ["--login-options", "AUTH=CRAM-MD5", "--user", "bob:" + LEGACY_PW,
                         "--mail-from", "bob@example.test", "--mail-rcpt", "far@remote.test", "-T", "-"], input=msg)
                self.assertEqual(p.returncode, 0, p.stderr.decode())
        for port, starttls in ((sub, "on"), (subs, "off")):
            with self.subTest(client="msmtp", port=port):
                p = run([tool("msmtp"), "--host=127.0.0.1", "--port=%d" % port, "--tls=on", "--tls-starttls=" + starttls,
                         "--tls-certcheck=off", "--auth=cram-md5", "--user=bob", "--passwordeval=echo " + LEGACY_PW,
                         "--from=bob@example.test", "far@remote.test"], input=b"Subject: msmtp\r\n\r\nvia msmtp\r\n")
                self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode())
        self.assertGreaterEqual(len(self.gw.log_lines("smtpd", r"event=auth outcome=ok ip=127\.0\.0\.1 proto=smtp mech=CRAM-MD5 user=bob ")), 6)

    def test_curl(self):
        curl = tool("curl")
        msg = b"From: alice@example.test\r\nSubject: curl\r\n\r\nvia curl\r\n"
        cases = [("smtp://127.0.0.1:%d" % self.gw.port("smtpd", mode="submission"), ["--ssl-reqd"], "AUTH=PLAIN", "alice", PW),
                 ("smtp://127.0.0.1:%d" % self.gw.port("smtpd", mode="submission"), ["--ssl-reqd"], "AUTH=LOGIN", "alice", PW),
                 ("smtp://127.0.0.1:%d" % self.gw.port("smtpd", mode="relay"), [], "AUTH=CRAM-MD5", "bob", LEGACY_PW),
                 ("smtps://127.0.0.1:%d" % self.gw.port("smtpd", mode="submissions"), [], "AUTH=PLAIN", "alice", PW)]
        for url, extra, opt, user, pw in cases:
            with self.subTest(url=url, opt=opt):
                p = run([curl, "-sS", "-k", "--max-time", "20", url] + extra +
                        ["--login-options", opt, "--user", "%s:%s" % (user, pw),
                         "--mail-from", user + "@example.test", "--mail-rcpt", "far@remote.test", "-T", "-"], input=msg)
                self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_perl_net_smtp(self):
        perl = tool("perl")
        script = r'''
use strict; use Net::SMTP; use IO::Socket::SSL;
my ($port, $user, $pw) = @ARGV;
my $s = Net::SMTP->new("127.0.0.1", Port => $port, Timeout => 15, Hello => "perl.test") or die "connect: $@";
$s->starttls(SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE()) or die "starttls failed";
$s->auth($user, $pw) or die "auth failed: " . $s->message;
$s->mail("$user\@example.test") or die "mail: " . $s->message;
$s->to("far\@remote.test") or die "rcpt: " . $s->message;
$s->data("Subject: perl\r\n\r\nfrom Net::SMTP\r\n") or die "data: " . $s->message;
print "OK ", $s->message;
$s->quit;
'''
        # Net::SMTP picks the "strongest" advertised mechanism itself: with CRAM-MD5 listed (this
        # class's auth.mechanisms) a legacy user's "encrypted password" mailer logs in with it.
        p = run([perl, "-e", script, str(self.gw.port("smtpd", mode="submission")), "bob", LEGACY_PW])
        harness.check_perl_modules(p)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn(b"OK ", p.stdout)
        self.gw.wait_log("smtpd", r"event=auth outcome=ok ip=127\.0\.0\.1 proto=smtp mech=CRAM-MD5 user=bob ")


class DigestMd5(SmtpBase):
    """DIGEST-MD5 (RFC 2831; off by default, RFC 6331) with curl when enabled in the config."""
    overrides = {"auth": {"mechanisms_without_tls": ["CRAM-MD5", "DIGEST-MD5"]}}

    def test_curl_digest_md5(self):
        curl = tool("curl")
        with smtp(self.gw, "relay") as s:
            s.ehlo("c.test")
            self.assertIn("DIGEST-MD5", s.esmtp_features.get("auth", ""))
        msg = b"From: bob@example.test\r\nSubject: digest\r\n\r\nvia DIGEST-MD5\r\n"
        url = "smtp://127.0.0.1:%d" % self.gw.port("smtpd", mode="relay")
        for user, pw, ok in (("bob", LEGACY_PW, True), ("bob", "wrong", False)):
            with self.subTest(ok=ok):
                p = run([curl, "-sS", "--max-time", "20", url, "--login-options", "AUTH=DIGEST-MD5",
                         "--user", "%s:%s" % (user, pw), "--mail-from", "bob@example.test",
                         "--mail-rcpt", "far@remote.test", "-T", "-"], input=msg)
                self.assertEqual(p.returncode == 0, ok, p.stderr.decode())
        self.gw.wait_log("smtpd", r"event=auth outcome=ok ip=127\.0\.0\.1 proto=smtp mech=DIGEST-MD5 user=bob ")
        self.gw.wait_log("smtpd", r"event=auth outcome=failed reason=digest-md5-response-mismatch ip=127\.0\.0\.1 proto=smtp mech=DIGEST-MD5 ")


class RelayPolicy(SmtpBase):
    """POP-before-SMTP grants, the relay decision per RCPT, and routing tricks."""
    daemons = ("smtpd", "pop3d")
    overrides = {"grants": {"ttl_seconds": 3}, "auth": {"allow_plaintext_without_tls": True, "mechanisms_without_tls": ["PLAIN", "LOGIN"]}}

    def pop_login(self, source):
        p = POP3From("127.0.0.1", self.gw.port("pop3d", tls="starttls"), source, timeout=T)
        p.user("alice")
        p.pass_(PW)
        p.quit()

    def test_pop_before_smtp_end_to_end(self):
        self.pop_login("127.0.0.2")
        with smtp(self.gw, "relay", source="127.0.0.2") as s:
            self.assertEqual(s.sendmail("someone@example.test", ["far@remote.test"], b"Subject: g\r\n\r\nx\r\n"), {})
        with smtp(self.gw, "relay", source="127.0.0.3") as s:
            expect_code(self, lambda: s.sendmail("someone@example.test", ["far@remote.test"], b"x\r\n"), 554, "5.7.1")
        # Submission port: a granted IP may submit without AUTH.
        with smtp(self.gw, "submission", source="127.0.0.2") as s:
            self.assertEqual(s.sendmail("alice@example.test", ["far2@remote.test"], b"Subject: g\r\n\r\nx\r\n"), {})
        grants = {g["ip"]: g for g in self.gw.grants()}
        self.assertIsNotNone(grants["127.0.0.2"]["last_used_at"])
        time.sleep(3.2)  # the test ttl is 3 s
        with smtp(self.gw, "relay", source="127.0.0.2") as s:
            expect_code(self, lambda: s.sendmail("someone@example.test", ["far@remote.test"], b"x\r\n"), 554, "5.7.1")
        with smtp(self.gw, "submission", source="127.0.0.2") as s:
            s.ehlo("c.test")
            code, msg = s.docmd("MAIL", "FROM:<alice@example.test>")
            self.assertEqual((code, msg[:5]), (530, b"5.7.0"))
        msg = [m for m in (open(os.path.join(self.gw.path("spool_dir"), "queue", f), "rb").read()
                           for f in os.listdir(os.path.join(self.gw.path("spool_dir"), "queue")) if f.endswith(".msg"))]
        self.assertTrue(any(b"(POP-before-SMTP grant of alice)" in m for m in msg))

    def test_grant_made_a_moment_ago_works_without_restart(self):
        with smtp(self.gw, "relay", source="127.0.0.4") as s:
            s.ehlo("c.test")
            s.mail("x@example.test")
            self.assertEqual(s.rcpt("far@remote.test")[0], 554)
            self.pop_login("127.0.0.4")  # same SMTP session: checked again at this RCPT
            self.assertEqual(s.rcpt("far@remote.test")[0], 250)

    def test_relay_tricks_never_relay(self):
        tricks = {
            "u%remote.test@example.test": 550, "remote.test!u@example.test": 550, "@example.test:u@remote.test": 554,
            '"u@remote.test"@example.test': 550, "u@remote.test@example.test": 501, "u@[192.0.2.1]": 554,
            "u@remote.test.": 554, "u@REMOTE.test": 554, "nosuchuser@example.test": 550,
        }
        with smtp(self.gw, "relay", source="127.0.0.9") as s:
            s.ehlo("c.test")
            s.mail("x@example.test")
            for rcpt, code in tricks.items():
                with self.subTest(rcpt=rcpt):
                    got = s.docmd("RCPT", "TO:<%s>" % rcpt)
                    self.assertEqual(got[0], code, got)
            # Local names in any case or with a trailing dot are still local.
            for rcpt in ("alice@EXAMPLE.TEST", "alice@example.test.", "ALICE@example.test"):
                self.assertEqual(s.docmd("RCPT", "TO:<%s>" % rcpt)[0], 250, rcpt)


class Ipv6(SmtpBase):
    """Listeners on ::1: POP-before-SMTP grants and relay decisions work for IPv6 clients."""
    daemons = ("smtpd", "pop3d")
    overrides = {"auth": {"allow_plaintext_without_tls": True, "mechanisms_without_tls": ["PLAIN", "LOGIN"]},
                 "smtpd": {"listen": [{"address": "::1", "port": "auto", "mode": "relay", "tls": "starttls"},
                                      {"address": "127.0.0.1", "port": "auto", "mode": "submission", "tls": "starttls"},
                                      {"address": "::1", "port": "auto", "mode": "submissions", "tls": "implicit"}]},
                 "pop3d": {"listen": [{"address": "::1", "port": "auto", "tls": "starttls"}]}}

    def test_grant_over_ipv6_lets_ipv6_client_relay(self):
        port = self.gw.port("smtpd", mode="relay")
        with smtplib.SMTP("::1", port, timeout=T) as s:
            expect_code(self, lambda: s.sendmail("a@example.test", ["far@remote.test"], b"x\r\n"), 554, "5.7.1")
        p = poplib.POP3("::1", self.gw.port("pop3d"), timeout=T)
        p.user("alice")
        p.pass_(PW)
        p.quit()
        self.assertEqual([g["ip"] for g in self.gw.grants()], ["::1"])
        with smtplib.SMTP("::1", port, timeout=T) as s:
            self.assertEqual(s.sendmail("a@example.test", ["far@remote.test"], b"Subject: v6\r\n\r\nx\r\n"), {})
        # The grant is for ::1 only: an IPv4 client is still refused.
        with smtp(self.gw, "submission") as s:
            s.ehlo("c.test")
            self.assertEqual(s.docmd("MAIL", "FROM:<a@example.test>")[0], 530)
        self.assertIn("ip=::1", self.gw.log("smtpd"))

    def test_smtps_over_ipv6(self):
        with smtplib.SMTP_SSL("::1", self.gw.port("smtpd", mode="submissions"), timeout=T,
                              context=client_tls_context()) as s:
            s.login("alice", PW)
            self.assertEqual(s.sendmail("alice@example.test", ["alice@example.test"], b"Subject: v6\r\n\r\nx\r\n"), {})


class TrustedNetworks(SmtpBase):
    overrides = {"smtpd": {"trusted_networks": ["127.0.0.5/32"]}}

    def test_trusted_network_relays(self):
        with smtp(self.gw, "relay", source="127.0.0.5") as s:
            self.assertEqual(s.sendmail("a@example.test", ["far@remote.test"], b"x\r\n"), {})
        with smtp(self.gw, "relay", source="127.0.0.6") as s:
            expect_code(self, lambda: s.sendmail("a@example.test", ["far@remote.test"], b"x\r\n"), 554, "5.7.1")


class DatabaseDown(SmtpBase):
    def test_unreadable_db_is_451_never_relay(self):
        import sqlite3
        with smtp(self.gw, "relay", source="127.0.0.7") as s:
            s.ehlo("c.test")
            s.mail("x@example.test")
            self.assertEqual(s.docmd("RCPT", "TO:<far@remote.test>")[0], 554)
            # Another process breaks the database under the running daemon.
            con = sqlite3.connect(self.gw.path("database"))
            con.executescript("DROP TABLE grants; DROP TABLE users;")
            con.close()
            for rcpt in ("far@remote.test", "alice@example.test"):
                code, msg = s.docmd("RCPT", "TO:<%s>" % rcpt)
                self.assertEqual((code, msg[:5]), (451, b"4.3.0"), msg)
        self.assertIn("relay-check-failed", self.gw.log("smtpd"))


class DiskFull(SmtpBase):
    """Maildir root and spool on a tiny tmpfs: a message that does not fit is 452 4.3.1 and
    leaves no file behind (needs root for the mount, as CI has)."""
    overrides = {"smtpd": {"max_message_size": 4 * 1024 * 1024}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mounts = []
        for key in ("maildir_root", "spool_dir"):
            path = cls.gw.path(key)
            os.makedirs(path, exist_ok=True)
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", path], capture_output=True)
            if p.returncode != 0:
                cls.tearDownClass()
                raise unittest.SkipTest("cannot mount a tmpfs here: %s" % p.stderr.decode().strip())
            cls.mounts.append(path)
        cls.gw.stop("smtpd")
        cls.gw.start("smtpd")  # recreates spool/tmp and spool/queue on the new mount

    @classmethod
    def tearDownClass(cls):
        for path in getattr(cls, "mounts", []):
            subprocess.run(["umount", "-l", path], capture_output=True)
        super().tearDownClass()

    def files_under(self, key):
        out = []
        for root, _, files in os.walk(self.gw.path(key)):
            out += [os.path.join(root, f) for f in files if not f.startswith(".")]
        return out

    def test_full_disk_is_452_and_leaves_nothing(self):
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 600  # ~600 KB > 256 KB
        for rcpt, user in (("alice@example.test", True), ("far@remote.test", False)):
            with self.subTest(rcpt=rcpt):
                with smtp(self.gw, "submissions") as s:
                    s.login("alice", PW)
                    e = expect_code(self, lambda: s.sendmail("alice@example.test", [rcpt], big), 452, "4.3.1")
                    self.assertIsNotNone(e)
                    # The session goes on, and a small message still fits.
                    self.assertEqual(s.sendmail("alice@example.test", [rcpt], b"Subject: small\r\n\r\nok\r\n"), {})
        maildir_files = self.files_under("maildir_root")
        self.assertEqual(len(maildir_files), 1, maildir_files)
        self.assertIn("/new/", maildir_files[0])
        # The instance lock (issue 9) stays in the spool's top folder; messages live in queue/.
        in_spool = [f for f in self.files_under("spool_dir") if os.path.basename(f) != "relaygate-smtpd.lock"]
        spool_files = sorted(os.path.basename(f) for f in in_spool)
        self.assertEqual(len(spool_files), 2, spool_files)  # one .env + one .msg, in queue/
        self.assertTrue(all("/queue/" in f for f in in_spool))


class RoundTrip(SmtpBase):
    """SMTP in, POP3 out: the body comes back byte-identical."""
    daemons = ("smtpd", "pop3d")
    overrides = {"auth": {"allow_plaintext_without_tls": True, "mechanisms_without_tls": ["PLAIN", "LOGIN"]}}

    def test_body_survives_byte_for_byte(self):
        body = (b"Subject: bytes\r\n\r\n"
                b"nul:\x00:end\r\n"
                b".starts with a dot\r\n"
                b"..two dots\r\n"
                + b"x" * 998 + b"\r\n"
                + "8-bit: caf\u00e9 \u00fc\u00df".encode("latin-1") + b"\r\n"
                b"ctrl:\x01\x07\x1b\r\n"
                b"last line\r\n")
        with smtp(self.gw, "relay") as s:
            s.ehlo("c.test")
            s.mail("sender@remote.test", ["BODY=8BITMIME"])
            s.rcpt("alice@example.test")
            s.data(body)
        p = poplib.POP3("127.0.0.1", self.gw.port("pop3d", tls="starttls"), timeout=T)
        p.user("alice")
        p.pass_(PW)
        count, _ = p.stat()
        _, lines, _ = p.retr(count)
        p.quit()
        got = b"\r\n".join(lines) + b"\r\n"
        self.assertTrue(got.endswith(body), got[-300:])
        self.assertTrue(got.startswith(b"Return-Path: <sender@remote.test>\r\nReceived: "))


class Hostile(SmtpBase):
    overrides = {"smtpd": {"max_recipients": 3, "max_message_size": 4096, "max_errors": 50,
                           "command_timeout_seconds": 2, "data_timeout_seconds": 2},
                 "auth": {"allow_plaintext_without_tls": True, "mechanisms_without_tls": ["PLAIN", "LOGIN"]}}

    def session(self, mode="relay"):
        c = LineClient.open(self.gw.port("smtpd", mode=mode))
        self.assertTrue(c.line().startswith("220 "))
        return c

    def ehlo(self, c):
        c.send("EHLO c.test\r\n")
        lines = [c.line()]
        while lines[-1].startswith("250-"):
            lines.append(c.line())
        self.assertTrue(lines[-1].startswith("250 "), lines)
        return lines

    def test_ehlo_is_well_formed_multiline(self):
        with self.session() as c:
            lines = self.ehlo(c)
            self.assertTrue(all(l.startswith("250-") for l in lines[:-1]))
            self.assertIn("250-PIPELINING", lines)
            self.assertIn("250-SIZE 4096", lines)
            self.assertIn("250-ENHANCEDSTATUSCODES", lines)
            self.assertTrue(any("STARTTLS" in l for l in lines))
            self.assertTrue(c.cmd("VRFY alice").startswith("252 "))
            self.assertTrue(c.cmd("HELP").startswith("214 "))
            self.assertTrue(c.cmd("NOOP").startswith("250 2.0.0"))
            self.assertTrue(c.cmd("FOO").startswith("500 5.5.2"))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1"))
            self.assertTrue(c.cmd("DATA").startswith("503 5.5.1"))
            self.assertTrue(c.cmd("QUIT").startswith("221 2.0.0"))

    def test_long_lines(self):
        with self.session() as c:
            self.ehlo(c)
            self.assertTrue(c.cmd("NOOP " + "x" * 505).startswith("250 "))  # 512 octets with CRLF
            self.assertTrue(c.cmd("NOOP " + "x" * 5000 + " QUIT").startswith("500 5.5.2"))
            self.assertTrue(c.cmd("NOOP " + "x" * 20000 + "\rQUIT").startswith("500 5.5.2"))
            # The tail after the over-long line is not executed as a command: the session goes on.
            self.assertTrue(c.cmd("NOOP").startswith("250 "))
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"ok line\r\n" + b"y" * 998 + b"\r\n" + b"z" * 1200 + b"\r\n.\r\n")
            reply = c.line()
            self.assertTrue(reply.startswith("500 5.5.2"), reply)
            self.assertTrue(c.cmd("NOOP").startswith("250 "))

    def test_path_limits(self):
        with self.session() as c:
            self.ehlo(c)
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<%s@example.test>" % ("a" * 65)).startswith("501 "))
            self.assertTrue(c.cmd("RCPT TO:<a@%s.test>" % ("b" * 300)).startswith("501 "))

    def test_size_and_recipient_limits(self):
        with self.session() as c:
            self.ehlo(c)
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test> SIZE=5000").startswith("552 5.3.4"))
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test> SIZE=100").startswith("250 "))
            for _ in range(3):
                self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("452 4.5.3"))
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"a" * 900 + b"\r\n")
            c.send((b"b" * 900 + b"\r\n") * 5 + b".\r\n")
            self.assertTrue(c.line().startswith("552 5.3.4"))
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test> SMTPUTF8").startswith("555 5.5.4"))

    def test_smuggling_bare_lf_never_ends_data(self):
        before = len(self.local_messages("alice"))
        with self.session() as c:
            self.ehlo(c)
            c.cmd("MAIL FROM:<a@remote.test>")
            c.cmd("RCPT TO:<alice@example.test>")
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.test>\r\nbody2\r\n.\n\r\nmore\r\n\r\n.\r\n")
            reply = c.line()
            self.assertTrue(reply.startswith("250 2.0.0"), reply)
            self.assertTrue(c.cmd("NOOP").startswith("250 "))
        msgs = self.local_messages("alice")
        self.assertEqual(len(msgs), before + 1)
        self.assertIn(b"MAIL FROM:<evil@remote.test>", msgs[-1])
        self.assertNotIn(b"\r\r", msgs[-1])
        # Every line ending in the stored message is CRLF (normalized on port 25).
        self.assertNotIn(b"\n", msgs[-1].replace(b"\r\n", b""))

    def test_submission_rejects_bare_lf(self):
        with self.session("submission") as c:
            self.ehlo(c)
            c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PW.encode()).decode())
            c.cmd("MAIL FROM:<alice@example.test>")
            c.cmd("RCPT TO:<alice@example.test>")
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"Subject: bare\r\n\r\nline\nother\r\n.\r\n")
            self.assertTrue(c.line().startswith("550 5.5.2"))

    def test_pipelining_before_ehlo_reply_is_sync_error(self):
        with self.session() as c:
            c.send("EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\n")
            reply = c.line()
            self.assertTrue(reply.startswith("554 5.5.0"), reply)
            c.wait_closed()

    def test_pipelining_after_ehlo_works(self):
        with self.session() as c:
            self.ehlo(c)
            c.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n")
            self.assertTrue(c.line().startswith("250 "))
            self.assertTrue(c.line().startswith("250 "))
            self.assertTrue(c.line().startswith("550 5.1.1"))
            self.assertTrue(c.line().startswith("354 "))
            c.send("Subject: p\r\n\r\npipelined\r\n.\r\nQUIT\r\n")
            self.assertTrue(c.line().startswith("250 2.0.0"))
            self.assertTrue(c.line().startswith("221 "))

    def test_starttls_injection_is_discarded(self):
        # The injected command is one that WOULD answer and be counted (RFC 3207 §4.2,
        # CVE-2011-0411): run after the handshake it would send "250 2.0.0 Ok" before our MAIL's
        # 503 and put noop=1 in the disconnect summary.
        c = self.session()
        self.ehlo(c)
        c.send("STARTTLS\r\nNOOP\r\n")
        self.assertTrue(c.line().startswith("220 2.0.0"))
        c.starttls()
        # After TLS the session is reset: MAIL needs a new EHLO, and the injected NOOP never ran.
        self.assertTrue(c.cmd("MAIL FROM:<a@remote.test>").startswith("503 5.5.1"))
        lines = self.ehlo(c)
        self.assertFalse(any("STARTTLS" in l for l in lines))
        self.assertTrue(c.cmd("QUIT").startswith("221 "))
        c.close()
        (tls_line,) = self.gw.wait_log("smtpd", r"event=starttls outcome=ok .*discarded_plaintext=6\b")[-1:]
        sid = tls_line.split(": ", 1)[1].split(" ", 1)[0]
        (summary,) = self.gw.wait_log("smtpd", r": %s event=disconnect " % re.escape(sid))
        self.assertIn(" starttls=1", summary)
        self.assertIn(" mail=0/1", summary)
        self.assertNotIn("noop=", summary)

    def test_idle_timeout(self):
        with self.session() as c:
            self.assertTrue(c.line().startswith("421 4.4.2"))

    def test_slow_data_is_cut(self):
        with self.session() as c:
            self.ehlo(c)
            c.cmd("MAIL FROM:<a@remote.test>")
            c.cmd("RCPT TO:<alice@example.test>")
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"Subject: slow\r\n")
            self.assertTrue(c.line().startswith("421 4.4.2"))

    def test_hostile_bytes_never_crash(self):
        junk = bytes((i * 131 + 7) % 256 for i in range(3000))
        for payload in (junk, b"\x00" * 600 + b"\r\n", b"MAIL FROM:<" + junk[:400] + b">\r\n", b"\r\n" * 100,
                        b"EHLO " + b"\xff" * 300 + b"\r\n"):
            with self.session() as c:
                c.send(payload)
                c.send(b"QUIT\r\n")
                try:
                    c.wait_closed(timeout=5)
                except socket.timeout:
                    self.fail("server hung on %r" % payload[:40])
        self.assertTrue(self.gw.daemons["smtpd"].running())


def server_cert_der(port):
    import socket as _s
    ctx = client_tls_context()
    with _s.create_connection(("127.0.0.1", port), timeout=T) as raw:
        with ctx.wrap_socket(raw, server_hostname="mail.example.test") as tls:
            return tls.getpeercert(binary_form=True)


def make_cert(directory, cn):
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class Signals(unittest.TestCase):
    """SIGHUP reloads config and certificate for new sessions; a bad config or key keeps the old
    one; SIGTERM lets a message in DATA finish, then exits 0 with nothing acknowledged lost."""

    def test_sighup_reloads_certificate_and_keeps_old_on_errors(self):
        import signal as sig
        with Gateway({"run_as": {"allow_root": True}}, check_exit=True) as gw:
            gw.add_user("alice", PW)
            gw.start("smtpd")
            port = gw.port("smtpd", mode="submissions")
            old = server_cert_der(port)
            live = smtplib.SMTP_SSL("127.0.0.1", port, timeout=T, context=client_tls_context())
            live.ehlo("c.test")
            cert, key = make_cert(os.path.join(gw.dir, "newtls"), "new.example.test")
            gw.rewrite_config({"tls": {"certificate": cert, "private_key": key}, "smtpd": {"max_recipients": 7}})
            gw.signal("smtpd", sig.SIGHUP)
            gw.wait_log("smtpd", r"event=reload outcome=ok")
            new = server_cert_der(port)
            self.assertNotEqual(new, old)
            self.assertEqual(live.noop()[0], 250)  # the session from before the reload goes on
            live.quit()
            # A key that does not match the certificate: logged, the current one stays.
            other_cert, _ = make_cert(os.path.join(gw.dir, "other"), "other.example.test")
            gw.rewrite_config({"tls": {"certificate": other_cert, "private_key": key}})
            gw.signal("smtpd", sig.SIGHUP)
            gw.wait_log("smtpd", r"event=reload outcome=failed.*does not match", timeout=10)
            self.assertEqual(server_cert_der(port), new)
            # Invalid JSON: logged, the current config stays, the daemon keeps serving.
            with open(gw.config_path, "w") as f:
                f.write("{ not json")
            gw.signal("smtpd", sig.SIGHUP)
            gw.wait_log("smtpd", r"event=reload outcome=failed.*not valid JSON", timeout=10)
            with smtp(gw, "submissions") as s:
                s.login("alice", PW)
            self.assertTrue(gw.daemons["smtpd"].running())

    def test_sd_notify_ready_status_stopping(self):
        # Type=notify: READY=1 once the listeners are bound, a STATUS= line, STOPPING=1 on SIGTERM.
        import socket as so
        with Gateway({"run_as": {"allow_root": True}}) as gw:
            path = os.path.join(gw.dir, "notify.sock")
            sock = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(10)
            os.environ["NOTIFY_SOCKET"] = path
            try:
                for daemon in ("smtpd", "pop3d"):
                    with self.subTest(daemon=daemon):
                        gw.start(daemon)
                        got = []
                        while not any("READY=1" in m for m in got) or not any("STATUS=" in m for m in got):
                            got.append(sock.recv(4096).decode())
                        gw.stop(daemon)
                        while not any("STOPPING=1" in m for m in got):
                            got.append(sock.recv(4096).decode())
                        self.assertTrue(any("sessions=" in m for m in got), got)
            finally:
                del os.environ["NOTIFY_SOCKET"]
                sock.close()

    def test_sigterm_lets_data_finish_and_exits_cleanly(self):
        import signal as sig
        with Gateway({"run_as": {"allow_root": True}}) as gw:
            gw.add_user("alice", PW)
            gw.start("smtpd")
            idle = LineClient.open(gw.port("smtpd", mode="relay"))
            self.assertTrue(idle.line().startswith("220 "))
            idle_tls = LineClient.open(gw.port("smtpd", mode="submission"))  # STARTTLS'd, then idle
            self.assertTrue(idle_tls.line().startswith("220 "))
            idle_tls.send("EHLO t.test\r\n")
            while not idle_tls.line().startswith("250 "):
                pass
            self.assertTrue(idle_tls.cmd("STARTTLS").startswith("220 "))
            idle_tls.starttls()
            c = LineClient.open(gw.port("smtpd", mode="relay"))
            self.assertTrue(c.line().startswith("220 "))
            c.send("EHLO c.test\r\n")
            while not c.line().startswith("250 "):
                pass
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
            gw.signal("smtpd", sig.SIGTERM)
            gw.wait_log("smtpd", r"event=stopping")
            # The idle session gets RFC 5321 §3.8's 421 and the close at once; the one in DATA
            # may finish its message.
            goodbye = b"421 4.3.2 %s Service shutting down\r\n" % HOSTNAME.encode()
            self.assertEqual(idle.wait_closed(timeout=5), goodbye)
            self.assertEqual(idle_tls.wait_closed(timeout=5), goodbye)  # inside TLS
            c.send(b"second half\r\n.\r\n")
            reply = c.line()
            self.assertTrue(reply.startswith("250 2.0.0"), reply)
            self.assertTrue(c.line().startswith("421 4.3.2"))
            c.close()
            idle.close()
            idle_tls.close()
            self.assertEqual(gw.daemons["smtpd"].proc.wait(timeout=10), 0)
            self.assertIn("event=stopped outcome=clean", gw.log("smtpd"))
            msgs = gw.messages("alice", "new")
            self.assertEqual(len(msgs), 1)
            with open(os.path.join(gw.maildir("alice"), "new", msgs[0]), "rb") as f:
                self.assertIn(b"first half\r\nsecond half\r\n", f.read())


class Limits(SmtpBase):
    """Connection limits, early talkers, slow clients. Slots freed by an earlier test are
    released when the server sees the close, so a new session waits for its greeting."""

    def greeted(self, source):
        deadline = time.monotonic() + 5
        while True:
            c = LineClient.open(self.gw.port("smtpd", mode="relay"), source=source)
            line = c.line()
            if line.startswith("220 "):
                return c
            c.close()
            if not line.startswith("421 4.7.0") or time.monotonic() > deadline:
                self.fail("no greeting: %s" % line)
            time.sleep(0.05)

    overrides = {"smtpd": {"max_connections_per_ip": 2, "max_connections": 4, "max_errors": 3,
                           "greeting_pause_ms": 300, "min_data_rate": 1000, "data_rate_grace_seconds": 1}}

    def test_talking_before_the_greeting_is_refused(self):
        with LineClient.open(self.gw.port("smtpd", mode="relay"), source="127.0.0.11") as c:
            c.send("EHLO early.test\r\n")
            reply = c.line()
            self.assertTrue(reply.startswith("554 5.5.0"), reply)
            c.wait_closed()
        with self.greeted("127.0.0.11"):  # a patient client is greeted
            pass

    def test_total_connection_limit(self):
        clients = [self.greeted("127.0.1.%d" % i) for i in range(1, 5)]
        try:
            extra = LineClient.open(self.gw.port("smtpd", mode="relay"), source="127.0.1.9")
            self.assertTrue(extra.line().startswith("421 4.7.0"))
            extra.close()
        finally:
            for c in clients:
                c.close()

    def test_trickling_client_is_cut_off(self):
        with self.greeted("127.0.0.12") as c:
            c.send("EHLO slow.test\r\n")
            while not c.line().startswith("250 "):
                pass
            self.assertTrue(c.cmd("MAIL FROM:<a@remote.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            start = time.monotonic()
            reply = None
            while time.monotonic() - start < 8:
                try:
                    c.send(b"a\r\n")  # 3 bytes every 0.2 s: far below 1000 bytes/s
                except OSError:
                    break
                time.sleep(0.2)
                c.sock.settimeout(0.01)
                try:
                    reply = c.line()
                    break
                except (socket.timeout, BlockingIOError):
                    pass
                except EOFError:
                    break
            self.assertIsNotNone(reply, "the slow client was never cut off")
            self.assertEqual(reply, "451 4.4.2 %s Error: data rate too low" % HOSTNAME)
        self.gw.wait_log("smtpd", r"event=data outcome=too-slow ip=127\.0\.0\.12 bytes=")

    def test_connection_limit_per_ip(self):
        a = self.greeted("127.0.0.1")
        b = self.greeted("127.0.0.1")
        c = LineClient.open(self.gw.port("smtpd", mode="relay"))
        self.assertTrue(c.line().startswith("421 4.7.0"))
        d = self.greeted("127.0.0.8")
        for x in (a, b, c, d):
            x.close()

    def test_too_many_errors(self):
        with self.greeted("127.0.0.10") as c:
            c.cmd("FOO")
            c.cmd("BAR")
            self.assertTrue(c.cmd("BAZ").startswith("500 "))
            self.assertTrue(c.line().startswith("421 4.7.0"))


if __name__ == "__main__":
    harness.main()
