#!/usr/bin/env bash
# roost-bench end to end (TAP): a tiny run (2 rooms x 3, 2 s) against a real
# roost-relay on loopback and against the built-in floor, checked through
# the JSON: per receiver delivered + lost = expected, zero loss and zero
# duplicates, ordered latency percentiles; an impossible send target must
# come out INCONCLUSIVE and --ramp must not report it as capacity; a WAV
# in the wrong format is refused. Uses shared/audio/speech-48k-mono.wav beside
# the repository (CI: a fresh clone with shared/ next to it), else
# /work/shared/audio/, or $ROOST_BENCH_WAV, when present.
set -u
B=${ROOST_BUILD:-build}
R=$B/roost-relay
CLI=$B/roost-cli
BENCH=$B/roost-bench
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WAV=${ROOST_BENCH_WAV:-$ROOT/../shared/audio/speech-48k-mono.wav}
[ -r "$WAV" ] || WAV=${ROOST_BENCH_WAV:-/work/shared/audio/speech-48k-mono.wav}
T=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
# check DESCRIPTION JSON PYTHON-EXPRESSION-OVER-d (prints why on failure)
check_json() {
    if $PY - "$2" "$3" >"$T/why" 2>&1 <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
r = d.get("result", {})
ok = eval(sys.argv[2])
if not ok:
    print("failed:", sys.argv[2])
    print(json.dumps({k: r.get(k) for k in ("verdict", "reasons", "frames", "delivery", "latency_ns")}, indent=1))
sys.exit(0 if ok else 1)
PYEOF
    then ok "$1"; else nok "$1"; sed 's/^/# /' "$T/why"; fi
}

echo "1..18"
scripts/dev-cert "$T/state" >/dev/null
$CLI keygen --out "$T/state/token.keys" >/dev/null 2>&1

# A free port (a random one can be taken when several test runs share the
# machine), an ephemeral admin port (the default 9464 is shared by every
# relay on the machine), and readiness from the start-up line instead of a
# fixed sleep: an ASan relay on a loaded machine takes longer than any sleep.
port=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$R --listen 127.0.0.1 --port $port --workers 2 --cert "$T/state/server.pem" \
    --key "$T/state/server.key" --token-keys "$T/state/token.keys" --admin-port 0 \
    --log-level info 2>"$T/relay.log" &
pid=$!
for _ in $(seq 1 300); do
    grep -q "event=start" "$T/relay.log" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
COMMON=(--relay 127.0.0.1:$port --token-key "$T/state/token.keys" --ca "$T/state/ca.pem"
    --rooms 2 --size 3 --duration 2 --threads 1 --no-pin --drain-ms 500)

# Per-receiver accounting, zero loss/dups, ordered percentiles.
ACCOUNT='all(x["delivered"] + x["lost"] == x["expected"] and x["expected"] > 0 for x in r["receivers"]) and len(r["receivers"]) == 6'
ORDERED='(lambda l: 0 < l["p50"] <= l["p90"] <= l["p99"] <= l["p999"] <= l["max"] and l["n"] == r["delivery"]["delivered"])(r["latency_ns"])'
SENDERS='all(x["expected"] == 2 * x["sent"] and x["delivered"] + 0 <= x["expected"] and x["sent"] > 0 for x in r["senders"]) and sum(x["delivered"] for x in r["senders"]) == r["delivery"]["delivered"]'

# A run the bench itself marks INCONCLUSIVE because this machine could not
# keep the send rate (a scheduling hiccup in a 2 s window) measured nothing:
# run it once more. Every assertion below applies to the run that counts.
for attempt in 1 2; do
    $BENCH "${COMMON[@]}" --relay-pid $pid --join-storm 5 --json "$T/relay.json" >"$T/relay.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && [ $attempt -eq 1 ] &&
        $PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; sys.exit(0 if r["inconclusive"] and "achieved send rate" in r["reasons"] else 1)' "$T/relay.json"; then
        echo "# first relay run INCONCLUSIVE (send rate not kept by this machine): retrying once"
        continue
    fi
    break
