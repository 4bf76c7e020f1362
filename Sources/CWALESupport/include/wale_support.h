#ifndef WALE_SUPPORT_H
#define WALE_SUPPORT_H
/* Linux/glibc calls Swift's Glibc module does not import. */
int wale_syncfs(int fd);
/* Keeps large (1 MiB) buffers on the heap instead of a fresh mmap per allocation. */
void wale_tune_malloc(void);
/* Gives free pages inside the heap back to the kernel (malloc_trim): one arena and large chunks on
 * the heap leave holes between long-lived small allocations that otherwise stay resident. */
void wale_release_free_memory(void);
/* Starts writeback of a written range (sync_file_range WRITE): the later fsync has less left to
 * do, and the disk works while we compress. Durability still comes only from fsync/syncfs. */
int wale_write_behind(int fd, long long offset, long long length);
/* Turns O_DIRECT on (1) or off (0) for an open file; 0 on success, -1 with errno (EINVAL: the
 * file system does not do direct I/O). */
int wale_set_direct(int fd, int on);
/* How many pages of [offset, offset + length) of an open file are in the page cache (mincore over
 * a transient read-only mapping; length at most 4 MiB); -1 when that cannot be told. */
long wale_cached_pages(int fd, long long offset, long length);
/* pipe2(fds, O_CLOEXEC): a child started by another thread never inherits either end. */
int wale_pipe_cloexec(int fds[2]);
/* Extended attributes (the file store's object metadata): Swift's Glibc module lacks sys/xattr.h. */
#include <sys/xattr.h>
#include <stddef.h>
#include <stdint.h>
/* Adler-32 as lzop/zlib define it (AVX2 when the CPU has it); the portable loop for tests. */
uint32_t wale_adler32(uint32_t adler, const void *buf, size_t len);
uint32_t wale_adler32_portable(uint32_t adler, const void *buf, size_t len);
/* CRC-32C (S3's CRC32C checksum), hardware-accelerated where the CPU can; chains like zlib's
 * crc32 (start from 0). The portable table loop for tests. */
uint32_t wale_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t wale_crc32c_portable(uint32_t crc, const void *buf, size_t len);
/* syslog(priority, "%s", line) and snprintf(buf, n, "%02g", v) without Swift's CVarArg lists: building
 * one costs a dynamic cast per argument, and the first casts of a process scan every protocol
 * conformance of the program (~0.3 ms of each wal-push). */
void wale_syslog(int priority, const char *line);
/* An unnamed temporary file in `dir` (O_TMPFILE, read-write, close-on-exec, mode 0600): a file
 * descriptor, or -1 with errno set. Swift cannot see the O_TMPFILE macro. */
int wale_open_tmpfile(const char *dir);
int wale_format_g(char *buf, size_t n, double v);
/* AES-256-GCM with a 16-byte tag (wale_aead.c): a context per key; seal writes ciphertext then tag
 * (in_len + 16 bytes), open takes them so and writes the plaintext. Each returns the bytes written,
 * or -1 (open: the tag does not authenticate). The buffers may be the same (in place). */
void *wale_gcm_new(const uint8_t key[32]);
void wale_gcm_free(void *ctx);
long wale_gcm_seal(void *ctx, uint8_t *out, size_t out_capacity, const uint8_t nonce[12], const uint8_t *in, size_t in_len,
                   const uint8_t *ad, size_t ad_len);
long wale_gcm_open(void *ctx, uint8_t *out, size_t out_capacity, const uint8_t nonce[12], const uint8_t *in, size_t in_len,
                   const uint8_t *ad, size_t ad_len);
#endif
