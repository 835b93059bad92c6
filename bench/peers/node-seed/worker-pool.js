'use strict';
// The seeds' WorkerPool: a fixed set of worker_threads, a free list, a task
// queue, and a replacement for any worker that dies. Written as the seeds
// write it (free list popped, queue shifted, 'error' replaces the worker),
// with three additions the server needs: progress messages are passed to the
// task instead of finishing it, a start callback at dispatch, and a bounded
// queue (QueueFullError past `maxQueue` waiting tasks).
const { Worker } = require('node:worker_threads');
const { QueueFullError } = require('../common/http');

class WorkerPool {
  constructor(workerPath, poolSize, { maxQueue = Infinity } = {}) {
    this.workerPath = workerPath;
    this.poolSize = poolSize;
    this.maxQueue = maxQueue;
    this.workers = [];
    this.freeWorkers = [];
    this.taskQueue = [];
    this.closing = false;
    this.online = [];
    for (let i = 0; i < this.poolSize; i++) this.addWorker();
  }

  addWorker() {
    const worker = new Worker(this.workerPath);
    this.online.push(new Promise((resolve) => worker.once('online', resolve)));

    worker.on('message', (msg) => {
      const task = worker.currentTask;
      if (!task) return;
      if (msg.type === 'progress') {
        if (task.onProgress) task.onProgress(msg.progress);
        return;
      }
      worker.currentTask = null;
      this.freeWorkers.push(worker);
      if (msg.type === 'done') task.resolve(msg.result);
      else task.reject(new Error(msg.message));
      this.processQueue();
    });

    worker.on('error', (error) => this.replace(worker, error));
    worker.on('exit', (code) => {
      if (!this.closing) this.replace(worker, new Error(`Worker stopped with exit code ${code}`));
    });

    this.workers.push(worker);
    this.freeWorkers.push(worker);
  }

  // Replace dead worker (once, whether 'error' or 'exit' came first).
  replace(worker, error) {
    if (worker.dead || this.closing) return;
    worker.dead = true;
    if (worker.currentTask) worker.currentTask.reject(error);
    worker.currentTask = null;
    this.workers = this.workers.filter((w) => w !== worker);
    this.freeWorkers = this.freeWorkers.filter((w) => w !== worker);
    this.addWorker();
    this.processQueue();
  }

  full() {
    return this.freeWorkers.length === 0 && this.taskQueue.length >= this.maxQueue;
  }

  // hooks: { onStart(), onProgress(p) }
  runTask(data, hooks = {}) {
    return new Promise((resolve, reject) => {
      if (this.full()) return reject(new QueueFullError());
      this.taskQueue.push({ data, resolve, reject, onStart: hooks.onStart, onProgress: hooks.onProgress });
      this.processQueue();
    });
  }

  processQueue() {
    while (this.taskQueue.length > 0 && this.freeWorkers.length > 0) {
      const worker = this.freeWorkers.pop();
      const task = this.taskQueue.shift();
      worker.currentTask = task;
      if (task.onStart) task.onStart();
      worker.postMessage(task.data);
    }
  }

  get busy() {
    return this.workers.length - this.freeWorkers.length;
  }

  destroy() {
    this.closing = true;
    return Promise.all(this.workers.map((w) => w.terminate()));
  }
}

module.exports = WorkerPool;
