#!/usr/bin/env python3
"""PROXY protocol end to end (issue 12, Deliver 5): a real HAProxy (a throwaway process with a
generated config: mode tcp, foreground, its own pidfile, no stats) in front of two relaygate
nodes on loopback that share one SQLite database. HAProxy sends the v2 header (send-proxy-v2) on
one pair of frontends and the v1 line (send-proxy) on the other: POP3 on node A, SMTP on node B.

A POP3 login through HAProxy from 127.0.0.2 grants 127.0.0.2 (not HAProxy's 127.0.0.1); a relay
through HAProxy to node B from 127.0.0.2 reaches the fake smarthost, from 127.0.0.3 it is refused
(554 5.7.1); the logs name the real client and proxy=127.0.0.1; per-IP limits count the real
client. Refused without a word: a peer outside proxy_from, and one inside it that sends no header
(after the 5 s header timeout) or a bad one. A listener without proxy_protocol treats a PROXY
line as the bad command it is there. HAProxy is stopped whatever happens (finally + atexit).

Usage: haproxy_test.py [unittest args]; RG_SMTPD / RG_POP3D / RG_CTL name the binaries.
"""
import atexit
import ctypes
import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway, LineClient  # noqa: E402
from queue_test import FakeSmarthost  # noqa: E402

T = 10  # seconds, per client operation
PW = "pp-secret-1"
BALANCER = "127.0.0.1"  # HAProxy's source address towards the nodes
PROXY_HEADER_TIMEOUT = 5  # net::kProxyHeaderTimeout
START_TIMEOUT = 10
TRUSTED = "127.0.0.12"  # in node B's smtpd.trusted_networks (the balancer is not)


