#!/usr/bin/env python3
"""SMTP benchmark of issue 4 (Performance): relaygate-smtpd vs Postfix 3.7 in the same run.

Metrics (load from $RG_BENCH_DIR/bench.py, one `bench.py run` per test and server):
  1. sessions/s   connect, 220, EHLO, 250, QUIT, 221 with C (default 50) concurrent clients,
                  closed loop (`--tests ehlo`);
  2. AUTH/s       EHLO + AUTH PLAIN (235) + QUIT on the submission listener, C clients
                  (`--tests auth`); equal hash cost: both servers verify the same SHA512-CRYPT
                  (`$6$`, 5000 rounds) hash of "pw" for user0..user99 (ref-start.sh
                  PW_SCHEME=SHA512-CRYPT makes it for Dovecot, which does Postfix's SASL;
                  relaygate imports that very string with `relaygatectl user passwd NAME --hash-stdin`);
  3. messages/s   10 KB messages to user0@example.test, delivered into a local Maildir with fsync
                  (`--tests msg --maildir`): "delivered" counts until every accepted message is a
                  file in the Maildir (Postfix: cleanup + queue + virtual(8); relaygate: the 250
                  comes only after the Maildir fsync), "accepted" until the last 250;
  4. latency      EHLO round trip p50/p99 at a fixed offered load (open loop, `--tests lat`);
  5. memory       N (default 1000) idle connections after banner+EHLO; RSS/PSS of the server
                  process trees before/after, per connection (`--tests mem`). relaygate is
                  restarted first (freed memory of the load runs would hide the cost); the
                  reference's figure is Postfix's tree plus Dovecot's (each Postfix smtpd with
                  SASL keeps a connection to Dovecot auth).
Runs 1-4 are interleaved per test (relaygate, Postfix, Postfix, relaygate, ... the order flips
each round) and medians reported, because absolute figures drift 15-30 % on shared machines.

relaygate runs from a build, listening on free loopback ports without TLS (tls "none",
auth.allow_plaintext_without_tls, greeting_pause_ms 0), like the reference (no TLS, SASL in
clear). Targets (issue 4): >= 2x Postfix sessions/s and delivered messages/s; < 20 KiB RSS per
idle connection.

The reference (ref-start.sh) listens on 3525/3587/3110/3026, which bench/pop3_bench.py uses too:
if any of them already listens, this waits (polling every 30 s, up to --ref-wait s) instead of
starting a second copy; it stops only the instance it started (ref-stop.sh on its own
BENCH_REF_DIR, default /tmp/relaygate-smtp-bench/ref).

Needs: postfix, dovecot-core, dovecot-pop3d installed (never started as system services):
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix dovecot-core dovecot-pop3d
and root (ref-start.sh writes configs and chowns Maildirs). Build relaygate first:
  cmake -S . -B /tmp/build-bench -DCMAKE_BUILD_TYPE=Release -DRG_BUILD_TESTS=OFF
  cmake --build /tmp/build-bench -j2 --target relaygate-smtpd relaygatectl

Usage: bench/smtp_bench.py [--smtpd PATH] [--ctl PATH] [-c 50] [--duration 5] [--rounds 3]
                           [--lat-rate 300] [--msgs 1500] [--conns 1000] [--no-ref]
Prints one summary table; raw JSON lines go to --out (default /tmp/relaygate-smtp-bench.jsonl).
"""
import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

# The reference stack and load generator (ref-start.sh, ref-stop.sh, bench.py) are not in this
# checkout yet (issue 16 brings them into bench/): name their folder in RG_BENCH_DIR.
BENCH_DIR = os.environ.get("RG_BENCH_DIR") or sys.exit("set RG_BENCH_DIR to the folder with ref-start.sh and bench.py")
BENCH_PY = os.path.join(BENCH_DIR, "bench.py")
# Our own instance directory (ref-start.sh wants it to end in /ref): ref-stop.sh --clean on it
# can never wipe the files of a reference a colleague started under the default directory.
REF_BASE = os.environ.get("BENCH_REF_DIR", "/tmp/relaygate-smtp-bench/ref")
REF_SMTP_PORT, REF_SUB_PORT = 3525, 3587
REF_PORTS = (3525, 3587, 3110, 3026)
NUSERS = 100          # user0..user99, bench.py's --auth-users default range
PASSWORD = "pw"
RCPT_USER = "user0"   # bench.py's --rcpt default is user0@example.test


