'use strict';
// The CPU work every peer runs. Loaded by the main thread (node-blocking) and
// by the worker threads (node-seed, node-piscina).

// About a millisecond or two of work between progress reports (same chunk as offload).
const REPORT_CHUNK = 1 << 20;

// The seeds' report: let r = 0; for (let i = 0; i < n; i++) r += Math.sqrt(i);
// Chunked only to report progress; the additions happen in the same order, so
// the double is bit-identical to the unchunked loop (and to offload's C loop).
function report(n, onProgress) {
  let r = 0;
  for (let start = 0; start < n; start += REPORT_CHUNK) {
    const end = n - start > REPORT_CHUNK ? start + REPORT_CHUNK : n;
    for (let i = start; i < end; i++) r += Math.sqrt(i);
    if (onProgress !== undefined) onProgress(end / n);
  }
  return r;
}

// The seeds' naive recursion, on purpose (exponential: a CPU benchmark).
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

module.exports = { REPORT_CHUNK, report, fib };
