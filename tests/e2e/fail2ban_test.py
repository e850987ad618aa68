"""The fail2ban example filter (packaging/fail2ban/filter.d/relaygate.conf) against real logs.

Real clients (smtplib, poplib, swaks, curl) make a known number of failed logins of several
kinds, relay probes and one unauthenticated MAIL on the submission port, from known loopback
addresses, next to successful sessions (logins, local delivery, POP-before-SMTP relay);
`fail2ban-regex` on each daemon's log must then match exactly the failures, with their
addresses, and no line of a successful session. A second run makes the daemons write the
journal form (JOURNAL_STREAM pointing at the log file), which is turned into what journald and
fail2ban's systemd backend hand the filter; synthetic lines cover IPv6 and an injected `ip=`.

usage: fail2ban_test.py  (RG_SMTPD, RG_POP3D, RG_CTL name the binaries; see harness.py)
"""
import collections
import os
import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER = os.path.join(ROOT, "packaging", "fail2ban", "filter.d", "relaygate.conf")
PW = "alice-Secret-1"
LEGACY_PW = "bob-Secret-2"
OVERRIDES = {"auth": {"failure_delay_max_ms": 300}}
TIMEOUT = 20


class SourcePOP3(poplib.POP3):
    """poplib.POP3 from a chosen loopback source address."""

    def __init__(self, port, source, timeout=TIMEOUT):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=timeout)

    def _create_socket(self, timeout):
        return harness.connect(self.port, self.host, self._source, timeout)


def failed_pass(c, user, password):
    """USER/PASS that must be refused (-ERR), then QUIT."""
    c.user(user)
    try:
        c.pass_(password)
        raise AssertionError("PASS for %s with a wrong password succeeded" % user)
    except poplib.error_proto:
        pass
    c.quit()

def smtp(port, source, tls=False, implicit=False):
    """An smtplib client from `source`, after EHLO (and STARTTLS + EHLO when tls)."""
    harness.check_loopback(source)
    if implicit:
        s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0),
                             context=harness.client_tls_context())
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0))
    s.ehlo("client.example.net")
    if tls:
        s.starttls(context=harness.client_tls_context())
        s.ehlo("client.example.net")
    return s


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=60, **kw)


def fail2ban_regex(log_path, *extra):
    """(matched lines, matched IPs) of fail2ban-regex on `log_path` with the relaygate filter."""
    p = run(["fail2ban-regex", *extra, "--print-all-matched", "--print-no-missed", log_path, FILTER])
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "fail2ban-regex rc=%d\n%s\n%s" % (p.returncode, out, p.stderr.decode(errors="replace"))
    m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", out, re.M)
    assert m, out
    matched_lines = []
    block = re.search(r"^\|- Matched line\(s\):\n(.*?)^`-", out, re.M | re.S)
    if block:
        matched_lines = [l[3:] for l in block.group(1).splitlines() if l.startswith("|  ")]
    assert len(matched_lines) == int(m.group(3)), (matched_lines, m.group(0))
    p = run(["fail2ban-regex", *extra, "--out", "ip", log_path, FILTER])
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    ips = [l.strip() for l in p.stdout.decode().splitlines() if l.strip()]
    assert len(ips) == len(matched_lines), (ips, matched_lines)
    return matched_lines, ips


class Checker:
    def __init__(self):
        self.failures = []

    def equal(self, what, got, want):
        if got != want:
            self.failures.append("%s: got %r, want %r" % (what, got, want))

    def true(self, what, cond):
        if not cond:
            self.failures.append(what)


def session_of(line):
    m = re.search(r"\b((?:smtp|pop3)-\d+-\d+) event=", line)
    return m.group(1) if m else None


def expect_smtp_error(code, fn):
    try:
        fn()
    except smtplib.SMTPResponseException as e:
        assert e.smtp_code == code, "expected %d, got %d %r" % (code, e.smtp_code, e.smtp_error)
        return
    except smtplib.SMTPRecipientsRefused as e:
        (got,) = {c for c, _ in e.recipients.values()}
        assert got == code, "expected %d, got %r" % (code, e.recipients)
        return
    raise AssertionError("expected SMTP %d" % code)


