#!/usr/bin/env python3
"""PostgreSQL down when the daemons start (issue 12, Deliver 3): with "database" a postgresql://
URI whose server is stopped, pop3d and smtpd still start, each logs one warning naming the
database, a POP3 login answers -ERR [SYS/TEMP] and a grant-dependent RCPT 451 4.3.0 (never a
relay); once the server is back the next login is +OK and the RCPT it grants relays (250), with
no restart. A malformed URI still stops the daemon at start. Real daemons, real clients, a
throwaway PostgreSQL 15 (tests/pgtest.py)."""
import os
import poplib
import smtplib
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402
import pgtest  # noqa: E402
from harness import Gateway  # noqa: E402

PW = "s3cret-pass"
T = 15
LIMIT_MS = 1000
SLACK = 1.5  # seconds on top of the limit for a loaded (or ASan) CI machine


class StartWhilePostgresDown(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.pg = pgtest.Postgres()
        except pgtest.PgUnavailable:
            harness.missing_client("PostgreSQL 15 (postgresql-15)")
        cls.pg.start()
        cls.uri = cls.pg.create_database("relaygate")

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def pop3_login(self, gw):
        return harness.pop3s_login(gw, "alice", PW, timeout=T)

    def relay_rcpt(self, gw):
        with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="relay"), timeout=T) as s:
            s.ehlo("c.test")
            s.mail("x@example.test")
            return s.docmd("RCPT", "TO:<far@remote.test>")

    def test_daemons_start_and_recover(self):
        with Gateway({"database": self.uri, "database_timeout_ms": LIMIT_MS,
                      "auth": {"failure_delay_max_ms": 300}}) as gw:
            gw.add_user("alice", PW)  # relaygatectl creates the schema on PostgreSQL
            self.pg.stop(mode="immediate")
            try:
                gw.start("smtpd")
                gw.start("pop3d")
                for daemon in ("smtpd", "pop3d"):
                    line = gw.wait_log(daemon, r"event=database-unavailable")[0]
                    self.assertIn(self.uri, line)
                    self.assertTrue(line.split()[1].startswith("warn"), line)
                code, msg = self.relay_rcpt(gw)
                self.assertEqual((code, msg[:5]), (451, b"4.3.0"), msg)
                with self.assertRaises(poplib.error_proto) as e:
                    self.pop3_login(gw)
                self.assertIn(b"[SYS/TEMP]", e.exception.args[0])
                self.assertTrue(gw.daemons["smtpd"].running() and gw.daemons["pop3d"].running())
            finally:
                self.pg.start()
            # Back: no restart, the next jobs connect.
            self.assertTrue(self.pop3_login(gw).startswith(b"+OK"))
            code, msg = self.relay_rcpt(gw)
            self.assertEqual(code, 250, msg)
            grants = gw.grants()
            self.assertEqual([(g["ip"], g["method"]) for g in grants], [("127.0.0.1", "pop3")], grants)

    def test_malformed_uri_stops_the_daemon(self):
        bad = self.uri + "&no_such_libpq_option=1"
        with Gateway({"database": bad}) as gw:
            for daemon in ("smtpd", "pop3d"):
                p = subprocess.run([gw.binary(daemon), "--config", gw.config_path], capture_output=True, text=True,
                                   timeout=30)
                self.assertNotEqual(p.returncode, 0, p.stderr)
                self.assertIn("not a valid PostgreSQL connection URI", p.stderr)
                self.assertIn("no_such_libpq_option", p.stderr)


if __name__ == "__main__":
    harness.main()
