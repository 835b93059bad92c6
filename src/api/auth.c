/* api/auth: bearer tokens (--auth-token-file). See api.h.
 *
 * DESIGN: the tokens are kept as SHA-256 digests only; the file's bytes and
 * every copy of a token are wiped once read (OPENSSL_cleanse), so no token
 * sits in the server's memory, and none is ever logged or echoed (errors
 * name the file and the line). A presented token is hashed and compared
 * with every digest by CRYPTO_memcmp, without stopping at a match: the time
 * depends on the presented token's length and the number of tokens, never
 * on how much of a token matched or which token it was. Comparing digests
 * also hides the tokens' lengths. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "util/err.h"
#include "util/log.h"

#define AUTH_FILE_MAX (1024 * 1024) /* a token file is small: refuse what is not */

static bool sha256(const char *p, size_t n, unsigned char out[API_AUTH_DIGEST]) {
  unsigned int len = 0;
  return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == API_AUTH_DIGEST;
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

int api_auth_parse(api_auth_t *a, const char *text, size_t len, const char *name, char *err, size_t errsize) {
  *a = (api_auth_t){0};
  size_t lineno = 0;
  const char *p = text, *end = text + len;
  int rc = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    lineno++;
    const char *b = p, *e = le;
    p = nl ? nl + 1 : end;
    while (b < e && is_space(*b))
      b++;
    while (e > b && is_space(e[-1]))
      e--;
    if (b == e || *b == '#')
      continue;
    size_t n = (size_t)(e - b);
    for (const char *q = b; q < e; q++) {
      if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f) {
        snprintf(err, errsize,
                 "%s:%zu: a token holds a space, a control character or a non-ASCII byte; a token is one word of "
                 "visible ASCII characters",
                 name, lineno);
        rc = OFF_EINVAL;
        goto fail;
      }
    }
    if (n < API_AUTH_TOKEN_MIN) {
      snprintf(err, errsize, "%s:%zu: the token is %zu characters long; a token needs at least %d", name, lineno, n,
               API_AUTH_TOKEN_MIN);
      rc = OFF_EINVAL;
      goto fail;
    }
    unsigned char(*d)[API_AUTH_DIGEST] = realloc(a->digests, (a->n + 1) * sizeof *a->digests);
    if (!d) {
      snprintf(err, errsize, "%s: out of memory", name);
      rc = OFF_ENOMEM;
      goto fail;
    }
    a->digests = d;
    if (!sha256(b, n, a->digests[a->n])) {
      snprintf(err, errsize, "%s: SHA-256 is not available from OpenSSL", name);
      rc = OFF_ESYS;
      goto fail;
    }
    a->n++;
  }
  if (a->n == 0) {
    snprintf(err, errsize, "%s: no token in it (every line is blank or a # comment)", name);
    rc = OFF_EINVAL;
    goto fail;
  }
  return 0;

fail:
  api_auth_fini(a);
  return rc;
}

int api_auth_load(api_auth_t *a, const char *path, char *err, size_t errsize) {
  *a = (api_auth_t){0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errsize, "cannot open the token file %s: %s", path, strerror(errno));
    return OFF_ESYS;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > AUTH_FILE_MAX) {
    snprintf(err, errsize, "the token file %s is not a regular file of at most %d bytes", path, AUTH_FILE_MAX);
    close(fd);
    return OFF_EINVAL;
  }
  char *text = malloc((size_t)st.st_size + 1);
  if (!text) {
    close(fd);
    snprintf(err, errsize, "%s: out of memory", path);
    return OFF_ENOMEM;
  }
  size_t got = 0;
  int read_errno = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      read_errno = errno;
    if (r <= 0)
      break; /* or shorter than fstat said: parse what is there */
    got += (size_t)r;
  }
  close(fd);
  int rc;
  if (read_errno) {
    snprintf(err, errsize, "cannot read the token file %s: %s", path, strerror(read_errno));
    rc = OFF_ESYS;
  } else {
    rc = api_auth_parse(a, text, got, path, err, errsize);
  }
  OPENSSL_cleanse(text, (size_t)st.st_size + 1);
  free(text);
  if (rc == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
    log_warn("auth: the token file %s can be read by other users (mode %03o); chmod 600 it", path,
             (unsigned)(st.st_mode & 0777));
  return rc;
}

void api_auth_fini(api_auth_t *a) {
  if (a->digests)
    OPENSSL_cleanse(a->digests, a->n * sizeof *a->digests);
  free(a->digests);
  *a = (api_auth_t){0};
}

api_auth_result_t api_auth_check(const api_auth_t *a, const char *authorization) {
  const char *h = authorization;
  if (!h)
    return API_AUTH_MISSING;
  while (*h == ' ' || *h == '\t')
    h++;
  if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
    return API_AUTH_NOT_BEARER;
  const char *t = h + 7;
  while (*t == ' ' || *t == '\t')
    t++;
  size_t n = strlen(t);
  while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
    n--;
  unsigned char d[API_AUTH_DIGEST];
  if (n == 0 || !sha256(t, n, d))
    return API_AUTH_WRONG;
  int match = 0;
  for (size_t i = 0; i < a->n; i++) /* every one: no early exit on a match */
    match |= CRYPTO_memcmp(d, a->digests[i], API_AUTH_DIGEST) == 0;
  OPENSSL_cleanse(d, sizeof d);
  return match ? API_AUTH_OK : API_AUTH_WRONG;
}
