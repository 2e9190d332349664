# Shared code of the capacity scripts (model, plan, report): reading a
# results directory written by `sweep`, the cost-model fit, utilisation at
# the SLO, and predictions. Python 3 standard library only, so that model and
# plan run where matplotlib is not installed (only the plots need it).
import glob
import json
import math
import os
import re
import statistics

# The bench samples the relay's CPU from 20 ms before the window opens
# (bench/load.c: start = now + 20 ms) until the drain has ended, so the CPU
# interval is window + drain + 20 ms.
CPU_START_LEAD_S = 0.020
# /proc/PID/stat counts CPU in clock ticks (USER_HZ = 100): every CPU figure
# is +- 10 ms, and a short idle cell can read 0.
CPU_TICK_S = 0.010
# The hold cells read schedstat (ns): their floor is 1 ms.
HOLD_FLOOR_S = 0.001

COEFS = (
    ("ingress_frame", "relay CPU per ingress media frame (one datagram in)"),
    ("egress_datagram", "relay CPU per egress media datagram (one datagram out)"),
    ("turn", "relay CPU per event-loop turn (a wake-up: the light-load cost)"),
    ("idle_participant_s", "relay CPU per connected participant per second"),
    ("join", "relay CPU per join (handshake + HELLO + JOIN)"),
    # Appended last: the columns of older code keep their positions.
    ("ack_in", "relay CPU per ACK-only packet in (a receiver acknowledging what it got)"),
)
# The turn model: loop turns per second from the workload's rates, so that a
# workload's CPU can be predicted without measuring its turns.
TURN_COLS = ("ingress_per_s", "egress_per_s", "participants", "joins_per_s")


class CapacityError(Exception):
    """An input the scripts refuse, with a message for the user."""


def load_json(path):
    with open(path) as f:
        return json.load(f)


def _workers_from_config(cfg, fallback):
    """Worker count from the relay's command line (--workers N)."""
    if not cfg:
        return fallback
    m = re.search(r"--workers[ =](\d+)", cfg)
    if m and int(m.group(1)) > 0:
        return int(m.group(1))
    m = re.search(r"--cpus[ =]([0-9,\-]+)", cfg)
    if m:
        n = 0
        for part in m.group(1).split(","):
            a, _, b = part.partition("-")
            n += (int(b) - int(a) + 1) if b else 1
        return n
    return fallback


def read_results(rdir):
    """Every roost-bench JSON of a results directory, as a list of dicts:
    {name, path, data, kind ('relay'|'floor'), workers, status}. The sweep's
    index.json (when present) supplies the status of each cell, including the
    ones that produced no JSON (failed or skipped), returned as `missing`."""
    if not os.path.isdir(rdir):
        raise CapacityError("%s: not a results directory" % rdir)
    index = {}
    missing = []
    ip = os.path.join(rdir, "index.json")
    if os.path.exists(ip):
        for c in load_json(ip).get("cells", []):
            index[c.get("file") or c["name"]] = c
    files = []
    for path in sorted(glob.glob(os.path.join(rdir, "*.json"))):
        base = os.path.basename(path)
        if base in ("index.json", "machine.json", "model.json", "holdout.json") or \
                base.endswith(".hold.json"):
            continue
        try:
            d = load_json(path)
        except (OSError, ValueError) as e:
            raise CapacityError("%s: not JSON (%s)" % (path, e))
        if d.get("tool") != "roost-bench":
            continue
        srv = d.get("server", {})
        kind = srv.get("kind", "relay")
        cores = d.get("machine", {}).get("cores", 1)
        if kind == "floor":
            workers = srv.get("workers", cores)
        else:
            workers = _workers_from_config(srv.get("config"), cores)
        cell = index.get(base, {})
        files.append({
            "name": os.path.splitext(base)[0],
            "path": path,
            "data": d,
            "kind": kind,
            "workers": int(cell.get("workers", workers)),
            "status": cell.get("status"),
            # The sweep marks cells where relay and bench had to share CPUs.
            "shared": bool(cell.get("shared_cpus", cell.get("shared_cores", False))),
            # validate's hold-out ramps: never fitted.
            "role": cell.get("role", "holdout" if base.startswith("holdout-") else "fit"),
        })
    present = {f["name"] + ".json" for f in files}
    present |= {os.path.basename(p) for p in glob.glob(os.path.join(rdir, "*.hold.json"))}
    for key, c in index.items():
        if key not in present:
            missing.append(c)
    if not files and not glob.glob(os.path.join(rdir, "*.hold.json")):
        raise CapacityError("%s: no roost-bench JSON files and no hold cells" % rdir)
    return files, missing


def _step_results(f):
    """(label, rooms, result, pass) for each step of a ramp, or the one result
    of a steady / join-storm run."""
    d = f["data"]
    if d.get("mode") == "ramp":
        out = []
        for i, s in enumerate(d.get("steps", [])):
            out.append(("%s#%d" % (f["name"], i + 1), s.get("rooms"), s["result"], s.get("pass")))
        return out
    r = d.get("result")
    return [(f["name"], r.get("rooms") if r else None, r, None)] if r else []


