#!/usr/bin/env python3
"""Issue 5 end to end: the outbound queue and the SMTP client, against real SMTP servers on
loopback — Postfix's smtp-sink, and a scriptable smarthost written here (threads + sockets,
stdlib only) that can refuse recipients, answer 451, stall before its final reply, offer or
withhold STARTTLS and AUTH, and records every byte it accepted.

Retries are short (queue.first_retry_seconds 1, max 2) so the whole file stays under 90 s;
every wait is bounded. The disk-full class needs root for tmpfs mounts (skipped otherwise)."""
import base64
import email
import email.policy
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway, assert_secret_not_logged, client_tls_context  # noqa: E402

PW = "s3cret-pass"
T = 15  # seconds, per client operation
SMARTHOST_USER, SMARTHOST_PW = "office", "relay-pw-1"


# --------------------------------------------------------------------------- fake smarthost
class FakeSmarthost:
    """An SMTP server on 127.0.0.1 whose answers the test scripts. A message counts as
    delivered (self.messages) only once its final 250 was sent to a live client."""

    def __init__(self, port=None, pipelining=True, size=10 * 1024 * 1024, tls=None, auth=None,
                 mechs=("PLAIN", "LOGIN"), implicit=False):
        self.port = port or harness.free_port()
        self.pipelining, self.size, self.tls, self.auth, self.mechs = pipelining, size, tls, auth, list(mechs)
        self.implicit = implicit    # TLS from the first byte (RFC 8314), with the `tls` files
        self.lock = threading.Lock()
        self.messages = []          # dicts: mail_from, mail_params, rcpts, data, tls, auth
        self.sessions = []          # dicts: commands, chunks, tls, aborted
        self.rcpt_replies = {}      # address -> reply line for RCPT
        self.final_replies = []     # replies for the next final "." (then 250)
        self.greeting_delay = 0.0
        self.stall = None           # threading.Event: hold the final reply until set
        self.stalled = threading.Event()
        self._stop = threading.Event()
        self._sock = None
        self._threads = []

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.2)
        self._sock = s
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        if self.stall:
            self.stall.set()
        if self._sock:
            self._sock.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_messages(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError("smarthost got %d message(s), expected %d" % (len(self.messages), n))

    def all_commands(self):
        with self.lock:
            return [c for s in self.sessions for c in s["commands"]]

    # -- server side
    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        session = {"commands": [], "chunks": [], "tls": False, "aborted": 0}
        with self.lock:
            self.sessions.append(session)
        conn.settimeout(10)
        io = _LineIO(conn, session)
        try:
            if self.implicit:
                io.start_tls(self.tls)
                session["tls"] = True
            self._dialog(io, session)
        except (OSError, EOFError, ssl.SSLError):
            pass
        finally:
            try:
                io.sock.close()
            except OSError:
                pass

    def _ehlo_lines(self, session):
        lines = ["fake.smarthost.test"]
        if self.pipelining:
            lines.append("PIPELINING")
        if self.size is not None:
            lines.append("SIZE %d" % self.size)
        lines += ["8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.tls and not session["tls"]:
            lines.append("STARTTLS")
        if self.auth:
            lines.append("AUTH " + " ".join(self.mechs))
        return lines

    def _dialog(self, io, session):
        if self.greeting_delay:
            time.sleep(self.greeting_delay)
        io.reply("220 fake.smarthost.test ESMTP")
        mail, rcpts, user = None, [], None
        while True:
            line = io.readline()
            if not line:
                return
            text = line.decode("latin-1").rstrip("\r\n")
            verb = text.split(" ", 1)[0].upper()
            session["commands"].append(text if verb != "AUTH" else "AUTH " + text.split(" ")[1])
            if verb == "EHLO":
                lines = self._ehlo_lines(session)
                io.reply("\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", l) for i, l in enumerate(lines)))
            elif verb == "HELO":
                io.reply("250 fake.smarthost.test")
            elif verb == "STARTTLS" and self.tls and not session["tls"]:
                io.reply("220 2.0.0 Ready to start TLS")
                io.start_tls(self.tls)
                session["tls"] = True
            elif verb == "AUTH" and self.auth:
                user = self._auth(io, text)
            elif verb == "MAIL":
                if self.auth and not user:
                    io.reply("530 5.7.0 Authentication required")
                    continue
                arg = text[10:]
                addr, _, params = arg.partition(">")
                mail, rcpts = (addr.lstrip("<"), params.strip()), []
                io.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail is None:
                    io.reply("503 5.5.1 need MAIL")
                    continue
                addr = text[8:].strip().lstrip("<").rstrip(">")
                reply = self.rcpt_replies.get(addr, "250 2.1.5 Ok")
                if reply.startswith("2"):
                    rcpts.append(addr)
                io.reply(reply)
            elif verb == "DATA":
                if mail is None or not rcpts:
                    io.reply("554 5.5.1 Error: no valid recipients")
                    continue
                io.reply("354 End data with <CR><LF>.<CR><LF>")
                data = io.read_data()
                reply = self.final_replies.pop(0) if self.final_replies else None
                if self.stall is not None:
                    self.stalled.set()
                    self.stall.wait(20)
                    if io.peer_closed():
                        session["aborted"] += 1  # the client died before our reply: nothing accepted
                        return
                n = len(self.messages) + 1
                reply = reply or "250 2.0.0 Ok: queued as FAKE%d" % n
                io.reply(reply)
                if reply.startswith("2"):
                    with self.lock:
                        self.messages.append({"mail_from": mail[0], "mail_params": mail[1], "rcpts": rcpts,
                                              "data": data, "tls": session["tls"], "auth": user})
                mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                io.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                io.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                io.reply("221 2.0.0 Bye")
                return
            else:
                io.reply("502 5.5.2 Error: command not recognized")

    def _auth(self, io, text):
        words = text.split(" ")
        mech = words[1].upper() if len(words) > 1 else ""
        if mech not in self.mechs:
            io.reply("504 5.5.4 Unsupported mechanism")
            return None
        if mech == "PLAIN":
            blob = words[2] if len(words) > 2 else None
            if blob is None:
                io.reply("334 ")
                blob = io.readline().decode().strip()
            _, user, pw = base64.b64decode(blob).decode().split("\0")
        else:
            if len(words) > 2:
                user = base64.b64decode(words[2]).decode()
            else:
                io.reply("334 VXNlcm5hbWU6")
                user = base64.b64decode(io.readline().strip()).decode()
            io.reply("334 UGFzc3dvcmQ6")
            pw = base64.b64decode(io.readline().strip()).decode()
        if self.auth.get(user) == pw:
            io.reply("235 2.7.0 Authentication successful")
            return user + "/" + mech
        io.reply("535 5.7.8 Error: authentication failed")
        return None


