/* tasks/stats_calc: see stats_calc.h.
 *
 * Four passes over chunks, each on every idle worker at once:
 *  1. compensated sum (Neumaier), min, max (and, for raw uploads, the first
 *     value that is not finite): the mean;
 *  2. the deviations from that mean and their squares, both compensated:
 *     Bjorck's corrected two-pass variance, m2 = sum(d^2) - sum(d)^2 / n;
 *  3. a histogram per chunk over BUCKETS equal slices of [min, max];
 *  4. every value of the few buckets holding a wanted rank, gathered into
 *     one small array per bucket, where selection (quickselect) finds it.
 * The percentiles are exact order statistics (the bucket map is monotone,
 * so a rank's value lies in its bucket) and the chunk sums combine in a
 * compensated sum: the result does not depend on the chunking. Nothing
 * writes the input, so an upload is analysed where it lies.
 *
 * Worst case: values bunched in one bucket (a far outlier stretches the
 * range) make that bucket's array as large as the input and its selection
 * one core's work; still exact. */
#include "tasks/stats_calc.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNKS_MAX 64
#define BUCKETS (1u << 14)
#define NRANKS (2 * STATS_NQ)
#define CHECK_EVERY (64 * 1024)

static const double quantiles[STATS_NQ] = {0.5, 0.9, 0.99};

/* Values per chunk at least (below it threads cost more than they save). */
static size_t chunk_min = 256 * 1024;
void stats_set_chunk_min(size_t n) { chunk_min = n ? n : 256 * 1024; }

/* ---- compensated sums ---- */

typedef struct neumaier {
  double s, c;
} neumaier_t;

static void neumaier_add(neumaier_t *n, double x) {
  double t = n->s + x;
  n->c += fabs(n->s) >= fabs(x) ? (n->s - t) + x : (x - t) + n->s;
  n->s = t;
}

static double neumaier_value(const neumaier_t *n) { return n->s + n->c; }

/* ---- the fan ---- */

typedef struct chunk {
  neumaier_t sum, dev, sq;
  double lo, hi;
  size_t bad; /* the first value that is not finite; SIZE_MAX = none */
} chunk_t;

typedef struct fan {
  offload_task_t *t;
  const double *v;
  size_t n, nchunks;
  bool check_finite;
  double p0, span;       /* this pass's progress: p0 .. p0 + span */
  _Atomic size_t done;   /* chunks of this pass finished */
  double mean;           /* pass 2 */
  double half_lo, scale; /* passes 3 and 4: bucket(x) */
  uint32_t *hist;        /* pass 3: nchunks x BUCKETS */
  size_t *total;         /* BUCKETS: the chunks' counts summed */
  uint8_t *want;         /* pass 4: BUCKETS entries, 1 + the gathered array's index, or 0 */
  double *cand[NRANKS];  /* pass 4: the gathered arrays */
  size_t *at;            /* pass 4: nchunks x NRANKS write offsets */
  chunk_t c[CHUNKS_MAX];
} fan_t;

static void chunk_range(const fan_t *f, size_t i, size_t *b, size_t *e) {
  *b = f->n * i / f->nchunks;
  *e = f->n * (i + 1) / f->nchunks;
}

static void chunk_done(fan_t *f) {
  size_t d = atomic_fetch_add(&f->done, 1) + 1;
  offload_task_progress(f->t, f->p0 + f->span * (double)d / (double)f->nchunks);
}

/* Runs one pass on every chunk; 0, or -1 when the job stopped. */
static int run_pass(fan_t *f, void (*fn)(void *, size_t), double p0, double span) {
  f->p0 = p0;
  f->span = span;
  atomic_store(&f->done, 0);
  return offload_task_parallel(f->t, f->nchunks, fn, f) == 0 && !offload_task_canceled(f->t) ? 0 : -1;
}

/* The passes keep their running values in locals and store them once at
 * the end: chunk_t's of neighbouring chunks share cache lines, and a store
 * per value from two cores would bounce the line between them (the
 * compiler cannot keep c->sum in a register: it may alias the values). */
static void pass_sum(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  chunk_t *c = &f->c[i];
  const double *v = f->v;
  neumaier_t sum = {0};
  double lo = v[b], hi = v[b];
  size_t bad = SIZE_MAX;
  for (size_t k = b; k < e; k++) {
    double x = v[k];
    if (f->check_finite && !isfinite(x)) {
      bad = k;
      break;
    }
    neumaier_add(&sum, x);
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
    if ((k - b) % CHECK_EVERY == CHECK_EVERY - 1 && offload_task_canceled(f->t))
      break;
  }
  c->sum = sum;
  c->lo = lo;
  c->hi = hi;
  c->bad = bad;
  chunk_done(f);
}

