'use strict';
// Worker for node-seed: one task at a time, as in the seeds' cpuWorker.js.
const { parentPort } = require('node:worker_threads');
const { report, fib } = require('../common/kernels');

const onProgress = (progress) => parentPort.postMessage({ type: 'progress', progress });

parentPort.on('message', (msg) => {
  try {
    let result;
    if (msg.type === 'report') result = report(msg.n, onProgress);
    else if (msg.type === 'fib') result = fib(msg.n);
    else throw new Error(`unknown task type ${msg.type}`);
    parentPort.postMessage({ type: 'done', result });
  } catch (err) {
    parentPort.postMessage({ type: 'error', message: String((err && err.message) || err) });
  }
});
