#!/usr/bin/env bash
# scripts/capacity/sweep's bookkeeping (TAP), with stand-in programs instead
# of the relay and the bench (a few seconds, no load): every cell of the
# matrix is recorded with its status; a cell whose speakers exceed its room
# size is skipped with the reason; a bench that fails gives an `error` cell
# with the bench's last line; an INCONCLUSIVE ramp is kept and marked; the
# floor runs at the rooms of the ramp's capacity step; the relay gets the
# worker count asked for; machine.json is written.
set -u
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
FIX=$PWD/test/fixtures/capacity

mkdir -p "$T/b"
cat >"$T/b/roost-relay" <<'EOF'
#!/usr/bin/env bash
echo "relay $*" >>"$RELAY_ARGS"
exec sleep 60
EOF
cat >"$T/b/roost-cli" <<'EOF'
#!/usr/bin/env bash
[ "$1" = keygen ] && echo key >"$3"
exit 0
EOF
# The bench copies a fixture JSON; rooms of 10 with 1 speaker fail.
cat >"$T/b/roost-bench" <<'EOF'
#!/usr/bin/env bash
echo "bench $*"
echo "bench-cpus $(grep Cpus_allowed_list /proc/$$/status | cut -f2) $*" >>"$RELAY_ARGS"
json= floor=0 ramp=0 storm=0 size= spk= rooms= step= max=
while [ $# -gt 0 ]; do
    case $1 in
    --json) json=$2; shift ;; --floor) floor=1 ;; --ramp) ramp=1 ;;
    --join-storm) storm=1 ;; --size) size=$2; shift ;; --speakers) spk=$2; shift ;;
    --rooms) rooms=$2; shift ;; --ramp-step) step=$2; shift ;; --ramp-max) max=$2; shift ;;
    esac
    shift
done
# The fine ramp after the s2 fixture (passes 200 rooms, fails 300 on p99):
# steps from --rooms by --ramp-step, passing below 250 rooms.
if [ $ramp = 1 ] && [ "$rooms" -gt 100 ]; then
    "$PY" - "$FIX/relay-s2-kall-w1.json" "$json" "$rooms" "$step" "$max" <<'PY'
import copy, json, sys
d = json.load(open(sys.argv[1]))
r, st, mx = (int(x) for x in sys.argv[3:6])
one = d["steps"][0]
d["steps"] = []
while r <= mx:
    s = copy.deepcopy(one)
    s["rooms"], s["pass"] = r, r < 250
    s["failed"] = None if r < 250 else "slo-p99"
    d["steps"].append(s)
    if r >= 250:
        break
    r += st
json.dump(d, open(sys.argv[2], "w"))
PY
    exit 0
fi
if [ "$size:$spk" = "10:1" ] && [ $floor = 0 ]; then echo "roost-bench: joins did not complete"; exit 1; fi
if [ $floor = 1 ]; then cp "$FIX/floor-s2-kall-w1.json" "$json"
elif [ $ramp = 1 ] && [ "$size" = 5 ]; then cp "$FIX/relay-s10-k1-w1.json" "$json"
elif [ $ramp = 1 ]; then cp "$FIX/relay-s2-kall-w1.json" "$json"
elif [ $storm = 1 ]; then cp "$FIX/storm-w1.json" "$json"
else cp "$FIX/idle-s10-w1.json" "$json"; fi
EOF
chmod +x "$T/b/"*

echo "1..11"
export FIX PY RELAY_ARGS=$T/relay.args
BUILD=$T/b scripts/capacity/sweep --cells "2:3 2:all 5:all 10:1" --workers 1 --duration 1 --no-hold --fine 0 \
    --start 20 --step 20 --max 60 --out "$T/r" >"$T/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^sweep: 9 cells" "$T/out"; then ok "sweep completes and counts 9 cells"; else
    nok "sweep completes and counts 9 cells (exit $rc)"; sed 's/^/# /' "$T/out"; fi
check() { # DESCRIPTION PYTHON-EXPRESSION-OVER-cells
    if $PY - "$T/r/index.json" "$2" >"$T/why" 2>&1 <<'PYEOF'
import json, sys
cells = {c["name"]: c for c in json.load(open(sys.argv[1]))["cells"]}
ok = eval(sys.argv[2])
if not ok:
    print(json.dumps(cells, indent=1))
sys.exit(0 if ok else 1)
PYEOF
    then ok "$1"; else nok "$1"; head -60 "$T/why" | sed 's/^/# /'; fi
}
check "3 speakers in rooms of 2: skipped with the reason" \
    'cells["relay-s2-k3-w1"]["status"] == "skipped" and "3 speakers > room size 2" in cells["relay-s2-k3-w1"]["reason"]'
check "a failing bench: an error cell with the bench's message, its floor still run" \
    'cells["relay-s10-k1-w1"]["status"] == "error" and "joins did not complete" in cells["relay-s10-k1-w1"]["reason"] and cells["relay-s10-k1-w1"]["file"] is None and cells["floor-s10-k1-w1"]["status"] == "ok"'
check "an INCONCLUSIVE ramp is kept and marked with the step and reason" \
    'cells["relay-s5-kall-w1"]["status"] == "inconclusive" and "step 2 INCONCLUSIVE" in cells["relay-s5-kall-w1"]["reason"] and cells["relay-s5-kall-w1"]["file"] == "relay-s5-kall-w1.json"'
check "every cell of the matrix, floors, idle and storm are listed" \
    'set(cells) == {"relay-s2-k3-w1", "relay-s2-kall-w1", "floor-s2-kall-w1", "relay-s5-kall-w1", "floor-s5-kall-w1", "relay-s10-k1-w1", "floor-s10-k1-w1", "idle-s10-w1", "storm-w1"}'
