#!/usr/bin/env bash
# roost-bench --relays against a local cluster (TAP): scripts/cluster-local
# starts a private redis-server (free port, no persistence) and 3 relays
# with [cluster] (Redis directory, trunks, one secret), waits until each
# answers /healthz and has registered in Redis; roost-bench spreads each
# room over the 3 relays (member m of room r on relay (r + m) mod 3) and the
# JSON must show exact delivery across relays (every frame to every other
# member of its room exactly once), the per-relay counts of the rule, each
# frame crossing each trunk once (the relays' roost_trunk_frames_in summed
# over the window = frames sent x (relays of the room - 1)), per-relay CPU
# adding up to the total, and rooms smaller than the cluster; a second,
# 2-relay cluster in static_home mode (no Redis) delivers exactly too. Bad
# combinations of --relays (a pid or an admin listed twice too) are refused
# with exit 64 and a message; the cluster is stopped by PID and must be
# gone afterwards, also when its relay binary was replaced while it ran
# (a rebuild). No fixed sleeps:
# cluster-local waits for readiness within ROOST_READY_S (default 20 s).
set -u
B=${ROOST_BUILD:-build}
BENCH=$B/roost-bench
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
READY_S=${ROOST_READY_S:-20}
T=$(mktemp -d)
C=$T/cluster
started=
started2=
started3=
cleanup() {
    [ -n "$started" ] && scripts/cluster-local stop "$C" >/dev/null 2>&1
    [ -n "$started2" ] && scripts/cluster-local stop "$T/static" >/dev/null 2>&1
    [ -n "$started3" ] && scripts/cluster-local stop "$T/replaced" >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; }
# check DESCRIPTION JSON PYTHON-EXPRESSION-OVER-d/r/c (prints why on failure)
check_json() {
    if $PY - "$2" "$3" >"$T/why" 2>&1 <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
r = d.get("result", {})
c = r.get("cluster", {})
ok = eval(sys.argv[2])
if not ok:
    print("failed:", sys.argv[2])
    print(json.dumps({k: r.get(k) for k in ("verdict", "reasons", "frames", "delivery")}, indent=1))
    print(json.dumps([{k: v for k, v in x.items() if k != "latency_ns"} for x in r.get("relays", [])], indent=1))
    print(json.dumps({k: v for k, v in c.items() if k != "pairs" and "latency" not in k}, indent=1))
sys.exit(0 if ok else 1)
PYEOF
    then ok "$1"; else nok "$1"; sed 's/^/# /' "$T/why"; fi
}

if ! command -v redis-server >/dev/null 2>&1; then
    echo "1..0 # SKIP redis-server not installed (scripts/install-deps)"
    exit 0
fi
echo "1..22"

if scripts/cluster-local start "$C" --relays 3 --build "$B" --ready-s "$READY_S" >"$T/start.out" 2>&1; then
    started=1
    ok "cluster-local starts redis-server and 3 relays"
