/* Private to relay/config*.c: the value parsers (config_parse.c) and the
 * [cluster] section (config_cluster.c), which config.c's key table, setter
 * and validator call, and the key table for the INI reader (config_ini.c). Main thread only, as
 * relay/config.h. */
#ifndef ROOST_RELAY_CONFIG_INT_H
#define ROOST_RELAY_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/config.h"

/* config.c's key table, [cluster] keys included: key id's entry; the id
 * of the key called name, or -1. */
const struct config_key *config_key_at(int id);
int config_key_find(const char *name);

/* Decimal u64 at s; *end after the digits. 0, ROOST_EINVAL or ERANGE. */
int config_parse_u64(const char *s, uint64_t *v, const char **end);
/* true/false, yes/no, on/off, 1/0. 0 or ROOST_EINVAL. */
int config_parse_bool(const char *s, bool *out);

/* The [cluster] keys: their table (ids base..base+n-1 in config.c's key
 * space, base = config.c's own key count). */
#define CONFIG_CLUSTER_NKEYS 14
extern const struct config_key config_cluster_keys[CONFIG_CLUSTER_NKEYS];

/* Stores cluster key i (0-based in config_cluster_keys) from value, already
 * checked against the key's type: v for numbers and durations. Returns 0,
 * ROOST_EINVAL (err says why) or ROOST_ENOMEM. */
int config_cluster_set(struct config *c, unsigned i, const char *value, uint64_t v, char *err,
                       size_t err_len);
/* Whole-config checks of the section; report(c, base + i, msg) for each
 * error. Returns the number of errors. */
typedef int (*config_report_fn)(const struct config *c, int id, config_error_cb cb, void *arg,
                                const char *msg);
int config_cluster_validate(const struct config *c, int base, config_report_fn report,
                            config_error_cb cb, void *arg);

#endif
