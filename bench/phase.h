/* Send phases: where in the frame interval each speaker's slots fall. */
#ifndef ROOST_BENCH_PHASE_H
#define ROOST_BENCH_PHASE_H

#include <stdbool.h>
#include <stdint.h>

/* The offset of one speaker's first slot from the window's start, in
 * [0, interval). A bench thread owns whole rooms; its speakers number
 * rooms_here * speakers, member m of its r-th room being one of them.
 *
 * spread (the default): a room's members are interval / speakers apart and
 * the thread's rooms fill the gaps, so every member hears the others at
 * different moments of its own interval, as independent clients would
 * (and as the Murmur harness's phase groups do). packed (--phase packed,
 * the bench before session 6): a thread's speakers one after another in
 * room order, so a room's members send within interval / rooms_here of
 * each other, in one burst. */
uint64_t phase_offset(uint64_t interval, uint32_t rooms_here, uint32_t speakers, uint32_t room,
                      uint32_t member, bool packed);

#endif
