#!/usr/bin/env python3
"""Two gateway nodes sharing one PostgreSQL (issue 12, Deliver 2 and 6), end to end with real
clients: nodes "node-a" and "node-b" are complete installations (pop3d + smtpd each, own ports,
spool, status file and logs; tests/e2e/harness.py) whose `database` is one throwaway
PostgreSQL 15 (tests/pgtest.py, started once per class); relayed mail goes to a recording
smarthost (queue_test.FakeSmarthost). Client addresses are loopback aliases: a grant is per IP.

- a POP3 login on A (curl) lets the same IP relay on B at the very next RCPT (the message
  reaches the smarthost, swaks); another IP is refused;
- revoking on B (grant revoke, user disable) refuses on A at once;
- a grant expires for every node at once (short --ttl). Expiry is decided by the database
  server's clock; proving that would need the nodes' clocks skewed (faketime), which this test
  does not do;
- failed logins on A and on B count together (the `failures=` count and the escalating delay);
- each node's status file lists the cluster's grants, each with the node that wrote it;
- one shared maildir_root: a POP3 session on A makes B answer -ERR [IN-USE];
- a URI with two hosts (the first a socket folder where no server listens) and
  target_session_attrs=read-write works;
- PostgreSQL stopped with `pg_ctl -m immediate` while mail flows: relays that need a grant get
  451 4.3.0 (never 554, never a relay), logins -ERR [SYS/TEMP], every daemon keeps answering,
  every message that got 250 is delivered; after the restart everything works without
  restarting the daemons;
- a node started while PostgreSQL is down starts, warns, and works once it is up.

Every wait is bounded. Usage: RG_SMTPD=... RG_POP3D=... RG_CTL=... cluster_test.py [Class[.test]]
"""
import json
import os
import poplib
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import pgtest  # noqa: E402
from harness import Gateway, POP3From, client_tls_context  # noqa: E402
from queue_test import FakeSmarthost  # noqa: E402

PW = "s3cret-pass"
T = 15  # seconds, per client operation
LIMIT_MS = 1000  # database_timeout_ms of the nodes
SLACK = 2.0  # seconds on top of LIMIT_MS for a loaded (or ASan) machine
RECOVER_S = 30.0  # how long the nodes get to reconnect after PostgreSQL is back
FAILURE_DELAY_MAX_MS = 4000  # the escalating delay: 250, 500, 1000, ... ms (auth/authenticator.h)
REMOTE = "far@remote.test"
USERS = ("alice", "bob", "carol")


def start_postgres():
    """A started throwaway PostgreSQL with database "relaygate" (owner role "relaygate")."""
    try:
        pg = pgtest.Postgres()
    except pgtest.PgUnavailable:
        harness.missing_client("PostgreSQL 15 (postgresql-15)")
    try:
        pg.start()
        pg.create_database("relaygate")
    except BaseException:
        pg.close()
        raise
    return pg


def node_overrides(name, database, smarthost_port, maildir_root=None):
    o = {"hostname": name, "database": database, "database_timeout_ms": LIMIT_MS,
         "auth": {"failure_delay_max_ms": FAILURE_DELAY_MAX_MS},
         "grants": {"status_interval_seconds": 1},
         "pop3d": {"max_connections_per_ip": 1000},
         "smarthost": {"host": "127.0.0.1", "port": smarthost_port, "tls": "none"},
         "queue": {"first_retry_seconds": 1, "max_retry_seconds": 2, "scan_interval_seconds": 5,
                   "delay_warning_seconds": 0}}
    if maildir_root:
        o["maildir_root"] = maildir_root
    return o


# --------------------------------------------------------------------------- clients
def pop3_login(node, user, source, password=PW, keep=False):
    """USER/PASS after STLS on `node` from `source`. Returns the +OK line (bytes), or with keep
    the open session; raises poplib.error_proto with the -ERR line."""
    p = POP3From("127.0.0.1", node.port("pop3d", tls="starttls"), source, timeout=T)
    try:
        p.stls(context=client_tls_context())
        p.user(user)
        resp = p.pass_(password)
    except BaseException:
        p.close()
        raise
    if keep:
        return p
    try:
        p.quit()
    except (poplib.error_proto, OSError):
        pass
    return resp


