/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum S3's flexible checksums
 * call CRC32C (x-amz-checksum-crc32c), and backup manifests' file checksums. SSE4.2's crc32
 * instruction where the CPU has it, three chains at once (below). The API
 * chains like zlib's crc32: wale_crc32c(wale_crc32c(0, a), b) == wale_crc32c(0, a || b). */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "wale_support.h"

/* Tables are built once, on first use, under pthread_once. */
static uint32_t table[256];
static pthread_once_t tableOnce = PTHREAD_ONCE_INIT;

static void buildTable(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
        table[i] = c;
    }
}

uint32_t wale_crc32c_portable(uint32_t crc, const void *buf, size_t len) {
    pthread_once(&tableOnce, buildTable);
    const uint8_t *p = buf;
    crc = ~crc;
    while (len--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* The crc32 instruction has a latency of three cycles and a throughput of one a cycle, so one
 * chain of it runs at a third of what the core can do (~8 GB/s). Three chains over three
 * adjacent blocks keep it busy; their results are then combined: by linearity, the raw CRC of
 * A || B is shift(raw(A)) ^ raw(B from 0), where shift is "append |B| zero bytes", a linear map
 * on the 32-bit state applied as four byte-indexed table lookups. Blocks of 8 KiB, then 256 bytes
 * for the rest, then one chain (as Intel's and zlib's combined CRCs do). */
enum { LONG_BLOCK = 8192, SHORT_BLOCK = 256 };
static uint32_t shiftLong[4][256], shiftShort[4][256];
static pthread_once_t shiftOnce = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2")))
static uint32_t zerosHW(uint32_t state, size_t n) {  /* n a multiple of 8 */
    uint64_t c = state;
    for (size_t i = 0; i < n / 8; i++) c = _mm_crc32_u64(c, 0);
    return (uint32_t)c;
}

static void buildShift(uint32_t t[4][256], size_t n) {
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) basis[i] = zerosHW(1u << i, n);
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if ((b >> j) & 1) v ^= basis[8 * k + j];
            t[k][b] = v;
        }
}

static void buildShifts(void) {
    buildShift(shiftLong, LONG_BLOCK);
    buildShift(shiftShort, SHORT_BLOCK);
}

static inline uint32_t shift(uint32_t t[4][256], uint64_t c) {
    return t[0][c & 0xFF] ^ t[1][(c >> 8) & 0xFF] ^ t[2][(c >> 16) & 0xFF] ^ t[3][(c >> 24) & 0xFF];
}

__attribute__((target("sse4.2")))
static inline const uint8_t *threeChains(uint64_t *c, const uint8_t *p, size_t block, uint32_t t[4][256]) {
    uint64_t c0 = *c, c1 = 0, c2 = 0;
    const uint8_t *end = p + block;
    do {
        uint64_t v0, v1, v2;
        memcpy(&v0, p, 8);
        memcpy(&v1, p + block, 8);
        memcpy(&v2, p + 2 * block, 8);
        c0 = _mm_crc32_u64(c0, v0);
        c1 = _mm_crc32_u64(c1, v1);
        c2 = _mm_crc32_u64(c2, v2);
        p += 8;
    } while (p < end);
    c0 = shift(t, c0) ^ c1;
    *c = shift(t, c0) ^ c2;
    return p + 2 * block;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len) {
    uint64_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) { c = _mm_crc32_u8((uint32_t)c, *p++); len--; }
    if (len >= 3 * SHORT_BLOCK) pthread_once(&shiftOnce, buildShifts);
    for (; len >= 3 * LONG_BLOCK; len -= 3 * LONG_BLOCK) p = threeChains(&c, p, LONG_BLOCK, shiftLong);
    for (; len >= 3 * SHORT_BLOCK; len -= 3 * SHORT_BLOCK) p = threeChains(&c, p, SHORT_BLOCK, shiftShort);
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

uint32_t wale_crc32c(uint32_t crc, const void *buf, size_t len) {
    static int sse42 = -1;
    if (sse42 < 0) sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    return sse42 ? crc32c_sse42(crc, buf, len) : wale_crc32c_portable(crc, buf, len);
}
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
uint32_t wale_crc32c(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = __crc32cd(crc, v);
        p += 8;
        len -= 8;
    }
    while (len--) crc = __crc32cb(crc, *p++);
    return ~crc;
}
#else
uint32_t wale_crc32c(uint32_t crc, const void *buf, size_t len) { return wale_crc32c_portable(crc, buf, len); }
#endif
