/* pool/wire: job and result payloads. See pool/wire.h. */
#include "pool/wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

#define JOB_HDR 8
#define RES_HDR 24

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0)
      return OFF_ESYS;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int wire_encode_job(const char *task, const json_t *params, size_t inline_max, void **payload, size_t *len, int *fd) {
  *payload = NULL;
  *fd = -1;
  char *text = json_dumps(params, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
  if (!text)
    return OFF_ENOMEM;
  size_t tlen = strlen(text), nlen = strlen(task);
  uint32_t flags = 0;
  if (tlen > inline_max) {
    int mfd = memfd_create("offload-params", MFD_CLOEXEC);
    if (mfd < 0 || write_all(mfd, text, tlen) != 0) {
      if (mfd >= 0)
        close(mfd);
      free(text);
      return OFF_ESYS;
    }
    *fd = mfd;
    flags |= WIRE_PARAMS_IN_FD;
  }
  size_t n = JOB_HDR + nlen + (*fd >= 0 ? 0 : tlen);
  uint8_t *p = malloc(n);
  if (!p) {
    free(text);
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
    return OFF_ENOMEM;
  }
  uint32_t nl = (uint32_t)nlen;
  memcpy(p, &flags, 4);
  memcpy(p + 4, &nl, 4);
  memcpy(p + JOB_HDR, task, nlen);
  if (*fd < 0)
    memcpy(p + JOB_HDR + nlen, text, tlen);
  free(text);
  *payload = p;
  *len = n;
  return 0;
}

/* The params text of a job whose params sit in a memfd. */
static json_t *params_from_fd(int fd) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > (off_t)1 << 30)
    return NULL;
  size_t n = (size_t)st.st_size;
  void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
  if (m == MAP_FAILED)
    return NULL;
  json_t *v = json_loadb(m, n, JSON_DECODE_ANY, NULL);
  munmap(m, n);
  return v;
}

int wire_decode_job(const void *payload, size_t len, int fd, char *task, size_t task_cap, json_t **params) {
  const uint8_t *p = payload;
  *params = NULL;
  if (len < JOB_HDR)
    return OFF_EINVAL;
  uint32_t flags, nl;
  memcpy(&flags, p, 4);
  memcpy(&nl, p + 4, 4);
  if (nl == 0 || nl >= task_cap || nl > len - JOB_HDR)
    return OFF_EINVAL;
  memcpy(task, p + JOB_HDR, nl);
  task[nl] = '\0';
  if (flags & WIRE_PARAMS_IN_FD)
    *params = len == JOB_HDR + nl ? params_from_fd(fd) : NULL;
  else
    *params = json_loadb((const char *)p + JOB_HDR + nl, len - JOB_HDR - nl, JSON_DECODE_ANY, NULL);
  return *params ? 0 : OFF_EINVAL;
}

int wire_encode_result(const task_result_t *r, void **payload, size_t *len) {
  size_t cl = strnlen(r->err_code, sizeof r->err_code);
  size_t ml = r->err_message ? strlen(r->err_message) : 0;
  if (ml > WIRE_MAX_MESSAGE)
    ml = WIRE_MAX_MESSAGE;
  size_t n = RES_HDR + cl + ml;
  uint8_t *p = calloc(1, n);
  if (!p)
    return OFF_ENOMEM;
  p[0] = (uint8_t)r->kind;
  p[1] = r->failed ? 1 : 0;
  uint16_t c16 = (uint16_t)cl;
  uint32_t m32 = (uint32_t)ml;
  memcpy(p + 2, &c16, 2);
  memcpy(p + 4, &m32, 4);
  memcpy(p + 8, &r->integer, 8);
  memcpy(p + 16, &r->real, 8);
  memcpy(p + RES_HDR, r->err_code, cl);
  if (ml)
    memcpy(p + RES_HDR + cl, r->err_message, ml);
  *payload = p;
  *len = n;
  return 0;
}

int wire_decode_result(const void *payload, size_t len, task_result_t *r) {
  const uint8_t *p = payload;
  memset(r, 0, sizeof *r);
  if (len < RES_HDR)
    return OFF_EINVAL;
  uint16_t cl;
  uint32_t ml;
  memcpy(&cl, p + 2, 2);
  memcpy(&ml, p + 4, 4);
  if (p[0] > TASK_RES_REAL || p[1] > 1 || cl >= sizeof r->err_code || ml > WIRE_MAX_MESSAGE ||
      len != RES_HDR + (size_t)cl + ml)
    return OFF_EINVAL;
  r->kind = (task_result_kind_t)p[0];
  r->failed = p[1] == 1;
  memcpy(&r->integer, p + 8, 8);
  memcpy(&r->real, p + 16, 8);
  memcpy(r->err_code, p + RES_HDR, cl);
  r->err_code[cl] = '\0';
  if (r->failed && ml) {
    r->err_message = malloc(ml + 1);
    if (!r->err_message)
      return OFF_ENOMEM;
    memcpy(r->err_message, p + RES_HDR + cl, ml);
    r->err_message[ml] = '\0';
  }
  return 0;
}
