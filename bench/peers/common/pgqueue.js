'use strict';
// The closed-loop driver shared by node-graphile and node-pgboss (bench S16):
// one producer process and NODES worker processes ("nodes"), all on one
// PostgreSQL. The producer keeps INFLIGHT tiny no-op jobs in flight: each
// lane adds a job, waits until that job's completion is committed, adds the
// next. A worker process runs the library's own worker (concurrency WORKERS)
// and tells the producer, over IPC, the ids whose completion the library has
// just committed (it hooks the library's own "complete" query and reports
// after PostgreSQL answered it), checking that each such job's handler ran.
//
// Latency = add() called -> the completion's IPC message received. Warm-up
// WARMUP_S seconds (not counted), then SECONDS measured: jobs/s = jobs
// completed in the window / window; p50/p99 over the jobs added in the window.
// Then lanes stop adding and the producer waits (at most DRAIN_S) for the
// jobs still out: any left then are "lost".
//
// Environment: PGHOST (socket dir), PGPORT, PGDATABASE, PGUSER (libpq's names;
// node-postgres reads them too), NODES (1), WORKERS (os.availableParallelism()),
// INFLIGHT (64), SECONDS (5), WARMUP_S (1), DRAIN_S (30),
// PRODUCER_CONNS (connections of the producer's pool, 16), PG_POSTMASTER_PID
// (when set, the database's CPU time is read from /proc over the run).
// CPU seconds over the run (warm-up + window + drain, as the completed
// count): the producer's (client_cpu_s), the worker processes' (nodes_cpu_s)
// and PostgreSQL's (db_cpu_s: the postmaster and its children, the ones that
// exited counted through the postmaster's cutime/cstime), and the whole
// machine's (machine_cpu_s, /proc/stat: whatever else ran meanwhile shows).
// Prints one JSON line on stdout.
const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');

const TICK = 100; // USER_HZ: /proc's clock ticks per second on Linux

// utime + stime (+ cutime + cstime: reaped children) of one process, seconds.
function procCpu(pid, withChildren) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): utime is field 14 -> f[11]
    let t = Number(f[11]) + Number(f[12]);
    if (withChildren) t += Number(f[13]) + Number(f[14]);
    return t / TICK;
  } catch {
    return 0;
  }
}

// Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat.
function machineCpu() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0)) / TICK;
  } catch {
    return 0;
  }
}

// The CPU seconds of a process and all its live children, plus the children
// it has reaped (cutime/cstime).
function treeCpu(rootPid) {
  let total = procCpu(rootPid, true);
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === rootPid) total += procCpu(Number(d), false);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

function envInt(name, dflt, min, max) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`${name} must be a number from ${min} to ${max}; got "${v}"\n`);
    process.exit(2);
  }
  return n;
}

function settings() {
  return {
    nodes: envInt('NODES', 1, 1, 16),
    workers: envInt('WORKERS', os.availableParallelism(), 1, 256),
    inflight: envInt('INFLIGHT', 64, 1, 4096),
    seconds: envInt('SECONDS', 5, 0.1, 3600),
    warmupS: envInt('WARMUP_S', 1, 0, 600),
    drainS: envInt('DRAIN_S', 30, 1, 600),
    producerConns: envInt('PRODUCER_CONNS', 16, 1, 200),
  };
}

// PostgreSQL connection for node-postgres, from libpq's environment names.
function pgConfig(max) {
  return {
    host: process.env.PGHOST || '/var/run/postgresql',
    port: Number(process.env.PGPORT || 5432),
    database: process.env.PGDATABASE || 'offload',
    user: process.env.PGUSER || 'postgres',
    max,
  };
}

function pick(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.round(p * (sorted.length - 1)))];
}

// ---------------------------------------------------------------- worker side

