/* Adler-32 (RFC 1950) for lzop block checksums: the same value as liblzo2's lzo_adler32 and
 * zlib's adler32, computed 32 bytes at a time with AVX2 where the CPU has it. liblzo2's byte loop
 * was a quarter of a backup's CPU time. */
#include <stddef.h>
#include <stdint.h>
#include "wale_support.h"

#define ADLER_BASE 65521u
#define ADLER_NMAX 5552 /* largest n with 255n(n+1)/2 + (n+1)(BASE-1) <= 2^32-1 */

static uint32_t adler32_scalar(uint32_t adler, const uint8_t *p, size_t len) {
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (len > 0) {
        size_t n = len < ADLER_NMAX ? len : ADLER_NMAX;
        len -= n;
        while (n >= 8) {
            a += p[0]; b += a; a += p[1]; b += a; a += p[2]; b += a; a += p[3]; b += a;
            a += p[4]; b += a; a += p[5]; b += a; a += p[6]; b += a; a += p[7]; b += a;
            p += 8;
            n -= 8;
        }
        while (n-- > 0) { a += *p++; b += a; }
        a %= ADLER_BASE;
        b %= ADLER_BASE;
    }
    return (b << 16) | a;
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2")))
static uint32_t adler32_avx2(uint32_t adler, const uint8_t *p, size_t len) {
    uint64_t a = adler & 0xffff, b = adler >> 16;
    const __m256i weights = _mm256_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                                             16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i zero = _mm256_setzero_si256();
    /* Chunks of whole 32-byte blocks, small enough that no 32-bit lane overflows. */
    const size_t chunkMax = (ADLER_NMAX / 32) * 32;
    while (len >= 32) {
        size_t n = len < chunkMax ? (len / 32) * 32 : chunkMax;
        size_t blocks = n / 32;
        __m256i vs1 = zero, vs2 = zero, vprev = zero;
        for (size_t k = 0; k < blocks; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * k));
            vprev = _mm256_add_epi32(vprev, vs1);                     /* sum of earlier blocks' bytes */
            vs1 = _mm256_add_epi32(vs1, _mm256_sad_epu8(v, zero));    /* byte sums */
            __m256i w = _mm256_maddubs_epi16(v, weights);             /* (32 - j) * byte, pairwise */
            vs2 = _mm256_add_epi32(vs2, _mm256_madd_epi16(w, ones));
        }
        vs2 = _mm256_add_epi32(vs2, _mm256_slli_epi32(vprev, 5));
        uint32_t l1[8], l2[8];
        _mm256_storeu_si256((__m256i *)l1, vs1);
        _mm256_storeu_si256((__m256i *)l2, vs2);
        uint64_t s1 = 0, s2 = 0;
        for (int i = 0; i < 8; i++) { s1 += l1[i]; s2 += l2[i]; }
        b = (b + (uint64_t)n * a + s2) % ADLER_BASE;
        a = (a + s1) % ADLER_BASE;
        p += n;
        len -= n;
    }
    return adler32_scalar((uint32_t)((b << 16) | a), p, len);
}

static int have_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}
#endif

uint32_t wale_adler32(uint32_t adler, const void *buf, size_t len) {
#if defined(__x86_64__)
    if (len >= 64 && have_avx2()) return adler32_avx2(adler, (const uint8_t *)buf, len);
#endif
    return adler32_scalar(adler, (const uint8_t *)buf, len);
}

uint32_t wale_adler32_portable(uint32_t adler, const void *buf, size_t len) {
    return adler32_scalar(adler, (const uint8_t *)buf, len);
}
