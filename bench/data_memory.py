#!/usr/bin/env python3
"""Memory of smtpd during DATA (issue 11, item 2): does a message stream to disk?

Starts relaygate-smtpd on free loopback ports in a temporary installation (tests/e2e/harness.py),
sends N (default 8) concurrent messages of SIZE MiB (default 24) to one local user over the
relay listener, and samples smtpd's VmRSS from /proc/<pid>/status every 20 ms while they are
in flight, plus VmHWM (the peak the kernel kept) at the end. Prints the baseline (after start-up
and one warm-up message), the peak during the run and the rise; exits 1 when the rise is
>= --limit MiB (default 8: the bound of issue 11), 2 when a message was not accepted.
Before streaming (whole message in memory) 8 x 24 MiB raised RSS by ~200 MB.

Binaries: --smtpd/--ctl, else $RG_SMTPD/$RG_CTL, else build/smtpd/relaygate-smtpd and
build/ctl/relaygatectl (or build/authdb/relaygatectl) of this checkout. Needs nothing else.

Usage: bench/data_memory.py [--smtpd PATH] [--ctl PATH] [-n 8] [--size-mib 24] [--limit 8]
"""
import argparse
import os
import smtplib
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

MIB = 1024 * 1024
SAMPLE_INTERVAL = 0.02  # seconds between VmRSS samples
LINE = b"x" * 76 + b"\r\n"  # 78-octet lines, like base64 attachments


def find_binary(explicit, env, candidates):
    for path in [explicit, os.environ.get(env)] + [os.path.join(REPO, c) for c in candidates]:
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("no %s: pass it or set %s (looked in %s)" % (env, env, ", ".join(candidates)))


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (key, pid))


def message(size):
    head = b"From: bench@remote.test\r\nTo: alice@example.test\r\nSubject: data memory\r\n\r\n"
    return head + LINE * ((size - len(head)) // len(LINE))


def send(port, body, results, i):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
            s.ehlo("bench.test")
            s.sendmail("bench@remote.test", ["alice@example.test"], body)
        results[i] = True
    except Exception as e:  # reported below
        results[i] = e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtpd")
    ap.add_argument("--ctl")
    ap.add_argument("-n", type=int, default=8, help="concurrent messages")
    ap.add_argument("--size-mib", type=float, default=24)
    ap.add_argument("--limit", type=float, default=8, help="fail when the RSS rise is >= this many MiB")
    args = ap.parse_args()
    smtpd = find_binary(args.smtpd, "RG_SMTPD", ["build/smtpd/relaygate-smtpd"])
    ctl = find_binary(args.ctl, "RG_CTL", ["build/ctl/relaygatectl", "build/authdb/relaygatectl"])
    size = int(args.size_mib * MIB)
    overrides = {
        "smtpd": {
            "listen": [{"address": "127.0.0.1", "port": harness.AUTO, "mode": "relay", "tls": "none"}],
            "max_message_size": 25 * MIB if size < 25 * MIB - 4096 else size + 4096,
            "greeting_pause_ms": 0,
        },
        "pop3d": {"listen": [{"address": "127.0.0.1", "port": harness.AUTO, "tls": "none"}]},
    }
    with harness.Gateway(overrides, binaries={"smtpd": smtpd, "ctl": ctl}) as gw:
        gw.add_user("alice", "bench-pw")
        gw.start("smtpd")
        pid, port = gw.pid("smtpd"), gw.port("smtpd", mode="relay")
        body = message(size)
        warm = [None]
        send(port, message(256 * 1024), warm, 0)  # first-use allocations (TLS-free path, pools)
        if warm[0] is not True:
            sys.exit("warm-up message failed: %r" % warm[0])
        time.sleep(0.2)
        before = status_kib(pid, "VmRSS")
        hwm_before = status_kib(pid, "VmHWM")
        results = [None] * args.n
        threads = [threading.Thread(target=send, args=(port, body, results, i)) for i in range(args.n)]
        start = time.monotonic()
        for t in threads:
            t.start()
        peak = before
        while any(t.is_alive() for t in threads):
            peak = max(peak, status_kib(pid, "VmRSS"))
            time.sleep(SAMPLE_INTERVAL)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        hwm = status_kib(pid, "VmHWM")
        delivered = len(gw.messages("alice", "new"))
    rise = (peak - before) / 1024.0
    hwm_rise = (hwm - hwm_before) / 1024.0
    failed = [r for r in results if r is not True]
    print("messages       %d x %.1f MiB to a local Maildir, %.1f s, %d accepted, %d in new/ (incl. warm-up)"
          % (args.n, size / MIB, elapsed, args.n - len(failed), delivered))
    print("VmRSS before   %.1f MiB" % (before / 1024.0))
    print("VmRSS peak     %.1f MiB (sampled every %d ms)" % (peak / 1024.0, SAMPLE_INTERVAL * 1000))
    print("VmHWM          %.1f MiB (was %.1f before the run)" % (hwm / 1024.0, hwm_before / 1024.0))
    print("rise           %.1f MiB sampled, %.1f MiB by VmHWM (limit %.1f MiB)" % (rise, hwm_rise, args.limit))
    if failed:
        print("FAIL: %d message(s) not accepted: %r" % (len(failed), failed[:3]))
        return 2
    worst = max(rise, hwm_rise)
    if worst >= args.limit:
        print("FAIL: smtpd's RSS rose by %.1f MiB >= %.1f MiB" % (worst, args.limit))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
