#!/usr/bin/env python3
"""relaygate as the grant authority of a real Postfix 3.7 (issue 13, Deliver 1, 2 and 4): a
throwaway Postfix instance (tests/e2e/mta.py) in front of relaygate, once per test class.

LookupTable: the `sqlite:` map shipped in config/postfix/ reads relaygate's grant table in
check_client_access. A POP3 login to relaygate-pop3d from 127.0.0.2 makes Postfix relay from
there (250, the message reaches the sink), 127.0.0.3 is refused `554 5.7.1 ... Relay access
denied`, an expired or revoked grant relays no more; `postmap -q` as user postfix finds only
the full address of a live grant (never the truncated keys Postfix also tries); the lookup
runs in smtpd with the postfix group only, which is why the README's permission advice reads
as it does; with no relaygate process holding the database open, the lookup fails (no relay).

PolicyService: relaygate on PostgreSQL (tests/pgtest.py) with relaygate-policyd, Postfix with
the README's `check_policy_service` snippet and Dovecot SASL: granted IP relays, ungranted 554,
an SASL-authenticated client relays from an ungranted IP, `postmap -q` on the `pgsql:` map with
the least-privilege role the map file describes; PostgreSQL stopped: a non-local recipient gets
Postfix's deferral (4xx, from DEFER_IF_REJECT) while a local recipient still gets 250 and the
message lands in its Maildir.

Source addresses 127.0.0.2-127.0.0.9 are never in Postfix's mynetworks (127.0.0.100/32).
RG_SMTPD, RG_POP3D, RG_CTL, RG_POLICYD name the binaries. Runs as root (the Postfix master does).
"""
import grp
import os
import poplib
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402
import mta  # noqa: E402
import pgtest  # noqa: E402
from harness import Gateway  # noqa: E402
from queue_test import FakeSmarthost  # noqa: E402

T = 15  # seconds, per client operation
PW = "pf-secret-1"
SOURCE = os.path.dirname(os.path.abspath(__file__))
MAPS = os.path.join(SOURCE, "..", "..", "config", "postfix")
GRANTED, UNGRANTED, EXPIRING, REVOKED, SASL_CLIENT = "127.0.0.2", "127.0.0.3", "127.0.0.6", "127.0.0.7", "127.0.0.8"
EXPIRING_TTL = 2  # seconds: the grant that is seen live, then expired
DB_TIMEOUT_MS = 1000
POLICYD = os.environ.get("RG_POLICYD")  # unset while the build has no relaygate-policyd target
NEEDS_POLICYD = unittest.skipUnless(POLICYD, "RG_POLICYD is not set (no relaygate-policyd in this build)")
SASL_USER, SASL_PW = "carol", "sasl-secret-2"  # a Dovecot user (Postfix's SASL), not a relaygate user
DOWN_CLIENT = "127.0.0.9"


def smtp_from(port, source):
    s = smtplib.SMTP("127.0.0.1", port, timeout=T, source_address=(source, 0))
    s.ehlo("client.test")
    return s


def rcpt(port, source, to, login=None):
    """(code, text) of RCPT TO:<to> after MAIL, from `source`; optionally after AUTH."""
    with smtp_from(port, source) as s:
        if login:
            s.login(*login)
        s.mail("sender@remote.test")
        return s.docmd("RCPT", "TO:<%s>" % to)


def send(port, source, to, subject, login=None):
    """A whole transaction; returns the final reply (code, text) or raises on a refused RCPT."""
    with smtp_from(port, source) as s:
        if login:
            s.login(*login)
        s.mail("sender@remote.test")
        code, msg = s.docmd("RCPT", "TO:<%s>" % to)
        if code != 250:
            raise AssertionError("RCPT %s from %s: %d %s" % (to, source, code, msg))
        return s.data(("Subject: %s\r\nFrom: sender@remote.test\r\n\r\nbody\r\n" % subject).encode())


def pop3_login(gw, source):
    p = harness.POP3From("127.0.0.1", gw.port("pop3d", tls="none"), source, timeout=T)
    try:
        p.user("alice")
        return p.pass_(PW)
    finally:
        p.quit()


def map_file(folder, name, replacements):
    """A copy of the shipped config/postfix/NAME with the test's paths (mode 0644: smtpd reads it)."""
    with open(os.path.join(MAPS, name)) as f:
        text = f.read()
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError("%s has no %r any more" % (name, old))
        text = text.replace(old, new)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def received_subjects(sink):
    with sink.lock:
        return [m["data"].split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in sink.messages]


