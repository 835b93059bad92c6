'use strict';
// Answers each message with the same message: one round trip = one task.
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => parentPort.postMessage(m));
