#ifndef WALE_SUPPORT_H
#define WALE_SUPPORT_H
/* Linux calls Swift's Glibc module does not import. */
int wale_syncfs(int fd);
#endif
