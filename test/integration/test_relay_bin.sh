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

echo "1..10"
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

for sig in TERM INT; do
    port=$((24000 + RANDOM % 1000))
    $R --listen 127.0.0.1 --port $port --workers 2 --cert "$T/state/server.pem" \
        --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
        --state-dir "$T/state" 2>"$T/log.$sig" &
    pid=$!
    for _ in $(seq 1 50); do grep -q "event=start" "$T/log.$sig" && break; sleep 0.1; done
    check "starts (SIG$sig run)" 'grep -q "event=start .*workers=2" "$T/log.$sig"'
    kill -$sig $pid
    wait $pid; rc=$?
    check "exits 0 on SIG$sig" '[ $rc -eq 0 ] && grep -q "event=exit" "$T/log.$sig"'
done

# Admin lockout (issue 16): more idle TCP connections than admin_conn_limit
# must not keep /healthz away for longer than the idle timeout allows:
# slots free every admin_conn_timeout, so a request queued behind Q idle
# connections waits about ceil((Q + 1) / limit) * timeout.
start_relay() { # name, extra args...
    local name=$1
    shift
    port=$((25000 + RANDOM % 1000))
    $R --listen 127.0.0.1 --port $port --workers 1 --cert "$T/state/server.pem" \
        --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
        --state-dir "$T/state" --admin-port 0 "$@" 2>"$T/log.$name" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "event=start" "$T/log.$name" && break; sleep 0.1; done
    aport=$(sed -n 's/.*event=start.* admin=127.0.0.1:\([0-9]*\).*/\1/p' "$T/log.$name")
}
lockout() { # admin port, idle connections, bound in seconds -> prints elapsed, exit 0 if within
    python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
port, n, bound = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
idle = []
for _ in range(n):
    s = socket.socket()
    s.connect(("127.0.0.1", port))  # completes in the kernel even beyond the limit
    idle.append(s)
time.sleep(0.2)
t0 = time.monotonic()
h = socket.create_connection(("127.0.0.1", port), timeout=bound + 5)
h.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = h.recv(4096)
    if not b:
        break
    data += b
dt = time.monotonic() - t0
print("# %d idle connections: /healthz answered in %.2f s (bound %.1f s): %r"
      % (n, dt, bound, data.split(b"\r\n")[0]))
sys.exit(0 if b" 200 " in data and dt <= bound else 1)
PY
}
start_relay lock1
check "100 idle admin connections (default limit): /healthz within 1 s" 'lockout $aport 100 1'
kill -TERM $pid; wait $pid
# limit 16, timeout 1 s, 40 idle ahead: ceil(41 / 16) = 3 rounds of 1 s, plus 1 s margin.
start_relay lock2 --admin-conn-limit 16 --admin-conn-timeout 1s
check "40 idle over a limit of 16: /healthz within 3 timeouts + 1 s" 'lockout $aport 40 4'
kill -TERM $pid; wait $pid
exit $fail
