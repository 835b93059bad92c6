/* primes: counts the primes <= max with a segmented sieve of Eratosthenes
 * over odd numbers. Memory is O(sqrt(max)) for the base primes plus one
 * segment; progress and cancellation are checked once per segment
 * (a few milliseconds of work). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/tasks.h"

static uint64_t isqrt_u64(uint64_t n) {
  uint64_t r = (uint64_t)sqrt((double)n);
  while (r * r > n)
    r--;
  while ((r + 1) * (r + 1) <= n)
    r++;
  return r;
}

static void primes_run(offload_task_t *t) {
  uint64_t max = (uint64_t)offload_task_param_int(t, "max", 1);
  if (max < 2) {
    offload_task_result_int(t, 0);
    return;
  }
  uint64_t root = isqrt_u64(max);

  /* Base primes: odd primes <= root, by a plain sieve (root <= 10^6). */
  uint8_t *small = calloc(root + 1, 1);
  uint32_t *base = malloc(sizeof *base * (root / 2 + 2));
  uint64_t *next = malloc(sizeof *next * (root / 2 + 2));
  /* Segment: one byte per odd number; sized near sqrt(max) to balance
   * the per-prime loop overhead against cache misses. */
  size_t seg = (size_t)root;
  if (seg < (1u << 15))
    seg = 1u << 15;
  if (seg > (1u << 20))
    seg = 1u << 20;
  uint8_t *sieve = malloc(seg);
  if (!small || !base || !next || !sieve) {
    offload_task_fail(t, "out_of_memory", "Not enough memory to sieve up to %llu.", (unsigned long long)max);
    goto out;
  }
  size_t nbase = 0;
  for (uint64_t i = 3; i <= root; i += 2) {
    if (small[i])
      continue;
    base[nbase] = (uint32_t)i;
    next[nbase] = i * i; /* first odd multiple worth crossing */
    nbase++;
    for (uint64_t j = i * i; j <= root; j += 2 * i)
      small[j] = 1;
  }

  int64_t count = 1; /* the prime 2 */
  /* Segment k covers odd numbers lo, lo+2, ..., lo + 2*(seg-1). */
  for (uint64_t lo = 3; lo <= max; lo += 2 * (uint64_t)seg) {
    uint64_t hi = lo + 2 * ((uint64_t)seg - 1); /* last odd number in the segment */
    if (hi > max)
      hi = max;
    size_t len = (size_t)((hi - lo) / 2 + 1);
    memset(sieve, 1, len);
    for (size_t k = 0; k < nbase; k++) {
      uint64_t p = base[k];
      if (p * p > hi)
        break;
      uint64_t m = next[k];
      for (; m <= hi; m += 2 * p)
        sieve[(m - lo) / 2] = 0;
      next[k] = m;
    }
    for (size_t k = 0; k < len; k++)
      count += sieve[k];
    if (offload_task_canceled(t))
      goto out;
    offload_task_progress(t, (double)(hi - 1) / (double)max);
  }
  offload_task_result_int(t, count);

out:
  free(sieve);
  free(next);
  free(base);
  free(small);
}

static const offload_param_spec_t primes_params[] = {
    {.name = "max", .type = OFFLOAD_PARAM_INTEGER, .required = true, .min = 1, .max = INT64_C(1000000000000)},
};

const offload_task_def_t task_primes = {
    .name = "primes",
    .description = "Counts the primes <= max with a segmented sieve of Eratosthenes.",
    .run = primes_run,
    .params = primes_params,
    .nparams = 1,
};