def login_error(node, user, source, password=PW):
    """The -ERR line (bytes) of a login that must fail."""
    try:
        resp = pop3_login(node, user, source, password)
    except poplib.error_proto as e:
        return e.args[0]
    raise AssertionError("login of %s from %s on %s succeeded: %r" % (user, source, node.config["hostname"], resp))


def rcpt(node, source, to=REMOTE):
    """(code, text) of RCPT TO:<to> in a fresh session on `node`'s relay port from `source`."""
    with smtplib.SMTP("127.0.0.1", node.port("smtpd", mode="relay"), timeout=T, source_address=(source, 0)) as s:
        s.ehlo("client.test")
        code, msg = s.mail("sender@client.test")
        if code != 250:
            return code, msg
        return s.docmd("RCPT", "TO:<%s>" % to)


def ehlo_code(node):
    with smtplib.SMTP("127.0.0.1", node.port("smtpd", mode="relay"), timeout=T) as s:
        return s.ehlo("client.test")[0]


def capa_ok(node):
    p = poplib.POP3("127.0.0.1", node.port("pop3d", tls="starttls"), timeout=T)
    try:
        return "STLS" in p.capa()
    finally:
        p.quit()


def grants_by_ip(node):
    return {g["ip"]: g for g in node.grants()}


class ClusterBase(unittest.TestCase):
    """PostgreSQL, the smarthost and the nodes, started once for the class (cleaned up in
    reverse order even when a later step of setUpClass fails)."""
    nodes_started = ("node-a", "node-b")
    shared_maildir = False

    @classmethod
    def setUpClass(cls):
        cls.pg = start_postgres()
        cls.addClassCleanup(cls.pg.close)
        cls.uri = cls.pg.uri()
        cls.sink = FakeSmarthost().start()
        cls.addClassCleanup(cls.sink.stop)
        cls.maildir_root = None
        if cls.shared_maildir:
            cls.maildir_root = tempfile.mkdtemp(prefix="rg-cluster-mail-")
            cls.addClassCleanup(shutil.rmtree, cls.maildir_root, True)
        cls.nodes = {}
        for name in cls.nodes_started:
            cls.nodes[name] = cls.make_node(name, cls.uri)
        a = cls.nodes[cls.nodes_started[0]]
        for user in USERS:
            a.add_user(user, PW)  # through relaygatectl of node A: one database for all
        for node in cls.nodes.values():
            node.start("smtpd")
            node.start("pop3d")

    @classmethod
    def make_node(cls, name, database):
        node = Gateway(node_overrides(name, database, cls.sink.port, cls.maildir_root), check_exit=True)
        cls.addClassCleanup(node.close, True)  # raises for a crashed daemon or a bad exit status
        return node

    @property
    def a(self):
        return self.nodes["node-a"]

    @property
    def b(self):
        return self.nodes["node-b"]

    def assert_all_running(self, nodes=None):
        for node in nodes or self.nodes.values():
            for daemon in ("smtpd", "pop3d"):
                self.assertTrue(node.running(daemon), "%s %s died:\n%s" % (
                    node.config["hostname"], daemon, node.log(daemon)[-3000:]))


