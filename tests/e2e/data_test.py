#!/usr/bin/env python3
"""DATA streams to disk (issue 11, items 2, 5 and 6), end to end against relaygate-smtpd:

- messages at the size limit (25 MiB) arrive byte-identical in the Maildir and in the spool;
- disk full in the middle of a message, for the Maildir and for the spool (tiny tmpfs mounts,
  root only, skipped otherwise): 452 4.3.1 after the final dot, nothing published, no temp
  file left, and the server keeps serving;
- kill -9 of smtpd under concurrent submissions at random points: every message that got a
  250 is in the Maildir / spool exactly once and intact, nothing partial is published, and a
  restart works;
- a client that vanishes mid-DATA is logged as such (reason=client-closed, not reason=quit),
  and its temp files are removed.
Every socket operation and wait is bounded.
"""
import os
import random
import re
import smtplib
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway, LineClient  # noqa: E402

PW = "data-test-pw"
T = 60  # seconds per client operation: 25 MiB with fsync on a loaded CI machine
MIB = 1024 * 1024
LIMIT = 25 * MIB  # the default max_message_size

# Relay without auth from loopback (trusted_networks), no TLS: the tests are about the message.
BASE = {
    "smtpd": {
        "listen": [{"address": "127.0.0.1", "port": harness.AUTO, "mode": "relay", "tls": "none"}],
        "trusted_networks": ["127.0.0.0/8"],
        "greeting_pause_ms": 0,
    },
    "pop3d": {"listen": [{"address": "127.0.0.1", "port": harness.AUTO, "tls": "none"}]},
}


def body_of(marker, size):
    """A message of `size` octets whose every line carries `marker`: any mix-up or cut shows."""
    head = ("From: t@remote.test\r\nTo: alice@example.test\r\nSubject: %s\r\n\r\n" % marker).encode()
    line = ("%s " % marker).encode().ljust(76, b"x") + b"\r\n"
    n = max(0, (size - len(head)) // len(line))
    tail = b"." + b"y" * max(0, size - len(head) - n * len(line) - 3) + b"\r\n"  # a dot line (transparency)
    return head + line * n + tail


def send(gw, rcpts, body, helo="client.test"):
    with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="relay"), timeout=T) as s:
        s.ehlo(helo)
        code, msg = s.mail("t@remote.test")
        assert code == 250, msg
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, msg
        code, msg = s.data(body)
        if code != 250:
            raise smtplib.SMTPDataError(code, msg)
        return msg.decode()


def files(path, sub=None):
    """Regular files under `path` (or path/sub), names starting with '.' excluded."""
    top = os.path.join(path, sub) if sub else path
    out = []
    for root, _, names in os.walk(top):
        out += [os.path.join(root, n) for n in names if not n.startswith(".")]
    return sorted(out)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def split_trace(data):
    """(Return-Path line or b"", Received header, rest) of a stored message."""
    rp = b""
    if data.startswith(b"Return-Path: "):
        i = data.index(b"\r\n") + 2
        rp, data = data[:i], data[i:]
    assert data.startswith(b"Received: "), data[:200]
    # The field is its first line and every folded continuation (RFC 5322 §2.2.3: a line that
    # starts with white space); smtpd/received.cpp folds every line after the first.
    i = data.index(b"\r\n") + 2
    while data[i:i + 1] in (b"\t", b" "):
        i = data.index(b"\r\n", i) + 2
    return rp, data[:i], data[i:]


class DataBase(unittest.TestCase):
    overrides = {}

    def setUp(self):
        self.gw = Gateway(harness.deep_merge(BASE, self.overrides))
        self.gw.add_user("alice", PW)
        self.gw.start("smtpd")

    def tearDown(self):
        self.gw.close()

    def spool_files(self, sub):
        return files(self.gw.path("spool_dir"), sub)

    def assert_no_temp_files(self):
        self.gw.wait_for(lambda: not files(self.gw.maildir("alice"), "tmp") and not self.spool_files("tmp"),
                         timeout=10, what="temp files removed: %s %s" % (
                             files(self.gw.maildir("alice"), "tmp"), self.spool_files("tmp")))


