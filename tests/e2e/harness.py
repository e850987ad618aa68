"""End-to-end harness: one relaygate installation in a temporary folder, daemons on loopback.

`Gateway` writes a strict config (free loopback ports picked here, never port 0 in the file),
creates users through relaygatectl, starts daemons on demand (`start("pop3d")`,
`start("smtpd")`), waits until all their ports listen, captures each daemon's stderr in a log
file and stops everything (SIGTERM, then SIGKILL) when the `with` block ends. Every socket
helper has a timeout and only loopback addresses (127.0.0.0/8, ::1) are ever used.

Binaries come from the environment (RG_POP3D, RG_SMTPD, RG_CTL), which the CTest fragments
set from $<TARGET_FILE:...>, or from the constructor's `binaries` argument. RG_DAEMON_WRAPPER
(e.g. "valgrind -q --error-exitcode=99") runs the daemons under a tool; start-up then gets
RG_START_TIMEOUT seconds (default 10).
"""
import base64
import copy
import ipaddress
import json
import os
import poplib
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HOSTNAME = "mail.example.test"
LOCAL_DOMAIN = "example.test"
START_TIMEOUT = float(os.environ.get("RG_START_TIMEOUT", "10"))  # until every port of a started daemon listens
STOP_TIMEOUT = 15.0    # seconds between SIGTERM and SIGKILL
# The first line of an AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report.
SANITIZER_REPORT = re.compile(r"^(==\d+==ERROR: (Address|Leak)Sanitizer|\S+:\d+:\d+: runtime error: )", re.M)
SOCKET_TIMEOUT = 10.0  # default for every socket operation in tests

DAEMONS = {
    "pop3d": ("RG_POP3D", "relaygate-pop3d"),
    "smtpd": ("RG_SMTPD", "relaygate-smtpd"),
    "policyd": ("RG_POLICYD", "relaygate-policyd"),
}
AUTO = "auto"  # a listener "port" value the harness replaces with a free port


def check_loopback(address):
    """Raises unless `address` is in 127.0.0.0/8 or is ::1: tests never touch other hosts."""
    ip = ipaddress.ip_address(address)
    if not ip.is_loopback:
        raise ValueError("tests use loopback addresses only, got %s" % address)
    return address


def free_port(address="127.0.0.1", taken=()):
    """A port nobody listens on right now: bind port 0, read it, close (the config never says 0)."""
    check_loopback(address)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError("no free port found")


