'use strict';
// Piscina task module for node-piscina: the report job, and the /fibonacci task.
const { report, fib } = require('../common/kernels');

// Progress goes over a MessagePort the main thread transfers with the task,
// as in piscina's own examples/progress: piscina has no progress API.
function reportTask({ n, port }) {
  const startedAt = Date.now();
  port.postMessage({ type: 'start', at: startedAt });
  const result = report(n, (progress) => port.postMessage({ type: 'progress', progress }));
  port.close();
  return { result, startedAt };
}

function fibTask({ n }) {
  return fib(n);
}

// piscina calls the module's function by default, and `fib` for { name: 'fib' }.
module.exports = reportTask;
module.exports.fib = fibTask;