class BigMessages(DataBase):
    def test_at_the_size_limit_byte_identical_in_maildir_and_spool(self):
        # The cap counts the message as received (our Received: header is not part of it).
        body = body_of("big-1", LIMIT)
        self.assertEqual(len(body), LIMIT)
        reply = send(self.gw, ["alice@example.test", "far@remote.test"], body)
        qid = re.search(r"queued as (\w+)", reply).group(1)
        (md,) = files(self.gw.maildir("alice"), "new")
        rp, received, rest = split_trace(read(md))
        self.assertEqual(rest, body)  # byte-identical
        self.assertEqual(rp, b"Return-Path: <t@remote.test>\r\n")
        self.assertIn(b"id " + qid.encode(), received)
        self.assertTrue(md.endswith(",S=%d,W=%d" % (len(rp) + len(received) + LIMIT, len(rp) + len(received) + LIMIT)))
        msg = os.path.join(self.gw.path("spool_dir"), "queue", qid + ".msg")
        self.assertTrue(os.path.exists(msg[:-4] + ".env"))
        rp2, received2, rest2 = split_trace(read(msg))
        self.assertEqual((rp2, received2, rest2), (b"", received, body))
        self.gw.wait_log("smtpd", r"event=queued id=%s .*local=1 relay=1 size=%d " % (qid, LIMIT))
        self.assert_no_temp_files()

    def test_one_past_the_limit_is_552_and_leaves_nothing(self):
        body = body_of("big-2", LIMIT + 2)
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(self.gw, ["alice@example.test", "far@remote.test"], body)
        self.assertEqual(cm.exception.smtp_code, 552)
        self.assertEqual(files(self.gw.maildir("alice"), "new"), [])
        self.assertEqual(self.spool_files("queue"), [])
        self.assert_no_temp_files()

    def test_several_local_users_and_remote_each_get_one_whole_copy(self):
        self.gw.add_user("bob", PW)
        body = body_of("multi", 3 * MIB + 17)
        send(self.gw, ["alice@example.test", "bob@example.test", "alice@example.test", "x@remote.test"], body)
        for user in ("alice", "bob"):
            (md,) = files(self.gw.maildir(user), "new")
            self.assertEqual(split_trace(read(md))[2], body, user)
        (msg,) = [f for f in self.spool_files("queue") if f.endswith(".msg")]
        self.assertEqual(split_trace(read(msg))[2], body)


class Vanish(DataBase):
    def test_client_gone_mid_data_is_logged_and_leaves_nothing(self):
        c = LineClient.open(self.gw.port("smtpd", mode="relay"))
        self.assertTrue(c.line().startswith("220 "))
        c.send("EHLO gone.test\r\n")
        while not c.line().startswith("250 "):
            pass
        self.assertTrue(c.cmd("MAIL FROM:<t@remote.test>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<alice@example.test>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<far@remote.test>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.send(body_of("gone", 512 * 1024))  # no final dot
        # Until the server has seen (and written) part of it, then vanish.
        self.gw.wait_for(lambda: files(self.gw.maildir("alice"), "tmp"), what="a temp file in the Maildir")
        c.close()
        line = self.gw.wait_log("smtpd", r"event=disconnect ")[0]
        self.assertNotIn("reason=quit", line)
        self.assertRegex(line, r"reason=(client-closed|read-error) ")
        self.gw.wait_log("smtpd", r"event=data outcome=aborted reason=(client-closed|read-error) ")
        self.assert_no_temp_files()
        self.assertEqual(files(self.gw.maildir("alice"), "new"), [])
        self.assertEqual(self.spool_files("queue"), [])
        # And the server keeps serving.
        send(self.gw, ["alice@example.test"], body_of("after", 1000))
        self.assertEqual(len(files(self.gw.maildir("alice"), "new")), 1)


class DiskFull(DataBase):
    """The Maildir root or the spool on a tiny tmpfs (root only): the write fails mid-stream."""
    overrides = {"smtpd": {"max_message_size": 8 * MIB}}

    def mount(self, key, size="1m"):
        path = self.gw.path(key)
        os.makedirs(path, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path], capture_output=True)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % p.stderr.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", path], capture_output=True)
        self.gw.stop("smtpd")
        self.gw.start("smtpd")  # recreates spool/tmp and spool/queue on the mount

    def check(self, rcpt, user):
        big = body_of("full", 4 * MIB)
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.gw.port("smtpd", mode="relay"), timeout=T) as s:
            s.ehlo("full.test")
            s.mail("t@remote.test")
            s.rcpt(rcpt)
            code, msg = s.data(big)  # the whole message is read before the answer (Postfix-like)
            self.assertEqual((code, msg[:5]), (452, b"4.3.1"), msg)
            # The same session goes on, and a small message still fits.
            code, msg = s.mail("t@remote.test")
            self.assertEqual(code, 250, msg)
            s.rcpt(rcpt)
            code, msg = s.data(body_of("small", 2000))
            self.assertEqual(code, 250, msg)
        self.assertLess(time.monotonic() - start, T)
        self.gw.wait_log("smtpd", r"event=delivery-failed .*No space left")
        if user:
            (md,) = files(self.gw.maildir(user), "new")
            self.assertEqual(split_trace(read(md))[2], body_of("small", 2000))
        else:
            queued = self.spool_files("queue")
            self.assertEqual(len(queued), 2, queued)  # the small one: .msg + .env
            (msg,) = [f for f in queued if f.endswith(".msg")]
            self.assertEqual(split_trace(read(msg))[2], body_of("small", 2000))
        self.assert_no_temp_files()

    def test_maildir_full_mid_stream(self):
        self.mount("maildir_root")
        self.check("alice@example.test", "alice")

    def test_spool_full_mid_stream(self):
        self.mount("spool_dir")
        self.check("far@remote.test", None)


