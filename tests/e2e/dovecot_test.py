#!/usr/bin/env python3
"""IMAP- and POP-before-SMTP with an existing Dovecot 2.3 (issue 13, Deliver 3 and 4): a
throwaway Dovecot (tests/e2e/mta.py) whose post-login services run relaygate-dovecot-postlogin
against relaygate-policyd's grant socket, exactly as README "Use with an existing Dovecot" says.

An IMAP login (imaplib) from 127.0.0.4 grants 127.0.0.4 with method dovecot-imap (relaygatectl
grant list and the status file show it); then relaygate-smtpd relays from there, and so does a
Postfix instance asking relaygate-policyd (check_policy_service). A POP3 login (poplib) from
127.0.0.5 grants with method dovecot-pop3. A user Dovecot knows and relaygate does not still
logs in to Dovecot, and no grant is made. One Dovecot, one Postfix, one relaygate for the file.

RG_SMTPD, RG_POP3D, RG_CTL, RG_POLICYD, RG_POSTLOGIN name the binaries. Runs as root.
"""
import grp
import imaplib
import os
import poplib
import smtplib
import socket
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mta  # noqa: E402
from harness import Gateway  # noqa: E402
from postfix_test import MtaClass, rcpt  # noqa: E402
from queue_test import FakeSmarthost  # noqa: E402

T = 15
IMAP_CLIENT, POP3_CLIENT, STRANGER_CLIENT = "127.0.0.4", "127.0.0.5", "127.0.0.9"
DOVECOT_USERS = {"alice": "dv-alice-pw", "dave": "dv-dave-pw"}  # dave is no relaygate user
RG_PW = "rg-alice-pw"  # relaygate's own password for alice: the Dovecot login never uses it
POSTLOGIN_USER = "dovecot"  # the post-login services' `user =` and the grant socket's allowed_users


class IMAPFrom(imaplib.IMAP4):
    def __init__(self, port, source):
        self._source = harness.check_loopback(source)
        super().__init__("127.0.0.1", port, timeout=T)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def imap_login(port, source, user, password):
    """LOGIN then SELECT INBOX (served by the imap process, i.e. after the post-login program)."""
    m = IMAPFrom(port, source)
    try:
        typ, _ = m.login(user, password)
        assert typ == "OK", typ
        typ, data = m.select("INBOX")
        return typ, data
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def pop3_login(port, source, user, password):
    p = harness.POP3From("127.0.0.1", port, source, timeout=T)
    try:
        p.user(user)
        p.pass_(password)
        return p.stat()  # answered by the pop3 process, after the post-login program
    finally:
        p.quit()


def grant_of(gw, ip):
    return [g for g in gw.grants() if g["ip"] == ip]


@unittest.skipUnless(os.environ.get("RG_POLICYD") and os.environ.get("RG_POSTLOGIN"),
                     "RG_POLICYD or RG_POSTLOGIN is not set (no relaygate-policyd in this build)")
