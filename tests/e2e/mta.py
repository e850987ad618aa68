"""Throwaway Postfix 3.7 and Dovecot 2.3 instances for the issue 13 integration tests.

`Postfix(folder, ...)` writes a main.cf and master.cf into <folder>/postfix/etc (queue,
data and Maildirs under <folder> too), starts the master with `postfix -c DIR start`, and
stops it with `postfix -c DIR stop`, then SIGKILLs whatever is left of it (the master by its
pid file, its children by their working folder, which is the queue folder). `Dovecot(folder,
...)` writes one dovecot.conf and runs `dovecot -F -c FILE` as a child. Both listen on free
loopback ports only, log to a file in the folder (Postfix: maillog_file, 3.4+; Dovecot:
log_path), and refuse the system instance's folders (/etc/postfix, /etc/dovecot). A watchdog
process stops both if the test process dies without doing it (a CTest timeout is a SIGKILL).

Both masters need root (they start their services as postfix/dovecot/dovenull and the mail
user); `require_root()` makes a non-root run outside CI a skip (exit 77), as a missing program
is (harness.require_tool).
"""
import atexit
import ctypes
import os
import pwd
import grp
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

START_TIMEOUT = 20.0   # seconds until every port of a started master listens
STOP_TIMEOUT = 15.0    # seconds for an orderly stop, then SIGKILL
TOOL_TIMEOUT = 30.0    # postfix check/start/stop, postmap
MAIL_UID = 35250       # numeric uid/gid owning the Maildirs (no passwd entry needed)
MAIL_GID = 35250
SYSTEM_FOLDERS = ("/etc/postfix", "/etc/dovecot")
LOCAL_DOMAIN = "example.test"


def require_root():
    """Postfix's and Dovecot's masters must start as root: elsewhere than CI a skip."""
    if os.geteuid() != 0:
        msg = "needs root: the Postfix and Dovecot masters start as root"
        if harness.in_ci():
            raise AssertionError("CI: " + msg)
        raise unittest.SkipTest(msg)


def _refuse_system(path):
    real = os.path.realpath(path)
    for system in SYSTEM_FOLDERS:
        if real == system or real.startswith(system + "/"):
            raise ValueError("refusing the system instance's folder %s" % real)
    return real


def _die_with_parent():
    """In a child before exec: SIGTERM when the test process dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _pids_with_cwd_under(folder):
    """Processes whose working folder is inside `folder` (a Postfix service runs in its queue folder)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if cwd == folder or cwd.startswith(folder + "/"):
            pids.append(int(entry))
    return pids


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def maildir(base, user):
    return os.path.join(base, user)


