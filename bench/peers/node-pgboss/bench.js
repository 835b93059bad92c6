'use strict';
// pg-boss on PostgreSQL for bench S16: NODES worker processes (a PgBoss
// instance each, with WORKERS work() loops on the queue) and one producer
// (boss.send) keeping INFLIGHT no-op jobs in flight; see
// ../common/pgqueue.js for the loop and the figures.
//
// Settings (pg-boss 10.4.2, the last release for Node 20; 11+ need Node 22):
// - pg-boss 10 has no LISTEN wakeup: each work() loop polls. Its
//   pollingIntervalSeconds is at the documented minimum, 0.5 s. A loop that
//   found jobs still waits out the rest of the interval before it fetches
//   again (pg-boss 10's worker loop), so a loop takes at most batchSize jobs
//   per 0.5 s.
// - WORKERS work() loops per process (pg-boss 10's concurrency: one loop
//   per work() call), each with batchSize PGBOSS_BATCH (default INFLIGHT: one
//   fetch may take every job in flight, pg-boss's documented way to raise
//   throughput); the handler gets the batch and runs each job.
// - a queue made with createQueue (standard policy), default retry and
//   expiration; supervise/maintenance on (pg-boss's default), cron
//   scheduling off (schedule: false: no cron jobs here). Pool max 10 per
//   worker process (node-postgres' default), PRODUCER_CONNS for the producer.
// Completion: a job counts as complete when pg-boss's own completion query
// (UPDATE ... state = 'completed') has been answered by PostgreSQL: the
// instance's db.executeSql is wrapped to see that query's ids.
const path = require('node:path');
const PgBoss = require('pg-boss');
const { pgConfig, workerMain, producerMain, envInt } = require('../common/pgqueue');

const QUEUE = 'noop';
const POLL_S = 0.5;

function batchSize() {
  return envInt('PGBOSS_BATCH', envInt('INFLIGHT', 64, 1, 4096), 1, 10000);
}

function bossConfig(max, extra) {
  return { ...pgConfig(max), schedule: false, ...extra };
}

async function worker({ ran, report }) {
  const workers = envInt('WORKERS', 2, 1, 256);
  const boss = new PgBoss(bossConfig(10, { migrate: false }));
  boss.on('error', (e) => process.stderr.write(`pg-boss: ${e.message}\n`));
  const db = boss.getDb();
  const exec = db.executeSql.bind(db);
  db.executeSql = async (text, values) => {
    const res = await exec(text, values);
    if (typeof text === 'string' && /SET completed_on = now\(\),\s*state = 'completed'/.test(text)) {
      const n = Number(res && res.rows && res.rows[0] && res.rows[0].count);
      if (n !== values[1].length)
        process.stderr.write(`pg-boss completed ${n} of ${values[1].length} jobs\n`);
      report(values[1]);
    }
    return res;
  };
  await boss.start();
  const opts = { pollingIntervalSeconds: POLL_S, batchSize: batchSize() };
  for (let i = 0; i < workers; i++) {
    await boss.work(QUEUE, opts, async (jobs) => {
      for (const job of jobs) ran(job.id);
    });
  }
  return {
    async stop() {
      await boss.stop({ graceful: true, wait: true, timeout: 5000 });
    },
  };
}

async function setup(s) {
  const boss = new PgBoss(bossConfig(s.producerConns));
  boss.on('error', (e) => process.stderr.write(`pg-boss producer: ${e.message}\n`));
  await boss.start(); // creates the schema (migrate: true, the default)
  await boss.createQueue(QUEUE);
  return {
    add: () => boss.send(QUEUE, {}),
    async close() {
      await boss.stop({ graceful: false, wait: true, timeout: 5000 });
    },
  };
}

if (process.argv[2] === 'worker') {
  workerMain(worker);
} else {
  producerMain({
    peer: 'pg-boss',
    setup,
    script: path.join(__dirname, 'bench.js'),
    extra: (s) => ({
      version: require('pg-boss/package.json').version,
      settings: {
        wakeup: 'polling',
        pollingIntervalSeconds: POLL_S,
        work_loops_per_node: s.workers,
        batchSize: batchSize(),
        pool_max: 10,
      },
    }),
  }).catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
  });
}
