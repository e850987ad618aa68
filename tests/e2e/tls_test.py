#!/usr/bin/env python3
"""TLS defaults (issue 6 item 5): testssl.sh (Debian package) against smtpd's implicit-TLS
listener and pop3d's POP3S listener finds no protocol, cipher or vulnerability rated LOW or
worse. Both scans run in parallel; the whole test is bounded by CTest's timeout."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Gateway  # noqa: E402

BAD = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


def main():
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if not testssl:
        print("testssl.sh is not installed (scripts/bootstrap installs it): skipped")
        return 1 if harness.in_ci() else harness.SKIP_RETURN_CODE
    failures = []
    with Gateway() as gw:
        gw.add_user("alice", "pw-alice-1")
        gw.start("pop3d")
        gw.start("smtpd")
        targets = {"smtps": gw.port("smtpd", mode="submissions"), "pop3s": gw.port("pop3d", tls="implicit")}
        work = tempfile.mkdtemp(prefix="rg-testssl-")
        procs = {}
        for name, port in targets.items():
            out = os.path.join(work, name + ".json")
            argv = [testssl, "--quiet", "--color", "0", "--warnings", "off", "--openssl", "/usr/bin/openssl",
                    "-p", "-s", "-f", "-U", "--jsonfile", out, "127.0.0.1:%d" % port]
            procs[name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT), out)
        for name, (proc, out) in procs.items():
            try:
                proc.wait(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                failures.append("%s: testssl did not finish in 240 s" % name)
                continue
            with open(out) as f:
                findings = json.load(f)
            protocols = [x for x in findings if x["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")]
            if len(protocols) < 6:
                failures.append("%s: testssl checked only %d protocols" % (name, len(protocols)))
            for x in findings:
                if x["severity"] in BAD:
                    failures.append("%s: %s %s: %s" % (name, x["id"], x["severity"], x["finding"]))
            offered = [x["id"] for x in protocols if x["finding"].startswith("offered")]
            print("%s: %d findings, protocols offered: %s" % (name, len(findings), ", ".join(offered)))
        shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
