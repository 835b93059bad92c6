/* pool/wire: job and result payloads. See pool/wire.h. */
#include "pool/wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

#define JOB_HDR 21
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

int wire_encode_job(const char *task, const wire_where_t *where, const json_t *params, size_t inline_max,
                    void **payload, size_t *len, int *fd) {
  *payload = NULL;
  *fd = -1;
  const char *id = where ? where->job_id : "", *root = where ? where->files_root : "";
  const char *type = where ? where->input_type : "";
  size_t il = strnlen(id, sizeof where->job_id), rl = strnlen(root, sizeof where->files_root);
  size_t yl = strnlen(type, sizeof where->input_type);
  int64_t inlen = where ? where->input_len : 0;
  char *text = json_dumps(params, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
  if (!text)
    return OFF_ENOMEM;
  size_t tlen = strlen(text), nlen = strlen(task);
  uint32_t flags = 0;
  if (where && where->has_input) {
    if (tlen > inline_max) {
      free(text);
      return OFF_EINVAL; /* one descriptor per frame: the input's */
    }
    flags |= WIRE_INPUT_IN_FD;
  } else if (tlen > inline_max) {
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
  bool inline_params = !(flags & WIRE_PARAMS_IN_FD);
  size_t n = JOB_HDR + nlen + il + rl + yl + (inline_params ? tlen : 0);
  uint8_t *p = malloc(n);
  if (!p) {
    free(text);
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
    return OFF_ENOMEM;
  }
  uint32_t nl = (uint32_t)nlen;
  uint16_t i16 = (uint16_t)il, r16 = (uint16_t)rl;
  memcpy(p, &flags, 4);
  memcpy(p + 4, &nl, 4);
  memcpy(p + 8, &i16, 2);
  memcpy(p + 10, &r16, 2);
  memcpy(p + 12, &inlen, 8);
  p[20] = (uint8_t)yl;
  memcpy(p + JOB_HDR, task, nlen);
  memcpy(p + JOB_HDR + nlen, id, il);
  memcpy(p + JOB_HDR + nlen + il, root, rl);
  memcpy(p + JOB_HDR + nlen + il + rl, type, yl);
  if (inline_params)
    memcpy(p + JOB_HDR + nlen + il + rl + yl, text, tlen);
  free(text);
  if (flags & WIRE_INPUT_IN_FD)
    *fd = where->input_fd;
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

int wire_decode_job(const void *payload, size_t len, int fd, char *task, size_t task_cap, wire_where_t *where,
                    json_t **params) {
  const uint8_t *p = payload;
  *params = NULL;
  if (len < JOB_HDR)
    return OFF_EINVAL;
  uint32_t flags, nl;
  uint16_t il, rl;
  memcpy(&flags, p, 4);
  memcpy(&nl, p + 4, 4);
  memcpy(&il, p + 8, 2);
  memcpy(&rl, p + 10, 2);
  uint8_t yl = p[20];
  if (nl == 0 || nl >= task_cap || il >= sizeof where->job_id || rl >= sizeof where->files_root ||
      yl >= sizeof where->input_type || (size_t)nl + il + rl + yl > len - JOB_HDR)
    return OFF_EINVAL;
  memcpy(task, p + JOB_HDR, nl);
  task[nl] = '\0';
  if (where) {
    memcpy(where->job_id, p + JOB_HDR + nl, il);
    where->job_id[il] = '\0';
    memcpy(where->files_root, p + JOB_HDR + nl + il, rl);
    where->files_root[rl] = '\0';
    memcpy(&where->input_len, p + 12, 8);
    memcpy(where->input_type, p + JOB_HDR + nl + il + rl, yl);
    where->input_type[yl] = '\0';
    where->has_input = (flags & WIRE_INPUT_IN_FD) != 0;
    where->input_fd = -1;
  }
  size_t off = JOB_HDR + nl + il + rl + yl;
  if ((flags & WIRE_PARAMS_IN_FD) && (flags & WIRE_INPUT_IN_FD))
    return OFF_EINVAL; /* one descriptor per frame */
  if (flags & WIRE_PARAMS_IN_FD)
    *params = len == off ? params_from_fd(fd) : NULL;
  else
    *params = json_loadb((const char *)p + off, len - off, JSON_DECODE_ANY, NULL);
  return *params ? 0 : OFF_EINVAL;
}

int wire_encode_result(const task_result_t *r, void **payload, size_t *len) {
  size_t cl = strnlen(r->err_code, sizeof r->err_code);
  /* The text slot holds the error message, or a JSON result's text. */
  bool json = r->kind == TASK_RES_JSON && !r->failed;
  const char *text = json ? r->json : r->err_message;
  size_t ml = text ? strlen(text) : 0;
  if (json && ml > TASK_RESULT_JSON_MAX)
    return OFF_EINVAL; /* offload_task_result_json refuses those */
  if (!json && ml > WIRE_MAX_MESSAGE)
    ml = WIRE_MAX_MESSAGE;
  size_t files = 2; /* u16 count, then {u8 name length, u8 type length, i64 bytes, name, type} each */
  for (size_t i = 0; i < r->nfiles; i++)
    files += 10 + strlen(r->files[i].name) + strlen(r->files[i].content_type);
  size_t n = RES_HDR + cl + ml + files;
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
    memcpy(p + RES_HDR + cl, text, ml);
  uint8_t *q = p + RES_HDR + cl + ml;
  uint16_t nf = (uint16_t)r->nfiles;
  memcpy(q, &nf, 2);
  q += 2;
  for (size_t i = 0; i < r->nfiles; i++) {
    const task_file_t *f = &r->files[i];
    size_t a = strlen(f->name), b = strlen(f->content_type); /* < 256: their arrays bound them */
    q[0] = (uint8_t)a;
    q[1] = (uint8_t)b;
    memcpy(q + 2, &f->bytes, 8);
    memcpy(q + 10, f->name, a);
    memcpy(q + 10 + a, f->content_type, b);
    q += 10 + a + b;
  }
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
  bool json = p[0] == TASK_RES_JSON && p[1] == 0;
  if (p[0] > TASK_RES_JSON || p[1] > 1 || cl >= sizeof r->err_code ||
      ml > (json ? TASK_RESULT_JSON_MAX : WIRE_MAX_MESSAGE) || len < RES_HDR + (size_t)cl + ml + 2)
    return OFF_EINVAL;
  /* The files list, to the last byte. */
  const uint8_t *q = p + RES_HDR + cl + ml, *end = p + len;
  uint16_t nf;
  memcpy(&nf, q, 2);
  q += 2;
  if (nf > OFFLOAD_MAX_FILES)
    return OFF_EINVAL;
  for (uint16_t i = 0; i < nf; i++) {
    if (end - q < 10 || q[0] >= sizeof r->files[0].name || q[1] >= sizeof r->files[0].content_type ||
        end - q < 10 + q[0] + q[1])
      return OFF_EINVAL;
    task_file_t *f = &r->files[i];
    memcpy(&f->bytes, q + 2, 8);
    memcpy(f->name, q + 10, q[0]);
    f->name[q[0]] = '\0';
    memcpy(f->content_type, q + 10 + q[0], q[1]);
    f->content_type[q[1]] = '\0';
    q += 10 + q[0] + q[1];
  }
  if (q != end)
    return OFF_EINVAL;
  r->nfiles = nf;
  r->kind = (task_result_kind_t)p[0];
  r->failed = p[1] == 1;
  memcpy(&r->integer, p + 8, 8);
  memcpy(&r->real, p + 16, 8);
  memcpy(r->err_code, p + RES_HDR, cl);
  r->err_code[cl] = '\0';
  if ((r->failed || json) && ml) {
    char *t = malloc(ml + 1);
    if (!t)
      return OFF_ENOMEM;
    memcpy(t, p + RES_HDR + cl, ml);
    t[ml] = '\0';
    *(json ? &r->json : &r->err_message) = t;
  }
  if (json && !r->json)
    return OFF_EINVAL; /* a JSON result has text */
  return 0;
}
