'use strict';
// What a fresh worker_thread costs: time from `new Worker(...)` to its first
// completed task (one postMessage round trip), over SAMPLES workers, each
// terminated (and awaited) before the next starts.
// usage: node worker-cost.js [SAMPLES=50]
// Prints one JSON line.
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const v = process.argv[2];
const SAMPLES = v === undefined ? 50 : Number(v);
if (!Number.isInteger(SAMPLES) || SAMPLES < 1) {
  process.stderr.write(`SAMPLES must be a positive integer; got "${v}"\n`);
  process.exit(2);
}
const file = path.join(__dirname, 'echo-worker.js');

function once() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const w = new Worker(file);
    w.once('message', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      w.terminate().then(() => resolve(ms), reject);
    });
    w.once('error', reject);
    w.postMessage(1);
  });
}

function quantile(sorted, q) {
  // nearest-rank
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

(async () => {
  const ms = [];
  for (let i = 0; i < SAMPLES; i++) ms.push(await once());
  ms.sort((a, b) => a - b);
  const r3 = (x) => Number(x.toFixed(3));
  process.stdout.write(
    JSON.stringify({
      peer: 'node-worker_threads',
      samples: SAMPLES,
      median_ms: r3(SAMPLES % 2 ? ms[(SAMPLES - 1) / 2] : (ms[SAMPLES / 2 - 1] + ms[SAMPLES / 2]) / 2),
      p90_ms: r3(quantile(ms, 0.9)),
    }) + '\n',
  );
})().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
