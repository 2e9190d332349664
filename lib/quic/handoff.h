/* Connection hand-off between workers (issue 14 part 2; DESIGN.md §7,
 * "Cores that stay local").
 *
 * quic_conn_handoff (quic.h) asks for it. At the end of the loop turn, once
 * the dirty list was written (so nothing the connection owes the batch is
 * left behind), the old worker detaches the connection: on_detach, its
 * timer cancelled, its slot given back (its handle goes stale), its CIDs
 * taken out of the CID table and put into the forwarding table (CID ->
 * new worker). The struct quic_conn itself, with its ngtcp2_conn, TLS
 * session, control-stream state, datagram queue, loss window and receive
 * budget, crosses the ring in one QUIC_MSG_ADOPT (control class: never
 * dropped; a full ring spills). Ownership moves with the message: the old
 * worker never touches it again.
 *
 * The new worker adopts it: a slot, every CID (and the Initial DCID)
 * mapped to it, its own stale forwarding entries for them dropped, the
 * connection marked dirty so that the turn end writes what is due and
 * re-arms its timer on this worker's heap, then on_adopt.
 *
 * Packets for the old CIDs keep arriving at the old worker (steering picks
 * the socket by the CID's worker byte; with the 4-tuple hash they arrive
 * anywhere and are forwarded to the byte's worker first). The old worker
 * forwards them through the ring (fwd_out/fwd_in), after the
 * QUIC_MSG_ADOPT in the same ring, so none arrives before its connection.
 * A connection handed on again leaves a forwarding entry on each worker it
 * left; every entry names where it went next, so a chain ends at the
 * current worker (a packet is forwarded at most FWD_MAX_HOPS times, a
 * backstop). When a CID is retired (remove_connection_id) or the
 * connection ends, its entries are dropped everywhere (QUIC_MSG_UNFWD to
 * every other worker; only for connections that were handed off).
 *
 * Limit: ngtcp2 0.12 issues a new CID only when the peer retires one, and
 * a server has no way to set Retire Prior To, so the connection keeps the
 * CIDs it was given at the handshake (the old worker's byte) until the
 * client retires them. With extended-BPF steering (steer.h) the new worker
 * puts those CIDs in the kernel's moved-CID map when it adopts the
 * connection, so from then on the kernel delivers their packets to it
 * directly; they leave the map with the forwarding entries (retired, or the
 * connection ended). Only packets already queued on the old worker's socket
 * are forwarded. With classic-BPF steering or none, the old worker forwards
 * every packet for those CIDs (counted).
 *
 * Thread safety: everything on the server's own worker thread, except
 * quic_handoff_discard (the runtime's discard at shutdown). */
#ifndef ROOST_QUIC_HANDOFF_H
#define ROOST_QUIC_HANDOFF_H

#include "quic/quic.h"

#endif