def rows_of(files, kind="relay"):
    """One fit row per step with a measured server CPU."""
    rows = []
    for f in files:
        if f["kind"] != kind:
            continue
        cfg = f["data"].get("config", {})
        drain_s = cfg.get("drain_ms", 500) / 1000.0
        for label, rooms, r, passed in _step_results(f):
            srv = r.get("server", {})
            cpu = srv.get("cpu_s")
            if cpu is None or cpu < 0:
                continue
            window = r.get("window_s") or cfg.get("duration_s", 0)
            interval = window + drain_s + CPU_START_LEAD_S
            base = r.get("joins", {}).get("ok", r.get("participants", 0))
            storm = (r.get("join_storm") or {}).get("ok", 0)
            # Storm joins are spread evenly over the window: each stays
            # connected for the rest of the interval, window/2 less on average.
            idle = base * interval + storm * (interval - window / 2.0)
            lat = r.get("latency_ns", {})
            rows.append({
                "cell": label,
                "file": f["name"],
                "workers": f["workers"],
                "size": cfg.get("size"),
                "speakers": cfg.get("speakers"),
                "rooms": rooms,
                "participants": r.get("participants"),
                "inconclusive": bool(r.get("inconclusive")),
                "shared": f["shared"],
                "reasons": r.get("reasons", ""),
                "pass": passed,
                "cpu_s": cpu,
                "interval_s": interval,
                "x": [float(r.get("frames", {}).get("sent", 0)),
                      float(srv.get("egress_datagrams", 0)), 0.0, float(idle), float(storm),
                      0.0],
                "p99_ns": lat.get("p99"),
                "loss": r.get("delivery", {}).get("loss_ratio"),
                "rss_pp": srv.get("rss_per_participant_bytes"),
                "frame_ms": cfg.get("frame_ms", 20),
            })
    return rows


def read_holds(rdir, role=None):
    """The steady hold records (`hold`) of a results directory, as dicts
    {name, data, workers, shared, role ('fit'|'holdout'), status}; `role`
    selects one kind."""
    index = {}
    ip = os.path.join(rdir, "index.json")
    if os.path.exists(ip):
        for c in load_json(ip).get("cells", []):
            index[c.get("file") or c["name"]] = c
    out = []
    for path in sorted(glob.glob(os.path.join(rdir, "*.hold.json"))):
        base = os.path.basename(path)
        try:
            d = load_json(path)
        except (OSError, ValueError) as e:
            raise CapacityError("%s: not JSON (%s)" % (path, e))
        if d.get("tool") != "roost-capacity-hold":
            continue
        cell = index.get(base, {})
        h = {"name": base[:-len(".hold.json")], "path": path, "data": d,
             "workers": int(cell.get("workers", d.get("workers", 1))),
             "shared": bool(cell.get("shared_cpus", d.get("shared_cpus", False))),
             "role": cell.get("role", "holdout" if base.startswith("holdout-") else "fit"),
             "status": cell.get("status")}
        if role is None or h["role"] == role:
            out.append(h)
    return out


def acks_of(counters):
    """ACK-only packets the relay received: the relay's own counter
    (roost_quic_ack_only_received_total); in records from before it,
    packets in minus media datagrams in (ACK-only packets and the few other
    control packets)."""
    if "ack_only_in" in counters:
        return float(counters["ack_only_in"])
    if "packets_received" in counters:
        return max(float(counters["packets_received"]) - float(counters.get("media_in", 0)), 0.0)
    return 0.0


def hold_rows(holds):
    """One fit row per hold record with a measured CPU."""
    rows = []
    for h in holds:
        d = h["data"]
        c = d.get("counters")
        cpu = (d.get("relay") or {}).get("cpu_s")
        if not c or cpu is None or not d.get("hold_s"):
            continue
        cfg = d.get("config", {})
        dt = d["hold_s"]
        turns = c["wakeups"] if c.get("wakeups") else c.get("turns", 0.0)
        b = d.get("bench") or {}
        lat = b.get("latency_ns") or {}
        rows.append({
            "cell": h["name"], "file": h["name"], "workers": h["workers"],
            "size": cfg.get("size"), "speakers": cfg.get("speakers"), "rooms": b.get("rooms"),
            "participants": b.get("participants"), "inconclusive": bool(d.get("inconclusive")),
            "shared": h["shared"], "reasons": d.get("reasons", ""), "pass": None,
            "cpu_s": cpu, "interval_s": dt, "hold_s": dt,
            "x": [float(c.get("media_in", 0)), float(c.get("datagrams_sent", 0)), float(turns),
                  float(d.get("participant_s", 0)), float(c.get("joins", 0)), acks_of(c)],
            "bench_threads": cfg.get("threads") or 1,
            "rtt_ms": (cfg.get("path") or {}).get("rtt_ms") or 0.0,
            "p99_ns": lat.get("p99"), "p50_ns": lat.get("p50"), "p999_ns": lat.get("p999"),
            "loss": b.get("loss_ratio"), "rss_pp": None,
            "frame_ms": cfg.get("frame_ms", 20),
        })
    return rows


