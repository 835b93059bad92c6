'use strict';
// piscina run() throughput for an empty task: N tasks, INFLIGHT in flight,
// POOL_SIZE threads (default os.availableParallelism()).
// usage: node piscina-empty.js [N=1000000] [INFLIGHT=64]
// Prints one JSON line.
const path = require('node:path');
const os = require('node:os');
const { Piscina } = require('piscina');

function intArg(v, dflt, name) {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`${name} must be a positive integer; got "${v}"\n`);
    process.exit(2);
  }
  return n;
}

const N = intArg(process.argv[2], 1000000, 'N');
const INFLIGHT = Math.min(intArg(process.argv[3], 64, 'INFLIGHT'), N);
const POOL_SIZE = intArg(process.env.POOL_SIZE, os.availableParallelism(), 'POOL_SIZE');

const pool = new Piscina({
  filename: path.join(__dirname, 'empty-task.js'),
  minThreads: POOL_SIZE,
  maxThreads: POOL_SIZE,
});

// Each lane runs tasks back to back until `total` have been started.
async function drive(total) {
  let started = 0;
  async function lane() {
    while (started < total) {
      started++;
      await pool.run(null);
    }
  }
  const lanes = [];
  for (let i = 0; i < Math.min(INFLIGHT, total); i++) lanes.push(lane());
  await Promise.all(lanes);
}

(async () => {
  // Warm-up (untimed): threads online, handler loaded, code optimised.
  await drive(Math.min(N, Math.max(1000, INFLIGHT * 16)));
  const t0 = process.hrtime.bigint();
  await drive(N);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await pool.destroy();
  process.stdout.write(
    JSON.stringify({
      peer: 'piscina',
      tasks: N,
      inflight: INFLIGHT,
      threads: POOL_SIZE,
      seconds: Number(seconds.toFixed(6)),
      tasks_per_s: Math.round(N / seconds),
    }) + '\n',
  );
})().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
