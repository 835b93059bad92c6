/* stats: the seeds' data analysis. The values come as JSON (`values`, via
 * POST /jobs) or as one column of a CSV body (POST /jobs/stats?column=...,
 * parsed by libcsv: quotes, embedded commas and line breaks). The result:
 * count, sum, mean, min, max, variance (population), sampleVariance,
 * stddev (population), p50, p90, p99.
 *
 * Numerics: sums are compensated (Neumaier); the variance is the corrected
 * two-pass (deviations from the mean, corrected by their own sum), whose
 * per-chunk (n, mean, m2) merge exactly (Chan et al.) when a job is cut
 * into chunks; the
 * percentiles interpolate linearly between the closest ranks (NumPy's
 * default, "linear"), found by selection (no full sort). The sums run as
 * chunks on every idle worker at once (offload_task_parallel), so one big
 * job uses all the cores. A field that is empty, not a
 * number, NaN or infinite fails the job `invalid_data`, naming its row.
 *
 * Progress: parsing is the first half, the statistics the rest; cancel and
 * the timeout are checked every 64 Ki values and between chunks. */
#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  long want;          /* the column's index; -1 until the header names it */
  long col;           /* the current field's index */
  size_t row;         /* 1-based rows of data (the header is row 0) */
  bool got;           /* the current row had the column */
  bool failed, stop;
} csv_state_t;

