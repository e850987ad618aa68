#!/usr/bin/env python3
"""relaygatectl end to end: every command, exit codes 0/1/2, messages naming what failed,
the status file after each grant change, bad input that must write nothing, help and version,
the default config path, and (as root) files created for the service user."""
import base64
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import unittest

CTL = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build/ctl/relaygatectl")


class Cli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rg-cli-")
        self.cfg = os.path.join(self.dir, "relaygate.json")
        with open(self.cfg, "w") as f:
            # CI runs as root in a temp folder only root can enter: stay root explicitly, or the
            # preflight of `config check` (checked as the service user) rightly fails.
            json.dump({"database": "db/relaygate.db", "status_file": "run/status.json",
                       "local_domains": ["example.test"], "grants": {"ttl_seconds": 600},
                       "run_as": {"allow_root": True}}, f)
        os.mkdir(os.path.join(self.dir, "db"))
        self.db = os.path.join(self.dir, "db/relaygate.db")
        self.status = os.path.join(self.dir, "run/status.json")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def ctl(self, *args, stdin=None, config=True, default_config=None, cwd=None):
        """Runs relaygatectl; without --config, RELAYGATE_CONFIG stands in for
        /etc/relaygate/relaygate.json (a path that does not exist unless default_config is given)."""
        argv = [CTL] + (["--config", self.cfg] if config else []) + list(args)
        env = dict(os.environ, RELAYGATE_CONFIG=default_config or os.path.join(self.dir, "no-such.json"))
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
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

    def test_grant_stored_when_the_status_file_cannot_be_rewritten(self):
        # The grant is committed first; a status file that cannot be written (here a folder
        # in its place, which stops root too) leaves it standing with a warning naming the file.
        self.add("alice")
        os.makedirs(self.status)
        out, err = self.ok("grant", "add", "192.0.2.20", "--user", "alice")
        self.assertIn("granted 192.0.2.20 to alice", out)
        self.assertRegex(err, r"^relaygatectl: warning: grant stored, but the status file %s could not be "
                              r"rewritten: .+\n$" % re.escape(self.status))
        self.assertEqual([g["ip"] for g in json.loads(self.ok("grant", "list", "--json")[0])], ["192.0.2.20"])
        _, err = self.ok("grant", "revoke", "192.0.2.20")
        self.assertIn("warning: revocation stored", err)
        rc, _, err = self.ctl("status", "--write")  # the explicit rewrite still fails loudly
        self.assertEqual(rc, 1, err)
        os.rmdir(self.status)
        self.ok("status", "--write")  # and repairs the view once it can
        self.assertEqual(self.status_json()["grants"], [])

    def test_expired_grant_never_listed(self):
        self.add("alice")
        con = sqlite3.connect(self.db)
        uid = con.execute("SELECT id FROM users").fetchone()[0]
        con.execute("INSERT INTO grants VALUES('192.0.2.77', ?, 'pop3', 1, 1, 2, NULL, 1, '')", (uid,))
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
            (("grant",), 2, "grant: a subcommand is required: list, add, revoke, purge"),
            (("user", "add"), 2, "NAME is required"),
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
        self.assertEqual(rc, 1 if os.geteuid() == 0 else 0, err)  # as root: the defaults may not stay root
        rc, _, err = subprocess.run([CTL, "--config", "/nonexistent.json", "config", "check"],
                                    capture_output=True, text=True).returncode, None, None
        self.assertEqual(rc, 1)

    def test_config_check_is_a_preflight(self):
        # A configured certificate path with a typo is an error naming it (never a new pair), and
        # an unreadable smarthost password file is named too (issue 9, like `postfix check`).
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["tls"] = {"certificate": "tls/certt.pem", "private_key": "tls/key.pem"}
        cfg["smarthost"] = {"host": "127.0.0.1", "username": "u", "password_file": "no-such-password"}
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        rc, out, err = self.ctl("config", "check")
        self.assertEqual(rc, 1, out)
        self.assertIn("error: tls.certificate: %s does not exist" % os.path.join(self.dir, "tls/certt.pem"), err)
        self.assertIn("error: smarthost.password_file: %s does not exist" % os.path.join(self.dir, "no-such-password"), err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "tls")))
        # A key that does not belong to the certificate.
        os.mkdir(os.path.join(self.dir, "tls"))
        for name in ("a", "b"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-days", "10", "-subj", "/CN=%s" % name, "-keyout", os.path.join(self.dir, "tls", name + ".key"),
                            "-out", os.path.join(self.dir, "tls", name + ".pem")], check=True, capture_output=True)
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write("secret\n")
        cfg["tls"] = {"certificate": "tls/a.pem", "private_key": "tls/b.key"}
        cfg["smarthost"]["password_file"] = "pw"
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        rc, out, err = self.ctl("config", "check")
        self.assertEqual(rc, 1, out)
        self.assertIn("error: tls: ", err)
        cfg["tls"]["private_key"] = "tls/a.key"
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        rc, out, err = self.ctl("config", "check")
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: tls.certificate: %s expires within 30 days" % os.path.join(self.dir, "tls/a.pem"), err)

    def test_version_and_help(self):
        rc, out, err = self.ctl("--version", config=False)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^relaygatectl \d+\.\d+\.\d+\n$")
        helps = {(): ["user", "grant", "db", "queue", "config", "status", "sasl-plain", "--config", "--version"],
                 ("user",): ["add", "passwd", "del", "list", "enable", "disable"],
                 ("grant",): ["list", "add", "revoke", "purge"],
                 ("queue",): ["list", "show", "flush", "delete", "hold", "release"],
                 ("config",): ["check"],
                 ("db",): ["status", "copy"],
                 ("db", "copy"): ["--to", "--force"],
                 ("grant", "add"): ["IP", "--user", "--ttl"]}
        for words, names in helps.items():
            rc, out, err = self.ctl(*words, "--help", config=False)
            self.assertEqual(rc, 0, f"{words}: {err}")
            self.assertEqual(err, "", words)
            for n in names:
                self.assertRegex(out, r"(?m)^\s+" + re.escape(n) + r"\b", f"{words} --help lists {n}")
        # A group without its subcommand is a usage error that lists them.
        rc, out, err = self.ctl("user")
        self.assertEqual(rc, 2)
        self.assertIn("user: a subcommand is required: add, passwd, del, list, enable, disable", err)
        rc, _, err = self.ctl("grant", "add", "--user", "alice")
        self.assertEqual(rc, 2)
        self.assertIn("IP is required", err)

    def test_config_option_after_the_command(self):
        self.add("alice")
        p = subprocess.run([CTL, "user", "list", "--json", "--config", self.cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([u["name"] for u in json.loads(p.stdout)], ["alice"])

    def test_without_config_errors_say_embedded_defaults(self):
        cwd = os.path.join(self.dir, "cwd")
        os.mkdir(cwd)
        missing = os.path.join(self.dir, "no-such.json")
        note = f"no --config given and {missing} does not exist: using the embedded defaults relative to {cwd}"
        for args, what in [(("grant", "list"), f"database {cwd}/var/relaygate.db: does not exist"),
                           (("user", "add", "alice", "--password-stdin"), f"folder {cwd}/var does not exist"),
                           (("queue", "list"), f"spool folder {cwd}/var/spool does not exist")]:
            rc, _, err = self.ctl(*args, stdin="password\n", config=False, cwd=cwd)
            self.assertEqual(rc, 1, f"{args}: {err}")
            self.assertIn(what, err, args)
            self.assertIn(note, err, args)
        self.assertEqual(os.listdir(cwd), [], "nothing created under the embedded defaults")
        rc, out, err = self.ctl("config", "check", config=False, cwd=cwd)
        if os.geteuid() == 0:
            # As root the embedded defaults do not allow staying root: the preflight says so.
            self.assertEqual(rc, 1, out)
            self.assertIn("error: ", err)
        else:
            self.assertEqual((rc, out), (0, f"embedded defaults (relative to {cwd}): ok\n"))

    def test_without_config_the_default_file_is_used(self):
        # RELAYGATE_CONFIG stands in for /etc/relaygate/relaygate.json: when it exists, it is the config.
        cwd = os.path.join(self.dir, "cwd")
        os.mkdir(cwd)
        rc, _, err = self.ctl("user", "add", "alice", "--password-stdin", stdin="password\n",
                              config=False, default_config=self.cfg, cwd=cwd)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.db))
        self.assertEqual(os.listdir(cwd), [])
        rc, out, _ = self.ctl("config", "check", config=False, default_config=self.cfg)
        self.assertEqual((rc, out), (0, f"{self.cfg}: ok\n"))
        rc, _, err = self.ctl("grant", "list", config=False, default_config=self.cfg)
        self.assertEqual(rc, 0, err)

    def test_queue_on_missing_spool_names_the_folder(self):
        spool = os.path.join(self.dir, "var/spool")  # the config's default spool_dir, never made here
        for args in (("queue", "list"), ("queue", "list", "--json"), ("queue", "show", "ABC123"),
                     ("queue", "flush"), ("queue", "flush", "ABC123"), ("queue", "delete", "ABC123"),
                     ("queue", "hold", "ABC123"), ("queue", "release", "ABC123")):
            rc, out, err = self.ctl(*args)
            self.assertEqual(rc, 1, f"{args}: {out} {err}")
            self.assertIn(f"spool folder {spool} does not exist", err, args)
            self.assertNotIn("queue is empty", out)
            self.assertNotIn("embedded defaults", err)
        os.makedirs(spool)  # an existing spool without queue/ yet (smtpd never ran) is empty
        out, _ = self.ok("queue", "list")
        self.assertIn("(queue is empty)", out)

    def test_database_is_not_world_readable(self):
        # The file stays the invoker's (as root: no such service user), the case where it is
        # ours to fix; RootOwnership covers files given to the service user.
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["run_as"] = {"user": "rgtest-none-" + secrets.token_hex(4)}
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        old = os.umask(0o022)
        try:
            self.add("alice")
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o640)
        for side in (self.db + "-wal", self.db + "-shm"):
            if os.path.exists(side):
                self.assertEqual(stat.S_IMODE(os.stat(side).st_mode) & 0o007, 0, side)
        os.chmod(self.db, 0o644)  # as made by an older version
        self.ok("user", "list")
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o640)

    def test_sasl_plain(self):
        out, _ = self.ok("sasl-plain", "alice", "--password-stdin", stdin="s3cret\n")
        self.assertEqual(base64.b64decode(out.strip()), b"\0alice\0s3cret")