def log(*a):
    print("[smtp-bench]", *a, file=sys.stderr, flush=True)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


# ------------------------------------------------------------------ reference (Postfix + Dovecot SASL)
def listening(port):
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True, text=True, timeout=10).stdout
    return bool(out.strip())


def wait_ref_ports_free(max_wait, poll=30.0):
    """The reference's ports are shared with bench/pop3_bench.py: wait while anything listens there."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = [p for p in REF_PORTS if listening(p)]
        if not busy:
            return
        if time.monotonic() >= deadline:
            sys.exit("reference ports %s still in use after %.0f s (another benchmark's reference?); "
                     "not starting a second copy and not stopping theirs" % (busy, max_wait))
        log("reference ports %s in use (another benchmark running?); waiting %.0f s" % (busy, poll))
        time.sleep(poll)


def ref_env():
    return dict(os.environ, PW_SCHEME="SHA512-CRYPT", BENCH_REF_DIR=REF_BASE, NUSERS=str(NUSERS), POP3_SEED="0")


def ref_start():
    os.makedirs(os.path.dirname(REF_BASE), exist_ok=True)
    os.chmod(os.path.dirname(REF_BASE), 0o755)  # the Maildir owner is an unprivileged uid
    # Leftovers of an earlier run of ours only (our own BENCH_REF_DIR; the ports are free).
    subprocess.run([os.path.join(BENCH_DIR, "ref-stop.sh"), "--clean"], env=ref_env(), capture_output=True, timeout=60)
    p = subprocess.run([os.path.join(BENCH_DIR, "ref-start.sh")], env=ref_env(), capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise RuntimeError("ref-start.sh failed:\n" + p.stdout + p.stderr)
    with open(os.path.join(REF_BASE, "spool", "pid", "master.pid")) as f:
        postfix_pid = int(f.read().split()[0])
    with open(os.path.join(REF_BASE, "run", "dovecot", "master.pid")) as f:
        dovecot_pid = int(f.read().split()[0])
    return postfix_pid, dovecot_pid


def ref_stop():
    subprocess.run([os.path.join(BENCH_DIR, "ref-stop.sh"), "--clean"], env=ref_env(), capture_output=True, timeout=60)


def ref_hash():
    """The `$6$` hash ref-start.sh gave every user (passwd-file: user:{SHA512-CRYPT}$6$...:...)."""
    with open(os.path.join(REF_BASE, "etc", "dovecot", "users")) as f:
        field = f.readline().split(":")[1]
    return field.split("}", 1)[1] if field.startswith("{") else field


def own_hash():
    out = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True).stdout
    return out.strip()


# ------------------------------------------------------------------ relaygate
def relaygate_start(args, crypt_hash):
    limit = args.conns + 1000
    gw = harness.Gateway({
        "run_as": {"allow_root": True},
        "auth": {"allow_plaintext_without_tls": True},
        "smtpd": {"listen": [{"address": "127.0.0.1", "port": "auto", "mode": "relay", "tls": "none"},
                             {"address": "127.0.0.1", "port": "auto", "mode": "submission", "tls": "none"}],
                  "greeting_pause_ms": 0, "max_connections": limit, "max_connections_per_ip": limit},
    }, binaries={"smtpd": args.smtpd, "ctl": args.ctl})
    log("relaygate: creating %d users with the reference's $6$ hash in %s" % (NUSERS, gw.dir))
    for i in range(NUSERS):
        name = "user%d" % i
        gw.add_user(name, "initial-" + PASSWORD)
        gw.set_hash(name, crypt_hash)
    gw.start("smtpd", extra_args=["--allow-root"])
    log("relaygate-smtpd pid %d: relay 127.0.0.1:%d, submission 127.0.0.1:%d"
        % (gw.pid("smtpd"), gw.port("smtpd", mode="relay"), gw.port("smtpd", mode="submission")))
    return gw


# ------------------------------------------------------------------ one bench.py run
class Target:
    def __init__(self, label, smtp_port, sub_port, servers, maildir):
        self.label, self.smtp_port, self.sub_port = label, smtp_port, sub_port
        self.servers = servers      # {name: pid}
        self.maildir = maildir      # Maildir of user0


def bench(target, test, args, extra=()):
    argv = [sys.executable, BENCH_PY, "run", "--label", target.label, "--tests", test,
            "--smtp-port", str(target.smtp_port), "--sub-port", str(target.sub_port),
            "-c", str(args.concurrency), "--duration", str(args.duration), "--out", args.out,
            "--pre-sample", "0.3", "--gap", "0.2"]
    for name, pid in target.servers.items():
        argv += ["--server", "%s=pid:%d" % (name, pid)]
    argv += list(extra)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    recs = []
    for line in p.stdout.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            continue
    for r in recs:
        if r.get("metric") == "harness_error":
            raise RuntimeError("bench.py %s on %s: %s" % (test, target.label, r.get("error")))
    if not recs:
        raise RuntimeError("bench.py %s on %s printed nothing:\n%s\n%s" % (test, target.label, p.stdout, p.stderr[-2000:]))
    return recs


def pick(recs, prefix):
    for r in recs:
        if r.get("metric", "").startswith(prefix):
            return r
    raise RuntimeError("no %s in %s" % (prefix, [r.get("metric") for r in recs]))


def srv_us(rec):
    """server CPU us per op summed over the target's process trees"""
    vals = [v.get("cpu_us_per_op") for v in (rec.get("server") or {}).values() if v.get("cpu_us_per_op") is not None]
    return sum(vals) if vals else None


