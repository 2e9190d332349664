/* SipHash-2-4, written from the paper's description (section 2):
 * four 64-bit words of state initialised from the key and four constants,
 * the message compressed 8 bytes at a time (little-endian) with c = 2
 * SipRounds per word, a last word carrying the remaining bytes and the
 * length mod 256 in its top byte, then 0xff xored into v2 and d = 4
 * SipRounds of finalisation. */
#include "core/hash.h"

#include <errno.h>
#include <sys/random.h>

#include "core/error.h"

static inline uint64_t rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

/* Little-endian, not be.h: SipHash is defined on little-endian words. */
static inline uint64_t load_le64(const uint8_t *p)
{
    /* Byte by byte: independent of host endianness and alignment; compilers
     * fold this into one load on little-endian machines. */
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

struct sip_state {
    uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl64(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl64(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl64(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl64(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl64(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl64(s->v2, 32);
}

static inline void sip_compress(struct sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

uint64_t hash_siphash24(const struct hash_key *key, const void *data, size_t len)
{
    const uint64_t k0 = load_le64(key->bytes);
    const uint64_t k1 = load_le64(key->bytes + 8);
    /* The constants spell "somepseudorandomlygeneratedbytes". */
    struct sip_state s = {
        .v0 = k0 ^ 0x736f6d6570736575ULL,
        .v1 = k1 ^ 0x646f72616e646f6dULL,
        .v2 = k0 ^ 0x6c7967656e657261ULL,
        .v3 = k1 ^ 0x7465646279746573ULL,
    };
    const uint8_t *p = data;
    size_t left = len;

    for (; left >= 8; left -= 8, p += 8)
        sip_compress(&s, load_le64(p));

    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < left; i++)
        last |= (uint64_t)p[i] << (8 * i);
    sip_compress(&s, last);

    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

unsigned hash_owner(const struct hash_key *key, const void *room_id, size_t len, unsigned n_workers)
{
    if (n_workers == 0)
        return 0;
    /* Plain modulo: n_workers is small, so the bias (< n / 2^64) is nil. */
    return (unsigned)(hash_siphash24(key, room_id, len) % n_workers);
}

int hash_key_random(struct hash_key *key)
{
    if (key == NULL)
        return ROOST_EINVAL;
    size_t got = 0;
    while (got < sizeof(key->bytes)) {
        ssize_t r = getrandom(key->bytes + got, sizeof(key->bytes) - got, 0);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            return ROOST_ESYS;
        }
        got += (size_t)r;
    }
    return 0;
}
