/* kernels: the report and fibonacci loops as a plain C program, compiled with
 * the same flags as the server, to price the job framework (progress and
 * cancel checks, the hand-off) against the bare loop.
 *
 *   kernels report N     sum of sqrt(i), i < N
 *   kernels fib N        naive recursion
 * Prints {"kernel":...,"n":N,"seconds":s,"result":r}. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t fib(int n) { return n < 2 ? (uint64_t)n : fib(n - 1) + fib(n - 2); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 3)
    return 2;
  long long n = atoll(argv[2]);
  double t0 = now_s();
  if (!strcmp(argv[1], "report")) {
    double sum = 0.0;
    for (long long i = 0; i < n; i++)
      sum += sqrt((double)i);
    printf("{\"kernel\":\"report\",\"n\":%lld,\"seconds\":%.4f,\"result\":%.17g}\n", n, now_s() - t0, sum);
    return 0;
  }
  if (!strcmp(argv[1], "fib")) {
    uint64_t r = fib((int)n);
    printf("{\"kernel\":\"fib\",\"n\":%lld,\"seconds\":%.4f,\"result\":%llu}\n", n, now_s() - t0,
           (unsigned long long)r);
    return 0;
  }
  return 2;
}
