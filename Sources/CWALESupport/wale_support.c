#define _GNU_SOURCE
#include <unistd.h>
#include "wale_support.h"

int wale_syncfs(int fd) { return syncfs(fd); }
