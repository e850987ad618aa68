#!/usr/bin/env python3
"""relaygatectl db status and db copy (issue 12, Deliver 4) end to end.

DbSqlite: db status on SQLite (text and --json, checked against the file itself), an
unreachable database (exit 1, named), db copy SQLite -> SQLite (every stored field kept, the
copy serves a real POP3 login), a second run that changes nothing, a non-empty target refused
and --force, bad targets.
DbPostgres: the same copy into a throwaway PostgreSQL (tests/pgtest.py) and back into SQLite,
users authenticating through a real pop3d on the PostgreSQL config (the grant lands in
PostgreSQL), a non-empty PostgreSQL target, db status on PostgreSQL and on a database the server
refuses (CTest: ctl_pg_e2e).

usage: RG_CTL=... RG_POP3D=... ctl_db_test.py [DbSqlite|DbPostgres[.test]]
"""
import json
import os
import poplib
import re
import sqlite3
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
from harness import Gateway  # noqa: E402

PW = {"alice": "alice-pass-1", "bob": "bob-legacy-2", "carol": "carol-pass-3"}
NODE = harness.HOSTNAME  # the source's "hostname": the node of the grants relaygatectl writes
USER_COLUMNS = "name, enabled, password_hash, legacy_secret, created_at"
GRANT_COLUMNS = "ip, method, granted_at, refreshed_at, expires_at, last_used_at, ttl, node"
LAST_USED = 1_700_000_123  # a last_used_at the copy must keep (set in the source file directly)


def sqlite_rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def sqlite_dump(path):
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def populate(gw):
    """alice (plain), bob (legacy secret), carol (disabled); two live grants, one used."""
    gw.add_user("alice", PW["alice"])
    gw.add_user("bob", PW["bob"], legacy=True)
    gw.add_user("carol", PW["carol"])
    gw.ctl("user", "disable", "carol")
    gw.ctl("grant", "add", "192.0.2.10", "--user", "alice", "--ttl", "3600")
    gw.ctl("grant", "add", "2001:db8::7", "--user", "bob", "--ttl", "1800")
    con = sqlite3.connect(gw.path("database"))
    con.execute("UPDATE grants SET last_used_at=? WHERE ip='2001:db8::7'", (LAST_USED,))
    con.commit()
    con.close()


def json_out(gw, *args):
    return json.loads(gw.ctl(*args).stdout)


def pop3_login(gw, user, pw):
    """USER/PASS over STLS on gw's pop3d: the server's answer to PASS."""
    p = poplib.POP3("127.0.0.1", gw.port("pop3d", tls="starttls"), timeout=harness.SOCKET_TIMEOUT)
    try:
        p.stls(harness.client_tls_context())
        p.user(user)
        return p.pass_(pw)
    finally:
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            p.close()


SUMMARY = re.compile(r"^users:  (\d+) copied, (\d+) replaced, (\d+) already identical\n"
                     r"grants: (\d+) copied, (\d+) replaced, (\d+) already identical\n", re.M)


def summary(out):
    m = SUMMARY.search(out)
    assert m, out
    return tuple(int(x) for x in m.groups())


