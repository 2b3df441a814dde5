/*
 * effect-ssh's optional native ciphers: AES-GCM (RFC 5647 as OpenSSH runs it) and
 * chacha20-poly1305@openssh.com, through the OpenSSL that Node.js itself links.
 *
 * Why: node:crypto needs a new cipher object per packet (a GCM nonce cannot be changed on an
 * existing one) and allocates a new buffer for every update. Here one OpenSSL context per
 * direction is kept, re-keyed with just the nonce, and packets are sealed in place: ~3x less
 * CPU per packet. src/protocol/crypto/native.ts loads this when built and falls back to
 * node:crypto otherwise; both paths compute the same bytes (tested).
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TAG 16

static napi_value fail(napi_env env, const char* message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value boolean(napi_env env, int value) {
  napi_value result;
  napi_get_boolean(env, value, &result);
  return result;
}

/* The bytes of a Uint8Array (or Buffer) argument; NULL if it is not one. */
static uint8_t* bytes_of(napi_env env, napi_value value, size_t* length) {
  napi_typedarray_type type;
  void* data;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &data, &buffer, &offset) != napi_ok || type != napi_uint8_array)
    return NULL;
  return *length == 0 ? (uint8_t*)"" : (uint8_t*)data;
}

/* Contexts are externals tagged with their kind, so one kind is never taken for another. */
static const napi_type_tag GCM_TAG = {0x5e1f6a0d2b7c4e91ULL, 0x8d3a40c6b1e2f507ULL};
static const napi_type_tag CHACHA_TAG = {0x2c94e07b5d13a8f6ULL, 0x71b0e3d94a6c258eULL};

static napi_value wrap(napi_env env, void* data, napi_finalize finalize, const napi_type_tag* tag) {
  napi_value result;
  if (napi_create_external(env, data, finalize, NULL, &result) != napi_ok) {
    finalize(env, data, NULL);
    return NULL;
  }
  if (napi_type_tag_object(env, result, tag) != napi_ok) return NULL;
  return result;
}

static void* unwrap(napi_env env, napi_value value, const napi_type_tag* tag) {
  bool tagged = false;
  void* data = NULL;
  if (napi_check_object_type_tag(env, value, tag, &tagged) != napi_ok || !tagged) return NULL;
  return napi_get_value_external(env, value, &data) == napi_ok ? data : NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value* argv) {
  size_t argc = expected;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == expected;
}

/* ---------------------------------------------------------------- AES-GCM */

static void free_cipher(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  EVP_CIPHER_CTX_free((EVP_CIPHER_CTX*)data);
}

static EVP_CIPHER_CTX* cipher_of(napi_env env, napi_value value) {
  return (EVP_CIPHER_CTX*)unwrap(env, value, &GCM_TAG);
}

/* The invocation counter (nonce bytes 4..12) grows by one per packet and wraps (RFC 5647 §7.1). */
static void advance_nonce(uint8_t* nonce) {
  for (int i = 11; i >= 4; i--)
    if (++nonce[i] != 0) return;
}

/* gcmNew(key: 16 or 32 bytes, encrypt: boolean) -> context */
static napi_value gcm_new(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t key_length;
  bool encrypt;
  if (!get_args(env, info, 2, argv)) return fail(env, "gcmNew(key, encrypt)");
  uint8_t* key = bytes_of(env, argv[0], &key_length);
  if (key == NULL || (key_length != 16 && key_length != 32) || napi_get_value_bool(env, argv[1], &encrypt) != napi_ok)
    return fail(env, "gcmNew: a 16- or 32-byte key and a boolean");
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL ||
      !EVP_CipherInit_ex(ctx, key_length == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) ||
      !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) ||
      !EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, -1)) {
    EVP_CIPHER_CTX_free(ctx);
    return fail(env, "gcmNew: OpenSSL refused the key");
  }
  return wrap(env, ctx, free_cipher, &GCM_TAG);
}

/* Feeds `length` bytes at `in` to the cipher, output at `out` (which may equal `in`). */
static int gcm_update(EVP_CIPHER_CTX* ctx, uint8_t* out, const uint8_t* in, size_t length) {
  int written;
  return length == 0 || EVP_CipherUpdate(ctx, out, &written, in, (int)length);
}

