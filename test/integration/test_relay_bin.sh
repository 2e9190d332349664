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

echo "1..23"
scripts/dev-cert "$T/state" >/dev/null
$CLI keygen --out "$T/state/token.keys" >/dev/null 2>&1

$R --bogus >/dev/null 2>"$T/err"; rc=$?
check "unknown option exits 2" '[ $rc -eq 2 ]'
$R --cert x >/dev/null 2>"$T/err"; rc=$?
check "missing --key is refused" '[ $rc -eq 2 ] && grep -q -- "--cert and --key are required" "$T/err"'
$R --cert "$T/state/server.pem" --key "$T/state/server.key" --port 0 >/dev/null 2>"$T/err"; rc=$?
check "port 0 is an invalid value" '[ $rc -eq 2 ] && grep -q "invalid value for --port" "$T/err"'
$R --cert "$T/state/server.pem" --key "$T/state/server.key" --affinity-max-members some >/dev/null 2>"$T/err"; rc=$?
check "--affinity-max-members takes a number or auto" '[ $rc -eq 2 ] && grep -q "invalid value for --affinity-max-members: expected a decimal number or auto" "$T/err"'
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
    # Two workers: the kernel steers by connection ID, said once at start.
    check "steering on, logged once (SIG$sig run)" \
        '[ "$(grep -c "event=steering mode=cid workers=2" "$T/log.$sig")" -eq 1 ]'
    # Room affinity auto (session 7): 8 when the program that loaded is
    # ebpf (root), off under cbpf or hash; said at start and in the banner.
    if grep -q "event=steering .*program=ebpf" "$T/log.$sig"; then want=8; mode=ebpf; else want=0; mode='[a-z]*'; fi
    check "affinity auto resolved by the steering program (SIG$sig run)" \
        'grep -q "event=affinity affinity_max_members=$want setting=auto steering=$mode" "$T/log.$sig" &&
         grep -q "event=start .*affinity_max_members=$want " "$T/log.$sig"'
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

# One relay per port (issue 16): a second relay on the same address:port is
# refused (lock file in the state dir names the PID; without a shared state
# dir the probe bind without SO_REUSEPORT finds the port taken), and the
# first keeps serving.
start_relay first
$R --listen 127.0.0.1 --port $port --workers 1 --cert "$T/state/server.pem" \
    --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
    --state-dir "$T/state" --admin-port 0 >/dev/null 2>"$T/err2"; rc=$?
check "second relay, same state dir: exits 1 naming the port and the PID" \
    '[ $rc -eq 1 ] && grep -q "UDP 127.0.0.1:$port is in use by another roost-relay (pid $pid" "$T/err2"'
mkdir -p "$T/other"
$R --listen 127.0.0.1 --port $port --workers 1 --cert "$T/state/server.pem" \
    --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
    --state-dir "$T/other" --admin-port 0 >/dev/null 2>"$T/err3"; rc=$?
check "second relay, other state dir: the port probe refuses it" \
    '[ $rc -eq 1 ] && grep -q "UDP 127.0.0.1:$port is already in use" "$T/err3"'
check "the first relay still runs and answers /healthz" \
    'kill -0 $pid && lockout $aport 0 2 >/dev/null'

# State directory default (issue 16): $STATE_DIRECTORY (systemd) is used
# and the reset secret lands there; without any, a loud warning.
mkdir -p "$T/sd"
STATE_DIRECTORY="$T/sd" $R --listen 127.0.0.1 --port $((port + 1)) --workers 1 \
    --cert "$T/state/server.pem" --key "$T/state/server.key" \
    --token-keys "$T/state/token.keys" --admin-port 0 2>"$T/log.sd" &
p2=$!
for _ in $(seq 1 100); do grep -q "event=start" "$T/log.sd" && break; sleep 0.1; done
check "STATE_DIRECTORY is the default state_dir (secret persisted)" \
    'grep -q "state_dir=$T/sd " "$T/log.sd" && [ -s "$T/sd/quic-secrets" ]'
kill -TERM $p2; wait $p2
$R --listen 127.0.0.1 --port $((port + 2)) --workers 1 --cert "$T/state/server.pem" \
    --key "$T/state/server.key" --token-keys "$T/state/token.keys" --admin-port 0 \
    2>"$T/log.nosd" &
p2=$!
for _ in $(seq 1 100); do grep -q "event=start" "$T/log.nosd" && break; sleep 0.1; done
if [ -d /var/lib/roost ] && [ -w /var/lib/roost ]; then
    check "no state dir given: /var/lib/roost used" 'grep -q "state_dir=/var/lib/roost " "$T/log.nosd"'
else
    check "no state dir anywhere: warns that resets will not survive a restart" \
        'grep -q "event=no_state_dir.*will not be recognised" "$T/log.nosd" && grep -q "state_dir=none" "$T/log.nosd"'
fi
kill -TERM $p2; wait $p2

# jemalloc purging (issue 16): the settings read back with mallctl in the
# relay, in the start line. The sanitizer build runs on libc malloc.
if nm "$R" 2>/dev/null | grep -q __asan_init; then
    check "sanitizer build: libc allocator reported" 'grep -q "allocator=libc" "$T/log.first"'
else
    check "jemalloc background purging in force" \
        'grep -q "allocator=jemalloc jemalloc_background_thread=true jemalloc_dirty_decay_ms=1000 jemalloc_muzzy_decay_ms=0" "$T/log.first"'
fi
kill -TERM $pid; wait $pid

# sd_notify (issue 19): READY=1, STATUS=, WATCHDOG=1 (WATCHDOG_USEC set),
# RELOADING=1 around SIGHUP, STOPPING=1 on SIGTERM, over a unix datagram
# socket this test binds as NOTIFY_SOCKET.
python3 - "$R" "$T" $((port + 3)) >"$T/notify.out" 2>&1 <<'PY'
import os, signal, socket, subprocess, sys, time
R, T, port = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(T, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
p = subprocess.Popen([R, "--listen", "127.0.0.1", "--port", port, "--workers", "2",
                      "--cert", T + "/state/server.pem", "--key", T + "/state/server.key",
                      "--token-keys", T + "/state/token.keys", "--state-dir", T + "/state",
                      "--admin-port", "0", "--drain-timeout", "1s"],
                     env=env, stderr=open(T + "/log.notify", "w"))
seen = []
def wait_for(word, secs=10):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(msg)
        if any(line.startswith(word) for line in msg.split("\n")):
            return True
    print("missing " + word)
    return False
ok = wait_for("READY=1") and wait_for("STATUS=") and wait_for("WATCHDOG=1", 5)
if ok:
    p.send_signal(signal.SIGHUP)
    ok = wait_for("RELOADING=1") and wait_for("READY=1")
if ok:
    p.send_signal(signal.SIGTERM)
    ok = wait_for("STOPPING=1")
rc = p.wait(timeout=20)
for m in seen:
    print(m.replace("\n", " | "))
print("rc", rc)
sys.exit(0 if ok and rc == 0 else 1)
PY
nrc=$?
sed 's/^/# /' "$T/notify.out"
check "sd_notify: READY=1 and STATUS= after start" 'grep -q "^READY=1" "$T/notify.out" && grep -q "^STATUS=serving: 0 rooms, 0 participants" "$T/notify.out"'
check "sd_notify: WATCHDOG=1, RELOADING=1 around SIGHUP, STOPPING=1 on SIGTERM" '[ $nrc -eq 0 ]'
exit $fail
