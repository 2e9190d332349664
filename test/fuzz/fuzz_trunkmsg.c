/* Fuzz target: trunk messages (lib/cluster/trunkmsg). Whatever decodes
 * must re-encode to the bytes it was decoded from (up to the end of its
 * last field) and decode to the same message; the datagram header parser
 * must agree with its writer. Any violation aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/trunkmsg.h"
#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trunkmsg m, m2;
    uint8_t out[TRUNKMSG_BODY_MAX];
    int rc = trunkmsg_decode(data, size, &m);
    CHECK(rc == 0 || rc == ROOST_ETRUNC || rc == ROOST_EUNKNOWN || rc == ROOST_EMALFORMED);
    if (rc == 0) {
        int n = trunkmsg_encode(&m, out, sizeof(out));
        CHECK(n > 0 && (size_t)n <= size);
        CHECK(memcmp(out, data, (size_t)n) == 0);
        CHECK(trunkmsg_decode(out, (size_t)n, &m2) == 0);
        CHECK(memcmp(&m, &m2, sizeof(m)) == 0);
    }
    uint32_t h;
    uint64_t g;
    bool replay = false;
    rc = trunkmsg_dgram_parse(data, size, &h, &g, &replay);
    CHECK(rc == TRUNKMSG_DGRAM_HDR_LEN || rc == ROOST_ETRUNC || rc == ROOST_EMALFORMED);
    if (rc == TRUNKMSG_DGRAM_HDR_LEN) {
        uint8_t hdr[TRUNKMSG_DGRAM_HDR_LEN];
        trunkmsg_dgram_hdr(hdr, h, g, replay);
        CHECK(memcmp(hdr, data, sizeof(hdr)) == 0);
    }
    return 0;
}
