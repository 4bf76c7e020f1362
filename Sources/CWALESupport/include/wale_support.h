#ifndef WALE_SUPPORT_H
#define WALE_SUPPORT_H
/* Linux/glibc calls Swift's Glibc module does not import. */
int wale_syncfs(int fd);
/* Keeps large (1 MiB) buffers on the heap instead of a fresh mmap per allocation. */
void wale_tune_malloc(void);
#endif
