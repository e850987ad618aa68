#!/usr/bin/env python3
"""Issue 9 end to end: what an administrator meets first. One instance per spool (a second
daemon on the same config touches nothing and names the lock holder), the daemons' --version
and --help, TLS files generated only where allowed, and SMTP replies checked byte for byte
(RFC 5321 §4.2 one space, 501 for control characters, address literals, HELO sync after the dot)."""
import hashlib
import os
import re
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway, LineClient  # noqa: E402

PW = "admin-test-pass"
T = 15


def tree(root):
    """{relative path: sha256} of every file below root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class SecondInstance(unittest.TestCase):
    def test_second_smtpd_touches_nothing_and_names_the_holder(self):
        with Gateway({"auth": {"failure_delay_max_ms": 300}}, check_exit=True) as gw:
            gw.add_user("alice", PW)
            gw.start("smtpd")
            body = b"Subject: in flight\r\n\r\n" + b"line of the message in flight\r\n" * 200
            c = LineClient.open(gw.port("smtpd", mode="relay"))
            self.assertTrue(c.line().startswith("220 "))
            c.send("EHLO c.test\r\n")
            while not c.line().startswith("250 "):
                pass
            self.assertTrue(c.cmd("MAIL FROM:<x@remote.test>").startswith("250 "))
            self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
            self.assertTrue(c.cmd("DATA").startswith("354 "))
            c.send(body[:2000])
            time.sleep(0.2)
            before = (tree(gw.path("spool_dir")), tree(gw.path("maildir_root")))
            p = subprocess.run([gw.binary("smtpd"), "--config", gw.config_path], capture_output=True, text=True,
                               timeout=30, cwd=gw.dir)
            self.assertNotEqual(p.returncode, 0)
            lock = os.path.join(gw.path("spool_dir"), "relaygate-smtpd.lock")
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn(gw.config_path, lines[0])
            self.assertIn(lock, lines[0])
            self.assertIn("pid %d" % gw.pid("smtpd"), lines[0])
            self.assertEqual((tree(gw.path("spool_dir")), tree(gw.path("maildir_root"))), before)
            c.send(body[2000:] + b".\r\n")
            self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
            c.cmd("QUIT")
            c.close()
            names = gw.messages("alice", "new")
            self.assertEqual(len(names), 1)
            with open(os.path.join(gw.maildir("alice"), "new", names[0]), "rb") as f:
                stored = f.read()
            self.assertTrue(stored.endswith(body), "message delivered intact")

    def test_second_pop3d_is_refused(self):
        with Gateway(check_exit=True) as gw:
            gw.start("pop3d")
            p = subprocess.run([gw.binary("pop3d"), "--config", gw.config_path], capture_output=True, text=True,
                               timeout=30, cwd=gw.dir)
            self.assertNotEqual(p.returncode, 0)
            self.assertRegex(p.stderr, r"another instance is running with config .*relaygate-pop3d\.lock is held by pid %d"
                             % gw.pid("pop3d"))


@unittest.skipUnless(os.geteuid() == 0, "needs root to create a service user")
class StartAsServiceUser(unittest.TestCase):
    """A database root made (0640 root:root) cannot be written by the service user: the daemon
    refuses to start and names the path, its owner and mode, instead of failing every login."""

    def setUp(self):
        self.user = "rgadm-" + os.urandom(3).hex()
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.user], check=True)

    def tearDown(self):
        subprocess.run(["userdel", self.user], capture_output=True)

    def test_root_owned_database_is_refused_by_name(self):
        import pwd
        pw = pwd.getpwnam(self.user)
        with Gateway({"run_as": {"user": self.user, "allow_root": False}}) as gw:
            os.chmod(gw.dir, 0o755)
            for sub in ("", "mail", "spool", "tls"):
                os.makedirs(os.path.join(gw.var, sub), exist_ok=True)
                os.chown(os.path.join(gw.var, sub), pw.pw_uid, pw.pw_gid)
            db = gw.path("database")
            with open(db, "w"):
                pass
            os.chmod(db, 0o640)  # root:root 0640, as an old relaygatectl run as root left it
            for daemon in ("pop3d", "smtpd"):
                p = subprocess.run([gw.binary(daemon), "--config", gw.config_path], capture_output=True, text=True,
                                   timeout=30, cwd=gw.dir)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("event=preflight outcome=failed msg=\"database: %s is not writable by %s (owner root:root, mode 0640)" % (db, self.user),
                              p.stderr)
            # Once the file is the service user's the same start works.
            os.chown(db, pw.pw_uid, pw.pw_gid)
            p = subprocess.run([gw.binary("smtpd"), "--config", gw.config_path, "--check-config"], capture_output=True,
                               text=True, timeout=30, cwd=gw.dir)
            self.assertEqual(p.returncode, 0, p.stderr)


class Options(unittest.TestCase):
    def test_version_and_help_on_stdout(self):
        with Gateway() as gw:
            for d, prog in (("smtpd", "relaygate-smtpd"), ("pop3d", "relaygate-pop3d")):
                v = subprocess.run([gw.binary(d), "--version"], capture_output=True, text=True, timeout=10)
                self.assertEqual(v.returncode, 0)
                self.assertRegex(v.stdout, r"^%s \d+\.\d+\.\d+\n$" % prog)
                h = subprocess.run([gw.binary(d), "--help"], capture_output=True, text=True, timeout=10)
                self.assertEqual((h.returncode, h.stderr), (0, ""))
                self.assertIn("--check-config", h.stdout)
                bad = subprocess.run([gw.binary(d), "--bogus"], capture_output=True, text=True, timeout=10)
                self.assertEqual(bad.returncode, 2)
                self.assertIn("--bogus", bad.stderr)


class TlsFiles(unittest.TestCase):
    def test_typo_in_configured_path_is_an_error_not_a_new_certificate(self):
        with Gateway() as gw:
            gw.rewrite_config({"tls": {"certificate": "var/tls/certt.pem", "private_key": "var/tls/key.pem"}})
            p = subprocess.run([gw.binary("smtpd"), "--config", gw.config_path], capture_output=True, text=True,
                               timeout=30, cwd=gw.dir)
            self.assertEqual(p.returncode, 1)
            self.assertIn("certt.pem", p.stderr)
            self.assertFalse(os.path.exists(os.path.join(gw.dir, "var/tls/certt.pem")))

    def test_default_paths_generate_and_log_the_fingerprint(self):
        with Gateway() as gw:
            gw.start("smtpd")
            line = gw.wait_log("smtpd", r"event=tls-generated ")[0]
            self.assertIn(os.path.join(gw.dir, "var/tls/cert.pem"), line)
            self.assertRegex(line, r"sha256=([0-9A-F]{2}:){31}[0-9A-F]{2} ")


class ExactBytes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = Gateway({"auth": {"failure_delay_max_ms": 300}, "smtpd": {"max_errors": 50}})
        cls.gw.add_user("alice", PW)
        cls.gw.start("smtpd")

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()

    def raw(self, data, mode="relay", ehlo=True):
        """After the greeting (and an EHLO exchange: pipelining before its reply is a sync error)
        sends raw bytes; returns (greeting, reply bytes until quiet or closed)."""
        s = harness.connect(self.gw.port("smtpd", mode=mode), timeout=T)
        c = LineClient(s)
        greeting = c.read_until(b"\r\n")
        if ehlo:
            c.send("EHLO c.test\r\n")
            while not c.line().startswith("250 "):
                pass
        c.send(data)
        out = b""
        s.settimeout(1.0)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
        s.close()
        return greeting, c.buf + out

    def test_greeting_and_354_have_one_space(self):
        greeting, out = self.raw(b"QUIT\r\n")
        self.assertEqual(greeting, b"220 mail.example.test ESMTP relaygate\r\n")
        s = harness.connect(self.gw.port("smtpd", mode="relay"), timeout=T)
        c = LineClient(s)
        c.read_until(b"\r\n")
        self.assertEqual(c.cmd("EHLO c.test"), "250-mail.example.test")
        while c.line().startswith("250-"):
            pass
        c.cmd("MAIL FROM:<x@remote.test>")
        c.cmd("RCPT TO:<alice@example.test>")
        c.send("DATA\r\n")
        self.assertEqual(c.read_until(b"\r\n"), b"354 End data with <CR><LF>.<CR><LF>\r\n")
        c.send(".\r\n")
        self.assertRegex(c.read_until(b"\r\n"), rb"^250 2\.0\.0 Ok: queued as \w+\r\n$")
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        s.close()

    def test_control_characters_are_501(self):
        for bad in (b"NOOP\x00\r\n", b"MAIL FROM:<a\x00@remote.test>\r\n", b"HELO a\x01b\r\n", b"NO\rOP\r\n",
                    b"RCPT TO:<a@b.test>\x7f\r\n"):
            with self.subTest(bad=bad):
                _, out = self.raw(bad + b"QUIT\r\n")
                replies = out.split(b"\r\n")
                self.assertIn(b"501 5.5.2 Syntax error: control character in command", replies, out)
        self.gw.wait_log("smtpd", r"event=unknown outcome=rejected reason=control-character ip=127\.0\.0\.1 code=501")

    def test_invalid_domain_literal_is_a_syntax_error(self):
        _, out = self.raw(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<u@[321.1.2.3]>\r\n"
                          b"RCPT TO:<u@[1.2.3.4]>\r\nQUIT\r\n")
        self.assertIn(b"\r\n501 5.1.3 Bad recipient address syntax", out)
        self.assertIn(b"\r\n554 5.7.1 <u@[1.2.3.4]>: Relay access denied\r\n", out)

    def test_unauthorized_client_never_hears_about_the_smarthost(self):
        with Gateway() as gw:
            gw.config.pop("smarthost", None)
            gw.rewrite_config({})
            gw.start("smtpd")
            with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="relay"), timeout=T) as s:
                s.ehlo("c.test")
                s.mail("x@remote.test")
                self.assertEqual(s.rcpt("far@remote.test"), (554, b"5.7.1 <far@remote.test>: Relay access denied"))

    def test_helo_session_bytes_after_the_dot_are_a_sync_error(self):
        _, out = self.raw(b"HELO c.test\r\n", ehlo=False)  # warm-up: HELO works
        self.assertTrue(out.startswith(b"250 mail.example.test\r\n"), out)
        s = harness.connect(self.gw.port("smtpd", mode="relay"), timeout=T)
        c = LineClient(s)
        c.read_until(b"\r\n")
        self.assertEqual(c.cmd("HELO c.test"), "250 mail.example.test")
        self.assertTrue(c.cmd("MAIL FROM:<x@remote.test>").startswith("250 "))
        self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250 "))
        self.assertTrue(c.cmd("DATA").startswith("354 "))
        before = len(self.gw.messages("alice", "new"))
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<y@remote.test>\r\n")
        self.assertEqual(c.read_until(b"\r\n"), b"554 5.5.0 Error: SMTP protocol synchronization\r\n")
        c.wait_closed()
        self.assertEqual(len(self.gw.messages("alice", "new")), before)


if __name__ == "__main__":
    harness.main()
