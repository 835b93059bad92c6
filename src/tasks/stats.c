/* stats: the seeds' data analysis. The values come as JSON (`values`, via
 * POST /jobs), as one column of a CSV body (POST /jobs/stats?column=...,
 * parsed by libcsv: quotes, embedded commas and line breaks), or as raw
 * little-endian float64 (an application/octet-stream body, analysed where
 * it lies: no parse, no copy). The result: count, sum, mean, min, max,
 * variance (population), sampleVariance, stddev (population), p50, p90,
 * p99; the numerics and the fan-out over every idle worker are in
 * stats_calc.c. A field that is empty, not a number, NaN or infinite
 * fails the job `invalid_data`, naming its row (its index, for raw input).
 *
 * Progress: parsing a CSV is the first half, the statistics the rest;
 * cancel and the timeout are checked every 64 Ki values. */
#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tasks/stats_calc.h"
#include "tasks/tasks.h"

#define CHECK_EVERY (64 * 1024)

typedef struct acc {
  double *v;
  size_t n, cap;
} acc_t;

static bool push(acc_t *a, double x) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 4096;
    double *m = realloc(a->v, cap * sizeof *m);
    if (!m)
      return false;
    a->v = m;
    a->cap = cap;
  }
  a->v[a->n++] = x;
  return true;
}

/* A whole field as a finite number. */
static bool field_number(const char *s, double *out) {
  while (*s == ' ' || *s == '\t')
    s++;
  if (!*s)
    return false;
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  while (*end == ' ' || *end == '\t' || *end == '\r')
    end++;
  if (end == s || *end || !isfinite(x))
    return false;
  *out = x;
  return true;
}

/* ---- CSV ---- */

typedef struct csv_state {
  offload_task_t *t;
  acc_t *acc;
  const char *column; /* a header name, or a 0-based index */
  bool header;
  long want;  /* the column's index; -1 until the header names it */
  long col;   /* the current field's index */
  size_t row; /* 1-based rows of data (the header is row 0) */
  bool got;   /* the current row had the column */
  bool failed, stop;
} csv_state_t;

static void fail_row(csv_state_t *s, const char *why, const char *field) {
  if (s->failed)
    return;
  s->failed = s->stop = true;
  offload_task_fail(s->t, "invalid_data", "Row %zu%s: %s%s%.64s%s.", s->row, s->header ? " (after the header)" : "",
                    why, field ? " \"" : "", field ? field : "", field ? "\"" : "");
}

static void on_field(void *data, size_t len, void *ud) {
  csv_state_t *s = ud;
  (void)len;
  const char *f = data ? data : "";
  if (s->stop) {
    s->col++;
    return;
  }
  if (s->header && s->row == 0) {
    if (s->want < 0 && strcmp(f, s->column) == 0)
      s->want = s->col;
  } else if (s->col == s->want) {
    double x;
    s->got = true;
    if (!field_number(f, &x))
      fail_row(s, f[0] ? "the field is not a finite number: " : "the field is empty", f[0] ? f : NULL);
    else if (!push(s->acc, x)) {
      s->failed = s->stop = true;
      offload_task_fail(s->t, "out_of_memory", "No memory for %zu values.", s->acc->n);
    }
  }
  s->col++;
}

static void on_row(int c, void *ud) {
  csv_state_t *s = ud;
  (void)c;
  if (!s->stop && s->header && s->row == 0 && s->want < 0) {
    char *end;
    long idx = strtol(s->column, &end, 10);
    if (*s->column && !*end && idx >= 0)
      s->want = idx; /* an index, with a header row */
    else {
      s->failed = s->stop = true;
      offload_task_fail(s->t, "invalid_param", "The CSV header has no column named \"%.64s\".", s->column);
    }
  } else if (!s->stop && s->row > 0 && !s->got) {
    fail_row(s, "the row has no such column", NULL);
  }
  s->row++;
  s->col = 0;
  s->got = false;
  if (!s->stop && s->acc->n % CHECK_EVERY == 0 && offload_task_canceled(s->t))
    s->stop = true;
}

