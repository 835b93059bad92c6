'use strict';
// node-sharp: the seeds' image and password jobs the way a Node service does
// them, for S11 and S12. Images: sharp (libvips) in a piscina pool of
// POOL_SIZE threads, sharp.concurrency = cores / POOL_SIZE, its cache off.
// Passwords: crypto.pbkdf2 (async, on libuv's thread pool: start the server
// with UV_THREADPOOL_SIZE=POOL_SIZE for the same budget as offload's workers).
//
//   POST /process?widths=2048,1024&format=webp&quality=80   body: the image
//     -> 200 {"outputs":[{"width","height","bytes"},...]} once every width is encoded
//   POST /pbkdf2 {"password","iterations"}
//     -> 200 {"hash":hex,"salt":hex}  (sha512, 64 bytes, 16 random salt bytes)
//   GET /health
//
// SHARP_PIPELINE picks the worker's pipeline: decode-once (default) or clone
// (see worker.js).
const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const { Piscina } = require('piscina');
const {
  config,
  run,
  send,
  sendError,
  sendQueueFull,
  parseQuery,
  intParam,
  methodNotAllowed,
  QUEUE_CAPACITY,
} = require('../common/http');

const cfg = config();
const MAX_UPLOAD = 64 * 1024 * 1024; // offload's --max-upload default
const MAX_BODY = 1024 * 1024; // offload's --max-body default
const MAX_WIDTHS = 8;
const FORMATS = ['webp', 'jpeg', 'png', 'avif'];
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/heif', 'image/avif'];
const PIPELINES = ['decode-once', 'clone'];
const pipeline = process.env.SHARP_PIPELINE || 'decode-once';
if (!PIPELINES.includes(pipeline)) {
  process.stderr.write(`SHARP_PIPELINE must be one of ${PIPELINES.join(', ')}; got "${pipeline}"\n`);
  process.exit(2);
}

const pool = new Piscina({
  filename: path.join(__dirname, 'worker.js'),
  minThreads: cfg.poolSize,
  maxThreads: cfg.poolSize,
  maxQueue: QUEUE_CAPACITY,
  workerData: { poolSize: cfg.poolSize, pipeline },
});
let running = 0; // image tasks handed to piscina and not settled
let hashing = 0; // pbkdf2 calls not settled
const startedMono = performance.now();

// The whole body into one Buffer that owns its ArrayBuffer (so it can be
// transferred to the worker, not copied); null once a reply was sent.
function readBody(req, res, limit) {
  return new Promise((resolve) => {
    const declared = req.headers['content-length'];
    const len = declared === undefined ? -1 : Number(declared);
    if (len > limit) {
      sendError(res, 413, 'payload_too_large', `The body is over ${limit} bytes.`);
      req.resume();
      return resolve(null);
    }
    let buf = len >= 0 ? Buffer.allocUnsafeSlow(len) : null;
    const chunks = [];
    let got = 0;
    let failed = false;
    req.on('data', (c) => {
      if (failed) return;
      if (got + c.length > (buf ? buf.length : limit)) {
        failed = true;
        sendError(res, 413, 'payload_too_large', `The body is over ${buf ? buf.length : limit} bytes.`);
        return resolve(null);
      }
      if (buf) c.copy(buf, got);
      else chunks.push(c);
      got += c.length;
    });
    req.on('end', () => {
      if (failed) return;
      if (!buf) {
        buf = Buffer.allocUnsafeSlow(got);
        let off = 0;
        for (const c of chunks) off += c.copy(buf, off);
      } else if (got !== buf.length) {
        sendError(res, 400, 'invalid_body', 'The body is shorter than its Content-Length.');
        return resolve(null);
      }
      resolve(buf);
    });
    req.on('error', () => resolve(null));
  });
}