def note_errors(target, test, rec):
    errs = rec.get("errors", 0) or 0
    if errs or rec.get("dropped"):
        log("  %s %s: %s errors %s, dropped %s" % (target.label, test, errs, rec.get("error_samples"), rec.get("dropped", 0)))


def run_ehlo(t, args):
    r = pick(bench(t, "ehlo", args), "smtp_ehlo_sessions_per_s")
    note_errors(t, "ehlo", r)
    return {"sessions": (r["value"], srv_us(r))}


def run_auth(t, args):
    r = pick(bench(t, "auth", args), "smtp_auth_plain_per_s")
    note_errors(t, "auth", r)
    return {"auth": (r["value"], srv_us(r))}


def run_lat(t, args):
    recs = bench(t, "lat", args, ["--lat-rate", str(args.lat_rate), "--lat-duration", str(args.duration)])
    p99 = pick(recs, "smtp_ehlo_latency_p99_ms")
    p50 = pick(recs, "smtp_ehlo_latency_p50_ms")
    note_errors(t, "lat", p99)
    if p99.get("ok") is not None and p99.get("ok") < p99.get("sessions", 0):
        log("  %s lat: only %s of %s sessions completed" % (t.label, p99.get("ok"), p99.get("sessions")))
    return {"lat_p99": (p99["value"], None), "lat_p50": (p50["value"], None)}


def run_msg(t, args):
    recs = bench(t, "msg", args, ["--msgs", str(args.msgs), "--msg-size", "10240", "--msg-warmup", str(args.msg_warmup),
                                  "--maildir", t.maildir, "--drain-timeout", "30", "--msg-max-s", "30"])
    acc = pick(recs, "smtp_msg_accept_per_s")
    e2e = pick(recs, "smtp_msg_e2e_per_s")
    note_errors(t, "msg", acc)
    if e2e.get("value") is None:
        log("  %s msg: %s (delivered %s of %s)" % (t.label, e2e.get("error"), e2e.get("delivered_or_queued"), acc.get("accepted")))
    return {"delivered": (e2e.get("value"), srv_us(e2e)), "accepted": (acc["value"], None)}


def run_mem(t, args):
    recs = bench(t, "mem", args, ["--mem-conns", str(args.conns), "--mem-setup-timeout", "60"])
    rss = pss = 0.0
    established = alive = None
    for name in t.servers:
        r = pick(recs, "smtp_idle_%s_rss_per_conn_kb" % name)
        rss += r["value"] or 0
        pss += pick(recs, "smtp_idle_%s_pss_per_conn_kb" % name)["value"] or 0
        established, alive = r.get("conns_established"), r.get("conns_alive_at_sample")
        tree = r.get("tree", {})
        log("  %s mem: %s tree RSS %s -> %s kB, %s -> %s processes, %s/%s connections established, %s alive"
            % (t.label, name, tree.get("rss_kb", {}).get("before"), tree.get("rss_kb", {}).get("after"),
               tree.get("nprocs", {}).get("before"), tree.get("nprocs", {}).get("after"),
               established, args.conns, alive))
    return {"rss": (round(rss, 1), None), "pss": (round(pss, 1), None), "conns": established}