class _LineIO:
    def __init__(self, sock, session):
        self.sock, self.session, self.buf = sock, session, b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError()
        self.session["chunks"].append(chunk)
        self.buf += chunk

    def readline(self):
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_data(self):
        out = []
        while True:
            line = self.readline()
            if line == b".\r\n":
                return b"".join(out)
            out.append(line[1:] if line.startswith(b".") else line)

    def reply(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def start_tls(self, files):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files[0], files[1])
        self.buf = b""  # nothing sent before the handshake is read after it
        self.sock = ctx.wrap_socket(self.sock, server_side=True)

    def peer_closed(self):
        try:
            self.sock.setblocking(False)
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True
        finally:
            self.sock.setblocking(True)


def make_cert(folder, name, ip="127.0.0.1"):
    """A self-signed certificate for `ip` (its own CA). Returns (cert, key)."""
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=IP:" + ip], check=True, capture_output=True, timeout=30)
    return cert, key


# --------------------------------------------------------------------------- helpers
def queue_overrides(port, **smarthost):
    sh = {"host": "127.0.0.1", "port": port, "tls": "none"}
    sh.update(smarthost)
    return {"smarthost": sh,
            "queue": {"first_retry_seconds": 1, "max_retry_seconds": 2, "scan_interval_seconds": 5,
                      "delay_warning_seconds": 0}}


def submit(gw, sender, rcpts, msg, user="alice"):
    """Sends one message through the submission port (STARTTLS + AUTH); returns refused dict."""
    with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="submission"), timeout=T) as s:
        s.starttls(context=client_tls_context())
        s.login(user, PW)
        return s.sendmail(sender, rcpts, msg)


class QueueBase(unittest.TestCase):
    server_args = {}
    smarthost = {}
    extra = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rg-queue-")
        cls.server = FakeSmarthost(**cls.server_args_for()).start()
        cls.gw = Gateway(harness.deep_merge(queue_overrides(cls.server.port, **cls.smarthost_for()), cls.extra))
        cls.gw.add_user("alice", PW)
        cls.gw.start("smtpd")

    @classmethod
    def server_args_for(cls):
        return dict(cls.server_args)

    @classmethod
    def smarthost_for(cls):
        return dict(cls.smarthost)

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.server.rcpt_replies.clear()
        self.server.final_replies.clear()
        with self.server.lock:
            self.server.messages.clear()  # sessions stay: a lingering connection may carry the next test's mail

    def queued(self):
        return json.loads(self.gw.ctl("queue", "list", "--json").stdout)

    def wait_queue_empty(self, timeout=10.0):
        self.gw.wait_for(lambda: self.queued() == [], timeout=timeout, what="an empty queue")

    def mailbox(self, user):
        out = []
        for sub in ("new", "cur"):
            for name in self.gw.messages(user, sub):
                with open(os.path.join(self.gw.maildir(user), sub, name), "rb") as f:
                    out.append(f.read())
        return out


