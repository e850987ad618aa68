#!/usr/bin/env python3
"""A throwaway PostgreSQL 15 server for tests (issue 12, Deliver 6).

As a library (Python end-to-end tests):

    import pgtest
    with pgtest.Postgres() as pg:          # initdb + start; stop + remove on exit
        pg.create_database("relaygate")    # a NOSUPERUSER LOGIN role "relaygate" owning it
        uri = pg.uri()                     # postgresql://relaygate@/relaygate?host=...&port=...
        pg.stop(mode="immediate"); pg.start()   # same data

As a CTest wrapper:

    python3 tests/pgtest.py [--database NAME] -- CMD ARGS...

starts one, creates the database, runs CMD with RG_TEST_PG_URI (and RG_TEST_PG_SOCKDIR,
RG_TEST_PG_PORT, RG_TEST_PG_DATADIR, RG_TEST_PG_BIN, RG_TEST_PG_LOG) set, stops the server
whatever happens and exits with CMD's code (77, a CTest skip, when the binaries are missing
outside CI).

The server listens on a unix socket only (listen_addresses=''), in a private temp folder under
/tmp (RG_KEEP_TMP=1 keeps it), with fsync off: the data is thrown away (a
crash of the server process loses nothing, only a crash of the machine would; synchronous_commit
stays on so that `stop(mode="immediate")` keeps every committed transaction, as on a real server). initdb refuses to run as
root, so under root the server runs as an unprivileged user (RG_PG_USER, default "nobody") and
the temp folder belongs to it. Binaries come from /usr/lib/postgresql/15/bin (RG_PG_BIN
overrides). Every step is bounded in time, and a watchdog process stops the server and removes
the folder if the test process dies without doing it (a CTest timeout kills with SIGKILL).
"""