@harness.needs_tool("dovecot")
@harness.needs_tool("postfix")
class DovecotLogins(MtaClass):
    @classmethod
    def start(cls):
        cls.sink = FakeSmarthost().start()
        cls.cleanups.append(cls.sink.stop)
        # The grant socket lives in a folder the post-login user can reach (the gateway's own
        # folder stays private).
        cls.rundir = tempfile.mkdtemp(prefix="rg-grant-")
        cls.cleanups.append(lambda: shutil.rmtree(cls.rundir, ignore_errors=True))
        os.chmod(cls.rundir, 0o755)
        cls.grant_socket = os.path.join(cls.rundir, "grant.sock")
        cls.gw = Gateway({
            "smarthost": {"host": "127.0.0.1", "port": cls.sink.port, "tls": "none"},
            "queue": {"first_retry_seconds": 1, "max_retry_seconds": 2, "delay_warning_seconds": 0},
            "smtpd": {"listen": [{"address": "127.0.0.1", "port": "auto", "mode": "relay", "tls": "none"}]},
            "policyd": {"listen": [{"address": "127.0.0.1", "port": "auto"}],
                        "grant_socket": {"path": cls.grant_socket, "allowed_users": [POSTLOGIN_USER],
                                         "mode": "0660"}},
        })
        cls.cleanups.append(cls.gw.close)
        cls.gw.add_user("alice", RG_PW)
        cls.gw.start("smtpd")
        cls.gw.start("policyd")
        folder = tempfile.mkdtemp(prefix="rg-mta-")
        cls.cleanups.append(lambda: shutil.rmtree(folder, ignore_errors=True))
        cls.dovecot = mta.Dovecot(folder, DOVECOT_USERS, postlogin=(os.environ["RG_POSTLOGIN"], cls.grant_socket),
                                  postlogin_user=POSTLOGIN_USER,
                                  # policyd runs as root here: its socket is root's group's, as it
                                  # is relaygate's under the unit (README "Use with an existing Dovecot")
                                  postlogin_group=grp.getgrgid(os.stat(cls.grant_socket).st_gid).gr_name)
        cls.cleanups.append(cls.dovecot.stop)
        cls.dovecot.start()
        cls.pf = mta.Postfix(folder, cls.sink.port, main={
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, check_policy_service "
                                        "{ inet:127.0.0.1:%d, default_action=DUNNO }, reject_unauth_destination"
                                        % cls.gw.port("policyd")})
        cls.cleanups.append(cls.pf.stop)
        cls.pf.start()

    def test_imap_login_grants_and_both_mtas_relay(self):
        typ, _ = imap_login(self.dovecot.ports["imap"], IMAP_CLIENT, "alice", DOVECOT_USERS["alice"])
        self.assertEqual(typ, "OK")
        grants = grant_of(self.gw, IMAP_CLIENT)
        self.assertEqual([(g["user"], g["method"]) for g in grants], [("alice", "dovecot-imap")], self.gw.grants())
        self.gw.wait_for(lambda: [g for g in (self.gw.status() or {}).get("grants", [])
                                  if g["ip"] == IMAP_CLIENT and g["method"] == "dovecot-imap"],
                         what="the grant in the status file")
        # relaygate-smtpd relays from the granted address...
        code, msg = rcpt(self.gw.port("smtpd", mode="relay"), IMAP_CLIENT, "far@remote.test")
        self.assertEqual(code, 250, msg)
        # ...and so does Postfix through relaygate-policyd; a neighbour is still refused.
        code, msg = rcpt(self.pf.port, IMAP_CLIENT, "far@remote.test")
        self.assertEqual(code, 250, msg)
        code, msg = rcpt(self.pf.port, "127.0.0.3", "far@remote.test")
        self.assertEqual((code, msg), (554, b"5.7.1 <far@remote.test>: Relay access denied"))

    def test_pop3_login_grants_with_method_dovecot_pop3(self):
        pop3_login(self.dovecot.ports["pop3"], POP3_CLIENT, "alice", DOVECOT_USERS["alice"])
        grants = grant_of(self.gw, POP3_CLIENT)
        self.assertEqual([(g["user"], g["method"]) for g in grants], [("alice", "dovecot-pop3")], self.gw.grants())
        code, msg = rcpt(self.gw.port("smtpd", mode="relay"), POP3_CLIENT, "far@remote.test")
        self.assertEqual(code, 250, msg)

    def test_user_relaygate_does_not_know_logs_in_without_a_grant(self):
        typ, _ = imap_login(self.dovecot.ports["imap"], STRANGER_CLIENT, "dave", DOVECOT_USERS["dave"])
        self.assertEqual(typ, "OK")  # the Dovecot login is not refused
        self.dovecot.wait_log(r"imap-login: Info: Login: user=<dave>, .*rip=%s" % STRANGER_CLIENT.replace(".", r"\."))
        # The post-login program asked and policyd refused: that answer came before SELECT ran.
        self.gw.wait_log("policyd", STRANGER_CLIENT.replace(".", r"\."))
        self.assertEqual(grant_of(self.gw, STRANGER_CLIENT), [])
        code, msg = rcpt(self.gw.port("smtpd", mode="relay"), STRANGER_CLIENT, "far@remote.test")
        self.assertEqual(code, 554, msg)


if __name__ == "__main__":
    harness.main()