/*
 * The (ctx, nonce, packet, bodyEnd) arguments a GCM packet call starts with: a 12-byte nonce
 * and a packet with room for the 4-byte length before bodyEnd and the tag after it.
 */
static int gcm_packet_args(napi_env env, napi_value* argv, EVP_CIPHER_CTX** ctx, uint8_t** nonce, uint8_t** packet, uint32_t* end) {
  size_t nonce_length, length;
  *ctx = cipher_of(env, argv[0]);
  *nonce = bytes_of(env, argv[1], &nonce_length);
  *packet = bytes_of(env, argv[2], &length);
  return *ctx != NULL && *nonce != NULL && nonce_length == 12 && *packet != NULL &&
         napi_get_value_uint32(env, argv[3], end) == napi_ok && *end >= 4 && (size_t)*end + TAG <= length && *end <= INT32_MAX;
}

/*
 * gcmSeal(ctx, nonce, packet, bodyEnd): encrypts packet[4..bodyEnd] in place, authenticating
 * packet[0..4], and writes the tag at packet[bodyEnd..bodyEnd+16]; advances the nonce.
 */
static napi_value gcm_seal(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  EVP_CIPHER_CTX* ctx;
  uint8_t *nonce, *p;
  uint32_t end;
  int written;
  if (!get_args(env, info, 4, argv) || !gcm_packet_args(env, argv, &ctx, &nonce, &p, &end))
    return fail(env, "gcmSeal(ctx, nonce, packet, bodyEnd): bad arguments");
  int ok = EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) && EVP_EncryptUpdate(ctx, NULL, &written, p, 4) &&
           gcm_update(ctx, p + 4, p + 4, end - 4) && EVP_EncryptFinal_ex(ctx, p + end, &written) &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, p + end);
  advance_nonce(nonce);
  return boolean(env, ok);
}

/*
 * gcmSealAround(ctx, nonce, prefix, data, sealed, suffix): one packet lying in three pieces.
 * prefix = length (authenticated) then the start of the body, encrypted in place; data is
 * encrypted into `sealed` (same length) and left as it is; suffix = the end of the body,
 * encrypted in place, then 16 bytes for the tag. Advances the nonce.
 */
static napi_value gcm_seal_around(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  size_t nonce_length, prefix_length, data_length, sealed_length, suffix_length;
  int written;
  if (!get_args(env, info, 6, argv)) return fail(env, "gcmSealAround(ctx, nonce, prefix, data, sealed, suffix)");
  EVP_CIPHER_CTX* ctx = cipher_of(env, argv[0]);
  uint8_t* nonce = bytes_of(env, argv[1], &nonce_length);
  uint8_t* prefix = bytes_of(env, argv[2], &prefix_length);
  uint8_t* data = bytes_of(env, argv[3], &data_length);
  uint8_t* sealed = bytes_of(env, argv[4], &sealed_length);
  uint8_t* suffix = bytes_of(env, argv[5], &suffix_length);
  if (ctx == NULL || nonce == NULL || nonce_length != 12 || prefix == NULL || prefix_length < 4 || data == NULL ||
      sealed == NULL || sealed_length != data_length || suffix == NULL || suffix_length < TAG || data_length > INT32_MAX ||
      prefix_length > INT32_MAX || suffix_length > INT32_MAX)
    return fail(env, "gcmSealAround: bad arguments");
  uint8_t* tag = suffix + suffix_length - TAG;
  int ok = EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) && EVP_EncryptUpdate(ctx, NULL, &written, prefix, 4) &&
           gcm_update(ctx, prefix + 4, prefix + 4, prefix_length - 4) && gcm_update(ctx, sealed, data, data_length) &&
           gcm_update(ctx, suffix, suffix, suffix_length - TAG) && EVP_EncryptFinal_ex(ctx, tag, &written) &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, tag);
  advance_nonce(nonce);
  return boolean(env, ok);
}

/*
 * gcmOpen(ctx, nonce, packet, bodyEnd, plain) -> boolean: checks the tag at packet[bodyEnd..]
 * and decrypts packet[4..bodyEnd] into `plain` (bodyEnd - 4 bytes); false when the tag is
 * wrong, and then `plain` holds nothing to use. Advances the nonce either way.
 */
