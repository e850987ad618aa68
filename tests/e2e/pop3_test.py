#!/usr/bin/env python3
"""pop3d end to end (issue 3 item 10): the real daemon on loopback with temporary configs,
driven by python poplib, raw sockets, curl and fetchmail. RFC 1939 commands over plain, STLS
(RFC 2595) and implicit TLS; the plaintext policy; APOP and SASL (RFC 5034); grants in the
database and the status file; locks, UPDATE-state semantics, byte-stuffing, limits, timeouts.

Usage: pop3_test.py [--pop3d PATH] [--ctl PATH] [unittest args]; or RG_POP3D / RG_CTL.
"""
import base64
import hashlib
import hmac
import itertools
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway, LineClient  # noqa: E402


def _take_arg(flag, env):
    if flag in sys.argv:
        i = sys.argv.index(flag)
        os.environ[env] = sys.argv[i + 1]
        del sys.argv[i:i + 2]


_take_arg("--pop3d", "RG_POP3D")
_take_arg("--ctl", "RG_CTL")

TIMEOUT = 10
FAILURE_DELAY_MAX_MS = 300
TLS_ERR = "-ERR [AUTH] Plaintext authentication disallowed without TLS"
STRICT = None   # default policy: plaintext logins only inside TLS
PLAIN = None    # auth.allow_plaintext_without_tls = true
_users = itertools.count(1)
_passwords = []


def listener(tls):
    return {"address": "127.0.0.1", "port": "auto", "tls": tls}


def make_gateway(**overrides):
    base = {"auth": {"failure_delay_max_ms": FAILURE_DELAY_MAX_MS},
            "pop3d": {"max_connections_per_ip": 1000}}
    gw = Gateway(harness.deep_merge(base, overrides), check_exit=True)
    try:
        gw.start("pop3d")
    except Exception:
        gw.close()
        raise
    return gw


def setUpModule():
    global STRICT, PLAIN
    STRICT = make_gateway(pop3d={"listen": [listener("starttls"), listener("implicit"), listener("required")]})
    PLAIN = make_gateway(auth={"allow_plaintext_without_tls": True},
                         pop3d={"listen": [listener("none"), listener("starttls"), listener("implicit")]})


def tearDownModule():
    logs = {}
    for gw in (STRICT, PLAIN):
        if gw is not None:
            logs[gw.dir] = gw.log("pop3d")
            gw.close(check=True)  # a clean exit on SIGTERM: no crash during the whole run
    # Secrets never reach a log (STYLE habit 7): no password used by any test appears.
    for text in logs.values():
        for pw in _passwords:
            if pw in text:
                raise AssertionError("a password appears in the pop3d log")
        if "session-crashed" in text:
            raise AssertionError("a session crashed:\n" + "\n".join(l for l in text.splitlines() if "crashed" in l))


def new_user(gw, legacy=False, extra_gateways=()):
    """A fresh user (own mailbox, own lock) with a unique password; returns (name, password)."""
    n = next(_users)
    name, password = "user%d" % n, "Secret-%d-%s" % (n, os.urandom(4).hex())
    _passwords.append(password)
    for g in (gw,) + tuple(extra_gateways):
        g.add_user(name, password, legacy=legacy)
    return name, password


def message(subject, body="Hello.\n", eol="\n"):
    text = "From: sender@example.test\nTo: rcpt@example.test\nSubject: %s\n\n%s" % (subject, body)
    return text.replace("\n", eol).encode()


def crlf(data):
    """The RFC 1939 wire form before byte-stuffing: bare LF -> CRLF, final line terminated."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


class SourcePOP3(poplib.POP3):
    """poplib.POP3 from a chosen loopback source address (Linux routes all of 127/8 locally)."""

    def __init__(self, host, port, source=None, timeout=TIMEOUT):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return harness.connect(self.port, self.host, self.source, timeout)


class SourcePOP3_SSL(poplib.POP3_SSL):
    def __init__(self, host, port, source=None, timeout=TIMEOUT):
        self.source = source
        super().__init__(host, port, timeout=timeout, context=harness.client_tls_context())

    def _create_socket(self, timeout):
        sock = harness.connect(self.port, self.host, self.source, timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def pop_plain(gw, source=None, tls="none"):
    return SourcePOP3("127.0.0.1", gw.port("pop3d", tls=tls), source)


def pop_stls(gw, source=None):
    p = SourcePOP3("127.0.0.1", gw.port("pop3d", tls="starttls"), source)
    p.stls(harness.client_tls_context())
    return p


def pop_ssl(gw, source=None):
    return SourcePOP3_SSL("127.0.0.1", gw.port("pop3d", tls="implicit"), source)


def retry_in_use(fn, timeout=5.0):
    """Runs fn() again while it fails with [IN-USE] (the previous session may still be ending)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except poplib.error_proto as e:
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def login_with(connect, user, pw):
    """USER/PASS on a new poplib connection from connect(); closes it on failure."""
    p = connect()
    try:
        p.user(user)
        p.pass_(pw)
    except Exception:
        p.close()
        raise
    return p


def grant_for(gw, ip):
    return [g for g in gw.grants() if g["ip"] == ip]


def status_grant(gw, ip):
    st = gw.status() or {"grants": []}
    return [g for g in st["grants"] if g["ip"] == ip]


