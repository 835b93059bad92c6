/* password: the seeds' pbkdf2 hashing, as `password-hash` and
 * `password-verify`, on the libraries a KDF deserves: OpenSSL's
 * PKCS5_PBKDF2_HMAC (sha512, sha256) and libargon2's argon2id.
 *
 * The password is a secret parameter: the server shows and stores it as
 * "[redacted]" and never logs it; this file copies it nowhere and wipes
 * the derived key buffers it used (OPENSSL_cleanse).
 *
 * Each KDF is one library call that cannot be interrupted. A cancel or a
 * timeout still ends the job at once (the pool's watchdog): in a worker
 * process (--isolation process) the worker is killed after
 * --kill-grace-ms; a worker thread finishes the call (at most a few
 * seconds at the largest settings) and is reported `stuck` meanwhile. */
#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "tasks/tasks.h"

#define SALT_MAX 64  /* bytes */
#define KEY_MAX 128  /* bytes */
#define RESULT_MAX (2 * SALT_MAX + 2 * KEY_MAX + 256)

static const char *const algorithms[] = {"pbkdf2-sha512", "pbkdf2-sha256", "argon2id", NULL};

/* hex (validated by the spec: even length, hex digits) into out; the byte count. */
static size_t from_hex(const char *hex, unsigned char *out, size_t max) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n && i < max; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (unsigned char)v;
  }
  return n;
}

static void to_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

typedef struct kdf {
  const char *algorithm;
  unsigned char salt[SALT_MAX];
  size_t salt_len;
  size_t key_len;
  int64_t iterations;                  /* pbkdf2 */
  int64_t memory_kib, passes, lanes;   /* argon2id */
} kdf_t;

/* The KDF's settings from the params. False after failing the job. */
static bool read_kdf(offload_task_t *t, kdf_t *k, bool verify) {
  memset(k, 0, sizeof *k);
  k->algorithm = offload_task_param_str(t, "algorithm", "pbkdf2-sha512");
  bool sha512 = strcmp(k->algorithm, "pbkdf2-sha512") == 0, argon = strcmp(k->algorithm, "argon2id") == 0;
  k->iterations = offload_task_param_int(t, "iterations", 210000);
  k->memory_kib = offload_task_param_int(t, "memoryKiB", 19456); /* OWASP: 19 MiB, 2 passes, 1 lane */
  k->passes = offload_task_param_int(t, "passes", 2);
  k->lanes = offload_task_param_int(t, "parallelism", 1);
  k->key_len = (size_t)offload_task_param_int(t, "keyLength", sha512 ? 64 : 32);
  const char *salt = offload_task_param_str(t, "salt", NULL);
  if (salt) {
    k->salt_len = from_hex(salt, k->salt, sizeof k->salt);
  } else if (verify) {
    offload_task_fail(t, "invalid_param", "params.salt is needed to verify: the salt the hash was made with.");
    return false;
  } else {
    k->salt_len = 16;
    if (RAND_bytes(k->salt, (int)k->salt_len) != 1) {
      offload_task_fail(t, "internal", "The system gave no random bytes for the salt.");
      return false;
    }
  }
  if (argon && k->salt_len < ARGON2_MIN_SALT_LENGTH) {
    offload_task_fail(t, "invalid_param", "params.salt must be at least %d bytes for argon2id.",
                      ARGON2_MIN_SALT_LENGTH);
    return false;
  }
  return true;
}

/* Derives the key of `password` into out (k->key_len bytes). False after
 * failing the job. */
static bool derive(offload_task_t *t, const kdf_t *k, const char *pw, size_t pw_len, unsigned char *out) {
  if (strcmp(k->algorithm, "argon2id") == 0) {
    int rc = argon2id_hash_raw((uint32_t)k->passes, (uint32_t)k->memory_kib, (uint32_t)k->lanes, pw, pw_len,
                               k->salt, k->salt_len, out, k->key_len);
    if (rc != ARGON2_OK) {
      offload_task_fail(t, rc == ARGON2_MEMORY_ALLOCATION_ERROR ? "out_of_memory" : "invalid_param",
                        "argon2id: %s.", argon2_error_message(rc));
      return false;
    }
    return true;
  }
  const EVP_MD *md = strcmp(k->algorithm, "pbkdf2-sha256") == 0 ? EVP_sha256() : EVP_sha512();
  if (PKCS5_PBKDF2_HMAC(pw, (int)pw_len, k->salt, (int)k->salt_len, (int)k->iterations, md, (int)k->key_len,
                        out) != 1) {
    offload_task_fail(t, "internal", "PBKDF2 failed in OpenSSL.");
    return false;
  }
  return true;
}

