/* AES-256-GCM sealing and opening straight into the caller's buffer, for native encryption's
 * 64 KiB chunks. swift-crypto's AES.GCM returns each chunk in fresh allocations (ciphertext, tag,
 * then a combined copy), which we then copied again into the output: three copies and a page
 * fault per page of every chunk cost more than the cipher itself (docs/design.md, "Native
 * encryption"). This calls the same BoringSSL that swift-crypto links into the program (its
 * symbols carry the CCryptoBoringSSL_ prefix), through BoringSSL's public EVP_AEAD interface. */
#include <stddef.h>
#include <stdint.h>
#include "wale_support.h"

typedef struct evp_aead_st EVP_AEAD;
typedef struct evp_aead_ctx_st EVP_AEAD_CTX;
extern const EVP_AEAD *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
extern EVP_AEAD_CTX *CCryptoBoringSSL_EVP_AEAD_CTX_new(const EVP_AEAD *aead, const uint8_t *key, size_t key_len,
                                                       size_t tag_len);
extern void CCryptoBoringSSL_EVP_AEAD_CTX_free(EVP_AEAD_CTX *ctx);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_seal(const EVP_AEAD_CTX *ctx, uint8_t *out, size_t *out_len, size_t max_out_len,
                                              const uint8_t *nonce, size_t nonce_len, const uint8_t *in, size_t in_len,
                                              const uint8_t *ad, size_t ad_len);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_open(const EVP_AEAD_CTX *ctx, uint8_t *out, size_t *out_len, size_t max_out_len,
                                              const uint8_t *nonce, size_t nonce_len, const uint8_t *in, size_t in_len,
                                              const uint8_t *ad, size_t ad_len);

void *wale_gcm_new(const uint8_t key[32]) {
    return CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), key, 32, 16);
}

void wale_gcm_free(void *ctx) { CCryptoBoringSSL_EVP_AEAD_CTX_free(ctx); }

long wale_gcm_seal(void *ctx, uint8_t *out, size_t out_capacity, const uint8_t nonce[12], const uint8_t *in, size_t in_len,
                   const uint8_t *ad, size_t ad_len) {
    size_t n = 0;
    if (!CCryptoBoringSSL_EVP_AEAD_CTX_seal(ctx, out, &n, out_capacity, nonce, 12, in, in_len, ad, ad_len)) return -1;
    return (long)n;
}

long wale_gcm_open(void *ctx, uint8_t *out, size_t out_capacity, const uint8_t nonce[12], const uint8_t *in, size_t in_len,
                   const uint8_t *ad, size_t ad_len) {
    size_t n = 0;
    if (!CCryptoBoringSSL_EVP_AEAD_CTX_open(ctx, out, &n, out_capacity, nonce, 12, in, in_len, ad, ad_len)) return -1;
    return (long)n;
}