TESTS = {"ehlo": run_ehlo, "auth": run_auth, "lat": run_lat, "msg": run_msg}


# ------------------------------------------------------------------ report
ROWS = [
    # key, title, higher_is_better, target ratio (relaygate/ref) or None
    ("sessions", "EHLO+QUIT sessions/s (c=%(c)d)", True, 2.0),
    ("auth", "AUTH PLAIN successes/s, $6$ 5000 rounds (c=%(c)d)", True, None),
    ("delivered", "10 KB msgs/s delivered to Maildir, fsync (c=%(c)d)", True, 2.0),
    ("accepted", "10 KB msgs/s accepted (last 250) (c=%(c)d)", True, None),
    ("lat_p50", "EHLO RTT p50 ms at %(rate)g sessions/s offered", False, None),
    ("lat_p99", "EHLO RTT p99 ms at %(rate)g sessions/s offered", False, None),
]


def fmt(v):
    if v is None:
        return "-"
    return "%.0f" % v if abs(v) >= 100 else ("%.1f" % v if abs(v) >= 10 else "%.2f" % v)


def med(vals):
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), min(vals), max(vals), len(vals)) if vals else (None, None, None, 0)


def report(results, mem, labels, args):
    ctx = {"c": args.concurrency, "rate": args.lat_rate}
    rg, ref = labels[0], (labels[1] if len(labels) > 1 else None)
    w = 52
    print("\nSMTP benchmark (issue 4): %d rounds, interleaved, medians [min-max]; CPU = server CPU us/op (median)"
          % args.rounds)
    head = "%-*s %24s" % (w, "metric", rg)
    if ref:
        head += " %24s %8s  %s" % (ref, "ratio", "target")
    print(head)
    print("-" * len(head))
    for key, title, higher, target in ROWS:
        if key not in results.get(rg, {}):
            continue
        cells, meds = [], {}
        for label in labels:
            vals = results[label].get(key, [])
            m, lo, hi, n = med([v for v, _ in vals])
            cpu = med([c for _, c in vals])[0]
            meds[label] = m
            cell = "%s [%s-%s]" % (fmt(m), fmt(lo), fmt(hi))
            if cpu is not None:
                cell += " %sus" % fmt(cpu)
            cells.append(cell)
        line = "%-*s %24s" % (w, title % ctx, cells[0])
        if ref:
            a, b = meds.get(rg), meds.get(ref)
            ratio = (a / b if higher else b / a) if a and b else None
            verdict = ""
            if target is not None:
                verdict = ">= %.0fx: %s" % (target, "MET" if ratio is not None and ratio >= target else "NOT MET")
            elif not higher:
                verdict = "(ratio = %s/%s, lower is better)" % (ref, rg)
            line += " %24s %7sx  %s" % (cells[1], fmt(ratio) if ratio else "-", verdict)
        print(line)
    for key, title, limit in (("rss", "idle RSS KiB/connection (%d conns)" % args.conns, 20.0),
                              ("pss", "idle PSS KiB/connection (%d conns)" % args.conns, None)):
        if rg not in mem:
            continue
        cells = []
        for label in labels:
            if label in mem:
                cells.append("%s (%s conns)" % (fmt(mem[label][key][0]), mem[label]["conns"]))
        line = "%-*s %24s" % (w, title, cells[0])
        if ref and len(cells) > 1:
            a, b = mem[rg][key][0], mem[ref][key][0]
            line += " %24s %7sx  " % (cells[1], fmt(b / a) if a and b else "-")
        elif ref:
            line += " %24s %8s  " % ("-", "")
        else:
            line += "  "
        if limit is not None:
            v = mem[rg][key][0]
            line += "< %.0f KiB: %s" % (limit, "MET" if v is not None and v < limit else "NOT MET")
        print(line)
    print("Ratios: relaygate/%s for rates, %s/relaygate for latency and memory (above 1 = relaygate better)."
          % (ref or "-", ref or "-"))
    print("Raw JSON lines: %s   (python3 %s summarize %s)" % (args.out, BENCH_PY, args.out))


