#include <lzo/lzo1x.h>

/* lzo_init() and LZO1X_1_MEM_COMPRESS are macros, which Swift cannot import. */
static inline int wale_lzo_init(void) { return lzo_init(); }
static inline unsigned long wale_lzo1x_1_mem_compress(void) { return (unsigned long)LZO1X_1_MEM_COMPRESS; }
static inline unsigned long wale_lzo_version(void) { return (unsigned long)LZO_VERSION; }