def _wls(X, y, w):
    """Weighted least squares (no intercept): the coefficients, or None when
    singular."""
    n, p = len(X), len(X[0]) if X else 0
    A = [[sum(w[i] ** 2 * X[i][a] * X[i][b] for i in range(n)) for b in range(p)]
         for a in range(p)]
    v = [sum(w[i] ** 2 * X[i][a] * y[i] for i in range(n)) for a in range(p)]
    inv = _invert(A)
    if inv is None:
        return None
    return [sum(inv[a][b] * v[b] for b in range(p)) for a in range(p)]


def turns_of(tm, lam_per_worker):
    """Loop turns/s of one worker whose arrival-event rate is lam (the
    saturating turn model: T_max x (1 - exp(-lam / T_max)))."""
    t = tm["t_max_per_worker"]
    return t * (1.0 - math.exp(-max(lam_per_worker, 0.0) / t))


def fit_turns(rows):
    """The turn model: loop turns per second of one worker from the
    workload's rates,

        turns/s = T_max (1 - exp(-lam / T_max)),
        lam     = tau_1 ingress/s + tau_2 egress/s + tau_3 participants + tau_4 joins/s.

    lam is the rate of distinct arrival events (a media frame, the ACKs that
    answer its fan-out, keepalives, handshakes); a worker that holds each turn
    open for turn_batch_us takes every arrival within that window in one turn,
    so turns grow linearly at light load and saturate at T_max (about one turn
    per batch window) at heavy load: a linear model of turns cannot follow
    both. Fitted on the hold cells: T_max by a search, the tau by weighted
    least squares on the linearised rates -T ln(1 - turns/T) (weights: the
    relative error of the turns). Returns {form, t_max_per_worker,
    coefficients, rms_rel_residual, rows} or None without enough rows."""
    tr = []
    for r in rows:
        dt = r["hold_s"]
        if not dt or r["x"][2] <= 0:
            continue
        w = max(r.get("workers") or 1, 1)
        tr.append({"cell": r["cell"], "workers": w, "inconclusive": r["inconclusive"],
                   "y": r["x"][2] / dt / w,
                   "x": [r["x"][0] / dt / w, r["x"][1] / dt / w, r["x"][3] / dt / w,
                         r["x"][4] / dt / w]})
    if len(tr) < len(TURN_COLS):
        return None
    used = [j for j in range(len(TURN_COLS)) if any(t["x"][j] != 0 for t in tr)]
    ymax = max(t["y"] for t in tr)
    best = None
    # T_max from just above the largest turn rate seen to 20 times it, in
    # 2 % steps; the linear model is its limit for a large T_max.
    t = ymax * 1.02
    while t <= ymax * 20:
        lam = [-t * math.log(1.0 - r["y"] / t) for r in tr]
        w = [(1.0 - r["y"] / t) / r["y"] for r in tr]
        # Event rates are not negative: a rate that comes out negative is
        # left out and the rest refitted (an active set).
        cols = list(used)
        beta = None
        while cols:
            beta = _wls([[r["x"][j] for j in cols] for r in tr], lam, w)
            if beta is None or min(beta) >= 0:
                break
            cols.pop(beta.index(min(beta)))
        if beta is not None and cols:
            res = []
            for r in tr:
                pl = sum(b * r["x"][j] for b, j in zip(beta, cols))
                res.append((r["y"] - t * (1.0 - math.exp(-max(pl, 0.0) / t))) / r["y"])
            rms = math.sqrt(sum(e * e for e in res) / len(res))
            if best is None or rms < best[0]:
                best = (rms, t, beta, res, list(cols))
        t *= 1.02
    if best is None:
        return None
    rms, t, beta, res, cols = best
    co = {n: (0.0 if j in used else None) for j, n in enumerate(TURN_COLS)}
    for b, j in zip(beta, cols):
        co[TURN_COLS[j]] = b
    return {"form": "saturating", "t_max_per_worker": t, "coefficients": co,
            "rms_rel_residual": rms,
            "rows": [{"cell": r["cell"], "turns_per_s": r["y"] * r["workers"],
                      "rel_residual": e} for r, e in zip(tr, res)]}


def turn_model_text(tm):
    """One line describing the turn model (model, plan)."""
    c = tm["coefficients"]
    lam = ("%.4f x ingress/s + %.5f x egress/s + %.4f x participants + %.3f x joins/s" % (
        none_to_zero(c.get("ingress_per_s")), none_to_zero(c.get("egress_per_s")),
        none_to_zero(c.get("participants")), none_to_zero(c.get("joins_per_s"))))
    if tm.get("form") != "saturating":
        return "turn model (loop turns/s, linear): %s; rms relative residual %.1f%%" % (
            lam, tm["rms_rel_residual"] * 100)
    return ("turn model (loop turns/s per worker from the workload, for predictions): "
            "%.0f x (1 - exp(-lam / %.0f)), lam = %s (per worker); rms relative residual %.1f%% "
            "over %d cells" % (tm["t_max_per_worker"], tm["t_max_per_worker"], lam,
                               tm["rms_rel_residual"] * 100, len(tm.get("rows", []))))