static napi_value gcm_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  EVP_CIPHER_CTX* ctx;
  uint8_t *nonce, *p, *plain;
  size_t plain_length;
  uint32_t end;
  int written;
  if (!get_args(env, info, 5, argv) || !gcm_packet_args(env, argv, &ctx, &nonce, &p, &end) ||
      (plain = bytes_of(env, argv[4], &plain_length)) == NULL || plain_length != end - 4)
    return fail(env, "gcmOpen(ctx, nonce, packet, bodyEnd, plain): bad arguments");
  uint8_t tag[TAG];
  memcpy(tag, p + end, TAG);
  int ok = EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) && EVP_DecryptUpdate(ctx, NULL, &written, p, 4) &&
           gcm_update(ctx, plain, p + 4, end - 4) && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG, tag) &&
           EVP_DecryptFinal_ex(ctx, tag, &written) > 0;
  advance_nonce(nonce);
  return boolean(env, ok);
}

/* ------------------------------------------------ chacha20-poly1305@openssh.com */

/*
 * K_2 (main) encrypts the payload and yields the Poly1305 key, K_1 (header) the length field.
 * OpenSSL's chacha20 IV is a 32-bit little-endian block counter then a 96-bit nonce; as state
 * words that equals OpenSSH's 64-bit counter then the 64-bit big-endian sequence number.
 */
typedef struct {
  EVP_CIPHER_CTX* main;
  EVP_CIPHER_CTX* header;
  EVP_MAC_CTX* poly;
} chacha_state;

static void free_chacha(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  chacha_state* s = (chacha_state*)data;
  EVP_CIPHER_CTX_free(s->main);
  EVP_CIPHER_CTX_free(s->header);
  EVP_MAC_CTX_free(s->poly);
  OPENSSL_cleanse(s, sizeof(*s));
  free(s);
}

/* chachaNew(key: 64 bytes) -> context */
static napi_value chacha_new(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t key_length;
  if (!get_args(env, info, 1, argv)) return fail(env, "chachaNew(key)");
  uint8_t* key = bytes_of(env, argv[0], &key_length);
  if (key == NULL || key_length != 64) return fail(env, "chachaNew: a 64-byte key");
  chacha_state* s = calloc(1, sizeof(chacha_state));
  EVP_MAC* mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
  if (s != NULL) {
    s->main = EVP_CIPHER_CTX_new();
    s->header = EVP_CIPHER_CTX_new();
    s->poly = mac == NULL ? NULL : EVP_MAC_CTX_new(mac);
  }
  EVP_MAC_free(mac);
  if (s == NULL || s->main == NULL || s->header == NULL || s->poly == NULL) {
    if (s != NULL) free_chacha(env, s, NULL);
    return fail(env, "chachaNew: OpenSSL has no chacha20 or Poly1305");
  }
  static const uint8_t zero_iv[16] = {0};
  if (!EVP_EncryptInit_ex(s->main, EVP_chacha20(), NULL, key, zero_iv) ||
      !EVP_EncryptInit_ex(s->header, EVP_chacha20(), NULL, key + 32, zero_iv)) {
    free_chacha(env, s, NULL);
    return fail(env, "chachaNew: OpenSSL refused the key");
  }
  return wrap(env, s, free_chacha, &CHACHA_TAG);
}

static chacha_state* chacha_of(napi_env env, napi_value value) {
  return (chacha_state*)unwrap(env, value, &CHACHA_TAG);
}

/* Restarts a keyed stream at block 0 of `sequence`; only the IV changes, so no key setup per packet. */
static int chacha_start(EVP_CIPHER_CTX* ctx, uint32_t sequence) {
  uint8_t iv[16] = {0};
  iv[12] = (uint8_t)(sequence >> 24);
  iv[13] = (uint8_t)(sequence >> 16);
  iv[14] = (uint8_t)(sequence >> 8);
  iv[15] = (uint8_t)sequence;
  return EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv);
}

/* Starts the main stream for a packet: block 0 gives the Poly1305 key, the payload starts at block 1. */
static int chacha_poly_start(chacha_state* s, uint32_t sequence) {
  static const uint8_t zero[64] = {0};
  uint8_t block[64];
  int written;
  int ok = chacha_start(s->main, sequence) && EVP_EncryptUpdate(s->main, block, &written, zero, 64) &&
           EVP_MAC_init(s->poly, block, 32, NULL);
  OPENSSL_cleanse(block, sizeof(block));
  return ok;
}

