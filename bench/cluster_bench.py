#!/usr/bin/env python3
"""SQLite vs PostgreSQL for relaygate-smtpd (issue 12, Deliver 7), in one run.

Starts two relaygate-smtpd installations on free loopback ports (tests/e2e/harness.py): one on
its SQLite file, one on a throwaway PostgreSQL 15 reached over its unix socket (tests/pgtest.py:
initdb in /tmp, fsync off, stopped and removed at the end). Each gets the same user and an
admin grant for 127.0.0.2, then, per round and alternating between the two:

  RCPT    --sessions (default 4) concurrent sessions from 127.0.0.2, each MAIL then RCPT TO a
          remote address again and again (RSET + MAIL every --rcpts-per-mail), for --seconds:
          every RCPT is a relay decision that reads the grant from the database (there is no
          cache). Relay decisions/s over all sessions, and p50/p99 of one RCPT's round trip.
  EHLO    --clients (default 8) concurrent loops of connect, greeting, EHLO, QUIT, for
          --seconds: sessions/s. The database is not touched before RCPT/AUTH, so this must
          not drop with PostgreSQL.

Every RCPT must be answered 250 (a refusal or 451 is counted and fails the run: exit 2).
Medians over --rounds (default 3) are printed as a table with the PostgreSQL/SQLite ratio.
The client is Python threads on the same machine: on 2 cores it competes with the server, so
quote the ratio rather than absolute figures.

Binaries: --smtpd/--ctl, else $RG_SMTPD/$RG_CTL, else build/smtpd/relaygate-smtpd and
build/ctl/relaygatectl of this checkout. Needs PostgreSQL 15's server binaries
(/usr/lib/postgresql/15/bin, or $RG_PG_BIN; scripts/bootstrap installs postgresql-15); run as
root the server runs as "nobody" (tests/pgtest.py).

Usage: bench/cluster_bench.py [--smtpd PATH] [--ctl PATH] [--seconds 5] [--rounds 3]
                              [--sessions 4] [--clients 8] [--rcpts-per-mail 50]
"""
import argparse
import os
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "tests"))
import harness  # noqa: E402
import pgtest  # noqa: E402

GRANTED = "127.0.0.2"
SOCKET_TIMEOUT = 15.0


def find_binary(explicit, env, candidates):
    for path in [explicit, os.environ.get(env)] + [os.path.join(REPO, c) for c in candidates]:
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("no %s: pass it or set %s (looked in %s)" % (env, env, ", ".join(candidates)))