@unittest.skipUnless(os.geteuid() == 0, "needs root: files are given to the service user")
class RootOwnership(unittest.TestCase):
    """Run as root, relaygatectl makes what it creates belong to run_as.user, so the daemons
    (running as that user) can write the database and replace the status file."""

    def setUp(self):
        self.user = "rgtest-" + secrets.token_hex(4)
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.user],
                       check=True, capture_output=True)
        self.pw = pwd.getpwnam(self.user)
        self.dir = tempfile.mkdtemp(prefix="rg-cli-root-")
        os.chmod(self.dir, 0o755)
        self.cfg = os.path.join(self.dir, "relaygate.json")
        self.db = os.path.join(self.dir, "lib/db/relaygate.db")  # neither folder exists yet
        self.status = os.path.join(self.dir, "run/rg/status.json")

    def tearDown(self):
        shutil.rmtree(self.dir)
        subprocess.run(["userdel", self.user], capture_output=True)

    def write_cfg(self, run_as):
        with open(self.cfg, "w") as f:
            json.dump({"database": "lib/db/relaygate.db", "status_file": "run/rg/status.json",
                       "spool_dir": "spool", "run_as": run_as}, f)

    def ctl(self, *args, stdin=None):
        p = subprocess.run([CTL, "--config", self.cfg] + list(args), input=stdin, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stderr}")
        return p.stdout

    def owner(self, path):
        st = os.stat(path)
        return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name

    def test_created_files_belong_to_the_service_user(self):
        self.write_cfg({"user": self.user})
        group = grp.getgrgid(self.pw.pw_gid).gr_name
        self.ctl("user", "add", "alice", "--password-stdin", stdin="password\n")
        self.ctl("grant", "add", "192.0.2.1", "--user", "alice")
        for path in (self.db, os.path.dirname(self.db), self.status, os.path.dirname(self.status)):
            self.assertEqual(self.owner(path), (self.user, group), path)
        self.assertEqual(self.owner(os.path.join(self.dir, "lib")), (self.user, group))
        self.assertEqual(self.owner(self.dir), ("root", "root"), "an existing folder is left alone")
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o640)
        for side in (self.db + "-wal", self.db + "-shm"):
            if os.path.exists(side):
                self.assertEqual(self.owner(side), (self.user, group), side)
                self.assertEqual(stat.S_IMODE(os.stat(side).st_mode) & 0o007, 0, side)
        # The service user itself can write the database (what pop3d does at every login).
        p = subprocess.run(["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--clear-groups",
                            CTL, "--config", self.cfg, "grant", "add", "192.0.2.2", "--user", "alice"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(g["ip"] for g in json.loads(self.ctl("grant", "list", "--json"))),
                         ["192.0.2.1", "192.0.2.2"])

    def test_run_as_group_is_used(self):
        self.write_cfg({"user": self.user, "group": "daemon"})
        self.ctl("user", "add", "alice", "--password-stdin", stdin="password\n")
        self.assertEqual(self.owner(self.db), (self.user, "daemon"))

    def test_missing_service_user_leaves_root_ownership(self):
        self.write_cfg({"user": "rgtest-nobody-" + secrets.token_hex(4)})
        p = subprocess.run([CTL, "--config", self.cfg, "user", "add", "alice", "--password-stdin"],
                           input="password\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.owner(self.db), ("root", "root"))
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o640)


if __name__ == "__main__":
    unittest.main(verbosity=2)