def make_maildir(root, user):
    """<root>/<user>/{cur,new,tmp} owned by MAIL_UID (both servers deliver/read as that uid)."""
    path = os.path.join(root, user)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for dirpath, _dirs, _files in os.walk(path):
        os.chown(dirpath, MAIL_UID, MAIL_GID)
    return path


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class _Watchdog:
    """A detached process holding the read end of a pipe: when this process dies the pipe
    closes and it runs the cleanup commands (tests/pgtest.py does the same for PostgreSQL)."""

    def __init__(self, commands):
        r, w = os.pipe()
        script = ("import os, subprocess, sys\n"
                  "if os.fork(): os._exit(0)\n"
                  "while sys.stdin.buffer.read(4096): pass\n"
                  "for cmd in %r:\n"
                  "    try: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)\n"
                  "    except Exception: pass\n" % (commands,))
        p = subprocess.Popen([sys.executable, "-c", script], stdin=r, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        os.close(r)
        p.wait(timeout=10)
        os.set_inheritable(w, False)
        self._w = os.fdopen(w, "w")

    def close(self):
        if self._w is not None:
            self._w.close()
            self._w = None


class Postfix:
    """A standalone Postfix instance in `folder`/postfix.

    smtpd listens on 127.0.0.1:<free port> (self.port); the local domain example.test is
    delivered by virtual(8) into Maildirs <folder>/postfix/mail/<user>/ for `local_users`;
    everything else goes to relayhost [127.0.0.1]:relay_port. `main` adds or replaces main.cf
    parameters (values written as given: braces and commas are fine there).
    """

    def __init__(self, folder, relay_port, local_users=("alice",), main=None):
        self.postfix = harness.require_tool("postfix", "/usr/sbin/postfix")
        self.postmap_bin = harness.require_tool("postmap", "/usr/sbin/postmap")
        self.base = os.path.join(folder, "postfix")
        self.etc = _refuse_system(os.path.join(self.base, "etc"))
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.mail = os.path.join(self.base, "mail")
        self.log_path = os.path.join(self.base, "postfix.log")
        self.port = harness.free_port()
        self.running = False
        self._watchdog = None
        for d in (self.etc, self.queue, self.mail):
            os.makedirs(d, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        # Postfix's services (user postfix) walk into the queue and read the config.
        for d in (folder, self.base, self.etc, self.mail):
            os.chmod(d, 0o755)
        self.local_users = list(local_users)
        for user in self.local_users:
            make_maildir(self.mail, user)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            f.writelines("%s@%s %s/\n" % (u, LOCAL_DOMAIN, u) for u in self.local_users)
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "meta_directory": "/etc/postfix",  # postfix-files, dynamicmaps.cf (sqlite:, pgsql:)
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.base,
            "myhostname": "mx.example.test",
            "mydomain": LOCAL_DOMAIN,
            "myorigin": "$mydomain",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            # None of the tests' source addresses (127.0.0.2...) may be in mynetworks.
            "mynetworks": "127.0.0.100/32",
            "smtp_bind_address": "127.0.0.1",
            "relayhost": "[127.0.0.1]:%d" % relay_port,
            "relay_domains": "",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "biff": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            "virtual_mailbox_domains": LOCAL_DOMAIN,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "texthash:%s/vmailbox" % self.etc,
            "virtual_uid_maps": "static:%d" % MAIL_UID,
            "virtual_gid_maps": "static:%d" % MAIL_GID,
            "virtual_minimum_uid": "100",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        params.update(main or {})
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# generated by tests/e2e/mta.py: a throwaway instance\n")
            f.writelines("%s = %s\n" % kv for kv in params.items())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF % {"port": self.port})

    # ------------------------------------------------------------------ lifecycle
    def _run(self, *args, check=True):
        p = subprocess.run([self.postfix, "-c", self.etc] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        if check and p.returncode != 0:
            raise RuntimeError("postfix %s failed (%d):\n%s%s\n%s" % (" ".join(args), p.returncode, p.stdout, p.stderr,
                                                                     self.log()[-3000:]))
        return p

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        self._watchdog = _Watchdog([[self.postfix, "-c", self.etc, "stop"]])
        atexit.register(self.stop)
        self._run("start")  # runs `postfix check` first (and creates the queue folders)
        self.running = True
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            pid = self.master_pid()
            if pid and self.port in harness.listening_ports(pid):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Postfix did not listen on %d within %.0f s:\n%s" % (self.port, START_TIMEOUT,
                                                                                       self.log()[-3000:]))
            time.sleep(0.05)

    def stop(self):
        if not self.running:
            return
        self.running = False
        pid = self.master_pid()
        try:
            self._run("stop", check=False)
        except subprocess.TimeoutExpired:
            pass
        if pid and not _wait_gone([pid], STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
        left = _pids_with_cwd_under(self.queue)
        if left and not _wait_gone(left, 5):
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        if self._watchdog:
            self._watchdog.close()
            self._watchdog = None

    def reload(self):
        self._run("reload")

    # ------------------------------------------------------------------ observing
    def log(self):
        return read_file(self.log_path)

    def wait_log(self, pattern, timeout=10.0):
        """Waits until a maillog line matches `pattern`; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("no Postfix log line matching %r:\n%s" % (pattern, self.log()[-4000:]))
            time.sleep(0.05)

    def maildir_messages(self, user):
        """Contents of the messages in <user>'s Maildir new/."""
        new = os.path.join(self.mail, user, "new")
        return [read_file(os.path.join(new, n)) for n in sorted(os.listdir(new))]

    def postmap_query(self, key, table, user="postfix"):
        """`postmap -q KEY TABLE` run as `user` with only its primary group, as Postfix's own
        daemons run (set_ugid() drops supplementary groups). Returns (exit status, stdout, stderr):
        0 found, 1 not found, 2 and more an error."""
        pw = pwd.getpwnam(user)
        argv = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--clear-groups", "--",
                self.postmap_bin, "-c", self.etc, "-q", key, table]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        return p.returncode, p.stdout.strip(), p.stderr.strip()