# --------------------------------------------------------------------------- tests
class Delivery(QueueBase):
    """Byte-identical delivery with PIPELINING and SIZE, several messages per connection,
    451-then-250 retry, per-recipient 550 bounce to the local sender, null sender, remote sender."""
    extra = {"queue": {"max_connections": 1}}

    def test_message_arrives_byte_identical(self):
        original = (b"From: alice@example.test\r\nTo: far@remote.test\r\nSubject: bytes\r\n\r\n"
                    b".starts with a dot\r\n..two dots\r\n.\r\n"
                    b"8-bit: \xc3\xa9\xff\r\n" + b"x" * 998 + b"\r\n"
                    b"tab\there\r\n\r\n\r\nlast line\r\n")
        self.assertEqual(submit(self.gw, "alice@example.test", ["far@remote.test"], original), {})
        (m,) = self.server.wait_messages(1)
        self.assertTrue(m["data"].endswith(original), m["data"][-300:])
        added = m["data"][:-len(original)]
        self.assertTrue(added.startswith(b"Received: from "), added)
        for line in added.split(b"\r\n")[1:-1]:  # only the Received: header (and its folds) was added
            self.assertTrue(line.startswith(b"\t"), line)
        self.assertEqual(m["mail_from"], "alice@example.test")
        self.assertEqual(m["rcpts"], ["far@remote.test"])
        self.assertIn("SIZE=%d" % len(m["data"]), m["mail_params"])  # RFC 1870: declared, exact
        self.assertIn("BODY=8BITMIME", m["mail_params"])
        # PIPELINING (RFC 2920): MAIL, RCPT and DATA reached the server in one write.
        chunks = [c for s in self.server.sessions for c in s["chunks"]]
        self.assertTrue(any(b"MAIL FROM:" in c and b"RCPT TO:<far@remote.test>" in c and b"DATA\r\n" in c
                            for c in chunks), chunks)
        line = self.gw.wait_log("smtpd", r"event=delivery to=far@remote.test .*status=sent")[0]
        self.assertIn("relay=127.0.0.1[127.0.0.1]:%d" % self.server.port, line)
        self.assertIn("tls=none", line)
        self.assertIn("code=250 dsn=2.0.0", line)
        self.assertRegex(line, r'reply="250 2.0.0 Ok: queued as FAKE\d+" delay=\d+ attempt=1')
        self.wait_queue_empty()

    def test_several_messages_on_one_connection(self):
        # The first message waits for its final reply while two more are queued; the one
        # connection (queue.max_connections 1) then carries them too.
        self.server.stall = threading.Event()
        self.server.stalled.clear()
        try:
            submit(self.gw, "alice@example.test", ["n0@remote.test"], b"Subject: 0\r\n\r\nbody\r\n")
            self.assertTrue(self.server.stalled.wait(10))
            with smtplib.SMTP("127.0.0.1", self.gw.port("smtpd", mode="submission"), timeout=T) as s:
                s.starttls(context=client_tls_context())
                s.login("alice", PW)
                for i in (1, 2):
                    s.sendmail("alice@example.test", ["n%d@remote.test" % i], b"Subject: %d\r\n\r\nbody\r\n" % i)
            self.server.stall.set()
            msgs = self.server.wait_messages(3)
        finally:
            self.server.stall = None
        self.assertEqual(sorted(m["rcpts"][0] for m in msgs), ["n0@remote.test", "n1@remote.test", "n2@remote.test"])
        with self.server.lock:
            per_session = [sum(1 for c in s["commands"] if re.match(r"RCPT TO:<n\d@", c)) for s in self.server.sessions]
        self.assertIn(3, per_session, per_session)  # one connection carried all three
        self.wait_queue_empty()

    def test_451_then_250_delivers_on_retry(self):
        self.server.final_replies.append("451 4.3.0 Error: queue file write error")
        submit(self.gw, "alice@example.test", ["retry@remote.test"], b"Subject: retry\r\n\r\nagain\r\n")
        self.gw.wait_log("smtpd", r"to=retry@remote.test .*status=deferred code=451 dsn=4.3.0")
        (m,) = self.server.wait_messages(1, timeout=10)
        self.assertEqual(m["rcpts"], ["retry@remote.test"])
        self.gw.wait_log("smtpd", r"to=retry@remote.test .*status=sent .*attempt=2")
        self.wait_queue_empty()

    def test_550_for_one_of_two_bounces_to_local_sender(self):
        before = len(self.mailbox("alice"))
        self.server.rcpt_replies["nobody@remote.test"] = "550 5.1.1 <nobody@remote.test>: Recipient address rejected"
        submit(self.gw, "alice@example.test", ["ok@remote.test", "nobody@remote.test"],
               b"Subject: half\r\nMessage-ID: <half@example.test>\r\n\r\nbody\r\n")
        (m,) = self.server.wait_messages(1)
        self.assertEqual(m["rcpts"], ["ok@remote.test"])
        self.gw.wait_for(lambda: len(self.mailbox("alice")) == before + 1, timeout=10, what="the bounce")
        self.wait_queue_empty()
        time.sleep(0.3)
        self.assertEqual(len(self.mailbox("alice")), before + 1)  # exactly one DSN
        bounce = [b for b in self.mailbox("alice") if b"half@example.test" in b][0]
        self.assertTrue(bounce.startswith(b"Return-Path: <>\r\n"))
        msg = email.message_from_bytes(bounce, policy=email.policy.compat32)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "text/rfc822-headers"])
        status = parts[1].as_string()
        self.assertIn("Final-Recipient: rfc822; nobody@remote.test", status)
        self.assertNotIn("ok@remote.test", status)
        self.assertIn("Action: failed", status)
        self.assertIn("Status: 5.1.1", status)
        self.assertIn("Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: Recipient address rejected", status)
        self.assertIn("Message-ID: <half@example.test>", parts[2].as_string())
        self.gw.wait_log("smtpd", r"to=nobody@remote.test .*status=bounced code=550 dsn=5.1.1")
        self.gw.wait_log("smtpd", r"event=dsn dsn_id=[0-9A-F]{12}R1 to=alice@example.test delivery=maildir outcome=made")

    def test_null_sender_never_gets_a_bounce(self):
        before = len(self.mailbox("alice"))
        self.server.rcpt_replies["gone@remote.test"] = "550 5.1.1 gone"
        submit(self.gw, "", ["gone@remote.test"], b"Subject: null\r\n\r\nbody\r\n")
        self.gw.wait_log("smtpd", r"to=gone@remote.test .*status=bounced")
        self.wait_queue_empty()
        self.assertEqual(len(self.mailbox("alice")), before)
        self.assertEqual(self.server.messages, [])
        dsn_lines = [l for l in self.gw.log_lines("smtpd", r"event=dsn ") if "gone" in l]
        self.assertEqual(dsn_lines, [])

    def test_remote_sender_bounce_is_queued_with_null_sender(self):
        self.server.rcpt_replies["bad@remote.test"] = "550 5.1.1 no such user"
        submit(self.gw, "carol@elsewhere.test", ["bad@remote.test"], b"Subject: from afar\r\n\r\nbody\r\n")
        (dsn,) = self.server.wait_messages(1)
        self.assertEqual(dsn["mail_from"], "")  # RFC 5321 §6.1: a DSN never bounces
        self.assertEqual(dsn["rcpts"], ["carol@elsewhere.test"])
        self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status;", dsn["data"])
        self.assertIn(b"Final-Recipient: rfc822; bad@remote.test", dsn["data"])
        self.gw.wait_log("smtpd", r"event=dsn .*to=carol@elsewhere.test delivery=queued outcome=made")
        self.wait_queue_empty()


