/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum S3's flexible checksums
 * call CRC32C (x-amz-checksum-crc32c). SSE4.2's crc32 instruction where the CPU has it: about
 * 8 bytes a cycle-triple, 16 MiB in ~2 ms, where the MD5 it replaces took ~20 ms. The API
 * chains like zlib's crc32: wale_crc32c(wale_crc32c(0, a), b) == wale_crc32c(0, a || b). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "wale_support.h"

static uint32_t table[256];
static int tableReady;

static void buildTable(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
        table[i] = c;
    }
    __atomic_store_n(&tableReady, 1, __ATOMIC_RELEASE);
}

uint32_t wale_crc32c_portable(uint32_t crc, const void *buf, size_t len) {
    if (!__atomic_load_n(&tableReady, __ATOMIC_ACQUIRE)) buildTable();  /* idempotent */
    const uint8_t *p = buf;
    crc = ~crc;
    while (len--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len) {
    uint64_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) { c = _mm_crc32_u8((uint32_t)c, *p++); len--; }
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