class Conn:
    """A minimal SMTP client over a socket: one reply (multi-line aware) per command."""

    def __init__(self, port, source=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """The code of the next complete reply (its last line is "NNN ")."""
        while True:
            start = 0
            while True:
                end = self.buf.find(b"\r\n", start)
                if end < 0:
                    break
                line = self.buf[start:end]
                if len(line) >= 4 and line[3:4] == b" ":
                    self.buf = self.buf[end + 2:]
                    return int(line[:3])
                start = end + 2
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def cmd(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


def rcpt_worker(port, seconds, per_mail, latencies, bad, idx):
    c = Conn(port, GRANTED)
    try:
        c.reply()
        c.cmd(b"EHLO bench.test")
        c.cmd(b"MAIL FROM:<bench@remote.test>")
        n = 0
        lat = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if n and n % per_mail == 0:
                c.cmd(b"RSET")
                c.cmd(b"MAIL FROM:<bench@remote.test>")
            t0 = time.perf_counter()
            code = c.cmd(b"RCPT TO:<r%d@remote.test>" % n)
            lat.append(time.perf_counter() - t0)
            if code != 250:
                bad[code] = bad.get(code, 0) + 1
            n += 1
        c.cmd(b"QUIT")
        latencies[idx] = lat
    finally:
        c.close()


def ehlo_worker(port, seconds, counts, idx):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c = Conn(port)
        try:
            if c.reply() != 220 or c.cmd(b"EHLO bench.test") != 250 or c.cmd(b"QUIT") != 221:
                raise RuntimeError("unexpected reply")
        finally:
            c.close()
        n += 1
    counts[idx] = n


def run_threads(targets):
    threads = [threading.Thread(target=fn, args=args) for fn, args in targets]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def measure_rcpt(port, args):
    latencies, bad = [None] * args.sessions, {}
    elapsed = run_threads([(rcpt_worker, (port, args.seconds, args.rcpts_per_mail, latencies, bad, i))
                           for i in range(args.sessions)])
    lat = sorted(x for l in latencies for x in (l or []))
    if not lat or any(l is None for l in latencies):
        raise RuntimeError("an RCPT session failed")
    return {"rcpt_per_s": len(lat) / elapsed, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "rcpts": len(lat), "bad": bad}


def measure_ehlo(port, args):
    counts = [None] * args.clients
    elapsed = run_threads([(ehlo_worker, (port, args.seconds, counts, i)) for i in range(args.clients)])
    if any(c is None for c in counts):
        raise RuntimeError("an EHLO client failed")
    return {"ehlo_per_s": sum(counts) / elapsed}


def start_gateway(database, smtpd, ctl):
    overrides = {
        "smtpd": {"listen": [{"address": "127.0.0.1", "port": harness.AUTO, "mode": "relay", "tls": "none"}],
                  "max_connections_per_ip": 1000},
        "pop3d": {"listen": [{"address": "127.0.0.1", "port": harness.AUTO, "tls": "none"}]},
    }
    if database:
        overrides["database"] = database
    gw = harness.Gateway(overrides, binaries={"smtpd": smtpd, "ctl": ctl})
    try:
        gw.add_user("alice", "bench-pw")
        gw.ctl("grant", "add", GRANTED, "--user", "alice", "--ttl", "86400")
        gw.start("smtpd")
    except BaseException:
        gw.close()
        raise
    return gw


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtpd")
    ap.add_argument("--ctl")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=4, help="concurrent RCPT sessions")
    ap.add_argument("--clients", type=int, default=8, help="concurrent EHLO loops")
    ap.add_argument("--rcpts-per-mail", type=int, default=50, help="RCPTs before RSET (<= smtpd.max_recipients)")
    args = ap.parse_args()
    smtpd = find_binary(args.smtpd, "RG_SMTPD", ["build/smtpd/relaygate-smtpd"])
    ctl = find_binary(args.ctl, "RG_CTL", ["build/ctl/relaygatectl"])
    try:
        pg = pgtest.Postgres()
    except pgtest.PgUnavailable as e:
        sys.exit(str(e))
    gateways = {}
    with open("/proc/loadavg") as f:
        load_at_start = float(f.read().split()[0])
    try:
        pg.start()
        uri = pg.create_database("relaygate")
        gateways["SQLite"] = start_gateway(None, smtpd, ctl)
        gateways["PostgreSQL"] = start_gateway(uri, smtpd, ctl)
        results = {name: [] for name in gateways}
        for name, gw in gateways.items():  # warm-up: connections, caches, first queries
            measure_rcpt(gw.port("smtpd", mode="relay"), argparse.Namespace(**dict(vars(args), seconds=0.5)))
        for r in range(args.rounds):
            order = list(gateways) if r % 2 == 0 else list(reversed(gateways))
            for name in order:
                port = gateways[name].port("smtpd", mode="relay")
                res = measure_rcpt(port, args)
                res.update(measure_ehlo(port, args))
                results[name].append(res)
                print("[cluster-bench] round %d %-10s RCPT %7.0f/s p50 %.2f ms p99 %.2f ms  EHLO %6.0f sessions/s%s"
                      % (r + 1, name, res["rcpt_per_s"], res["p50_ms"], res["p99_ms"], res["ehlo_per_s"],
                         "  NON-250: %s" % res["bad"] if res["bad"] else ""), file=sys.stderr, flush=True)
    finally:
        for gw in gateways.values():
            gw.close()
        pg.close()

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    rows = [("RCPT relay decisions/s", "rcpt_per_s", "%.0f"), ("RCPT latency p50 (ms)", "p50_ms", "%.2f"),
            ("RCPT latency p99 (ms)", "p99_ms", "%.2f"), ("EHLO sessions/s", "ehlo_per_s", "%.0f")]
    print("relaygate-smtpd, %d rounds x %.0f s, medians; RCPT: %d sessions from a granted IP; EHLO: %d clients; "
          "load average %.2f at the start (%d CPUs)" % (args.rounds, args.seconds, args.sessions, args.clients,
                                                       load_at_start, os.cpu_count() or 0))
    print("%-24s %12s %12s %8s" % ("", "SQLite", "PostgreSQL", "PG/SQLite"))
    for label, key, fmt in rows:
        s, p = med("SQLite", key), med("PostgreSQL", key)
        print("%-24s %12s %12s %8.2f" % (label, fmt % s, fmt % p, p / s if s else float("nan")))
    bad = {n: [r["bad"] for r in rs if r["bad"]] for n, rs in results.items()}
    if any(bad.values()):
        print("FAIL: RCPTs not answered 250: %s" % bad)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
