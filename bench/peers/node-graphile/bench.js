'use strict';
// graphile-worker on PostgreSQL for bench S16: NODES worker processes
// (graphile-worker's run(), concurrency WORKERS each) and one producer
// (workerUtils.addJob) keeping INFLIGHT no-op jobs in flight; see
// ../common/pgqueue.js for the loop and the figures.
//
// Settings (graphile-worker 0.17.3):
// - wakeup: graphile-worker's own LISTEN/NOTIFY (add_job() notifies
//   "jobs:insert"; every pool LISTENs), pollInterval at its default 2000 ms
//   (only a fallback here).
// - GW_LOCAL_QUEUE (default WORKERS + 1, graphile's suggested starting point;
//   -1 = off): worker.localQueue.size, a pool fetches and locks a batch.
// - GW_COMPLETE_DELAY (default 0; -1 = off): worker.completeJobBatchDelay,
//   completions issued in the same tick go in one DELETE.
// - maxPoolSize 10 (graphile's default) per worker process; the producer's
//   pool is PRODUCER_CONNS.
// - logging: errors only (graphile logs a line per job at info level).
// Completion: a job counts as complete when graphile's own completion query
// (DELETE from _private_jobs) has been answered by PostgreSQL: the pool's
// clients are wrapped to see that query's ids.
// graphile-worker reads NO_LOG_SUCCESS when it is loaded: no line per job.
process.env.NO_LOG_SUCCESS = '1';
const path = require('node:path');
const { Pool } = require('pg');
const { run, makeWorkerUtils, Logger } = require('graphile-worker');
const { pgConfig, workerMain, producerMain, envInt } = require('../common/pgqueue');

const logger = new Logger((scope) => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

function localQueueSize(workers) {
  return envInt('GW_LOCAL_QUEUE', workers + 1, -1, 100000);
}
const completeDelay = () => envInt('GW_COMPLETE_DELAY', 0, -1, 100000);

function wrapCompletions(pool, report) {
  pool.on('error', (e) => process.stderr.write(`pool: ${e.message}\n`));
  pool.on('connect', (client) => {
    client.on('error', (e) => process.stderr.write(`client: ${e.message}\n`));
    const query = client.query.bind(client);
    client.query = (...args) => {
      const q = args[0];
      const text = typeof q === 'string' ? q : q && q.text;
      const complete = text && /^\s*(with j as \(\s*)?delete from .*_private_jobs/.test(text);
      const r = query(...args);
      if (!complete || !r || typeof r.then !== 'function') return r;
      const values = typeof q === 'string' ? args[1] : q.values;
      const ids = Array.isArray(values[0]) ? values[0] : [values[0]];
      return r.then((res) => {
        report(ids);
        return res;
      });
    };
  });
}

async function worker({ ran, report }) {
  const workers = envInt('WORKERS', 2, 1, 256);
  const pgPool = new Pool(pgConfig(10));
  wrapCompletions(pgPool, report);
  const lq = localQueueSize(workers);
  const runner = await run({
    pgPool,
    concurrency: workers,
    noHandleSignals: true,
    pollInterval: 2000,
    logger,
    taskList: {
      noop: async (_payload, helpers) => {
        ran(helpers.job.id);
      },
    },
    preset: {
      worker: {
        ...(lq > 1 ? { localQueue: { size: lq } } : {}),
        completeJobBatchDelay: completeDelay(),
      },
    },
  });
  return {
    async stop() {
      await runner.stop();
      await pgPool.end();
    },
  };
}

async function setup(s) {
  const pgPool = new Pool(pgConfig(s.producerConns));
  pgPool.on('error', (e) => process.stderr.write(`producer pool: ${e.message}\n`));
  pgPool.on('connect', (c) => c.on('error', (e) => process.stderr.write(`producer client: ${e.message}\n`)));
  const utils = await makeWorkerUtils({ pgPool, logger });
  await utils.migrate();
  return {
    add: async () => (await utils.addJob('noop', {})).id,
    async close() {
      await utils.release();
      await pgPool.end();
    },
  };
}

if (process.argv[2] === 'worker') {
  workerMain(worker);
} else {
  producerMain({
    peer: 'graphile-worker',
    setup,
    script: path.join(__dirname, 'bench.js'),
    extra: (s) => ({
      version: require('graphile-worker/package.json').version,
      settings: {
        wakeup: 'LISTEN/NOTIFY (jobs:insert)',
        pollInterval_ms: 2000,
        concurrency: s.workers,
        localQueue_size: localQueueSize(s.workers),
        completeJobBatchDelay_ms: completeDelay(),
        maxPoolSize: 10,
      },
    }),
  }).catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
  });
}
