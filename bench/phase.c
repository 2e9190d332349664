#include "bench/phase.h"

uint64_t phase_offset(uint64_t interval, uint32_t rooms_here, uint32_t speakers, uint32_t room,
                      uint32_t member, bool packed)
{
    uint64_t n = (uint64_t)rooms_here * speakers;
    if (n == 0 || room >= rooms_here || member >= speakers)
        return 0;
    uint64_t slot =
        packed ? (uint64_t)room * speakers + member : (uint64_t)member * rooms_here + room;
    return interval * slot / n;
}