static void pass_dev(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  const double *v = f->v, mean = f->mean;
  neumaier_t dev = {0}, sq = {0};
  for (size_t k = b; k < e; k++) {
    double d = v[k] - mean;
    neumaier_add(&dev, d);
    neumaier_add(&sq, d * d);
  }
  f->c[i].dev = dev;
  f->c[i].sq = sq;
  chunk_done(f);
}

/* The bucket of x: monotone in x (every step rounds monotonically), so a
 * value's rank order and its bucket's agree. Halves keep max - min finite. */
static inline size_t bucket(const fan_t *f, double x) {
  double y = (x * 0.5 - f->half_lo) * f->scale;
  return y >= (double)(BUCKETS - 1) ? BUCKETS - 1 : (size_t)y;
}

static void pass_hist(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  uint32_t *h = f->hist + i * BUCKETS;
  for (size_t k = b; k < e; k++)
    h[bucket(f, f->v[k])]++;
  chunk_done(f);
}

static void pass_gather(void *ctx, size_t i) {
  fan_t *f = ctx;
  size_t b, e;
  chunk_range(f, i, &b, &e);
  size_t at[NRANKS];
  memcpy(at, f->at + i * NRANKS, sizeof at);
  for (size_t k = b; k < e; k++) {
    double x = f->v[k];
    unsigned w = f->want[bucket(f, x)];
    if (w)
      f->cand[w - 1][at[w - 1]++] = x;
  }
  chunk_done(f);
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

/* The k-th smallest of a[0..n) (quickselect, median of three, with a
 * three-way partition so that runs of equal values cost O(n), not O(n^2)). */
static double select_kth(double *a, size_t n, size_t k) {
  size_t lo = 0, hi = n; /* [lo, hi) holds rank k */
  while (hi - lo > 1) {
    double x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
    double pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    /* [lo, lt) < pivot, [lt, i) == pivot, [gt, hi) > pivot */
    size_t lt = lo, i = lo, gt = hi;
    while (i < gt) {
      double v = a[i];
      if (v < pivot) {
        a[i++] = a[lt];
        a[lt++] = v;
      } else if (v > pivot) {
        a[i] = a[--gt];
        a[gt] = v;
      } else {
        i++;
      }
    }
    if (k < lt)
      hi = lt;
    else if (k >= gt)
      lo = gt;
    else
      return pivot;
  }
  return a[lo];
}

/* Passes 3 and 4, then selection: the values of ranks[0..NRANKS). */
static int order_statistics(fan_t *f, const size_t ranks[NRANKS], double vals[NRANKS], double p0, double span) {
  int rc = -1;
  double d = f->c[0].hi * 0.5 - f->half_lo; /* finite: halves of finite values */
  f->scale = d > 0 ? (double)BUCKETS / d : 0;
  if (!isfinite(f->scale))
    f->scale = 0; /* a range too narrow to slice: one bucket, still exact */
  f->hist = calloc(f->nchunks * BUCKETS, sizeof *f->hist);
  f->want = calloc(BUCKETS, 1);
  f->total = calloc(BUCKETS, sizeof *f->total);
  f->at = calloc(f->nchunks * NRANKS, sizeof *f->at);
  if (!f->hist || !f->want || !f->total || !f->at) {
    offload_task_fail(f->t, "out_of_memory", "No memory for the percentiles' histogram.");
    goto out;
  }
  if (run_pass(f, pass_hist, p0, span * 0.5) != 0)
    goto out;
  /* Each bucket's count over the chunks; then each rank's bucket, and its
   * rank inside the bucket. */
  for (size_t c = 0; c < f->nchunks; c++)
    for (size_t bk = 0; bk < BUCKETS; bk++)
      f->total[bk] += f->hist[c * BUCKETS + bk];
  size_t bucket_of[NRANKS], inner[NRANKS], used[NRANKS], nused = 0, sizes[NRANKS];
  for (size_t r = 0; r < NRANKS; r++) {
    size_t below = 0, bk = 0;
    while (bk < BUCKETS - 1 && ranks[r] >= below + f->total[bk])
      below += f->total[bk++];
    bucket_of[r] = bk;
    inner[r] = ranks[r] - below;
    if (!f->want[bk]) {
      used[nused] = bk;
      sizes[nused] = f->total[bk];
      f->want[bk] = (uint8_t)++nused;
    }
  }
  for (size_t j = 0; j < nused; j++) {
    size_t off = 0;
    for (size_t c = 0; c < f->nchunks; c++) {
      f->at[c * NRANKS + j] = off;
      off += f->hist[c * BUCKETS + used[j]];
    }
    if (!(f->cand[j] = malloc((sizes[j] ? sizes[j] : 1) * sizeof **f->cand))) {
      offload_task_fail(f->t, "out_of_memory", "No memory for %zu values of the percentiles.", sizes[j]);
      goto out;
    }
  }
  if (run_pass(f, pass_gather, p0 + span * 0.5, span * 0.4) != 0)
    goto out;
  for (size_t r = 0; r < NRANKS; r++) {
    size_t j = f->want[bucket_of[r]] - 1u;
    vals[r] = select_kth(f->cand[j], sizes[j], inner[r]);
  }
  rc = 0;
out:
  for (size_t j = 0; j < NRANKS; j++)
    free(f->cand[j]);
  free(f->hist);
  free(f->want);
  free(f->total);
  free(f->at);
  return rc;
}

int stats_compute(offload_task_t *t, const double *v, size_t n, bool check_finite, double p0, double p1,
                  stats_out_t *o) {
  static const fan_t zero;
  fan_t *f = malloc(sizeof *f);
  if (!f) {
    offload_task_fail(t, "out_of_memory", "No memory for the statistics.");
    return -1;
  }
  *f = zero;
  f->t = t;
  f->v = v;
  f->n = n;
  f->check_finite = check_finite;
  f->nchunks = n / chunk_min < 1 ? 1 : n / chunk_min > CHUNKS_MAX ? CHUNKS_MAX : n / chunk_min;
  double span = p1 - p0;
  int rc = -1;
  if (run_pass(f, pass_sum, p0, span * 0.35) != 0)
    goto out;
  size_t bad = SIZE_MAX;
  for (size_t i = 0; i < f->nchunks; i++)
    bad = f->c[i].bad < bad ? f->c[i].bad : bad;
  if (bad != SIZE_MAX) {
    offload_task_fail(t, "invalid_data", "Value %zu (0-based, at byte %zu) is not a finite number (%g).", bad,
                      bad * sizeof *v, v[bad]);
    goto out;
  }
  double total = combine(f, offsetof(chunk_t, sum));
  for (size_t i = 1; i < f->nchunks; i++) {
    f->c[0].lo = f->c[i].lo < f->c[0].lo ? f->c[i].lo : f->c[0].lo;
    f->c[0].hi = f->c[i].hi > f->c[0].hi ? f->c[i].hi : f->c[0].hi;
  }
  f->mean = total / (double)n;
  if (run_pass(f, pass_dev, p0 + span * 0.35, span * 0.25) != 0)
    goto out;
  double dsum = combine(f, offsetof(chunk_t, dev));
  double m2 = combine(f, offsetof(chunk_t, sq)) - dsum * dsum / (double)n;
  *o = (stats_out_t){
      .count = n, .sum = total, .mean = f->mean, .min = f->c[0].lo, .max = f->c[0].hi, .m2 = m2 < 0 ? 0 : m2};
  /* NumPy's "linear": h = (n - 1) q, between the ranks floor(h) and the next. */
  size_t ranks[NRANKS];
  double vals[NRANKS];
  for (size_t q = 0; q < STATS_NQ; q++) {
    double h = (double)(n - 1) * quantiles[q];
    ranks[2 * q] = (size_t)floor(h);
    ranks[2 * q + 1] = ranks[2 * q] + 1 < n ? ranks[2 * q] + 1 : ranks[2 * q];
  }
  f->half_lo = o->min * 0.5;
  if (order_statistics(f, ranks, vals, p0 + span * 0.6, span * 0.4) != 0)
    goto out;
  for (size_t q = 0; q < STATS_NQ; q++) {
    double h = (double)(n - 1) * quantiles[q], x = vals[2 * q], y = vals[2 * q + 1];
    o->p[q] = x + (h - (double)ranks[2 * q]) * (y - x);
  }
  offload_task_progress(t, p1);
  rc = 0;
out:
  free(f);
  return rc;
}