static int sequence_of(napi_env env, napi_value value, uint32_t* sequence) {
  return napi_get_value_uint32(env, value, sequence) == napi_ok;
}

/* The (ctx, sequence, packet, bodyEnd) arguments a chacha20-poly1305 packet call starts with. */
static int chacha_packet_args(napi_env env, napi_value* argv, chacha_state** s, uint32_t* sequence, uint8_t** packet, uint32_t* end) {
  size_t length;
  *s = chacha_of(env, argv[0]);
  *packet = bytes_of(env, argv[2], &length);
  return *s != NULL && *packet != NULL && sequence_of(env, argv[1], sequence) && napi_get_value_uint32(env, argv[3], end) == napi_ok &&
         *end >= 4 && (size_t)*end + TAG <= length && *end <= INT32_MAX;
}

/* chachaCryptLength(ctx, sequence, field): XORs the 4-byte length field in place (both ways). */
static napi_value chacha_crypt_length(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t length;
  uint32_t sequence;
  int written;
  if (!get_args(env, info, 3, argv)) return fail(env, "chachaCryptLength(ctx, sequence, field)");
  chacha_state* s = chacha_of(env, argv[0]);
  uint8_t* field = bytes_of(env, argv[2], &length);
  if (s == NULL || field == NULL || length < 4 || !sequence_of(env, argv[1], &sequence))
    return fail(env, "chachaCryptLength: bad arguments");
  int ok = chacha_start(s->header, sequence) && EVP_EncryptUpdate(s->header, field, &written, field, 4);
  return boolean(env, ok);
}

/* chachaSeal(ctx, sequence, packet, bodyEnd): encrypts packet[4..bodyEnd] in place, tag over packet[0..bodyEnd]. */
static napi_value chacha_seal(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  chacha_state* s;
  uint8_t* p;
  size_t tag_length = TAG;
  uint32_t sequence, end;
  int written;
  if (!get_args(env, info, 4, argv) || !chacha_packet_args(env, argv, &s, &sequence, &p, &end))
    return fail(env, "chachaSeal(ctx, sequence, packet, bodyEnd): bad arguments");
  int ok = chacha_poly_start(s, sequence) && (end == 4 || EVP_EncryptUpdate(s->main, p + 4, &written, p + 4, (int)end - 4)) &&
           EVP_MAC_update(s->poly, p, end) && EVP_MAC_final(s->poly, p + end, &tag_length, TAG);
  return boolean(env, ok);
}

/*
 * chachaOpen(ctx, sequence, packet, bodyEnd, plain) -> boolean: checks the tag over
 * packet[0..bodyEnd] in constant time, then decrypts packet[4..bodyEnd] into `plain`.
 */
static napi_value chacha_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  chacha_state* s;
  uint8_t *p, *plain;
  size_t plain_length, tag_length = TAG;
  uint32_t sequence, end;
  int written;
  uint8_t expected[TAG];
  if (!get_args(env, info, 5, argv) || !chacha_packet_args(env, argv, &s, &sequence, &p, &end) ||
      (plain = bytes_of(env, argv[4], &plain_length)) == NULL || plain_length != end - 4)
    return fail(env, "chachaOpen(ctx, sequence, packet, bodyEnd, plain): bad arguments");
  int ok = chacha_poly_start(s, sequence) && EVP_MAC_update(s->poly, p, end) &&
           EVP_MAC_final(s->poly, expected, &tag_length, TAG) && CRYPTO_memcmp(expected, p + end, TAG) == 0 &&
           (end == 4 || EVP_EncryptUpdate(s->main, plain, &written, p + 4, (int)end - 4));
  return boolean(env, ok);
}

/* ------------------------------------------------------------------ module */

NAPI_MODULE_INIT() {
  static const struct {
    const char* name;
    napi_callback fn;
  } functions[] = {
      {"gcmNew", gcm_new},         {"gcmSeal", gcm_seal},     {"gcmSealAround", gcm_seal_around},
      {"gcmOpen", gcm_open},       {"chachaNew", chacha_new}, {"chachaCryptLength", chacha_crypt_length},
      {"chachaSeal", chacha_seal}, {"chachaOpen", chacha_open},
  };
  for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok)
      return NULL;
  }
  return exports;
}
