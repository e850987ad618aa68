#!/usr/bin/env python3
"""POP3 benchmark of issue 3 (Performance): relaygate-pop3d vs Dovecot 2.3 in the same run.

  1. logins/s: USER/PASS + STAT + QUIT sessions per second with C (default 50) concurrent
     clients, closed loop, measured by $RG_BENCH_DIR/bench.py (`--tests pop3`);
  2. memory per idle connection: N (default 1000) connections opened and left idle after the
     greeting; RSS and PSS of the whole server process tree before/after, divided by N.

Equal hash cost: both servers verify the same SHA512-CRYPT (`$6$`, 5000 rounds) hash of "pw"
for user0..user199 (ref-start.sh PW_SCHEME=SHA512-CRYPT makes it; relaygate imports it with
`relaygatectl user passwd NAME --hash-stdin`); user100..user199, the ones logging in, hold 10
messages of ~1.5 kB each on both. relaygate listens on a free loopback port without TLS (allow_plaintext_without_tls),
like the reference's Dovecot (ssl = no). Runs are interleaved (relaygate, Dovecot, relaygate,
...) and medians reported, because absolute figures drift on shared machines.

Needs: postfix, dovecot-core, dovecot-pop3d installed (never started as system services):
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix dovecot-core dovecot-pop3d
and root (ref-start.sh writes Dovecot/Postfix configs and chowns Maildirs).

Usage: bench/pop3_bench.py [--pop3d PATH] [--ctl PATH] [-c 50] [--duration 5] [--rounds 3]
                           [--conns 1000] [--dovecot-modes default,perf] [--no-ref]
Prints one summary table; raw JSON lines go to --out (default /tmp/relaygate-pop3-bench.jsonl).
"""
import argparse
import json
import os
import resource
import select
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
sys.path.insert(0, BENCH_DIR)
import bench as refbench  # noqa: E402  (proc_table, tree_pids, proc_mem_kb)

REF_BASE = os.environ.get("BENCH_REF_DIR", "/tmp/relaygate-bench-ref")
REF_POP3_PORT = 3110
NUSERS = 200
PASSWORD = "pw"
SEED_USERS = range(100, 200)  # ref-start.sh seeds the upper half
SEED_MSGS = 10
# relaygate holds the RFC 1939 exclusive maildrop lock (a second session of one user gets
# -ERR [IN-USE]; Dovecot's pop3_lock_session defaults to no). One client process walking a ring
# of 100 users with 50 sessions in flight keeps sessions of one user from overlapping, so both
# servers do the same work. (bench.py's processes each start at the ring's first user.)
POP3_USERS = "100:200"
CLIENT_PROCS = 1


def log(*a):
    print("[pop3-bench]", *a, file=sys.stderr, flush=True)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


# ------------------------------------------------------------------ reference (Dovecot)
def ref_start(perf):
    env = dict(os.environ, PW_SCHEME="SHA512-CRYPT", BENCH_REF_DIR=REF_BASE, DOVECOT_PERF="1" if perf else "0",
               POP3_SEED=str(SEED_MSGS), NUSERS=str(NUSERS))
    subprocess.run([os.path.join(BENCH_DIR, "ref-stop.sh"), "--clean"], env=env, capture_output=True, timeout=60)
    p = subprocess.run([os.path.join(BENCH_DIR, "ref-start.sh")], env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("ref-start.sh failed:\n" + p.stdout + p.stderr)
    with open(os.path.join(REF_BASE, "run", "dovecot", "master.pid")) as f:
        return int(f.read().split()[0])


def ref_stop():
    env = dict(os.environ, BENCH_REF_DIR=REF_BASE)
    subprocess.run([os.path.join(BENCH_DIR, "ref-stop.sh"), "--clean"], env=env, capture_output=True, timeout=60)


def ref_hash():
    """The `$6$` hash ref-start.sh gave every user (passwd-file: user:{SHA512-CRYPT}$6$...:...)."""
    with open(os.path.join(REF_BASE, "etc", "dovecot", "users")) as f:
        field = f.readline().split(":")[1]
    return field.split("}", 1)[1] if field.startswith("{") else field


def own_hash():
    out = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True).stdout
    return out.strip()


# ------------------------------------------------------------------ relaygate
def seed_message(user, m):
    body = "x" * 1500
    return ("From: seed@example.test\r\nTo: %s@example.test\r\nSubject: seed %d\r\n\r\n%s\r\n" % (user, m, body)).encode()


