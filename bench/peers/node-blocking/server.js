'use strict';
// node-blocking: the seeds' "before" picture. Every computation runs on the
// main thread. /tasks/reports/start answers 202 at once, then runs the job in
// a setImmediate callback on the main thread, one job per callback (FIFO), so
// every other request waits while a job runs and is served only between jobs.
// /fibonacci computes inline in the request handler.
const { config, serve, QueueFullError, QUEUE_CAPACITY } = require('../common/http');
const { Registry } = require('../common/registry');
const { report, fib } = require('../common/kernels');

const cfg = config(); // POOL_SIZE is read but unused: there are no workers
const registry = new Registry();
const queue = []; // report jobs waiting for the main thread
let head = 0; // queue[head..] are waiting (avoids O(n) shift on long queues)
let scheduled = false;
let busy = 0;

function depth() {
  return queue.length - head;
}

function runOne() {
  scheduled = false;
  if (head >= queue.length) return;
  const job = queue[head];
  queue[head++] = undefined;
  if (head > 1024 && head * 2 > queue.length) {
    queue.splice(0, head);
    head = 0;
  }
  registry.start(job);
  busy = 1;
  try {
    // progress is updated, but nobody can read it until the job is over.
    const result = report(job.params.heavyIterations, (p) => registry.progress(job, p));
    registry.complete(job, result);
  } catch (err) {
    registry.fail(job, 'internal', String((err && err.message) || err));
  }
  busy = 0;
  schedule();
}

function schedule() {
  if (!scheduled && depth() > 0) {
    scheduled = true;
    setImmediate(runOne);
  }
}

serve(
  {
    registry,
    full: () => depth() >= QUEUE_CAPACITY,
    runReport(job) {
      queue.push(job);
      schedule();
    },
    fib(n) {
      if (depth() >= QUEUE_CAPACITY) throw new QueueFullError();
      return fib(n);
    },
    // One "worker": the main thread (as offload --inline reports it).
    stats: () => ({ total: 1, busy, depth: depth() }),
  },
  cfg,
);
