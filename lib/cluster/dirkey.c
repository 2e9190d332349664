#include "cluster/dirkey.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool valid_word(const char *s, size_t max)
{
    if (s == NULL)
        return false;
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (n >= max || !id_char(s[n]))
            return false;
    return n > 0;
}

bool dirkey_valid_id(const char *id)
{
    return valid_word(id, DIR_ID_MAX);
}

bool dirkey_valid_prefix(const char *prefix)
{
    return valid_word(prefix, DIR_PREFIX_MAX);
}

bool dirkey_valid_room(const char *room, size_t len)
{
    return room != NULL && len >= 1 && len <= DIR_ROOM_MAX && memchr(room, '\0', len) == NULL;
}

bool dirkey_valid_addr(const char *addr)
{
    if (addr == NULL)
        return false;
    size_t n = 0;
    for (; addr[n] != '\0'; n++)
        if (n >= DIR_ADDR_MAX || addr[n] <= ' ' || addr[n] > '~')
            return false;
    return n > 0;
}

/* prefix ':' mid tail[len] into out. */
static int build(char *out, size_t cap, const char *prefix, const char *mid, const char *tail,
                 size_t len)
{
    if (out == NULL || !dirkey_valid_prefix(prefix))
        return ROOST_EINVAL;
    size_t pl = strlen(prefix), ml = strlen(mid);
    size_t n = pl + 1 + ml + len;
    if (n + 1 > cap)
        return ROOST_ENOSPC;
    memcpy(out, prefix, pl);
    out[pl] = ':';
    memcpy(out + pl + 1, mid, ml);
    if (len > 0)
        memcpy(out + pl + 1 + ml, tail, len);
    out[n] = '\0';
    return (int)n;
}

int dirkey_relay(char *out, size_t cap, const char *prefix, const char *id)
{
    if (!dirkey_valid_id(id))
        return ROOST_EINVAL;
    return build(out, cap, prefix, "relay:", id, strlen(id));
}

int dirkey_relays(char *out, size_t cap, const char *prefix)
{
    return build(out, cap, prefix, "relays", NULL, 0);
}

int dirkey_relay_prefix(char *out, size_t cap, const char *prefix)
{
    return build(out, cap, prefix, "relay:", NULL, 0);
}

int dirkey_room(char *out, size_t cap, const char *prefix, const char *room, size_t len)
{
    if (!dirkey_valid_room(room, len))
        return ROOST_EINVAL;
    return build(out, cap, prefix, "room:", room, len);
}

int dirkey_gen(char *out, size_t cap, const char *prefix, const char *room, size_t len)
{
    if (!dirkey_valid_room(room, len))
        return ROOST_EINVAL;
    return build(out, cap, prefix, "gen:", room, len);
}

int dirkey_value_format(char *out, size_t cap, const char *id, uint64_t gen)
{
    if (out == NULL || !dirkey_valid_id(id) || gen == 0)
        return ROOST_EINVAL;
    int n = snprintf(out, cap, "%s:%llu", id, (unsigned long long)gen);
    if (n < 0 || (size_t)n >= cap)
        return ROOST_ENOSPC;
    return n;
}

int dirkey_parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (s == NULL || len == 0 || len > 20)
        return ROOST_EMALFORMED;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ROOST_EMALFORMED;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ROOST_ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int dirkey_value_parse(const char *v, size_t len, char *id, uint64_t *gen)
{
    if (v == NULL || id == NULL || gen == NULL)
        return ROOST_EMALFORMED;
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--)
        if (v[i - 1] == ':') {
            colon = v + i - 1;
            break;
        }
    if (colon == NULL)
        return ROOST_EMALFORMED;
    size_t il = (size_t)(colon - v);
    if (il == 0 || il > DIR_ID_MAX)
        return ROOST_EMALFORMED;
    char tmp[DIR_ID_MAX + 1];
    memcpy(tmp, v, il);
    tmp[il] = '\0';
    if (!dirkey_valid_id(tmp))
        return ROOST_EMALFORMED;
    uint64_t g;
    if (dirkey_parse_u64(colon + 1, len - il - 1, &g) != 0 || g == 0)
        return ROOST_EMALFORMED;
    memcpy(id, tmp, il + 1);
    *gen = g;
    return 0;
}
