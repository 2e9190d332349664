"""Cluster questions for scripts/capacity/plan (docs/CAPACITY.md, "Planning
a cluster"): rooms whose participants are spread over several relays that
share them through trunks (docs/CLUSTER.md, a star through each room's
home relay).

A room of size s spread evenly over R relays (--span R; a room of s < R
participants covers s relays) costs, for each frame one of its speakers
sends, besides the client datagrams of a single relay:

  - one trunk ingress at every relay of the room but the sender's: R - 1
    datagrams received on trunks (each frame crosses each trunk once);
  - R - 1 trunk egress datagrams in all: the home sends one to each
    subscribing relay but the one the frame came from, and a non-home
    sender's relay sends one up to the home (sender at the home: R - 1
    from the home; elsewhere: 1 + (R - 2)).

The CPU of a trunk ingress is taken as that of a client ingress frame and
the CPU of a trunk egress as that of a client egress datagram (the same
receive and send paths: a QUIC DATAGRAM in, the room's fan-out, a DATAGRAM
out); docs/BENCHMARKS.md has the measured 3-relay / 1-relay CPU ratio to
check it against. A trunk datagram carries 13 more bytes than a client one
(docs/PROTOCOL.md 12.3: type, handle, generation). Homes are assumed spread
evenly over the servers (the directory gives a room's home to the relay of
its first member), so every server carries its share of the trunk traffic.
"""
import math

TRUNK_EXTRA_BYTES = 13  # 0x40, handle u32, gen u64 before the relay -> client datagram


def add_args(ap):
    ap.add_argument("--span", type=int, default=1,
                    help="relays each room is spread over (a cluster, docs/CLUSTER.md); "
                         "default 1: every room on one server")


def check(a, largest):
    if a.span < 1:
        raise ValueError("--span must be >= 1 (relays a room is spread over), got %d" % a.span)
    if a.span > 1 and a.span > largest:
        # A room of s participants covers at most s relays: say so rather
        # than plan trunks that cannot exist.
        raise ValueError("--span %d is more relays than the largest room has participants (%d)"
                         % (a.span, largest))


def room_span(size, span):
    """Relays a room of this size covers under round-robin placement."""
    return min(size, span)


def trunks(a, dist, k, fps, rooms, say):
    """Trunk datagrams per second over the cluster for the workload; None
    when rooms are not spread (--span 1)."""
    if a.span <= 1:
        return None
    tin = 0.0
    for s, f in dist:
        kk = s if k is None else min(k, s)
        r = room_span(s, a.span)
        frames = rooms * f * kk * fps
        tin += frames * (r - 1)
        say("cluster, rooms of %d over %d relays: %.1f frames/s x (%d - 1) relays = %.1f trunk "
            "ingress datagrams/s, as many trunk egress (each frame crosses each trunk once: "
            "the home sends it to every other relay of the room)" % (s, r, frames, r, frames * (r - 1)))
    return {"span": a.span, "trunk_in_per_s": tin, "trunk_out_per_s": tin}


def per_server_room(largest, span):
    """Participants of the largest room one server must hold."""
    return int(math.ceil(largest / float(span)))


def finish(cl, cval, servers, payload, overhead, say):
    """Per-server trunk figures once the number of servers is known."""
    if cl is None:
        return None
    wire = payload + overhead + TRUNK_EXTRA_BYTES
    tin, tout = cl["trunk_in_per_s"], cl["trunk_out_per_s"]
    cpu = (cval.get("ingress_frame") or 0) * tin + (cval.get("egress_datagram") or 0) * tout
    cl.update({
        "servers": servers,
        "trunk_datagram_wire_bytes": wire,
        "trunk_cpu_core_s_per_s": cpu,
        "trunk_in_per_server_per_s": tin / servers,
        "trunk_out_per_server_per_s": tout / servers,
        "trunk_in_bits_per_server": tin / servers * wire * 8,
        "trunk_out_bits_per_server": tout / servers * wire * 8,
    })
    say("trunk CPU = %.3f us x %.1f trunk ingress + %.3f us x %.1f trunk egress = %.4f "
        "core-s/s (in the relay CPU above; a trunk datagram costs a client one)"
        % ((cval.get("ingress_frame") or 0) * 1e6, tin, (cval.get("egress_datagram") or 0) * 1e6,
           tout, cpu))
    say("trunk bandwidth per server = %.1f datagrams/s each way / %d servers x (%.1f payload + %d "
        "overhead + %d trunk) bytes x 8 = %.4f Mb/s out, %.4f Mb/s in"
        % (tin, servers, payload, overhead, TRUNK_EXTRA_BYTES,
           cl["trunk_out_bits_per_server"] / 1e6, cl["trunk_in_bits_per_server"] / 1e6))
    return cl


def text(cl):
    if cl is None:
        return ""
    return ("\ncluster (rooms over %d relays):\n"
            "  trunk datagrams  %.1f/s in, %.1f/s out over the cluster; per server %.1f/s each way\n"
            "  trunk bandwidth  %.3f Mb/s out, %.3f Mb/s in per server (%d-byte datagrams)\n"
            "  trunk CPU        %.4f core-s/s over the cluster\n"
            % (cl["span"], cl["trunk_in_per_s"], cl["trunk_out_per_s"],
               cl["trunk_in_per_server_per_s"], cl["trunk_out_bits_per_server"] / 1e6,
               cl["trunk_in_bits_per_server"] / 1e6, cl["trunk_datagram_wire_bytes"],
               cl["trunk_cpu_core_s_per_s"]))