class Commands(unittest.TestCase):
    """RFC 1939 through poplib over plain, STLS and POP3S."""

    def walkthrough(self, gw, connect):
        user, pw = new_user(gw)
        m1 = message("one", "first body line\nsecond\nthird\n")
        m2 = message("two", ".dotted\nplain\n")
        m3 = message("three")
        for m in (m1, m2, m3):
            gw.deliver(user, m)
            time.sleep(0.002)  # distinct names, delivery order = name order
        p = connect()
        self.assertTrue(p.getwelcome().startswith(b"+OK "))
        p.user(user)
        self.assertTrue(p.pass_(pw).startswith(b"+OK"))
        count, size = p.stat()
        self.assertEqual(count, 3)
        self.assertEqual(size, sum(len(crlf(m)) for m in (m1, m2, m3)))
        resp, listing, _ = p.list()
        self.assertEqual([l.split() for l in listing],
                         [[b"%d" % (i + 1), b"%d" % len(crlf(m))] for i, m in enumerate((m1, m2, m3))])
        self.assertEqual(p.list(2), b"+OK 2 %d" % len(crlf(m2)))
        resp, lines, _ = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(m1))
        resp, lines, _ = p.retr(2)
        self.assertIn(b".dotted", lines)  # poplib removes the stuffing the server added
        resp, lines, _ = p.top(1, 1)
        self.assertEqual(lines[-2:], [b"", b"first body line"])
        resp, lines, _ = p.top(1, 0)
        self.assertEqual(lines[-1], b"")
        self.assertNotIn(b"first body line", lines)
        _, uidls, _ = p.uidl()
        self.assertEqual(len(uidls), 3)
        uid2 = uidls[1].split()[1]
        self.assertEqual(p.uidl(2).split()[2], uid2)
        p.dele(2)
        self.assertEqual(p.stat(), (2, len(crlf(m1)) + len(crlf(m3))))
        with self.assertRaises(poplib.error_proto):
            p.retr(2)
        with self.assertRaises(poplib.error_proto):
            p.dele(2)
        p.rset()
        self.assertEqual(p.stat()[0], 3)
        p.dele(3)
        self.assertTrue(p.noop().startswith(b"+OK"))
        self.assertTrue(p.quit().startswith(b"+OK"))
        # QUIT in TRANSACTION removed message 3 only; RETR moved 1 and 2 to cur/ as seen.
        self.assertEqual(gw.messages(user, "new"), [])
        cur = gw.messages(user, "cur")
        self.assertEqual(len(cur), 2)
        self.assertTrue(all(n.endswith(":2,S") for n in cur), cur)
        p = retry_in_use(lambda: login_with(connect, user, pw))
        self.assertEqual(p.stat()[0], 2)
        _, uidls2, _ = p.uidl()
        self.assertEqual(uidls2[1].split()[1], uid2)
        p.quit()

    def test_plain(self):
        self.walkthrough(PLAIN, lambda: pop_plain(PLAIN))

    def test_stls(self):
        self.walkthrough(STRICT, lambda: pop_stls(STRICT))

    def test_pop3s(self):
        self.walkthrough(STRICT, lambda: pop_ssl(STRICT))

    def test_apop(self):
        user, pw = new_user(STRICT, legacy=True)
        STRICT.deliver(user, message("apop"))
        p = pop_plain(STRICT, tls="starttls")
        self.assertTrue(p.apop(user, pw).startswith(b"+OK"))
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        p = pop_plain(STRICT, tls="starttls")
        with self.assertRaises(poplib.error_proto) as e:
            p.apop(user, pw + "x")
        self.assertTrue(e.exception.args[0].startswith(b"-ERR [AUTH]"), e.exception.args[0])
        p.quit()
        # A user without legacy mechanisms cannot use APOP, even with the right password.
        plain_user, plain_pw = new_user(STRICT)
        p = pop_plain(STRICT, tls="starttls")
        with self.assertRaises(poplib.error_proto):
            p.apop(plain_user, plain_pw)
        p.quit()

    def test_capa(self):
        def capa(p):
            return {k: v for k, v in p.capa().items()}
        p = pop_plain(STRICT, tls="starttls")
        c = capa(p)
        for k in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION", "STLS"):
            self.assertIn(k, c)
        self.assertNotIn("USER", c)  # no plaintext login outside TLS
        self.assertEqual(c["SASL"], ["CRAM-MD5"])
        p.stls(harness.client_tls_context())
        c = capa(p)
        self.assertIn("USER", c)
        self.assertNotIn("STLS", c)
        # Inside TLS only PLAIN/LOGIN are offered (every user has them); CRAM-MD5 stays accepted.
        self.assertEqual(c["SASL"], ["PLAIN", "LOGIN"])
        p.quit()
        p = pop_plain(PLAIN)
        c = capa(p)
        self.assertIn("USER", c)
        self.assertNotIn("STLS", c)  # tls "none" listener
        p.quit()
        # tls "required": nothing to log in with until STLS
        p = pop_plain(STRICT, tls="required")
        c = capa(p)
        self.assertIn("STLS", c)
        self.assertNotIn("USER", c)
        self.assertNotIn("SASL", c)
        p.quit()

    def test_required_listener(self):
        user, pw = new_user(STRICT, legacy=True)
        with LineClient.open(STRICT.port("pop3d", tls="required")) as c:
            c.line()
            self.assertEqual(c.cmd("USER " + user), "-ERR [AUTH] TLS required: use STLS first")
            self.assertTrue(c.cmd("APOP %s %s" % (user, "0" * 32)).startswith("-ERR [AUTH] TLS required"))
            self.assertTrue(c.cmd("AUTH CRAM-MD5").startswith("-ERR [AUTH] TLS required"))
            self.assertEqual(c.cmd("STLS"), "+OK Begin TLS negotiation now")
            c.starttls()
            self.assertEqual(c.cmd("USER " + user), "+OK Send your password")
            self.assertTrue(c.cmd("PASS " + pw).startswith("+OK"))
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))


