#!/usr/bin/env python3
"""relaygatectl end to end: every command, exit codes 0/1/2, messages naming what failed,
the status file after each grant change, and bad input that must write nothing."""
import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/authdb/relaygatectl"


class Cli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rg-cli-")
        self.cfg = os.path.join(self.dir, "relaygate.json")
        with open(self.cfg, "w") as f:
            json.dump({"database": "db/relaygate.db", "status_file": "run/status.json",
                       "local_domains": ["example.test"], "grants": {"ttl_seconds": 600}}, f)
        os.mkdir(os.path.join(self.dir, "db"))
        self.db = os.path.join(self.dir, "db/relaygate.db")
        self.status = os.path.join(self.dir, "run/status.json")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def ctl(self, *args, stdin=None, config=True):
        argv = [CTL] + (["--config", self.cfg] if config else []) + list(args)
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, stdin=None):
        rc, out, err = self.ctl(*args, stdin=stdin)
        self.assertEqual(rc, 0, f"{args}: rc={rc} out={out!r} err={err!r}")
        return out, err

    def add(self, name, pw="pw-" + "x" * 8, *extra):
        return self.ok("user", "add", name, "--password-stdin", *extra, stdin=pw + "\n")

    def status_json(self):
        with open(self.status) as f:
            return json.load(f)

    def test_user_lifecycle(self):
        self.add("Alice")
        out, _ = self.ok("user", "list")
        self.assertIn("alice", out)
        rc, _, err = self.ctl("user", "add", "alice", "--password-stdin", stdin="x\n")
        self.assertEqual(rc, 1)
        self.assertIn("already exists", err)
        self.ok("user", "disable", "alice")
        users = json.loads(self.ok("user", "list", "--json")[0])
        self.assertEqual(users[0]["name"], "alice")
        self.assertFalse(users[0]["enabled"])
        self.ok("user", "enable", "ALICE")
        self.ok("user", "passwd", "alice", "--password-stdin", stdin="new-password\n")
        self.ok("user", "del", "alice")
        rc, _, err = self.ctl("user", "del", "alice")
        self.assertEqual(rc, 1)
        self.assertIn("no such user: alice", err)

    def test_legacy_mechs_warn_and_store_secret(self):
        _, err = self.add("bob", "bobsecret", "--legacy-mechs")
        self.assertIn("password-equivalent", err)
        users = json.loads(self.ok("user", "list", "--json")[0])
        self.assertTrue(users[0]["legacy_mechs"])
        _, err = self.add("carol", "carolsecret")
        self.assertNotIn("password-equivalent", err)
        # A hash import cannot serve legacy mechanisms: it turns them off, with a warning.
        _, err = self.ok("user", "passwd", "bob", "--hash-stdin",
                         stdin="$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n")
        self.assertIn("legacy mechanisms disabled", err)
        con = sqlite3.connect(self.db)
        row = con.execute("SELECT password_hash, legacy_secret FROM users WHERE name='bob'").fetchone()
        con.close()
        self.assertTrue(row[0].startswith("$6$saltsalt$"))
        self.assertIsNone(row[1])

    def test_password_is_hashed_not_stored(self):
        self.add("dave", "plain-text-pw")
        con = sqlite3.connect(self.db)
        h, secret = con.execute("SELECT password_hash, legacy_secret FROM users").fetchone()
        con.close()
        self.assertTrue(h.startswith("$y$"))
        self.assertNotIn("plain-text-pw", h)
        self.assertIsNone(secret)

    def test_bad_hash_import_is_refused(self):
        self.add("erin")
        rc, _, err = self.ctl("user", "passwd", "erin", "--hash-stdin", stdin="not-a-hash\n")
        self.assertEqual(rc, 1)
        self.assertIn("crypt(3)", err)

    def test_grants_and_status_file(self):
        self.add("alice")
        out, _ = self.ok("grant", "add", "::ffff:192.0.2.10", "--user", "alice", "--ttl", "120")
        self.assertIn("192.0.2.10", out)
        st = self.status_json()
        self.assertEqual([g["ip"] for g in st["grants"]], ["192.0.2.10"])
        self.assertEqual(st["grants"][0]["method"], "admin")
        self.assertEqual(st["grants"][0]["user"], "alice")
        self.assertIsNone(st["grants"][0]["last_used_at"])
        for k in ("generated_at", ):
            self.assertTrue(st[k].endswith("Z"))
        self.ok("grant", "add", "2001:db8::5", "--user", "alice")
        grants = json.loads(self.ok("grant", "list", "--json")[0])
        self.assertEqual(sorted(g["ip"] for g in grants), ["192.0.2.10", "2001:db8::5"])
        out, _ = self.ok("status")
        self.assertIn("2001:db8::5", out)
        self.ok("grant", "revoke", "192.0.2.10")
        self.assertEqual([g["ip"] for g in self.status_json()["grants"]], ["2001:db8::5"])
        rc, _, err = self.ctl("grant", "revoke", "192.0.2.10")
        self.assertEqual(rc, 1)
        self.assertIn("no grant for 192.0.2.10", err)
        self.ok("grant", "revoke", "--user", "alice")
        self.assertEqual(self.status_json()["grants"], [])
        self.ok("grant", "add", "192.0.2.11", "--user", "alice")
        self.ok("user", "del", "alice")
        self.assertEqual(self.status_json()["grants"], [])
        self.ok("grant", "purge")
        os.remove(self.status)
        self.ok("status", "--write")
        self.assertEqual(self.status_json()["grants"], [])

    def test_expired_grant_never_listed(self):
        self.add("alice")
        con = sqlite3.connect(self.db)
        uid = con.execute("SELECT id FROM users").fetchone()[0]
        con.execute("INSERT INTO grants VALUES('192.0.2.77', ?, 'pop3', 1, 1, 2, NULL, 1)", (uid,))
        con.commit()
        con.close()
        self.assertEqual(json.loads(self.ok("grant", "list", "--json")[0]), [])
        self.ok("status", "--write")
        self.assertEqual(self.status_json()["grants"], [])
        out, _ = self.ok("grant", "purge")
        self.assertIn("1 expired", out)

    def test_grant_needs_existing_enabled_user(self):
        rc, _, err = self.ctl("grant", "add", "192.0.2.1", "--user", "ghost")
        self.assertEqual(rc, 1)
        self.add("alice")
        self.ok("user", "disable", "alice")
        rc, _, err = self.ctl("grant", "add", "192.0.2.1", "--user", "alice")
        self.assertEqual(rc, 1)
        self.assertIn("disabled", err)

    def test_bad_input_writes_nothing(self):
        self.add("alice")
        cases = [
            (("grant", "add", "300.1.1.1", "--user", "alice"), 1, "invalid IP address"),
            (("grant", "add", "192.0.2.1/24", "--user", "alice"), 1, "invalid IP address"),
            (("grant", "add", "192.0.2.1", "--user", "alice", "--ttl", "0"), 2, "--ttl"),
            (("grant", "add", "192.0.2.1", "--user", "alice", "--ttl", "12x"), 2, "--ttl"),
            (("grant", "add", "192.0.2.1"), 2, "--user"),
            (("user", "add", "", "--password-stdin"), 1, "empty"),
            (("user", "add", "a/b", "--password-stdin"), 1, "'/'"),
            (("user", "add", "a\x01b", "--password-stdin"), 1, "control character"),
            (("user", "add", "x" * 256, "--password-stdin"), 1, "longer than 64"),
            (("user", "add", "..", "--password-stdin"), 1, "must not start"),
            (("user", "frobnicate"), 2, "unknown command"),
            (("grant",), 2, "unknown command"),
            ((), 2, "no command"),
            (("user", "list", "--bogus"), 2, "unknown option --bogus"),
            (("user", "del", "alice", "extra"), 2, "unexpected argument"),
        ]
        for args, want_rc, want_msg in cases:
            rc, out, err = self.ctl(*args, stdin="password\n")
            self.assertEqual(rc, want_rc, f"{args}: {err}")
            self.assertIn(want_msg, err, f"{args}")
        rc, _, err = self.ctl("user", "add", "bob", "--password-stdin", stdin="x" * 1025 + "\n")
        self.assertEqual(rc, 1)
        self.assertIn("longer than 1024", err)
        rc, _, err = self.ctl("user", "add", "bob", "--password-stdin", stdin="\n")
        self.assertEqual(rc, 1)
        self.assertIn("empty", err)
        rc, _, err = self.ctl("user", "add", "bob")  # no TTY under the test runner
        self.assertEqual(rc, 2)
        self.assertIn("--password-stdin", err)
        users = json.loads(self.ok("user", "list", "--json")[0])
        self.assertEqual([u["name"] for u in users], ["alice"])
        self.assertEqual(json.loads(self.ok("grant", "list", "--json")[0]), [])

    def test_missing_database_is_named(self):
        rc, _, err = self.ctl("grant", "list")
        self.assertEqual(rc, 1)
        self.assertIn(self.db, err)
        self.assertIn("does not exist", err)

    def test_corrupt_database_is_named(self):
        with open(self.db, "wb") as f:
            f.write(b"garbage" * 1000)
        rc, _, err = self.ctl("user", "list")
        self.assertEqual(rc, 1)
        self.assertIn(self.db, err)

    def test_config_check(self):
        out, _ = self.ok("config", "check")
        self.assertIn("ok", out)
        with open(self.cfg, "w") as f:
            f.write('{"smtpd": {"listen": [{"address": "127.0.0.1", "port": "x"}]}}')
        rc, _, err = self.ctl("config", "check")
        self.assertEqual(rc, 1)
        self.assertIn('relaygate.json: smtpd.listen[0].port: expected an integer 1-65535, got "x"', err)
        rc, _, err = self.ctl("config", "check", config=False)
        self.assertEqual(rc, 0, err)
        rc, _, err = subprocess.run([CTL, "--config", "/nonexistent.json", "config", "check"],
                                    capture_output=True, text=True).returncode, None, None
        self.assertEqual(rc, 1)

    def test_sasl_plain(self):
        out, _ = self.ok("sasl-plain", "alice", "--password-stdin", stdin="s3cret\n")
        self.assertEqual(base64.b64decode(out.strip()), b"\0alice\0s3cret")


if __name__ == "__main__":
    unittest.main(verbosity=2)
