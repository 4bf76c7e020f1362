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
#endif
