/* tasks/context: offload/task.h over borrowed control words, params and a
 * result slot. See tasks/context.h. */
#include "tasks/context.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/files.h"
#include "util/clock.h"

void task_run(offload_task_t *t, const offload_task_def_t *def) {
  if (offload_task_canceled(t))
    return;
  t->def = def;
  def->run(t);
  task_files_close(t->result);
}

/* ---- output files ---- */

void task_files_clear(const offload_task_t *t) {
  if (t->files_root && t->job_id)
    files_remove_outputs(t->files_root, t->job_id);
}

int task_input_map(offload_task_t *t, int fd, size_t len, const char *type) {
  t->input_type = type;
  t->input_len = len;
  if (len == 0) {
    t->input = ""; /* an empty input is an input */
    return 0;
  }
  void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    t->input = NULL;
    t->input_len = 0;
    return -1;
  }
  t->input = p;
  return 0;
}

void task_input_unmap(offload_task_t *t) {
  if (t->input && t->input_len)
    munmap((void *)t->input, t->input_len);
  t->input = NULL;
  t->input_len = 0;
}

static bool stop_when_canceled(void *t) { return offload_task_canceled(t); }

int offload_task_parallel(offload_task_t *t, size_t n, void (*fn)(void *ctx, size_t i), void *ctx) {
  size_t ran = 0;
  if (t->parallel) {
    ran = t->parallel(n, fn, ctx, stop_when_canceled, t);
  } else {
    for (size_t i = 0; i < n && !offload_task_canceled(t); i++, ran++)
      fn(ctx, i);
  }
  return ran == n ? 0 : -1;
}

const void *offload_task_input(const offload_task_t *t, size_t *len, const char **content_type) {
  if (len)
    *len = t->input_len;
  if (content_type)
    *content_type = t->input_type;
  return t->input;
}

void task_files_close(task_result_t *r) {
  for (size_t i = 0; i < r->nfiles; i++) {
    task_file_t *f = &r->files[i];
    if (f->fd <= 0)
      continue;
    struct stat st;
    f->bytes = fstat(f->fd - 1, &st) == 0 ? (int64_t)st.st_size : 0;
    close(f->fd - 1);
    f->fd = 0;
  }
}

/* What every output file needs: a good name and type, a job directory.
 * 0, or -1 with errno. */
static int file_ok(const offload_task_t *t, const char *name, const char *content_type) {
  if (!files_name_ok(name) || !content_type || strlen(content_type) >= sizeof t->result->files[0].content_type) {
    errno = EINVAL;
    return -1;
  }
  if (!t->files_root || !t->job_id) {
    errno = ENOTSUP;
    return -1;
  }
  return 0;
}

int offload_task_file_open(offload_task_t *t, const char *name, const char *content_type) {
  task_result_t *r = t->result;
  if (file_ok(t, name, content_type) != 0)
    return -1;
  task_file_t *f = NULL;
  for (size_t i = 0; i < r->nfiles && !f; i++)
    if (strcmp(r->files[i].name, name) == 0)
      f = &r->files[i];
  if (!f && r->nfiles == OFFLOAD_MAX_FILES) {
    errno = EMFILE;
    return -1;
  }
  char path[4096];
  if (files_path(t->files_root, t->job_id, NULL, path, sizeof path) != 0) {
    errno = ENAMETOOLONG;
    return -1;
  }
  mkdir(t->files_root, 0755); /* EEXIST is fine; a real failure shows at open */
  mkdir(path, 0755);
  files_path(t->files_root, t->job_id, name, path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return -1;
  if (f) { /* opened again: the new content replaces the old */
    if (f->fd > 0)
      close(f->fd - 1);
  } else {
    f = &r->files[r->nfiles++];
    snprintf(f->name, sizeof f->name, "%s", name);
  }
  snprintf(f->content_type, sizeof f->content_type, "%s", content_type);
  f->fd = fd + 1;
  f->bytes = 0;
  return fd;
}

int task_file_adopt(offload_task_t *t, const char *name, const char *content_type) {
  task_result_t *r = t->result;
  if (file_ok(t, name, content_type) != 0)
    return -1;
  if (r->nfiles == OFFLOAD_MAX_FILES) {
    errno = EMFILE;
    return -1;
  }
  char path[4096];
  if (files_path(t->files_root, t->job_id, name, path, sizeof path) != 0) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    close(fd);
    errno = EINVAL;
    return -1;
  }
  if (fd < 0)
    return -1;
  task_file_t *f = &r->files[r->nfiles++];
  snprintf(f->name, sizeof f->name, "%s", name);
  snprintf(f->content_type, sizeof f->content_type, "%s", content_type);
  f->fd = fd + 1;
  f->bytes = 0;
  return 0;
}