# --------------------------------------------------------------------------- PostgreSQL up
class Cluster(ClusterBase):
    shared_maildir = True

    def test_login_on_a_relays_on_b_at_the_next_rcpt(self):
        curl = harness.require_tool("curl")
        # curl's POP3 (STLS required, USER/PASS), from 127.0.0.2; the grant is committed before +OK.
        p = subprocess.run([curl, "-sS", "--max-time", "20", "-k", "--ssl-reqd", "--interface", "127.0.0.2",
                            "-u", "alice:" + PW, "pop3://127.0.0.1:%d/" % self.a.port("pop3d", tls="starttls")],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        code, msg = rcpt(self.b, "127.0.0.2")
        self.assertEqual(code, 250, msg)
        code, msg = rcpt(self.b, "127.0.0.3")
        self.assertEqual((code, msg[:5]), (554, b"5.7.1"), msg)
        self.assertEqual(grants_by_ip(self.b)["127.0.0.2"]["node"], "node-a")
        # A whole message through B with swaks: it reaches the smarthost.
        token = "cluster-" + uuid.uuid4().hex
        swaks = harness.require_tool("swaks")
        p = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(self.b.port("smtpd", mode="relay")),
                            "--local-interface", "127.0.0.2", "--from", "alice@example.test", "--to", REMOTE,
                            "--header", "Subject: " + token, "--timeout", "15"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace")[-2000:])
        self.assertIn(b"250 2.0.0 Ok: queued as", p.stdout)
        self.sink.wait_messages(1)
        self.sink_wait_token(token)
        self.b.wait_log("smtpd", r"event=rcpt outcome=accepted .*by=grant:alice")

    def sink_wait_token(self, token, timeout=20.0):
        def found():
            with self.sink.lock:
                return [m for m in self.sink.messages if token.encode() in m["data"]]
        hits = self.b.wait_for(found, timeout=timeout, what="message %s at the smarthost" % token)
        self.assertEqual([m["rcpts"] for m in hits], [[REMOTE]])

    def test_revoke_on_b_refuses_on_a_at_once(self):
        ip = "127.0.0.4"
        self.assertTrue(pop3_login(self.a, "bob", ip).startswith(b"+OK"))
        self.assertEqual(rcpt(self.a, ip)[0], 250)
        self.b.ctl("grant", "revoke", ip)
        code, msg = rcpt(self.a, ip)
        self.assertEqual((code, msg[:5]), (554, b"5.7.1"), msg)
        # Disabling the user on B revokes its grants: refused on A at once, and it cannot log in.
        self.assertTrue(pop3_login(self.a, "bob", ip).startswith(b"+OK"))
        self.assertEqual(rcpt(self.a, ip)[0], 250)
        self.b.ctl("user", "disable", "bob")
        try:
            code, msg = rcpt(self.a, ip)
            self.assertEqual((code, msg[:5]), (554, b"5.7.1"), msg)
            self.assertNotIn(ip, grants_by_ip(self.a))
            self.assertTrue(login_error(self.a, "bob", ip).startswith(b"-ERR"))
        finally:
            self.b.ctl("user", "enable", "bob")
        self.assertTrue(pop3_login(self.b, "bob", ip).startswith(b"+OK"))
        self.assertEqual(rcpt(self.a, ip)[0], 250)

    def test_grant_expires_on_every_node(self):
        ip, ttl = "127.0.0.10", 2
        self.b.ctl("grant", "add", ip, "--user", "alice", "--ttl", ttl)
        granted = time.monotonic()
        self.assertEqual(rcpt(self.a, ip)[0], 250)
        self.assertEqual(rcpt(self.b, ip)[0], 250)
        self.assertLess(time.monotonic() - granted, ttl, "too slow to see the grant live")
        time.sleep(max(0.0, ttl + 0.5 - (time.monotonic() - granted)))
        for node in (self.a, self.b):
            code, msg = rcpt(node, ip)
            self.assertEqual((code, msg[:5]), (554, b"5.7.1"), msg)

    def test_failed_logins_count_across_nodes(self):
        ip = "127.0.0.5"
        pattern = r"event=auth outcome=failed .*ip=%s .*failures=(\d+)" % ip.replace(".", r"\.")

        def failed_login(node):
            t0 = time.monotonic()
            err = login_error(node, "alice", ip, password="wrong")
            return err, time.monotonic() - t0

        err, first = failed_login(self.a)
        self.assertTrue(err.startswith(b"-ERR"), err)
        failed_login(self.a)
        err, third = failed_login(self.b)
        self.assertTrue(err.startswith(b"-ERR"), err)
        a_counts = [l.rsplit("failures=", 1)[1] for l in self.a.wait_log("pop3d", pattern, count=2)]
        b_counts = [l.rsplit("failures=", 1)[1] for l in self.b.wait_log("pop3d", pattern)]
        self.assertEqual((a_counts, b_counts), (["1", "2"], ["3"]))
        # The third failure (the first on B) waits 4 x the base delay: 1000 ms, not 250.
        self.assertGreaterEqual(third, 0.95, (first, third))
        self.assertGreater(third, first + 0.4, (first, third))
        # A success on B clears the count for A too.
        self.assertTrue(pop3_login(self.b, "alice", ip).startswith(b"+OK"))
        failed_login(self.a)
        self.assertEqual(self.a.wait_log("pop3d", pattern, count=3)[-1].rsplit("failures=", 1)[1], "1")

    def test_status_file_of_each_node_lists_the_cluster_with_the_writer(self):
        self.assertTrue(pop3_login(self.a, "alice", "127.0.0.6").startswith(b"+OK"))
        self.assertTrue(pop3_login(self.b, "bob", "127.0.0.7").startswith(b"+OK"))
        want = {"127.0.0.6": ("alice", "node-a"), "127.0.0.7": ("bob", "node-b")}
        for node in (self.a, self.b):
            def listed(node=node):
                st = node.status()
                got = {g["ip"]: (g["user"], g.get("node")) for g in (st or {}).get("grants", [])}
                return all(got.get(ip) == v for ip, v in want.items()) and got
            got = node.wait_for(listed, timeout=10, what="%s's status file" % node.config["hostname"])
            self.assertEqual({ip: got[ip] for ip in want}, want)

    def test_shared_maildir_pop3_lock_across_nodes(self):
        # A local message delivered by A's smtpd is in the one maildir_root that B's pop3d reads.
        token = "shared-" + uuid.uuid4().hex
        with smtplib.SMTP("127.0.0.1", self.a.port("smtpd", mode="relay"), timeout=T) as s:
            s.sendmail("x@client.test", ["carol@example.test"], "Subject: %s\r\n\r\nbody\r\n" % token)
        session = pop3_login(self.a, "carol", "127.0.0.8", keep=True)
        try:
            err = login_error(self.b, "carol", "127.0.0.9")
            self.assertTrue(err.startswith(b"-ERR [IN-USE]"), err)
        finally:
            session.quit()
        p = pop3_login(self.b, "carol", "127.0.0.9", keep=True)
        try:
            count, _ = p.stat()
            bodies = [b"\n".join(p.retr(i + 1)[1]) for i in range(count)]
        finally:
            p.quit()
        self.assertEqual(sum(token.encode() in m for m in bodies), 1, bodies)

    def test_two_host_uri_first_host_down(self):
        nowhere = tempfile.mkdtemp(prefix="rg-cluster-nopg-")  # a socket folder where no server listens
        self.addCleanup(shutil.rmtree, nowhere, True)
        uri = "postgresql://relaygate@/relaygate?host=%s,%s&port=%d&target_session_attrs=read-write" % (
            nowhere, self.pg.sockdir, self.pg.port)
        c = Gateway(node_overrides("node-c", uri, self.sink.port, self.maildir_root), check_exit=True)
        with c:
            users = json.loads(c.ctl("user", "list", "--json").stdout)  # relaygatectl over the same URI
            self.assertEqual(sorted(u["name"] for u in users), sorted(USERS))
            c.start("smtpd")
            c.start("pop3d")
            ip = "127.0.0.11"
            self.assertTrue(pop3_login(c, "alice", ip).startswith(b"+OK"))
            self.assertEqual(grants_by_ip(self.a)[ip]["node"], "node-c")
            self.assertEqual(rcpt(c, ip)[0], 250)
            self.assertEqual(rcpt(self.a, ip)[0], 250)
            self.assertEqual(rcpt(c, "127.0.0.12")[0], 554)


# --------------------------------------------------------------------------- PostgreSQL down
class PostgresDown(ClusterBase):
    GRANTED = "127.0.0.2"

    def setUp(self):
        if not self.pg._running:
            self.pg.start()

    def tearDown(self):
        if not self.pg._running:
            self.pg.start()

    def wait_until_up(self, node, ip, what):
        """Polls a relay RCPT from a granted `ip` on `node` until 250 (the node reconnected);
        only 451 4.3.0 may come before. Returns how many 451s came."""
        tempfails = [0]

        def ok():
            code, msg = rcpt(node, ip)
            if code != 250:
                self.assertEqual((code, msg[:5]), (451, b"4.3.0"), msg)
                tempfails[0] += 1
            return code == 250
        node.wait_for(ok, timeout=RECOVER_S, interval=0.2, what=what)
        return tempfails[0]

    def wait_login(self, node, user, ip, what):
        """Polls a POP3 login until +OK; only -ERR [SYS/TEMP] may come before. Returns how many."""
        tempfails = [0]

        def ok():
            try:
                return pop3_login(node, user, ip).startswith(b"+OK")
            except poplib.error_proto as e:
                self.assertIn(b"[SYS/TEMP]", e.args[0])
                tempfails[0] += 1
                return False
        node.wait_for(ok, timeout=RECOVER_S, interval=0.2, what=what)
        return tempfails[0]

    def test_immediate_stop_during_traffic(self):
        for node in (self.a, self.b):  # both local users seen once, so a RCPT to them needs no database
            self.assertEqual(rcpt(node, "127.0.0.1", "bob@example.test")[0], 250)
        self.assertTrue(pop3_login(self.a, "alice", self.GRANTED).startswith(b"+OK"))
        traffic = Traffic(self, [self.a, self.b], self.GRANTED)
        traffic.start()
        try:
            traffic.wait(lambda: traffic.accepted_remote() >= 4, "mail relayed before the stop")
            self.pg.stop(mode="immediate")
            traffic.wait(lambda: traffic.tempfails() >= 2, "451 for a relay while PostgreSQL is down")
            for node in (self.a, self.b):
                t0 = time.monotonic()
                code, msg = rcpt(node, self.GRANTED)
                self.assertEqual((code, msg[:5]), (451, b"4.3.0"), msg)
                self.assertLess(time.monotonic() - t0, LIMIT_MS / 1000 + SLACK)
                err = login_error(node, "carol", "127.0.0.3")
                self.assertTrue(err.startswith(b"-ERR [SYS/TEMP]"), err)
                self.assertEqual(ehlo_code(node), 250)
                self.assertTrue(capa_ok(node))
            self.assert_all_running()
            down_local = traffic.accepted_local()
            traffic.wait(lambda: traffic.accepted_local() >= down_local + 2, "local mail accepted while down")
            self.pg.start()
            # Without restarting a daemon. Connections from before the stop may fail their first
            # query after the start (a temporary failure) before they are replaced.
            stale = 0
            for node in (self.a, self.b):
                stale += self.wait_until_up(node, self.GRANTED, "%s to relay again" % node.config["hostname"])
                stale += self.wait_login(node, "carol", "127.0.0.3", "%s's login again" % node.config["hostname"])
            after = traffic.accepted_remote()
            traffic.wait(lambda: traffic.accepted_remote() >= after + 4, "mail relayed after the restart")
        finally:
            traffic.stop()
        self.assertEqual(traffic.errors, [])
        self.assert_all_running()
        # Never a refusal: a database that is gone is a temporary failure, not "no grant".
        self.assertEqual(traffic.codes_remote - {250, 451}, set(), traffic.codes_remote)
        self.assertIn(451, traffic.codes_remote)
        # Every message that got 250 is delivered exactly once: relayed ones at the smarthost,
        # local ones in the Maildir of the node that accepted them.
        remote = [m for m in traffic.messages if m["remote"]]
        local = [m for m in traffic.messages if m["local"]]

        def at_sink():
            with self.sink.lock:
                data = [m["data"] for m in self.sink.messages]
            return {m["token"]: sum(m["token"].encode() in d for d in data) for m in remote}
        self.a.wait_for(lambda: all(at_sink().values()), timeout=30, interval=0.2,
                        what="every relayed message at the smarthost")
        self.assertEqual(set(at_sink().values()), {1})
        for m in local:
            node = m["node"]
            names = node.messages("bob", "new") + node.messages("bob", "cur")
            found = 0
            for sub in ("new", "cur"):
                for name in node.messages("bob", sub):
                    with open(os.path.join(node.maildir("bob"), sub, name), "rb") as f:
                        found += m["token"].encode() in f.read()
            self.assertEqual(found, 1, (m["token"], names))
        print("\ncluster: %d messages acknowledged (%d relayed, %d local), all delivered; %d RCPTs got 451 "
              "while PostgreSQL was down; %d temporary failures after it was back" % (
                  len(traffic.messages), len(remote), len(local), traffic.tempfails(), stale),
              file=sys.stderr)

    def test_node_started_while_down(self):
        ip = "127.0.0.13"
        self.pg.stop(mode="fast")
        with Gateway(node_overrides("node-c", self.uri, self.sink.port), check_exit=True) as c:
            self.started_while_down(c, ip)

    def started_while_down(self, c, ip):
        c.start("smtpd")
        c.start("pop3d")
        for daemon in ("smtpd", "pop3d"):
            c.wait_log(daemon, r" warning .*event=database-unavailable ")
        code, msg = rcpt(c, ip)
        self.assertEqual((code, msg[:5]), (451, b"4.3.0"), msg)
        err = login_error(c, "alice", ip)
        self.assertTrue(err.startswith(b"-ERR [SYS/TEMP]"), err)
        self.assertEqual(ehlo_code(c), 250)
        self.pg.start()
        self.wait_login(c, "alice", ip, "node-c's login once PostgreSQL is up")
        self.assertEqual(rcpt(c, ip)[0], 250)
        # Node A held connections from before the stop: its first query on each may still fail
        # (451) while it notices the loss; it must reconnect by itself within RECOVER_S.
        self.wait_until_up(self.a, ip, "node-a to relay node-c's grant")
        self.assertEqual(grants_by_ip(self.b)[ip]["node"], "node-c")
        self.assert_all_running([c])


class Traffic:
    """Sessions in a loop, alternating between the nodes, from one granted IP: each RCPTs one
    remote and one local (recently seen) recipient and sends DATA when one was accepted.
    Records every RCPT code and every message that got its final 250."""

    def __init__(self, test, nodes, source):
        self.test, self.nodes, self.source = test, nodes, source
        self.lock = threading.Lock()
        self.messages = []  # {"token", "node", "remote", "local"} for each final 250
        self.codes_remote = set()
        self.tempfail_count = 0
        self.errors = []  # exceptions (a refused or dropped connection would mean a crash)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(T * 3)

    def wait(self, predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.errors:
                raise AssertionError("traffic failed: %s" % self.errors)
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s" % what)
            time.sleep(0.05)

    def accepted_remote(self):
        with self.lock:
            return sum(m["remote"] for m in self.messages)

    def accepted_local(self):
        with self.lock:
            return sum(m["local"] for m in self.messages)

    def tempfails(self):
        with self.lock:
            return self.tempfail_count

    def _run(self):
        i = 0
        while not self._stop.is_set():
            node = self.nodes[i % len(self.nodes)]
            i += 1
            try:
                self._session(node)
            except (OSError, smtplib.SMTPException, EOFError) as e:
                with self.lock:
                    self.errors.append("%s: %r" % (node.config["hostname"], e))
                return
            time.sleep(0.02)

    def _session(self, node):
        token = "traffic-" + uuid.uuid4().hex
        with smtplib.SMTP("127.0.0.1", node.port("smtpd", mode="relay"), timeout=T,
                          source_address=(self.source, 0)) as s:
            s.ehlo("client.test")
            if s.mail("alice@example.test")[0] != 250:
                raise smtplib.SMTPException("MAIL refused")
            remote = s.docmd("RCPT", "TO:<%s>" % REMOTE)[0]
            local = s.docmd("RCPT", "TO:<bob@example.test>")[0]
            with self.lock:
                self.codes_remote.add(remote)
                self.tempfail_count += remote == 451
            if remote != 250 and local != 250:
                return
            code, _ = s.data("Subject: %s\r\n\r\nbody\r\n" % token)
            if code == 250:
                with self.lock:
                    self.messages.append({"token": token, "node": node, "remote": remote == 250, "local": local == 250})


if __name__ == "__main__":
    harness.main()