class DbSqlite(unittest.TestCase):
    def setUp(self):
        self.src = Gateway()
        populate(self.src)
        self.dst = Gateway({"database": "var/copy.db"})
        self.target = self.dst.path("database")

    def tearDown(self):
        self.src.close()
        self.dst.close()

    def test_status_text_and_json(self):
        db = self.src.path("database")
        (version,), = sqlite_rows(db, "SELECT version FROM schema_version")
        (users,), = sqlite_rows(db, "SELECT count(*) FROM users")
        out = self.src.ctl("db", "status").stdout
        self.assertRegex(out, r"(?m)^backend +sqlite$")
        self.assertRegex(out, r"(?m)^database +%s$" % re.escape(db))
        self.assertRegex(out, r"(?m)^reachable +yes$")
        self.assertRegex(out, r"(?m)^schema +%d \(this relaygate supports 4\)$" % version)
        self.assertRegex(out, r"(?m)^latency +min \d+\.\d{3} ms, median \d+\.\d{3} ms \(9 round trips\)$")
        self.assertRegex(out, r"(?m)^users +%d$" % users)
        self.assertRegex(out, r"(?m)^live grants +2$")  # carol is disabled and has none

        j = json_out(self.src, "db", "status", "--json")
        self.assertEqual((j["backend"], j["database"], j["reachable"]), ("sqlite", db, True))
        self.assertEqual((j["schema_version"], j["schema_version_supported"]), (version, 4))
        self.assertEqual((j["users"], j["live_grants"]), (3, 2))
        lat = j["latency_ms"]
        self.assertEqual(lat["round_trips"], 9)
        self.assertTrue(0 <= lat["min"] <= lat["median"] < 1000, lat)
        self.assertGreaterEqual(j["open_ms"], 0)
        # One more grant shows in the count: it is read, not remembered.
        self.src.ctl("grant", "add", "192.0.2.11", "--user", "alice")
        self.assertEqual(json_out(self.src, "db", "status", "--json")["live_grants"], 3)

    def test_status_unreachable_database_exits_1_naming_it(self):
        missing = Gateway({"database": "var/none.db"})
        try:
            p = missing.ctl("db", "status", check=False)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertRegex(p.stdout, r"(?m)^reachable +no$")
            self.assertIn("database %s: does not exist" % missing.path("database"), p.stderr)
            p = missing.ctl("db", "status", "--json", check=False)
            self.assertEqual(p.returncode, 1)
            j = json.loads(p.stdout)
            self.assertEqual((j["backend"], j["database"], j["reachable"]), ("sqlite", missing.path("database"), False))
            self.assertIn("does not exist", j["error"])
            self.assertFalse(os.path.exists(missing.path("database")), "db status creates nothing")
            with open(missing.path("database"), "wb") as f:
                f.write(b"not a database, " * 512)
            p = missing.ctl("db", "status", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("database %s: " % missing.path("database"), p.stderr)
            self.assertIn("corrupt or not a relaygate database", p.stderr)
        finally:
            missing.close()

    def test_grant_list_shows_the_node(self):
        grants = json_out(self.src, "grant", "list", "--json")
        self.assertEqual([(g["ip"], g["node"]) for g in grants], [("192.0.2.10", NODE), ("2001:db8::7", NODE)])
        out = self.src.ctl("grant", "list").stdout
        self.assertRegex(out.splitlines()[0], r"LAST USED +NODE$")
        self.assertRegex(out, r"(?m)^192\.0\.2\.10 .* %s$" % re.escape(NODE))
        self.assertRegex(self.src.ctl("status").stdout, r"(?m)^2001:db8::7 .* %s$" % re.escape(NODE))

    def test_copy_keeps_every_field_and_a_rerun_changes_nothing(self):
        p = self.src.ctl("db", "copy", "--to", self.target)
        self.assertIn("copied %s to %s\n" % (self.src.path("database"), self.target), p.stdout)
        self.assertEqual(summary(p.stdout), (3, 0, 0, 2, 0, 0))
        self.assertNotIn("kept in the target", p.stdout)
        src_db = self.src.path("database")
        for sql in ("SELECT %s FROM users ORDER BY name" % USER_COLUMNS,
                    "SELECT %s, u.name FROM grants g JOIN users u ON u.id = g.user_id ORDER BY ip" % GRANT_COLUMNS):
            self.assertEqual(sqlite_rows(self.target, sql), sqlite_rows(src_db, sql), sql)
        users = sqlite_rows(self.target, "SELECT name, legacy_secret IS NOT NULL, enabled FROM users ORDER BY name")
        self.assertEqual(users, [("alice", 0, 1), ("bob", 1, 1), ("carol", 0, 0)])
        self.assertEqual(sqlite_rows(self.target, "SELECT last_used_at FROM grants WHERE ip='2001:db8::7'"),
                         [(LAST_USED,)])
        self.assertEqual(os.stat(self.target).st_mode & 0o777, 0o640)
        # The target's own config sees the same users and grants (node included).
        self.assertEqual(json_out(self.dst, "user", "list", "--json"), json_out(self.src, "user", "list", "--json"))
        self.assertEqual(json_out(self.dst, "grant", "list", "--json"), json_out(self.src, "grant", "list", "--json"))

        before = sqlite_dump(self.target)
        p = self.src.ctl("db", "copy", "--to", self.target)
        self.assertEqual(summary(p.stdout), (0, 0, 3, 0, 0, 2))
        self.assertEqual(sqlite_dump(self.target), before, "the second run changed the target")

        # The copied hashes serve real logins (and the disabled user stays refused).
        self.dst.start("pop3d")
        self.assertTrue(pop3_login(self.dst, "alice", PW["alice"]).startswith(b"+OK"))
        self.assertTrue(pop3_login(self.dst, "bob", PW["bob"]).startswith(b"+OK"))
        with self.assertRaises(poplib.error_proto):
            pop3_login(self.dst, "carol", PW["carol"])
        grants = {g["ip"]: g for g in json_out(self.dst, "grant", "list", "--json")}
        self.assertEqual((grants["127.0.0.1"]["user"], grants["127.0.0.1"]["method"]), ("bob", "pop3"))

    def test_non_empty_target_is_refused_unless_forced(self):
        # In the target: alice with another password (differs), zed (only there), carol enabled
        # with a grant (differs: the source has carol disabled), a grant of 192.0.2.10 to zed.
        self.dst.add_user("alice", "another-pass-9")
        self.dst.add_user("zed", "zed-pass-000")
        self.dst.add_user("carol", PW["carol"])
        self.dst.ctl("grant", "add", "192.0.2.10", "--user", "zed")
        self.dst.ctl("grant", "add", "192.0.2.99", "--user", "carol")
        before = sqlite_dump(self.target)
        p = self.src.ctl("db", "copy", "--to", self.target, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertEqual(p.stdout, "")
        self.assertIn("relaygatectl: db copy: the target %s is not empty: 3 row(s) differ from the source "
                      "(user alice, user carol, grant 192.0.2.10); 2 row(s) are not in the source (user zed, grant "
                      "192.0.2.99); nothing copied." % self.target, p.stderr)
        self.assertIn("--force", p.stderr)
        self.assertEqual(sqlite_dump(self.target), before, "a refused copy wrote something")

        p = self.src.ctl("db", "copy", "--to", self.target, "--force")
        self.assertEqual(summary(p.stdout), (1, 2, 0, 1, 1, 0))  # bob new; alice, carol replaced
        src_users = "SELECT %s FROM users WHERE name != 'zed' ORDER BY name" % USER_COLUMNS
        self.assertEqual(sqlite_rows(self.target, src_users), sqlite_rows(self.src.path("database"), src_users))
        grants = {g["ip"]: g for g in json_out(self.dst, "grant", "list", "--json")}
        self.assertEqual(grants["192.0.2.10"]["user"], "alice")  # the source's grant won
        self.assertNotIn("192.0.2.99", grants)  # carol is disabled now: her target grant went with it
        self.assertEqual([u["name"] for u in json_out(self.dst, "user", "list", "--json")],
                         ["alice", "bob", "carol", "zed"])  # zed, only in the target, is kept
        self.assertIn("kept in the target (not in the source): 1 user(s), 0 grant(s)\n", p.stdout)

        before = sqlite_dump(self.target)
        p = self.src.ctl("db", "copy", "--to", self.target, "--force")
        self.assertEqual(summary(p.stdout), (0, 0, 3, 0, 0, 2))
        self.assertEqual(sqlite_dump(self.target), before)
        # zed is still a row the source does not have: without --force that is a non-empty target.
        p = self.src.ctl("db", "copy", "--to", self.target, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("1 row(s) are not in the source (user zed)", p.stderr)

    def test_bad_targets(self):
        cases = [(("--to", "postgresql://relaygate:secret@/relaygate"), 2, "a password must not be on the command line"),
                 (("--to", "postgresql:///relaygate?password=secret"), 2, "a password must not be on the command line"),
                 ((), 2, "--to is required"),
                 (("--to", self.src.path("database")), 1,
                  "the target %s is the configured database" % self.src.path("database")),
                 (("--to", os.path.join(self.dst.dir, "no/such/dir.db")), 1,
                  "folder %s does not exist" % os.path.join(self.dst.dir, "no/such"))]
        for args, rc, message in cases:
            p = self.src.ctl("db", "copy", *args, check=False)
            self.assertEqual(p.returncode, rc, (args, p.stderr))
            self.assertIn(message, p.stderr, args)
            self.assertNotIn("secret", p.stderr, "the password is echoed")
        self.assertFalse(os.path.exists(self.target))


class DbPostgres(unittest.TestCase):
    """SQLite -> a throwaway PostgreSQL (ctl_pg_e2e)."""

    @classmethod
    def setUpClass(cls):
        import pgtest
        cls.pg = pgtest.Postgres()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def setUp(self):
        self.src = Gateway()
        populate(self.src)

    def tearDown(self):
        self.src.close()

    def new_database(self, name):
        self.addCleanup(self.pg.drop_database, name)
        return self.pg.create_database(name)

    def test_copy_to_postgresql_serves_logins(self):
        uri = self.new_database("copy_ok")
        p = self.src.ctl("db", "copy", "--to", uri)
        self.assertEqual(summary(p.stdout), (3, 0, 0, 2, 0, 0))
        p = self.src.ctl("db", "copy", "--to", uri)
        self.assertEqual(summary(p.stdout), (0, 0, 3, 0, 0, 2))

        dst = Gateway({"database": uri})
        self.addCleanup(dst.close)
        self.assertEqual(json_out(dst, "user", "list", "--json"), json_out(self.src, "user", "list", "--json"))
        self.assertEqual(json_out(dst, "grant", "list", "--json"), json_out(self.src, "grant", "list", "--json"))
        stored = self.pg.psql("SELECT name, password_hash, coalesce(legacy_secret, '-') FROM users ORDER BY name;",
                              db="copy_ok")
        expect = sqlite_rows(self.src.path("database"),
                             "SELECT name, password_hash, coalesce(legacy_secret, '-') FROM users ORDER BY name")
        self.assertEqual(stored, "".join("|".join(r) + "\n" for r in expect))

        j = json_out(dst, "db", "status", "--json")
        self.assertEqual((j["backend"], j["reachable"], j["users"], j["live_grants"]), ("postgresql", True, 3, 2))
        self.assertEqual((j["schema_version"], j["schema_version_supported"]), (4, 4))
        self.assertTrue(uri.startswith(j["database"].split("?")[0]), j["database"])
        self.assertTrue(0 < j["latency_ms"]["min"] <= j["latency_ms"]["median"] < 1000, j["latency_ms"])
        self.assertRegex(dst.ctl("db", "status").stdout, r"(?m)^backend +postgresql\n(.*\n)*latency +min \d+\.\d{3} ms")

        # And back: PostgreSQL -> a new SQLite file holds exactly what the original file holds.
        back = os.path.join(dst.dir, "back.db")
        self.assertEqual(summary(dst.ctl("db", "copy", "--to", back).stdout), (3, 0, 0, 2, 0, 0))
        src_db = self.src.path("database")
        for sql in ("SELECT %s FROM users ORDER BY name" % USER_COLUMNS,
                    "SELECT %s, u.name FROM grants g JOIN users u ON u.id = g.user_id ORDER BY ip" % GRANT_COLUMNS):
            self.assertEqual(sqlite_rows(back, sql), sqlite_rows(src_db, sql), sql)

        dst.start("pop3d")
        self.assertTrue(pop3_login(dst, "alice", PW["alice"]).startswith(b"+OK"))
        self.assertTrue(pop3_login(dst, "bob", PW["bob"]).startswith(b"+OK"))
        with self.assertRaises(poplib.error_proto):
            pop3_login(dst, "carol", PW["carol"])
        grants = {g["ip"]: g for g in json_out(dst, "grant", "list", "--json")}
        self.assertEqual((grants["127.0.0.1"]["user"], grants["127.0.0.1"]["node"]), ("bob", NODE))
        self.assertIn("127.0.0.1|bob", self.pg.psql(
            "SELECT g.ip, u.name FROM grants g JOIN users u ON u.id = g.user_id;", db="copy_ok"))

    def test_non_empty_postgresql_target_is_refused(self):
        uri = self.new_database("copy_busy")
        dst = Gateway({"database": uri})
        self.addCleanup(dst.close)
        dst.add_user("alice", "another-pass-9")
        p = self.src.ctl("db", "copy", "--to", uri, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("is not empty: 1 row(s) differ from the source (user alice); nothing copied.", p.stderr)
        self.assertEqual([u["name"] for u in json_out(dst, "user", "list", "--json")], ["alice"])
        p = self.src.ctl("db", "copy", "--to", uri, "--force")
        self.assertEqual(summary(p.stdout), (2, 1, 0, 2, 0, 0))
        dst.start("pop3d")
        self.assertTrue(pop3_login(dst, "alice", PW["alice"]).startswith(b"+OK"))

    def test_status_with_the_server_down_exits_1_in_time(self):
        uri = self.new_database("status_down")
        gw = Gateway({"database": uri, "database_timeout_ms": 2000})
        self.addCleanup(gw.close)
        self.assertRegex(gw.ctl("db", "status").stdout, r"(?m)^reachable +yes$")
        self.pg.stop(mode="immediate")
        try:
            t0 = time.monotonic()
            p = gw.ctl("db", "status", "--json", check=False)
            elapsed = time.monotonic() - t0
        finally:
            self.pg.start()
        self.assertEqual(p.returncode, 1, p.stdout)
        j = json.loads(p.stdout)
        self.assertEqual((j["backend"], j["reachable"]), ("postgresql", False))
        self.assertIn("database %s" % j["database"], p.stderr)
        self.assertLess(elapsed, 10, "db status waited past database_timeout_ms")
        self.assertRegex(gw.ctl("db", "status").stdout, r"(?m)^reachable +yes$")  # back

    def test_status_of_an_unreachable_server_exits_1(self):
        self.new_database("refuse_other")  # the role exists: the server refuses the database only
        uri = self.pg.uri(db="no_such_database")
        gw = Gateway({"database": uri})
        self.addCleanup(gw.close)
        p = gw.ctl("db", "status", check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertRegex(p.stdout, r"(?m)^backend +postgresql\n(.*\n)*reachable +no$")
        # libpq's own words for the server's refusal: the backend was asked, not merely named.
        self.assertIn('"no_such_database" does not exist', p.stderr)
        p = self.src.ctl("db", "copy", "--to", uri, check=False)  # the same as a copy's target
        self.assertEqual((p.returncode, p.stdout), (1, ""))
        self.assertIn('"no_such_database" does not exist', p.stderr)


if __name__ == "__main__":
    harness.main()