def deep_merge(base, override):
    """Returns base with override merged in: dicts recursively, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def connect(port, host="127.0.0.1", source=None, timeout=SOCKET_TIMEOUT):
    """A TCP socket to host:port (loopback only), optionally from source address `source`."""
    check_loopback(host)
    if source is not None:
        check_loopback(source)
    return socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


# ---------------------------------------------------------------------- client programs
# A test whose client program (swaks, msmtp, fetchmail, curl, smtp-sink, testssl.sh) or Perl
# module is missing must not pass silently. In CI (the environment variable CI is set:
# `CI=true bash .ci/run`) a missing client is a FAILURE, since scripts/bootstrap installs them
# all; elsewhere it is a skip, which main() reports in a summary and, when every test of the
# file skipped, as exit code 77 (CTest's SKIP_RETURN_CODE in the .cmake fragments).
SKIP_RETURN_CODE = 77


def in_ci():
    return bool(os.environ.get("CI"))


def missing_client(what):
    """Raises the failure (CI) or the skip (elsewhere) for a missing client program or module."""
    msg = "%s is not installed (scripts/bootstrap installs it)" % what
    if in_ci():
        raise AssertionError("CI: " + msg)
    raise unittest.SkipTest(msg)


def require_tool(name, *alternatives):
    """Path of the client program `name` (or the first of `alternatives` found)."""
    for n in (name,) + alternatives:
        path = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if path:
            return path
    missing_client(name)


def needs_tool(name):
    """Class decorator: every test of the class needs the client program `name`."""
    def wrap(cls):
        if shutil.which(name):
            return cls
        if in_ci():
            def setUpClass(c):
                missing_client(name)
            cls.setUpClass = classmethod(setUpClass)
            return cls
        return unittest.skip("%s is not installed (scripts/bootstrap installs it)" % name)(cls)
    return wrap


def check_perl_modules(proc):
    """After running a Perl client: a missing module ("Can't locate Foo.pm") is a missing client."""
    err = proc.stderr.decode("utf-8", "replace") if isinstance(proc.stderr, bytes) else proc.stderr
    if "Can't locate" in err:
        missing_client("a Perl module (%s)" % err.strip().splitlines()[0])


def main():
    """unittest.main() for the e2e files: prints every skip in a closing summary, and exits 77
    (reported by CTest as skipped, not passed) when no test ran at all."""
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if result.skipped:
        print("\nSKIPPED %d of %d tests:" % (len(result.skipped), result.testsRun), file=sys.stderr)
        for test, reason in result.skipped:
            print("  %s: %s" % (test.id(), reason), file=sys.stderr)
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun and len(result.skipped) == result.testsRun:
        sys.exit(SKIP_RETURN_CODE)
    sys.exit(0)


def secret_forms(secret, *blobs):
    """Every form in which `secret` may have crossed the wire: raw, base64 (SASL LOGIN sends
    base64(password)), and base64 of each whole SASL response that carried it (PLAIN's
    "\\0user\\0password"). A log check against the raw text alone cannot fail when only base64
    was ever sent."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = [raw, base64.b64encode(raw)] + [base64.b64encode(b) for b in blobs]
    return [f.decode("latin-1") for f in forms]


def assert_secret_not_logged(testcase, log, secret, *blobs):
    for form in secret_forms(secret, *blobs):
        testcase.assertNotIn(form, log, "a secret (%r form) is in the log" % form)


def pop3s_login(gw, user, password, timeout=SOCKET_TIMEOUT):
    """USER/PASS over gw's POP3S listener; returns PASS's reply (raises poplib.error_proto on -ERR)."""
    p = poplib.POP3_SSL("127.0.0.1", gw.port("pop3d", tls="implicit"), timeout=timeout, context=client_tls_context())
    try:
        p.user(user)
        return p.pass_(password)
    finally:
        try:
            p.quit()
        except Exception:
            pass


