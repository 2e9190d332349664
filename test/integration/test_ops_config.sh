#!/usr/bin/env bash
# roost-relay --check-config: exit status and "file:line: key: message" for
# every error; the example configuration passes. TAP output for prove.
set -u
B=${ROOST_BUILD:-build}
R=$B/roost-relay
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
echo "1..7"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; }

cat >"$d/bad.conf" <<'CONF'
[server]
port = 99999
workers = two
[limits]
idle_timeout = 30 parsecs
bogus = 1
[admin]
max_members = 3
CONF
out=$("$R" -c "$d/bad.conf" --check-config 2>&1); rc=$?
[ $rc -ne 0 ] && ok "bad config exits non-zero ($rc)" || nok "bad config exits non-zero"
want=("$d/bad.conf:2: port:" "$d/bad.conf:3: workers:" "$d/bad.conf:5: idle_timeout:"
      "$d/bad.conf:6: bogus: unknown key" "$d/bad.conf:8: max_members: belongs in section [limits]")
miss=0
for w in "${want[@]}"; do grep -qF -- "$w" <<<"$out" || { echo "# missing: $w"; miss=1; }; done
[ $miss -eq 0 ] && ok "every error named by file:line:key" || { nok "every error named"; echo "$out" | sed 's/^/# /'; }

out=$("$R" --check-config --max-rooms=abc --cert /nonexistent 2>&1); rc=$?
[ $rc -ne 0 ] && grep -qF "command line: invalid value for --max-rooms" <<<"$out" && ok "command-line errors reported" \
    || { nok "command-line errors reported"; echo "$out" | sed 's/^/# /'; }

certs=$d/certs
scripts/dev-cert "$certs" >/dev/null 2>&1
"$B/roost-cli" keygen --out "$d/keys" >/dev/null 2>&1
sed -e "s|^# *cert = .*|cert = $certs/server.pem|" -e "s|^# *key = .*|key = $certs/server.key|" \
    -e "s|^# *token_keys = .*|token_keys = $d/keys|" scripts/roost.conf.example >"$d/good.conf"
out=$("$R" -c "$d/good.conf" --check-config 2>&1); rc=$?
[ $rc -eq 0 ] && ok "example config (with files filled in) is valid" \
    || { nok "example config valid"; echo "$out" | sed 's/^/# /'; }

out=$("$R" -c "$d/good.conf" --check-config --token-keys /nonexistent 2>&1); rc=$?
[ $rc -ne 0 ] && grep -qF "command line: token_keys" <<<"$out" && ok "command line overrides the file" \
    || { nok "command line overrides the file"; echo "$out" | sed 's/^/# /'; }

out=$("$R" -c "$d/missing.conf" --check-config 2>&1); rc=$?
[ $rc -ne 0 ] && grep -qF "$d/missing.conf" <<<"$out" && ok "missing file reported" \
    || { nok "missing file reported"; echo "$out" | sed 's/^/# /'; }

# The shipped unit passes systemd's own checks (with the binary path of
# this build, since /usr/local/bin may not hold one).
if command -v systemd-analyze >/dev/null 2>&1; then
    case $R in /*) rbin=$R ;; *) rbin=$PWD/$R ;; esac
    sed "s|/usr/local/bin/roost-relay|$rbin|g" scripts/roost-relay.service >"$d/roost-relay.service"
    out=$(systemd-analyze verify "$d/roost-relay.service" 2>&1); rc=$?
    [ $rc -eq 0 ] && ok "systemd-analyze verify roost-relay.service" \
        || { nok "systemd-analyze verify roost-relay.service"; echo "$out" | sed 's/^/# /'; }
else
    ok "# SKIP systemd-analyze not installed"
fi
