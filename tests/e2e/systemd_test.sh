#!/usr/bin/env bash
# systemd-analyze verify passes for every unit, and each service rates "OK" or better
# (exposure <= 4.0) in systemd-analyze security. Units are checked in a scratch root where
# /usr/sbin holds the freshly built daemons, so ExecStart= paths resolve.
set -euo pipefail
units=$1 pop3d=$2 smtpd=$3 policyd=$4
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed: skipped"; exit 77; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/sbin" "$root/etc/systemd/system" "$root/bin" "$root/usr/lib/systemd"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"  # the targets our units order against
cp "$pop3d" "$root/usr/sbin/relaygate-pop3d"
cp "$smtpd" "$root/usr/sbin/relaygate-smtpd"
cp "$policyd" "$root/usr/sbin/relaygate-policyd"
cp /bin/kill "$root/bin/kill"
cp "$units"/*.service "$units"/*.target "$root/etc/systemd/system/"
fail=0
( cd "$root/etc/systemd/system" && systemd-analyze verify --root="$root" relaygate.target relaygate-pop3d.service relaygate-smtpd.service relaygate-policyd.service ) \
  >"$root/verify.log" 2>&1 || fail=1
# verify prints problems even when it exits 0 for some of them: any line is a finding.
if [ -s "$root/verify.log" ]; then cat "$root/verify.log"; fail=1; fi
for u in relaygate-pop3d.service relaygate-smtpd.service relaygate-policyd.service; do
  out=$(cd "$root/etc/systemd/system" && systemd-analyze security --offline=yes --root="$root" "$u" 2>&1 | tail -1)
  echo "$out"
  level=$(echo "$out" | grep -oE 'exposure level for [^:]+: [0-9.]+' | awk '{print $NF}')
  if [ -z "$level" ] || ! awk -v l="$level" 'BEGIN { exit !(l <= 4.0) }'; then
    echo "FAIL: $u exposure ${level:-unknown} > 4.0"; fail=1
  fi
done
[ $fail -eq 0 ] && echo "units: verify clean, exposure OK"
exit $fail