def _die_with_parent():
    """In the child before exec: SIGTERM when this test process dies, even by SIGKILL (CTest's
    timeout), so no HAProxy outlives the test (prctl PR_SET_PDEATHSIG)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class HAProxy:
    """haproxy -db (foreground) with a generated config: one tcp frontend on a free loopback port
    per route, each to one backend server with the given PROXY option. Stopped by pid."""

    def __init__(self, folder, routes):
        self.binary = harness.require_tool("haproxy", "/usr/sbin/haproxy")
        self.folder = folder
        self.config_path = os.path.join(folder, "haproxy.cfg")
        self.log_path = os.path.join(folder, "haproxy.log")
        self.pidfile = os.path.join(folder, "haproxy.pid")
        self.ports = {}
        self.proc = None
        lines = ["global",
                 "    pidfile %s" % self.pidfile,
                 "    maxconn 256",
                 "    nbthread 1",
                 "",
                 "defaults",
                 "    mode tcp",
                 "    timeout connect 5s",
                 "    timeout client 60s",
                 "    timeout server 60s",
                 ""]
        for name, (port, option) in routes.items():
            self.ports[name] = harness.free_port(taken=set(self.ports.values()))
            lines += ["frontend fe_%s" % name,
                      "    bind 127.0.0.1:%d" % self.ports[name],
                      "    default_backend be_%s" % name,
                      "",
                      "backend be_%s" % name,
                      "    server node 127.0.0.1:%d %s" % (port, option),
                      ""]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    def start(self):
        check = subprocess.run([self.binary, "-c", "-f", self.config_path], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError("haproxy -c refused the config:\n%s%s" % (check.stdout, check.stderr))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-db", "-f", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, cwd=self.folder, preexec_fn=_die_with_parent)
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not set(self.ports.values()) <= harness.listening_ports(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("haproxy did not listen on %s:\n%s" % (self.ports, self.log()))
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class POP3From(poplib.POP3):
    """poplib.POP3 connecting from a chosen loopback source address."""

    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=T)

    def _create_socket(self, timeout):
        return harness.connect(self.port, source=self._source, timeout=timeout)


class POP3SFrom(poplib.POP3_SSL):
    """poplib.POP3_SSL (implicit TLS) connecting from a chosen loopback source address."""

    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=T, context=harness.client_tls_context())

    def _create_socket(self, timeout):
        sock = harness.connect(self.port, source=self._source, timeout=timeout)
        return self.context.wrap_socket(sock, server_hostname=harness.HOSTNAME)


def proxied(tls="none", **extra):
    listener = {"address": "127.0.0.1", "port": "auto", "tls": tls, "proxy_protocol": True, "proxy_from": [BALANCER]}
    listener.update(extra)
    return listener


def plain(tls="none", **extra):
    listener = {"address": "127.0.0.1", "port": "auto", "tls": tls}
    listener.update(extra)
    return listener


class ThroughHAProxy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.haproxy = None
        cls.nodes = []
        cls.sink = FakeSmarthost().start()
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        common = {"auth": {"allow_plaintext_without_tls": True, "failure_delay_max_ms": 100},
                  "smarthost": {"host": "127.0.0.1", "port": cls.sink.port, "tls": "none"},
                  "queue": {"first_retry_seconds": 1, "max_retry_seconds": 2, "delay_warning_seconds": 0}}
        # Node A: POP3 behind HAProxy (plain with v2, implicit TLS with v1); its own SMTP direct.
        cls.a = Gateway(harness.deep_merge(common, {
            "hostname": "node-a.example.test",
            "pop3d": {"listen": [proxied("none"), proxied("implicit")]},
            "smtpd": {"listen": [plain("none", mode="relay")]},
        }), check_exit=True)
        cls.nodes.append(cls.a)
        # Node B: SMTP behind HAProxy (v2 and v1), its own POP3 direct; A's database file.
        cls.b = Gateway(harness.deep_merge(common, {
            "hostname": "node-b.example.test",
            "database": cls.a.path("database"),
            "pop3d": {"listen": [plain("none")]},
            "smtpd": {"listen": [proxied("none", mode="relay"), proxied("starttls", mode="relay")],
                      "max_connections_per_ip": 2, "trusted_networks": [TRUSTED + "/32"]},
        }), check_exit=True)
        cls.nodes.append(cls.b)
        cls.a.add_user("alice", PW)
        for node in cls.nodes:
            node.start("pop3d")
            node.start("smtpd")
        a_pop3 = [l["port"] for l in cls.a.listeners("pop3d")]
        b_smtp = [l["port"] for l in cls.b.listeners("smtpd")]
        cls.haproxy = HAProxy(cls.a.dir, {
            "pop3_v2": (a_pop3[0], "send-proxy-v2"),
            "pop3s_v1": (a_pop3[1], "send-proxy"),
            "smtp_v2": (b_smtp[0], "send-proxy-v2"),
            "smtp_v1": (b_smtp[1], "send-proxy"),
            # Health checks: HAProxy sends a v2 LOCAL header on them, then resets the connection.
            "pop3_check": (a_pop3[0], "send-proxy-v2 check inter 100ms"),
        }).start()

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.haproxy is not None:
                cls.haproxy.stop()
        finally:
            cls.sink.stop()
            for node in cls.nodes:
                node.close(check=True)  # a daemon that crashed or did not exit 0 on SIGTERM fails here

    # ---------------------------------------------------------------- helpers
    def pop3_login(self, route, source):
        port = self.haproxy.ports[route]
        p = POP3SFrom(port, source) if route.startswith("pop3s") else POP3From(port, source)
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        p.user("alice")
        self.assertTrue(p.pass_(PW).startswith(b"+OK"))
        p.quit()

    def granted_ips(self):
        return {g["ip"] for g in self.a.grants()}

    def relay(self, route, source, subject):
        with smtplib.SMTP("127.0.0.1", self.haproxy.ports[route], timeout=T, source_address=(source, 0)) as s:
            return s.sendmail("alice@example.test", ["far@remote.test"],
                              ("Subject: %s\r\n\r\nthrough haproxy\r\n" % subject).encode())

    def expect_relay_refused(self, route, source):
        with smtplib.SMTP("127.0.0.1", self.haproxy.ports[route], timeout=T, source_address=(source, 0)) as s:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("alice@example.test", ["far@remote.test"], b"Subject: no\r\n\r\nx\r\n")
        (code, msg), = cm.exception.recipients.values()
        self.assertEqual(code, 554, msg)
        self.assertTrue(msg.startswith(b"5.7.1"), msg)

    def delivered(self, subject):
        return [m for m in self.sink.messages if ("Subject: %s\r\n" % subject).encode() in m["data"]]

    def expect_closed_unanswered(self, client, within):
        start = time.monotonic()
        data = client.wait_closed(timeout=within)
        self.assertEqual(data, b"", "a refused connection gets no greeting")
        return time.monotonic() - start

    # ---------------------------------------------------------------- tests
    def check_login_then_relay(self, pop3_route, smtp_route, client, other, version):
        self.assertNotIn(client, self.granted_ips())
        self.pop3_login(pop3_route, client)
        ips = self.granted_ips()
        self.assertIn(client, ips, "the grant is for the client HAProxy named")
        self.assertNotIn(BALANCER, ips, "never for the balancer")
        status = self.a.wait_for(lambda: (self.a.status() or {}).get("grants") and self.a.status(), what="status file")
        self.assertIn(client, [g["ip"] for g in status["grants"]])
        pop3_port = self.a.listeners("pop3d")[0 if version == 2 else 1]["port"]
        self.a.wait_log("pop3d", r"event=connect ip=%s port=\d+ listener=%d tls=\w+ proxy=%s$"
                        % (re.escape(client), pop3_port, re.escape(BALANCER)))
        self.a.wait_log("pop3d", r"event=auth outcome=ok ip=%s proto=pop3 " % re.escape(client))

        subject = "via haproxy v%d" % version
        self.assertEqual(self.relay(smtp_route, client, subject), {})
        self.sink.wait_messages(1)
        self.assertEqual(len(self.a.wait_for(lambda: self.delivered(subject), timeout=15, what="delivery")), 1)
        data = self.delivered(subject)[0]["data"]
        self.assertIn(("([%s])" % client).encode(), data, "the Received header names the real client")
        self.assertNotIn(b"([127.0.0.1])", data)
        smtp_port = self.b.listeners("smtpd")[0 if version == 2 else 1]["port"]
        self.b.wait_log("smtpd", r"event=connect ip=%s port=\d+ listener=%d mode=relay proxy=%s$"
                        % (re.escape(client), smtp_port, re.escape(BALANCER)))

        self.expect_relay_refused(smtp_route, other)
        self.b.wait_log("smtpd", r"event=connect ip=%s port=\d+ listener=%d mode=relay proxy=%s$"
                        % (re.escape(other), smtp_port, re.escape(BALANCER)))
        self.b.wait_log("smtpd", r"event=rcpt outcome=rejected reason=relay-denied ip=%s " % re.escape(other))

    def test_v2_login_on_a_then_relay_on_b(self):
        self.check_login_then_relay("pop3_v2", "smtp_v2", "127.0.0.2", "127.0.0.3", 2)

    def test_v1_login_over_implicit_tls_on_a_then_relay_on_b(self):
        # The v1 line comes before the TLS handshake: the header is read off the socket first.
        self.check_login_then_relay("pop3s_v1", "smtp_v1", "127.0.0.4", "127.0.0.5", 1)

    def test_trusted_network_and_failed_logins_use_the_real_client(self):
        self.assertEqual(self.relay("smtp_v2", TRUSTED, "trusted via haproxy"), {})
        self.a.wait_for(lambda: self.delivered("trusted via haproxy"), timeout=15, what="delivery")
        self.b.wait_log("smtpd", r"event=rcpt outcome=accepted .*ip=%s .*by=trusted" % re.escape(TRUSTED))
        p = POP3From(self.haproxy.ports["pop3_v2"], "127.0.0.11")
        p.user("alice")
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong-password")
        p.quit()
        self.a.wait_log("pop3d", r"event=auth outcome=failed reason=bad-password ip=127\.0\.0\.11 ")
        self.assertFalse(self.a.log_lines("pop3d", r"event=auth outcome=failed .*ip=127\.0\.0\.1 "))

    def test_health_checks_are_served_not_refused(self):
        # A check that resets before pop3d looks at it has no peer address: never a warning
        # line per check (refused, ip empty), and the checks that arrive are greeted.
        deadline = time.monotonic() + 10
        while self.a.log("pop3d").count(" proxy=127.0.0.1") < 5:
            self.assertLess(time.monotonic(), deadline, self.a.log("pop3d")[-3000:])
            time.sleep(0.1)
        refused = [l for l in self.a.log("pop3d").splitlines() if "event=proxy-refused" in l]
        self.assertEqual([l for l in refused if 'ip=""' in l or " ip= " in l or l.endswith(" ip=")], [])

    def test_peer_outside_proxy_from_is_refused(self):
        for node, daemon, index in ((self.a, "pop3d", 0), (self.a, "pop3d", 1), (self.b, "smtpd", 0)):
            port = node.listeners(daemon)[index]["port"]
            with LineClient.open(port, source="127.0.0.6") as c:
                c.send("PROXY TCP4 127.0.0.9 127.0.0.1 1234 %d\r\n" % port)  # a spoofing attempt
                self.expect_closed_unanswered(c, T)
            node.wait_log(daemon, r"event=proxy-refused outcome=rejected reason=not-in-proxy-from ip=127\.0\.0\.6 listener=%d$" % port)
        self.assertNotIn("127.0.0.9", self.a.log("pop3d") + self.b.log("smtpd"))

    def test_balancer_without_a_header_is_refused(self):
        port = self.b.listeners("smtpd")[0]["port"]
        with LineClient.open(port, source=BALANCER) as c:
            elapsed = self.expect_closed_unanswered(c, PROXY_HEADER_TIMEOUT + 5)
        self.assertGreaterEqual(elapsed, PROXY_HEADER_TIMEOUT - 1)
        self.b.wait_log("smtpd", r"event=proxy-refused outcome=rejected reason=timeout ip=127\.0\.0\.1 listener=%d$" % port)

        with LineClient.open(port, source=BALANCER) as c:
            c.send("EHLO direct.test\r\n")
            self.assertLess(self.expect_closed_unanswered(c, T), 2, "bad bytes are refused at once")
        self.b.wait_log("smtpd", r"event=proxy-refused outcome=rejected reason=bad-header ip=127\.0\.0\.1 "
                                 r"listener=%d error=not-a-proxy-header$" % port)
        with LineClient.open(port, source=BALANCER) as c:
            c.send("PROXY TCP4 127.0.0.9 127.0.0.1 99999 25\r\nEHLO x\r\n")
            self.expect_closed_unanswered(c, T)
        self.b.wait_log("smtpd", r"reason=bad-header ip=127\.0\.0\.1 listener=%d error=v1-bad-port$" % port)
        with LineClient.open(port, source=BALANCER) as c:  # v2 signature, then command 2 (unassigned)
            c.send(b"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + bytes(12) + b"EHLO x\r\n")
            self.expect_closed_unanswered(c, T)
        self.b.wait_log("smtpd", r"reason=bad-header ip=127\.0\.0\.1 listener=%d error=v2-bad-command$" % port)

        # An implicit-TLS proxy listener: a ClientHello where the header belongs is a bad header.
        tls_port = self.a.listeners("pop3d")[1]["port"]
        sock = harness.connect(tls_port, source=BALANCER, timeout=T)
        with self.assertRaises((OSError, EOFError)):
            harness.client_tls_context().wrap_socket(sock, server_hostname=harness.HOSTNAME)
        sock.close()
        self.a.wait_log("pop3d", r"event=proxy-refused outcome=rejected reason=bad-header ip=127\.0\.0\.1 "
                                 r"listener=%d error=not-a-proxy-header$" % tls_port)
        self.assertFalse(self.a.log_lines("pop3d", r"tls-handshake-failed"), "no handshake began")

    def test_connection_limit_counts_the_real_client(self):
        # Node B allows 2 connections per IP; all of them arrive from HAProxy's one address.
        port = self.haproxy.ports["smtp_v2"]
        held = [LineClient.open(port, source="127.0.0.7") for _ in range(2)]
        try:
            for c in held:
                self.assertTrue(c.line().startswith("220 "))
            with LineClient.open(port, source="127.0.0.7") as third:
                self.assertTrue(third.line().startswith("421 4.7.0"))
            with LineClient.open(port, source="127.0.0.8") as other:
                self.assertTrue(other.line().startswith("220 "), "another client is not limited")
            self.b.wait_log("smtpd", r"event=connection-refused ip=127\.0\.0\.7 reason=connection-limit proxy=127\.0\.0\.1$")
        finally:
            for c in held:
                c.close()

    def test_listener_without_proxy_protocol_treats_the_line_as_a_command(self):
        # Node B's POP3 and node A's SMTP take no header: PROXY is an unknown command there.
        line = "PROXY TCP4 127.0.0.9 127.0.0.1 1234 110"
        with LineClient.open(self.b.listeners("pop3d")[0]["port"], source="127.0.0.10") as c:
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.cmd(line).startswith("-ERR"))
            self.assertTrue(c.cmd("QUIT").startswith("+OK"))
        self.b.wait_log("pop3d", r"event=connect ip=127\.0\.0\.10 port=\d+ listener=\d+ tls=none$")
        with LineClient.open(self.a.listeners("smtpd")[0]["port"], source="127.0.0.10") as c:
            self.assertTrue(c.line().startswith("220 "))
            self.assertTrue(c.cmd(line).startswith("500 5.5."))
            self.assertTrue(c.cmd("QUIT").startswith("221"))
        self.a.wait_log("smtpd", r"event=connect ip=127\.0\.0\.10 port=\d+ listener=\d+ mode=relay$")
        self.assertNotIn("127.0.0.9", self.a.log("smtpd") + self.b.log("pop3d"))


if __name__ == "__main__":
    harness.main()
