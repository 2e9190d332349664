#!/usr/bin/python3
"""scripts/capacity/plan --span (TAP): cluster questions on the checked-in
fixture test/fixtures/capacity (known costs: 20 us per ingress frame, 5 us
per egress datagram, 10 us per participant-second, 200 us per join; no
turn coefficient). Every figure is recomputed here by hand: a room spread
over R relays adds R - 1 trunk ingress and R - 1 trunk egress datagrams
per frame (each frame crosses each trunk once, star through the home),
costed as client ingress and egress; trunk bandwidth per server; servers
at least the span; a room larger than one server fits when spread; bad
spans are refused. Runs no relay: a second or two."""
import json
import os
import subprocess
import sys

FIX = "test/fixtures/capacity"
PLAN = "scripts/capacity/plan"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
A, B, C, D = 20e-6, 5e-6, 10e-6, 200e-6
OVERHEAD = 122  # plan's WIRE_OVERHEAD
TRUNK = 13      # docs/PROTOCOL.md 12.3

n = 0
failed = False
TESTS = 11


def ok(cond, desc, why=""):
    global n, failed
    n += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, desc))
    if not cond:
        failed = True
        for line in str(why).splitlines()[:30]:
            print("# " + line)


def plan(*extra, json_out=True):
    p = subprocess.run([PY, PLAN, "--results", FIX, *extra] + (["--json"] if json_out else []),
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0 or not json_out:
        return p.returncode, p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


def close(a, b, rel=1e-9):
    return a is not None and abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


print("1..%d" % TESTS)
base = ("--cores", "8", "--nic-gbps", "10")
fps = 50.0
payload = 32000 / 8.0 / fps  # 80 bytes

# 1200 participants in rooms of 6, everyone talking, spread over 3 relays.
rc, p, err = plan("--participants", "1200", "--room-size", "6", "--span", "3", *base)
ok(rc == 0, "plan --span 3: 1200 participants, rooms of 6 over 3 relays", err)
rooms = 200.0
frames = rooms * 6 * fps            # 60000 frames/s sent
tin = tout = frames * (3 - 1)       # each frame to the 2 other relays once
cl = p.get("cluster") or {}
ok(close(cl.get("trunk_in_per_s"), tin) and close(cl.get("trunk_out_per_s"), tout) and cl.get("span") == 3,
   "trunk datagrams: 60000 frames/s x 2 other relays = 120000/s in and out", cl)
joins = 1200 / (30 * 60.0)
cpu = A * (frames + tin) + B * (frames * 5 + tout) + C * 1200 + D * joins
ok(close(p["workload"]["cpu_core_s_per_s"], cpu)
   and close(cl.get("trunk_cpu_core_s_per_s"), A * tin + B * tout),
   "relay CPU counts a trunk ingress as an ingress frame, a trunk egress as an egress datagram "
   "(%.4f core-s/s, trunks %.4f)" % (cpu, A * tin + B * tout), p.get("workload"))
srv = p["servers"]
wire = payload + OVERHEAD + TRUNK
ok(srv >= 3 and close(cl.get("trunk_out_bits_per_server"), tout / srv * wire * 8)
   and close(cl.get("trunk_in_bits_per_server"), tin / srv * wire * 8)
   and cl.get("trunk_datagram_wire_bytes") == wire and cl.get("servers") == srv,
   "trunk bandwidth per server: %.0f datagrams/s / %d servers x %g bytes x 8" % (tout, srv, wire), cl)
tx_bps = (frames * 5 + tout) * (payload + OVERHEAD) * 8 + tout * TRUNK * 8
ok(close(p["workload"]["egress_bits_per_s"], tx_bps),
   "NIC transmit counts the trunk egress datagrams with their 13 extra bytes", p["workload"])

# The same without --span: no trunks, the CPU of one relay per room.
rc, p1, err = plan("--participants", "1200", "--room-size", "6", *base)
cpu1 = A * frames + B * frames * 5 + C * 1200 + D * joins
ok(rc == 0 and p1.get("cluster") is None and close(p1["workload"]["cpu_core_s_per_s"], cpu1),
   "--span 1 (default): no cluster section, CPU as a single relay (%.4f)" % cpu1,
   err or p1.get("workload"))

# Mixed sizes and 2 speakers: rooms of 2 cover only 2 of the 3 relays.
rc, p, err = plan("--participants", "800", "--room-size", "2:0.5,6:0.5", "--speakers", "2",
                  "--span", "3", *base)
rooms = 800 / 4.0
t_mixed = rooms * 0.5 * 2 * fps * 1 + rooms * 0.5 * 2 * fps * 2
ok(rc == 0 and close((p.get("cluster") or {}).get("trunk_in_per_s"), t_mixed),
   "rooms of 2 over a span of 3 cover 2 relays (1 crossing per frame), rooms of 6 cover 3",
   err or p.get("cluster"))

# Few participants: still as many servers as the span.
rc, p, err = plan("--participants", "12", "--room-size", "6", "--span", "3", *base)
ok(rc == 0 and p["servers"] == 3 and p["constraints"]["cpu"]["servers"] == 1,
   "servers = the span when the load would fit on one", err or p.get("servers"))

# A room larger than one server holds fits when spread over 3.
args = ("--participants", "3000", "--room-size", "1500", "--speakers", "1", "--cores", "1",
        "--nic-gbps", "10")
rc1, out1, err1 = plan(*args, json_out=False)
rc3, p3, err3 = plan(*args, "--span", "3")
ok(rc1 == 1 and "must fit on one server" in err1 and rc3 == 0
   and p3["per_server_capacity_participants"] >= 500,
   "a room of 1500 refused on one server (%s) but planned over 3 relays"
   % ("holds %.0f" % p3["per_server_capacity_participants"] if rc3 == 0 else "?"),
   err1 + err3)

# Refusals.
rc, out, err = plan("--participants", "100", "--room-size", "6", "--span", "0", *base, json_out=False)
ok(rc == 1 and "--span must be >= 1" in err and not out, "refuses --span 0", err)
rc, out, err = plan("--participants", "100", "--room-size", "6", "--span", "7", *base, json_out=False)
ok(rc == 1 and "more relays than the largest room" in err and not out,
   "refuses a span larger than the largest room", err)
sys.exit(1 if failed else 0)