def relaygate_start(args, crypt_hash):
    gw = harness.Gateway({
        "auth": {"allow_plaintext_without_tls": True},
        "pop3d": {"listen": [{"address": "127.0.0.1", "port": "auto", "tls": "none"}],
                  "max_connections": args.conns + 1000, "max_connections_per_ip": args.conns + 1000},
    }, binaries={"pop3d": args.pop3d, "ctl": args.ctl})
    log("relaygate: creating %d users with the reference's $6$ hash in %s" % (NUSERS, gw.dir))
    for i in range(NUSERS):
        name = "user%d" % i
        gw.add_user(name, "initial-" + PASSWORD)
        gw.set_hash(name, crypt_hash)
    for i in SEED_USERS:
        for m in range(SEED_MSGS):
            gw.deliver("user%d" % i, seed_message("user%d" % i, m))
    gw.start("pop3d")
    log("relaygate-pop3d pid %d on 127.0.0.1:%d" % (gw.pid("pop3d"), gw.port("pop3d")))
    return gw


# ------------------------------------------------------------------ measurements
def login_rate(label, port, pid, args, out):
    argv = [sys.executable, os.path.join(BENCH_DIR, "bench.py"), "run", "--label", label, "--tests", "pop3",
            "--pop3-port", str(port), "-c", str(args.concurrency), "--duration", str(args.duration),
            "--pop3-users", POP3_USERS, "--procs", str(CLIENT_PROCS),
            "--server", "%s=pid:%d" % (label, pid), "--out", out, "--pre-sample", "0.2", "--gap", "0.2"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration * 4 + 60)
    for line in p.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("metric", "").startswith("pop3_login_stat_per_s"):
            return rec
    raise RuntimeError("bench.py gave no pop3_login_stat_per_s for %s:\n%s\n%s" % (label, p.stdout, p.stderr))


def tree_mem(root):
    tab = refbench.proc_table()
    pids = refbench.tree_pids(tab, root)
    rss = pss = 0
    for p in pids:
        r, s, _ = refbench.proc_mem_kb(p)
        rss += r
        pss += s or 0
    return {"nprocs": len(pids), "rss_kb": rss, "pss_kb": pss}


def idle_memory(label, port, root, n, setup_timeout=30.0, hold=2.0):
    """Opens n connections, waits for each greeting, samples the server tree, closes them."""
    before = tree_mem(root)
    ep = select.epoll()
    socks, pending, greeted = {}, {}, 0
    deadline = time.monotonic() + setup_timeout
    opened = 0
    while (opened < n or pending) and time.monotonic() < deadline:
        while opened < n and len(pending) < 100:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks[s.fileno()] = s
            pending[s.fileno()] = b""
            ep.register(s.fileno(), select.EPOLLIN)
            opened += 1
        for fd, _ in ep.poll(0.2):
            try:
                data = socks[fd].recv(512)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            ep.unregister(fd)
            buf = pending.pop(fd, b"") + data
            if buf.startswith(b"+OK"):
                greeted += 1
    time.sleep(hold)
    after = tree_mem(root)
    for s in socks.values():
        try:
            s.send(b"QUIT\r\n")
        except OSError:
            pass
    time.sleep(0.3)
    for s in socks.values():
        s.close()
    ep.close()
    per = {k: round((after[k] - before[k]) / greeted, 1) if greeted else None for k in ("rss_kb", "pss_kb")}
    rec = {"metric": "pop3_idle_mem", "label": label, "conns_requested": n, "conns_greeted": greeted,
           "before": before, "after": after, "per_conn_kb": per}
    log("%s: %d/%d idle connections greeted; RSS %d -> %d kB (%s kB/conn), PSS %s kB/conn, %d -> %d processes"
        % (label, greeted, n, before["rss_kb"], after["rss_kb"], per["rss_kb"], per["pss_kb"],
           before["nprocs"], after["nprocs"]))
    return rec