MASTER_CF = """\
# generated by tests/e2e/mta.py: no chroot, one smtpd on loopback
# service     type  private unpriv chroot wakeup maxproc command
127.0.0.1:%(port)d inet n     -      n      -      20      smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
virtual    unix  -       n       n       -       -       virtual
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""


class Dovecot:
    """A standalone Dovecot instance in `folder`/dovecot: IMAP and POP3 (plaintext, ssl = no)
    on free loopback ports, users from a passwd-file ({PLAIN} passwords), Maildirs
    <folder>/dovecot/mail/<user>/ owned by MAIL_UID, an auth socket for Postfix's SASL
    (self.auth_socket, owned by postfix) and, with `postlogin` = (program, grant socket), the
    post-login services that run `program --method=dovecot-imap|dovecot-pop3 --socket=SOCKET`
    as user `postlogin_user` after every completed login (README "Use with an existing Dovecot").
    """

    def __init__(self, folder, users, postlogin=None, postlogin_user="dovecot", postlogin_group="relaygate"):
        self.binary = harness.require_tool("dovecot", "/usr/sbin/dovecot")
        self.base = os.path.join(folder, "dovecot")
        self.conf = os.path.join(_refuse_system(self.base), "dovecot.conf")
        self.run_dir = os.path.join(self.base, "run")
        self.state_dir = os.path.join(self.base, "state")
        self.mail = os.path.join(self.base, "mail")
        self.log_path = os.path.join(self.base, "dovecot.log")
        self.auth_socket = os.path.join(self.run_dir, "auth-postfix")
        self.ports = {"imap": harness.free_port()}
        self.ports["pop3"] = harness.free_port(taken={self.ports["imap"]})
        self.proc = None
        self._watchdog = None
        for d in (self.base, self.run_dir, self.state_dir, self.mail):
            os.makedirs(d, exist_ok=True)
        for d in (folder, self.base, self.run_dir, self.mail):
            os.chmod(d, 0o755)
        users_file = os.path.join(self.base, "users")
        with open(users_file, "w") as f:
            f.writelines("%s:{PLAIN}%s::::::\n" % (u, p) for u, p in users.items())
        os.chown(users_file, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(users_file, 0o640)
        for user in users:
            make_maildir(self.mail, user)
        services = ""
        if postlogin:
            program, grant_socket = postlogin
            for proto in ("imap", "pop3"):
                services += POSTLOGIN_CONF % {"proto": proto, "program": program, "socket": grant_socket,
                                              "user": postlogin_user, "group": postlogin_group}
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF % {"name": "rg-test-%d" % os.getpid(), "run": self.run_dir, "state": self.state_dir,
                                    "log": self.log_path, "users": users_file, "uid": MAIL_UID, "gid": MAIL_GID,
                                    "mail": self.mail, "imap": self.ports["imap"], "pop3": self.ports["pop3"]}
                    + services)

    def start(self):
        check = subprocess.run([self.binary, "-c", self.conf, "-n"], capture_output=True, text=True,
                               timeout=TOOL_TIMEOUT)
        if check.returncode != 0:
            raise RuntimeError("doveconf refused %s:\n%s" % (self.conf, check.stderr))
        err = open(os.path.join(self.base, "dovecot.stderr"), "ab")
        self.proc = subprocess.Popen([self.binary, "-F", "-c", self.conf], stdin=subprocess.DEVNULL, stdout=err,
                                     stderr=err, preexec_fn=_die_with_parent)
        err.close()
        self._watchdog = _Watchdog([["kill", "-TERM", str(self.proc.pid)]])
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not (set(self.ports.values()) <= harness.listening_ports() and os.path.exists(self.auth_socket)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Dovecot did not listen on %s:\n%s%s" % (
                    self.ports, read_file(os.path.join(self.base, "dovecot.stderr")), self.log()[-3000:]))
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._watchdog:
            self._watchdog.close()
            self._watchdog = None

    def log(self):
        return read_file(self.log_path)

    def wait_log(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("no Dovecot log line matching %r:\n%s" % (pattern, self.log()[-4000:]))
            time.sleep(0.05)


DOVECOT_CONF = """\
# generated by tests/e2e/mta.py: a throwaway instance
instance_name = %(name)s
base_dir = %(run)s
state_dir = %(state)s
protocols = imap pop3
listen = 127.0.0.1
log_path = %(log)s
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
mail_location = maildir:~/
passdb {
  driver = passwd-file
  args = %(users)s
}
userdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=%(mail)s/%%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(imap)d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %(pop3)d
  }
  inet_listener pop3s {
    port = 0
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
"""

# README "Use with an existing Dovecot": the same text, with the test's paths.
POSTLOGIN_CONF = """\
service %(proto)s-postlogin {
  executable = script-login %(program)s --method=dovecot-%(proto)s --socket=%(socket)s
  user = %(user)s
  # the group of relaygate-policyd's grant socket (mode 0660): post-login processes get only
  # their primary group otherwise
  extra_groups = %(group)s
  unix_listener %(proto)s-postlogin {
  }
}
service %(proto)s {
  executable = %(proto)s %(proto)s-postlogin
}
"""
