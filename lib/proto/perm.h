/* What a participant may do in a room: the one permission vocabulary of
 * the process. The bits are the wire values of JOINED.permissions
 * (PROTOCOL.md §4.4), so rooms, snapshots and messages carry them as they
 * are. Tokens encode permissions differently (bit 0 is "may join"); they are
 * translated once, by token_room_perms() in proto/token.h. */
#ifndef ROOST_PROTO_PERM_H
#define ROOST_PROTO_PERM_H

#define PERM_PUBLISH 0x01u   /* may send media */
#define PERM_SUBSCRIBE 0x02u /* receives media and may ask for keyframes */
#define PERM_ALL (PERM_PUBLISH | PERM_SUBSCRIBE)

#endif
