#!/usr/bin/env bash
# make capacity in its quickest form (TAP): scripts/capacity/all --smoke runs
# a real relay and roost-bench over two tiny cells (rooms of 2 and 5, two
# 0.5 s ramp steps each), their floors, an idle cell and a join storm, then
# the model and the report. Checks the structure, not the figures: every
# cell listed in index.json with a status, a JSON per cell that ran, the
# machine description, a model with the four coefficients named, and the
# report (PNGs when matplotlib is installed).
set -u
B=${ROOST_BUILD:-build}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }

echo "1..7"
BUILD=$B scripts/capacity/all --smoke --out "$T/cap" >"$T/out" 2>&1
rc=$?
if [ $rc -eq 0 ]; then ok "scripts/capacity/all --smoke completes"; else
    nok "scripts/capacity/all --smoke completes (exit $rc)"
    tail -20 "$T/out" | sed 's/^/# /'
fi
if $PY - "$T/cap/results" >"$T/why" 2>&1 <<'PYEOF'
import json, os, sys
d = sys.argv[1]
cells = json.load(open(os.path.join(d, "index.json")))["cells"]
names = {c["name"] for c in cells}
want = {"relay-s2-kall-w1", "relay-s5-kall-w1", "floor-s2-kall-w1", "floor-s5-kall-w1",
        "idle-s10-w1", "storm-w1"}
assert want <= names, "missing cells: %s" % (want - names)
for c in cells:
    assert c["status"] in ("ok", "inconclusive", "error", "skipped"), c
    if c["status"] in ("ok", "inconclusive"):
        assert os.path.exists(os.path.join(d, c["file"])), c
    else:
        assert c["reason"], c
PYEOF
then ok "every cell is in index.json with a status, a JSON or a reason"; else
    nok "every cell is in index.json with a status, a JSON or a reason"; sed 's/^/# /' "$T/why"; fi
if $PY -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["cores"] >= 1 and m["lscpu"] and m["profile"] == "smoke"' "$T/cap/results/machine.json" 2>"$T/why"; then
    ok "machine.json describes the machine"; else nok "machine.json describes the machine"; sed 's/^/# /' "$T/why"; fi
if $PY -c 'import json,sys; m=json.load(open(sys.argv[1])); c=m["coefficients"]; assert set(c) == {"ingress_frame","egress_datagram","turn","idle_participant_s","join","ack_in"}; assert all("cells" in v and "stderr_s" in v for v in c.values()); assert m["fit"]["rows"] >= 3, m["fit"]' "$T/cap/model.json" 2>"$T/why"; then
    ok "model.json: six coefficients with errors and cells"; else nok "model.json: six coefficients with errors and cells"; sed 's/^/# /' "$T/why"; fi
# The hold cells: relay CPU from schedstat and the relay's own counters.
if $PY - "$T/cap/results" >"$T/why" 2>&1 <<'PYEOF'
import glob, json, os, sys
hs = [json.load(open(p)) for p in glob.glob(os.path.join(sys.argv[1], "*.hold.json"))]
assert len(hs) >= 3, "%d hold records" % len(hs)
good = [h for h in hs if h.get("counters")]
assert good, [h["reasons"] for h in hs]
for h in good:
    assert h["relay"]["cpu_s"] >= 0 and h["hold_s"] > 0 and "turns" in h["counters"], h
PYEOF
then ok "hold cells: relay CPU and the relay's counters over the hold"; else
    nok "hold cells: relay CPU and the relay's counters over the hold"; sed 's/^/# /' "$T/why"; fi
if grep -q "^## Cost model" "$T/cap/report.md" 2>/dev/null && grep -q "^## Worked plan" "$T/cap/report.md"; then
    ok "report.md has the model and a worked plan"; else nok "report.md has the model and a worked plan"; fi
if $PY -c 'import matplotlib' 2>/dev/null; then
    if [ -s "$T/cap/latency.png" ] && [ -s "$T/cap/capacity.png" ] && [ -s "$T/cap/cpu.png" ] && [ -s "$T/cap/scaling.png" ] && [ -s "$T/cap/floor.png" ]; then
        ok "PNG plots: capacity, cpu, latency, scaling, floor"; else nok "PNG plots: capacity, cpu, latency, scaling, floor"; ls "$T/cap" | sed 's/^/# /'; fi
else
    ok "# SKIP python3-matplotlib not installed"
fi
exit $fail