import argparse
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
SUPERUSER = "postgres"
INITDB_TIMEOUT_S = 120
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
PSQL_TIMEOUT_S = 60
SKIP_RETURN_CODE = 77  # the CLI's exit code when the binaries are missing outside CI
# Unix socket names are .s.PGSQL.<port>; the folder is private, so any port is free in it.
PORT_MIN, PORT_MAX = 20000, 60000
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "log_min_messages": "warning",
    "log_connections": "off",
}


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def _quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def _clean_env():
    # A caller's PGHOST, PGPASSFILE, ... must not redirect our psql or the server.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class Postgres:
    def __init__(self, bindir=None):
        self.bindir = bindir or os.environ.get("RG_PG_BIN") or DEFAULT_BIN
        for tool in ("initdb", "pg_ctl", "postgres", "psql"):
            if not os.access(os.path.join(self.bindir, tool), os.X_OK):
                raise PgUnavailable(
                    f"pgtest: PostgreSQL 15 binaries not found: {os.path.join(self.bindir, tool)} "
                    f"is missing; install postgresql-15 (scripts/bootstrap) or set RG_PG_BIN")
        self.keep = os.environ.get("RG_KEEP_TMP") == "1"
        self.base = tempfile.mkdtemp(prefix="rg-pg-", dir="/tmp")
        self.datadir = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = random.randint(PORT_MIN, PORT_MAX)
        os.mkdir(self.sockdir)
        self._run_as = None  # (uid, gid) when root
        if os.geteuid() == 0:
            pw = pwd.getpwnam(os.environ.get("RG_PG_USER", "nobody"))
            self._run_as = (pw.pw_uid, pw.pw_gid)
            for path in (self.base, self.sockdir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._hba_password_roles = []
        self._initialized = False
        self._running = False
        self._watchdog = None
        self._closed = False

    # -- running the server's tools --------------------------------------------------------------

    def _server_cmd(self, argv):
        if self._run_as is None:
            return argv
        uid, gid = self._run_as
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] + argv

    def _run_server_tool(self, argv, timeout):
        try:
            p = subprocess.run(self._server_cmd(argv), cwd=self.base, env=_clean_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pgtest: {' '.join(argv[:2])} did not finish within {timeout} s{self._log_tail()}")
        if p.returncode != 0:
            raise RuntimeError(f"pgtest: {' '.join(argv[:2])} failed ({p.returncode}):\n{p.stdout}{self._log_tail()}")
        return p.stdout

    def _log_tail(self, lines=20):
        try:
            with open(self.logfile, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except OSError:
            return ""
        return "\n--- " + self.logfile + " ---\n" + "".join(tail)

    def _tool(self, name):
        return os.path.join(self.bindir, name)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _initdb(self):
        self._run_server_tool([self._tool("initdb"), "-D", self.datadir, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                               "--locale=C", "--no-sync", "--no-instructions"], INITDB_TIMEOUT_S)
        settings = dict(SERVER_SETTINGS, unix_socket_directories=_quote_literal(self.sockdir), port=str(self.port))
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgtest\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self._write_hba()
        self._initialized = True

    def _write_hba(self):
        # Roles given a password must use it (scram-sha-256); everyone else is trusted: the socket
        # is in a private folder. The first matching line wins (pg_hba.conf).
        lines = [f"local all {_quote_ident(r)} scram-sha-256\n" for r in self._hba_password_roles]
        lines.append("local all all trust\n")
        path = os.path.join(self.datadir, "pg_hba.conf")
        with open(path, "w") as f:
            f.writelines(lines)
        if self._run_as is not None:
            os.chown(path, *self._run_as)

    def start(self):
        """initdb on first use, then start the server and wait until it accepts connections."""
        if self._running:
            return self
        if not self._initialized:
            self._initdb()
        self._start_watchdog()
        self._run_server_tool([self._tool("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-w", "-t",
                               str(START_TIMEOUT_S), "start"], START_TIMEOUT_S + 10)
        self._running = True
        return self

    def stop(self, mode="fast"):
        """pg_ctl stop -m fast|smart|immediate; the data stays for a later start()."""
        if not self._running:
            return
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pgtest: stop mode {mode!r}")
        try:
            self._run_server_tool([self._tool("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t",
                                   str(STOP_TIMEOUT_S), "stop"], STOP_TIMEOUT_S + 10)
        except RuntimeError:
            self._kill_postmaster()
            raise
        finally:
            self._running = False

    def _kill_postmaster(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def close(self):
        """Stop (fast) and remove the temp folder unless RG_KEEP_TMP=1."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop("fast")
        finally:
            if self._watchdog is not None:
                self._watchdog.close()  # EOF: the watchdog exits (nothing left to do)
                self._watchdog = None
            if self.keep:
                print(f"pgtest: kept {self.base}", file=sys.stderr)
            else:
                shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def _start_watchdog(self):
        if self._watchdog is not None:
            return
        # A detached process holding the read end of a pipe: when this process dies the pipe
        # closes, and if the server still runs the watchdog stops it and removes the folder.
        r, w = os.pipe()
        argv = [sys.executable, os.path.abspath(__file__), "--watchdog", self.base, self.bindir,
                "1" if self.keep else "0"]
        p = subprocess.Popen(argv, stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_clean_env(),
                             close_fds=True, start_new_session=True)
        os.close(r)
        p.wait(timeout=10)  # it forks and returns at once, so it is not this process's child
        os.set_inheritable(w, False)
        self._watchdog = os.fdopen(w, "w")

    # -- clients -----------------------------------------------------------------------------------

    def uri(self, db="relaygate", user="relaygate", **params):
        """A libpq connection URI for the unix socket (extra query parameters as keywords)."""
        query = f"host={self.sockdir}&port={self.port}"
        for k, v in params.items():
            query += f"&{k}={v}"
        return f"postgresql://{user}@/{db}?{query}"

    def psql(self, sql, db="postgres", user=SUPERUSER, check=True):
        """Runs SQL through psql (unaligned, tuples only); returns its stdout."""
        argv = [self._tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir, "-p",
                str(self.port), "-U", user, "-d", db, "-f", "-"]
        p = subprocess.run(argv, input=sql, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=PSQL_TIMEOUT_S)
        if check and p.returncode != 0:
            raise RuntimeError(f"pgtest: psql failed ({p.returncode}): {p.stderr.strip()}\nSQL: {sql}")
        return p.stdout

    def create_database(self, name="relaygate", owner="relaygate", password=None):
        """A NOSUPERUSER LOGIN role (created if missing) and a database it owns.

        With a password the role must log in with it (scram-sha-256), e.g. through libpq's passfile.
        """
        role = _quote_ident(owner)
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {_quote_literal(owner)};").strip()
        if not exists:
            self.psql(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;")
        if password is not None:
            self.psql(f"SET password_encryption = 'scram-sha-256'; ALTER ROLE {role} PASSWORD {_quote_literal(password)};")
            if owner not in self._hba_password_roles:
                self._hba_password_roles.append(owner)
                self._write_hba()
                self.psql("SELECT pg_reload_conf();")
        self.psql(f"CREATE DATABASE {_quote_ident(name)} OWNER {role};")
        return self.uri(db=name, user=owner)

    def drop_database(self, name):
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE);")


def _watchdog(base, bindir, keep):
    if os.fork() != 0:
        os._exit(0)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    datadir = os.path.join(base, "data")
    if os.path.exists(os.path.join(datadir, "postmaster.pid")):
        try:
            st = os.stat(datadir)
            argv = [os.path.join(bindir, "pg_ctl"), "-D", datadir, "-m", "immediate", "-w", "-t", "30", "stop"]
            if os.geteuid() == 0:
                argv = ["setpriv", f"--reuid={st.st_uid}", f"--regid={st.st_gid}", "--clear-groups", "--"] + argv
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
    if keep != "1":
        shutil.rmtree(base, ignore_errors=True)
    os._exit(0)


def main(argv):
    if len(argv) >= 4 and argv[0] == "--watchdog":
        _watchdog(argv[1], argv[2], argv[3])
    ap = argparse.ArgumentParser(description="Run CMD against a throwaway PostgreSQL 15 (RG_TEST_PG_URI).")
    ap.add_argument("--database", default="relaygate")
    ap.add_argument("--user", default="relaygate")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given (pgtest.py [--database NAME] -- CMD ARGS...)")

    # CTest ends a test that times out; stop the server on SIGTERM/SIGINT too.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        pg = Postgres()
    except PgUnavailable as e:
        # As the e2e harness treats a missing client: a failure in CI (scripts/bootstrap installs
        # PostgreSQL there), elsewhere a skip (77, CTest's SKIP_RETURN_CODE of the fragments).
        print(e, file=sys.stderr)
        return 1 if os.environ.get("CI") else SKIP_RETURN_CODE
    child = None
    try:
        t0 = time.monotonic()
        pg.start()
        uri = pg.create_database(args.database, owner=args.user)
        print(f"pgtest: PostgreSQL up in {time.monotonic() - t0:.1f} s: {uri}", file=sys.stderr)
        # The data folder, binaries and log let a test stop and restart the server (pg_ctl).
        env = dict(os.environ, RG_TEST_PG_URI=uri, RG_TEST_PG_SOCKDIR=pg.sockdir, RG_TEST_PG_PORT=str(pg.port),
                   RG_TEST_PG_DATADIR=pg.datadir, RG_TEST_PG_BIN=pg.bindir, RG_TEST_PG_LOG=pg.logfile)
        child = subprocess.Popen(cmd, env=env)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        pg.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