async function processImage(req, res, search) {
  const q = parseQuery(res, search, ['widths', 'format', 'quality']);
  if (!q) return;
  const wtext = q.get('widths');
  if (wtext === undefined) return sendError(res, 400, 'missing_param', 'widths is required: 1 to 8 integers 1..8192.', 'widths');
  const items = wtext.split(',');
  const widths = [];
  for (const item of items) {
    const w = /^[0-9]{1,5}$/.test(item) ? Number(item) : NaN;
    if (!(w >= 1 && w <= 8192) || items.length > MAX_WIDTHS) {
      return sendError(res, 400, 'invalid_param', 'widths must be 1 to 8 integers from 1 to 8192.', 'widths');
    }
    widths.push(w);
  }
  const format = q.get('format') ?? 'webp';
  if (!FORMATS.includes(format)) {
    return sendError(res, 400, 'invalid_param', `format must be one of ${FORMATS.join(', ')}.`, 'format');
  }
  let quality = 80;
  if (q.has('quality')) {
    quality = intParam(res, 'quality', q.get('quality'), 1, 100);
    if (quality === null) return;
  }
  const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (!IMAGE_TYPES.includes(type)) {
    return sendError(res, 415, 'unsupported_media_type', `Content-Type must be one of ${IMAGE_TYPES.join(', ')}.`);
  }
  if (pool.queueSize >= QUEUE_CAPACITY) return sendQueueFull(res);
  const input = await readBody(req, res, MAX_UPLOAD);
  if (!input) return;
  running++;
  try {
    const outputs = await pool.run({ input, widths, format, quality }, { transferList: [input.buffer] });
    send(res, 200, { outputs });
  } catch (err) {
    if (/queue is at limit/i.test(err.message)) sendQueueFull(res);
    else if (/^invalid_image: /.test(err.message)) sendError(res, 400, 'invalid_image', err.message.slice(15));
    else sendError(res, 500, 'internal', `The job failed: ${err.message}.`);
  } finally {
    running--;
  }
}

async function pbkdf2(req, res, search) {
  if (!parseQuery(res, search, [])) return;
  const body = await readBody(req, res, MAX_BODY);
  if (!body) return;
  let p;
  try {
    p = JSON.parse(body.toString('utf8'));
  } catch {
    return sendError(res, 400, 'invalid_json', 'The body is not valid JSON.');
  }
  if (!p || typeof p.password !== 'string' || Buffer.byteLength(p.password) > 1024) {
    return sendError(res, 400, 'invalid_param', 'password must be a string of at most 1024 bytes.', 'password');
  }
  const iterations = p.iterations ?? 210000;
  if (!Number.isInteger(iterations) || iterations < 1000 || iterations > 10000000) {
    return sendError(res, 400, 'invalid_param', 'iterations must be an integer from 1000 to 10000000.', 'iterations');
  }
  const salt = crypto.randomBytes(16);
  hashing++;
  crypto.pbkdf2(p.password, salt, iterations, 64, 'sha512', (err, key) => {
    hashing--;
    if (err) return sendError(res, 500, 'internal', `pbkdf2 failed: ${err.message}.`);
    send(res, 200, { hash: key.toString('hex'), salt: salt.toString('hex') });
  });
}

function handle(req, res) {
  const url = req.url;
  const qi = url.indexOf('?');
  const p = qi < 0 ? url : url.slice(0, qi);
  const search = qi < 0 ? '' : url.slice(qi + 1);
  if (p === '/health') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(req, res, p, 'GET, HEAD');
    if (!parseQuery(res, search, [])) return;
    const depth = pool.queueSize;
    return send(res, 200, {
      status: 'ok',
      workers: { total: pool.threads.length, busy: Math.min(cfg.poolSize, Math.max(0, running - depth)) },
      queue: { depth, capacity: QUEUE_CAPACITY },
      hashing,
      uptimeMs: Math.floor(performance.now() - startedMono),
    });
  }
  if (p === '/process') {
    if (req.method !== 'POST') return methodNotAllowed(req, res, p, 'POST');
    return processImage(req, res, search);
  }
  if (p === '/pbkdf2') {
    if (req.method !== 'POST') return methodNotAllowed(req, res, p, 'POST');
    return pbkdf2(req, res, search);
  }
  sendError(res, 404, 'not_found', `There is no endpoint at ${p.slice(0, 200)}.`);
}

const server = http.createServer(handle);
server.keepAliveTimeout = 30000;
server.requestTimeout = 0; // large uploads on a busy machine

// Listen once every thread is online (as node-piscina does).
const online = pool.threads.map((w) => new Promise((resolve) => w.once('online', resolve)));
const fallback = new Promise((resolve) => setTimeout(resolve, 3000).unref());
run(server, cfg, Promise.race([Promise.all(online), fallback]), () => pool.destroy());
