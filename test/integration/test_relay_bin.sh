#!/usr/bin/env bash
# roost-relay as a program: argument errors, start-up on an ephemeral state
# directory, a clean exit 0 on SIGTERM and on SIGINT. TAP output.
set -u
B=${ROOST_BUILD:-build}
R=$B/roost-relay
CLI=$B/roost-cli
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }

echo "1..8"
scripts/dev-cert "$T/state" >/dev/null
$CLI keygen --out "$T/state/token.keys" >/dev/null 2>&1

$R --bogus >/dev/null 2>"$T/err"; rc=$?
check "unknown option exits 2" '[ $rc -eq 2 ]'
$R --cert x >/dev/null 2>"$T/err"; rc=$?
check "missing --key is refused" '[ $rc -eq 2 ] && grep -q -- "--cert and --key are required" "$T/err"'
$R --cert "$T/state/server.pem" --key "$T/state/server.key" --port 0 >/dev/null 2>"$T/err"; rc=$?
check "port 0 is an invalid value" '[ $rc -eq 2 ] && grep -q "invalid value for --port" "$T/err"'
$R --cert "$T/state/server.pem" --key "$T/state/server.key" --port 24433 2>"$T/err" >/dev/null; rc=$?
check "no token keys and no dev flag: refuses to start" '[ $rc -eq 1 ] && grep -q "token key file is required" "$T/err"'

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
for sig in TERM INT; do
    # A free UDP port and an ephemeral admin port (the default 9464 clashes
    # with any other relay on the machine); up to 30 s to start, which an
    # ASan build on a loaded machine can need.
    port=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $R --listen 127.0.0.1 --port $port --workers 2 --cert "$T/state/server.pem" \
        --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
        --state-dir "$T/state" --admin-port 0 2>"$T/log.$sig" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q "event=start" "$T/log.$sig" && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    check "starts (SIG$sig run)" 'grep -q "event=start .*workers=2" "$T/log.$sig"'
    kill -$sig $pid
    wait $pid; rc=$?
    check "exits 0 on SIG$sig" '[ $rc -eq 0 ] && grep -q "event=exit" "$T/log.$sig"'
done
exit $fail