/* The CSV input's column into acc. False when the job failed or stopped. */
static bool read_csv(offload_task_t *t, const char *data, size_t len, acc_t *acc) {
  csv_state_t s = {.t = t, .acc = acc, .want = -1};
  s.header = offload_task_param_bool(t, "header", true);
  s.column = offload_task_param_str(t, "column", "0");
  s.row = s.header ? 0 : 1;
  if (!s.header) {
    char *end;
    s.want = strtol(s.column, &end, 10);
    if (!*s.column || *end || s.want < 0) {
      offload_task_fail(t, "invalid_param", "Without a header row, column must be a 0-based index; got \"%.64s\".",
                        s.column);
      return false;
    }
  }
  struct csv_parser p;
  if (csv_init(&p, CSV_STRICT | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0) {
    offload_task_fail(t, "out_of_memory", "No memory for the CSV parser.");
    return false;
  }
  size_t off = 0, step = 1 << 20;
  while (off < len && !s.stop) {
    size_t n = len - off < step ? len - off : step;
    if (csv_parse(&p, data + off, n, on_field, on_row, &s) != n) {
      if (!s.failed)
        offload_task_fail(t, "invalid_data", "Row %zu: the CSV is malformed (%s).", s.row, csv_strerror(csv_error(&p)));
      s.failed = s.stop = true;
    }
    off += n;
    offload_task_progress(t, 0.5 * (double)off / (double)len);
  }
  if (!s.stop)
    csv_fini(&p, on_field, on_row, &s);
  csv_free(&p);
  return !s.stop && !offload_task_canceled(t);
}

/* ---- raw float64 ---- */

/* An application/octet-stream body: little-endian IEEE-754 doubles, read
 * where they lie (the mapping is page-aligned). */
static const double *raw_values(offload_task_t *t, const char *in, size_t len, size_t *n) {
  _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "raw float64 input is read in place as little-endian");
  if (len % sizeof(double) != 0) {
    offload_task_fail(
        t, "invalid_data",
        "The body is %zu bytes: raw input is 8-byte little-endian float64 values, so its length must be a "
        "multiple of 8.",
        len);
    return NULL;
  }
  if ((uintptr_t)in % _Alignof(double) != 0) {
    offload_task_fail(t, "internal", "The input is not aligned for float64 values.");
    return NULL;
  }
  *n = len / sizeof(double);
  return (const double *)(const void *)in;
}

static bool is_raw(const char *type) { return type && strcasecmp(type, "application/octet-stream") == 0; }

static void stats_run(offload_task_t *t) {
  acc_t acc = {0};
  size_t in_len, n = 0;
  const char *type = NULL;
  const char *in = offload_task_input(t, &in_len, &type);
  const double *v = NULL;
  double listed[1], parsed = 0; /* the share of progress reading the input took */
  size_t nlisted = offload_task_param_reals(t, "values", listed, 0);
  if (in && nlisted) {
    offload_task_fail(t, "invalid_param", "Give the values either in params.values or as a body, not both.");
    return;
  }
  if (in && is_raw(type)) {
    if (!(v = raw_values(t, in, in_len, &n)))
      return;
  } else if (in) {
    if (!read_csv(t, in, in_len, &acc))
      goto out;
    v = acc.v, n = acc.n, parsed = 0.5;
  } else {
    acc.v = malloc((nlisted ? nlisted : 1) * sizeof *acc.v);
    if (!acc.v) {
      offload_task_fail(t, "out_of_memory", "No memory for %zu values.", nlisted);
      return;
    }
    acc.n = acc.cap = offload_task_param_reals(t, "values", acc.v, nlisted);
    v = acc.v, n = acc.n;
  }
  if (n == 0) {
    offload_task_fail(t, "invalid_data", "There are no values to analyse.");
    goto out;
  }
  stats_out_t o;
  if (stats_compute(t, v, n, is_raw(type), parsed, 1.0, &o) != 0)
    goto out;
  double var = o.m2 / (double)n;
  if (!isfinite(o.sum) || !isfinite(var)) {
    offload_task_fail(t, "invalid_data", "The values overflow a double (their sum or variance is not finite).");
    goto out;
  }
  char out[1024], svar[64];
  if (n > 1)
    snprintf(svar, sizeof svar, "%.17g", o.m2 / (double)(n - 1));
  else
    snprintf(svar, sizeof svar, "null");
  snprintf(out, sizeof out,
           "{\"count\":%zu,\"sum\":%.17g,\"mean\":%.17g,\"min\":%.17g,\"max\":%.17g,\"variance\":%.17g,"
           "\"sampleVariance\":%s,\"stddev\":%.17g,\"p50\":%.17g,\"p90\":%.17g,\"p99\":%.17g}",
           n, o.sum, o.mean, o.min, o.max, var, svar, sqrt(var), o.p[0], o.p[1], o.p[2]);
  offload_task_progress(t, 1.0);
  offload_task_result_json(t, out);
out:
  free(acc.v);
}

static const char *const input_types[] = {"text/csv", "text/plain", "application/octet-stream", NULL};

static const offload_param_spec_t stats_params[] = {
    {.name = "values",
     .type = OFFLOAD_PARAM_NUMBER_LIST,
     .max_items = 100000,
     .description = "the numbers (or send a CSV or raw float64 body to POST /jobs/stats)"},
    {.name = "column",
     .type = OFFLOAD_PARAM_STRING,
     .max_len = 256,
     .dflt = "\"0\"",
     .description = "CSV: the column, by header name or 0-based index"},
    {.name = "header",
     .type = OFFLOAD_PARAM_BOOLEAN,
     .dflt = "true",
     .description = "CSV: the first row names the columns"},
};

const offload_task_def_t task_stats = {
    .name = "stats",
    .description = "Count, sum, mean, min, max, variance, standard deviation and percentiles of numbers (JSON, CSV or "
                   "raw float64).",
    .run = stats_run,
    .params = stats_params,
    .nparams = sizeof stats_params / sizeof stats_params[0],
    .input = OFFLOAD_INPUT_OPTIONAL,
    .input_types = input_types,
};
