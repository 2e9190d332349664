#!/usr/bin/python3
"""Capacity scripts (TAP): scripts/capacity/model and plan on the checked-in
fixture test/fixtures/capacity, whose relay CPU figures were generated from
known costs (20 us per ingress frame, 5 us per egress datagram, 10 us per
participant-second, 200 us per join; CPU interval 10 s window + 480 ms drain
+ 20 ms = 10.5 s). The fit must give those coefficients back, every plan
figure is recomputed here by hand, and impossible inputs must be refused
with a clear message. Runs no relay and no bench: a second or two."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

FIX = "test/fixtures/capacity"
MODEL = "scripts/capacity/model"
PLAN = "scripts/capacity/plan"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

A, B, C, D = 20e-6, 5e-6, 10e-6, 200e-6
T = 10.5

n = 0
failed = False
TESTS = 57


def ok(cond, desc, why="", todo=None):
    """A TAP test line; with `todo`, a known failure (TAP TODO: reported,
    not counted as a failure) with the reason."""
    global n, failed
    n += 1
    print("%sok %d - %s%s" % ("" if cond else "not ", n, desc, " # TODO " + todo if todo else ""))
    if not cond and not todo:
        failed = True
        for line in str(why).splitlines()[:30]:
            print("# " + line)


def run(*args):
    p = subprocess.run([PY] + list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def close(a, b, rel=1e-9):
    return a is not None and abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def plan(*extra, json_out=True, src=("--results", FIX)):
    rc, out, err = run(PLAN, *src, *extra, *(["--json"] if json_out else []))
    if rc != 0 or not json_out:
        return rc, out, err
    return rc, json.loads(out), err


print("1..%d" % TESTS)
tmp = tempfile.mkdtemp()
try:
    # ---------------------------------------------------------------- model
    rc, out, err = run(MODEL, FIX, "--json", os.path.join(tmp, "model.json"),
                       "--predict", "7:2:1")
    ok(rc == 0, "model fits the fixture", err)
    m = json.load(open(os.path.join(tmp, "model.json"))) if rc == 0 else {}
    co = m.get("coefficients", {})
    got = {k: co.get(k, {}).get("value_s") for k in
           ("ingress_frame", "egress_datagram", "idle_participant_s", "join")}
    ok(close(got["ingress_frame"], A) and close(got["egress_datagram"], B),
       "model: 20 us per ingress frame, 5 us per egress datagram", got)
    ok(close(got["idle_participant_s"], C) and close(got["join"], D),
       "model: 10 us per participant-second, 200 us per join", got)
    ok(all(co[k]["stderr_s"] is not None and co[k]["stderr_s"] < 1e-12 for k in co
           if k not in ("turn", "ack_in"))
       and co["turn"]["value_s"] is None and co["ack_in"]["value_s"] is None
       and m["fit"]["source"] == "bench"
       and m["fit"]["rms_rel_residual"] < 1e-9 and m["fit"]["rows"] == 6 and m["fit"]["dof"] == 2,
       "model: exact data fit with zero error, 6 conclusive rows, 2 degrees of freedom", m.get("fit"))
    ok([c["cell"] for c in co["join"]["cells"]] == ["storm-w1"]
       and {c["cell"] for c in co["idle_participant_s"]["cells"]} >= {"idle-s10-w1", "storm-w1"}
       and "idle-s10-w1" not in {c["cell"] for c in co["ingress_frame"]["cells"]},
       "model: each coefficient names the cells it came from", json.dumps(co, indent=1)[:2000])
    ok(m["fit"]["inconclusive_rows"] == 0 and m["excluded_inconclusive"] == ["relay-s10-k1-w1#2"]
       and not any(r["cell"] == "relay-s10-k1-w1#2" for r in m["fit"]["residuals"])
       and "left out of the fit (INCONCLUSIVE" in out,
       "model: the INCONCLUSIVE step is left out of the fit by default and named", out)
    ok(any(c.get("status") == "skipped" and "speakers" in c.get("reason", "")
           for c in m["cells_without_json"]) and "relay-s2-k3-w1 (skipped" in out,
       "model: a skipped cell is reported, not silently dropped", out)
    # Utilisation at the SLO: s2 ramp passes steps 1-2 (5.042 CPU-s), the
    # s10 ramp passes step 1 (3.355 CPU-s); step 2 is INCONCLUSIVE.
    u2, u10 = 5.042 / T, 3.355 / T
    ok(close(m["util_at_slo"]["median"], (u2 + u10) / 2, 1e-9)
       and close(m["util_at_slo"]["min"], u10, 1e-9),
       "model: utilisation at the SLO per ramp, median of the cells", m.get("util_at_slo"))
    ok(close(m["memory"]["bytes_per_participant"], 20480) and len(m["relay_vs_floor"]) == 1
       and close(m["relay_vs_floor"][0]["ratio"], (5.042 / 200000) / (0.5 / 200000), 1e-9),
       "model: memory per participant and relay/floor CPU ratio", m.get("relay_vs_floor"))
    pr = m["predictions"][0] if m.get("predictions") else {}
    cost7 = A * 2 * 50 + B * 2 * 6 * 50 + C * 7
    ok(close(pr.get("participants"), (u2 + u10) / 2 / cost7 * 7, 1e-9),
       "model --predict 7:2:1: util / CPU per room x size", pr)
    rc2, out2, _ = run(MODEL, FIX, "--include-inconclusive", "--json", "-")
    m2 = json.loads(out2) if rc2 == 0 else {}
    ok(rc2 == 0 and m2["fit"]["rows"] == 7 and m2["excluded_inconclusive"] == []
       and m2["fit"]["inconclusive_rows"] == 1
       and any(r["cell"] == "relay-s10-k1-w1#2" and r["inconclusive"] for r in m2["fit"]["residuals"])
       and close(m2["coefficients"]["egress_datagram"]["value_s"], B),
       "model --include-inconclusive keeps the INCONCLUSIVE step, marked", out2[:500])

    # Noise: one cell 10% off makes the errors non-zero and the residual show.
    noisy = os.path.join(tmp, "noisy")
    shutil.copytree(FIX, noisy)
    p = os.path.join(noisy, "relay-s2-kall-w1.json")
    d = json.load(open(p))
    d["steps"][1]["result"]["server"]["cpu_s"] *= 1.1
    json.dump(d, open(p, "w"))
    rc3, out3, _ = run(MODEL, noisy, "--json", "-")
    m3 = json.loads(out3) if rc3 == 0 else {"coefficients": {}}
    ok(rc3 == 0 and all(v["stderr_s"] > 0 for k, v in m3["coefficients"].items()
                        if k not in ("turn", "ack_in"))
       and m3["fit"]["rms_rel_residual"] > 0.005,
       "model: a perturbed cell gives non-zero fit errors", out3[:800])

    # Cells that do not separate every coefficient: without the idle cell the
    # fit leaves one coefficient out and says so; with one room shape only it
    # refuses with a clear message.
    part = os.path.join(tmp, "part")
    shutil.copytree(FIX, part)
    os.remove(os.path.join(part, "idle-s10-w1.json"))
    rc4, out4, err4 = run(MODEL, part, "--json", "-")
    m4 = json.loads(out4) if rc4 == 0 else {"coefficients": {}}
    ok(rc4 == 0 and m4["coefficients"]["join"]["value_s"] is None
       and "not separable" in m4["coefficients"]["join"]["note"]
       and m4["coefficients"]["egress_datagram"]["value_s"] is not None,
       "model: a coefficient the cells cannot separate is left out and named", out4[:800] + err4)
    for f in ("storm-w1.json", "relay-s10-k1-w1.json"):
        os.remove(os.path.join(part, f))
    rc5, out5, err5 = run(MODEL, part)
    ok(rc5 == 1 and "do not separate the coefficients" in err5,
       "model: one room shape only is refused with a clear message", out5 + err5)

    # A cell where relay and bench shared CPUs is left out by default.
    sh = os.path.join(tmp, "shared")
    shutil.copytree(FIX, sh)
    ix = json.load(open(os.path.join(sh, "index.json")))
    for c in ix["cells"]:
        if c["name"] == "relay-s10-k1-w1":
            c["shared_cpus"] = True
    json.dump(ix, open(os.path.join(sh, "index.json"), "w"))
    rc6, out6, err6 = run(MODEL, sh, "--json", "-")
    m6 = json.loads(out6) if rc6 == 0 else {"fit": {}}
    rc7, out7, err7 = run(MODEL, sh, "--include-shared", "--json", "-")
    m7 = json.loads(out7) if rc7 == 0 else {"fit": {}}
    ok(rc6 == 0 and m6["excluded_shared_cpus"] == ["relay-s10-k1-w1"] and m6["fit"]["rows"] == 5
       and [c["cell"] for c in m6["util_at_slo_cells"]] == ["relay-s2-kall-w1"]
       and rc7 == 0 and m7["fit"]["rows"] == 6,
       "model: a shared_cpus cell is left out of the fit and the utilisation unless --include-shared",
       out6[:1500] + err6 + err7)

    # ----------------------------------------------------------------- plan
    u = (u2 + u10) / 2
    rc, p, err = plan("--participants", "1000", "--room-size", "10", "--speakers", "1",
                      "--cores", "8", "--nic-gbps", "10", "--memory-gb", "1", "--headroom", "20")
    ok(rc == 0, "plan: 1000 participants in rooms of 10, 1 speaker", err)
    cpu = A * 100 * 50 + B * 100 * 9 * 50 + C * 1000 + D * 1000 / 1800.0
    per_core = u * 0.8
    ok(close(p["workload"]["cpu_core_s_per_s"], cpu, 1e-9)
       and close(p["cores_needed"], cpu / per_core, 1e-9) and p["cores_needed_rounded"] == 2,
       "plan: CPU %.4f core-s/s, %.3f cores" % (cpu, cpu / per_core), p.get("workload"))
    cap_cpu = 8 * per_core * 1000 / cpu
    ok(p["binding"] == "cpu" and p["servers"] == 1
       and close(p["per_server_capacity_participants"], cap_cpu, 1e-9)
       and p["relay_config_per_server"]["max_conns"] == math.ceil(math.floor(cap_cpu) / 8)
       and p["relay_config_per_server"]["max_rooms"] == math.floor(cap_cpu) // 10
       and p["relay_config_per_server"]["max_members"] == 10
       and p["relay_config_per_server"]["handshake_rate"] == int((8 * u - cpu) / D),
       "plan: CPU binds, one server, per-server limits from %.0f participants" % cap_cpu,
       {k: p.get(k) for k in ("binding", "servers", "relay_config_per_server")})
    bw = 1000 / (45000 * (4000 / 50 + 122) * 8 / 8e9)
    mem = 2**30 * 0.8 / 20480
    cs = p["constraints"]
    ok(close(cs["nic_bandwidth"]["per_server_participants"], bw, 1e-9)
       and close(cs["memory"]["per_server_participants"], mem, 1e-9)
       and close(cs["nic_pps"]["per_server_participants"], 10e9 / 8 / 84 * 0.8 / 45, 1e-9),
       "plan: NIC bandwidth, packets/s and memory limits by hand", cs)
    # A NIC-bound plan: rooms of 50, everyone talking, 64 cores, 1 Mpps NIC.
    rc, p, err = plan("--participants", "10000", "--room-size", "50", "--cores", "64",
                      "--nic-gbps", "100", "--nic-mpps", "1", "--util-at-slo", "0.5",
                      "--headroom", "0", "--join-rate", "0")
    egr = 200 * 50 * 49 * 50
    ok(rc == 0 and p["binding"] == "nic_pps" and p["servers"] == math.ceil(egr / 1e6)
       and close(p["constraints"]["cpu"]["per_server_participants"],
                 64 * 0.5 * 10000 / (A * 200 * 50 * 50 + B * egr + C * 10000), 1e-9),
       "plan: 24.5 M datagrams/s on a 1 Mpps NIC needs 25 servers, NIC packets/s binds",
       p if rc == 0 else err)
    # A distribution of room sizes.
    rc, p, err = plan("--participants", "1200", "--room-size", "2:0.5,10:0.5", "--speakers", "3",
                      "--cores", "4", "--nic-gbps", "10", "--join-rate", "0")
    ok(rc == 0 and close(p["workload"]["rooms"], 200)
       and close(p["workload"]["ingress_frames_per_s"], 100 * 2 * 50 + 100 * 3 * 50)
       and close(p["workload"]["egress_datagrams_per_s"], 100 * 2 * 1 * 50 + 100 * 3 * 9 * 50),
       "plan: a room-size distribution; speakers capped at the room size",
       p.get("workload") if rc == 0 else err)
    rc, out, err = plan("--participants", "1000", "--room-size", "10", "--cores", "8",
                        "--nic-gbps", "10", json_out=False)
    ok(rc == 0 and "binding          cpu" in out and "arithmetic:" in out and "max_conns = " in out,
       "plan: plain text shows the result and the arithmetic", out + err)

    # ------------------------------------------------------------ refusals
    def refused(desc, needle, *args, src=("--results", FIX)):
        rc, out, err = plan(*args, src=src, json_out=False)
        ok(rc == 1 and needle in err and not out, "plan refuses %s" % desc, "rc %d\n%s%s" % (rc, out, err))
    base = ("--cores", "8", "--nic-gbps", "10")
    refused("zero participants", "--participants must be > 0",
            "--participants", "0", "--room-size", "6", *base)
    refused("fractions that do not sum to 1", "sum to 0.9",
            "--participants", "100", "--room-size", "2:0.4,6:0.5", *base)
    refused("a room of 1", "at least 2 participants",
            "--participants", "100", "--room-size", "1", *base)
    refused("headroom of 100%", "--headroom must be in [0, 100)",
            "--participants", "100", "--room-size", "6", "--headroom", "100", *base)
    refused("an SLO no measured step met", "no measured ramp step met p99 <= 0.5 ms",
            "--participants", "100", "--room-size", "6", "--slo-p99", "0.5", *base)
    refused("a room that does not fit on one server", "must fit on one server",
            "--participants", "1000", "--room-size", "500", "--cores", "1", "--nic-gbps", "10",
            "--util-at-slo", "0.5")
    refused("an SLO tighter than the model file's", "tighter than the model's",
            "--participants", "100", "--room-size", "6", "--slo-p99", "2", *base,
            src=("--model", os.path.join(tmp, "model.json")))

    # ------------------------------------------ hold cells (the CPU model)
    # Synthetic hold records from known costs: 20 us per ingress frame, 5 us
    # per egress datagram, 30 us per loop turn, 10 us per participant-second,
    # 200 us per join; turns = (0.5 ingress + 0.02 egress + participant-s) x
    # a factor per cell (batching varies: turns linear in the workload would
    # not be separable from it). The fit must use them, not the bench rows,
    # and give every coefficient back.
    hd = os.path.join(tmp, "holds")
    shutil.copytree(FIX, hd)
    TT = 30e-6

    def hold_rec(name, size, k, rooms, joins=0, dt=2.0, f=1.0):
        ing, egr, P = rooms * k * 50 * dt, rooms * k * (size - 1) * 50 * dt, rooms * size
        turns = (0.5 * ing + 0.02 * egr + P * dt) * f
        cpu = A * ing + B * egr + TT * turns + C * P * dt + D * joins
        json.dump({"tool": "roost-capacity-hold", "hold_s": dt, "inconclusive": False,
                   "reasons": "", "relay": {"cpu_s": cpu},
                   "counters": {"media_in": ing, "datagrams_sent": egr, "turns": turns,
                                "joins": joins},
                   "participant_s": P * dt, "config": {"size": size, "speakers": k, "frame_ms": 20},
                   "bench": {"rooms": rooms, "participants": P}},
                  open(os.path.join(hd, name + ".hold.json"), "w"))
    for args in (("hold-a", 2, 2, 10, 0, 2.0, 1.2), ("hold-b", 5, 1, 8, 0, 2.0, 0.8),
                 ("hold-c", 10, 3, 3, 0, 2.0, 1.1), ("hold-d", 20, 1, 2, 0, 2.0, 0.9),
                 ("hold-e", 5, 5, 4, 0, 2.0, 1.0), ("idle-h", 10, 0, 30),
                 ("storm-h", 2, 0, 1, 300)):
        hold_rec(*args)
    rc, out, err = run(MODEL, hd, "--json", "-")
    mh = json.loads(out) if rc == 0 else {"coefficients": {}, "fit": {}}
    gh = {k: v["value_s"] for k, v in mh["coefficients"].items()}
    tm = (mh.get("turn_model") or {}).get("coefficients", {})
    ok(rc == 0 and mh["fit"]["source"] == "hold" and mh["fit"]["rows"] == 7
       and close(gh["ingress_frame"], A, 1e-6) and close(gh["egress_datagram"], B, 1e-6)
       and close(gh["turn"], TT, 1e-6) and close(gh["idle_participant_s"], C, 1e-6)
       and close(gh["join"], D, 1e-6),
       "model: the hold cells are the fit's rows; 5 coefficients, turns included", out[:1500] + err)
    ok(tm.get("ingress_per_s", 0) > 0 and mh["turn_model"].get("form") == "saturating"
       and mh["turn_model"]["t_max_per_worker"] > 0
       and 0.01 < mh["turn_model"]["rms_rel_residual"] < 0.3,
       "model: the turn model (turns/s from the workload's rates, saturating) and its scatter",
       mh.get("turn_model"))
    rc, p, err = plan("--participants", "700", "--room-size", "7", "--speakers", "2",
                      "--cores", "4", "--nic-gbps", "10", "--join-rate", "0",
                      "--util-at-slo", "0.5", src=("--results", hd))
    ing7, egr7 = 100 * 2 * 50, 100 * 2 * 6 * 50
    # By hand: turns of W workers = W x T (1 - exp(-lam / (W x T))), W the
    # workers the plan put the load on.
    tmm = mh.get("turn_model") or {"t_max_per_worker": 1.0}
    W = (p.get("workload") or {}).get("turn_workers", 1) if rc == 0 else 1
    lam7 = (tm.get("ingress_per_s", 0) * ing7 + tm.get("egress_per_s", 0) * egr7
            + tm.get("participants", 0) * 700) / W
    T7 = tmm["t_max_per_worker"]
    cpu7 = A * ing7 + B * egr7 + C * 700 + TT * W * T7 * (1 - math.exp(-lam7 / T7))
    ok(rc == 0 and close(p["workload"]["cpu_core_s_per_s"], cpu7, 1e-6)
       and W == math.ceil(cpu7 / 0.5 / (1 - 0.2) - 1e-9),
       "plan: CPU of an unseen shape from the workload alone (turns predicted on the %d "
       "workers it needs): %.4f" % (W, cpu7), p.get("workload") if rc == 0 else err)

    # validate --no-measure on the synthetic holds: hold-outs generated from
    # the same costs (their turns off the turn model by +-5 %) are predicted
    # within the bound; one whose CPU is 30 % higher is not (exit 1); the
    # record is written where plan finds it.
    VALIDATE = "scripts/capacity/validate"
    hold_rec("holdout-s7-k2-r10-w1", 7, 2, 10, 0, 3.0, 1.05)
    hold_rec("holdout-s30-k1-r4-w1", 30, 1, 4, 0, 3.0, 0.95)
    hold_rec("holdout-s100-k3-r3-w1", 100, 3, 3, 0, 3.0, 1.0)
    rc, out, err = run(VALIDATE, "--results", hd, "--no-measure")
    hr = json.load(open(os.path.join(hd, "holdout.json"))) if os.path.exists(
        os.path.join(hd, "holdout.json")) else {"shapes": []}
    errs = {x["shape"]: x["cpu_rel_err"] for x in hr["shapes"]}
    ok(rc == 0 and hr.get("tool") == "roost-capacity-validate" and len(errs) == 3
       and all(e is not None and abs(e) <= 0.10 for e in errs.values()) and "PASS" in out
       and hr["fit"]["rows"] == 7,
       "validate --no-measure: 3 hold-outs predicted within 10%%, recorded (%s)" % errs,
       out + err)
    ok(all(abs(x["conditional_rel_err"]) < 1e-6 for x in hr["shapes"]),
       "validate: with the hold-outs' own counters the coefficients are exact", hr["shapes"])
    pb = os.path.join(hd, "holdout-s30-k1-r4-w1.hold.json")
    d = json.load(open(pb))
    d["relay"]["cpu_s"] *= 1.3
    json.dump(d, open(pb, "w"))
    rc, out, err = run(VALIDATE, "--results", hd, "--no-measure")
    ok(rc == 1 and "OFF" in out and "FAIL" in out,
       "validate: a hold-out 30% off the prediction fails (exit 1)", out + err)
    d["inconclusive"], d["reasons"] = True, "ingress 100/s is not the nominal 250/s"
    json.dump(d, open(pb, "w"))
    rc, out, err = run(VALIDATE, "--results", hd, "--no-measure")
    ok(rc == 2 and "INCOMPLETE" in out and "not the nominal" in out,
       "validate: an INCONCLUSIVE hold-out makes the validation incomplete (exit 2)", out + err)
    os.remove(os.path.join(hd, "holdout.json"))

    # ------------------------------------------ trust: refusals and bands
    neg = json.load(open(os.path.join(tmp, "model.json")))
    neg["coefficients"]["egress_datagram"]["value_s"] = -1.5e-6
    json.dump(neg, open(os.path.join(tmp, "neg.json"), "w"))
    refused("a model with a negative coefficient, saying what to re-measure",
            "'egress_datagram' coefficient is negative (-1.500 us",
            "--participants", "100", "--room-size", "6", *base,
            src=("--model", os.path.join(tmp, "neg.json")))
    rc, out, err = plan("--participants", "100", "--room-size", "6", *base, json_out=False,
                        src=("--model", os.path.join(tmp, "neg.json")))
    ok("Re-measure: cells that vary the room size" in err,
       "plan: the negative-coefficient refusal names the cells to re-measure", err)
    bad = os.path.join(tmp, "bad")
    shutil.copytree(FIX, bad)
    pb = os.path.join(bad, "relay-s2-kall-w1.json")
    d = json.load(open(pb))
    d["steps"][1]["result"]["server"]["cpu_s"] *= 1.8
    json.dump(d, open(pb, "w"))
    refused("a fit whose residual is above the threshold, naming the worst cells",
            "above the 10.0% threshold",
            "--participants", "100", "--room-size", "6", *base, src=("--results", bad))
    rc, out, err = plan("--participants", "100", "--room-size", "6", *base, json_out=False,
                        src=("--results", bad))
    ok("relay-s2-kall-w1#2" in err and "Re-measure" in err,
       "plan: the residual refusal names the worst-fitting cell", err)
    rc, p, err = plan("--participants", "100", "--room-size", "6", *base,
                      "--max-residual", "90", src=("--results", bad))
    ok(rc == 0 and p["band"]["resid_rel"] > 0.10,
       "plan --max-residual 90 accepts that fit, and its band shows the residual",
       p.get("band") if rc == 0 else err)

    # The band on the noisy fixture, recomputed by hand from the model's
    # covariance and residual: 2 x sqrt(coef^2 + resid^2).
    rc, mn, err = run(MODEL, noisy, "--json", "-")
    mn = json.loads(mn)
    rc, p, err = plan("--participants", "1000", "--room-size", "10", "--speakers", "1",
                      "--cores", "8", "--nic-gbps", "10", "--join-rate", "2",
                      src=("--results", noisy))
    wl = p["workload"] if rc == 0 else {}
    amounts = {"ingress_frame": 5000.0, "egress_datagram": 45000.0,
               "idle_participant_s": 1000.0, "join": 2.0}
    cov = mn["fit"]["covariance"]
    xs = [amounts[k] for k in cov["names"]]
    var = sum(xs[i] * cov["matrix"][i][j] * xs[j] for i in range(len(xs)) for j in range(len(xs)))
    cpu_n = wl.get("cpu_core_s_per_s", 0)
    coef = math.sqrt(var) / cpu_n if cpu_n else 0
    band = 2 * math.sqrt(coef ** 2 + mn["fit"]["rms_rel_residual"] ** 2)
    bd = p.get("bands", {}) if rc == 0 else {}
    ok(rc == 0 and close(p["band"]["rel"], band, 1e-6) and close(p["band"]["coef_rel"], coef, 1e-6)
       and band > 0.005
       and close(bd["cpu_core_s_per_s"]["low"], cpu_n * (1 - band), 1e-6)
       and close(bd["cpu_core_s_per_s"]["high"], cpu_n * (1 + band), 1e-6)
       and close(bd["cores_needed"]["high"], p["cores_needed"] * (1 + band), 1e-6),
       "plan --json: band = 2 sqrt(coef^2 + resid^2) = %.2f%% on CPU and cores" % (band * 100),
       p.get("band") if rc == 0 else err)
    cap = p.get("per_server_capacity_participants", 0)
    ok(rc == 0 and close(bd["per_server_capacity_participants"]["low"], cap / (1 + band), 1e-6)
       and close(bd["per_server_capacity_participants"]["high"], cap / (1 - band), 1e-6)
       and bd["servers"]["low"] <= p["servers"] <= bd["servers"]["high"]
       and bd["max_conns"]["low"] <= p["relay_config_per_server"]["max_conns"] <= bd["max_conns"]["high"],
       "plan --json: per-server capacity, servers and max_conns carry the band", bd)
    # A recorded hold-out error wider than the fit's band takes over.
    json.dump({"tool": "roost-capacity-validate", "bound_cpu": 0.1, "bound_capacity": 0.15,
               "shapes": [{"shape": "7:2", "cpu_rel_err": -0.25, "capacity_rel_err": None},
                          {"shape": "30:1", "cpu_rel_err": 0.05, "capacity_rel_err": 0.4}]},
              open(os.path.join(noisy, "holdout.json"), "w"))
    rc, p, err = plan("--participants", "1000", "--room-size", "10", "--speakers", "1",
                      "--cores", "8", "--nic-gbps", "10", "--join-rate", "2",
                      src=("--results", noisy))
    ok(rc == 0 and close(p["band"]["rel"], 0.25) and close(p["band"]["capacity_rel"], 0.4)
       and close(p["bands"]["cpu_core_s_per_s"]["high"], cpu_n * 1.25, 1e-6)
       and close(p["bands"]["cores_needed"]["low"], p["cores_needed"] * 0.6, 1e-6),
       "plan: the recorded hold-out error (25% CPU, 40% capacity) widens the band",
       p.get("band") if rc == 0 else err)
    rc, out, err = plan("--participants", "1000", "--room-size", "10", "--speakers", "1",
                        "--cores", "8", "--nic-gbps", "10", json_out=False, src=("--results", noisy))
    lines = [l for l in out.split("arithmetic:")[0].splitlines() if l.strip().startswith(
        ("relay CPU ", "cores needed", "servers ", "per server ", "max_conns", "max_rooms",
         "handshake_rate"))]
    ok(rc == 0 and len(lines) == 7 and all(" .. " in l for l in lines)
       and "hold-out CPU 25.0%" in out,
       "plan: every printed figure carries its band", out + err)

    # ------------------------------------------ the listener ACKs
    # Synthetic holds whose ACK-only packets come from a client that ACKs
    # every 2nd datagram or 11 ms after the first unacknowledged one, or on
    # its own next media packet (--rtt 30ms, one bench thread), plus one
    # keepalive ACK per participant-second; 8 us of relay CPU per ACK. The
    # ACK model must recover the clients' rule from the counters, and the CPU
    # fit the ACK cost; a hold-out of one-speaker rooms (an ACK per datagram)
    # is then predicted exactly.
    sys.path.insert(0, "scripts/capacity")
    import caplib  # noqa: E402
    ak = os.path.join(tmp, "acks")
    os.makedirs(ak)
    AK = 8e-6
    truth = {"packets_per_ack": 2, "ack_delay_s": 0.011, "piggyback": True}

    def ack_rec(name, size, k, rooms, dt=4.0, f=1.0, joins=0):
        ing, egr, P = rooms * k * 50 * dt, rooms * k * (size - 1) * 50 * dt, rooms * size
        acks = (caplib.media_acks(truth, size, k, rooms, 50, "bench", 1, 0.030) + P) * dt
        turns = (0.5 * ing + 0.02 * egr + P * dt) * f
        cpu = A * ing + B * egr + TT * turns + C * P * dt + D * joins + AK * acks
        json.dump({"tool": "roost-capacity-hold", "hold_s": dt, "inconclusive": False,
                   "reasons": "", "relay": {"cpu_s": cpu},
                   "counters": {"media_in": ing, "datagrams_sent": egr, "turns": turns,
                                "joins": joins, "ack_only_in": acks},
                   "participant_s": P * dt,
                   "config": {"size": size, "speakers": k, "frame_ms": 20, "threads": 1,
                              "path": {"rtt_ms": 30}},
                   "bench": {"rooms": rooms, "participants": P}},
                  open(os.path.join(ak, name + ".hold.json"), "w"))
    for args in (("hold-a", 2, 2, 10, 4.0, 1.2), ("hold-b", 5, 1, 8, 4.0, 0.8),
                 ("hold-c", 10, 3, 3, 4.0, 1.1), ("hold-d", 20, 1, 2, 4.0, 0.9),
                 ("hold-e", 5, 5, 4, 4.0, 1.0), ("hold-f", 20, 2, 6, 4.0, 1.05),
                 ("hold-g", 60, 3, 1, 4.0, 0.95), ("hold-h", 40, 1, 6, 4.0, 1.0),
                 ("idle-h", 10, 0, 30), ("storm-h", 2, 0, 1, 4.0, 1.0, 300)):
        ack_rec(*args)
    ack_rec("holdout-s30-k1-r10-w1", 30, 1, 10, 4.0, 1.0)
    rc, out, err = run(MODEL, ak, "--json", "-")
    ma = json.loads(out) if rc == 0 else {"coefficients": {}, "fit": {}}
    am = ma.get("ack_model") or {}
    ok(rc == 0 and am.get("packets_per_ack") == 2 and am.get("piggyback") is True
       and 0.004 < am.get("ack_delay_s", 0) < 0.020 and am.get("rms_rel_residual", 1) < 0.01
       and close(ma["coefficients"]["ack_in"]["value_s"], AK, 1e-3),
       "ACK model: the clients' rule (every 2nd datagram, an 11-ms delay, on their own "
       "packets) is recovered from the counters, and 8 us per ACK from the CPU",
       json.dumps({k: v for k, v in am.items() if k != "rows"}) + err)
    rc, out, err = run(VALIDATE, "--results", ak, "--no-measure")
    ha = json.load(open(os.path.join(ak, "holdout.json"))) if rc in (0, 1) else {"shapes": [{}]}
    x = ha["shapes"][0]
    ok(rc == 0 and abs(x.get("cpu_rel_err", 1)) < 0.02
       and close(x.get("predicted_acks_per_s"), x.get("measured_acks_per_s"), 1e-3),
       "ACK model: a hold-out of one-speaker rooms has its ACKs and CPU predicted (%s)"
       % x.get("cpu_rel_err"), out + err)
    # Repeats that disagree are flagged, with their spread next to the error.
    base_h = json.load(open(os.path.join(ak, "holdout-s30-k1-r10-w1.hold.json")))
    for sfx, fct in (("-n2", 1.02), ("-n3", 1.30)):
        d = json.loads(json.dumps(base_h))
        d["relay"]["cpu_s"] *= fct
        json.dump(d, open(os.path.join(ak, "holdout-s30-k1-r10-w1%s.hold.json" % sfx), "w"))
    rc, out, err = run(VALIDATE, "--results", ak, "--no-measure")
    ha = json.load(open(os.path.join(ak, "holdout.json"))) if rc in (0, 1) else {"shapes": [{}]}
    x = ha["shapes"][0]
    ok(x.get("repeats") == 3 and close(x.get("repeat_spread_rel"), 0.30 / (3.32 / 3), 1e-6)
       and x.get("repeats_disagree") is True and ha.get("repeats_disagree") == ["30:1"]
       and "REPEATS DISAGREE" in out and len(x.get("cpu_rel_err_each", [])) == 3,
       "validate: 3 repeats 30 %% apart are flagged, their spread (%.1f%%) printed next to "
       "the error" % ((x.get("repeat_spread_rel") or 0) * 100), out + err)

    # A coefficient negative but within 2 standard errors of zero (a column
    # the cells do not separate) is left out and named; one significantly
    # below zero stays, so that plan refuses the model.
    def frows(ys, xs):
        return [{"cell": "c%d" % i, "workers": 1, "cpu_s": y, "inconclusive": False,
                 "x": list(x)} for i, (y, x) in enumerate(zip(ys, xs))]
    fx = [(1000, 100), (2000, 150), (3000, 400), (4000, 300), (5000, 600), (6000, 500)]
    fn = [1.02, 0.97, 0.99, 1.03, 0.98, 1.01]
    f1 = caplib.fit(frows([1e-4 * a * e for (a, b), e in zip(fx, fn)], fx), ["a", "b"],
                    floor=0.001)
    f2 = caplib.fit(frows([(1e-4 * a - 3e-4 * b) * e for (a, b), e in zip(fx, fn)], fx),
                    ["a", "b"], floor=0.001)
    ok(f1["left_out_negative"] == ["b"] and f1["coefficients"]["b"]["value_s"] == 0.0
       and f1["coefficients"]["b"]["fitted_s"] < 0 and "left out" in f1["coefficients"]["b"]["note"]
       and close(f1["coefficients"]["a"]["value_s"], 1e-4, 0.01)
       and f2["left_out_negative"] == [] and f2["coefficients"]["b"]["value_s"] < -2e-4,
       "fit: an undetermined negative coefficient is left out and named, a significant one kept",
       (f1["coefficients"], f2["coefficients"]))

    # ------------------------------------- the recorded real sweep (holds)
    # test/fixtures/capacity-real: a real validate --sweep --rt run (README.md
    # there: 3 repeats of 8-s holds, hold-outs of tens of percent of a core,
    # interleaved with the fit set). Its model must come from the holds;
    # validate --no-measure must reproduce its recorded hold-out figures
    # exactly; its coefficients must be positive (or left out as
    # undetermined, named) and its hold-outs within the bound.
    REAL = "test/fixtures/capacity-real"
    real = os.path.join(tmp, "real")
    shutil.copytree(REAL, real)
    rec0 = json.load(open(os.path.join(REAL, "holdout.json")))
    rc, out, err = run(MODEL, real, "--json", "-")
    mr = json.loads(out) if rc == 0 else {"coefficients": {}, "fit": {}}
    ok(rc == 0 and mr["fit"]["source"] == "hold" and mr["fit"]["rows"] >= 8
       and mr["holdout"] is not None,
       "real sweep: the model is fitted on its hold cells and reads its hold-out record",
       out[:800] + err)
    ok(rc == 0 and all((v["value_s"] or 0) > 0 or v.get("left_out")
                       for v in mr["coefficients"].values())
       and (mr["coefficients"].get("ack_in") or {}).get("value_s", 0) > 0
       and mr.get("ack_model") and mr["ack_model"]["rms_rel_residual"] < 0.05,
       "real sweep: every coefficient is positive (the per-ACK cost among them), the ACK "
       "model follows the measured ACKs within 5 %",
       {k: v["value_s"] for k, v in mr["coefficients"].items()})
    rc, out, err = run(VALIDATE, "--results", real, "--no-measure")
    rec = json.load(open(os.path.join(real, "holdout.json")))
    e0 = {b["shape"]: b["cpu_rel_err"] for b in rec0["shapes"]}
    same = [(a["shape"], a["cpu_rel_err"], e0.get(a["shape"], "missing")) for a in rec["shapes"]]
    ok(len(rec["shapes"]) == len(rec0["shapes"]) >= 3
       and all((x is None and y is None) or (x is not None and isinstance(y, float) and
                                             abs(x - y) < 1e-9) for _, x, y in same)
       and rc == (0 if rec0["pass"] else 2 if not rec0["complete"] else 1),
       "real sweep: validate --no-measure reproduces the recorded hold-out errors and verdict",
       "%s\n%s%s" % (same, out, err))
    within = rec["complete"] and all(abs(x["cpu_rel_err"]) <= 0.10 for x in rec["shapes"])
    ok(within and rc == 0 and all(x.get("repeats") == 3 for x in rec["shapes"]),
       "real sweep: every hold-out's relay CPU predicted within 10%% (3 repeats pooled): %s"
       % ", ".join("%s %s" % (sh, "%+.1f%%" % (x * 100) if x is not None else "not measured")
                   for sh, x, _ in same), out)

    # plan on the real sweep: its residual is over the threshold (refused,
    # naming the cells to re-measure); accepted, its band carries the
    # recorded hold-out error plus half the repeats' spread.
    pargs = ("--participants", "1000", "--room-size", "30", "--speakers", "1", "--cores", "8",
             "--nic-gbps", "10", "--util-at-slo", "0.6")
    rc, out, err = plan(*pargs, json_out=False, src=("--results", real))
    ok(rc == 1 and "above the 10.0% threshold" in err and "Re-measure" in err,
       "real sweep: plan refuses its fit (rms residual %.1f%% over 10%%)"
       % (rec["fit"]["rms_rel_residual"] * 100), out + err)
    rc, p, err = plan(*pargs, "--max-residual", "30", src=("--results", real))
    hexp = max(abs(x["cpu_rel_err"]) + (x.get("repeat_spread_rel") or 0) / 2
               for x in rec["shapes"])
    ok(rc == 0 and close(p["band"]["holdout_cpu_rel"], hexp, 1e-9)
       and p["band"]["rel"] >= hexp and p["workload"]["acks_per_s"] > 0
       and p["bands"]["cpu_core_s_per_s"]["high"] > p["workload"]["cpu_core_s_per_s"],
       "real sweep: plan --max-residual 30: the band carries the hold-out error + half the "
       "repeats' spread (%.1f%%) and the ACKs are planned" % (hexp * 100),
       p.get("band") if rc == 0 else err)

    # test/fixtures/capacity-rt-loaded: validate --sweep --rt on the loaded
    # machine, hold-outs interleaved with the fit set and repeated (README.md
    # there): --no-measure pools the repeats and reproduces its record.
    RT = "test/fixtures/capacity-rt-loaded"
    rtd = os.path.join(tmp, "rt")
    shutil.copytree(RT, rtd)
    rec0 = json.load(open(os.path.join(RT, "holdout.json")))
    rc, out, err = run(VALIDATE, "--results", rtd, "--no-measure")
    rec = json.load(open(os.path.join(rtd, "holdout.json")))
    got = [(x["shape"], x["cpu_rel_err"], x.get("repeats")) for x in rec["shapes"]]
    want = [(x["shape"], x["cpu_rel_err"], x.get("repeats")) for x in rec0["shapes"]]
    ok(rc == 1 and len(got) == 3 and all(g[2] == 2 for g in got)
       and all(g[0] == w[0] and abs(g[1] - w[1]) < 1e-9 for g, w in zip(got, want))
       and rec["fit"]["rows"] == 42,
       "loaded --rt run: validate pools the 2 repeats of each hold-out and reproduces its "
       "record (%s)" % got, out + err)
    # explore: alternative CPU models on the counters, hold-outs with their
    # own counters (never fitted), repeats pooled.
    rc, out, err = run("scripts/capacity/explore", RT, "--cols", "I,E,T,P,J", "--cols", "I,E,A,T,P,J")
    ok(rc == 0 and out.count("CPU ~ ") == 2 and "CPU ~ I + E + T + P + J: 42 cells" in out
       and "holdout-s30-k1-r2-w1" in out and "(2 holds)" in out,
       "explore: two column sets fitted on the holds, hold-outs with their own counters",
       out + err)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
if n != TESTS:
    print("# planned %d tests, ran %d" % (TESTS, n))
    failed = True
sys.exit(1 if failed else 0)
