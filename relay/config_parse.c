/* roost-relay configuration: the value parsers (numbers, durations,
 * sizes, booleans) of relay/config.c and the command line. Pure. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "relay/config_int.h"

/* ------------------------------------------------------------- parsers */

int config_parse_u64(const char *s, uint64_t *v, const char **end)
{
    char *e;
    if (*s < '0' || *s > '9')
        return ROOST_EINVAL;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno != 0)
        return ROOST_ERANGE;
    *v = x;
    *end = e;
    return 0;
}

int config_parse_duration(const char *s, uint64_t *ns)
{
    uint64_t v;
    const char *u;
    int rc = config_parse_u64(s, &v, &u);
    if (rc != 0)
        return rc;
    uint64_t mul;
    if (*u == '\0' || strcmp(u, "s") == 0)
        mul = 1000000000ull;
    else if (strcmp(u, "ms") == 0)
        mul = 1000000ull;
    else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
        mul = 60ull * 1000000000ull;
    else if (strcmp(u, "h") == 0)
        mul = 3600ull * 1000000000ull;
    else
        return ROOST_EINVAL;
    if (v > UINT64_MAX / mul)
        return ROOST_ERANGE;
    *ns = v * mul;
    return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v;
    const char *u;
    int rc = config_parse_u64(s, &v, &u);
    if (rc != 0)
        return rc;
    unsigned shift;
    if (*u == '\0' || strcasecmp(u, "b") == 0)
        shift = 0;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kb") == 0 || strcasecmp(u, "kib") == 0)
        shift = 10;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mb") == 0 || strcasecmp(u, "mib") == 0)
        shift = 20;
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gb") == 0 || strcasecmp(u, "gib") == 0)
        shift = 30;
    else
        return ROOST_EINVAL;
    if (v > (UINT64_MAX >> shift))
        return ROOST_ERANGE;
    *bytes = v << shift;
    return 0;
}

int config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ROOST_EINVAL;
}