def wait_subject(sink, subject, timeout=T):
    deadline = time.monotonic() + timeout
    while subject not in received_subjects(sink):
        if time.monotonic() > deadline:
            raise AssertionError("the sink never got %r (got %s)" % (subject, received_subjects(sink)))
        time.sleep(0.05)


class MtaClass(unittest.TestCase):
    """setUpClass/tearDownClass that always stop what was started, also when start-up fails."""

    @classmethod
    def setUpClass(cls):
        mta.require_root()
        cls.cleanups = []
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for stop in reversed(cls.cleanups):
            try:
                stop()
            except Exception as e:  # the other cleanups still run
                print("cleanup failed: %r" % e, file=sys.stderr)
        cls.cleanups = []


@harness.needs_tool("postfix")
class LookupTable(MtaClass):
    @classmethod
    def start(cls):
        cls.sink = FakeSmarthost().start()
        cls.cleanups.append(cls.sink.stop)
        cls.gw = Gateway({"auth": {"allow_plaintext_without_tls": True, "failure_delay_max_ms": 100},
                          "pop3d": {"listen": [{"address": "127.0.0.1", "port": "auto", "tls": "none"}]}})
        cls.cleanups.append(cls.gw.close)
        cls.gw.add_user("alice", PW)
        cls.gw.start("pop3d")  # holds the database open: its -wal and -shm files exist
        # README "Use with an existing Postfix": the database's folder and files readable by the
        # group Postfix's daemons run with (its primary group; supplementary groups are dropped).
        postfix_gid = grp.getgrnam("postfix").gr_gid
        for folder in (cls.gw.dir, cls.gw.var):
            os.chown(folder, 0, postfix_gid)
            os.chmod(folder, 0o750)
        cls.db = cls.gw.path("database")
        for suffix in ("", "-wal", "-shm"):
            os.chown(cls.db + suffix, 0, postfix_gid)  # SQLite (as root) gives new ones the db's owner
        cls.map = "sqlite:" + map_file(cls.gw.dir, "relaygate-grants-sqlite.cf",
                                       {"/var/lib/relaygate/relaygate.db": cls.db})
        cls.pf = mta.Postfix(cls.gw.dir, cls.sink.port, main={
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, check_client_access %s, "
                                        "reject_unauth_destination" % cls.map})
        cls.cleanups.append(cls.pf.stop)
        cls.pf.start()
        reply = pop3_login(cls.gw, GRANTED)  # the grant every test of the class relies on
        if not reply.startswith(b"+OK"):
            raise AssertionError("POP3 login from %s: %r" % (GRANTED, reply))

    def test_granted_ip_relays_and_the_message_reaches_the_relayhost(self):
        code, msg = send(self.pf.port, GRANTED, "far@remote.test", "map-granted")
        self.assertEqual(code, 250, msg)
        wait_subject(self.sink, "map-granted")
        self.pf.wait_log(r"client=unknown\[%s\]" % GRANTED.replace(".", r"\."))

    def test_ungranted_ip_is_refused_relay_access_denied(self):
        code, msg = rcpt(self.pf.port, UNGRANTED, "far@remote.test")
        self.assertEqual((code, msg), (554, b"5.7.1 <far@remote.test>: Relay access denied"))
        # Local delivery does not depend on a grant.
        self.assertEqual(rcpt(self.pf.port, UNGRANTED, "alice@example.test")[0], 250)

    def test_postmap_as_postfix_finds_only_the_full_address_of_a_live_grant(self):
        self.assertEqual(self.pf.postmap_query(GRANTED, self.map), (0, "OK", ""))
        # The shorter keys check_client_access also looks up never match a stored address.
        for key in ("127.0.0", "127.0", "127", UNGRANTED, "unknown"):
            self.assertEqual(self.pf.postmap_query(key, self.map), (1, "", ""), key)
        self.gw.ctl("grant", "add", "2001:db8::10", "--user", "alice")
        try:
            self.assertEqual(self.pf.postmap_query("2001:db8::10", self.map), (0, "OK", ""))
            for key in ("2001:db8:", "2001:db8", "2001"):
                self.assertEqual(self.pf.postmap_query(key, self.map), (1, "", ""), key)
        finally:
            self.gw.ctl("grant", "revoke", "2001:db8::10")
        self.assertEqual(self.pf.postmap_query("2001:db8::10", self.map), (1, "", ""))

    def test_expired_grant_does_not_relay(self):
        # A real expiry: relaygatectl writes a grant of EXPIRING_TTL seconds, seen live first.
        self.gw.ctl("grant", "add", EXPIRING, "--user", "alice", "--ttl", EXPIRING_TTL)
        self.assertEqual(self.pf.postmap_query(EXPIRING, self.map)[:2], (0, "OK"))
        deadline = time.monotonic() + EXPIRING_TTL + 5
        while self.pf.postmap_query(EXPIRING, self.map)[0] == 0:
            self.assertLess(time.monotonic(), deadline, "the grant never expired in the map")
            time.sleep(0.1)
        code, msg = rcpt(self.pf.port, EXPIRING, "far@remote.test")
        self.assertEqual((code, msg), (554, b"5.7.1 <far@remote.test>: Relay access denied"))

    def test_revoked_grant_does_not_relay(self):
        self.gw.ctl("grant", "add", REVOKED, "--user", "alice")
        self.assertEqual(rcpt(self.pf.port, REVOKED, "far@remote.test")[0], 250)
        self.gw.ctl("grant", "revoke", REVOKED)
        self.assertEqual(rcpt(self.pf.port, REVOKED, "far@remote.test")[0], 554)

    def test_smtpd_runs_with_its_primary_group_only(self):
        # The README's permission advice rests on this: Postfix's set_ugid() drops supplementary
        # groups, so "adduser postfix relaygate" would not let smtpd read the database.
        with smtp_from(self.pf.port, UNGRANTED):
            pids = [p for p in mta._pids_with_cwd_under(self.pf.queue) if "smtpd" in mta.read_file("/proc/%d/comm" % p)]
            self.assertTrue(pids, "no smtpd process found")
            status = mta.read_file("/proc/%d/status" % pids[0])
        groups = [l.split()[1:] for l in status.splitlines() if l.startswith("Groups:")][0]
        self.assertEqual(groups, [str(grp.getgrnam("postfix").gr_gid)], status)

    def test_zz_with_no_process_holding_the_database_open_the_lookup_fails(self):
        # Runs last (name). A reader that cannot write the folder can read a WAL database only
        # while its -wal and -shm files exist, i.e. while some process has it open (a relaygate
        # daemon, or a Postfix process that looked it up). With none, the lookup fails: Postfix
        # defers, never relays (README); the next daemon start makes the files again.
        self.pf.stop()
        self.gw.stop("pop3d")
        self.assertFalse(os.path.exists(self.db + "-wal"))
        status, out, err = self.pf.postmap_query(GRANTED, self.map)
        self.assertEqual((status, out), (1, ""))
        self.assertIn("attempt to write a readonly database", err)
        self.gw.start("pop3d")
        self.assertEqual(self.pf.postmap_query(GRANTED, self.map), (0, "OK", ""))