static void hash_run(offload_task_t *t) {
  kdf_t k;
  if (!read_kdf(t, &k, false))
    return;
  size_t pw_len;
  const char *pw = offload_task_param_strn(t, "password", &pw_len);
  unsigned char key[KEY_MAX];
  if (!derive(t, &k, pw, pw_len, key))
    return;
  if (offload_task_canceled(t))
    return;
  char salt_hex[2 * SALT_MAX + 1], key_hex[2 * KEY_MAX + 1], out[RESULT_MAX];
  to_hex(k.salt, k.salt_len, salt_hex);
  to_hex(key, k.key_len, key_hex);
  OPENSSL_cleanse(key, sizeof key);
  if (strcmp(k.algorithm, "argon2id") == 0)
    snprintf(out, sizeof out,
             "{\"algorithm\":\"argon2id\",\"salt\":\"%s\",\"hash\":\"%s\",\"keyLength\":%zu,\"memoryKiB\":%lld,"
             "\"passes\":%lld,\"parallelism\":%lld}",
             salt_hex, key_hex, k.key_len, (long long)k.memory_kib, (long long)k.passes, (long long)k.lanes);
  else
    snprintf(out, sizeof out,
             "{\"algorithm\":\"%s\",\"salt\":\"%s\",\"hash\":\"%s\",\"keyLength\":%zu,\"iterations\":%lld}",
             k.algorithm, salt_hex, key_hex, k.key_len, (long long)k.iterations);
  OPENSSL_cleanse(key_hex, sizeof key_hex);
  offload_task_progress(t, 1.0);
  offload_task_result_json(t, out);
}

static void verify_run(offload_task_t *t) {
  kdf_t k;
  if (!read_kdf(t, &k, true))
    return;
  unsigned char want[KEY_MAX], got[KEY_MAX];
  const char *hash = offload_task_param_str(t, "hash", "");
  k.key_len = from_hex(hash, want, sizeof want); /* the spec bounds it to 128 bytes */
  if (k.key_len < 16) {
    offload_task_fail(t, "invalid_param", "params.hash must be 16 to %d bytes (in hex); got %zu.", KEY_MAX, k.key_len);
    return;
  }
  size_t pw_len;
  const char *pw = offload_task_param_strn(t, "password", &pw_len);
  if (!derive(t, &k, pw, pw_len, got))
    return;
  bool match = CRYPTO_memcmp(want, got, k.key_len) == 0; /* constant time */
  OPENSSL_cleanse(got, sizeof got);
  if (offload_task_canceled(t))
    return;
  offload_task_progress(t, 1.0);
  offload_task_result_json(t, match ? "{\"match\":true}" : "{\"match\":false}");
}

#define COMMON_PARAMS                                                                                              \
  {.name = "password", .type = OFFLOAD_PARAM_STRING, .required = true, .max_len = 1024, .secret = true,            \
   .description = "the password (never shown, stored or logged)"},                                                \
      {.name = "algorithm", .type = OFFLOAD_PARAM_STRING, .choices = algorithms, .dflt = "\"pbkdf2-sha512\""},       \
      {.name = "iterations", .type = OFFLOAD_PARAM_INTEGER, .min = 1000, .max = 10000000, .dflt = "210000",          \
       .description = "pbkdf2 only"},                                                                              \
      {.name = "memoryKiB", .type = OFFLOAD_PARAM_INTEGER, .min = 8, .max = 1048576, .dflt = "19456",               \
       .description = "argon2id only"},                                                                            \
      {.name = "passes", .type = OFFLOAD_PARAM_INTEGER, .min = 1, .max = 100, .dflt = "2",                          \
       .description = "argon2id only"},                                                                            \
      {.name = "parallelism", .type = OFFLOAD_PARAM_INTEGER, .min = 1, .max = 16, .dflt = "1",                      \
       .description = "argon2id only"}

static const offload_param_spec_t hash_params[] = {
    COMMON_PARAMS,
    {.name = "salt", .type = OFFLOAD_PARAM_STRING, .max_len = 2 * SALT_MAX, .format = OFFLOAD_FORMAT_HEX,
     .description = "hex; 16 random bytes when absent"},
    {.name = "keyLength", .type = OFFLOAD_PARAM_INTEGER, .min = 16, .max = KEY_MAX,
     .description = "bytes; 64 for pbkdf2-sha512, else 32"},
};

static const offload_param_spec_t verify_params[] = {
    COMMON_PARAMS,
    {.name = "salt", .type = OFFLOAD_PARAM_STRING, .required = true, .max_len = 2 * SALT_MAX,
     .format = OFFLOAD_FORMAT_HEX, .description = "hex: the salt the hash was made with"},
    {.name = "hash", .type = OFFLOAD_PARAM_STRING, .required = true, .max_len = 2 * KEY_MAX,
     .format = OFFLOAD_FORMAT_HEX, .description = "hex: the hash to check (16 to 128 bytes)"},
};

const offload_task_def_t task_password_hash = {
    .name = "password-hash",
    .description = "Derives a password hash: PBKDF2-HMAC-SHA512 (the seeds'), PBKDF2-HMAC-SHA256 or argon2id.",
    .run = hash_run,
    .params = hash_params,
    .nparams = sizeof hash_params / sizeof hash_params[0],
};

const offload_task_def_t task_password_verify = {
    .name = "password-verify",
    .description = "Checks a password against a hash made by password-hash, in constant time.",
    .run = verify_run,
    .params = verify_params,
    .nparams = sizeof verify_params / sizeof verify_params[0],
};