def predict_turns(model, ingress, egress, participants, joins=0.0, workers=1):
    """Loop turns/s of `workers` workers sharing the workload evenly."""
    tm = model.get("turn_model")
    if not tm:
        return 0.0
    c = tm["coefficients"]
    w = max(workers, 1)
    lam = (none_to_zero(c.get("ingress_per_s")) * ingress
           + none_to_zero(c.get("egress_per_s")) * egress
           + none_to_zero(c.get("participants")) * participants
           + none_to_zero(c.get("joins_per_s")) * joins) / w
    if tm.get("form") != "saturating":
        return lam * w  # an older model.json: linear
    return w * turns_of(tm, lam)


# ------------------------------------------------------------ the ACK model
#
# Every receiver acknowledges what it gets (RFC 9000 13.2.1): an ACK-only
# packet after every n-th packet that asks for one, or when its ACK delay d
# has run out since the first unacknowledged one, unless a packet it sends
# anyway (a speaker's own media) carries the ACK before then. So the ACKs a
# workload draws depend on when each receiver's datagrams come: a listener
# of one speaker at 50 frames/s ACKs every datagram if d < 20 ms, a listener
# of two whose frames come within d of each other every other one, a
# speaker may ACK nothing on its own. n, d and whether ACKs ride on sent
# media are the clients' choice (and change with the client library): they
# are fitted on the fit set's measured ACK counts, never assumed. The
# arrival pattern is the workload's: the bench spreads all the speakers of
# a bench thread evenly over one frame interval F (bench/loop.c: a room's k
# speakers come F / (speakers on the thread) apart) and a frame reaches the
# other members one emulated RTT after it was sent (--rtt); a deployment's
# speakers have independent phases (random, averaged).

ACK_N = (1, 2, 3, 4, 6, 10)
ACK_D = tuple(0.0005 * 1.2 ** i for i in range(25))  # 0.5 ms .. 40 ms
ACK_SEEDS = 24


def _acks_in_period(times, period, n, d, sends=(), piggyback=True):
    """ACK-only packets per period from a receiver whose datagrams arrive
    at `times` and who sends its own at `sends` (seconds within one
    period), every period: an ACK per n packets, or d after the first
    unacknowledged one, or none when a packet it sends goes first."""
    if not times:
        return 0.0
    ev = sorted([(t % period, 1) for t in times] +
                ([(t % period, 0) for t in sends] if piggyback else []))
    acks = 0
    c = 0
    due = None
    periods = 4
    for p in range(periods):
        for t, kind in ev:
            a = p * period + t
            if due is not None and due <= a:
                acks += 1 if p >= 2 else 0
                c, due = 0, None
            if kind == 0:  # its own media: the ACK rides on it
                c, due = 0, None
                continue
            c += 1
            if c >= n:
                acks += 1 if p >= 2 else 0
                c, due = 0, None
            elif c == 1:
                due = a + d
    return acks / 2.0


def _ack_pattern(size, speakers, rooms, fps, schedule="bench", threads=1, rtt_s=0.0):
    """[(receivers, arrival times, own send times)] of a room shape: who
    receives what when within one frame period."""
    k = min(speakers, size)
    if k <= 0 or rooms <= 0:
        return []
    period = 1.0 / fps
    out = []
    if schedule == "bench":
        # The bench thread's speakers, room after room, F / ns apart.
        ns = max(1, int(math.ceil(rooms / float(max(threads, 1))))) * k
        own = [i * period / ns for i in range(k)]
        arr = [t + rtt_s for t in own]
        if size > k:
            out.append((rooms * (size - k), arr, ()))
        for i in range(k if k > 1 else 0):
            out.append((rooms, arr[:i] + arr[i + 1:], (own[i],)))
        return out
    # Independent phases: averaged over seeded random draws.
    import random
    rnd = random.Random(17)
    for _ in range(ACK_SEEDS):
        ph = [rnd.random() * period for _ in range(k)]
        if size > k:
            out.append((rooms * (size - k) / float(ACK_SEEDS), ph, ()))
        for i in range(k if k > 1 else 0):
            out.append((rooms / float(ACK_SEEDS), ph[:i] + ph[i + 1:], (ph[i],)))
    return out


def media_acks(am, size, speakers, rooms, fps, schedule="bench", threads=1, rtt_s=0.0):
    """ACK-only packets/s the media of `rooms` rooms draws from their
    receivers under the ACK model `am` (packets_per_ack, ack_delay_s,
    piggyback)."""
    period = 1.0 / fps
    return sum(w * _acks_in_period(t, period, am["packets_per_ack"], am["ack_delay_s"], snd,
                                   am.get("piggyback", True)) * fps
               for w, t, snd in _ack_pattern(size, speakers, rooms, fps, schedule, threads,
                                             rtt_s))


def _hold_path(r):
    """(bench threads, emulated RTT in s) of a hold row."""
    return r.get("bench_threads") or 1, (r.get("rtt_ms") or 0.0) / 1000.0


