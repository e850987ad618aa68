"""relaygate-policyd over real sockets: grants made by relaygatectl answer OK, others DUNNO."""
import os
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def ask(sock, **attrs):
    sock.sendall(("".join("%s=%s\n" % kv for kv in attrs.items()) + "\n").encode())
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


class PolicydTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = harness.Gateway({"policyd": {"grant_socket": {"path": "var/grant.sock",
                                                              "allowed_users": [str(os.getuid())]}}})
        cls.gw.add_user("alice", "secret-pw")
        cls.gw.ctl("grant", "add", "127.0.0.2", "--user", "alice")
        cls.gw.start("policyd")

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()

    def test_reused_connection(self):
        with socket.create_connection(("127.0.0.1", self.gw.port("policyd")), timeout=10) as s:
            base = dict(request="smtpd_access_policy", protocol_state="RCPT", instance="1.2", future="x")
            self.assertEqual(ask(s, client_address="127.0.0.2", **base), "action=OK\n\n")
            self.assertEqual(ask(s, client_address="127.0.0.3", **base), "action=DUNNO\n\n")
            self.assertEqual(ask(s, client_address="127.0.0.2", sasl_username="bob", **base), "action=DUNNO\n\n")
            self.assertEqual(ask(s, client_address="::ffff:127.0.0.2", **base), "action=OK\n\n")
            self.assertEqual(ask(s, client_address="2001:db8::1", **base), "action=DUNNO\n\n")
        self.gw.wait_log("policyd", r"event=policy action=OK reason=grant client=127\.0\.0\.2")

    def test_malformed_is_dunno_and_closed(self):
        with socket.create_connection(("127.0.0.1", self.gw.port("policyd")), timeout=10) as s:
            s.sendall(b"request=smtpd_access_policy\ngarbage\n\n")
            self.assertEqual(s.recv(100), b"action=DUNNO\n\n")
            self.assertEqual(s.recv(100), b"")


    def test_postlogin_grants_and_execs(self):
        marker = os.path.join(self.gw.dir, "marker")
        env = {"IP": "127.0.0.9", "USER": "alice@" + harness.LOCAL_DOMAIN}
        p = subprocess.run([os.environ["RG_POSTLOGIN"], "--method=dovecot-pop3",
                            "--socket=" + os.path.join(self.gw.dir, "var/grant.sock"),
                            "/usr/bin/touch", marker], env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertTrue(os.path.exists(marker))
        self.assertIn("127.0.0.9", self.gw.ctl("grant", "list").stdout)
        p = subprocess.run([os.environ["RG_POSTLOGIN"], "--socket=/nonexistent.sock", "/bin/true"],
                           env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("not recorded", p.stderr)


if __name__ == "__main__":
    harness.main()