int offload_task_file_write(offload_task_t *t, const char *name, const char *content_type, const void *data,
                            size_t len) {
  int fd = offload_task_file_open(t, name, content_type);
  if (fd < 0)
    return -1;
  const char *p = data;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

json_t *task_result_json(const task_result_t *r) {
  switch (r->kind) {
  case TASK_RES_INT: return json_integer(r->integer);
  case TASK_RES_REAL: return json_real(r->real);
  case TASK_RES_JSON: return r->json ? json_loads(r->json, JSON_DECODE_ANY, NULL) : json_null();
  case TASK_RES_NULL: break;
  }
  return json_null();
}

void task_result_fini(task_result_t *r) {
  free(r->err_message);
  free(r->json);
  memset(r, 0, sizeof *r);
}

/* ---- offload/task.h ---- */

int64_t offload_task_param_int(const offload_task_t *t, const char *name, int64_t dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

double offload_task_param_real(const offload_task_t *t, const char *name, double dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

const char *offload_task_param_strn(const offload_task_t *t, const char *name, size_t *len) {
  json_t *v = json_object_get(t->params, name);
  *len = json_is_string(v) ? json_string_length(v) : 0;
  return json_is_string(v) ? json_string_value(v) : NULL;
}

size_t offload_task_param_ints(const offload_task_t *t, const char *name, int64_t *out, size_t max) {
  json_t *v = json_object_get(t->params, name);
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = (int64_t)json_integer_value(json_array_get(v, i));
  return n;
}

size_t offload_task_param_reals(const offload_task_t *t, const char *name, double *out, size_t max) {
  json_t *v = json_object_get(t->params, name);
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = json_number_value(json_array_get(v, i));
  return n;
}

bool offload_task_param_bool(const offload_task_t *t, const char *name, bool dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

const char *offload_task_param_str(const offload_task_t *t, const char *name, const char *dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

void offload_task_progress(offload_task_t *t, double fraction) {
  if (!(fraction >= 0.0)) /* NaN too */
    return;
  if (fraction > 1.0)
    fraction = 1.0;
  /* A maximum: the chunks of offload_task_parallel report at once. */
  double seen = atomic_load_explicit(t->progress, memory_order_relaxed);
  while (fraction > seen && !atomic_compare_exchange_weak_explicit(t->progress, &seen, fraction, memory_order_relaxed,
                                                                   memory_order_relaxed)) {
  }
}

bool offload_task_canceled(offload_task_t *t) {
  if (atomic_load_explicit(t->cancel, memory_order_relaxed))
    return true;
  if (atomic_load_explicit(t->timed_out, memory_order_relaxed))
    return true;
  if (t->deadline_ns && clock_mono_ns() >= t->deadline_ns) {
    atomic_store(t->timed_out, true);
    return true;
  }
  return false;
}

void offload_task_result_int(offload_task_t *t, int64_t v) {
  t->result->kind = TASK_RES_INT;
  t->result->integer = v;
}

void offload_task_result_real(offload_task_t *t, double v) {
  if (!isfinite(v)) { /* JSON has no NaN or infinity */
    offload_task_fail(t, "non_finite_result", "The task produced a result that is not a finite number.");
    return;
  }
  t->result->kind = TASK_RES_REAL;
  t->result->real = v;
}

void offload_task_result_null(offload_task_t *t) { t->result->kind = TASK_RES_NULL; }

void offload_task_result_json(offload_task_t *t, const char *text) {
  size_t n = strlen(text);
  if (n > TASK_RESULT_JSON_MAX) {
    offload_task_fail(t, "result_too_large", "The task's result is %zu bytes of JSON; the most is %d.", n,
                      TASK_RESULT_JSON_MAX);
    return;
  }
  json_error_t e;
  json_t *v = json_loadb(text, n, JSON_DECODE_ANY, &e);
  if (!v) {
    offload_task_fail(t, "invalid_result", "The task's result is not valid JSON: %s.", e.text);
    return;
  }
  json_decref(v);
  char *copy = strdup(text);
  if (!copy) {
    offload_task_fail(t, "out_of_memory", "No memory for the task's result.");
    return;
  }
  free(t->result->json);
  t->result->json = copy;
  t->result->kind = TASK_RES_JSON;
}

void offload_task_fail(offload_task_t *t, const char *code, const char *fmt, ...) {
  task_result_t *r = t->result;
  r->failed = true;
  snprintf(r->err_code, sizeof r->err_code, "%s", code);
  free(r->err_message);
  r->err_message = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&r->err_message, fmt, ap) < 0)
    r->err_message = NULL;
  va_end(ap);
}