def fit_acks(rows):
    """The ACK model: ACK-only packets/s a workload draws,

        acks/s = media ACKs(n, d, piggyback) + alpha x participants + beta x joins/s,

    the media ACKs from each receiver's arrival pattern (above), alpha the
    keepalive ACKs of connected participants, beta the handshakes'. n (the
    packets per ACK), d (the ACK delay) and piggyback (whether a sent packet
    carries the pending ACK) by a search, alpha and beta (>= 0) by weighted
    least squares on relative error. None when the holds carry no ACK
    counts (records from before the counter)."""
    ar = []
    for r in rows:
        dt = r.get("hold_s")
        if not dt or len(r["x"]) < 6 or r.get("size") is None or r["x"][5] <= 0:
            continue
        th, rtt = _hold_path(r)
        ar.append({"cell": r["cell"], "y": r["x"][5] / dt, "size": r["size"],
                   "k": r.get("speakers") or 0, "rooms": r.get("rooms") or 0,
                   "fps": 1000.0 / (r.get("frame_ms") or 20), "P": r["x"][3] / dt,
                   "J": r["x"][4] / dt, "threads": th, "rtt": rtt})
    if len(ar) < 3 or not any(a["k"] > 0 for a in ar):
        return None
    best = None
    w = [1.0 / a["y"] for a in ar]
    for pb in (True, False):
        for n in ACK_N:
            for d in ACK_D:
                am = {"packets_per_ack": n, "ack_delay_s": d, "piggyback": pb}
                med = [media_acks(am, a["size"], a["k"], a["rooms"], a["fps"], "bench",
                                  a["threads"], a["rtt"]) for a in ar]
                y = [a["y"] - m for a, m in zip(ar, med)]
                cols = [j for j in (0, 1) if any((a["P"], a["J"])[j] for a in ar)]
                beta = None
                while cols:
                    beta = _wls([[(a["P"], a["J"])[j] for j in cols] for a in ar], y, w)
                    if beta is None or min(beta) >= 0:
                        break
                    cols.pop(beta.index(min(beta)))
                co = [0.0, 0.0]
                if beta is not None:
                    for b, j in zip(beta, cols):
                        co[j] = b
                res = [(a["y"] - m - co[0] * a["P"] - co[1] * a["J"]) / a["y"]
                       for a, m in zip(ar, med)]
                rms = math.sqrt(sum(e * e for e in res) / len(res))
                if best is None or rms < best[0] - 1e-9:
                    best = (rms, am, co, res)
    rms, am, co, res = best
    am.update({"form": "ack-threshold-delay", "participants": co[0], "joins_per_s": co[1],
               "rms_rel_residual": rms,
               "rows": [{"cell": a["cell"], "acks_per_s": a["y"],
                         "predicted_per_s": a["y"] * (1 - e), "rel_residual": e}
                        for a, e in zip(ar, res)]})
    return am


def predict_acks(model, size, speakers, rooms, fps, joins_per_s=0.0, schedule="bench",
                 threads=1, rtt_s=None):
    """ACK-only packets/s into the relay for `rooms` rooms (0 without an
    ACK model: a model from records without the counter). The bench's
    path (rtt_s) defaults to the one the fit set was measured at."""
    am = model.get("ack_model")
    if not am:
        return 0.0
    if rtt_s is None:
        rtt_s = am.get("rtt_s", 0.0)
    return (media_acks(am, size, speakers, rooms, fps, schedule, threads, rtt_s)
            + am.get("participants", 0.0) * rooms * size + am.get("joins_per_s", 0.0) * joins_per_s)


def ack_model_text(am):
    """One line describing the ACK model (model, plan)."""
    return ("ACK model (ACK-only packets in/s from the workload, for predictions; fitted): an ACK "
            "per %d datagrams or %.1f ms after the first unacknowledged one%s, + %.3f per "
            "participant-s + %.1f per join; rms relative residual %.1f%% over %d cells" % (
                am["packets_per_ack"], am["ack_delay_s"] * 1e3,
                ", or on the receiver's own next packet before then" if am.get("piggyback")
                else " (none on the receiver's own packets)", am.get("participants", 0.0),
                am.get("joins_per_s", 0.0), am["rms_rel_residual"] * 100,
                len(am.get("rows", []))))


def workload_amounts(model, size, speakers, rooms, fps, joins_per_s=0.0, workers=1,
                     schedule="bench"):
    """Per second amounts of every coefficient for `rooms` rooms of `size`
    with `speakers` speakers on `workers` workers: what the CPU prediction
    multiplies. `schedule`: the speakers' phases ('bench': the bench's even
    spread, what the holds measure; 'random': independent clients)."""
    k = min(speakers, size)
    ing = rooms * k * fps
    egr = rooms * k * (size - 1) * fps
    P = rooms * size
    amounts = {"ingress_frame": ing, "egress_datagram": egr,
               "turn": predict_turns(model, ing, egr, P, joins_per_s, workers),
               "idle_participant_s": P, "join": joins_per_s,
               "ack_in": predict_acks(model, size, k, rooms, fps, joins_per_s, schedule)}
    return amounts