def produce(gw):
    """Makes the failures and the successful sessions; returns {daemon: Counter(ip -> failures)}."""
    relay = gw.port("smtpd", mode="relay")
    sub = gw.port("smtpd", mode="submission")
    subs = gw.port("smtpd", mode="submissions")
    pop = gw.port("pop3d", tls="starttls")
    pops = gw.port("pop3d", tls="implicit")
    want = {"smtpd": collections.Counter(), "pop3d": collections.Counter()}

    # --- SMTP AUTH failures
    # AUTH PLAIN, wrong password (smtplib, submission after STARTTLS)
    s = smtp(sub, "127.0.0.11", tls=True)
    s.user, s.password = "alice", "wrong-password"
    expect_smtp_error(535, lambda: s.auth("PLAIN", s.auth_plain))
    s.quit()
    want["smtpd"]["127.0.0.11"] += 1
    # AUTH LOGIN, wrong password, twice in one session (smtplib, submissions)
    s = smtp(subs, "127.0.0.12", implicit=True)
    s.user, s.password = "alice", "wrong-password"
    expect_smtp_error(535, lambda: s.auth("LOGIN", s.auth_login))
    expect_smtp_error(535, lambda: s.auth("LOGIN", s.auth_login))
    s.quit()
    want["smtpd"]["127.0.0.12"] += 2
    # AUTH PLAIN, unknown user (swaks, submissions)
    p = run(["swaks", "--server", "127.0.0.1", "--port", str(subs), "--tlsc", "--local-interface", "127.0.0.13",
             "--from", "nobody@example.test", "--to", "alice@example.test", "--auth", "PLAIN",
             "--auth-user", "nobody", "--auth-password", "whatever", "--timeout", "15"])
    assert b"535 " in p.stdout, p.stdout.decode(errors="replace")[-2000:]
    want["smtpd"]["127.0.0.13"] += 1
    # AUTH LOGIN, wrong password (curl, submission with STARTTLS)
    p = run(["curl", "-sS", "-k", "--max-time", "20", "--ssl-reqd", "--interface", "127.0.0.14",
             "smtp://127.0.0.1:%d" % sub, "--login-options", "AUTH=LOGIN", "--user", "alice:wrong-password",
             "--mail-from", "alice@example.test", "--mail-rcpt", "alice@example.test", "-T", "-"],
            input=b"Subject: x\r\n\r\nx\r\n")
    assert p.returncode != 0, "curl with a wrong password succeeded"
    want["smtpd"]["127.0.0.14"] += 1

    # --- POP3 failures
    # USER/PASS after STLS, wrong password (poplib)
    c = SourcePOP3(pop, "127.0.0.21")
    c.stls(harness.client_tls_context())
    failed_pass(c, "alice", "wrong-password")
    want["pop3d"]["127.0.0.21"] += 1
    # USER/PASS for an unknown user (poplib, POP3S)
    c = poplib.POP3_SSL("127.0.0.1", pops, timeout=TIMEOUT, context=harness.client_tls_context())
    failed_pass(c, "nobody", "whatever")
    want["pop3d"]["127.0.0.1"] += 1
    # APOP with a wrong digest (poplib, from 127.0.0.22; APOP sends no password)
    c = SourcePOP3(pop, "127.0.0.22")
    try:
        c.apop("bob", "wrong-password")
        raise AssertionError("APOP with a wrong secret succeeded")
    except poplib.error_proto:
        pass
    c.quit()
    want["pop3d"]["127.0.0.22"] += 1
    # AUTH PLAIN, wrong password (curl, STLS)
    p = run(["curl", "-sS", "-k", "--max-time", "20", "--ssl-reqd", "--interface", "127.0.0.23",
             "--login-options", "AUTH=PLAIN", "--user", "alice:wrong-password", "pop3://127.0.0.1:%d/" % pop])
    assert p.returncode != 0, "curl POP3 AUTH PLAIN with a wrong password succeeded"
    want["pop3d"]["127.0.0.23"] += 1

    # --- relay probes from 127.0.0.3: two RCPTs with smtplib, one with swaks
    s = smtp(relay, "127.0.0.3")
    s.mail("spammer@example.net")
    for rcpt in ("victim1@remote.test", "victim2@remote.test"):
        code, _ = s.rcpt(rcpt)
        assert code == 554, code
    s.quit()
    p = run(["swaks", "--server", "127.0.0.1", "--port", str(relay), "--local-interface", "127.0.0.3",
             "--from", "spammer@example.net", "--to", "victim3@remote.test", "--quit-after", "RCPT", "--timeout", "15"])
    assert b"554 " in p.stdout, p.stdout.decode(errors="replace")[-2000:]
    want["smtpd"]["127.0.0.3"] += 3

    # --- MAIL without AUTH on the submission port, after STARTTLS: 530
    s = smtp(sub, "127.0.0.4", tls=True)
    code, _ = s.mail("someone@example.net")
    assert code == 530, code
    s.quit()
    want["smtpd"]["127.0.0.4"] += 1

    # --- successful sessions: none of their lines may match
    # SMTP AUTH PLAIN ok (smtplib, submission) with a local and a remote recipient
    s = smtp(sub, "127.0.0.31", tls=True)
    s.login("alice", PW)
    s.sendmail("alice@example.test", ["alice@example.test", "far@remote.test"], b"Subject: ok\r\n\r\nok\r\n")
    s.quit()
    # AUTH LOGIN ok (swaks, submissions)
    p = run(["swaks", "--server", "127.0.0.1", "--port", str(subs), "--tlsc", "--local-interface", "127.0.0.32",
             "--from", "alice@example.test", "--to", "alice@example.test", "--auth", "LOGIN",
             "--auth-user", "alice", "--auth-password", PW, "--timeout", "15"])
    assert p.returncode == 0, p.stdout.decode(errors="replace")[-2000:]
    # an aborted AUTH ("*"): outcome=aborted, not a failure
    s = smtp(sub, "127.0.0.33", tls=True)
    code, _ = s.docmd("AUTH", "LOGIN")
    assert code == 334, code
    code, _ = s.docmd("*")
    assert code == 501, code
    s.quit()
    # local delivery without authentication on the relay port
    s = smtp(relay, "127.0.0.34")
    s.sendmail("friend@example.net", ["alice@example.test"], b"Subject: local\r\n\r\nlocal\r\n")
    s.quit()
    # POP3 USER/PASS ok from 127.0.0.2 (grants it), then POP-before-SMTP relay from there
    c = SourcePOP3(pop, "127.0.0.2")
    c.stls(harness.client_tls_context())
    c.user("alice")
    c.pass_(PW)
    c.quit()
    s = smtp(relay, "127.0.0.2")
    s.sendmail("alice@example.test", ["far@remote.test"], b"Subject: relayed\r\n\r\nrelayed\r\n")
    s.quit()
    # POP3 AUTH PLAIN ok (curl) and APOP ok (poplib)
    p = run(["curl", "-sS", "-k", "--max-time", "20", "--ssl-reqd", "--interface", "127.0.0.35",
             "--login-options", "AUTH=PLAIN", "--user", "alice:%s" % PW, "pop3://127.0.0.1:%d/" % pop])
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    c = SourcePOP3(pop, "127.0.0.36")
    c.apop("bob", LEGACY_PW)
    c.quit()
    return want