def client_tls_context():
    """TLS client context for the harness' self-signed certificate (no verification)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class POP3From(poplib.POP3):
    """poplib.POP3 whose connection comes from a chosen loopback source address (grants and
    failure counters are per client address: tests log in from 127.0.0.2, 127.0.0.3, ...)."""

    def __init__(self, host, port, source, timeout=SOCKET_TIMEOUT):
        check_loopback(host)
        self._source = check_loopback(source)
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


class LineClient:
    """A tiny line-oriented client over a socket (POP3 or SMTP), every read bounded by timeout."""

    def __init__(self, sock, timeout=SOCKET_TIMEOUT):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    @classmethod
    def open(cls, port, host="127.0.0.1", source=None, timeout=SOCKET_TIMEOUT, tls=False):
        sock = connect(port, host, source, timeout)
        if tls:
            sock = client_tls_context().wrap_socket(sock, server_hostname=HOSTNAME)
        return cls(sock, timeout)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        """Sends one line (CRLF added) and returns the first reply line."""
        self.send(line + "\r\n")
        return self.line()

    def line(self):
        """Next line without its CRLF, as str (latin-1: bytes survive round trips)."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("latin-1")

    def read_until(self, terminator):
        """Raw bytes up to and including `terminator`."""
        while terminator not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        i = self.buf.index(terminator) + len(terminator)
        data, self.buf = self.buf[:i], self.buf[i:]
        return data

    def multiline(self):
        """The lines (bytes, CRLF and byte-stuffing removed) of a dot-terminated POP3 response."""
        lines = []
        while True:
            line = self.line().encode("latin-1")
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def wait_closed(self, timeout=SOCKET_TIMEOUT):
        """Reads until EOF (returns what came) or raises socket.timeout."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def starttls(self):
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Daemon:
    """One started daemon process with its stderr log file."""

    def __init__(self, name, proc, log_path, ports):
        self.name, self.proc, self.log_path, self.ports = name, proc, log_path, ports

    def running(self):
        return self.proc.poll() is None


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def listening_ports(pid=None):
    """Ports in LISTEN state (from /proc/net/tcp{,6}; no connection is made), only those of
    process `pid` if given, so that another program on a port we picked is never mistaken for us."""
    inodes = _socket_inodes(pid) if pid is not None else None
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    if fields[3] == "0A" and (inodes is None or fields[9] in inodes):
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class Gateway:
    """A relaygate installation in a temp dir. Use as a context manager.

    overrides: merged deep into the default config; in listener lists, "port": "auto" (or no
    port) gets a free loopback port. binaries: {"pop3d": path, "smtpd": path, "ctl": path}.
    check_exit: leaving the `with` block (without an exception) raises if a daemon did not
    exit with status 0 on SIGTERM, or had died before (a crash).
    """

    def __init__(self, overrides=None, binaries=None, keep=False, check_exit=False):
        self.binaries = dict(binaries or {})
        self.check_exit = check_exit
        self.exit_codes = {}  # daemon -> status of its last run (negative: killed by that signal)
        self.keep = keep or os.environ.get("RG_KEEP_TMP") == "1"
        self.dir = tempfile.mkdtemp(prefix="rg-e2e-")
        self.var = os.path.join(self.dir, "var")
        os.makedirs(self.var, exist_ok=True)
        self._taken = set()
        self._auto = {}  # daemon -> indexes of the listeners whose port the harness picked
        self.config = deep_merge(self._defaults(), overrides or {})
        for daemon in ("pop3d", "smtpd", "policyd"):
            for i, listener in enumerate(self.config.get(daemon, {}).get("listen", [])):
                if "path" not in listener and listener.get("port", AUTO) == AUTO:
                    listener["port"] = self._port(listener.get("address", "127.0.0.1"))
                    self._auto.setdefault(daemon, []).append(i)
        self.config_path = os.path.join(self.dir, "relaygate.json")
        self._write_config()
        self.daemons = {}

    def _write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    # ------------------------------------------------------------------ config
    def _port(self, address):
        p = free_port(address, self._taken)
        self._taken.add(p)
        return p

    def _defaults(self):
        return {
            "hostname": HOSTNAME,
            "database": "var/relaygate.db",
            "status_file": "var/status.json",
            "maildir_root": "var/mail",
            "spool_dir": "var/spool",
            "local_domains": [LOCAL_DOMAIN],
            # CI runs as root in a temp dir only root can write: stay root explicitly.
            "run_as": {"allow_root": True},
            "tls": {"certificate": "var/tls/cert.pem", "private_key": "var/tls/key.pem"},
            # Issue 5: without a smarthost non-local RCPTs are refused (550 5.7.1). Nothing listens
            # on the discard port 9, so relayed test mail stays queued (deferred for 5 minutes).
            "smarthost": {"host": "127.0.0.1", "port": 9, "tls": "none"},
            "pop3d": {"listen": [
                {"address": "127.0.0.1", "port": AUTO, "tls": "starttls"},
                {"address": "127.0.0.1", "port": AUTO, "tls": "implicit"},
            ]},
            "smtpd": {"listen": [
                {"address": "127.0.0.1", "port": AUTO, "mode": "relay", "tls": "starttls"},
                {"address": "127.0.0.1", "port": AUTO, "mode": "submission", "tls": "starttls"},
                {"address": "127.0.0.1", "port": AUTO, "mode": "submissions", "tls": "implicit"},
            ]},
            # relaygate-policyd (issue 13): gw.start("policyd"), gw.port("policyd"); a grant socket
            # via overrides {"policyd": {"grant_socket": {"path": "var/grant.sock", ...}}}.
            "policyd": {"listen": [{"address": "127.0.0.1", "port": AUTO}]},
        }

    def path(self, key):
        """Absolute path of a path-valued config key ("database", "maildir_root", ...)."""
        value = self.config[key]
        return value if os.path.isabs(value) else os.path.join(self.dir, value)

    def listeners(self, daemon):
        return self.config.get(daemon, {}).get("listen", [])

    def port(self, daemon, tls=None, mode=None):
        """Port of the first listener of `daemon` with that tls (and smtpd mode)."""
        for listener in self.listeners(daemon):
            if (tls is None or listener.get("tls", "none") == tls) and (mode is None or listener.get("mode") == mode):
                return listener["port"]
        raise KeyError("%s has no listener with tls=%s mode=%s" % (daemon, tls, mode))

    # ------------------------------------------------------------------ binaries
    def binary(self, name):
        if name in self.binaries:
            return self.binaries[name]
        env = {"ctl": "RG_CTL"}.get(name) or DAEMONS[name][0]
        if os.environ.get(env):
            return os.environ[env]
        found = shutil.which(DAEMONS[name][1] if name in DAEMONS else "relaygatectl")
        if not found:
            raise RuntimeError("set %s to the %s binary" % (env, name))
        return found

    def ctl(self, *args, input=None, check=True, timeout=60):
        """Runs relaygatectl --config <ours> ARGS; returns the CompletedProcess (text mode)."""
        argv = [self.binary("ctl"), "--config", self.config_path] + [str(a) for a in args]
        p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s: rc=%d\nstdout: %s\nstderr: %s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
        return p

    def add_user(self, name, password, legacy=False):
        args = ["user", "add", name, "--password-stdin"] + (["--legacy-mechs"] if legacy else [])
        self.ctl(*args, input=password + "\n")

    def set_hash(self, name, crypt_hash):
        self.ctl("user", "passwd", name, "--hash-stdin", input=crypt_hash + "\n")

    # ------------------------------------------------------------------ daemons
    def start(self, daemon, extra_args=(), timeout=START_TIMEOUT, attempts=3):
        """Starts `daemon` ("pop3d", "smtpd") and waits until all its ports listen. If another
        program took one of the picked ports meanwhile, picks new ones and tries again."""
        if daemon in self.daemons and self.daemons[daemon].running():
            raise RuntimeError("%s already running" % daemon)
        log_path = os.path.join(self.dir, "%s.log" % daemon)
        for attempt in range(attempts):
            offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
            log = open(log_path, "ab")
            wrapper = shlex.split(os.environ.get("RG_DAEMON_WRAPPER", ""))
            binary = self.binary(daemon)
            argv = wrapper + [binary, "--config", self.config_path] + list(extra_args)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir)
            log.close()
            ports = [l["port"] for l in self.listeners(daemon) if "port" in l]
            d = Daemon(daemon, proc, log_path, ports)
            self.daemons[daemon] = d
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = self.log(daemon)[offset:]
                    if "in use" in tail and self._auto.get(daemon) and attempt + 1 < attempts:
                        for i in self._auto[daemon]:
                            listener = self.listeners(daemon)[i]
                            listener["port"] = self._port(listener.get("address", "127.0.0.1"))
                        self._write_config()
                        break
                    raise RuntimeError("%s exited with %s during start-up:\n%s" % (daemon, proc.returncode, tail))
                if set(ports) <= listening_ports(proc.pid):
                    return d
                if time.monotonic() > deadline:
                    self.stop(daemon)
                    raise RuntimeError("%s did not listen on %s within %.0f s:\n%s" % (daemon, ports, timeout, self.log(daemon)))
                time.sleep(0.02)
        raise RuntimeError("%s: no free ports after %d attempts" % (daemon, attempts))

    def stop(self, daemon, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status (negative: signal)."""
        d = self.daemons.get(daemon)
        if d is None:
            return None
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(timeout)
        self.exit_codes[daemon] = d.proc.returncode
        return d.proc.returncode

    def running(self, daemon):
        """True while `daemon` was started and has not exited (a crash makes it False)."""
        d = self.daemons.get(daemon)
        return d is not None and d.running()

    def signal(self, daemon, sig):
        self.daemons[daemon].proc.send_signal(sig)

    def rewrite_config(self, overrides):
        """Merges overrides into the config file (for SIGHUP reload tests); ports stay as they are."""
        self.config = deep_merge(self.config, overrides)
        self._write_config()

    def restart(self, daemon):
        rc = self.stop(daemon)
        if self.check_exit and rc not in (0, None):
            raise AssertionError("%s exited with %s:\n%s" % (daemon, rc, self.log(daemon)[-3000:]))
        return self.start(daemon)

    def pid(self, daemon):
        return self.daemons[daemon].proc.pid

    def close(self, check=False):
        """Stops every daemon and removes the temp dir; with check, raises for a bad exit status."""
        for name in list(self.daemons):
            self.stop(name)
        bad = {n: rc for n, rc in self.exit_codes.items() if rc not in (0, None)}
        logs = {n: self.log(n)[-3000:] for n in bad}
        # In the sanitizer pass (scripts/test, build-asan) a finding is a failure even where the
        # test does not check exit codes: ASan/UBSan/LSan reports land in the daemon's stderr.
        sanitized = {n: self.log(n) for n in self.daemons if SANITIZER_REPORT.search(self.log(n))}
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if sanitized:
            raise AssertionError("sanitizer report in the log of %s:\n%s" % (", ".join(sanitized), "\n".join(
                log[SANITIZER_REPORT.search(log).start():][:6000] for log in sanitized.values())))
        if check and bad:
            raise AssertionError("daemon exit status %s; log tails:\n%s" % (bad, "\n".join("%s:\n%s" % kv for kv in logs.items())))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(check=self.check_exit and exc_type is None)

    # ------------------------------------------------------------------ logs
    def log(self, daemon):
        """The daemon's stderr so far."""
        try:
            with open(os.path.join(self.dir, "%s.log" % daemon), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, daemon, pattern):
        """Lines of the daemon's log matching the regular expression `pattern`."""
        rx = re.compile(pattern)
        return [l for l in self.log(daemon).splitlines() if rx.search(l)]

    def wait_log(self, daemon, pattern, timeout=5.0, count=1):
        """Waits until at least `count` log lines match; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(daemon, pattern)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError("no %d log line(s) matching %r in %s log:\n%s" % (count, pattern, daemon, self.log(daemon)[-4000:]))
            time.sleep(0.02)

    # ------------------------------------------------------------------ state
    def status(self):
        """The parsed status file, or None if it does not exist yet."""
        try:
            with open(self.path("status_file")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def grants(self):
        """Live grants from the database, via `relaygatectl grant list --json`."""
        return json.loads(self.ctl("grant", "list", "--json").stdout)

    def wait_for(self, predicate, timeout=5.0, interval=0.02, what="condition"):
        """Polls predicate() until truthy; returns its value or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s" % what)
            time.sleep(interval)

    # ------------------------------------------------------------------ Maildir
    def maildir(self, user):
        return os.path.join(self.path("maildir_root"), user)

    def deliver(self, user, data, name=None):
        """Writes one message into <maildir>/<user>/new/ directly (tmp/ then rename); returns its path."""
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), mode=0o700, exist_ok=True)
        Gateway._seq = getattr(Gateway, "_seq", 0) + 1
        if name is None:
            now = time.time()
            name = "%d.M%06dP%dQ%d.harness" % (int(now), int((now % 1) * 1e6), os.getpid(), Gateway._seq)
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        dst = os.path.join(md, "new", name)
        os.rename(tmp, dst)
        return dst

    def messages(self, user, sub):
        """File names in the user's new/ or cur/ folder, sorted."""
        try:
            return sorted(os.listdir(os.path.join(self.maildir(user), sub)))
        except FileNotFoundError:
            return []
