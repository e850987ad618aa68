#!/usr/bin/env python3
"""Issue 6 item 4: a daemon started by hand as root binds its ports, then becomes
run_as.user with no supplementary groups, and refuses to keep running as uid 0 unless told
to. Needs root (CI runs as root); skipped (exit 77) otherwise."""
import os
import pwd
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway  # noqa: E402


def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = value.split()
    return ids


class PrivilegeDrop(unittest.TestCase):
    def run_daemon(self, gw, binary, *extra):
        log = open(os.path.join(gw.dir, "drop.log"), "ab")
        p = subprocess.Popen([binary, "--config", gw.config_path] + list(extra), stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
        log.close()
        return p

    def test_drops_to_run_as_user_after_binding(self):
        nobody = pwd.getpwnam("nobody")
        with Gateway({"run_as": {"user": "nobody", "allow_root": False}}) as gw:
            gw.add_user("alice", "pw-alice-1")
            for root, dirs, files in os.walk(gw.dir):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
            os.chown(gw.dir, nobody.pw_uid, nobody.pw_gid)
            p = self.run_daemon(gw, gw.binary("smtpd"))
            try:
                port = gw.port("smtpd", mode="relay")
                deadline = time.monotonic() + 10
                while True:
                    try:
                        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
                        break
                    except OSError:
                        if time.monotonic() > deadline or p.poll() is not None:
                            self.fail("smtpd did not come up:\n" + open(os.path.join(gw.dir, "drop.log")).read())
                        time.sleep(0.05)
                ids = proc_ids(p.pid)
                self.assertEqual(ids["Uid"], [str(nobody.pw_uid)] * 4)
                self.assertEqual(ids["Gid"], [str(nobody.pw_gid)] * 4)
                self.assertEqual(ids["Groups"], [])
                # Still fully working as nobody: local delivery writes the Maildir.
                self.assertEqual(s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: t\r\n\r\nhi\r\n"), {})
                s.quit()
                self.assertEqual(len(gw.messages("alice", "new")), 1)
                self.assertIn("running_as=\"nobody (uid", open(os.path.join(gw.dir, "drop.log")).read())
            finally:
                p.terminate()
                p.wait(timeout=10)

    def test_refuses_to_stay_root(self):
        for run_as, expect in (({"user": "root", "allow_root": False}, "is root; refusing"),
                               ({"user": "no-such-user-rg", "allow_root": False}, "does not exist"),
                               ({"user": "", "allow_root": False}, "running as root")):
            with self.subTest(run_as=run_as):
                with Gateway({"run_as": run_as}) as gw:
                    for daemon in ("smtpd", "pop3d"):
                        p = self.run_daemon(gw, gw.binary(daemon))
                        self.assertEqual(p.wait(timeout=20), 1)
                        self.assertIn(expect, open(os.path.join(gw.dir, "drop.log")).read())


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("not root: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