def check_real_logs(check):
    with harness.Gateway(OVERRIDES) as gw:
        gw.add_user("alice", PW)
        gw.add_user("bob", LEGACY_PW, legacy=True)
        gw.start("pop3d")
        gw.start("smtpd")
        want = produce(gw)
        # Every line is written before the reply, but make sure the successes are in the log.
        gw.wait_log("smtpd", r"event=rcpt outcome=accepted .*to=far@remote\.test", count=2)
        gw.wait_log("pop3d", r"event=auth outcome=ok ip=127\.0\.0\.36 ")
        for daemon in ("smtpd", "pop3d"):
            log_path = os.path.join(gw.dir, "%s.log" % daemon)
            lines, ips = fail2ban_regex(log_path)
            check.equal("%s: matched IPs" % daemon, collections.Counter(ips), want[daemon])
            check.equal("%s: matched lines" % daemon, len(lines), sum(want[daemon].values()))
            ok_sessions = {session_of(l) for l in gw.log(daemon).splitlines()
                           if re.search(r"event=(?:auth outcome=(?:ok|aborted)|rcpt outcome=accepted|queued) ", l)}
            ok_sessions.discard(None)
            check.true("%s: no successful session found in the log" % daemon, ok_sessions)
            for line in lines:
                check.true("%s: matched a line of a successful session: %s" % (daemon, line),
                           session_of(line) not in ok_sessions)
                check.true("%s: matched an unexpected line: %s" % (daemon, line),
                           re.search(r" event=(?:auth outcome=failed|rcpt outcome=rejected reason=relay-denied|"
                                     r"mail outcome=rejected reason=auth-required) ", line))
            # The filter's count agrees with the daemon's own failure lines.
            own = gw.log_lines(daemon, r" event=(?:auth outcome=failed|rcpt outcome=rejected reason=relay-denied|"
                                       r"mail outcome=rejected reason=auth-required) ")
            check.equal("%s: failure lines in the log" % daemon, len(own), sum(want[daemon].values()))
        # Both logs concatenated, as one file: the sum.
        both = os.path.join(gw.dir, "both.log")
        with open(both, "w") as f:
            f.write(gw.log("smtpd") + gw.log("pop3d"))
        lines, ips = fail2ban_regex(both)
        check.equal("both logs: matched IPs", collections.Counter(ips), want["smtpd"] + want["pop3d"])
        print("real logs: smtpd %d and pop3d %d failures matched" % (sum(want["smtpd"].values()), sum(want["pop3d"].values())))


