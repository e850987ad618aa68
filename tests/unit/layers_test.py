#!/usr/bin/env python3
"""scripts/check-layers on fake trees: a downward include passes, each kind of upward or
sideways include fails and is named, a file in no layer fails. Then the real tree must pass."""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check-layers")


def run(tree):
    with tempfile.TemporaryDirectory() as d:
        for path, text in tree.items():
            os.makedirs(os.path.join(d, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as f:
                f.write(text)
        p = subprocess.run([sys.executable, CHECK, "--root", d], capture_output=True, text=True)
        return p.returncode, p.stderr


BASE = {
    "shared/log.h": "#pragma once\n",
    "shared/net/stream.h": '#include "shared/log.h"\n',
    "authdb/authdb.h": '#include "shared/log.h"\n',
    "auth/authenticator.h": '#include "authdb/authdb.h"\n#include "shared/net/stream.h"\n',
    "smtpd/session.cpp": '#include "auth/authenticator.h"\n#include "smtpd/outbound/runner.h"\n',
    "smtpd/outbound/runner.h": '#include "authdb/authdb.h"\n',
    "pop3d/session.cpp": '#include "auth/authenticator.h"\n#include <string>\n#include "session.h"\n',
    "tests/unit/x_test.cpp": '#include "smtpd/session.h"\n#include "pop3d/session.h"\n',
}


class Layers(unittest.TestCase):
    def test_downward_tree_passes(self):
        self.assertEqual(run(BASE), (0, ""))

    def test_violations_fail_and_are_named(self):
        cases = {
            "shared/fsutil.cpp": ('#include "authdb/authdb.h"\n', "shared/fsutil.cpp:1: includes authdb/authdb.h"),
            "shared/config.cpp": ('\n#include "shared/net/stream.h"\n', "shared/config.cpp:2: includes shared/net/stream.h"),
            "authdb/users.cpp": ('#include "auth/authenticator.h"\n', "authdb/users.cpp:1"),
            "pop3d/server.cpp": ('#include "smtpd/outbound/runner.h"\n', "pop3d/server.cpp:1"),
            "smtpd/outbound/dsn.cpp": ('#include "smtpd/session.h"\n', "smtpd/outbound/dsn.cpp:1"),
            "ctl/main.cpp": ('#include "pop3d/session.h"\n', "ctl/main.cpp:1"),
            "shared/sasl/plain.cpp": ('#include "shared/log.h"\n', "shared/sasl/plain.cpp:1"),
            "newdir/x.cpp": ("int x;\n", "newdir/x.cpp: in no layer"),
        }
        for path, (text, expected) in cases.items():
            rc, err = run({**BASE, path: text})
            self.assertEqual(rc, 1, path)
            self.assertIn(expected, err, path)

    def test_real_tree_passes(self):
        p = subprocess.run([sys.executable, CHECK, "--root", ROOT], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
