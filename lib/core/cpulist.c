#include "core/cpulist.h"
#include "core/error.h"

#include <sched.h>
#include <stdlib.h>

int cpulist_parse(const char *s, int *cpus, unsigned max, unsigned *n)
{
    unsigned k = 0;
    const char *p = s;
    *n = 0;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10);
        if (end == p || a < 0 || a >= CPU_SETSIZE)
            return ROOST_EINVAL;
        long b = a;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1 || b < a || b >= CPU_SETSIZE)
                return ROOST_EINVAL;
            p = end;
        }
        for (long c = a; c <= b; c++) {
            if (k >= max)
                return ROOST_ERANGE;
            cpus[k++] = (int)c;
        }
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return ROOST_EINVAL;
    }
    if (k == 0)
        return ROOST_EINVAL;
    *n = k;
    return 0;
}