def check_journal_form(check):
    """The daemons' journal output (priority prefix instead of a timestamp), as journald stores
    MESSAGE and as fail2ban's systemd backend formats it: "<host> <identifier>[pid]: MESSAGE"."""
    with harness.Gateway(OVERRIDES) as gw:
        gw.add_user("alice", PW)
        saved = os.environ.get("JOURNAL_STREAM")
        try:
            for daemon in ("pop3d", "smtpd"):
                log_path = os.path.join(gw.dir, "%s.log" % daemon)
                open(log_path, "ab").close()
                st = os.stat(log_path)
                os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
                gw.start(daemon)
        finally:
            if saved is None:
                os.environ.pop("JOURNAL_STREAM", None)
            else:
                os.environ["JOURNAL_STREAM"] = saved
        s = smtp(gw.port("smtpd", mode="submission"), "127.0.0.41", tls=True)
        s.user, s.password = "alice", "wrong-password"
        expect_smtp_error(535, lambda: s.auth("PLAIN", s.auth_plain))
        s.quit()
        s = smtp(gw.port("smtpd", mode="submission"), "127.0.0.42", tls=True)
        s.login("alice", PW)
        s.quit()
        c = SourcePOP3(gw.port("pop3d", tls="starttls"), "127.0.0.43")
        c.stls(harness.client_tls_context())
        c.user("alice")
        try:
            c.pass_("wrong-password")
        except poplib.error_proto:
            pass
        c.quit()
        gw.wait_log("smtpd", r"event=auth outcome=ok ip=127\.0\.0\.42 ")
        # Log lines carry "<N>" instead of a timestamp; other stderr output (the preflight's
        # "warning: ..." lines) goes to the journal as it is, and must not match either.
        raw, messages, backend = [], [], []
        for daemon in ("smtpd", "pop3d"):
            for line in gw.log(daemon).splitlines():
                raw.append(line)
                if re.match(r"^(?:<[0-7]>)?(?:debug|info|warning|error) (?:smtpd|pop3d)\[", line):
                    check.true("journal form: a log line without its <N> priority: %r" % line,
                               re.match(r"^<[0-7]>", line))
                message = re.sub(r"^<[0-7]>", "", line)  # what journald keeps as MESSAGE
                messages.append(message)
                backend.append("mail relaygate-%s[%d]: %s" % (daemon, gw.pid(daemon), message))
        check.true("journal form: no log line with a <N> priority", any(re.match(r"^<[0-7]>", l) for l in raw))
        tmp = tempfile.mkdtemp(prefix="rg-f2b-")
        try:
            for name, lines in (("MESSAGE", messages), ("systemd backend", backend)):
                path = os.path.join(tmp, "journal.log")
                with open(path, "w") as f:
                    f.write("\n".join(lines) + "\n")
                _, ips = fail2ban_regex(path)
                check.equal("journal form (%s): matched IPs" % name, sorted(ips), ["127.0.0.41", "127.0.0.43"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("journal form: %d lines, failures matched as MESSAGE and as the systemd backend's line" % len(raw))


SYNTHETIC = [
    # (line, IP the filter must take or None)
    ("info smtpd[12]: smtp-12-1 event=auth outcome=failed reason=bad-password ip=192.0.2.7 proto=smtp mech=PLAIN", "192.0.2.7"),
    ("warning pop3d[13]: pop3-13-1 event=auth outcome=failed reason=unknown-user ip=2001:db8::7 method=pop3", "2001:db8::7"),
    ("warning smtpd[12]: smtp-12-2 event=rcpt outcome=rejected reason=relay-denied ip=::1 to=x@remote.test", "::1"),
    ("warning smtpd[12]: smtp-12-3 event=mail outcome=rejected reason=auth-required ip=198.51.100.4 code=530", "198.51.100.4"),
    ("mail relaygate-smtpd[12]: info smtpd[12]: smtp-12-4 event=auth outcome=failed reason=bad-password ip=192.0.2.8", "192.0.2.8"),
    # injection: client-supplied values come after the real fields and are quoted
    ("warning smtpd[12]: smtp-12-5 event=auth outcome=failed reason=bad-password ip=192.0.2.9 user=\"x ip=192.0.2.99\"", "192.0.2.9"),
    ("warning smtpd[12]: smtp-12-6 event=auth outcome=failed reason=bad-password ip=192.0.2.10 user=x ip=192.0.2.98", "192.0.2.10"),
    ("info smtpd[12]: smtp-12-7 event=connect ip=192.0.2.11 helo=\"x event=auth outcome=failed reason=y ip=192.0.2.97\"", None),
    ("info smtpd[12]: smtp-12-8 event=helo outcome=ok ip=192.0.2.12 name=event=auth", None),
    # not failures
    ("info smtpd[12]: smtp-12-9 event=auth outcome=ok ip=192.0.2.13 proto=smtp mech=PLAIN user=alice", None),
    ("info pop3d[13]: pop3-13-2 event=auth outcome=aborted reason=client-cancelled ip=192.0.2.14", None),
    ("warning smtpd[12]: smtp-12-10 event=rcpt outcome=rejected reason=no-smarthost ip=192.0.2.15", None),
    ("info smtpd[12]: smtp-12-11 event=rcpt outcome=rejected reason=unknown-user ip=192.0.2.16 to=x@example.test", None),
    ("info pop3d[13]: pop3-13-3 event=auth outcome=in-use reason=maildrop-locked ip=192.0.2.17", None),
]


def check_synthetic(check):
    tmp = tempfile.mkdtemp(prefix="rg-f2b-")
    try:
        for stamp in ("", "2026-12-03T07:20:01.123Z "):
            path = os.path.join(tmp, "synthetic.log")
            with open(path, "w") as f:
                f.write("".join(stamp + line + "\n" for line, _ in SYNTHETIC))
            lines, ips = fail2ban_regex(path)
            want = [ip for _, ip in SYNTHETIC if ip]
            check.equal("synthetic lines%s: matched IPs" % (" with timestamps" if stamp else ""), ips, want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("synthetic: %d lines (journal and file form, IPv6, injection)" % len(SYNTHETIC))


def main():
    for tool in ("fail2ban-regex", "swaks", "curl"):
        if not shutil.which(tool):
            print("%s not installed (scripts/bootstrap installs it)" % tool)
            return 1
    check = Checker()
    check_synthetic(check)
    check_real_logs(check)
    check_journal_form(check)
    if check.failures:
        print("FAIL:\n  " + "\n  ".join(check.failures))
        return 1
    print("fail2ban filter: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