done
if [ $rc -eq 0 ]; then ok "relay run completes"; else nok "relay run completes (exit $rc)"; sed 's/^/# /' "$T/relay.out"; fi
check_json "relay: delivered + lost = expected per receiver" "$T/relay.json" "$ACCOUNT"
# Expected = every frame sent, to the 2 other members of its room of 3. A
# speaker more than one slot late skips that slot (counted), so sent may be
# a little under the 600-frame target; sent + skipped must make it up.
check_json "relay: zero loss, zero duplicates on loopback" "$T/relay.json" 'r["delivery"]["lost"] == 0 and r["delivery"]["duplicated"] == 0 and r["delivery"]["expected"] == 2 * r["frames"]["sent"] and r["frames"]["sent"] + r["frames"]["skipped"] == r["frames"]["target"] == 2 * 3 * 100'
check_json "relay: latency percentiles ordered" "$T/relay.json" "$ORDERED"
check_json "relay: per-sender figures add up" "$T/relay.json" "$SENDERS"
check_json "relay: verdict OK, every join answered, storm joined" "$T/relay.json" 'r["verdict"] == "OK" and not r["inconclusive"] and r["joins"]["ok"] == 6 and r["join_ns"]["n"] == 6 and r["join_storm"]["ok"] == r["join_storm"]["planned"] == 10'
check_json "relay: command, machine, server recorded" "$T/relay.json" 'd["command"].startswith(d["argv"][0]) and d["machine"]["cores"] >= 1 and d["machine"]["kernel"] and d["server"]["version"].startswith("roost-relay") and "--token-keys" in d["server"]["config"] and r["server"]["cpu_s"] is not None and r["server"]["rss_joined_kb"] > 0'

# Impossible target: a send slot every 5 us for every speaker.
$BENCH "${COMMON[@]}" --send-interval-us 5 --json "$T/imp.json" >"$T/imp.out" 2>&1
rc=$?
if [ $rc -eq 0 ]; then ok "impossible target: run completes"; else nok "impossible target: run completes (exit $rc)"; fi
check_json "impossible target: INCONCLUSIVE with a reason" "$T/imp.json" 'r["verdict"] == "INCONCLUSIVE" and r["inconclusive"] and "send rate" in r["reasons"] and r["frames"]["send_ratio"] < 0.95'
if grep -q "verdict        INCONCLUSIVE" "$T/imp.out"; then ok "impossible target: summary says INCONCLUSIVE"; else nok "impossible target: summary says INCONCLUSIVE"; fi

$BENCH "${COMMON[@]}" --duration 1 --send-interval-us 5 --ramp --ramp-max 4 --json "$T/ramp.json" >"$T/ramp.out" 2>&1
check_json "ramp: an inconclusive step is never capacity" "$T/ramp.json" 'd["capacity"]["rooms"] is None and d["capacity"]["limited_by"] == "inconclusive" and not d["steps"][0]["pass"]'

# The floor, with the talk-spurt model (DTX frames included).
$BENCH --floor --floor-workers 1 --rooms 2 --size 3 --duration 2 --threads 1 --no-pin --talk \
    --json "$T/floor.json" >"$T/floor.out" 2>&1
rc=$?
if [ $rc -eq 0 ]; then ok "floor run completes"; else nok "floor run completes (exit $rc)"; sed 's/^/# /' "$T/floor.out"; fi
check_json "floor: delivered + lost = expected per receiver" "$T/floor.json" "$ACCOUNT"
check_json "floor: zero loss, zero duplicates, ordered percentiles" "$T/floor.json" 'r["delivery"]["lost"] == 0 and r["delivery"]["duplicated"] == 0 and '"$ORDERED"
check_json "floor: talk spurts send less than always-on, server CPU known" "$T/floor.json" '0 < r["frames"]["target"] < 600 and r["server"]["cpu_s"] is not None and r["server"]["egress_datagrams"] >= r["delivery"]["delivered"] and d["server"]["kind"] == "floor"'

# Audio input.
$PY - "$T/stereo.wav" <<'PYEOF'
import struct, sys
data = b"\0\0" * 4800
fmt = struct.pack("<HHIIHH", 1, 2, 48000, 48000 * 4, 4, 16)
with open(sys.argv[1], "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE")
    f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
PYEOF
$BENCH --floor --rooms 1 --size 2 --duration 1 --audio "$T/stereo.wav" >"$T/wav.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "needs 16-bit PCM, mono, 48000 Hz" "$T/wav.out"; then ok "a stereo WAV is refused with a clear error"; else nok "a stereo WAV is refused with a clear error"; fi
if [ -r "$WAV" ]; then
    $BENCH --floor --floor-workers 1 --rooms 1 --size 3 --duration 1 --threads 1 --no-pin \
        --audio "$WAV" --json "$T/wav.json" >"$T/wav2.out" 2>&1
    check_json "recorded speech ($WAV) is encoded and delivered" "$T/wav.json" 'd["config"]["audio"].endswith(".wav") and d["config"]["audio_frames"] > 0 and r["delivery"]["lost"] == 0 and r["delivery"]["delivered"] > 0'
else
    ok "# SKIP no speech recording at $WAV"
fi
$BENCH --bogus >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then ok "unknown option exits 2"; else nok "unknown option exits 2 (exit $rc)"; fi
exit $fail
