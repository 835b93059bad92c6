'use strict';
// node-seed: the four endpoints on the seeds' WorkerPool (free list + task
// queue + replace dead workers), POOL_SIZE worker_threads.
const path = require('node:path');
const { config, serve, QUEUE_CAPACITY } = require('../common/http');
const { Registry } = require('../common/registry');
const WorkerPool = require('./worker-pool');

const cfg = config();
const registry = new Registry();
const pool = new WorkerPool(path.join(__dirname, 'worker.js'), cfg.poolSize, { maxQueue: QUEUE_CAPACITY });

serve(
  {
    registry,
    full: () => pool.full(),
    runReport(job) {
      pool
        .runTask(
          { type: 'report', n: job.params.heavyIterations },
          { onStart: () => registry.start(job), onProgress: (p) => registry.progress(job, p) },
        )
        .then(
          (result) => registry.complete(job, result),
          (err) => registry.fail(job, err.code === 'queue_full' ? 'queue_full' : 'internal', err.message),
        );
    },
    fib(n) {
      const t = registry.ticket();
      const settle = () => registry.settle(t);
      const p = pool.runTask({ type: 'fib', n });
      p.then(settle, settle);
      return p;
    },
    stats: () => ({ total: pool.workers.length, busy: pool.busy, depth: pool.taskQueue.length }),
    ready: () => Promise.all(pool.online),
    close: () => pool.destroy(),
  },
  cfg,
);