class Kill9(DataBase):
    """kill -9 of smtpd while 10 clients submit mid-size messages, at random points, 3 rounds."""
    CLIENTS = 10
    ROUNDS = 3

    def client(self, n, acked, stop):
        k = 0
        while not stop.is_set():
            k += 1
            marker = "c%d-%d-%d" % (self.round, n, k)
            size = random.Random(marker).randint(64 * 1024, 2 * MIB)
            rcpts = ["alice@example.test"] if k % 2 else ["alice@example.test", "far@remote.test"]
            try:
                reply = send(self.gw, rcpts, body_of(marker, size))
            except (OSError, smtplib.SMTPException):
                return  # the server died under us: not acknowledged
            qid = re.search(r"queued as (\w+)", reply).group(1)
            acked.append((marker, size, qid, len(rcpts) > 1))

    def test_kill_9_under_concurrent_submissions(self):
        rng = random.Random(os.getpid())
        all_acked = []
        for self.round in range(self.ROUNDS):
            acked, stop = [], threading.Event()
            threads = [threading.Thread(target=self.client, args=(n, acked, stop)) for n in range(self.CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 2.0))
            # At least one acknowledged message per round, so that every round checks something.
            self.gw.wait_for(lambda: acked, timeout=T, what="a 250 before the kill")
            os.kill(self.gw.pid("smtpd"), 9)
            stop.set()
            for t in threads:
                t.join(T)
            self.gw.daemons["smtpd"].proc.wait(10)
            all_acked += acked
            self.verify(all_acked)
            self.gw.start("smtpd")  # restart works (spool recovery removes the temp files)
            self.gw.wait_for(lambda: not self.spool_files("tmp"), what="spool tmp/ recovered")
        send(self.gw, ["alice@example.test"], body_of("after-kill", 1000))
        self.assertTrue(all_acked, "no message was acknowledged before the kills")

    def verify(self, acked):
        # Every file published in new/ is one whole message, each marker at most once.
        seen = {}
        for p in files(self.gw.maildir("alice"), "new"):
            _, _, rest = split_trace(read(p))
            marker = re.search(rb"Subject: (\S+)\r\n", rest).group(1).decode()
            size = random.Random(marker).randint(64 * 1024, 2 * MIB)
            self.assertEqual(rest, body_of(marker, size), "partial or corrupt: %s" % p)
            self.assertNotIn(marker, seen, "delivered twice")
            seen[marker] = p
        queued = {os.path.basename(f)[:-4] for f in self.spool_files("queue") if f.endswith(".env")}
        for marker, size, qid, relayed in acked:
            self.assertIn(marker, seen, "acknowledged but lost")
            if relayed:
                self.assertIn(qid, queued, "acknowledged relay message lost")
                _, _, rest = split_trace(read(os.path.join(self.gw.path("spool_dir"), "queue", qid + ".msg")))
                self.assertEqual(rest, body_of(marker, size))
        for qid in queued:  # nothing partial in the spool either
            self.assertTrue(os.path.exists(os.path.join(self.gw.path("spool_dir"), "queue", qid + ".msg")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