static void fail_row(csv_state_t *s, const char *why, const char *field) {
  if (s->failed)
    return;
  s->failed = s->stop = true;
  offload_task_fail(s->t, "invalid_data", "Row %zu%s: %s%s%.64s%s.", s->row,
                    s->header ? " (after the header)" : "", why, field ? " \"" : "", field ? field : "",
                    field ? "\"" : "");
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

/* ---- the statistics ---- */

/* A compensated running sum (Neumaier's variant of Kahan's). */
typedef struct neumaier {
  double s, c;
} neumaier_t;

static void neumaier_add(neumaier_t *n, double x) {
  double t = n->s + x;
  n->c += fabs(n->s) >= fabs(x) ? (n->s - t) + x : (x - t) + n->s;
  n->s = t;
}

static double neumaier_value(const neumaier_t *n) { return n->s + n->c; }

/* The k-th smallest of a[0..n) into place (quickselect, median of three):
 * afterwards a[k] is it, everything before is <= it, everything after >=. */
static void select_kth(double *a, size_t n, size_t k) {
  size_t lo = 0, hi = n - 1;
  while (hi > lo) {
    size_t mid = lo + (hi - lo) / 2;
    /* Median of three as the pivot, moved to hi. */
    if (a[mid] < a[lo]) { double t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { double t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[mid] < a[hi]) { double t = a[mid]; a[mid] = a[hi]; a[hi] = t; }
    double pivot = a[hi];
    size_t i = lo;
    for (size_t j = lo; j < hi; j++)
      if (a[j] < pivot) {
        double t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
      }
    double t = a[i]; a[i] = a[hi]; a[hi] = t;
    if (i == k)
      return;
    if (k < i)
      hi = i - 1;
    else
      lo = i + 1;
  }
}

/* NumPy's "linear": h = (n - 1) q, between the ranks floor(h) and ceil(h). */
static double percentile(double *a, size_t n, double q) {
  double h = (double)(n - 1) * q;
  size_t lo = (size_t)floor(h);
  select_kth(a, n, lo);
  double x = a[lo], y = x;
  if (lo + 1 < n) { /* the next rank: the smallest of what lies above */
    y = a[lo + 1];
    for (size_t i = lo + 2; i < n; i++)
      y = a[i] < y ? a[i] : y;
  }
  return x + (h - (double)lo) * (y - x);
}

/* ---- fan-out: chunks of the values on every idle worker ---- */

/* Values per chunk at least (below it threads cost more than they save);
 * tests change it to show the result does not depend on the cut. */
static size_t chunk_min = 256 * 1024;
void task_stats_set_chunk_min(size_t n) { chunk_min = n ? n : 256 * 1024; }
#define CHUNKS_MAX 64

typedef struct chunk {
  neumaier_t sum, dev, sq;
  double lo, hi;
} chunk_t;

typedef struct fan {
  const double *v;
  size_t n, nchunks;
  double mean; /* pass 2 */
  chunk_t c[CHUNKS_MAX];
  _Atomic size_t done;
} fan_t;

static void chunk_range(const fan_t *f, size_t i, size_t *b, size_t *e) {
  *b = f->n * i / f->nchunks;
  *e = f->n * (i + 1) / f->nchunks;
}

static void pass_sum(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  chunk_t *c = &f->c[i];
  c->lo = c->hi = f->v[b];
  for (size_t k = b; k < e; k++) {
    double x = f->v[k];
    neumaier_add(&c->sum, x);
    c->lo = x < c->lo ? x : c->lo;
    c->hi = x > c->hi ? x : c->hi;
  }
  atomic_fetch_add(&f->done, 1);
}

static void pass_dev(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  chunk_t *c = &f->c[i];
  for (size_t k = b; k < e; k++) {
    double d = f->v[k] - f->mean;
    neumaier_add(&c->dev, d);
    neumaier_add(&c->sq, d * d);
  }
  atomic_fetch_add(&f->done, 1);
}

/* The chunks' compensated sums, combined (their running sums and their
 * compensations both enter a compensated sum). */
static double combine(const fan_t *f, size_t off) {
  neumaier_t t = {0};
  for (size_t i = 0; i < f->nchunks; i++) {
    const neumaier_t *x = (const neumaier_t *)((const char *)&f->c[i] + off);
    neumaier_add(&t, x->s);
    neumaier_add(&t, x->c);
  }
  return neumaier_value(&t);
}

static void stats_run(offload_task_t *t) {
  acc_t acc = {0};
  size_t in_len;
  const char *in = offload_task_input(t, &in_len, NULL);
  double listed[1];
  size_t nlisted = offload_task_param_reals(t, "values", listed, 0);
  if (in && nlisted) {
    offload_task_fail(t, "invalid_param", "Give the values either in params.values or as a CSV body, not both.");
    return;
  }
  if (in) {
    if (!read_csv(t, in, in_len, &acc))
      goto out;
  } else {
    acc.v = malloc((nlisted ? nlisted : 1) * sizeof *acc.v);
    if (!acc.v) {
      offload_task_fail(t, "out_of_memory", "No memory for %zu values.", nlisted);
      return;
    }
    acc.n = acc.cap = offload_task_param_reals(t, "values", acc.v, nlisted);
  }
  if (acc.n == 0) {
    offload_task_fail(t, "invalid_data", "There are no values to analyse.");
    goto out;
  }
  /* Two passes over chunks that run on every idle worker at once: the
   * compensated sum gives the mean; then the squared deviations from it,
   * corrected by the deviations' own sum (Bjorck's corrected two-pass). */
  static fan_t zero;
  fan_t *f = malloc(sizeof *f);
  if (!f) {
    offload_task_fail(t, "out_of_memory", "No memory for the statistics.");
    goto out;
  }
  *f = zero;
  f->v = acc.v;
  f->n = acc.n;
  f->nchunks = acc.n / chunk_min < 1 ? 1 : acc.n / chunk_min > CHUNKS_MAX ? CHUNKS_MAX : acc.n / chunk_min;
  if (offload_task_parallel(t, f->nchunks, pass_sum, f) != 0) {
    free(f);
    goto out;
  }
  offload_task_progress(t, 0.6);
  double total = combine(f, offsetof(chunk_t, sum)), lo = f->c[0].lo, hi = f->c[0].hi;
  for (size_t i = 1; i < f->nchunks; i++) {
    lo = f->c[i].lo < lo ? f->c[i].lo : lo;
    hi = f->c[i].hi > hi ? f->c[i].hi : hi;
  }
  f->mean = total / (double)acc.n;
  if (offload_task_parallel(t, f->nchunks, pass_dev, f) != 0) {
    free(f);
    goto out;
  }
  offload_task_progress(t, 0.7);
  double dsum = combine(f, offsetof(chunk_t, dev));
  double m2 = combine(f, offsetof(chunk_t, sq)) - dsum * dsum / (double)acc.n;
  double mean = f->mean;
  free(f);
  if (m2 < 0)
    m2 = 0;
  double sumv = total;
  double var = m2 / (double)acc.n;
  if (!isfinite(sumv) || !isfinite(var)) {
    offload_task_fail(t, "invalid_data", "The values overflow a double (their sum or variance is not finite).");
    goto out;
  }
  /* The percentiles: selection, O(n) each, no full sort. */
  double p50 = percentile(acc.v, acc.n, 0.5);
  double p90 = percentile(acc.v, acc.n, 0.9);
  double p99 = percentile(acc.v, acc.n, 0.99);
  if (offload_task_canceled(t))
    goto out;
  char out[1024], svar[64];
  if (acc.n > 1)
    snprintf(svar, sizeof svar, "%.17g", m2 / (double)(acc.n - 1));
  else
    snprintf(svar, sizeof svar, "null");
  snprintf(out, sizeof out,
           "{\"count\":%zu,\"sum\":%.17g,\"mean\":%.17g,\"min\":%.17g,\"max\":%.17g,\"variance\":%.17g,"
           "\"sampleVariance\":%s,\"stddev\":%.17g,\"p50\":%.17g,\"p90\":%.17g,\"p99\":%.17g}",
           acc.n, sumv, mean, lo, hi, var, svar, sqrt(var), p50, p90, p99);
  offload_task_progress(t, 1.0);
  offload_task_result_json(t, out);
out:
  free(acc.v);
}

static const char *const csv_types[] = {"text/csv", "text/plain", NULL};

static const offload_param_spec_t stats_params[] = {
    {.name = "values", .type = OFFLOAD_PARAM_NUMBER_LIST, .max_items = 100000,
     .description = "the numbers (or send a CSV body to POST /jobs/stats)"},
    {.name = "column", .type = OFFLOAD_PARAM_STRING, .max_len = 256, .dflt = "\"0\"",
     .description = "CSV: the column, by header name or 0-based index"},
    {.name = "header", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "true", .description = "CSV: the first row names the columns"},
};

const offload_task_def_t task_stats = {
    .name = "stats",
    .description = "Count, sum, mean, min, max, variance, standard deviation and percentiles of numbers (JSON or CSV).",
    .run = stats_run,
    .params = stats_params,
    .nparams = sizeof stats_params / sizeof stats_params[0],
    .input = OFFLOAD_INPUT_OPTIONAL,
    .input_types = csv_types,
};
