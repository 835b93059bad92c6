/* fibonacci: F(n) by the naive doubly recursive definition, on purpose: it is
 * the seeds' example of CPU-heavy work and a benchmark kernel.
 *
 * Subtrees of depth <= FIB_LEAF run as the plain recursion; above that, each
 * call checks cancellation and, after each leaf subtree, reports progress as
 * calls done / calls needed. Calls above the leaves are a 1/F(FIB_LEAF)
 * fraction of the total, so the checks cost nothing measurable. */
#include "tasks/tasks.h"

#define FIB_LEAF 25 /* fib(25) is ~250k calls, about a millisecond */

static uint64_t fib_naive(int n) { return n < 2 ? (uint64_t)n : fib_naive(n - 1) + fib_naive(n - 2); }

/* Calls the naive recursion makes for fib(n): 2*F(n+1) - 1. */
static double fib_calls(int n) {
  double a = 0, b = 1; /* F(0), F(1) */
  for (int i = 0; i < n + 1; i++) {
    double c = a + b;
    a = b;
    b = c;
  }
  return 2.0 * a - 1.0;
}

typedef struct fib_run {
  offload_task_t *t;
  double done, total;
  double leaf_calls[FIB_LEAF + 1];
  bool stop;
} fib_run_t;

static uint64_t fib_checked(fib_run_t *r, int n) {
  if (r->stop)
    return 0;
  if (n <= FIB_LEAF) {
    uint64_t v = fib_naive(n);
    r->done += r->leaf_calls[n];
    offload_task_progress(r->t, r->done / r->total);
    return v;
  }
  if (offload_task_canceled(r->t)) {
    r->stop = true;
    return 0;
  }
  return fib_checked(r, n - 1) + fib_checked(r, n - 2);
}

static void fibonacci_run(offload_task_t *t) {
  int n = (int)offload_task_param_int(t, "n", 0);
  fib_run_t r = {.t = t, .total = fib_calls(n)};
  for (int i = 0; i <= FIB_LEAF; i++)
    r.leaf_calls[i] = fib_calls(i);
  uint64_t v = fib_checked(&r, n);
  if (r.stop)
    return;
  offload_task_result_int(t, (int64_t)v);
}

static const offload_param_spec_t fibonacci_params[] = {
    {.name = "n", .type = OFFLOAD_PARAM_INTEGER, .required = true, .min = 0, .max = 92},
};

const offload_task_def_t task_fibonacci = {
    .name = "fibonacci",
    .description = "Computes F(n) with the naive recursion (exponential on purpose: a CPU-heavy benchmark).",
    .run = fibonacci_run,
    .params = fibonacci_params,
    .nparams = 1,
};