# ------------------------------------------------------------------ main
def main():
    default_build = os.environ.get("RG_BUILD_DIR", "/tmp/build-bench")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtpd", default=os.environ.get("RG_SMTPD", os.path.join(default_build, "smtpd/relaygate-smtpd")))
    ap.add_argument("--ctl", default=os.environ.get("RG_CTL", os.path.join(default_build, "ctl/relaygatectl")))
    ap.add_argument("-c", "--concurrency", type=int, default=50, help="concurrent clients (ehlo, auth, msg)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per closed-loop / latency run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per test and server")
    ap.add_argument("--tests", default="ehlo,auth,lat,msg", help="subset of ehlo,auth,lat,msg (mem: --conns)")
    ap.add_argument("--lat-rate", type=float, default=300.0, help="offered load for the latency test, sessions/s")
    ap.add_argument("--msgs", type=int, default=1500, help="measured 10 KB messages per msg run")
    ap.add_argument("--msg-warmup", type=int, default=100, help="unmeasured messages before each msg run")
    ap.add_argument("--conns", type=int, default=1000, help="idle connections for the memory test (0: skip)")
    ap.add_argument("--ref-wait", type=float, default=600.0, help="max seconds to wait for the reference ports")
    ap.add_argument("--no-ref", action="store_true", help="measure relaygate only")
    ap.add_argument("--out", default="/tmp/relaygate-smtp-bench.jsonl")
    args = ap.parse_args()
    for b in (args.smtpd, args.ctl):
        if not os.access(b, os.X_OK):
            sys.exit("not executable: %s (build relaygate-smtpd and relaygatectl, or pass --smtpd/--ctl)" % b)
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    for t in tests:
        if t not in TESTS:
            sys.exit("unknown test %r (have %s)" % (t, ",".join(TESTS)))
    if not args.no_ref and (os.geteuid() != 0 or not shutil.which("dovecot") or not os.path.exists("/usr/sbin/postfix")):
        sys.exit("the reference needs root and postfix + dovecot-core + dovecot-pop3d installed (see --help), or --no-ref")
    raise_nofile(args.conns * 2 + 512)  # inherited by the daemons started from here, too
    open(args.out, "w").close()

    ref = None
    started_ref = False
    gw = None
    try:
        if not args.no_ref:
            wait_ref_ports_free(args.ref_wait)
            log("starting the Postfix reference (PW_SCHEME=SHA512-CRYPT) in %s" % REF_BASE)
            postfix_pid, dovecot_pid = ref_start()
            started_ref = True
            crypt_hash = ref_hash()
            ref = Target("postfix", REF_SMTP_PORT, REF_SUB_PORT, {"postfix": postfix_pid, "dovecot": dovecot_pid},
                         os.path.join(REF_BASE, "mail", "example.test", RCPT_USER))
            log("postfix master %d, dovecot master %d" % (postfix_pid, dovecot_pid))
        else:
            crypt_hash = own_hash()
        assert crypt_hash.startswith("$6$") and "rounds=" not in crypt_hash, crypt_hash  # 5000 = default rounds
        gw = relaygate_start(args, crypt_hash)
        rg = Target("relaygate", gw.port("smtpd", mode="relay"), gw.port("smtpd", mode="submission"),
                    {"relaygate": gw.pid("smtpd")}, gw.maildir(RCPT_USER))
        targets = [rg] + ([ref] if ref else [])
        labels = [t.label for t in targets]
        results = {t.label: {} for t in targets}
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for test in tests:
                for t in order:
                    got = TESTS[test](t, args)
                    for key, val in got.items():
                        results[t.label].setdefault(key, []).append(val)
                    log("round %d %-9s %-4s %s" % (r + 1, t.label, test,
                                                   "  ".join("%s=%s" % (k, fmt(v[0])) for k, v in got.items())))
        mem = {}
        if args.conns > 0:
            if ref:
                mem[ref.label] = run_mem(ref, args)
            # A fresh process: memory freed by the load runs would otherwise be reused and hide the cost.
            gw.restart("smtpd")
            rg.servers = {"relaygate": gw.pid("smtpd")}
            mem[rg.label] = run_mem(rg, args)
    finally:
        if gw is not None:
            gw.close()
        if started_ref:
            ref_stop()
    report(results, mem, labels, args)


if __name__ == "__main__":
    main()