else
    nok "cluster-local starts redis-server and 3 relays"
    sed 's/^/# /' "$T/start.out"
    for f in "$C"/*.log; do [ -r "$f" ] && sed "s|^|# $(basename "$f"): |" "$f" | tail -5; done
    echo "Bail out! no cluster"
    exit 1
fi
. "$C/cluster.env"
IFS=, read -r -a PIDA <<<"$PIDS"
if [ "${#PIDA[@]}" -eq 3 ] && [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" "${PIDA[@]}" 2>/dev/null; then
    ok "cluster.env names 3 live relays and redis-server"
else
    nok "cluster.env names 3 live relays and redis-server"
    sed 's/^/# /' "$C/cluster.env"
fi

COMMON=(--relays "$RELAYS" --admins "$ADMINS" --relay-pids "$PIDS" --token-key "$TOKEN_KEY"
    --ca "$CA" --duration 2 --threads 1 --no-pin --drain-ms 500 --slo-p99 1000)

# run JSON OUT [bench options]: one run; a run the bench itself marks
# INCONCLUSIVE (exit 2: this loaded machine did not keep its schedule) is
# run once more, as in test_bench.sh.
run() {
    local json=$1 out=$2 attempt
    shift 2
    for attempt in 1 2; do
        $BENCH "${COMMON[@]}" "$@" --json "$json" >"$out" 2>&1
        rc=$?
        if [ $rc -eq 2 ] && [ $attempt -eq 1 ]; then
            echo "# run INCONCLUSIVE (the bench missed its schedule): retrying once"
            continue
        fi
        break
    done
}

# 2 rooms x 6 over 3 relays: 2 members of every room on every relay.
run "$T/c.json" "$T/c.out" --rooms 2 --size 6
# OK, or INCONCLUSIVE twice on a loaded machine (the checks below still
# hold: they count what was sent); never FAIL (a relay fault).
if [ $rc -eq 0 ] || [ $rc -eq 2 ]; then ok "cluster run completes, not FAIL (exit $rc)"; else nok "cluster run completes (exit $rc)"; sed 's/^/# /' "$T/c.out"; fi
check_json "exact delivery across relays: every frame to each of the 5 others once" "$T/c.json" \
    'r["delivery"]["lost"] == 0 and r["delivery"]["duplicated"] == 0 and r["frames"]["sent"] > 0 and r["delivery"]["expected"] == 5 * r["frames"]["sent"] and r["delivery"]["delivered"] == r["delivery"]["expected"] and all(x["delivered"] == x["expected"] > 0 for x in r["receivers"])'
check_json "per-relay counts follow the rule (member m of room r on relay (r+m) mod 3)" "$T/c.json" \
    'len(r["relays"]) == 3 and all(x["participants"] == 4 and x["joins_ok"] == 4 and x["speakers"] == 4 for x in r["relays"]) and all(x["relay"] == (x["room"] + x["member"]) % 3 for x in r["receivers"])'
check_json "per-relay sent and delivered add up to the totals" "$T/c.json" \
    'sum(x["sent"] for x in r["relays"]) == r["frames"]["sent"] and sum(x["delivered"] for x in r["relays"]) == r["delivery"]["delivered"] and all(x["sent"] == sum(s["sent"] for s in r["senders"] if s["relay"] == x["index"]) for x in r["relays"])'
check_json "each frame crosses to each other relay of its room once (trunk frames in = out = sent x 2)" "$T/c.json" \
    'c["trunk_frames_ideal"] == 2 * r["frames"]["sent"] and c["trunk_frames_in"] == c["trunk_frames_ideal"] and c["trunk_frames_out"] == c["trunk_frames_ideal"] and c["trunk_per_remote_relay_per_frame"] == 1 and sum(x["trunk_frames_in"] for x in r["relays"]) == c["trunk_frames_in"]'
check_json "every relay received each remote frame once (trunk in = frames sent on the 2 others)" "$T/c.json" \
    'all(x["trunk_frames_in"] == r["frames"]["sent"] - x["sent"] for x in r["relays"])'
check_json "relay CPU per relay known, the total is their sum" "$T/c.json" \
    'all(x["cpu_s"] is not None and x["cpu_s"] >= 0 for x in r["relays"]) and abs(sum(x["cpu_s"] for x in r["relays"]) - r["server"]["cpu_s"]) < 1e-6 and not r["relay_gone"]'
check_json "latency by relay pair: 9 pairs, same and other relay, counts = delivered" "$T/c.json" \
    'len(c["pairs"]) == 9 and sum(p["latency_ns"]["n"] for p in c["pairs"]) == r["delivery"]["delivered"] and c["latency_same_relay_ns"]["n"] + c["latency_other_relay_ns"]["n"] == r["delivery"]["delivered"] and c["latency_other_relay_ns"]["n"] > c["latency_same_relay_ns"]["n"] > 0'
if grep -q "trunk frames   .* 1.000 per remote relay per frame" "$T/c.out" && grep -q "^    \[2\] 127.0.0.1:" "$T/c.out"; then
    ok "summary shows the relays and the trunk frames"
else
    nok "summary shows the relays and the trunk frames"
    sed 's/^/# /' "$T/c.out"
fi

# Rooms of 2 over 3 relays: each room spans 2 relays (rooms 0, 1, 2 on
# relay pairs 0-1, 1-2, 2-0), one trunk crossing per frame.
run "$T/s.json" "$T/s.out" --rooms 3 --size 2
check_json "rooms smaller than the cluster: exact delivery, one crossing per frame" "$T/s.json" \
    'r["verdict"] != "FAIL" and r["delivery"]["lost"] == 0 and r["delivery"]["duplicated"] == 0 and r["delivery"]["delivered"] == r["frames"]["sent"] > 0 and c["trunk_frames_ideal"] == r["frames"]["sent"] and c["trunk_frames_in"] == r["frames"]["sent"] and all(x["participants"] == 2 for x in r["relays"])'

# Refusals: exit 64 and a message naming the problem.
refuse() {
    local desc=$1 needle=$2
    shift 2
    $BENCH "$@" >"$T/ref.out" 2>&1
    local rc=$?
    if [ $rc -eq 64 ] && grep -q -- "$needle" "$T/ref.out"; then ok "refuses $desc"; else
        nok "refuses $desc (exit $rc)"
        sed 's/^/# /' "$T/ref.out"
    fi
}
K=(--token-key "$TOKEN_KEY" --ca "$CA")
refuse "--relay with --relays" "not both" --relay "${RELAYS%%,*}" --relays "$RELAYS" "${K[@]}"
refuse "an --admins list of another length" "one admin address per relay" --relays "$RELAYS" --admins "${ADMINS%%,*}" "${K[@]}"
refuse "--relays with --floor, --ws, --metrics, or one relay twice" "relays" --relays "$RELAYS" --floor
refuse "a pid twice in --relay-pids" "one pid twice" --relays "$RELAYS" \
    --relay-pids "${PIDA[0]},${PIDA[0]},${PIDA[1]}" "${K[@]}"
refuse "an admin twice in --admins" "one admin address twice" --relays "$RELAYS" \
    --admins "${ADMINS%%,*},${ADMINS%%,*},${ADMINS##*,}" "${K[@]}"
{
    rcs=
    for args in "--ws 1 --ws-relay 127.0.0.1:1" "--metrics ${ADMINS%%,*}" "--relay-pid 1"; do
        # shellcheck disable=SC2086
        $BENCH --relays "$RELAYS" "${K[@]}" $args >"$T/ref2.out" 2>&1
        rcs="$rcs $?"
    done
    $BENCH --relays "${RELAYS%%,*},${RELAYS%%,*}" "${K[@]}" >>"$T/ref2.out" 2>&1
    rcs="$rcs $?"
    $BENCH --relay "${RELAYS%%,*}" --admins "${ADMINS%%,*}" "${K[@]}" >>"$T/ref2.out" 2>&1
    rcs="$rcs $?"
    if [ "$rcs" = " 64 64 64 64 64" ]; then ok "refuses --ws, --metrics, --relay-pid with --relays, a duplicate, --admins alone"; else
        nok "refuses --ws, --metrics, --relay-pid with --relays, a duplicate, --admins alone (exits$rcs)"
        sed 's/^/# /' "$T/ref2.out"
    fi
}

scripts/cluster-local stop "$C" >"$T/stop.out" 2>&1
src=$?
started=
gone=1
for p in "${PIDA[@]}" "$REDIS_PID"; do
    # A zombie until its parent (not us) reaps it counts as gone.
    if [ -r "/proc/$p/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$p/stat" 2>/dev/null; then gone=0; fi
done
if [ $src -eq 0 ] && [ $gone -eq 1 ]; then ok "cluster-local stop ends the relays and redis-server by PID"; else
    nok "cluster-local stop ends the relays and redis-server by PID (exit $src)"
    sed 's/^/# /' "$T/stop.out"
fi

# static_home (no Redis): 2 relays, relay 0 home of every room; 1 room of 4
# (2 members on each relay), one trunk crossing per frame.
C2=$T/static
if scripts/cluster-local start "$C2" --relays 2 --static-home --build "$B" --ready-s "$READY_S" >"$T/start2.out" 2>&1; then
    started2=1
    . "$C2/cluster.env"
    COMMON=(--relays "$RELAYS" --admins "$ADMINS" --relay-pids "$PIDS" --token-key "$TOKEN_KEY"
        --ca "$CA" --duration 2 --threads 1 --no-pin --drain-ms 500 --slo-p99 1000)
    run "$T/h.json" "$T/h.out" --rooms 1 --size 4
    check_json "static_home, 2 relays: exact delivery, each frame once over the trunk" "$T/h.json" \
        'r["verdict"] != "FAIL" and r["delivery"]["lost"] == 0 and r["delivery"]["duplicated"] == 0 and r["delivery"]["delivered"] == 3 * r["frames"]["sent"] > 0 and c["trunk_frames_in"] == c["trunk_frames_ideal"] == r["frames"]["sent"] and [x["participants"] for x in r["relays"]] == [2, 2]'
    scripts/cluster-local stop "$C2" >"$T/stop2.out" 2>&1
    src=$?
    started2=
    if [ -z "$REDIS_PORT" ] && [ $src -eq 0 ]; then ok "static_home cluster: no Redis, stopped"; else nok "static_home cluster: no Redis, stopped (exit $src)"; fi
else
    nok "static_home cluster starts"
    sed 's/^/# /' "$T/start2.out"
    nok "static_home cluster: no Redis, stopped (not started)"
fi

# stop after the relay binary was replaced (a rebuild: /proc/PID/exe then
# reads "... (deleted)"): a 1-relay static_home cluster started from a copy
# of the binaries, the copy replaced, then stopped by PID + start time.
C3=$T/replaced
mkdir -p "$T/bin"
cp "$B/roost-relay" "$B/roost-cli" "$T/bin/"
if scripts/cluster-local start "$C3" --relays 1 --static-home --build "$T/bin" --ready-s "$READY_S" >"$T/start3.out" 2>&1; then
    started3=1
    . "$C3/cluster.env"
    rm -f "$T/bin/roost-relay"
    cp "$B/roost-relay" "$T/bin/roost-relay"
    deleted=0
    case "$(readlink "/proc/$PIDS/exe" 2>/dev/null)" in *"(deleted)") deleted=1 ;; esac
    scripts/cluster-local stop "$C3" >"$T/stop3.out" 2>&1
    src=$?
    gone=1
    if [ -r "/proc/$PIDS/stat" ] && ! awk '{ exit !($3 == "Z" || $3 == "X") }' "/proc/$PIDS/stat" 2>/dev/null; then gone=0; fi
    [ $gone -eq 1 ] && started3=
    if [ $deleted -eq 1 ] && [ $src -eq 0 ] && [ $gone -eq 1 ]; then ok "cluster-local stop ends a relay whose binary was replaced"; else
        nok "cluster-local stop ends a relay whose binary was replaced (exe deleted $deleted, exit $src, gone $gone)"
        sed 's/^/# /' "$T/stop3.out"
    fi
else
    nok "cluster-local stop ends a relay whose binary was replaced (cluster did not start)"
    sed 's/^/# /' "$T/start3.out"
fi
