#include "cluster/dirplace.h"

#include <string.h>

#include "core/error.h"

bool dirplace_has_capacity(const struct dir_load *l)
{
    return l->accepting && l->max_participants > 0 && l->participants < l->max_participants;
}

uint32_t dirplace_fill(const struct dir_load *l)
{
    if (l->max_participants == 0)
        return 1000;
    uint64_t f = (uint64_t)l->participants * 1000 / l->max_participants;
    if (l->cpu_permille > f)
        f = l->cpu_permille;
    return f > 1000 ? 1000 : (uint32_t)f;
}

int dirplace_choose(const struct dir_relay *relays, size_t n, const char *home_id, bool *is_home)
{
    *is_home = false;
    if (home_id != NULL)
        for (size_t i = 0; i < n; i++)
            if (strcmp(relays[i].id, home_id) == 0 && dirplace_has_capacity(&relays[i].load)) {
                *is_home = true;
                return (int)i;
            }
    int best = ROOST_EFULL;
    uint32_t best_fill = 0;
    for (size_t i = 0; i < n; i++) {
        if (!dirplace_has_capacity(&relays[i].load))
            continue;
        uint32_t f = dirplace_fill(&relays[i].load);
        if (best < 0 || f < best_fill ||
            (f == best_fill && strcmp(relays[i].id, relays[best].id) < 0)) {
            best = (int)i;
            best_fill = f;
        }
    }
    return best;
}
