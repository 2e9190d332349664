#include "proto/utf8.h"

bool utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* The allowed range of the second byte encodes the overlong,
         * surrogate and > U+10FFFF exclusions (RFC 3629 §4 table). */
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c == 0xe0) {
            n = 3;
            lo = 0xa0;
        } else if (c >= 0xe1 && c <= 0xec) {
            n = 3;
        } else if (c == 0xed) {
            n = 3;
            hi = 0x9f;
        } else if (c >= 0xee && c <= 0xef) {
            n = 3;
        } else if (c == 0xf0) {
            n = 4;
            lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            n = 4;
        } else if (c == 0xf4) {
            n = 4;
            hi = 0x8f;
        } else {
            return false; /* 0x80..0xc1 (stray continuation, overlong lead), 0xf5.. */
        }
        if (len - i < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += n;
    }
    return true;
}
