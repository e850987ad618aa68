#!/usr/bin/env bash
# The Debian package: build it with CPack, install it with dpkg -i on this (throw-away CI)
# machine, check the layout, the relaygate user, the conffile and `relaygatectl config check`,
# then purge it and check nothing of it is left. Needs root and dpkg (CI has both).
set -euo pipefail
build=$1
[ "$(id -u)" -eq 0 ] || { echo "not root: skipped"; exit 77; }
command -v dpkg >/dev/null || { echo "no dpkg: skipped"; exit 77; }
if dpkg-query -W -f='${Status}' relaygate 2>/dev/null | grep -q "installed"; then
  echo "relaygate is already installed on this machine: not touching it; skipped"; exit 77
fi
out=$(mktemp -d)
cleanup() {
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
for f in /usr/sbin/relaygate-pop3d /usr/sbin/relaygate-smtpd /usr/bin/relaygatectl \
         /usr/lib/systemd/system/relaygate-pop3d.service /usr/lib/systemd/system/relaygate-smtpd.service \
         /usr/lib/systemd/system/relaygate.target /etc/relaygate/relaygate.json \
         /etc/relaygate/tls/cert.pem /etc/relaygate/tls/key.pem; do
  [ -e "$f" ] || fail "$f missing after install"
done
getent passwd relaygate >/dev/null || fail "no relaygate system user"
for d in /var/lib/relaygate /var/spool/relaygate; do
  [ "$(stat -c %U "$d")" = relaygate ] || fail "$d not owned by relaygate"
done
[ "$(stat -c %a /etc/relaygate/tls/key.pem)" = 640 ] || fail "key.pem mode"
/usr/bin/relaygatectl --config /etc/relaygate/relaygate.json config check || fail "config check"
/usr/sbin/relaygate-smtpd --config /etc/relaygate/relaygate.json --check-config || fail "smtpd --check-config"
# The installed production config names the production ports.
grep -q '"port": 25,' /etc/relaygate/relaygate.json && grep -q '"port": 995,' /etc/relaygate/relaygate.json || fail "ports"

dpkg -r relaygate >/dev/null || fail "dpkg -r"
[ -e /usr/sbin/relaygate-smtpd ] && fail "binary left after remove"
[ -e /etc/relaygate/relaygate.json ] || fail "conffile removed by remove (only purge may)"
dpkg -P relaygate >/dev/null || fail "dpkg -P"
[ -e /etc/relaygate ] && fail "/etc/relaygate left after purge"
dpkg-query -W relaygate >/dev/null 2>&1 && fail "package still known to dpkg"
echo "package: install, config check, remove and purge OK"