@harness.needs_tool("postfix")
@harness.needs_tool("dovecot")
class OnPostgres(MtaClass):
    """relaygate on PostgreSQL; Postfix asks relaygate-policyd (README snippet), SASL via Dovecot."""

    @classmethod
    def start(cls):
        try:
            cls.pg = pgtest.Postgres()
        except pgtest.PgUnavailable:
            harness.missing_client("PostgreSQL 15 (postgresql-15)")
        cls.cleanups.append(cls.pg.close)
        cls.pg.start()
        uri = cls.pg.create_database("relaygate")
        cls.sink = FakeSmarthost().start()
        cls.cleanups.append(cls.sink.stop)
        overrides = {"database": uri, "database_timeout_ms": DB_TIMEOUT_MS,
                     "auth": {"allow_plaintext_without_tls": True, "failure_delay_max_ms": 100},
                     "pop3d": {"listen": [{"address": "127.0.0.1", "port": "auto", "tls": "none"}]}}
        if POLICYD:
            overrides["policyd"] = {"listen": [{"address": "127.0.0.1", "port": "auto"}]}
        cls.gw = Gateway(overrides)
        cls.cleanups.append(cls.gw.close)
        cls.gw.add_user("alice", PW)
        cls.gw.start("pop3d")
        restrictions = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        if POLICYD:
            cls.gw.start("policyd")
            # README "Use with an existing Postfix", with the test's port.
            restrictions = ("permit_mynetworks, permit_sasl_authenticated, check_policy_service "
                            "{ inet:127.0.0.1:%d, default_action=DUNNO }, reject_unauth_destination"
                            % cls.gw.port("policyd"))
        folder = tempfile.mkdtemp(prefix="rg-mta-")
        cls.cleanups.append(lambda: subprocess.run(["rm", "-rf", folder], timeout=30))
        cls.dovecot = mta.Dovecot(folder, {SASL_USER: SASL_PW})
        cls.cleanups.append(cls.dovecot.stop)
        cls.dovecot.start()
        cls.pf = mta.Postfix(folder, cls.sink.port, main={
            "smtpd_relay_restrictions": restrictions,
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": cls.dovecot.auth_socket,
            "smtpd_sasl_security_options": "noanonymous"})
        cls.cleanups.append(cls.pf.stop)
        cls.pf.start()
        reply = pop3_login(cls.gw, GRANTED)
        if not reply.startswith(b"+OK"):
            raise AssertionError("POP3 login from %s: %r" % (GRANTED, reply))

    @NEEDS_POLICYD
    def test_granted_ip_relays_through_the_policy_service(self):
        code, msg = send(self.pf.port, GRANTED, "far@remote.test", "policy-granted")
        self.assertEqual(code, 250, msg)
        wait_subject(self.sink, "policy-granted")

    def test_ungranted_ip_is_refused_relay_access_denied(self):
        code, msg = rcpt(self.pf.port, UNGRANTED, "far@remote.test")
        self.assertEqual((code, msg), (554, b"5.7.1 <far@remote.test>: Relay access denied"))

    def test_sasl_authenticated_client_relays_from_an_ungranted_ip(self):
        code, msg = send(self.pf.port, SASL_CLIENT, "far@remote.test", "policy-sasl", login=(SASL_USER, SASL_PW))
        self.assertEqual(code, 250, msg)
        wait_subject(self.sink, "policy-sasl")
        self.pf.wait_log(r"client=unknown\[%s\], sasl_method=PLAIN, sasl_username=%s" % (SASL_CLIENT.replace(".", r"\."),
                                                                                         SASL_USER))

    def test_pgsql_map_with_its_least_privilege_role(self):
        # The role and grants pgsql's map file describes, then postmap -q as user postfix.
        self.pg.psql("CREATE ROLE postfix_grants LOGIN;"
                     "GRANT CONNECT ON DATABASE relaygate TO postfix_grants;", check=False)
        self.pg.psql("GRANT SELECT (ip, user_id, expires_at, ttl) ON grants TO postfix_grants;"
                     "GRANT SELECT (id, enabled) ON users TO postfix_grants;", db="relaygate")
        for folder in (self.pg.base, self.pg.sockdir):  # pgtest's are private; postfix must reach the socket
            os.chmod(folder, 0o711)
        uri = "postgresql://postfix_grants@/relaygate?host=%s&port=%d" % (self.pg.sockdir, self.pg.port)
        cf = map_file(self.pf.base, "relaygate-grants-pgsql.cf", {"hosts = db.example.com": "hosts = " + uri})
        table = "pgsql:" + cf
        self.assertEqual(self.pf.postmap_query(GRANTED, table), (0, "OK", ""))
        for key in ("127.0.0", "127.0", "127", UNGRANTED):
            self.assertEqual(self.pf.postmap_query(key, table), (1, "", ""), key)
        # The role cannot read the password hashes.
        with self.assertRaisesRegex(RuntimeError, "permission denied for table users"):
            self.pg.psql("SELECT password_hash FROM users;", db="relaygate", user="postfix_grants")

    @NEEDS_POLICYD
    def test_zz_database_down_defers_relaying_and_local_delivery_goes_on(self):
        # Runs last (name): PostgreSQL stopped. policyd answers DEFER_IF_REJECT, so the
        # reject_unauth_destination that follows becomes Postfix's deferral; a local recipient
        # never needs the policy's OK and is delivered.
        self.pg.stop(mode="immediate")
        try:
            code, msg = rcpt(self.pf.port, DOWN_CLIENT, "far@remote.test")
            self.assertEqual((code, msg[:5]), (450, b"4.3.0"), msg)
            self.assertIn(b"<far@remote.test>", msg)
            before = len(self.pf.maildir_messages("alice"))
            code, msg = send(self.pf.port, DOWN_CLIENT, "alice@example.test", "local-while-down")
            self.assertEqual(code, 250, msg)
            deadline = time.monotonic() + T
            while not any("Subject: local-while-down" in m for m in self.pf.maildir_messages("alice")):
                self.assertLess(time.monotonic(), deadline, "no local delivery while the database is down")
                time.sleep(0.05)
            self.assertEqual(len(self.pf.maildir_messages("alice")), before + 1)
        finally:
            self.pg.start()


if __name__ == "__main__":
    harness.main()