if grep -q -- "--floor --floor-workers 1 --size 2 --speakers 2 --rooms 200 " "$T/r/floor-s2-kall-w1.log" &&
    grep -q -- "--size 2 --speakers 2 --rooms 10 --ramp --ramp-step 10 --ramp-max 30 " "$T/r/relay-s2-kall-w1.log"; then
    ok "ramp in participants rounded to rooms; the floor at the capacity step's rooms"; else
    nok "ramp in participants rounded to rooms; the floor at the capacity step's rooms"
    cat "$T/r/relay-s2-kall-w1.log" "$T/r/floor-s2-kall-w1.log" | sed 's/^/# /'; fi
if grep -q -- "--workers 1 " "$T/relay.args" && $PY -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["cores"] >= 1 and "args" in m' "$T/r/machine.json"; then
    ok "the relay gets --workers; machine.json written"; else nok "the relay gets --workers; machine.json written"; fi
# Relay and bench on disjoint CPUs: 1 worker pinned to the last CPU, the
# bench confined (taskset) to the others; as many workers as CPUs: shared,
# marked shared_cpus.
C=$(nproc)
: >"$RELAY_ARGS"
BUILD=$T/b scripts/capacity/sweep --cells "2:all" --workers "1 $C" --duration 1 --start 2 \
    --step 2 --max 4 --no-floor --no-idle --no-storm --no-hold --out "$T/r2" >"$T/out2" 2>&1
if [ "$C" -lt 2 ]; then
    ok "# SKIP one CPU: relay and bench cannot be separated"
elif grep -q -- "--workers 1 --cpus $((C - 1)) " "$RELAY_ARGS" &&
    grep "^bench-cpus" "$RELAY_ARGS" | head -1 | grep -q "^bench-cpus 0$([ "$C" -gt 2 ] && echo "-$((C - 2))") .*--cpus 0$([ "$C" -gt 2 ] && echo "-$((C - 2))") "; then
    ok "1 worker: relay on CPU $((C - 1)), the bench under taskset on the others"
else
    nok "1 worker: relay on CPU $((C - 1)), the bench under taskset on the others"
    sed 's/^/# /' "$RELAY_ARGS" "$T/out2"
fi
# Coarse then fine: the coarse ramp (the fixture) passes 200 rooms and
# fails 300 on p99; 4 fine steps split the interval in 5: 220, 240, 260,
# 280 (the stub fails from 250); merged: capacity 240 rooms = 480.
BUILD=$T/b scripts/capacity/sweep --cells "2:all" --workers 1 --duration 1 --start 200 \
    --step 200 --max 600 --fine 4 --no-floor --no-idle --no-storm --no-hold --out "$T/r3" \
    >"$T/out3" 2>&1
if grep -q -- "--rooms 220 --ramp --ramp-step 20 --ramp-max 299 " "$T/r3/relay-s2-kall-w1.log" &&
    $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["capacity"]; r=[s["rooms"] for s in d["steps"]]; assert c == {"rooms": 240, "participants": 480, "limited_by": "slo-p99"} and r == [100, 200, 220, 240, 260], (c, r); assert d["ramp"]["fine_step_rooms"] == 20' "$T/r3/relay-s2-kall-w1.json" 2>"$T/why"; then
    ok "coarse then fine: 4 steps of 20 rooms between 200 and 300, merged, capacity 480"
else
    nok "coarse then fine: 4 steps of 20 rooms between 200 and 300, merged, capacity 480"
    sed 's/^/# /' "$T/why" "$T/out3" "$T/r3/relay-s2-kall-w1.log"
fi
mv "$T/r" "$T/r1" && mv "$T/r2" "$T/r"
if [ "$C" -lt 2 ]; then
    ok "# SKIP one CPU"
else
    check "as many workers as CPUs: marked shared_cpus; 1 worker: not" \
        "cells['relay-s2-kall-w1']['shared_cpus'] is False and cells['relay-s2-kall-w$C']['shared_cpus'] is True"
fi

# validate's interleaving: the hold-outs spread among the fit cells of each
# round, the order reversed every other round, the repeats suffixed.
BUILD=$T/b scripts/capacity/sweep --out "$T/h" --workers 1 --holds "2:2:1 5:2:1 10:1:1 20:2:1" \
    --holdouts "7:2:1 30:1:1" --repeat 2 --list-holds >"$T/hout" 2>&1
got=$(awk '$1 == "cell" { printf "%s ", $3 }' "$T/hout")
want="hold-s2-k2-r1-w1 holdout-s7-k2-r1-w1 hold-s5-k2-r1-w1 hold-s10-k1-r1-w1 holdout-s30-k1-r1-w1 hold-s20-k2-r1-w1 "
want+="hold-s20-k2-r1-w1-n2 holdout-s30-k1-r1-w1-n2 hold-s10-k1-r1-w1-n2 hold-s5-k2-r1-w1-n2 holdout-s7-k2-r1-w1-n2 hold-s2-k2-r1-w1-n2 "
if [ "$got" = "$want" ] && grep -q '^cell holdout holdout-s7' "$T/hout"; then
    ok "--holdouts: hold-outs spread among the fit cells, rounds reversed, repeats -n2"
else
    nok "--holdouts: hold-outs spread among the fit cells, rounds reversed, repeats -n2"
    printf '# got  %s\n# want %s\n' "$got" "$want"
    sed 's/^/# /' "$T/hout" | head -20
fi
exit $fail
