/* CPU lists as operators write them ("0,2-5"), for the relay's cpus= key and
 * roost-bench --cpus.
 *
 * Grammar: items separated by ',', each a CPU number N or an inclusive range
 * A-B with A <= B, every number in [0, CPU_SETSIZE). Numbers are read with
 * strtol, so leading blanks and a '+' before a number are accepted, and one
 * trailing ',' is allowed. Duplicates are kept as written ("1,1" lists CPU 1
 * twice): callers that pin one worker per entry get what they asked for.
 *
 * Pure; any thread. */
#ifndef ROOST_CORE_CPULIST_H
#define ROOST_CORE_CPULIST_H

/* Parses `s` into cpus[0..*n), at most `max` entries, in the order written.
 * Returns 0, ROOST_EINVAL (empty list, not a number, a number outside
 * [0, CPU_SETSIZE), a reversed range, or junk after an item) or ROOST_ERANGE
 * (more than `max` entries). On error *n is 0 and cpus[] may have been
 * written. */
int cpulist_parse(const char *s, int *cpus, unsigned max, unsigned *n);

#endif
