'use strict';
// node-piscina: the four endpoints on a piscina pool of POOL_SIZE threads.
// NICE=19 (or any 1..19) sets piscina's niceIncrement: the node-piscina-nice variant.
const path = require('node:path');
const { MessageChannel } = require('node:worker_threads');
const { Piscina } = require('piscina');
const { config, serve, QueueFullError, QUEUE_CAPACITY } = require('../common/http');
const { Registry } = require('../common/registry');

const cfg = config();
const nice = process.env.NICE ? Number(process.env.NICE) : 0;
if (!Number.isInteger(nice) || nice < 0 || nice > 19) {
  process.stderr.write(`NICE must be an integer from 0 to 19; got "${process.env.NICE}"\n`);
  process.exit(2);
}

const pool = new Piscina({
  filename: path.join(__dirname, 'worker.js'),
  minThreads: cfg.poolSize,
  maxThreads: cfg.poolSize,
  maxQueue: QUEUE_CAPACITY,
  niceIncrement: nice, // 0 = piscina's default; >0 needs the optional @napi-rs/nice
});
const registry = new Registry();
let running = 0; // tasks handed to piscina and not settled (running + queued)

// Piscina reports its queue (`queueSize`) but not how many threads are busy:
// busy = handed out - waiting, capped at the pool size.
function stats() {
  const depth = pool.queueSize;
  return { total: pool.threads.length, busy: Math.min(cfg.poolSize, Math.max(0, running - depth)), depth };
}

function full() {
  return pool.queueSize >= QUEUE_CAPACITY;
}

function runReport(job) {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (m) => {
    if (m.type === 'progress') registry.progress(job, m.progress);
    else if (m.type === 'start') registry.start(job, m.at);
  });
  running++;
  pool.run({ n: job.params.heavyIterations, port: port2 }, { transferList: [port2] }).then(
    ({ result, startedAt }) => {
      running--;
      port1.close();
      registry.complete(job, result, startedAt);
    },
    (err) => {
      running--;
      port1.close();
      const queueFull = /queue is at limit/i.test(err.message);
      registry.fail(job, queueFull ? 'queue_full' : 'internal', err.message);
    },
  );
}

function fib(n) {
  const t = registry.ticket();
  running++;
  return pool.run({ n }, { name: 'fib' }).then(
    (result) => {
      running--;
      registry.settle(t);
      return result;
    },
    (err) => {
      running--;
      registry.settle(t);
      throw /queue is at limit/i.test(err.message) ? new QueueFullError() : err;
    },
  );
}

// Start listening once every thread is online (as node-seed does).
function ready() {
  const online = pool.threads.map((w) => new Promise((resolve) => w.once('online', resolve)));
  const fallback = new Promise((resolve) => setTimeout(resolve, 3000).unref());
  return Promise.race([Promise.all(online), fallback]);
}

serve({ registry, full, runReport, fib, stats, ready, close: () => pool.destroy() }, cfg);