# ------------------------------------------------------------------ main
def main():
    default_build = os.environ.get("RG_BUILD_DIR", "/tmp/build-pop3")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pop3d", default=os.environ.get("RG_POP3D", os.path.join(default_build, "pop3d/relaygate-pop3d")))
    ap.add_argument("--ctl", default=os.environ.get("RG_CTL", os.path.join(default_build, "ctl/relaygatectl")))
    ap.add_argument("-c", "--concurrency", type=int, default=50)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved login-rate runs per server")
    ap.add_argument("--conns", type=int, default=1000, help="idle connections for the memory test")
    ap.add_argument("--dovecot-modes", default="default,perf",
                    help="reference modes: default (one process per connection) and/or perf (DOVECOT_PERF=1)")
    ap.add_argument("--no-ref", action="store_true", help="measure relaygate only")
    ap.add_argument("--out", default="/tmp/relaygate-pop3-bench.jsonl")
    args = ap.parse_args()
    for b in (args.pop3d, args.ctl):
        if not os.access(b, os.X_OK):
            sys.exit("not executable: %s (build relaygate-pop3d and relaygatectl, or pass --pop3d/--ctl)" % b)
    modes = [] if args.no_ref else [m.strip() for m in args.dovecot_modes.split(",") if m.strip()]
    if modes and (os.geteuid() != 0 or not shutil.which("dovecot") or not os.path.exists("/usr/sbin/postfix")):
        sys.exit("the reference needs root and postfix + dovecot-core + dovecot-pop3d installed (see --help), or --no-ref")
    raise_nofile(args.conns * 2 + 512)  # inherited by the daemons started from here, too
    open(args.out, "w").close()
    results = {"logins": {}, "memory": {}}

    crypt_hash = None
    if modes:
        log("starting the Dovecot reference (%s mode) to get its $6$ hash" % modes[0])
        ref_pid = ref_start(modes[0] == "perf")
        crypt_hash = ref_hash()
    else:
        crypt_hash = own_hash()
        ref_pid = None
    assert crypt_hash.startswith("$6$"), crypt_hash
    gw = relaygate_start(args, crypt_hash)
    rg_port, rg_pid = gw.port("pop3d"), gw.pid("pop3d")
    try:
        for i, mode in enumerate(modes or [None]):
            if mode is not None and i > 0:
                ref_stop()
                ref_pid = ref_start(mode == "perf")
            ref_label = "dovecot-%s" % mode if mode else None
            for r in range(args.rounds):
                rec = login_rate("relaygate", rg_port, rg_pid, args, args.out)
                results["logins"].setdefault("relaygate", []).append(rec["value"])
                log("round %d relaygate: %.0f logins/s, %s errors %s, server %s"
                    % (r + 1, rec["value"], rec.get("errors", 0), rec.get("error_samples", ""), rec.get("server")))
                if ref_label:
                    rec = login_rate(ref_label, REF_POP3_PORT, ref_pid, args, args.out)
                    results["logins"].setdefault(ref_label, []).append(rec["value"])
                    log("round %d %s: %.0f logins/s, %s errors %s, server %s"
                        % (r + 1, ref_label, rec["value"], rec.get("errors", 0), rec.get("error_samples", ""), rec.get("server")))
            if ref_label:
                results["memory"][ref_label] = idle_memory(ref_label, REF_POP3_PORT, ref_pid, args.conns)
        # A fresh process: memory freed by the login runs would otherwise be reused and hide the cost.
        gw.restart("pop3d")
        results["memory"]["relaygate"] = idle_memory("relaygate", rg_port, gw.pid("pop3d"), args.conns)
    finally:
        gw.close()
        if modes:
            ref_stop()
    with open(args.out, "a") as f:
        for rec in results["memory"].values():
            f.write(json.dumps(rec) + "\n")

    print("\nPOP3 USER/PASS + STAT + QUIT, %d concurrent clients, %d x %.0f s (median [min-max] sessions/s):"
          % (args.concurrency, args.rounds, args.duration))
    rg_rate = statistics.median(results["logins"]["relaygate"])
    for label, vals in results["logins"].items():
        med = statistics.median(vals)
        ratio = "" if label == "relaygate" else "   relaygate/%s = %.2fx" % (label, rg_rate / med if med else float("nan"))
        print("  %-18s %8.0f  [%.0f-%.0f]%s" % (label, med, min(vals), max(vals), ratio))
    print("Idle connections (greeting read, then idle), server process tree:")
    for label, rec in results["memory"].items():
        print("  %-18s %4d/%d greeted  RSS %.1f KiB/conn  PSS %.1f KiB/conn  (%d -> %d processes)"
              % (label, rec["conns_greeted"], rec["conns_requested"], rec["per_conn_kb"]["rss_kb"] or 0,
                 rec["per_conn_kb"]["pss_kb"] or 0, rec["before"]["nprocs"], rec["after"]["nprocs"]))
    print("Targets (issue 3): relaygate >= 2x Dovecot's login rate; < 20 KiB RSS per idle connection.")
    print("Raw JSON lines: %s" % args.out)


if __name__ == "__main__":
    main()
