#!/usr/bin/env python3
"""Relay benchmark of issue 5 (Performance): 10 KB messages/s from an authenticated client
through relaygate to an smtp-sink smarthost on loopback, against the Postfix 3.7 reference
relaying to the same kind of sink, in the same run.

The load is $RG_BENCH_DIR/bench.py `--tests relay`: C (default 20) concurrent clients on
the submission port, each session EHLO + AUTH PLAIN + MAIL/RCPT/DATA of a 10 KB message to
sink@remote.test + QUIT (`--msgs-per-session` sends more per session). Two figures per server:
  accepted   messages/s until the last 250 (relaygate: fsync'd into the spool before the 250,
             like Postfix's queue file),
  relayed    messages/s until the queue is empty again, i.e. every message was handed to the
             sink and its queue files removed (relaygate: removal fsync'd; Postfix: the same
             end point, measured by bench.py's --queue-dir polling).
Target (issue 5): relaygate's relayed msg/s >= Postfix's, with the queue fsync'd.

Equal conditions: no TLS anywhere (the reference has none); both verify the same SHA512-CRYPT
(`$6$`, 5000 rounds) hash of "pw" for user0..user99 (ref-start.sh PW_SCHEME=SHA512-CRYPT;
relaygate imports that string with `relaygatectl user passwd NAME --hash-stdin`); each relays
to its own smtp-sink started with ref-start.sh's arguments (`-4 -u nobody -m 2000 ... 1024`).
relaygate's queue is watched through a folder whose `active` entry links to spool_dir/queue
(bench.py counts Postfix's queue subfolders). Runs are interleaved and medians reported: the
absolute figures drift 15-30 % on shared 2-core machines; quote the ratio.

Run it only on an otherwise idle machine: it refuses when the 1-minute load average is above
--max-load (default 0.5) unless --force.

Needs root, `postfix dovecot-core dovecot-pop3d` installed (never started as system services),
and a build of relaygate-smtpd and relaygatectl:
  cmake -S . -B /tmp/build-bench -DCMAKE_BUILD_TYPE=Release -DRG_BUILD_TESTS=OFF
  cmake --build /tmp/build-bench -j2 --target relaygate-smtpd relaygatectl
  sudo bench/relay_bench.py            # ~2 min; --no-ref for relaygate only

Usage: bench/relay_bench.py [--smtpd PATH] [--ctl PATH] [-c 20] [--msgs 1500] [--rounds 3]
                            [--msgs-per-session 1] [--no-ref] [--force]
Prints a summary table; raw JSON lines go to --out (default /tmp/relaygate-relay-bench.jsonl).
Reuses bench/smtp_bench.py's helpers for the reference (same BENCH_REF_DIR and port handling).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import smtp_bench as sb  # noqa: E402  (reference start/stop, bench.py runner, table helpers)

harness = sb.harness
SINK_ARGS = ["-4", "-u", "nobody", "-m", "2000", "-h", "sink.bench"]  # as ref-start.sh
RELAY_RCPT = "sink@remote.test"


def log(*a):
    print("[relay-bench]", *a, file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def start_sink(port):
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    p = subprocess.Popen([sink] + SINK_ARGS + ["127.0.0.1:%d" % port, "1024"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not sb.listening(port):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("smtp-sink did not start on port %d" % port)
        time.sleep(0.05)
    return p


def relaygate_start(args, crypt_hash, sink_port):
    limit = 4096
    gw = harness.Gateway({
        "run_as": {"allow_root": True},
        "auth": {"allow_plaintext_without_tls": True},
        "smtpd": {"listen": [{"address": "127.0.0.1", "port": "auto", "mode": "relay", "tls": "none"},
                             {"address": "127.0.0.1", "port": "auto", "mode": "submission", "tls": "none"}],
                  "greeting_pause_ms": 0, "max_connections": limit, "max_connections_per_ip": limit},
        "smarthost": {"host": "127.0.0.1", "port": sink_port, "tls": "none"},
        "queue": {"max_connections": args.queue_connections},
    }, binaries={"smtpd": args.smtpd, "ctl": args.ctl})
    log("relaygate: creating %d users with the reference's $6$ hash in %s" % (sb.NUSERS, gw.dir))
    for i in range(sb.NUSERS):
        name = "user%d" % i
        gw.add_user(name, "initial-" + sb.PASSWORD)
        gw.set_hash(name, crypt_hash)
    gw.start("smtpd", extra_args=["--allow-root"])
    # bench.py --queue-dir counts files under Postfix's queue subfolders: show it ours as "active".
    view = os.path.join(gw.dir, "queue-view")
    os.makedirs(view, exist_ok=True)
    os.symlink(os.path.join(gw.path("spool_dir"), "queue"), os.path.join(view, "active"))
    log("relaygate-smtpd pid %d: submission 127.0.0.1:%d -> smtp-sink 127.0.0.1:%d"
        % (gw.pid("smtpd"), gw.port("smtpd", mode="submission"), sink_port))
    return gw, view


def run_relay(target, queue_dir, args):
    extra = ["--msgs", str(args.msgs), "--msg-size", "10240", "--msg-warmup", str(args.msg_warmup),
             "--msgs-per-session", str(args.msgs_per_session), "--relay-rcpt", RELAY_RCPT,
             "--queue-dir", queue_dir, "--drain-timeout", "60", "--msg-max-s", "60"]
    recs = sb.bench(target, "relay", args, extra)
    acc = sb.pick(recs, "smtp_relay_auth_accept_per_s")
    e2e = sb.pick(recs, "smtp_relay_auth_e2e_per_s")
    sb.note_errors(target, "relay", acc)
    if e2e.get("value") is None:
        log("  %s relay: %s (still queued: %s of %s)" % (target.label, e2e.get("error"),
                                                         e2e.get("delivered_or_queued"), acc.get("accepted")))
    if e2e.get("deferred_left"):
        log("  %s relay: %s deferred left" % (target.label, e2e.get("deferred_left")))
    return {"relayed": (e2e.get("value"), sb.srv_us(e2e)), "accepted": (acc["value"], sb.srv_us(acc))}


ROWS = [("relayed", "10 KB msgs/s relayed to smtp-sink, queue empty (c=%d)", 1.0),
        ("accepted", "10 KB msgs/s accepted, last 250 (c=%d)", None)]


def report(results, labels, args):
    rg, ref = labels[0], (labels[1] if len(labels) > 1 else None)
    w = 54
    print("\nRelay benchmark (issue 5): %d rounds interleaved, medians [min-max]; CPU = server CPU us/msg"
          % args.rounds)
    head = "%-*s %26s" % (w, "metric", rg) + (" %26s %8s  %s" % (ref, "ratio", "target") if ref else "")
    print(head)
    print("-" * len(head))
    for key, title, target in ROWS:
        cells, meds = [], {}
        for label in labels:
            vals = results[label].get(key, [])
            m, lo, hi, _ = sb.med([v for v, _ in vals])
            cpu = sb.med([c for _, c in vals])[0]
            meds[label] = m
            cells.append("%s [%s-%s]%s" % (sb.fmt(m), sb.fmt(lo), sb.fmt(hi), " %sus" % sb.fmt(cpu) if cpu else ""))
        line = "%-*s %26s" % (w, title % args.concurrency, cells[0])
        if ref:
            a, b = meds.get(rg), meds.get(ref)
            ratio = a / b if a and b else None
            verdict = (">= %.0fx: %s" % (target, "MET" if ratio is not None and ratio >= target else "NOT MET")
                       if target else "")
            line += " %26s %7sx  %s" % (cells[1], sb.fmt(ratio) if ratio else "-", verdict)
        print(line)
    print("Ratio: relaygate/%s. Raw JSON lines: %s" % (ref or "-", args.out))


def main():
    default_build = os.environ.get("RG_BUILD_DIR", "/tmp/build-bench")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtpd", default=os.environ.get("RG_SMTPD", os.path.join(default_build, "smtpd/relaygate-smtpd")))
    ap.add_argument("--ctl", default=os.environ.get("RG_CTL", os.path.join(default_build, "ctl/relaygatectl")))
    ap.add_argument("-c", "--concurrency", type=int, default=20, help="concurrent clients")
    ap.add_argument("--duration", type=float, default=5.0, help="(bench.py closed-loop length; unused by relay)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per server")
    ap.add_argument("--msgs", type=int, default=1500, help="measured 10 KB messages per run")
    ap.add_argument("--msg-warmup", type=int, default=100, help="unmeasured messages before each run")
    ap.add_argument("--msgs-per-session", type=int, default=1, help="messages per client session (one AUTH each)")
    ap.add_argument("--queue-connections", type=int, default=4, help="relaygate queue.max_connections")
    ap.add_argument("--ref-wait", type=float, default=600.0, help="max seconds to wait for the reference ports")
    ap.add_argument("--max-load", type=float, default=0.5, help="refuse above this 1-minute load average")
    ap.add_argument("--force", action="store_true", help="run even if the machine is busy (figures then mean little)")
    ap.add_argument("--no-ref", action="store_true", help="measure relaygate only")
    ap.add_argument("--out", default="/tmp/relaygate-relay-bench.jsonl")
    args = ap.parse_args()
    for b in (args.smtpd, args.ctl):
        if not os.access(b, os.X_OK):
            sys.exit("not executable: %s (build relaygate-smtpd and relaygatectl, or pass --smtpd/--ctl)" % b)
    if not (shutil.which("smtp-sink") or os.path.exists("/usr/sbin/smtp-sink")):
        sys.exit("smtp-sink not found: install postfix (see --help)")
    if not args.no_ref and (os.geteuid() != 0 or not shutil.which("dovecot") or not os.path.exists("/usr/sbin/postfix")):
        sys.exit("the reference needs root and postfix + dovecot-core + dovecot-pop3d installed (see --help), or --no-ref")
    load = load_average()
    if load > args.max_load and not args.force:
        sys.exit("the machine is busy (1-minute load average %.2f > %.2f): figures would mean little; "
                 "retry when idle or pass --force" % (load, args.max_load))
    sb.raise_nofile(8192)
    open(args.out, "w").close()

    gw = sink = None
    started_ref = False
    try:
        if not args.no_ref:
            sb.wait_ref_ports_free(args.ref_wait)
            log("starting the Postfix reference (PW_SCHEME=SHA512-CRYPT) in %s" % sb.REF_BASE)
            postfix_pid, dovecot_pid = sb.ref_start()
            started_ref = True
            crypt_hash = sb.ref_hash()
            ref = sb.Target("postfix", sb.REF_SMTP_PORT, sb.REF_SUB_PORT,
                            {"postfix": postfix_pid, "dovecot": dovecot_pid}, None)
        else:
            ref, crypt_hash = None, sb.own_hash()
        sink_port = harness.free_port()
        sink = start_sink(sink_port)
        gw, view = relaygate_start(args, crypt_hash, sink_port)
        rg = sb.Target("relaygate", gw.port("smtpd", mode="relay"), gw.port("smtpd", mode="submission"),
                       {"relaygate": gw.pid("smtpd")}, None)
        queue_dirs = {"relaygate": view, "postfix": os.path.join(sb.REF_BASE, "spool")}
        targets = [rg] + ([ref] if ref else [])
        labels = [t.label for t in targets]
        results = {t.label: {} for t in targets}
        for r in range(args.rounds):
            for t in (targets if r % 2 == 0 else targets[::-1]):
                got = run_relay(t, queue_dirs[t.label], args)
                for key, val in got.items():
                    results[t.label].setdefault(key, []).append(val)
                log("round %d %-9s %s" % (r + 1, t.label, "  ".join("%s=%s" % (k, sb.fmt(v[0])) for k, v in got.items())))
    finally:
        if gw is not None:
            gw.close()
        if sink is not None:
            os.killpg(sink.pid, signal.SIGTERM)
            sink.wait(10)
        if started_ref:
            sb.ref_stop()
    report(results, labels, args)


if __name__ == "__main__":
    main()
