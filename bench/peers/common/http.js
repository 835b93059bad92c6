'use strict';
// Routing, validation and JSON replies shared by the peers. Plain node:http,
// keep-alive on, the same four endpoints and JSON shapes as offload.
const http = require('node:http');
const os = require('node:os');

const QUEUE_CAPACITY = 10000;
const MAX_ITERATIONS = 100000000000; // 1e11
const MAX_FIB = 92;

function envInt(name, dflt, min, max) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`${name} must be an integer from ${min} to ${max}; got "${v}"\n`);
    process.exit(2);
  }
  return n;
}

function config() {
  return {
    port: envInt('PORT', 3000, 0, 65535),
    host: process.env.HOST || '127.0.0.1',
    poolSize: envInt('POOL_SIZE', os.availableParallelism(), 1, 1024),
  };
}

class QueueFullError extends Error {
  constructor() {
    super('The job queue is full; retry after a short wait.');
    this.code = 'queue_full';
  }
}

function send(res, status, body, headers) {
  const text = JSON.stringify(body) + '\n';
  const h = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
  if (headers) Object.assign(h, headers);
  res.writeHead(status, h);
  res.end(text);
}

function sendError(res, status, code, message, param, headers) {
  const error = { code, message };
  if (param) error.param = param;
  send(res, status, { error }, headers);
}

function sendQueueFull(res) {
  sendError(res, 429, 'queue_full', 'The job queue is full; retry after a short wait.', null, { 'Retry-After': '1' });
}

// Query parsing with offload's rules: only the allowed names, each at most once.
function parseQuery(res, search, allowed) {
  const q = new URLSearchParams(search);
  const seen = new Map();
  for (const [name, value] of q) {
    if (!allowed.includes(name)) {
      sendError(res, 400, 'unknown_param', `This endpoint has no query parameter named "${name.slice(0, 64)}".`, name);
      return null;
    }
    if (seen.has(name)) {
      sendError(res, 400, 'invalid_param', `${name.slice(0, 64)} must be given only once.`, name);
      return null;
    }
    seen.set(name, value);
  }
  return seen;
}

// An integer from min to max (decimal digits, optional '-'), or a 400 reply.
function intParam(res, name, text, min, max) {
  if (text === undefined) {
    sendError(res, 400, 'missing_param', `${name} is required: an integer from ${min} to ${max}.`, name);
    return null;
  }
  const n = /^-?[0-9]{1,19}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) {
    sendError(res, 400, 'invalid_param', `${name} must be an integer from ${min} to ${max}; got "${text.slice(0, 40)}".`, name);
    return null;
  }
  return n;
}

function methodNotAllowed(req, res, path, allow = 'GET') {
  sendError(res, 405, 'method_not_allowed', `${req.method} is not allowed on ${path.slice(0, 200)}; allowed: ${allow}.`, null, { Allow: allow });
}

function notFoundJob(res) {
  sendError(res, 404, 'not_found', 'No job with that id (it may never have existed or has expired).');
}

/*
 * backend: {
 *   registry,                  // common/registry.js
 *   full() -> bool,            // would one more unit of work exceed the queue capacity?
 *   runReport(job),            // schedule a report job; drives registry.start/progress/complete/fail
 *   fib(n) -> number | Promise<number>   (throws/rejects QueueFullError when full)
 *   stats() -> {total, busy, depth},
 *   ready() -> Promise (optional), close() -> Promise (optional)
 * }
 */
function serve(backend, cfg) {
  const reg = backend.registry;
  const startedMono = performance.now();

  function handle(req, res) {
    const url = req.url;
    const qi = url.indexOf('?');
    const path = qi < 0 ? url : url.slice(0, qi);
    const search = qi < 0 ? '' : url.slice(qi + 1);
    const get = req.method === 'GET';
    const safe = get || req.method === 'HEAD';

    if (path === '/health') {
      if (!safe) return methodNotAllowed(req, res, path, 'GET, HEAD');
      if (!parseQuery(res, search, [])) return;
      const s = backend.stats();
      return send(res, 200, {
        status: 'ok',
        workers: { total: s.total, busy: s.busy },
        queue: { depth: s.depth, capacity: QUEUE_CAPACITY },
        uptimeMs: Math.floor(performance.now() - startedMono),
      });
    }

    if (path === '/tasks/reports/start') {
      if (!get) return methodNotAllowed(req, res, path);
      const q = parseQuery(res, search, ['heavyIterations']);
      if (!q) return;
      const n = intParam(res, 'heavyIterations', q.get('heavyIterations'), 1, MAX_ITERATIONS);
      if (n === null) return;
      if (backend.full()) return sendQueueFull(res);
      const job = reg.createJob({ heavyIterations: n });
      backend.runReport(job);
      const statusUrl = `/tasks/reports/${job.id}`;
      return send(res, 202, { jobId: job.id, status: 'queued', statusUrl }, { Location: statusUrl });
    }

    if (path.startsWith('/tasks/reports/')) {
      const id = path.slice('/tasks/reports/'.length);
      if (id !== '' && !id.includes('/')) {
        if (!safe) return methodNotAllowed(req, res, path, 'GET, HEAD');
        if (!parseQuery(res, search, [])) return;
        const job = reg.get(id);
        if (!job) return notFoundJob(res);
        return send(res, 200, reg.view(job, backend.stats().depth));
      }
    }

    if (path.startsWith('/fibonacci/')) {
      const arg = path.slice('/fibonacci/'.length);
      if (arg !== '' && !arg.includes('/')) {
        if (!get) return methodNotAllowed(req, res, path);
        if (!parseQuery(res, search, [])) return;
        const n = intParam(res, 'n', arg, 0, MAX_FIB);
        if (n === null) return;
        if (backend.full()) return sendQueueFull(res);
        let out;
        try {
          out = backend.fib(n);
        } catch (err) {
          return fibError(res, err);
        }
        if (typeof out === 'number') return send(res, 200, { n, result: out });
        return out.then(
          (result) => send(res, 200, { n, result }),
          (err) => fibError(res, err),
        );
      }
    }

    sendError(res, 404, 'not_found', `There is no endpoint at ${path.slice(0, 200)}.`);
  }

  function fibError(res, err) {
    if (err && err.code === 'queue_full') return sendQueueFull(res);
    sendError(res, 500, 'internal', `The job failed: ${(err && err.message) || err}.`);
  }

  const server = http.createServer(handle);
  server.keepAliveTimeout = 30000;
  run(server, cfg, backend.ready ? backend.ready() : Promise.resolve(), () => backend.close && backend.close());
  return server;
}

// Every peer's life: listen once `ready` settles and print the one line the
// benchmark waits for; on SIGTERM/SIGINT close the server, run `close` (the
// pool's teardown) and exit, within 2 s whatever happens.
function run(server, cfg, ready, close) {
  ready.then(() => {
    server.listen(cfg.port, cfg.host, () => {
      process.stdout.write(`listening on http://${cfg.host}:${server.address().port}\n`);
    });
  });
  let closing = false;
  function shutdown() {
    if (closing) return;
    closing = true;
    server.close();
    server.closeAllConnections();
    Promise.resolve(close()).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  }
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

module.exports = {
  config,
  serve,
  QueueFullError,
  QUEUE_CAPACITY,
  // the pieces node-sharp builds its own routes from
  run,
  send,
  sendError,
  sendQueueFull,
  parseQuery,
  intParam,
  methodNotAllowed,
};
