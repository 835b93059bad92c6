'use strict';
// Job registry shared by the peers: the jobs Map, queue positions, and
// bounded retention of finished jobs (oldest evicted first, like offload).
const crypto = require('node:crypto');

const MAX_FINISHED = 100000;

class Registry {
  constructor({ maxFinished = MAX_FINISHED } = {}) {
    this.maxFinished = maxFinished;
    this.jobs = new Map(); // id -> job (queued, processing and retained finished)
    this.finished = new Map(); // id -> job, in finishing order (eviction order)
    // Every unit of work submitted to the pool and not yet settled (report jobs
    // and /fibonacci tickets), in submission order. Every peer dispatches FIFO,
    // so the ones still waiting are exactly the last `depth` entries.
    this.inflight = new Map(); // ticket -> true
  }

  // A report job, registered as queued.
  createJob(params) {
    const job = {
      id: crypto.randomBytes(16).toString('base64url'),
      params,
      status: 'queued',
      progress: 0,
      result: null,
      error: null,
      createdAt: Date.now(),
      startedAt: null,
      finishedAt: null,
    };
    this.jobs.set(job.id, job);
    this.inflight.set(job, true);
    return job;
  }

  // An anonymous unit of work (a /fibonacci call): counts for queue positions only.
  ticket() {
    const t = {};
    this.inflight.set(t, true);
    return t;
  }

  settle(ticket) {
    this.inflight.delete(ticket);
  }

  get(id) {
    return this.jobs.get(id);
  }

  start(job, at = Date.now()) {
    if (job.status !== 'queued') return;
    job.status = 'processing';
    job.startedAt = at;
  }

  progress(job, p) {
    if (job.status === 'processing' && p > job.progress) job.progress = p;
  }

  complete(job, result, startedAt) {
    if (job.status === 'complete' || job.status === 'failed') return;
    if (job.startedAt === null) job.startedAt = startedAt || Date.now();
    job.status = 'complete';
    job.progress = 1;
    job.result = result;
    this._finish(job);
  }

  fail(job, code, message) {
    if (job.status === 'complete' || job.status === 'failed') return;
    job.status = 'failed';
    job.error = { code, message };
    this._finish(job);
  }

  _finish(job) {
    job.finishedAt = Date.now();
    this.inflight.delete(job);
    this.finished.set(job.id, job);
    while (this.finished.size > this.maxFinished) {
      const oldest = this.finished.keys().next().value;
      this.finished.delete(oldest);
      this.jobs.delete(oldest);
    }
  }

  // 1-based place among the waiting work, given how many units wait (`depth`).
  position(job, depth) {
    if (job.status !== 'queued') return null;
    const running = this.inflight.size - depth;
    let idx = 0;
    for (const t of this.inflight.keys()) {
      if (t === job) break;
      idx++;
    }
    return Math.max(1, idx - running + 1);
  }

  view(job, depth) {
    return {
      jobId: job.id,
      status: job.status,
      progress: job.progress,
      result: job.result,
      error: job.error,
      queuePosition: this.position(job, depth),
      createdAt: job.createdAt,
      startedAt: job.startedAt,
      finishedAt: job.finishedAt,
    };
  }
}

module.exports = { Registry, MAX_FINISHED };