def predict_cpu(model, amounts):
    """Relay CPU-s per second of per-second amounts, with its band."""
    co = model["coefficients"]
    cpu = sum(none_to_zero(co.get(n, {}).get("value_s")) * a for n, a in amounts.items())
    return cpu, cpu_band(model, amounts, cpu)


# ------------------------------------------------------------ linear algebra


def _invert(m):
    """Gauss-Jordan inverse of a small square matrix; None when singular."""
    n = len(m)
    a = [list(map(float, row)) + [1.0 if i == j else 0.0 for j in range(n)]
         for i, row in enumerate(m)]
    scale = max(abs(v) for row in m for v in row) or 1.0
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(a[r][c]))
        if abs(a[p][c]) <= 1e-12 * scale:
            return None
        a[c], a[p] = a[p], a[c]
        piv = a[c][c]
        a[c] = [v / piv for v in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0.0:
                k = a[r][c]
                a[r] = [vr - k * vc for vr, vc in zip(a[r], a[c])]
    return [row[n:] for row in a]


def fit(rows, names=None, floor=CPU_TICK_S):
    """Weighted least squares of cpu_s = sum(coef_j * x_j), no intercept, each
    row weighted by 1/(cpu_s + one clock tick): relative error, so that a
    short cell and a long one weigh the same, with the tick as the floor of
    a measurement's error (a cell that read 0 CPU still counts). Columns that are zero in
    every row are not identifiable and come back as None. Returns a dict with
    the coefficients, their standard errors, the relative residual of every
    row and the cells each coefficient came from."""
    names = names or [c[0] for c in COEFS]
    p_all = len(names)
    used = [j for j in range(p_all) if any(r["x"][j] != 0 for r in rows)]
    out = _fit_separable(rows, names, used, floor)
    # A coefficient that comes out negative but within BAND_SIGMAS standard
    # errors of zero is one the cells do not determine (its column moves
    # with another one: per ingress frame and per loop turn at light load):
    # it is left out (0) and named, and the rest refitted, one at a time. A
    # coefficient significantly below zero stays: the model is wrong, and
    # plan refuses it.
    dropped = []
    while True:
        neg = []
        for j in used:
            c = out["coefficients"][names[j]]
            v, se = c["value_s"], c["stderr_s"]
            if v is not None and v < 0 and se is not None and not math.isnan(se) \
                    and v + BAND_SIGMAS * se >= 0:
                neg.append((v / se if se > 0 else 0.0, j, v, se))
        if not neg or len(used) <= 1:
            break
        _, j, v, se = min(neg)
        used = [u for u in used if u != j]
        dropped.append((names[j], v, se))
        out = _fit_separable(rows, names, used, floor)
    for n, v, se in dropped:
        out["coefficients"][n].update({
            "value_s": 0.0, "stderr_s": None, "rel_err": None, "left_out": True,
            "fitted_s": v, "fitted_stderr_s": se,
            "note": "negative when fitted (%.3f us +- %.3f us, within %g standard errors of 0): "
                    "these cells do not determine it; left out (0), its cost is carried by the "
                    "columns that move with it" % (v * 1e6, se * 1e6, BAND_SIGMAS)})
    out["left_out_negative"] = [n for n, _, _ in dropped]
    return out


def _fit_separable(rows, names, used, floor):
    """_fit on the columns `used`, leaving out one that makes it singular."""
    try:
        return _fit(rows, names, used, floor)
    except CapacityError as e:
        if "singular" not in str(e):
            raise
    # The cells do not separate every coefficient (e.g. no idle cell: the
    # connected-participant column is then proportional to the frames of
    # all-speaker rooms). Leave out the last coefficient that makes it
    # singular and say so, rather than fail.
    for j in reversed(used):
        try:
            out = _fit(rows, names, [u for u in used if u != j], floor)
        except CapacityError:
            continue
        out["coefficients"][names[j]]["note"] = ("not separable from the others with these "
                                                 "cells (left out of the fit)")
        return out
    return _fit(rows, names, used, floor)


def _fit(rows, names, used, floor):
    p_all = len(names)
    n, p = len(rows), len(used)
    out = {"n_rows": n, "coefficients": {}, "rows": []}
    if p == 0 or n < p:
        raise CapacityError("%d usable cells for %d coefficients: not enough to fit "
                            "(run the sweep with more cells)" % (n, p))
    wt = [1.0 / (r["cpu_s"] + floor) for r in rows]
    X = [[r["x"][j] * wt[i] for j in used] for i, r in enumerate(rows)]
    y = [r["cpu_s"] * wt[i] for i, r in enumerate(rows)]
    xtx = [[sum(X[i][a] * X[i][b] for i in range(n)) for b in range(p)] for a in range(p)]
    xty = [sum(X[i][a] * y[i] for i in range(n)) for a in range(p)]
    inv = _invert(xtx)
    if inv is None:
        raise CapacityError("the cells do not separate the coefficients (singular fit): "
                            "vary room size and speakers, and include idle and join-storm "
                            "cells")
    beta = [sum(inv[a][b] * xty[b] for b in range(p)) for a in range(p)]
    resid = [y[i] - sum(X[i][a] * beta[a] for a in range(p)) for i in range(n)]
    dof = n - p
    s2 = sum(e * e for e in resid) / dof if dof > 0 else float("nan")
    for k, j in enumerate(used):
        # Where the coefficient came from: each row's share of the CPU it
        # explains through this coefficient.
        contrib = []
        for r in rows:
            if r["x"][j] != 0:
                contrib.append((r["cell"], beta[k] * r["x"][j] / r["cpu_s"] if r["cpu_s"] > 0
                                else None))
        se = math.sqrt(s2 * inv[k][k]) if dof > 0 and inv[k][k] >= 0 else float("nan")
        out["coefficients"][names[j]] = {
            "value_s": beta[k],
            "stderr_s": se,
            "rel_err": (se / abs(beta[k])) if beta[k] != 0 and not math.isnan(se) else None,
            "cells": [{"cell": c, "share_of_cpu": s} for c, s in contrib],
        }
    for j in range(p_all):
        if j not in used:
            out["coefficients"][names[j]] = {"value_s": None, "stderr_s": None,
                                             "rel_err": None, "cells": [],
                                             "note": "no cell exercises it"}
    for i, r in enumerate(rows):
        pred = sum(beta[a] * r["x"][used[a]] for a in range(p))
        out["rows"].append({"cell": r["cell"], "workers": r["workers"], "cpu_s": r["cpu_s"],
                            "predicted_cpu_s": pred,
                            "rel_residual": (r["cpu_s"] - pred) / (r["cpu_s"] + floor),
                            "inconclusive": r["inconclusive"]})
    out["dof"] = dof
    out["rms_rel_residual"] = math.sqrt(sum(e * e for e in resid) / n)
    # Covariance of the coefficients (s^2 (X'WX)^-1), for the error band of
    # a prediction: the coefficients' errors are correlated, so the band of
    # a sum of them needs the whole matrix, not only the standard errors.
    out["covariance"] = {"names": [names[j] for j in used],
                         "matrix": [[s2 * inv[a][b] if dof > 0 else float("nan")
                                     for b in range(p)] for a in range(p)]}
    out["cpu_tick_s"] = floor
    return out


def none_to_zero(v):
    return 0.0 if v is None else v


# ------------------------------------------------------------ error bands

# The band of a predicted CPU figure (docs/CAPACITY.md, "Error bands"):
#   fit  = 2 x sqrt(coef^2 + resid^2), with coef = sqrt(x' C x) / cpu the
#          relative standard error the coefficients' covariance C gives the
#          workload x, and resid = the fit's rms relative residual (the
#          scatter of one measurement around the model);
#   band = max(fit, the largest hold-out CPU error recorded by `validate`,
#          plus half the spread of that hold-out's repeats).
# Figures derived from capacity at the SLO also take the largest hold-out
# capacity error. Two standard errors: about 95 % if the errors were normal.
BAND_SIGMAS = 2.0
# plan refuses a model whose fit residual is larger than this (relative).
MAX_RESIDUAL = 0.10


def coef_rel_err(model, amounts, cpu):
    """sqrt(x' C x) / cpu for the workload amounts {name: amount}."""
    cov = model.get("fit", {}).get("covariance")
    if not cov or not cpu > 0:
        return None
    names = cov["names"]
    x = [amounts.get(n, 0.0) for n in names]
    v = sum(x[a] * cov["matrix"][a][b] * x[b] for a in range(len(x)) for b in range(len(x)))
    if isinstance(v, float) and math.isnan(v):
        return None
    return math.sqrt(max(v, 0.0)) / cpu


def holdout_errors(model):
    """(largest |CPU error|, largest |capacity error|) of the recorded
    hold-out validation, relative; None where not recorded. A hold-out
    measured in repeats counts its error plus half their spread ((max -
    min) / mean): the measurement is known no better than that, so a
    lucky pooled error does not narrow the band."""
    h = model.get("holdout") or {}
    cpu = [abs(s["cpu_rel_err"]) + (s.get("repeat_spread_rel") or 0.0) / 2.0
           for s in h.get("shapes", []) if s.get("cpu_rel_err") is not None]
    cap = [abs(s["capacity_rel_err"]) for s in h.get("shapes", [])
           if s.get("capacity_rel_err") is not None]
    return (max(cpu) if cpu else None, max(cap) if cap else None)


def cpu_band(model, amounts, cpu):
    """The relative error band of a predicted relay CPU, with its sources."""
    coef = coef_rel_err(model, amounts, cpu)
    resid = model.get("fit", {}).get("rms_rel_residual")
    # Turns are predicted, not measured: the turn model's scatter, times
    # the share of the CPU the turns explain, adds to the residual.
    tm = model.get("turn_model")
    tco = (model.get("coefficients", {}).get("turn") or {}).get("value_s")
    if tm and tco and cpu > 0 and resid is not None:
        share = tco * amounts.get("turn", 0.0) / cpu
        resid = math.sqrt(resid ** 2 + (share * tm["rms_rel_residual"]) ** 2)
    # So are the ACKs: the ACK model's scatter, times their share.
    am = model.get("ack_model")
    aco = (model.get("coefficients", {}).get("ack_in") or {}).get("value_s")
    if am and aco and cpu > 0 and resid is not None:
        share = aco * amounts.get("ack_in", 0.0) / cpu
        resid = math.sqrt(resid ** 2 + (share * am["rms_rel_residual"]) ** 2)
    hcpu, hcap = holdout_errors(model)
    fit_rel = None
    if coef is not None or resid is not None:
        fit_rel = BAND_SIGMAS * math.sqrt(none_to_zero(coef) ** 2 + none_to_zero(resid) ** 2)
    parts = [v for v in (fit_rel, hcpu) if v is not None]
    rel = max(parts) if parts else None
    cap_parts = [v for v in (rel, hcap) if v is not None]
    return {"rel": rel, "capacity_rel": max(cap_parts) if cap_parts else None,
            "coef_rel": coef, "resid_rel": resid, "fit_rel": fit_rel,
            "holdout_cpu_rel": hcpu, "holdout_capacity_rel": hcap,
            "how": "max(%g x sqrt(coef^2 + resid^2), hold-out CPU error + half its repeats' "
                   "spread); capacity figures: also the hold-out capacity error" % BAND_SIGMAS}


def banded(value, rel):
    """{value, low, high} for a figure with a relative band (None: unknown)."""
    if rel is None:
        return {"value": value, "low": None, "high": None, "rel": None}
    return {"value": value, "low": value * (1 - rel), "high": value * (1 + rel), "rel": rel}


# ------------------------------------------------------ utilisation at SLO


def util_at_slo(files, p99_ms, loss_pct):
    """For each relay ramp: the relay CPU utilisation (CPU-s per second per
    worker) of the largest leading run of steps that are conclusive and meet
    p99 <= p99_ms and loss <= loss_pct. A ramp whose steps all met it is a
    lower bound (marked). Returns a list of per-cell dicts."""
    out = []
    for f in files:
        d = f["data"]
        if f["kind"] != "relay" or d.get("mode") != "ramp":
            continue
        cfg = d.get("config", {})
        drain_s = cfg.get("drain_ms", 500) / 1000.0
        best = None
        all_met = True
        best_p99 = None
        for s in d.get("steps", []):
            r = s["result"]
            cpu = r.get("server", {}).get("cpu_s")
            p99 = r.get("latency_ns", {}).get("p99", 0) / 1e6
            loss = r.get("delivery", {}).get("loss_ratio", 1) * 100
            best_p99 = p99 if best_p99 is None else min(best_p99, p99)
            if r.get("inconclusive") or p99 > p99_ms or loss > loss_pct or cpu is None:
                all_met = False
                break
            interval = r.get("window_s", cfg.get("duration_s", 0)) + drain_s + CPU_START_LEAD_S
            best = {"cell": f["name"], "workers": f["workers"], "size": cfg.get("size"),
                    "speakers": cfg.get("speakers"), "rooms": s.get("rooms"),
                    "participants": r.get("participants"),
                    "util": cpu / interval / f["workers"]}
        if best is not None:
            best["lower_bound"] = all_met
            out.append(best)
        else:
            out.append({"cell": f["name"], "workers": f["workers"], "size": cfg.get("size"),
                        "speakers": cfg.get("speakers"), "util": None,
                        "lowest_p99_ms": best_p99})
    return out


def summarise_util(cells):
    vals = [c["util"] for c in cells if c.get("util") is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


# ------------------------------------------------------------- prediction


def room_cost_s(model, size, speakers, fps, rooms=1.0, workers=1):
    """Relay CPU-seconds per second per room in steady state, for `rooms`
    rooms on `workers` workers (the turns saturate: a room costs less at
    heavy load)."""
    return predict_cpu(model, workload_amounts(model, size, speakers, rooms, fps,
                                               workers=workers))[0] / rooms


def predict_capacity(model, size, speakers, workers):
    """Participants at the SLO for rooms of `size` with `speakers` speakers on
    `workers` workers: usable CPU (util at SLO x workers) / cost per room."""
    # The utilisation reached at the SLO depends on the worker count (and on
    # the cores the bench shares): use the ramps of the same count if any.
    same = [c["util"] for c in model.get("util_at_slo_cells", [])
            if c.get("util") is not None and c.get("workers") == workers]
    u = statistics.median(same) if same else model["util_at_slo"]["median"]
    fps = 1000.0 / model["frame_ms"]
    # The cost per room depends on the load (turns saturate): a fixed point
    # of rooms = usable CPU / cost per room at that many rooms.
    rooms = 1.0
    for _ in range(50):
        cost = room_cost_s(model, size, speakers, fps, rooms, workers)
        nxt = u * workers / cost
        if abs(nxt - rooms) <= 1e-6 * max(rooms, 1.0):
            rooms = nxt
            break
        rooms = nxt
    return {"rooms": rooms, "participants": rooms * size, "room_cost_s": cost, "util": u,
            "util_cells": len(same) if same else model["util_at_slo"]["n"],
            "util_same_workers": bool(same), "fps": fps}