// Runs in each worker process. startWorker(report) starts the library's
// worker and returns {stop()}; it calls ran(id) in the job handler and
// report(ids) once the library's completion of those ids is committed.
function workerMain(startWorker) {
  const ran = new Set();
  let notRun = 0;
  const ranFn = (id) => ran.add(String(id));
  const report = (ids) => {
    const done = [];
    for (const raw of ids) {
      const id = String(raw);
      if (!ran.delete(id)) notRun++;
      done.push(id);
    }
    process.send({ t: 'done', ids: done, notRun });
  };
  let handle;
  process.on('message', async (m) => {
    if (m.t === 'stop') {
      try {
        if (handle) await handle.stop();
      } catch (e) {
        process.stderr.write(`stop: ${e.stack || e}\n`);
      }
      process.send({ t: 'stopped', notRun, pending: ran.size }, () => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  startWorker({ ran: ranFn, report })
    .then((h) => {
      handle = h;
      process.send({ t: 'ready' });
    })
    .catch((e) => {
      process.stderr.write(`worker failed to start: ${e.stack || e}\n`);
      process.exit(1);
    });
}

// ---------------------------------------------------------------- producer side

// peer: name; setup(): prepares the schema (fresh database assumed), returns
// {add(): Promise<id>, close()}; script: the file to fork as a worker
// (with argv[2] === 'worker'); extra: settings to print.
async function producerMain({ peer, setup, script, extra }) {
  const s = settings();
  const t0 = process.hrtime.bigint();
  const nowMs = () => Number(process.hrtime.bigint() - t0) / 1e6;

  const api = await setup(s);
  const children = [];
  const ready = [];
  const startAt = new Map(); // id -> ms when add() was called
  const early = new Map(); // completions that arrived before add() resolved: id -> ms
  const waiters = new Map(); // id -> resolve(ms)
  let notRun = 0;
  let unknown = 0;

  const onDone = (ids) => {
    const at = nowMs();
    for (const id of ids) {
      const w = waiters.get(id);
      if (w) {
        waiters.delete(id);
        w(at);
      } else early.set(id, at);
    }
  };

  for (let i = 0; i < s.nodes; i++) {
    const c = fork(script, ['worker'], {
      env: { ...process.env, NODE_INDEX: String(i), WORKERS: String(s.workers) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const notRunByChild = { v: 0 };
    ready.push(
      new Promise((resolve, reject) => {
        c.on('message', (m) => {
          if (m.t === 'ready') resolve();
          else if (m.t === 'done') {
            notRun += m.notRun - notRunByChild.v;
            notRunByChild.v = m.notRun;
            onDone(m.ids);
          }
        });
        c.on('exit', (code) => reject(new Error(`worker ${i} exited (${code})`)));
      }),
    );
    children.push(c);
  }
  const killAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.on('exit', killAll);
  await Promise.race([Promise.all(ready), new Promise((_, rej) => setTimeout(() => rej(new Error('workers not ready in 60 s')), 60000))]);

  const pgPid = Number(process.env.PG_POSTMASTER_PID || 0);
  const nodesCpu = () => children.reduce((a, c) => a + procCpu(c.pid, true), 0);
  const selfCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  const cpu0 = { db: pgPid ? treeCpu(pgPid) : null, nodes: nodesCpu(), client: selfCpu(), machine: machineCpu() };
  const tWarm = nowMs();
  const tMeasure = tWarm + s.warmupS * 1000;
  const tEnd = tMeasure + s.seconds * 1000;
  const lat = [];
  let doneInWindow = 0;
  let added = 0;
  let completed = 0;
  let addErrors = 0;
  let firstError = null;

  const completion = (id) =>
    new Promise((resolve) => {
      const at = early.get(id);
      if (at !== undefined) {
        early.delete(id);
        resolve(at);
      } else waiters.set(id, resolve);
    });

  async function lane() {
    while (nowMs() < tEnd) {
      const start = nowMs();
      let id;
      try {
        id = String(await api.add());
      } catch (e) {
        addErrors++;
        if (!firstError) firstError = String(e.stack || e);
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      added++;
      startAt.set(id, start);
      const end = await completion(id);
      startAt.delete(id);
      completed++;
      if (end >= tMeasure && end < tEnd) doneInWindow++;
      if (start >= tMeasure && start < tEnd) lat.push(end - start);
    }
  }

  // Lanes stop adding at tEnd; the ones still waiting get DRAIN_S to see
  // their job complete.
  const lanes = Array.from({ length: s.inflight }, lane);
  const drained = await Promise.race([
    Promise.all(lanes).then(() => true),
    new Promise((r) => setTimeout(() => r(false), (tEnd - nowMs()) + s.drainS * 1000)),
  ]);
  const lost = drained ? 0 : waiters.size;
  unknown = early.size;
  const tDone = nowMs();
  const cpu = {
    db_cpu_s: pgPid ? treeCpu(pgPid) - cpu0.db : null,
    nodes_cpu_s: nodesCpu() - cpu0.nodes,
    client_cpu_s: selfCpu() - cpu0.client,
    machine_cpu_s: machineCpu() - cpu0.machine,
  };

  // Stop the workers cleanly (their counts of handlers that never completed).
  let pendingRan = 0;
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => { c.kill('SIGKILL'); resolve(); }, 10000);
          c.on('message', (m) => {
            if (m.t === 'stopped') pendingRan += m.pending;
          });
          c.on('exit', () => { clearTimeout(timer); resolve(); });
          if (c.connected) c.send({ t: 'stop' });
        }),
    ),
  );
  await api.close();

  lat.sort((a, b) => a - b);
  const out = {
    peer,
    nodes: s.nodes,
    workers_per_node: s.workers,
    inflight: s.inflight,
    producer_conns: s.producerConns,
    warmup_s: s.warmupS,
    seconds: s.seconds,
    jobs: doneInWindow,
    jobs_per_s: doneInWindow / s.seconds,
    p50_ms: pick(lat, 0.5),
    p99_ms: pick(lat, 0.99),
    max_ms: lat.length ? lat[lat.length - 1] : null,
    added,
    completed,
    lost,
    not_run: notRun,
    unknown_completions: unknown,
    handler_ran_not_completed: pendingRan,
    add_errors: addErrors,
    first_error: firstError,
    run_s: (tDone - tWarm) / 1000,
    ...cpu,
    ...extra(s),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(lost || notRun || addErrors ? 3 : 0);
}

module.exports = { settings, pgConfig, workerMain, producerMain, envInt };