class Expiry(QueueBase):
    """451 for ever: a delay warning first, then a failed DSN once queue.max_lifetime passes."""
    extra = {"queue": {"max_lifetime_seconds": 4, "delay_warning_seconds": 1}}

    def test_delay_warning_then_expiry_bounce(self):
        self.server.rcpt_replies["slow@remote.test"] = "451 4.2.0 mailbox busy"
        before = len(self.mailbox("alice"))
        submit(self.gw, "alice@example.test", ["slow@remote.test"], b"Subject: slow\r\n\r\nbody\r\n")
        self.gw.wait_for(lambda: len(self.mailbox("alice")) >= before + 2, timeout=15, what="two DSNs")
        self.wait_queue_empty()
        dsns = [email.message_from_bytes(b, policy=email.policy.compat32) for b in self.mailbox("alice")[before:]]
        actions = sorted(d.get_payload()[1].as_string().split("Action: ")[1].split("\n")[0].strip() for d in dsns)
        self.assertEqual(actions, ["delayed", "failed"])
        self.gw.wait_log("smtpd", r"to=slow@remote.test .*status=expired")


class DownThenUp(QueueBase):
    """Nothing listens on the smarthost port at first: deferred, then delivered once it is up."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.stop()  # keep its port, stop listening

    def test_smarthost_down_then_up(self):
        submit(self.gw, "alice@example.test", ["later@remote.test"], b"Subject: later\r\n\r\nbody\r\n")
        line = self.gw.wait_log("smtpd", r"to=later@remote.test .*status=deferred")[0]
        self.assertIn("code=451 dsn=4.4.1", line)
        self.assertIn("Connection refused", line)
        # The delivery line is logged before the runner persists the attempt: wait for the envelope.
        self.gw.wait_for(lambda: len(self.queued()) == 1 and self.queued()[0]["attempts"] >= 1, what="attempt 1 recorded")
        (q,) = self.queued()
        self.assertIn("Connection refused", q["last_error"])
        self.assertEqual(q["recipients"][0]["state"], "pending")
        up = FakeSmarthost(port=self.server.port).start()
        try:
            (m,) = up.wait_messages(1, timeout=10)
            self.assertEqual(m["rcpts"], ["later@remote.test"])
            self.wait_queue_empty()
            time.sleep(0.5)
            self.assertEqual(len(up.messages), 1)
        finally:
            up.stop()


class TlsRequiredNotOffered(QueueBase):
    """tls "required" and a smarthost without STARTTLS: deferred, never a MAIL in clear."""
    smarthost = {"tls": "required"}

    def test_deferred_never_sent_in_clear(self):
        submit(self.gw, "alice@example.test", ["tls@remote.test"], b"Subject: secret\r\n\r\nbody\r\n")
        line = self.gw.wait_log("smtpd", r"to=tls@remote.test .*status=deferred")[0]
        self.assertIn("dsn=4.7.4", line)
        self.assertIn("TLS is required, but was not offered", line)
        time.sleep(2.5)  # a few retries
        commands = self.server.all_commands()
        self.assertTrue(commands, "the smarthost was contacted")
        self.assertEqual({c.split(" ")[0] for c in commands}, {"EHLO", "QUIT"}, commands)
        self.assertEqual(self.server.messages, [])
        (q,) = self.queued()
        self.assertEqual(q["recipients"][0]["state"], "pending")


class TlsAndAuth(QueueBase):
    """STARTTLS with certificate and host-name verification against ca_file, then AUTH PLAIN
    or LOGIN with the password file; a certificate that does not verify defers."""

    @classmethod
    def server_args_for(cls):
        cls.good = make_cert(cls.tmp, "smarthost")
        cls.bad = make_cert(cls.tmp, "impostor")
        return {"tls": cls.good, "auth": {SMARTHOST_USER: SMARTHOST_PW}}

    @classmethod
    def smarthost_for(cls):
        pwfile = os.path.join(cls.tmp, "smarthost.password")
        with open(pwfile, "w") as f:
            f.write(SMARTHOST_PW + "\n")
        return {"tls": "required", "verify": True, "ca_file": cls.good[0], "username": SMARTHOST_USER,
                "password_file": pwfile}

    def test_starttls_verified_and_auth_plain_then_login(self):
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mech=mech):
                self.server.mechs = [mech]
                with self.server.lock:
                    self.server.messages.clear()
                submit(self.gw, "alice@example.test", ["auth@remote.test"], b"Subject: auth\r\n\r\nbody\r\n")
                (m,) = self.server.wait_messages(1)
                self.assertTrue(m["tls"])
                self.assertEqual(m["auth"], SMARTHOST_USER + "/" + mech)
                self.wait_queue_empty()
        line = self.gw.wait_log("smtpd", r"to=auth@remote.test .*status=sent")[0]
        self.assertRegex(line, r"tls=\"?TLSv1\.[23] ")
        # LOGIN sent base64(password), PLAIN base64 of the whole blob: neither may be logged.
        assert_secret_not_logged(self, self.gw.log("smtpd"), SMARTHOST_PW,
                                 b"\0" + SMARTHOST_USER.encode() + b"\0" + SMARTHOST_PW.encode())
        # Every command after STARTTLS and the credentials only ever went over TLS.
        with self.server.lock:
            for s in self.server.sessions:
                cmds = [c.split(" ")[0] for c in s["commands"]]
                if "AUTH" in cmds or "MAIL" in cmds:
                    self.assertIn("STARTTLS", cmds)
                    self.assertLess(cmds.index("STARTTLS"), cmds.index("AUTH"))

    def test_unverifiable_certificate_defers(self):
        self.server.tls = self.bad
        try:
            submit(self.gw, "alice@example.test", ["verify@remote.test"], b"Subject: v\r\n\r\nbody\r\n")
            line = self.gw.wait_log("smtpd", r"to=verify@remote.test .*status=deferred")[0]
            self.assertIn("dsn=4.7.5", line)
            self.assertIn("certificate verify failed", line)
            self.assertEqual(self.server.messages, [])
        finally:
            self.server.tls = self.good
        self.gw.ctl("queue", "flush")
        self.server.wait_messages(1)
        self.wait_queue_empty()


class ImplicitTls(QueueBase):
    """tls "implicit" (RFC 8314, port 465 style): TLS from the first byte, verified."""

    @classmethod
    def server_args_for(cls):
        cls.cert = make_cert(cls.tmp, "smarthost")
        return {"tls": cls.cert, "implicit": True}

    @classmethod
    def smarthost_for(cls):
        return {"tls": "implicit", "verify": True, "ca_file": cls.cert[0]}

    def test_implicit_tls(self):
        submit(self.gw, "alice@example.test", ["tls465@remote.test"], b"Subject: 465\r\n\r\nbody\r\n")
        (m,) = self.server.wait_messages(1)
        self.assertTrue(m["tls"])
        self.assertRegex(self.gw.wait_log("smtpd", r"to=tls465@remote.test .*status=sent")[0], r"tls=\"?TLSv1\.[23] ")
        self.wait_queue_empty()


class CrashSafety(QueueBase):
    """kill -9 while the smarthost has the whole message but has not answered the final ".":
    after a restart it is delivered, and exactly once."""

    def test_kill_9_during_delivery_then_restart_delivers_once(self):
        self.server.stall = threading.Event()
        self.server.stalled.clear()
        submit(self.gw, "alice@example.test", ["once@remote.test"], b"Subject: once\r\n\r\nexactly once\r\n")
        self.assertTrue(self.server.stalled.wait(10), "the smarthost never got the message")
        pid = self.gw.pid("smtpd")
        os.kill(pid, signal.SIGKILL)
        self.gw.daemons["smtpd"].proc.wait(10)
        self.server.stall.set()
        self.gw.wait_for(lambda: any(s["aborted"] for s in self.server.sessions), what="the aborted transaction")
        self.server.stall = None
        self.assertEqual(self.server.messages, [])
        (q,) = self.queued()  # still queued, recipient pending
        self.assertEqual(q["recipients"][0]["state"], "pending")
        self.gw.start("smtpd")
        self.gw.wait_log("smtpd", r"event=queue-started .*queued=1")
        (m,) = self.server.wait_messages(1)
        self.assertIn(b"exactly once", m["data"])
        self.wait_queue_empty()
        time.sleep(1.5)  # a second copy would come within the retry delay
        self.assertEqual(len(self.server.messages), 1)
        self.assertEqual(len(self.gw.log_lines("smtpd", r"to=once@remote.test .*status=sent")), 1)


class Admin(QueueBase):
    """relaygatectl queue list/show/hold/release/flush/delete against a down smarthost, and
    refusal at RCPT without any smarthost."""
    extra = {"queue": {"first_retry_seconds": 300, "max_retry_seconds": 600}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.stop()

    def test_list_show_hold_release_flush_delete(self):
        submit(self.gw, "alice@example.test", ["admin@remote.test"], b"Subject: admin\r\n\r\nshow me\r\n")
        self.gw.wait_log("smtpd", r"to=admin@remote.test .*status=deferred .*attempt=1")
        # The delivery line is logged before the runner persists the attempt: wait for the envelope.
        self.gw.wait_for(lambda: len(self.queued()) == 1 and self.queued()[0]["attempts"] == 1, what="attempt 1 recorded")
        (q,) = self.queued()
        qid = q["id"]
        self.assertEqual(q["attempts"], 1)
        self.assertFalse(q["held"])
        self.assertIn("Connection refused", q["last_error"])
        text = self.gw.ctl("queue", "list").stdout
        self.assertIn(qid, text)
        self.assertIn("last error: 451 4.4.1 connect to", text)
        show = self.gw.ctl("queue", "show", qid).stdout
        self.assertIn('"sender": "alice@example.test"', show)
        self.assertIn("show me", show)
        self.assertIn("hold", self.gw.ctl("queue", "hold", qid).stdout)
        self.assertTrue(self.queued()[0]["held"])
        p = self.gw.ctl("queue", "flush", qid, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("on hold", p.stderr)
        self.gw.ctl("queue", "release", qid)  # released: tried again at once
        self.gw.wait_log("smtpd", r"to=admin@remote.test .*status=deferred .*attempt=2")
        self.gw.wait_for(lambda: self.queued()[0]["attempts"] == 2, what="attempt 2 recorded")
        self.assertIn("1 message(s) scheduled", self.gw.ctl("queue", "flush").stdout)
        self.gw.wait_log("smtpd", r"to=admin@remote.test .*status=deferred .*attempt=3")
        self.gw.wait_for(lambda: self.queued()[0]["attempts"] == 3, what="attempt 3 recorded")
        self.assertIn("deleted", self.gw.ctl("queue", "delete", qid).stdout)
        self.assertEqual(self.queued(), [])
        for args in (("show", qid), ("delete", qid), ("show", "../etc"), ("hold", "x y")):
            p = self.gw.ctl("queue", *args, check=False)
            self.assertEqual(p.returncode, 1, args)

    def test_status_file_queue_block_from_smtpd_and_ctl(self):
        # Only smtpd runs here: the queue block of the status file comes from the summary smtpd
        # keeps in the database when queue/ changes, and relaygatectl rewrites it after a delete.
        self.assertEqual(list(self.gw.daemons), ["smtpd"])
        submit(self.gw, "alice@example.test", ["status@remote.test"], b"Subject: status\r\n\r\nqueued\r\n")
        self.gw.wait_for(lambda: (self.gw.status() or {}).get("queue", {}).get("count") == 1, what="queue count 1 in the status file")
        queue = self.gw.status()["queue"]
        self.assertIsInstance(queue["oldest_age_seconds"], int)
        self.assertGreaterEqual(queue["oldest_age_seconds"], 0)
        (q,) = self.queued()
        self.gw.wait_for(lambda: self.queued()[0]["attempts"] >= 1, what="attempt 1 recorded")
        self.assertIn("deleted", self.gw.ctl("queue", "delete", q["id"]).stdout)
        self.assertEqual(self.gw.status()["queue"], {"count": 0, "oldest_age_seconds": None})

    def test_no_smarthost_refuses_non_local_at_rcpt(self):
        with Gateway() as gw:
            gw.config.pop("smarthost", None)
            with open(gw.config_path, "w") as f:
                json.dump(gw.config, f)
            gw.add_user("alice", PW)
            gw.start("smtpd")
            with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="submission"), timeout=T) as s:
                s.starttls(context=client_tls_context())
                s.login("alice", PW)
                s.ehlo()
                s.mail("alice@example.test")
                code, msg = s.rcpt("far@remote.test")
                self.assertEqual((code, msg[:5]), (550, b"5.7.1"), msg)
                self.assertIn(b"no smarthost", msg)
                code, _ = s.rcpt("alice@example.test")  # local mail still works
                self.assertEqual(code, 250)
            gw.wait_log("smtpd", r"event=rcpt outcome=rejected reason=no-smarthost ip=127\.0\.0\.1 to=far@remote.test")
            # An unauthorized client learns nothing about the configuration (issue 9): plain 554.
            with smtplib.SMTP("127.0.0.1", gw.port("smtpd", mode="relay"), timeout=T) as s:
                s.ehlo("probe.test")
                s.mail("x@probe.test")
                code, msg = s.rcpt("far@remote.test")
                self.assertEqual((code, msg), (554, b"5.7.1 <far@remote.test>: Relay access denied"))
            gw.wait_log("smtpd", r"event=rcpt outcome=rejected reason=relay-denied ip=127\.0\.0\.1 to=far@remote.test")
            gw.wait_log("smtpd", r"event=disconnect")  # no session left when the daemon is stopped


class SmtpSink(unittest.TestCase):
    """Postfix's own smtp-sink as the smarthost (PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME)."""

    def test_delivery_to_postfix_smtp_sink(self):
        sink = harness.require_tool("smtp-sink", "/usr/sbin/smtp-sink")  # package postfix
        dump = tempfile.mkdtemp(prefix="rg-sink-")
        os.chmod(dump, 0o777)
        port = harness.free_port()
        argv = [sink] + (["-u", "nobody"] if os.geteuid() == 0 else []) + ["-d", dump + "/%M.", "127.0.0.1:%d" % port, "10"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            with Gateway(queue_overrides(port)) as gw:
                gw.add_user("alice", PW)
                gw.start("smtpd")
                body = b"Subject: to the sink\r\n\r\n.dot line\r\nsink body\r\n"
                submit(gw, "alice@example.test", ["sink@remote.test", "sink2@remote.test"], body)
                gw.wait_log("smtpd", r"to=sink2@remote.test .*status=sent code=250")
                files = gw.wait_for(lambda: [os.path.join(r, f) for r, _, fs in os.walk(dump) for f in fs],
                                    what="the sink's dump file")
                with open(files[0], "rb") as f:
                    data = f.read()
                self.assertIn(b"X-Mail-Args: <alice@example.test>", data)
                self.assertIn(b"X-Rcpt-Args: <sink@remote.test>", data)
                self.assertIn(b"X-Rcpt-Args: <sink2@remote.test>", data)
                self.assertIn(b"\n.dot line\n", data.replace(b"\r\n", b"\n"))  # dot-stuffing undone by the sink
                self.assertEqual(len(files), 1)
                gw.wait_for(lambda: json.loads(gw.ctl("queue", "list", "--json").stdout) == [], what="empty queue")
        finally:
            proc.terminate()
            proc.wait(5)
            shutil.rmtree(dump, ignore_errors=True)


class DiskFull(QueueBase):
    """Maildir root and spool on tiny tmpfs mounts (root only): a bounce that does not fit and
    a state update that does not fit lose nothing and send nothing twice."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mounts = []
        for key, size in (("maildir_root", "64k"), ("spool_dir", "128k")):
            path = cls.gw.path(key)
            os.makedirs(path, exist_ok=True)
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path], capture_output=True)
            if p.returncode != 0:
                cls.tearDownClass()
                raise unittest.SkipTest("cannot mount a tmpfs here: %s" % p.stderr.decode().strip())
            cls.mounts.append(path)
        os.makedirs(os.path.join(cls.gw.maildir("alice"), "new"), exist_ok=True)
        for sub in ("tmp", "cur"):
            os.makedirs(os.path.join(cls.gw.maildir("alice"), sub), exist_ok=True)
        cls.gw.stop("smtpd")
        cls.gw.start("smtpd")

    @classmethod
    def tearDownClass(cls):
        for path in getattr(cls, "mounts", []):
            subprocess.run(["umount", "-l", path], capture_output=True)
        super().tearDownClass()

    def fill(self, key):
        path = os.path.join(self.gw.path(key), "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        return path

    def test_bounce_on_full_disk_waits_and_is_made_once(self):
        self.server.rcpt_replies["full@remote.test"] = "550 5.1.1 unknown"
        filler = self.fill("maildir_root")
        try:
            submit(self.gw, "alice@example.test", ["full@remote.test"], b"Subject: full\r\n\r\nbody\r\n")
            self.gw.wait_log("smtpd", r"event=queue-write-failed .*No space left on device")
            (q,) = self.queued()  # kept, the failure recorded, its DSN still to be made
            self.assertEqual(q["recipients"][0]["state"], "failed")
            self.assertEqual(self.mailbox("alice"), [])
        finally:
            os.unlink(filler)
        self.gw.ctl("queue", "flush")
        self.gw.wait_for(lambda: len(self.mailbox("alice")) == 1, timeout=15, what="the bounce")
        self.wait_queue_empty()
        self.assertIn(b"Final-Recipient: rfc822; full@remote.test", self.mailbox("alice")[0])

    def test_state_update_on_full_disk_sends_nothing_twice(self):
        self.server.rcpt_replies["later@remote.test"] = "451 4.2.0 try later"
        self.server.stall = threading.Event()
        self.server.stalled.clear()
        filler = None
        try:
            submit(self.gw, "alice@example.test", ["now@remote.test", "later@remote.test"], b"Subject: s\r\n\r\nb\r\n")
            self.assertTrue(self.server.stalled.wait(10))
            filler = self.fill("spool_dir")
            self.server.stall.set()
            self.gw.wait_log("smtpd", r"event=queue-write-failed .*No space left on device")
            self.server.stall = None
            time.sleep(1.5)  # runner retries while the disk is still full: never sends now@ again
            self.assertEqual([m["rcpts"] for m in self.server.messages], [["now@remote.test"]])
        finally:
            self.server.stall = None
            if filler:
                os.unlink(filler)
        del self.server.rcpt_replies["later@remote.test"]
        self.gw.ctl("queue", "flush")
        msgs = self.server.wait_messages(2, timeout=20)
        self.assertEqual([m["rcpts"] for m in msgs], [["now@remote.test"], ["later@remote.test"]])
        self.wait_queue_empty(timeout=15)
        self.assertEqual(len(self.server.messages), 2)


if __name__ == "__main__":
    harness.main()