class PlaintextPolicy(unittest.TestCase):
    def test_refused_without_tls(self):
        user, pw = new_user(STRICT)
        with LineClient.open(STRICT.port("pop3d", tls="starttls")) as c:
            self.assertTrue(c.line().startswith("+OK"))
            self.assertEqual(c.cmd("USER " + user), TLS_ERR)
            self.assertEqual(c.cmd("PASS " + pw), TLS_ERR)
            self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()), TLS_ERR)
            self.assertEqual(c.cmd("AUTH LOGIN"), TLS_ERR)
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        with self.assertRaises(poplib.error_proto) as e:
            p = pop_plain(STRICT, tls="starttls")
            try:
                p.user(user)
            finally:
                p.close()
        self.assertEqual(e.exception.args[0].decode(), TLS_ERR)
        self.assertEqual([g for g in STRICT.grants() if g["user"] == user], [])

    def test_user_reply_same_for_unknown_users(self):
        user, _ = new_user(PLAIN)
        with LineClient.open(PLAIN.port("pop3d", tls="none")) as c:
            c.line()
            known = c.cmd("USER " + user)
            unknown = c.cmd("USER nosuchuser%d" % next(_users))
            invalid = c.cmd("USER ../../etc")
        self.assertEqual(known, "+OK Send your password")
        self.assertEqual(unknown, known)
        self.assertEqual(invalid, known)
        # a user name never becomes a path outside maildir_root
        with LineClient.open(PLAIN.port("pop3d", tls="none")) as c:
            c.line()
            for name in ("../escape", "/tmp/escape", ".hidden", "a/b"):
                c.cmd("USER " + name)
                self.assertEqual(c.cmd("PASS x"), "-ERR [AUTH] Authentication failed")
        root = PLAIN.path("maildir_root")
        self.assertFalse(os.path.exists(os.path.join(root, "..", "escape")))
        self.assertFalse(os.path.exists(os.path.join(root, ".hidden")))

    def test_failed_login_delay(self):
        user, pw = new_user(PLAIN)
        p = pop_plain(PLAIN, source="127.0.0.21")
        p.user(user)
        t0 = time.monotonic()
        with self.assertRaises(poplib.error_proto) as e:
            p.pass_(pw + "-wrong")
        elapsed = time.monotonic() - t0
        self.assertEqual(e.exception.args[0], b"-ERR [AUTH] Authentication failed")
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 3.0)  # capped by auth.failure_delay_max_ms (+ hashing)
        # unknown users are delayed the same way
        p.user("nosuchuser")
        t0 = time.monotonic()
        with self.assertRaises(poplib.error_proto):
            p.pass_(pw)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        # and the session goes on: the right password still works
        p.user(user)
        p.pass_(pw)
        p.quit()
        PLAIN.wait_log("pop3d", r"event=auth outcome=failed reason=bad-password ip=127\.0\.0\.21 proto=pop3 mech=USER .*failures=1$")
        PLAIN.wait_log("pop3d", r"event=auth outcome=failed reason=unknown-user ip=127\.0\.0\.21 proto=pop3 mech=USER .*failures=2$")

    def test_failed_login_delay_escalates(self):
        with Gateway({"auth": {"allow_plaintext_without_tls": True, "failure_delay_max_ms": 1000},
                      "pop3d": {"listen": [listener("none")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            p = pop_plain(gw)
            times = []
            for _ in range(3):
                p.user(user)
                t0 = time.monotonic()
                with self.assertRaises(poplib.error_proto):
                    p.pass_("wrong")
                times.append(time.monotonic() - t0)
            p.quit()
            # 250 ms, then 500 ms, then 1000 ms (the cap), each plus < 100 ms of jitter
            self.assertGreaterEqual(times[0], 0.25)
            self.assertGreaterEqual(times[1], 0.5)
            self.assertGreaterEqual(times[2], 0.99)
            self.assertLess(times[2], 2.5)


class Grants(unittest.TestCase):
    """A grant for the client IP after each login method, none after a failure."""

    def check_grant(self, gw, ip, user, method):
        g = grant_for(gw, ip)
        self.assertEqual(len(g), 1, gw.grants())
        self.assertEqual((g[0]["user"], g[0]["method"]), (user, method))
        st = gw.wait_for(lambda: status_grant(gw, ip), what="status file grant for " + ip)
        self.assertEqual((st[0]["user"], st[0]["method"]), (user, method))
        self.assertTrue(st[0]["expires_at"].endswith("Z"))

    def test_user_pass(self):
        user, pw = new_user(STRICT)
        p = pop_stls(STRICT, source="127.0.0.11")
        p.user(user)
        p.pass_(pw)
        p.quit()
        self.check_grant(STRICT, "127.0.0.11", user, "pop3")

    def test_apop(self):
        user, pw = new_user(STRICT, legacy=True)
        p = pop_plain(STRICT, source="127.0.0.12", tls="starttls")
        p.apop(user, pw)
        p.quit()
        self.check_grant(STRICT, "127.0.0.12", user, "apop")

    def test_sasl(self):
        user, pw = new_user(STRICT, legacy=True)
        with LineClient(harness.connect(STRICT.port("pop3d", tls="implicit"), source="127.0.0.13")) as c:
            c.starttls()
            c.line()
            ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
            self.assertTrue(c.cmd("AUTH PLAIN " + ir).startswith("+OK"))
            c.cmd("QUIT")
        self.check_grant(STRICT, "127.0.0.13", user, "pop3-sasl")
        # CRAM-MD5 over plain TCP refreshes the same IP's grant
        with LineClient(harness.connect(STRICT.port("pop3d", tls="starttls"), source="127.0.0.13")) as c:
            c.line()
            ch = c.cmd("AUTH CRAM-MD5")
            self.assertTrue(ch.startswith("+ "))
            challenge = base64.b64decode(ch[2:])
            digest = hmac.new(pw.encode(), challenge, hashlib.md5).hexdigest()
            self.assertTrue(c.cmd(base64.b64encode(("%s %s" % (user, digest)).encode()).decode()).startswith("+OK"))
            c.cmd("QUIT")
        self.check_grant(STRICT, "127.0.0.13", user, "pop3-sasl")

    def test_failures_grant_nothing(self):
        user, pw = new_user(STRICT, legacy=True)
        ip = "127.0.0.14"
        p = pop_stls(STRICT, source=ip)
        p.user(user)
        with self.assertRaises(poplib.error_proto):
            p.pass_(pw + "x")
        with self.assertRaises(poplib.error_proto):
            p.apop(user, pw + "x")
        p.quit()
        with LineClient(harness.connect(STRICT.port("pop3d", tls="implicit"), source=ip)) as c:
            c.starttls()
            c.line()
            ir = base64.b64encode(("\0%s\0%s" % (user, pw + "x")).encode()).decode()
            self.assertTrue(c.cmd("AUTH PLAIN " + ir).startswith("-ERR [AUTH]"))
            self.assertTrue(c.cmd("AUTH LOGIN").startswith("+ "))
            self.assertTrue(c.cmd("*").startswith("-ERR"))
            c.cmd("QUIT")
        # a success elsewhere rewrites the status file; the failed IP is still absent
        other, other_pw = new_user(STRICT)
        p = pop_ssl(STRICT, source="127.0.0.15")
        p.user(other)
        p.pass_(other_pw)
        p.quit()
        STRICT.wait_for(lambda: status_grant(STRICT, "127.0.0.15"), what="status rewrite")
        self.assertEqual(grant_for(STRICT, ip), [])
        self.assertEqual(status_grant(STRICT, ip), [])

    def test_expired_grants_leave_the_status_file(self):
        with Gateway({"grants": {"ttl_seconds": 1, "status_interval_seconds": 1},
                      "pop3d": {"listen": [listener("implicit")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            p = pop_ssl(gw, source="127.0.0.16")
            p.user(user)
            p.pass_(pw)
            p.quit()
            gw.wait_for(lambda: status_grant(gw, "127.0.0.16"), what="the grant in the status file")
            # the periodic purge + rewrite removes it after the TTL, without any other event
            gw.wait_for(lambda: (gw.status() or {"grants": [1]})["grants"] == [], timeout=5, what="the expiry")
            self.assertEqual(gw.grants(), [])
            gw.wait_log("pop3d", r"event=purge expired_grants=1")

    def test_other_source_address_grants_only_itself(self):
        with Gateway({"auth": {"failure_delay_max_ms": FAILURE_DELAY_MAX_MS}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            p = pop_ssl(gw, source="127.0.0.2")
            p.user(user)
            p.pass_(pw)
            p.quit()
            self.assertEqual([g["ip"] for g in gw.grants()], ["127.0.0.2"])
            st = gw.wait_for(lambda: (gw.status() or {}).get("grants"), what="status file")
            self.assertEqual([g["ip"] for g in st], ["127.0.0.2"])
            gw.wait_log("pop3d", r"event=auth outcome=ok ip=127\.0\.0\.2 proto=pop3 mech=USER user=%s " % user)


class Maildrop(unittest.TestCase):
    def login(self, gw, user, pw, source=None):
        return retry_in_use(lambda: login_with(lambda: pop_plain(gw, source), user, pw))

    def test_lock_contention(self):
        user, pw = new_user(PLAIN)
        first = self.login(PLAIN, user, pw)
        second = pop_plain(PLAIN)
        second.user(user)
        with self.assertRaises(poplib.error_proto) as e:
            second.pass_(pw)
        self.assertTrue(e.exception.args[0].startswith(b"-ERR [IN-USE]"), e.exception.args[0])
        # The lock holds across processes too: flock on the same file.
        first.quit()
        # QUIT releases the lock before it answers: the next login works at once.
        second.user(user)
        self.assertTrue(second.pass_(pw).startswith(b"+OK"))
        second.quit()

    def test_dele_needs_quit(self):
        user, pw = new_user(PLAIN)
        for i in range(3):
            PLAIN.deliver(user, message("m%d" % i))
            time.sleep(0.002)
        p = self.login(PLAIN, user, pw)
        p.dele(1)
        p.dele(2)
        p.close()  # dropped connection without QUIT: nothing is removed
        p = self.login(PLAIN, user, pw)
        self.assertEqual(p.stat()[0], 3)
        p.dele(1)
        p.rset()  # RSET restores
        p.dele(2)
        p.quit()
        self.assertEqual(len(PLAIN.messages(user, "new")), 2)
        p = self.login(PLAIN, user, pw)
        self.assertEqual(p.stat()[0], 2)
        _, lines, _ = p.retr(2)
        self.assertIn(b"Subject: m2", lines)
        p.quit()

    def test_uidl_stable_across_sessions_and_restarts(self):
        with Gateway({"auth": {"allow_plaintext_without_tls": True}, "pop3d": {"listen": [listener("none")]}},
                     check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            names = []
            for i in range(3):
                names.append(os.path.basename(gw.deliver(user, message("u%d" % i))))
                time.sleep(0.002)
            p = self.login(gw, user, pw)
            _, before, _ = p.uidl()
            p.retr(2)
            p.quit()
            self.assertEqual(gw.messages(user, "cur"), [names[1] + ":2,S"])
            self.assertEqual(gw.messages(user, "new"), [names[0], names[2]])
            p = self.login(gw, user, pw)
            _, again, _ = p.uidl()
            p.retr(2)  # already seen: stays where it is
            p.quit()
            self.assertEqual(gw.messages(user, "cur"), [names[1] + ":2,S"])
            self.assertEqual(gw.restart("pop3d").running(), True)
            p = self.login(gw, user, pw)
            _, after, _ = p.uidl()
            p.quit()
            self.assertEqual(before, again)
            self.assertEqual(before, after)
            self.assertEqual(len(set(l.split()[1] for l in before)), 3)

    def test_byte_stuffing_and_crlf(self):
        user, pw = new_user(PLAIN)
        stored = (b"From: a@example.test\nSubject: dots\n\n.leading dot\n..two dots\n.\n"
                  b"bare\rcr\nmixed\r\nlast line without newline")
        PLAIN.deliver(user, stored)
        wire = crlf(stored)
        stuffed = re.sub(rb"(^|\r\n)\.", rb"\1..", wire)
        with LineClient.open(PLAIN.port("pop3d", tls="none")) as c:
            c.line()
            c.cmd("USER " + user)
            self.assertTrue(c.cmd("PASS " + pw).startswith("+OK"))
            self.assertEqual(c.cmd("LIST 1"), "+OK 1 %d" % len(wire))
            self.assertEqual(c.cmd("RETR 1"), "+OK %d octets" % len(wire))
            self.assertEqual(c.read_until(b"\r\n.\r\n"), stuffed + b".\r\n")
            self.assertTrue(c.cmd("TOP 1 0").startswith("+OK"))
            self.assertEqual(c.read_until(b"\r\n.\r\n"), b"From: a@example.test\r\nSubject: dots\r\n\r\n.\r\n")
            self.assertTrue(c.cmd("TOP 1 2").startswith("+OK"))
            self.assertEqual(c.read_until(b"\r\n.\r\n"),
                             b"From: a@example.test\r\nSubject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\r\n")
            self.assertTrue(c.cmd("TOP 1 100").startswith("+OK"))
            self.assertEqual(c.read_until(b"\r\n.\r\n"), stuffed + b".\r\n")
            c.cmd("QUIT")

    def test_sizes_of_crlf_and_large_messages(self):
        user, pw = new_user(PLAIN)
        small = message("crlf", "no final newline", eol="\r\n")
        big = b"Subject: big\n\n" + b"".join(b"%s line %d\n" % (b"." if i % 7 == 0 else b"x", i) for i in range(20000))
        PLAIN.deliver(user, small)
        time.sleep(0.002)
        PLAIN.deliver(user, big)
        p = self.login(PLAIN, user, pw)
        _, listing, _ = p.list()
        self.assertEqual([int(l.split()[1]) for l in listing], [len(small) + 2, len(crlf(big))])
        _, lines, _ = p.retr(2)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", crlf(big))
        p.quit()


class Tls(unittest.TestCase):
    def test_stls_injection(self):
        """Commands pipelined after STLS in the same write are discarded (CVE-2011-0411)."""
        with LineClient.open(STRICT.port("pop3d", tls="starttls")) as c:
            c.line()
            c.send(b"STLS\r\nCAPA\r\n")
            self.assertEqual(c.line(), "+OK Begin TLS negotiation now")
            self.assertEqual(c.buf, b"")
            c.starttls()
            c.sock.settimeout(0.5)
            with self.assertRaises((socket.timeout, ssl.SSLError)):
                data = c.sock.recv(4096)
                self.fail("unexpected data after the handshake: %r" % data)
            c.sock.settimeout(TIMEOUT)
            self.assertEqual(c.cmd("NOOP"), "-ERR Command not valid in this state")
            self.assertEqual(c.cmd("QUIT"), "+OK Logging out")
        STRICT.wait_log("pop3d", r"event=stls outcome=ok .*discarded_plaintext=6")

    def test_user_before_stls_is_forgotten(self):
        user, pw = new_user(PLAIN)
        with LineClient.open(PLAIN.port("pop3d", tls="starttls")) as c:
            c.line()
            self.assertTrue(c.cmd("USER " + user).startswith("+OK"))
            self.assertTrue(c.cmd("STLS").startswith("+OK"))
            c.starttls()
            self.assertEqual(c.cmd("PASS " + pw), "-ERR Send USER first")
            self.assertEqual(c.cmd("STLS"), "-ERR Already in TLS")
            c.cmd("QUIT")

    def test_tls_versions(self):
        # TLS 1.1 is refused by the server (alert 70 protocol_version), not just by our client.
        ctx = harness.client_tls_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        sock = harness.connect(STRICT.port("pop3d", tls="implicit"))
        try:
            with self.assertRaises(ssl.SSLError) as e:
                ctx.wrap_socket(sock, server_hostname=harness.HOSTNAME)
        finally:
            sock.close()
        if "NO_PROTOCOLS_AVAILABLE" in str(e.exception) or "NO_CIPHERS" in str(e.exception):
            self.skipTest("this OpenSSL cannot offer TLS 1.1: %s" % e.exception)
        self.assertIn("PROTOCOL_VERSION", str(e.exception).upper())
        with LineClient.open(STRICT.port("pop3d", tls="implicit"), tls=True) as c:
            self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertIsNone(c.sock.compression())
            self.assertTrue(c.line().startswith("+OK"))


class Protocol(unittest.TestCase):
    def session(self, gw=None, user=None, pw=None):
        gw = gw or PLAIN
        c = LineClient.open(gw.port("pop3d", tls="none"))
        c.line()
        if user:
            c.cmd("USER " + user)
            self.assertTrue(c.cmd("PASS " + pw).startswith("+OK"))
        return c

    def test_line_length_limit(self):
        user, pw = new_user(PLAIN)
        with self.session() as c:
            line255 = "USER " + "a" * 248  # 253 + CRLF = 255 octets (RFC 2449)
            self.assertEqual(c.cmd(line255), "+OK Send your password")
            self.assertTrue(c.cmd(line255 + "a").startswith("-ERR Line too long"))
            self.assertTrue(c.cmd("X" * 10000).startswith("-ERR Line too long"))
            c.cmd("USER " + user)
            self.assertTrue(c.cmd("PASS " + pw).startswith("+OK"))
            self.assertTrue(c.cmd("NOOP").startswith("+OK"))
            c.cmd("QUIT")

    def test_bad_commands(self):
        user, pw = new_user(PLAIN)
        PLAIN.deliver(user, message("x"))
        with self.session() as c:
            self.assertEqual(c.cmd("FOO"), "-ERR Unknown command")
            self.assertEqual(c.cmd(""), "-ERR Empty command")
            self.assertEqual(c.cmd("STAT"), "-ERR Command not valid in this state")
            self.assertEqual(c.cmd("RETR 1"), "-ERR Command not valid in this state")
            self.assertEqual(c.cmd("PASS x"), "-ERR Send USER first")
            self.assertTrue(c.cmd("APOP onlyonearg").startswith("-ERR"))
            self.assertTrue(c.cmd("AUTH NOSUCHMECH").startswith("-ERR"))
            c.cmd("QUIT")
        with self.session() as c:  # a new session: the ones above count towards max_bad_commands
            c.cmd("USER " + user)
            self.assertTrue(c.cmd("pass " + pw).startswith("+OK"))  # case-insensitive keywords
            self.assertEqual(c.cmd("USER " + user), "-ERR Command not valid in this state")
            self.assertEqual(c.cmd("STLS"), "-ERR Command not valid in this state")
            for bad in ("RETR 2", "RETR 0", "RETR -1", "RETR abc", "RETR", "LIST 9", "DELE 99999999999999999999",
                        "UIDL 2"):
                self.assertEqual(c.cmd(bad), "-ERR No such message", bad)
            self.assertTrue(c.cmd("TOP 1").startswith("-ERR"))
            self.assertTrue(c.cmd("TOP 1 x").startswith("-ERR"))
            self.assertTrue(c.cmd("STAT 1").startswith("-ERR"))
            self.assertTrue(c.cmd("stat").startswith("+OK 1 "))
            c.cmd("QUIT")

    def test_max_bad_commands_closes(self):
        with Gateway({"pop3d": {"max_bad_commands": 3, "listen": [listener("none")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            with LineClient.open(gw.port("pop3d")) as c:
                c.line()
                self.assertEqual(c.cmd("FOO"), "-ERR Unknown command")
                self.assertEqual(c.cmd("BAR"), "-ERR Unknown command")
                self.assertEqual(c.cmd("BAZ"), "-ERR Unknown command")
                self.assertEqual(c.line(), "-ERR Too many invalid commands, closing connection")
                self.assertEqual(c.wait_closed(5), b"")
            gw.wait_log("pop3d", r"event=disconnect reason=too-many-bad-commands")

    def test_idle_autologout(self):
        with Gateway({"auth": {"allow_plaintext_without_tls": True},
                      "pop3d": {"idle_timeout_seconds": 1, "listen": [listener("none")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            gw.deliver(user, message("kept"))
            with LineClient.open(gw.port("pop3d")) as c:
                c.line()
                c.cmd("USER " + user)
                self.assertTrue(c.cmd("PASS " + pw).startswith("+OK"))
                self.assertTrue(c.cmd("DELE 1").startswith("+OK"))
                t0 = time.monotonic()
                self.assertEqual(c.line(), "-ERR Disconnected for inactivity")
                self.assertEqual(c.wait_closed(5), b"")
                self.assertGreater(time.monotonic() - t0, 0.5)
            gw.wait_log("pop3d", r"event=disconnect reason=idle-timeout")
            # an autologout is not a QUIT: nothing was removed
            self.assertEqual(len(gw.messages(user, "new")), 1)

    def test_apop_timestamps_unique(self):
        stamps = set()
        port = STRICT.port("pop3d", tls="starttls")
        rx = re.compile(r"^\+OK .*(<[^<>@]+@mail\.example\.test>)$")
        for _ in range(200):
            with LineClient.open(port) as c:
                m = rx.match(c.line())
                self.assertIsNotNone(m)
                stamps.add(m.group(1))
        self.assertEqual(len(stamps), 200)

    def test_auth_cancel_and_bad_base64(self):
        user, pw = new_user(PLAIN, legacy=True)
        with self.session() as c:
            self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
            self.assertEqual(c.cmd("*"), "-ERR [AUTH] Authentication cancelled")
            self.assertTrue(c.cmd("AUTH LOGIN").startswith("+ "))
            self.assertEqual(c.cmd("*"), "-ERR [AUTH] Authentication cancelled")
            # Not in this listener's auth.mechanisms_without_tls (PLAIN LOGIN): refused, session goes on.
            self.assertEqual(c.cmd("AUTH CRAM-MD5"), "-ERR Unsupported authentication mechanism")
            self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
            self.assertEqual(c.cmd("!!notbase64"), "-ERR [AUTH] Invalid base64 in response")
            self.assertEqual(c.cmd("AUTH PLAIN ab=c"), "-ERR [AUTH] Invalid base64 in initial response")
            self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(b"no-nuls").decode()),
                             "-ERR [AUTH] Malformed authentication response")
            # the session goes on and the same mechanism then works
            ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
            self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
            self.assertTrue(c.cmd(ir).startswith("+OK"))
            c.cmd("QUIT")
        lines = PLAIN.wait_log("pop3d", r"event=auth outcome=aborted reason=client-cancelled ip=\S+ proto=pop3 mech=\S+", count=2)
        self.assertTrue(lines)

    def test_bare_auth_lists_mechanisms(self):
        with self.session() as c:
            self.assertEqual(c.cmd("AUTH"), "+OK")
            self.assertEqual(c.multiline(), [b"PLAIN", b"LOGIN"])
            c.cmd("QUIT")

    def test_pipelining(self):
        user, pw = new_user(PLAIN)
        PLAIN.deliver(user, message("p"))
        with self.session() as c:
            c.send("USER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL 1\r\nNOOP\r\nQUIT\r\n" % (user, pw))
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.line().startswith("+OK Logged in"))
            self.assertTrue(c.line().startswith("+OK 1 "))
            self.assertTrue(c.line().startswith("+OK"))
            self.assertEqual(len(c.multiline()), 1)
            self.assertTrue(c.line().startswith("+OK 1 "))
            self.assertEqual(c.line(), "+OK")
            self.assertTrue(c.line().startswith("+OK Logging out"))
            self.assertEqual(c.wait_closed(5), b"")

    def test_connection_limit_per_ip(self):
        with Gateway({"pop3d": {"max_connections_per_ip": 3, "listen": [listener("none")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            port = gw.port("pop3d")
            held = [LineClient.open(port) for _ in range(3)]
            try:
                for c in held:
                    self.assertTrue(c.line().startswith("+OK"))
                with LineClient.open(port) as c:
                    self.assertEqual(c.line(), "-ERR [SYS/TEMP] Too many connections")
                    self.assertEqual(c.wait_closed(5), b"")
                with LineClient.open(port, source="127.0.0.7") as c:
                    self.assertTrue(c.line().startswith("+OK"))
                held[0].cmd("QUIT")
                held[0].wait_closed(5)

                def admitted():
                    with LineClient.open(port) as c:
                        return c.line().startswith("+OK")
                gw.wait_for(admitted, what="a slot after QUIT")
            finally:
                for c in held:
                    c.close()
            gw.wait_log("pop3d", r"event=connection-refused ip=127\.0\.0\.1 reason=connection-limit")

    def test_sighup_reloads_settings_and_keeps_sessions(self):
        with Gateway({"auth": {"allow_plaintext_without_tls": True},
                      "pop3d": {"listen": [listener("starttls"), listener("implicit")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            port = gw.port("pop3d", tls="starttls")
            with LineClient.open(port) as live:
                live.line()
                live.cmd("USER " + user)
                self.assertTrue(live.cmd("PASS " + pw).startswith("+OK"))
                gw.rewrite_config({"auth": {"allow_plaintext_without_tls": False}, "pop3d": {"max_bad_commands": 2}})
                gw.signal("pop3d", signal.SIGHUP)
                gw.wait_log("pop3d", r"event=reload outcome=ok")
                self.assertTrue(live.cmd("NOOP").startswith("+OK"))  # the session survived
                with LineClient.open(port) as c:
                    c.line()
                    self.assertEqual(c.cmd("USER " + user), TLS_ERR)  # new policy
                    self.assertEqual(c.cmd("FOO"), "-ERR Unknown command")
                    self.assertEqual(c.cmd("BAR"), "-ERR Unknown command")  # max_bad_commands 10 -> 2
                    self.assertEqual(c.line(), "-ERR Too many invalid commands, closing connection")
                self.assertTrue(live.cmd("QUIT").startswith("+OK"))
            # a config error keeps the running settings
            with open(gw.config_path, "w") as f:
                f.write("{ not json")
            gw.signal("pop3d", signal.SIGHUP)
            gw.wait_log("pop3d", r"event=reload outcome=failed")
            with LineClient.open(gw.port("pop3d", tls="implicit"), tls=True) as c:
                self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(gw.daemons["pop3d"].running())

    def test_sigterm_with_live_sessions(self):
        with Gateway({"auth": {"allow_plaintext_without_tls": True},
                      "pop3d": {"listen": [listener("none"), listener("implicit")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            user, pw = new_user(gw)
            gw.deliver(user, message("m"))
            a = LineClient.open(gw.port("pop3d", tls="none"))
            a.line()
            a.cmd("USER " + user)
            a.cmd("PASS " + pw)
            a.cmd("DELE 1")
            b = LineClient.open(gw.port("pop3d", tls="implicit"), tls=True)
            b.line()
            try:
                self.assertEqual(gw.stop("pop3d"), 0)
                # each idle session got the goodbye before the close, the POP3S one inside TLS
                self.assertEqual(a.wait_closed(5), b"-ERR [SYS/TEMP] Server shutting down\r\n")
                self.assertEqual(b.wait_closed(5), b"-ERR [SYS/TEMP] Server shutting down\r\n")
            finally:
                a.close()
                b.close()
            self.assertEqual(len(gw.messages(user, "new")), 1)  # a stopped daemon removes nothing
            self.assertNotIn("session-crashed", gw.log("pop3d"))


def run_tool(argv, timeout=20, **kw):
    return subprocess.run(argv, capture_output=True, timeout=timeout, **kw)


@harness.needs_tool("curl")
class Curl(unittest.TestCase):
    def curl(self, url, user, pw, *args):
        p = run_tool(["curl", "-sS", "--max-time", "10", "-u", "%s:%s" % (user, pw)] + list(args) + [url])
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def setUp(self):
        self.user, self.pw = new_user(STRICT, legacy=True)
        self.msg = message("curl", "line one\n.line two starts with a dot\n")
        STRICT.deliver(self.user, self.msg)
        self.plain = "pop3://127.0.0.1:%d/" % STRICT.port("pop3d", tls="starttls")
        self.pop3s = "pop3s://127.0.0.1:%d/" % STRICT.port("pop3d", tls="implicit")

    def retrieve(self, url, *args, source=None):
        extra = ["--interface", source] if source else []
        rc, out, err = retry_curl(lambda: self.curl(url + "1", self.user, self.pw, *(list(args) + extra)))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, crlf(self.msg))

    def test_apop_plain(self):
        self.retrieve(self.plain, "--login-options", "AUTH=+APOP", source="127.0.0.31")
        self.assertEqual(grant_for(STRICT, "127.0.0.31")[0]["method"], "apop")

    def test_apop_pop3s(self):
        self.retrieve(self.pop3s, "-k", "--login-options", "AUTH=+APOP")

    def test_sasl_plain_pop3s(self):
        self.retrieve(self.pop3s, "-k", "--login-options", "AUTH=PLAIN", source="127.0.0.32")
        self.assertEqual(grant_for(STRICT, "127.0.0.32")[0]["method"], "pop3-sasl")

    def test_sasl_login_stls(self):
        self.retrieve(self.plain, "-k", "--ssl-reqd", "--login-options", "AUTH=LOGIN")

    def test_sasl_cram_md5_plain(self):
        self.retrieve(self.plain, "--login-options", "AUTH=CRAM-MD5")

    def test_cram_md5_not_listed_is_refused_inside_tls(self):
        # auth.mechanisms is the administrator's choice (issue 9): by default PLAIN LOGIN inside
        # TLS, and a mechanism that is not listed is neither offered nor accepted.
        with LineClient.open(STRICT.port("pop3d", tls="implicit"), tls=True) as c:
            self.assertTrue(c.line().startswith("+OK"))
            self.assertEqual(c.cmd("AUTH CRAM-MD5"), "-ERR Unsupported authentication mechanism")
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))

    def test_user_pass_pop3s_and_list(self):
        rc, out, err = retry_curl(lambda: self.curl(self.pop3s, self.user, self.pw, "-k"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"1 %d\r\n" % len(crlf(self.msg)))

    def test_plain_refused_without_tls(self):
        rc, out, err = self.curl(self.plain + "1", self.user, self.pw, "--login-options", "AUTH=PLAIN")
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, b"")

    def test_wrong_password(self):
        rc, _, _ = self.curl(self.pop3s + "1", self.user, self.pw + "x", "-k", "--interface", "127.0.0.33")
        self.assertEqual(rc, 67)  # CURLE_LOGIN_DENIED
        self.assertEqual(grant_for(STRICT, "127.0.0.33"), [])


def retry_curl(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        rc, out, err = fn()
        if rc == 0 or "IN-USE" not in err or time.monotonic() > deadline:
            return rc, out, err
        time.sleep(0.05)


@harness.needs_tool("fetchmail")
class ListedMechanisms(unittest.TestCase):
    """auth.mechanisms lists CRAM-MD5 ("encrypted password" mailers over STLS): Perl Net::POP3
    picks it from CAPA's SASL line by itself, and logs in."""

    def test_net_pop3_picks_cram_md5_from_capa(self):
        perl = harness.require_tool("perl")
        with Gateway({"auth": {"mechanisms": ["CRAM-MD5", "PLAIN"], "failure_delay_max_ms": FAILURE_DELAY_MAX_MS},
                      "pop3d": {"listen": [listener("starttls")]}}, check_exit=True) as gw:
            gw.start("pop3d")
            gw.add_user("carol", "carol-legacy-pw", legacy=True)
            script = r"""
use strict; use Net::POP3; use IO::Socket::SSL;
my ($port, $user, $pw) = @ARGV;
my $p = Net::POP3->new("127.0.0.1", Port => $port, Timeout => 15) or die "connect: $@";
$p->starttls(SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE()) or die "starttls failed";
my $caps = $p->capa; print "SASL $caps->{SASL}\n";
$p->auth($user, $pw) or die "auth failed: " . $p->message;
print "OK\n"; $p->quit;
"""
            r = subprocess.run([perl, "-e", script, str(gw.port("pop3d")), "carol", "carol-legacy-pw"],
                               capture_output=True, timeout=60)
            harness.check_perl_modules(r)
            self.assertEqual(r.returncode, 0, r.stderr.decode() + r.stdout.decode())
            self.assertIn(b"SASL CRAM-MD5 PLAIN", r.stdout)
            gw.wait_log("pop3d", r"event=auth outcome=ok ip=127\.0\.0\.1 proto=pop3 mech=CRAM-MD5 user=carol ")


class Fetchmail(unittest.TestCase):
    def fetch(self, port, user, pw, *args):
        home = tempfile.mkdtemp(prefix="rg-fetchmail-")
        try:
            out = os.path.join(home, "delivered")
            rc = os.path.join(home, "fetchmailrc")
            with open(rc, "w") as f:
                f.write('set no syslog\npoll 127.0.0.1 proto POP3 service %d timeout 10\n'
                        '  user "%s" password "%s" mda "cat >> %s"\n' % (port, user, pw, out))
            os.chmod(rc, 0o600)
            env = dict(os.environ, FETCHMAILHOME=home, HOME=home)
            p = run_tool(["fetchmail", "-f", rc, "--nodetach", "--pidfile", os.path.join(home, "pid"),
                          "-i", os.path.join(home, "ids")] + list(args), timeout=30, env=env)
            data = open(out, "rb").read() if os.path.exists(out) else b""
            return p.returncode, data, (p.stdout + p.stderr).decode(errors="replace")
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def test_apop(self):
        user, pw = new_user(STRICT, legacy=True)
        STRICT.deliver(user, message("fetchmail apop", "via APOP\n"))
        # fetchmail 6.4 names APOP a protocol (-p APOP), not an --auth type; no opportunistic STLS.
        rc, data, log = self.fetch(STRICT.port("pop3d", tls="starttls"), user, pw, "-p", "APOP", "--sslproto", "")
        self.assertEqual(rc, 0, log)
        self.assertIn(b"Subject: fetchmail apop", data)
        self.assertIn(b"via APOP", data)
        self.assertEqual(STRICT.messages(user, "new") + STRICT.messages(user, "cur"), [])  # not kept
        STRICT.wait_log("pop3d", r"event=auth outcome=ok ip=\S+ proto=pop3 mech=APOP user=%s " % user)

    def test_ssl(self):
        user, pw = new_user(STRICT)
        STRICT.deliver(user, message("fetchmail ssl", "via POP3S\n"))
        rc, data, log = self.fetch(STRICT.port("pop3d", tls="implicit"), user, pw, "--ssl", "--nosslcertck", "--keep")
        self.assertEqual(rc, 0, log)
        self.assertIn(b"via POP3S", data)
        self.assertEqual(len(STRICT.messages(user, "cur")), 1)  # kept, marked seen
        STRICT.wait_log("pop3d", r"event=auth outcome=ok ip=\S+ proto=pop3 mech=USER user=%s .*tls=\"TLSv1\.[23] " % user)


if __name__ == "__main__":
    harness.main()
