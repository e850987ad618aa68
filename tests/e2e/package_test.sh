#!/usr/bin/env bash
# The Debian package: build it with CPack, install it with dpkg -i on this (throw-away CI)
# machine, check the layout, the relaygate user, the conffile and `relaygatectl config check`;
# an admin adds a user as root and pop3d, started as root and dropped to relaygate, serves that
# user's login; then purge it and check nothing of it is left. Needs root and dpkg (CI has both).
set -euo pipefail
build=$1
[ "$(id -u)" -eq 0 ] || { echo "not root: skipped"; exit 77; }
command -v dpkg >/dev/null || { echo "no dpkg: skipped"; exit 77; }
if dpkg-query -W -f='${Status}' relaygate 2>/dev/null | grep -q "installed"; then
  echo "relaygate is already installed on this machine: not touching it; skipped"; exit 77
fi
out=$(mktemp -d)
pop3d_pid=""
cleanup() {
  if [ -n "$pop3d_pid" ]; then kill "$pop3d_pid" 2>/dev/null || true; wait "$pop3d_pid" 2>/dev/null || true; fi
  dpkg -P relaygate >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cpack -G DEB -B "$out" --config "$build/CPackConfig.cmake" >"$out/cpack.log" 2>&1 || { cat "$out/cpack.log"; fail "cpack"; }
deb=$(ls "$out"/relaygate_*.deb)
dpkg-deb -f "$deb" Package | grep -qx relaygate || fail "package name"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/relaygate/relaygate.json || fail "relaygate.json is not a conffile"

DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" || fail "dpkg -i"
for f in /usr/sbin/relaygate-pop3d /usr/sbin/relaygate-smtpd /usr/sbin/relaygate-policyd /usr/bin/relaygatectl \
         /usr/libexec/relaygate/relaygate-dovecot-postlogin /usr/lib/systemd/system/relaygate-policyd.service \
         /usr/lib/systemd/system/relaygate-pop3d.service /usr/lib/systemd/system/relaygate-smtpd.service \
         /usr/lib/systemd/system/relaygate.target /etc/relaygate/relaygate.json \
         /etc/relaygate/tls/cert.pem /etc/relaygate/tls/key.pem; do
  [ -e "$f" ] || fail "$f missing after install"
done
# Every shared library the programs link is in a package the .deb depends on (a library added
# to the build, libpq for PostgreSQL say, must not work here only because -dev pulled it in).
depends=$(dpkg-deb -f "$deb" Depends)
for bin in /usr/sbin/relaygate-pop3d /usr/sbin/relaygate-smtpd /usr/sbin/relaygate-policyd /usr/bin/relaygatectl \
           /usr/libexec/relaygate/relaygate-dovecot-postlogin; do
  for lib in $(objdump -p "$bin" | awk '$1 == "NEEDED" && $2 !~ /^ld-linux/ {print $2}'); do
    path=$(ldd "$bin" | awk -v l="$lib" '$1 == l {print $3}')
    [ -n "$path" ] || fail "$bin: $lib not found"
    # dpkg knows a library by the path its package ships (/lib or /usr/lib, link or target).
    pkg=""
    for p in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr${path}"; do
      pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 || true)
      [ -n "$pkg" ] && break
    done
    [ -n "$pkg" ] || fail "$bin: $lib ($path) belongs to no package"
    tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/[ (].*//' | grep -qxF "$pkg" || fail "$bin links $lib from $pkg, which Depends ($depends) lacks"
  done
done
# The man pages, gzipped (checked in the package: an image's dpkg path-exclude may drop
# /usr/share/man on disk), and the fail2ban example, a disabled jail plus its filter (conffiles).
contents=$(dpkg-deb -c "$deb")
for m in man8/relaygatectl.8.gz man8/relaygate-smtpd.8.gz man8/relaygate-pop3d.8.gz man8/relaygate-policyd.8.gz \
         man5/relaygate.json.5.gz; do
  grep -q " \./usr/share/man/$m\$" <<<"$contents" || fail "man page $m not in the package"
done
for f in /etc/fail2ban/filter.d/relaygate.conf /etc/fail2ban/jail.d/relaygate.conf \
         /usr/share/doc/relaygate/examples/fail2ban/filter.d/relaygate.conf \
         /usr/share/doc/relaygate/examples/fail2ban/jail.d/relaygate.conf \
         /usr/share/relaygate/postfix/relaygate-grants-sqlite.cf /usr/share/relaygate/postfix/relaygate-grants-pgsql.cf; do
  [ -e "$f" ] || fail "$f missing after install"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/fail2ban/jail.d/relaygate.conf || fail "fail2ban jail is not a conffile"
grep -qx 'enabled = false' /etc/fail2ban/jail.d/relaygate.conf || fail "the fail2ban jail is not disabled"
getent passwd relaygate >/dev/null || fail "no relaygate system user"
for d in /var/lib/relaygate /var/spool/relaygate; do
  [ "$(stat -c %U "$d")" = relaygate ] || fail "$d not owned by relaygate"
done
[ "$(stat -c %a /etc/relaygate/tls/key.pem)" = 640 ] || fail "key.pem mode"
/usr/bin/relaygatectl --config /etc/relaygate/relaygate.json config check || fail "config check"
/usr/sbin/relaygate-smtpd --config /etc/relaygate/relaygate.json --check-config || fail "smtpd --check-config"
# The installed production config names the production ports.
grep -q '"port": 25,' /etc/relaygate/relaygate.json && grep -q '"port": 995,' /etc/relaygate/relaygate.json || fail "ports"

# The admin adds a user as root; the daemons run as relaygate and must be able to write the
# database at every login (a root-owned 0644 database failed them with "readonly database").
conf=/etc/relaygate/relaygate.json
db=/var/lib/relaygate/relaygate.db
printf 'alice-password\n' | /usr/bin/relaygatectl --config "$conf" user add alice --password-stdin || fail "user add as root"
[ "$(stat -c %U:%G "$db")" = relaygate:relaygate ] || fail "$db is $(stat -c %U:%G "$db"), not relaygate:relaygate"
[ $((8#$(stat -c %a "$db") & 8#007)) -eq 0 ] || fail "$db is world-accessible ($(stat -c %a "$db"))"
for side in "$db-wal" "$db-shm"; do
  [ ! -e "$side" ] || [ "$(stat -c %U "$side")" = relaygate ] || fail "$side not owned by relaygate"
done

# pop3d started by hand as root on a copy of the installed config that keeps its database,
# Maildir and status paths but listens only on loopback, on a free port: it binds, becomes
# relaygate, and serves alice's USER/PASS after STLS (self-signed certificate: not verified).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$conf" "$out/pop3d.json" "$port" <<'PY' || fail "writing the pop3d test config"
import json, sys
def strip_comments(text):  # the installed config has // and /* */ comments; Python's json has none
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1]); i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True; out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i) - 1 if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 1
        else:
            out.append(c)
        i += 1
    return "".join(out)
cfg = json.loads(strip_comments(open(sys.argv[1]).read()))
cfg["pop3d"]["listen"] = [{"address": "127.0.0.1", "port": int(sys.argv[3]), "tls": "starttls"}]
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
PY
/usr/sbin/relaygate-pop3d --config "$out/pop3d.json" >"$out/pop3d.log" 2>&1 &
pop3d_pid=$!
for _ in $(seq 100); do
  kill -0 "$pop3d_pid" 2>/dev/null || { cat "$out/pop3d.log"; fail "pop3d exited at start-up"; }
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null && break
  sleep 0.1
done
python3 - "$port" <<'PY' || { cat "$out/pop3d.log"; fail "POP3 login of alice as the relaygate user"; }
import poplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
p.stls(ctx)
p.user("alice")
reply = p.pass_("alice-password")
assert reply.startswith(b"+OK"), reply
p.quit()
print("pop3: alice logged in:", reply.decode())
PY
[ "$(ps -o user= -p "$pop3d_pid" | tr -d ' ')" = relaygate ] || fail "pop3d does not run as relaygate"
kill -TERM "$pop3d_pid"
for _ in $(seq 100); do kill -0 "$pop3d_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pop3d_pid" 2>/dev/null && fail "pop3d did not stop on SIGTERM"
wait "$pop3d_pid" || { cat "$out/pop3d.log"; fail "pop3d exit status after SIGTERM"; }
pop3d_pid=""
/usr/bin/relaygatectl --config "$conf" grant list --json | python3 -c '
import json, sys
grants = json.load(sys.stdin)
assert [(g["ip"], g["user"], g["method"]) for g in grants] == [("127.0.0.1", "alice", "pop3")], grants
' || fail "no pop3 grant for alice after her login"
# The login made alice's Maildir; purge keeps Maildirs that are not empty (users' mail), so the
# test removes its own to leave nothing behind.
rm -rf /var/lib/relaygate/mail/alice

dpkg -r relaygate >/dev/null || fail "dpkg -r"
[ -e /usr/sbin/relaygate-smtpd ] && fail "binary left after remove"
[ -e /etc/relaygate/relaygate.json ] || fail "conffile removed by remove (only purge may)"
dpkg -P relaygate >/dev/null || fail "dpkg -P"
[ -e /etc/relaygate ] && fail "/etc/relaygate left after purge"
[ -e /etc/fail2ban/jail.d/relaygate.conf ] && fail "fail2ban jail left after purge"
[ -e /var/lib/relaygate ] && fail "/var/lib/relaygate left after purge"
dpkg-query -W relaygate >/dev/null 2>&1 && fail "package still known to dpkg"
echo "package: install, config check, root-added user served by pop3d as relaygate, remove and purge OK"
