#define _GNU_SOURCE
#include <malloc.h>
#include <unistd.h>
#include "wale_support.h"

int wale_syncfs(int fd) { return syncfs(fd); }

void wale_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
