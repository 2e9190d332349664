#!/usr/bin/env bash
# Heap per idle connection, from the allocator (not a timing): a relay with
# one worker, 1,000 idle participants from roost-bench (200 rooms of 5, no
# speaker), then /metrics' roost_heap_per_connection_bytes — the worker's
# jemalloc arena live bytes over its open connections (core/memstat.h) —
# must stay within the documented bound (docs/BENCHMARKS.md, "Memory per
# idle participant"). Needs jemalloc: the sanitizer build (ASan's own
# allocator) skips. TAP output.
set -u
B=${ROOST_BUILD:-build}
R=$B/roost-relay
T=$(mktemp -d)
relay_pid=
bench_pid=
cleanup() {
    [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null && wait "$bench_pid" 2>/dev/null
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }

# The bound, bytes per idle connection: ngtcp2 0.12 ~110 KB allocated
# (objalloc and skip-list blocks), gnutls ~16 KB, roost ~6 KB, with room
# for allocator rounding (measured: 141 KB). Lower it as the figure drops.
BOUND=${ROOST_HEAP_BOUND:-180224}
N_ROOMS=${ROOST_MEM_ROOMS:-200}
N=$((N_ROOMS * 5))

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
free_port() {
    $PY -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}
metric() { curl -sf "127.0.0.1:$aport/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

scripts/dev-cert "$T" >/dev/null
$B/roost-cli keygen --out "$T/token.keys" >/dev/null 2>&1
port=$(free_port DGRAM)
aport=$(free_port STREAM)
$R --listen 127.0.0.1 --port "$port" --workers 1 --cert "$T/server.pem" --key "$T/server.key" \
    --token-keys "$T/token.keys" --admin-port "$aport" --state-dir "$T" \
    --max-members 5 --handshake-timeout 60s --idle-timeout 120s 2>"$T/relay.log" &
relay_pid=$!
# Up to 30 s to start (a loaded machine), then the admin endpoint answers.
for _ in $(seq 1 300); do
    curl -sf "127.0.0.1:$aport/healthz" >/dev/null && break
    kill -0 $relay_pid 2>/dev/null || break
    sleep 0.1
done
if [ -z "$(metric roost_heap_per_connection_bytes)" ]; then
    echo "1..0 # SKIP no jemalloc heap statistics in this build (sanitizer allocator)"
    exit 0
fi
echo "1..4"
check "an idle relay reports 0 per connection" '[ "$(metric roost_heap_per_connection_bytes)" = 0 ]'
heap() { curl -sf "127.0.0.1:$aport/metrics" | awk '$1 == "roost_worker_heap_bytes{worker=\"0\",kind=\"allocated\"}" {print $2}'; }
heap0=$(heap)

# The bench holds its participants for its whole window; the window is long
# enough for the joins on a loaded machine and ends by itself.
$B/roost-bench --relay "127.0.0.1:$port" --token-key "$T/token.keys" --insecure-pin "$T/server.pem" \
    --rooms $N_ROOMS --size 5 --speakers 0 --duration 120s --join-rate 100 --join-timeout 100s --quiet --no-pin \
    >"$T/bench.out" 2>&1 &
bench_pid=$!
conns=0
for _ in $(seq 1 1200); do
    conns=$(metric roost_server_participants)
    [ "${conns:-0}" -ge $N ] && break
    kill -0 $bench_pid 2>/dev/null || break
    sleep 0.1
done
check "$N idle participants joined (saw ${conns:-0})" '[ "${conns:-0}" -ge $N ]'
[ "${conns:-0}" -ge $N ] || sed "s/^/# bench: /" "$T/bench.out" | tail -20
gauge=$(metric roost_heap_per_connection_bytes)
heap1=$(heap)
# The worker's fixed state (rings, tables: ~3 MB) is left out by the delta.
per=$(( (heap1 - heap0) / (conns > 0 ? conns : 1) ))
echo "# heap per idle participant: $per bytes (delta over $conns; bound $BOUND); /metrics gauge $gauge"
check "heap per idle participant within the bound, gauge reported" '[ "$per" -gt 0 ] && [ "$per" -le $BOUND ] && [ "${gauge:-0}" -gt 0 ]'
kill $bench_pid 2>/dev/null
wait $bench_pid 2>/dev/null
bench_pid=
# Connections close by idle timeout or the bench's exit; the arena must give
# back what they held: within 2 s of the last close, below one connection's
# worth per 10 connections that were open.
for _ in $(seq 1 600); do
    c=$(metric roost_server_connections)
    [ "${c:-1}" -eq 0 ] && break
    sleep 0.1
done
live=$(curl -sf "127.0.0.1:$aport/metrics" | awk '$1 == "roost_worker_heap_bytes{worker=\"0\",kind=\"allocated\"}" {print $2}')
echo "# after the bench: connections ${c:-?}, worker heap ${live:-?} bytes"
check "connections gone, heap returned (worker arena < 16 MB)" '[ "${c:-1}" -eq 0 ] && [ -n "$live" ] && [ "$live" -lt 16777216 ]'
exit $fail
