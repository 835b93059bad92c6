#!/usr/bin/env python3
"""make bench: every speed and cost claim of offload, measured side by side
with the Node.js peers (and nginx as the raw-C front-door reference) in one
run on this machine.

Usage: bench/run.py [--quick] [--only S1,S2,...,S16] [--out DIR]
  --quick   the same scenarios, smaller and shorter (make bench QUICK=1); writes
            to bench/results/quick unless --out says otherwise
  --only    the scenarios to run, e.g. `--only S11,S12` (default: all sixteen)
  --smoke   scenarios 2 and 4 for a few seconds against offload alone (S4 in
            both isolation modes); fails unless they ran and produced numbers
            (run by make test)

offload runs as "offload" (jobs in worker threads, the default) and, in
scenarios 2-5, also as "offload-process" (`--isolation process`: every job in
a pool of `offload worker` processes, one frame out and one back per job).

Servers are started and killed by PID, listen on 127.0.0.1 only, and every
load is bounded in count and time. The machine is shared and noisy: servers
run in alternating rounds (A B C ... A B C ...), figures are medians over the
rounds, and conclusions are ratios from this run only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http import client as http_client  # (run.py's own `http` below is a one-shot JSON helper)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import hostile  # noqa: E402  (bench/hostile.py: the hostile clients of S9)
BUILD = os.environ.get("OFFLOAD_BUILD", os.path.join(ROOT, "build"))
PEERS = os.path.join(ROOT, "bench", "peers")
CORES = os.cpu_count() or 1

STARTED = []  # every Popen we own, killed at exit


# ---------------------------------------------------------------- helpers

def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(port, method, path, body=None, timeout=120):
    """One request on a fresh connection; returns (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def rss_kib(pid):
    """Resident set of a process and all its threads (Node workers are threads)."""
    return hostile.vm_rss_kib(pid)


def run_json(cmd, timeout):
    """Runs a command that prints one JSON line; returns the object."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode not in (0, 3):  # loadgen exits 3 when some requests failed
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr[-500:]}")
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON: {out.stdout[-300:]} {out.stderr[-300:]}")
    return json.loads(lines[-1])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def loadgen():
    return os.path.join(BUILD, "loadgen")


# ---------------------------------------------------------------- servers

class Server:
    """One server under test. kind: offload | node | nginx."""

    def __init__(self, name, kind, workers=CORES, extra=None, env=None):
        self.name, self.kind, self.workers = name, kind, workers
        self.extra, self.env = extra or [], env or {}
        self.proc = None
        self.port = None
        self.tmp = None

    @property
    def pooled(self):
        return self.name not in ("offload-inline", "node-blocking", "nginx")

    @property
    def has_wait(self):
        return self.kind == "offload"

    def cmd(self):
        if self.kind == "offload":
            # The Node peers keep nothing, so the scenarios that compare with
            # them run offload's memory store too; S10 measures the SQLite
            # store (the default) on its own. A server that asks for SQLite
            # without a --data-dir gets a fresh temp one (never ./offload-data,
            # which would carry jobs from one server to the next).
            extra = list(self.extra)
            if "--store" not in extra:
                extra += ["--store", "memory"]
            elif "--data-dir" not in extra and "memory" not in extra:
                self.tmp = tempfile.mkdtemp(prefix="offload-bench-")
                extra += ["--data-dir", self.tmp]
            # No access log: nginx runs with access_log off (bench/nginx/nginx.conf.in).
            return [os.path.join(BUILD, "offload"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", str(self.workers), "--drain-timeout-s", "0", "--log-level", "warn",
                    "--access-log", "off"] + extra
        if self.kind == "node":
            script = {"node-seed": "node-seed", "node-piscina": "node-piscina", "node-piscina-nice": "node-piscina",
                      "node-blocking": "node-blocking", "node-sharp": "node-sharp",
                      "node-sharp-clone": "node-sharp"}[self.name.split("@")[0]]
            return ["node", os.path.join(PEERS, script, "server.js")]
        if self.kind == "nginx":
            return ["nginx", "-c", os.path.join(self.tmp, "nginx.conf"), "-e", os.path.join(self.tmp, "error.log")]
        raise ValueError(self.kind)

    def start(self):
        self.port = free_port()
        env = dict(os.environ)
        env.update({"PORT": str(self.port), "HOST": "127.0.0.1", "POOL_SIZE": str(self.workers)})
        if self.name.startswith("node-piscina-nice"):
            env["NICE"] = "19"
        env.update(self.env)
        if self.kind == "nginx":
            self.tmp = tempfile.mkdtemp(prefix="offload-nginx-")
            with open(os.path.join(ROOT, "bench", "nginx", "nginx.conf.in")) as f:
                conf = f.read()
            conf = conf.replace("@PORT@", str(self.port)).replace("@WORKERS@", str(CORES)).replace("@DIR@", self.tmp)
            with open(os.path.join(self.tmp, "nginx.conf"), "w") as f:
                f.write(conf)
        log_f = open(self.log_path, "ab") if getattr(self, "log_path", None) else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd(), env=env, stdout=subprocess.DEVNULL, stderr=log_f,
                                     start_new_session=True)
        if log_f is not subprocess.DEVNULL:
            log_f.close()
        STARTED.append(self.proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start ({self.proc.returncode})")
            try:
                st, body = http(self.port, "GET", "/health", timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /health within 20 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its whole group: nginx workers too
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    @property
    def pid(self):
        return self.proc.pid

    def rss_total_kib(self):
        """RSS of the server process, plus its children (nginx workers)."""
        total = rss_kib(self.pid)
        try:
            kids = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout.split()
            total += sum(rss_kib(int(k)) for k in kids)
        except OSError:
            pass
        return total

    # --- the job cycle, the same four endpoints everywhere ---

    def start_report(self, n):
        st, body = http(self.port, "GET", f"/tasks/reports/start?heavyIterations={n}")
        if st != 202:
            raise RuntimeError(f"{self.name}: start returned {st}: {body}")
        return body["jobId"]

    def wait_report(self, job_id, timeout=600, poll=0.02):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.has_wait:
                st, body = http(self.port, "GET", f"/jobs/{job_id}?wait=60", timeout=70)
            else:
                st, body = http(self.port, "GET", f"/tasks/reports/{job_id}", timeout=timeout)
            if st == 200 and body.get("status") in ("complete", "failed", "canceled"):
                return body
            if not self.has_wait:
                time.sleep(poll)
        raise RuntimeError(f"{self.name}: job {job_id} not final after {timeout} s")


def make(name, workers=CORES, extra=None):
    if name == "offload":
        return Server(name, "offload", workers, extra)
    if name == "offload-process":
        return Server(name, "offload", workers, ["--isolation", "process"] + (extra or []))
    if name == "offload-inline":
        return Server(name, "offload", workers, ["--inline"] + (extra or []))
    if name == "nginx":
        return Server(name, "nginx", workers)
    if name.startswith("node-sharp"):
        # crypto.pbkdf2 and sharp's pipelines run on libuv's thread pool: as
        # many threads as offload has workers.
        env = {"UV_THREADPOOL_SIZE": str(workers)}
        if name == "node-sharp-clone":
            env["SHARP_PIPELINE"] = "clone"
        return Server(name, "node", workers, env=env)
    return Server(name, "node", workers)


def rounds(names, n_rounds, fn):
    """Runs fn(server) for each name, alternating order A B C A B C; returns {name: [results]}."""
    out = {n: [] for n in names}
    for r in range(n_rounds):
        for name in names:
            s = make(name)
            try:
                s.start()
                out[name].append(fn(s, r))
            finally:
                s.stop()
    return out


class Background:
    """A loadgen latency run in the background, stopped by SIGINT."""

    def __init__(self, port, series=None, interval_us=1000, max_s=300):
        cmd = [loadgen(), "latency", "--port", str(port), "--n", "100000000", "--max-s", str(max_s),
               "--interval-us", str(interval_us)]
        if series:
            cmd += ["--series", series]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        STARTED.append(self.proc)
        self.t0 = time.time()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None


def series_stats(path, t_from, t_to):
    """p50/p99/p99.9/max (ms) of the latencies whose request started in [t_from, t_to)."""
    xs = []
    with open(path) as f:
        for line in f:
            t, lat = line.split()
            if t_from <= float(t) < t_to:
                xs.append(float(lat))
    xs.sort()
    if not xs:
        return {"n": 0}
    pick = lambda p: xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]
    return {"n": len(xs), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "p999_ms": pick(0.999), "max_ms": xs[-1]}


# ---------------------------------------------------------------- calibration

def calibrate(target_s):
    """heavyIterations that take about target_s seconds for the C kernel."""
    probe = 200_000_000
    r = run_json([os.path.join(BUILD, "kernels"), "report", str(probe)], 120)
    per = r["seconds"] / probe
    return max(1_000_000, int(target_s / per))


# ---------------------------------------------------------------- scenarios

POOLED_PEERS = ["node-seed", "node-piscina", "node-piscina-nice"]
ALL_JOB_SERVERS = ["offload", "offload-inline"] + POOLED_PEERS + ["node-blocking"]
# S2-S4 run offload in both isolation modes side by side.
MODE_JOB_SERVERS = ["offload", "offload-process", "offload-inline"] + POOLED_PEERS + ["node-blocking"]
# Per-job overhead of process isolation over threads, tiny jobs (S4).
PROCESS_OVERHEAD_TARGET_US = 50.0


def s1_worker_benchmark(cfg):
    """The seeds' worker-benchmark.js: one ~3 s report job, blocking vs pooled."""
    n = cfg["n_3s"]

    def one(s, r):
        bg = Background(s.port, interval_us=1000, max_s=120)
        time.sleep(0.3)
        t0 = time.time()
        jid = s.start_report(n)
        body = s.wait_report(jid, poll=0.05)
        total = time.time() - t0
        lat = bg.stop()
        return {"total_s": total, "result": body.get("result"), "health": lat}

    res = rounds(ALL_JOB_SERVERS, cfg["rounds"], one)
    out = {}
    for name, runs in res.items():
        out[name] = {
            "total_s": med([x["total_s"] for x in runs]),
            "health_p50_us": med([x["health"]["p50_us"] for x in runs if x["health"]]),
            "health_p99_us": med([x["health"]["p99_us"] for x in runs if x["health"]]),
            "health_max_us": med([x["health"]["max_us"] for x in runs if x["health"]]),
            "health_n": med([x["health"]["n"] for x in runs if x["health"]]),
            "runs": runs,
        }
    return {"heavyIterations": n, "servers": out}


def s2_saturation(cfg, names=None, series_dir=None):
    """Every worker busy and jobs queued: /health latency loaded vs idle."""
    names = names or MODE_JOB_SERVERS
    n_job = cfg["n_job"]
    k = 2 * CORES + 2

    def one(s, r):
        idle = run_json([loadgen(), "latency", "--port", str(s.port), "--n", str(cfg["health_n"]),
                         "--interval-us", "1000", "--max-s", "60"], 90)
        series = os.path.join(series_dir, f"{s.name}.r{r}.txt")
        bg = Background(s.port, series=series, interval_us=1000, max_s=cfg["sat_max_s"])
        time.sleep(1.0)
        t_start = time.time() - bg.t0
        ids = [s.start_report(n_job) for _ in range(k)]
        # Hold the jobs in flight long enough for >= health_n loaded samples.
        for jid in ids:
            s.wait_report(jid, timeout=cfg["sat_max_s"], poll=0.05)
        t_end = time.time() - bg.t0
        time.sleep(0.5)
        bg.stop()
        loaded = series_stats(series, t_start, t_end)
        return {"idle": idle, "loaded": loaded, "t_start": t_start, "t_end": t_end, "series": series}

    res = rounds(names, cfg["rounds"], one)
    out = {}
    for name, runs in res.items():
        ip50 = med([x["idle"]["p50_us"] / 1000 for x in runs])
        ip99 = med([x["idle"]["p99_us"] / 1000 for x in runs])
        lp50 = med([x["loaded"].get("p50_ms") for x in runs])
        lp99 = med([x["loaded"].get("p99_ms") for x in runs])
        out[name] = {
            "idle_p50_ms": ip50, "idle_p99_ms": ip99,
            "idle_p999_ms": med([x["idle"]["p999_us"] / 1000 for x in runs]),
            "idle_max_ms": med([x["idle"]["max_us"] / 1000 for x in runs]),
            "loaded_p50_ms": lp50, "loaded_p99_ms": lp99,
            "loaded_p999_ms": med([x["loaded"].get("p999_ms") for x in runs]),
            "loaded_max_ms": med([x["loaded"].get("max_ms") for x in runs]),
            "loaded_n": med([x["loaded"]["n"] for x in runs]),
            "ratio_p50": lp50 / ip50 if lp50 and ip50 else None,
            "ratio_p99": lp99 / ip99 if lp99 and ip99 else None,
            "runs": runs,
        }
    return {"jobs": k, "heavyIterations": n_job, "servers": out}


def wrk(port, seconds, conns=16):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s",
                          f"http://127.0.0.1:{port}/health"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    to_ms = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": float(rps.group(1)) if rps else 0.0,
            "p99_ms": float(p99.group(1)) * to_ms[p99.group(2)] if p99 else None}


def s3_front_door(cfg):
    """wrk on /health, idle and while every worker is busy."""
    names = MODE_JOB_SERVERS + ["nginx"]
    secs = cfg["wrk_s"]

    def one(s, r):
        idle = wrk(s.port, secs)
        loaded = None
        if s.kind != "nginx":
            # Enough work to outlast the wrk run on every worker, plus a queue.
            n_long = int(cfg["n_3s"] * (secs + 3) / 3)
            for _ in range(CORES + 2):
                s.start_report(n_long)
            time.sleep(0.3)
            loaded = wrk(s.port, secs)
        return {"idle": idle, "loaded": loaded}

    res = rounds(names, cfg["rounds"], one)
    out = {}
    for name, runs in res.items():
        out[name] = {
            "idle_rps": med([x["idle"]["rps"] for x in runs]),
            "idle_p99_ms": med([x["idle"]["p99_ms"] for x in runs]),
            "loaded_rps": med([x["loaded"]["rps"] for x in runs if x["loaded"]]),
            "loaded_p99_ms": med([x["loaded"]["p99_ms"] for x in runs if x["loaded"]]),
            "runs": runs,
        }
    return {"wrk": f"-t1 -c16 -d{secs}s", "servers": out}


def s4_tiny_jobs(cfg, names=None):
    """20000 report jobs of heavyIterations=1 at 32 in flight; plus the pool API alone."""
    names = names or (MODE_JOB_SERVERS + ["nginx"])
    jobs = cfg["tiny_jobs"]

    def one(s, r):
        res = {}
        modes = [True, False] if s.kind == "offload" else [False]
        for wait in modes:
            cmd = [loadgen(), "jobs", "--port", str(s.port), "--jobs", str(jobs), "--inflight", "32",
                   "--max-s", str(cfg["tiny_max_s"])]
            if wait:
                cmd.append("--wait")
            res["wait" if wait else "poll"] = run_json(cmd, cfg["tiny_max_s"] + 30)
        return res

    res = rounds(names, cfg["rounds"], one)
    out = {}
    for name, runs in res.items():
        for mode in ("wait", "poll"):
            rs = [x[mode] for x in runs if mode in x]
            if not rs:
                continue
            out[f"{name} ({mode})" if name.startswith("offload") else name] = {
                "jobs_per_s": med([x["jobs_per_s"] for x in rs]),
                "requests_per_s": med([x["requests_per_s"] for x in rs]),
                "p99_ms": med([x["p99_us"] / 1000 for x in rs]),
                "errors": sum(x["errors"] for x in rs),
                "completed": med([x["jobs"] for x in rs]),
                "runs": rs,
            }
    # Per-job cost at this concurrency, µs/job = 1e6 / jobs/s, and what process
    # isolation adds over threads (both measured in this run).
    per_job = {}
    for mode in ("wait", "poll"):
        th, pr = out.get(f"offload ({mode})"), out.get(f"offload-process ({mode})")
        if th and pr and th["jobs_per_s"] and pr["jobs_per_s"]:
            t_us, p_us = 1e6 / th["jobs_per_s"], 1e6 / pr["jobs_per_s"]
            per_job[mode] = {"thread_us": t_us, "process_us": p_us, "overhead_us": p_us - t_us,
                             "met": p_us - t_us < PROCESS_OVERHEAD_TARGET_US}
    micro = {}
    if not cfg.get("smoke"):
        pool_runs, pisc_runs = [], []
        for _ in range(cfg["rounds"]):
            pool_runs.append(run_json([os.path.join(BUILD, "pool_bench"), "throughput", "--tasks",
                                       str(cfg["micro_tasks"]), "--inflight", "64"], 300))
            pisc_runs.append(run_json(["node", os.path.join(PEERS, "micro", "piscina-empty.js"),
                                       str(cfg["micro_tasks"]), "64"], 600))
        micro = {"offload-pool": {"tasks_per_s": med([x["tasks_per_s"] for x in pool_runs]), "runs": pool_runs},
                 "piscina": {"tasks_per_s": med([x["tasks_per_s"] for x in pisc_runs]), "runs": pisc_runs}}
    return {"jobs": jobs, "inflight": 32, "servers": out, "per_job": per_job,
            "target_overhead_us": PROCESS_OVERHEAD_TARGET_US, "micro": micro}


def process_startup(cfg, k=100):
    """A worker process's spawn -> ready -> first task done. One worker, replaced
    after every job (--max-jobs-per-worker 1); k tiny jobs queue behind a
    blocker job, so after it each tiny job needs a fresh process, and the loop
    chains spawn, READY, the job and its result with no HTTP in between. The
    mean time between finishes (the jobs' ms stamps over k jobs, so 1/k ms
    resolution) is one such cycle; the same run without recycling gives the
    cycle of a warm worker."""

    def chain(s):
        blocker = s.start_report(cfg["n_job"])
        ids = [s.start_report(1) for _ in range(k)]
        b = s.wait_report(blocker)
        jobs = [s.wait_report(j) for j in ids]
        st, text = http(s.port, "GET", "/metrics")
        m = re.search(r'^offload_worker_restarts_total\{cause="recycled"\} (\d+)', text, re.M)
        return {"cycle_ms": (jobs[-1]["finishedAt"] - b["finishedAt"]) / k,
                "queued_in_time": all(j["createdAt"] <= b["finishedAt"] for j in jobs),
                "completed": sum(j["status"] == "complete" for j in jobs),
                "recycled": int(m.group(1)) if m else None}

    out = {n: [] for n in ("recycled", "warm")}
    for _ in range(cfg["rounds"]):
        for mode, extra in (("recycled", ["--max-jobs-per-worker", "1"]), ("warm", [])):
            s = make("offload-process", workers=1, extra=extra)
            try:
                s.start()
                out[mode].append(chain(s))
            finally:
                s.stop()
    runs = out["recycled"] + out["warm"]
    valid = all(x["queued_in_time"] and x["completed"] == k for x in runs) and \
        all(x["recycled"] == k + 1 for x in out["recycled"])
    return {"k": k, "valid": valid, "cycle_ms": med([x["cycle_ms"] for x in out["recycled"]]),
            "warm_cycle_ms": med([x["cycle_ms"] for x in out["warm"]]), "runs": out}


def s5_worker_cost(cfg):
    """Worker start-up time and resident memory per idle worker."""
    startup = {"offload-thread": run_json([os.path.join(BUILD, "pool_bench"), "startup", "--samples", "50"], 120),
               "node-worker_threads": run_json(["node", os.path.join(PEERS, "micro", "worker-cost.js"), "50"], 300),
               "offload-process": process_startup(cfg)}
    rss = {}
    for name in ["offload", "offload-process", "node-seed", "node-piscina"]:
        per = []
        for _ in range(cfg["rounds"]):
            vals = {}
            for w in (1, 16):
                s = make(name, workers=w)
                try:
                    s.start()
                    time.sleep(1.5)  # let lazily started workers come up
                    vals[w] = s.rss_total_kib()
                finally:
                    s.stop()
            per.append({"rss1_kib": vals[1], "rss16_kib": vals[16], "per_worker_kib": (vals[16] - vals[1]) / 15})
        rss[name] = {"per_worker_kib": med([p["per_worker_kib"] for p in per]),
                     "rss1_kib": med([p["rss1_kib"] for p in per]), "rss16_kib": med([p["rss16_kib"] for p in per]),
                     "runs": per}
    return {"startup": startup, "rss": rss}


def s6_kernel(cfg):
    """The job framework's overhead against the bare loop, same compiler flags."""
    out = {}
    for kernel, task, n in (("report", "report", cfg["kernel_report_n"]), ("fib", "fibonacci", cfg["kernel_fib_n"])):
        jobs, bare = [], []
        s = make("offload", workers=1)
        s.start()
        try:
            for _ in range(cfg["rounds"]):  # A B A B
                param = {"heavyIterations": n} if task == "report" else {"n": n}
                st, job = http(s.port, "POST", "/jobs", {"task": task, "params": param})
                jid = job["id"]
                while True:
                    st, job = http(s.port, "GET", f"/jobs/{jid}?wait=60", timeout=70)
                    if job["status"] in ("complete", "failed", "canceled"):
                        break
                jobs.append((job["finishedAt"] - job["startedAt"]) / 1000.0)
                bare.append(run_json([os.path.join(BUILD, "kernels"), kernel, str(n)], 600)["seconds"])
        finally:
            s.stop()
        j, b = med(jobs), med(bare)
        out[kernel] = {"n": n, "job_s": j, "bare_s": b, "overhead_pct": (j / b - 1) * 100 if b else None,
                       "jobs": jobs, "bare": bare}
    return out


def s7_scaling(cfg):
    """k report jobs at once on k workers, k = 1..cores: wall time relative to k=1."""
    n = cfg["n_scale"]

    def one(s, r):
        walls = {}
        for k in range(1, CORES + 1):
            t0 = time.time()
            ids = [s.start_report(n) for _ in range(k)]
            for jid in ids:
                s.wait_report(jid, poll=0.02)
            walls[k] = time.time() - t0
        return walls

    res = rounds(["offload"] + POOLED_PEERS[:2], cfg["rounds"] + 1, one)
    out = {}
    for name, runs in res.items():
        w = {k: med([r[k] for r in runs]) for k in range(1, CORES + 1)}
        out[name] = {"wall_s": w, "relative": {k: w[k] / w[1] for k in w}}
    return {"heavyIterations": n, "servers": out}


def s8_memory(cfg):
    """200000 tiny jobs pushed through: RSS before, peak, after eviction."""
    jobs = cfg["mem_jobs"]
    out = {}
    for name in ["offload", "node-seed", "node-piscina"]:
        extra = ["--retention-s", str(cfg["mem_retention_s"])] if name == "offload" else None
        s = make(name, extra=extra)
        s.start()
        try:
            time.sleep(0.5)
            before = s.rss_total_kib()
            def push():
                cmd = [loadgen(), "jobs", "--port", str(s.port), "--jobs", str(jobs), "--inflight", "32",
                       "--max-s", str(cfg["mem_max_s"])] + (["--wait"] if s.has_wait else [])
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                STARTED.append(p)
                peak = s.rss_total_kib()
                while p.poll() is None:
                    peak = max(peak, s.rss_total_kib())
                    time.sleep(0.1)
                lg = json.loads([l for l in p.stdout.read().splitlines() if l.startswith("{")][-1])
                return max(peak, s.rss_total_kib()), lg

            def wait_evicted():
                deadline = time.time() + cfg["mem_retention_s"] + 15
                while time.time() < deadline:
                    st, text = http(s.port, "GET", "/metrics")
                    m = re.search(r"^offload_jobs_retained (\d+)", text, re.M)
                    if m and int(m.group(1)) == 0:
                        time.sleep(0.5)
                        return True
                    time.sleep(0.5)
                return False

            peak, lg = push()
            after_run = s.rss_total_kib()
            evicted = wait_evicted() if name == "offload" else None
            after = s.rss_total_kib()
            row = {"before_kib": before, "peak_kib": peak, "after_run_kib": after_run, "after_kib": after,
                   "evicted_all": evicted, "completed": lg["jobs"], "errors": lg["errors"]}
            if name == "offload":
                # The same load again: freed memory is reused, so the peak must not grow.
                peak2, lg2 = push()
                wait_evicted()
                row.update({"peak2_kib": peak2, "after2_kib": s.rss_total_kib(), "completed2": lg2["jobs"]})
            out[name] = row
        finally:
            s.stop()
    return {"jobs": jobs, "servers": out}


# S10: the job store's cost on the submit path, offload alone (the peers keep
# nothing). Target: strict durability at 64 in flight >= 20000 submissions/s
# and within 2x of --store memory at 64 in flight.
STORE_SERVERS = [
    ("memory", ["--store", "memory"]),
    ("sqlite-relaxed", ["--store", "sqlite", "--durability", "relaxed"]),
    ("sqlite-strict", ["--store", "sqlite", "--durability", "strict"]),
]
SUBMIT_INFLIGHT = [1, 8, 64]
SUBMIT_TARGET = {"strict_64_per_s": 20000.0, "max_ratio_vs_memory": 2.0}


def s10_submissions(cfg):
    """POST /jobs {"task":"report","params":{"heavyIterations":1}} with K in
    flight over K keep-alive connections (loadgen submit), for memory, sqlite
    relaxed and sqlite strict: submissions/s and the time to the 202 (which,
    with sqlite, waits for the row's commit). Each server starts fresh with its
    own temp data dir (deleted after) and a queue large enough never to fill;
    the jobs are tiny, so the default workers keep up. Servers alternate
    round by round; within a round one server runs K = 1, 8, 64 in turn after a
    short unmeasured warm-up."""
    secs = cfg["submit_s"]
    runs = {(name, k): [] for name, _ in STORE_SERVERS for k in SUBMIT_INFLIGHT}
    db_bytes = {name: [] for name, _ in STORE_SERVERS}
    for r in range(cfg["submit_rounds"]):
        for name, extra in STORE_SERVERS:
            data = tempfile.mkdtemp(prefix=f"offload-s10-{name}-")
            args = extra + (["--data-dir", data] if "sqlite" in extra else []) + ["--max-queue", "1000000"]
            s = Server(name, "offload", CORES, args)
            s.tmp = data  # stop() deletes it
            try:
                s.start()
                run_json([loadgen(), "submit", "--port", str(s.port), "--inflight", "8", "--n",
                          str(cfg["submit_warmup"]), "--max-s", "60"], 90)
                for k in SUBMIT_INFLIGHT:
                    x = run_json([loadgen(), "submit", "--port", str(s.port), "--inflight", str(k), "--seconds",
                                  str(secs), "--max-s", str(secs + 60)], secs + 90)
                    runs[(name, k)].append(x)
                    log(f"S10 r{r} {name} @{k}: {x['accepted_per_s']:.0f}/s, p50 {x['p50_us'] / 1000:.2f} ms, "
                        f"p99 {x['p99_us'] / 1000:.2f} ms, max {x['max_us'] / 1000:.1f} ms"
                        + (f", {x['non_202']} non-202" if x["non_202"] else "")
                        + (f", {x['errors']} errors" if x["errors"] else ""))
                db = os.path.join(data, "offload.db")
                if os.path.exists(db):
                    db_bytes[name].append(sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)))
            finally:
                s.stop()
    servers = {}
    for name, _ in STORE_SERVERS:
        servers[name] = {}
        for k in SUBMIT_INFLIGHT:
            rs = runs[(name, k)]
            servers[name][str(k)] = {
                "per_s": med([x["accepted_per_s"] for x in rs]),
                "p50_ms": med([x["p50_us"] / 1000 for x in rs]),
                "p99_ms": med([x["p99_us"] / 1000 for x in rs]),
                "p999_ms": med([x["p999_us"] / 1000 for x in rs]),
                "max_ms": max([x["max_us"] / 1000 for x in rs], default=None),
                "accepted": sum(x["accepted"] for x in rs),
                "non_202": sum(x["non_202"] for x in rs),
                "errors": sum(x["errors"] for x in rs),
                "runs": rs,
            }
    strict = servers["sqlite-strict"]["64"]["per_s"]
    memory = servers["memory"]["64"]["per_s"]
    ratio_ = memory / strict if memory and strict else None
    met = bool(strict and ratio_ is not None and strict >= SUBMIT_TARGET["strict_64_per_s"]
               and ratio_ <= SUBMIT_TARGET["max_ratio_vs_memory"])
    return {"seconds_per_cell": secs, "rounds": cfg["submit_rounds"], "inflight": SUBMIT_INFLIGHT,
            "servers": servers, "db_bytes": {k: med(v) for k, v in db_bytes.items()},
            "target": SUBMIT_TARGET, "strict_64_per_s": strict, "memory_64_per_s": memory,
            "memory_over_strict": ratio_, "met": met}


HOSTILE_TARGETS = {"a_health_max_ms": 250.0, "a_rss_growth_mib": 200.0, "b_health_p99_ms": 50.0}


def s9_hostile(cfg):
    """Hostile clients (issue 6, item 9), offload alone: the Node peers have no
    GET /jobs listing. Each case on a fresh server with 1000 finished jobs, so
    `GET /jobs?limit=1000` is a ~240 KB reply.
    A: C connections x R pipelined listings, never read, kept open while
       fresh-connection /health probes run (every 250 ms) and until the server
       goes quiet (at most hostile_hold_max_s); RSS before / peak / after.
    B: 4 connections keep 16 listings in flight each and read every reply for
       hostile_b_s seconds; a paced /health probe every 20 ms on fresh
       connections: p50 / p99 / max."""
    jobs = cfg["hostile_jobs"]
    out = {"jobs": jobs, "targets": HOSTILE_TARGETS, "a": {}, "b": {}}
    for conns, reqs in cfg["hostile_a"]:
        s = make("offload")
        try:
            s.start()
            hostile.prefill(s.port, jobs)
            out["listing_bytes"] = hostile.listing_size(s.port)
            r = hostile.case_a(s.port, s.pid, conns=conns, reqs=reqs, probe_gap=0.25, min_probes=8,
                               probe_timeout=cfg["hostile_hold_max_s"], hold_min_s=2.0,
                               hold_max_s=cfg["hostile_hold_max_s"], expect_jobs=jobs)
        finally:
            s.stop()
        r["met"] = (r["probes_ok"] == r["probes"] and r["health_max_ms"] is not None
                    and r["health_max_ms"] < HOSTILE_TARGETS["a_health_max_ms"]
                    and r["rss_growth_mib"] < HOSTILE_TARGETS["a_rss_growth_mib"] and not r["after_problems"])
        out["a"][f"{conns}x{reqs}"] = r
        log(f"S9 A {conns}x{reqs}: /health max {fmt(r['health_max_ms'], 1)} ms "
            f"({r['probes_ok']}/{r['probes']} answered), RSS {r['rss_before_kib'] // 1024} -> "
            f"{r['rss_peak_kib'] // 1024} -> {r['rss_after_kib'] // 1024} MiB")
    s = make("offload")
    try:
        s.start()
        hostile.prefill(s.port, jobs)
        r = hostile.case_b(s.port, s.pid, conns=4, depth=cfg["hostile_b_depth"], seconds=cfg["hostile_b_s"],
                           probe_interval=0.02, probe_timeout=30.0, expect_jobs=jobs)
    finally:
        s.stop()
    r["met"] = (not r["probe_errors"] and r["health_p99_ms"] is not None
                and r["health_p99_ms"] < HOSTILE_TARGETS["b_health_p99_ms"] and not r["after_problems"])
    out["b"][f"4x{cfg['hostile_b_depth']}"] = r
    log(f"S9 B: /health p50 {fmt(r['health_p50_ms'], 1)} p99 {fmt(r['health_p99_ms'], 1)} ms "
        f"({r['probes']} probes), {fmt(r.get('listings_per_s'))} listings/s read")
    return out


# ---------------------------------------------------------------- S11, S12: offload's real tasks vs Node's best

IMAGE_WIDTHS = [2048, 1024, 640, 320, 160]
IMAGE_QUERY = "widths=" + ",".join(map(str, IMAGE_WIDTHS)) + "&format=webp&quality=80"
# node-sharp decodes once and derives the smaller widths (offload's plan, and
# sharp's faster one); node-sharp-clone is sharp's clone() idiom.
IMAGE_SERVERS = ["offload", "node-sharp", "node-sharp-clone"]
PBKDF2_SERVERS = ["offload", "node-sharp"]
PBKDF2_ITERATIONS = 210000
PBKDF2_PASSWORD = "correct horse battery staple"
FINAL = ("complete", "failed", "canceled")


def make_photo(path, width=4000, height=3000):
    """A photo-like JPEG (quality 90) made with libvips' CLI: a fractal surface
    (clouds, rock) for luminance, tinted by two gradients (x toward red, y
    toward blue) through a colour matrix, plus a little Gaussian "sensor"
    noise. About 3.4 MB at 4000x3000, and its 2048-wide WebP at quality 80 is
    about 350 KB: in the range of a real photo (pure noise, or a smooth
    gradient, would be far off either way). fractsurf has no seed, so the bytes
    differ from run to run; one file serves every server of a run."""
    if not shutil.which("vips"):
        raise RuntimeError("S11 makes its image with libvips' CLI: install libvips-tools")
    d = tempfile.mkdtemp(prefix="offload-photo-")
    try:
        v = lambda n: os.path.join(d, n + ".v")
        mat = os.path.join(d, "tint.mat")
        with open(mat, "w") as f:  # rows: R, G, B from (luminance, x ramp, y ramp)
            f.write("3 3\n0.75 0.25 0.0\n0.8 0.05 0.15\n0.55 0.0 0.45\n")
        steps = [
            ["fractsurf", v("f"), str(width), str(height), "2.8"],
            ["scale", v("f"), v("l")],
            ["xyz", v("xy"), str(width), str(height)],
            ["linear", v("xy"), v("g"), f"{255 / width} {-255 / height}", "0 255"],
            ["bandjoin", f"{v('l')} {v('g')}", v("b3")],
            ["recomb", v("b3"), v("rc"), mat],
            ["gaussnoise", v("n"), str(width), str(height), "--sigma", "3", "--mean", "0", "--seed", "1"],
            ["add", v("rc"), v("n"), v("rn")],
            ["cast", v("rn"), v("u"), "uchar"],
            ["copy", v("u"), v("s"), "--interpretation", "srgb"],
            ["jpegsave", v("s"), path, "--Q", "90"],
        ]
        for st in steps:
            subprocess.run(["vips"] + st, check=True, capture_output=True, timeout=300)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return path


def library_versions():
    """libvips and libwebp on each side: offload links the system's, sharp ships its own."""
    out = {}
    for lib in ("vips", "libwebp", "libjpeg"):
        r = subprocess.run(["pkg-config", "--modversion", lib], capture_output=True, text=True)
        out[f"offload_{lib}"] = r.stdout.strip() or None
    r = subprocess.run(["node", "-p", "JSON.stringify(require('sharp').versions)"], cwd=PEERS,
                       capture_output=True, text=True)
    try:
        v = json.loads(r.stdout)
        out.update({"sharp": v.get("sharp"), "sharp_vips": v.get("vips"), "sharp_webp": v.get("webp"),
                    "sharp_jpeg": ("mozjpeg " + v["mozjpeg"]) if v.get("mozjpeg") else v.get("jpeg")})
    except ValueError:
        out["sharp"] = None
    return out


def pick(xs, p):
    """Nearest-rank percentile of a sorted list (with few samples, p99 is the max)."""
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))] if xs else None


def request(conn, method, path, body=None, headers=None):
    """One request on a keep-alive http.client connection: (status, parsed JSON)."""
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    raw = r.read()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw.decode(errors="replace")


def offload_job(conn, method, path, body, ctype):
    """offload's cycle: submit (202), then GET /jobs/<id>?wait=60 until final."""
    st, job = request(conn, method, path, body, {"Content-Type": ctype})
    if st != 202:
        raise RuntimeError(f"submit answered {st}: {str(job)[:200]}")
    while job.get("status") not in FINAL:
        st, job = request(conn, "GET", f"/jobs/{job['id']}?wait=60")
        if st != 200:
            raise RuntimeError(f"GET /jobs answered {st}: {str(job)[:200]}")
    if job["status"] != "complete":
        raise RuntimeError(f"job {job['status']}: {job.get('error')}")
    return job


def closed_loop(port, n_jobs, n_clients, cycle, timeout=300):
    """n_clients threads, one keep-alive connection each, take jobs from a
    shared count of n_jobs; each job is cycle(conn) (submit and wait for the
    result), timed from before the submit to the result read. Returns
    completed, wall time, the latencies (s) and the results."""
    lock = threading.Lock()
    state = {"issued": 0}
    lat, results, errors = [], [], []

    def client():
        conn = http_client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            while True:
                with lock:
                    if state["issued"] >= n_jobs:
                        return
                    state["issued"] += 1
                t0 = time.perf_counter()
                try:
                    res = cycle(conn)
                except Exception as e:  # counted, and a fresh connection for the next job
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}"[:300])
                    conn.close()
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    results.append(res)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"completed": len(lat), "errors": len(errors), "error_samples": errors[:3], "wall_s": wall,
            "latencies_s": lat, "results": results}


def cell_stats(run, per_s_key):
    xs = sorted(run["latencies_s"])
    return {per_s_key: run["completed"] / run["wall_s"] if run["wall_s"] > 0 else None,
            "p50_ms": pick(xs, 0.5) and pick(xs, 0.5) * 1000, "p99_ms": pick(xs, 0.99) and pick(xs, 0.99) * 1000,
            "max_ms": xs[-1] * 1000 if xs else None, "completed": run["completed"], "errors": run["errors"],
            "error_samples": run["error_samples"], "wall_s": run["wall_s"]}


def image_cycle(server, jpeg):
    """The image job's cycle for one server: a function of a connection that
    returns {"widths": [...], "names": [...], "bytes": total output bytes}."""
    if server.kind == "offload":
        def cycle(conn):
            job = offload_job(conn, "POST", f"/jobs/image?{IMAGE_QUERY}", jpeg, "image/jpeg")
            files = job.get("files") or []
            return {"names": [f["name"] for f in files], "types": [f["contentType"] for f in files],
                    "bytes": sum(f["bytes"] for f in files), "outputs": (job.get("result") or {}).get("outputs"),
                    "run_ms": job["finishedAt"] - job["startedAt"]}
    else:
        def cycle(conn):
            st, body = request(conn, "POST", f"/process?{IMAGE_QUERY}", jpeg, {"Content-Type": "image/jpeg"})
            if st != 200:
                raise RuntimeError(f"/process answered {st}: {str(body)[:200]}")
            outs = body["outputs"]
            return {"widths": [o["width"] for o in outs], "bytes": sum(o["bytes"] for o in outs)}
    return cycle


def check_image(server, res):
    """None if the job made the 5 expected outputs, else what is wrong."""
    if server.kind == "offload":
        want = [f"w{w}.webp" for w in IMAGE_WIDTHS]
        if sorted(res["names"]) != sorted(want) or set(res["types"]) != {"image/webp"} or res["outputs"] != 5:
            return f"offload's files are {res['names']} ({res['types']}), result outputs {res['outputs']}"
    elif sorted(res["widths"]) != sorted(IMAGE_WIDTHS):
        return f"{server.name}'s outputs have widths {res['widths']}"
    return None


def s11_images(cfg, tmpdir):
    """A 12-megapixel JPEG to five WebP widths (2048, 1024, 640, 320, 160;
    quality 80), W clients in a closed loop, a fixed number of images per cell:
    offload (`--workers C --process-workers C`, memory store) against
    node-sharp (piscina, POOL_SIZE C, UV_THREADPOOL_SIZE C, sharp.concurrency
    cores/C) in both of its pipelines. Servers alternate round by round; each
    starts fresh, runs an unmeasured warm-up of C images at once (every worker
    has loaded its libraries), checks that warm-up's outputs, then runs W = each
    of img_clients in turn."""
    photo = make_photo(os.path.join(tmpdir, "photo.jpg"))
    with open(photo, "rb") as f:
        jpeg = f.read()
    size = subprocess.run(["vipsheader", "-f", "width", photo], capture_output=True, text=True).stdout.strip(), \
        subprocess.run(["vipsheader", "-f", "height", photo], capture_output=True, text=True).stdout.strip()
    log(f"S11 image: {size[0]}x{size[1]}, {len(jpeg) / 1e6:.2f} MB")
    n, ws = cfg["img_count"], cfg["img_clients"]
    runs = {(name, w): [] for name in IMAGE_SERVERS for w in ws}
    checks = {}
    for r in range(cfg["rounds"]):
        for name in IMAGE_SERVERS:
            s = make(name, extra=["--process-workers", str(CORES)] if name == "offload" else None)
            try:
                s.start()
                cycle = image_cycle(s, jpeg)
                warm = closed_loop(s.port, CORES, CORES, cycle)
                if warm["errors"] or not warm["results"]:
                    raise RuntimeError(f"S11 {name}: the warm-up failed: {warm['error_samples']}")
                if name not in checks:
                    checks[name] = check_image(s, warm["results"][0]) or "ok"
                    if checks[name] != "ok":
                        log(f"S11 {name}: CHECK FAILED: {checks[name]}")
                for w in ws:
                    x = closed_loop(s.port, n, w, cycle)
                    x["bytes_per_image"] = med([y["bytes"] for y in x["results"]])
                    x["run_ms"] = med([y.get("run_ms") for y in x["results"]])
                    del x["results"]
                    runs[(name, w)].append(x)
                    c = cell_stats(x, "images_per_s")
                    log(f"S11 r{r} {name} W={w}: {fmt(c['images_per_s'])} images/s, p50 {fmt(c['p50_ms'], 0)} ms, "
                        f"p99 {fmt(c['p99_ms'], 0)} ms" + (f", {x['errors']} errors" if x["errors"] else ""))
            finally:
                s.stop()
    servers = {}
    for name in IMAGE_SERVERS:
        servers[name] = {}
        for w in ws:
            cells = [cell_stats(x, "images_per_s") for x in runs[(name, w)]]
            servers[name][str(w)] = {
                "images_per_s": med([c["images_per_s"] for c in cells]),
                "p50_ms": med([c["p50_ms"] for c in cells]), "p99_ms": med([c["p99_ms"] for c in cells]),
                "max_ms": max([c["max_ms"] for c in cells if c["max_ms"]], default=None),
                "completed": sum(c["completed"] for c in cells), "errors": sum(c["errors"] for c in cells),
                "error_samples": [e for c in cells for e in c["error_samples"]][:3],
                "kb_per_image": med([x["bytes_per_image"] and x["bytes_per_image"] / 1000 for x in runs[(name, w)]]),
                "run_p50_ms": med([x["run_ms"] for x in runs[(name, w)]]),
                "runs": [{k: v for k, v in x.items() if k != "latencies_s"} | {"latencies_ms": [
                    round(t * 1000, 1) for t in x["latencies_s"]]} for x in runs[(name, w)]],
            }
    # The target, per W: offload ahead of the better sharp pipeline on both figures.
    target = {}
    for w in map(str, ws):
        o = servers["offload"][w]
        peers = [servers[p][w] for p in IMAGE_SERVERS if p != "offload"]
        best_rate = max((p["images_per_s"] or 0 for p in peers), default=None)
        best_p99 = min((p["p99_ms"] for p in peers if p["p99_ms"]), default=None)
        met = bool(o["images_per_s"] and o["p99_ms"] and best_rate and best_p99 and not o["errors"]
                   and o["images_per_s"] > best_rate and o["p99_ms"] < best_p99)
        target[w] = {"best_sharp_images_per_s": best_rate, "best_sharp_p99_ms": best_p99, "met": met}
    return {"images": n, "clients": ws, "rounds": cfg["rounds"], "widths": IMAGE_WIDTHS, "query": IMAGE_QUERY,
            "photo": {"width": int(size[0]), "height": int(size[1]), "bytes": len(jpeg)},
            "versions": library_versions(), "checks": checks, "servers": servers, "target": target,
            "met": all(t["met"] for t in target.values())}


def s12_pbkdf2(cfg):
    """pbkdf2-sha512, 210000 iterations, 64-byte key, 16-byte random salt: W =
    C clients in a closed loop, a fixed number of hashes: offload (`POST /jobs`
    password-hash, then GET ?wait, on its C worker threads) against
    node-sharp's /pbkdf2 (crypto.pbkdf2 on libuv's pool of C threads).
    Alternating rounds, an unmeasured warm-up of C hashes per server; offload's
    first warm-up hash is checked against Python's hashlib, node's too (it
    answers with its salt)."""
    n, w = cfg["pbkdf2_count"], CORES
    body = json.dumps({"task": "password-hash", "params": {"password": PBKDF2_PASSWORD,
                                                           "iterations": PBKDF2_ITERATIONS}}).encode()
    peer_body = json.dumps({"password": PBKDF2_PASSWORD, "iterations": PBKDF2_ITERATIONS}).encode()

    def cycle_for(s):
        if s.kind == "offload":
            def cycle(conn):
                job = offload_job(conn, "POST", "/jobs", body, "application/json")
                return dict(job["result"], run_ms=job["finishedAt"] - job["startedAt"])
            return cycle

        def cycle(conn):
            st, res = request(conn, "POST", "/pbkdf2", peer_body, {"Content-Type": "application/json"})
            if st != 200:
                raise RuntimeError(f"/pbkdf2 answered {st}: {str(res)[:200]}")
            return res
        return cycle

    def check(res):
        import hashlib
        want = hashlib.pbkdf2_hmac("sha512", PBKDF2_PASSWORD.encode(), bytes.fromhex(res["salt"]),
                                   PBKDF2_ITERATIONS, 64).hex()
        return "ok" if res.get("hash") == want else f"hash {res.get('hash', '')[:16]}… != hashlib's {want[:16]}…"

    runs = {name: [] for name in PBKDF2_SERVERS}
    checks = {}
    for r in range(cfg["rounds"]):
        for name in PBKDF2_SERVERS:
            s = make(name)
            try:
                s.start()
                cycle = cycle_for(s)
                warm = closed_loop(s.port, CORES, CORES, cycle)
                if warm["errors"] or not warm["results"]:
                    raise RuntimeError(f"S12 {name}: the warm-up failed: {warm['error_samples']}")
                if name not in checks:
                    checks[name] = check(warm["results"][0])
                    if checks[name] != "ok":
                        log(f"S12 {name}: CHECK FAILED: {checks[name]}")
                x = closed_loop(s.port, n, w, cycle)
                x["run_ms"] = med([y.get("run_ms") for y in x["results"]])
                del x["results"]
                runs[name].append(x)
                c = cell_stats(x, "hashes_per_s")
                log(f"S12 r{r} {name}: {fmt(c['hashes_per_s'])} hashes/s, p50 {fmt(c['p50_ms'], 0)} ms, "
                    f"p99 {fmt(c['p99_ms'], 0)} ms" + (f", {x['errors']} errors" if x["errors"] else ""))
            finally:
                s.stop()
    servers = {}
    for name in PBKDF2_SERVERS:
        cells = [cell_stats(x, "hashes_per_s") for x in runs[name]]
        servers[name] = {
            "hashes_per_s": med([c["hashes_per_s"] for c in cells]),
            "p50_ms": med([c["p50_ms"] for c in cells]), "p99_ms": med([c["p99_ms"] for c in cells]),
            "max_ms": max([c["max_ms"] for c in cells if c["max_ms"]], default=None),
            "completed": sum(c["completed"] for c in cells), "errors": sum(c["errors"] for c in cells),
            "error_samples": [e for c in cells for e in c["error_samples"]][:3],
            "run_p50_ms": med([x["run_ms"] for x in runs[name]]),
            "runs": [{k: v for k, v in x.items() if k != "latencies_s"} | {"latencies_ms": [
                round(t * 1000, 1) for t in x["latencies_s"]]} for x in runs[name]],
        }
    return {"hashes": n, "clients": w, "rounds": cfg["rounds"], "iterations": PBKDF2_ITERATIONS,
            "checks": checks, "servers": servers}


def stats_data(n_values, block=2_000_000, seed=13):
    """n_values little-endian float64s: a block of `block` pseudo-random
    values (a log-normal-ish spread with a far tail, not uniform) repeated
    until n_values; and the block (the expected figures follow from it)."""
    import array
    import random
    rnd = random.Random(seed)
    blk = array.array("d", (rnd.lognormvariate(3.0, 1.2) - 40.0 for _ in range(block)))
    if sys.byteorder != "little":
        blk.byteswap()
    reps, rem = divmod(n_values, block)
    if rem:
        raise ValueError(f"S13: {n_values} values are not whole blocks of {block}")
    return blk.tobytes() * reps, blk, reps


def s13_stats(cfg):
    """One stats job over N float64 values (a raw application/octet-stream
    body of 8 N bytes): offload with W = all cores (the job fans out over
    every idle worker) against W = 1 (one core: the same job, its chunks
    one after another). Alternating rounds; the job's run time
    (startedAt -> finishedAt) and the client's submit -> result time.
    The result is checked against Python's statistics on the block the data
    repeats, and both servers must agree exactly."""
    import math
    n = cfg["stats_values"]
    body, blk, reps = stats_data(n)
    srt = sorted(blk)

    def pct(q):  # NumPy's linear over the data: each block value `reps` times
        h = (n - 1) * q
        lo = math.floor(h)
        x, y = srt[lo // reps], srt[min(lo + 1, n - 1) // reps]
        return x + (h - lo) * (y - x)
    want = {"count": n, "min": min(blk), "max": max(blk), "mean": math.fsum(blk) / len(blk),
            "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)}
    extra = ["--max-upload", str(len(body) + (1 << 20)), "--job-timeout-ms", "600000"]
    names = {"offload (all cores)": CORES, "offload (one core)": 1}
    runs = {k: [] for k in names}
    results = {}
    for r in range(cfg["rounds"]):
        for name, w in names.items():
            s = make("offload", workers=w, extra=extra)
            try:
                s.start()
                import http.client
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=600)
                t0 = time.time()
                job = offload_job(conn, "POST", "/jobs/stats", body, "application/octet-stream")
                e2e = time.time() - t0
                conn.close()
                run_s = (job["finishedAt"] - job["startedAt"]) / 1000.0
                runs[name].append({"run_s": run_s, "e2e_s": e2e})
                results.setdefault(name, job["result"])
                log(f"S13 r{r} {name}: job run {run_s:.2f} s, submit -> result {e2e:.2f} s "
                    f"({n / run_s / 1e6:.0f} M values/s)")
            finally:
                s.stop()
    checks = {}
    for name, res in results.items():
        bad = [k for k, v in want.items() if not (res.get(k) == v if k in ("count", "min", "max")
                                                  else math.isclose(res.get(k, float("nan")), v, rel_tol=1e-9))]
        checks[name] = "ok" if not bad else "differs from Python's on " + ", ".join(
            f"{k} ({res.get(k)!r} vs {want[k]!r})" for k in bad)
    same = len({json.dumps(v, sort_keys=True) for v in results.values()}) == 1
    servers = {name: {"workers": w, "run_s": med([x["run_s"] for x in runs[name]]),
                      "e2e_s": med([x["e2e_s"] for x in runs[name]]), "runs": runs[name]}
               for name, w in names.items()}
    a, b = servers["offload (all cores)"], servers["offload (one core)"]
    return {"values": n, "bytes": len(body), "block": len(blk), "rounds": cfg["rounds"], "servers": servers,
            "speedup_run": b["run_s"] / a["run_s"], "speedup_e2e": b["e2e_s"] / a["e2e_s"],
            "checks": checks, "identical": same, "result": results.get("offload (all cores)")}


def s14_transcode(cfg, tmpdir):
    """The cost offload adds to an external program: examples/commands.json's
    video.transcode (ffmpeg, libx264) on a generated clip, run by hand with
    the very argv offload builds (placeholders filled the same way) against
    an offload job (POST /jobs/video.transcode with the clip as the body,
    then GET ?wait until complete), alternating, same machine, same run.
    Hand: the process's wall time. offload: submit -> complete (the upload,
    the input written to the job's directory, the spawn through
    `offload exec-command`, the log, the output adopted)."""
    import http.client
    clip = os.path.join(tmpdir, "clip.mp4")
    secs = cfg["transcode_seconds"]
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={secs}:size=1280x720:rate=25", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "veryfast", clip], check=True)
    body = open(clip, "rb").read()
    spec = [t for t in json.load(open(os.path.join(ROOT, "examples", "commands.json")))["tasks"]
            if t["name"] == "video.transcode"][0]
    params = {"codec": "libx264", "crf": 23, "preset": "veryfast", "scale": "scale=640:-2"}
    out = os.path.join(tmpdir, "hand.mp4")

    def hand_argv():
        argv = []
        for a in spec["argv"]:
            if a == "{input}":
                argv.append(clip)
            elif a.startswith("{output:"):
                argv.append(out)
            elif a.startswith("{") and a.endswith("}"):
                argv.append(str(params[a[1:-1]]))
            else:
                argv.append(a)
        return argv
    query = "&".join(f"{k}={v}" for k, v in params.items())
    hand, job, run = [], [], []
    s = make("offload", extra=["--commands", os.path.join(ROOT, "examples", "commands.json"),
                               "--max-upload", str(len(body) + (1 << 20))])
    try:
        s.start()
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=600)
        offload_job(conn, "POST", f"/jobs/video.transcode?{query}", body, "video/mp4")  # warm-up
        for r in range(cfg["transcode_rounds"]):
            t0 = time.time()
            subprocess.run(hand_argv(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            hand.append(time.time() - t0)
            t0 = time.time()
            j = offload_job(conn, "POST", f"/jobs/video.transcode?{query}", body, "video/mp4")
            job.append(time.time() - t0)
            run.append((j["finishedAt"] - j["startedAt"]) / 1000.0)
            log(f"S14 r{r}: by hand {hand[-1]:.2f} s, offload job {job[-1]:.2f} s (run {run[-1]:.2f} s)")
        conn.close()
    finally:
        s.stop()
    h, o = med(hand), med(job)
    return {"clip_seconds": secs, "clip_bytes": len(body), "rounds": cfg["transcode_rounds"], "params": params,
            "hand_s": hand, "job_s": job, "run_s": run, "hand_med_s": h, "job_med_s": o, "run_med_s": med(run),
            "overhead_pct": (o - h) / h * 100.0, "argv": hand_argv()}


# S15: server-sent events. Target: /health p99 with 200 open GET /events
# streams and every worker busy stays within 2x its idle value.
EVENT_STREAMS = 200
EVENTS_TARGET_P99_RATIO = 2.0


def loop_cpu_ns(pid):
    """CPU time of a process's main thread (offload's event loop), in ns."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def timed(pid, fn):
    """fn()'s result and the share of one core the loop thread used meanwhile."""
    c0, t0 = loop_cpu_ns(pid), time.time()
    res = fn()
    c1, t1 = loop_cpu_ns(pid), time.time()
    return res, ((c1 - c0) / 1e9 / (t1 - t0) if c0 is not None and c1 is not None else None)


class EventReaders:
    """n GET /events streams on raw sockets, all drained by one thread
    (selectors); counts the bytes each one receives."""

    def __init__(self, port, n):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.bytes = [0] * n
        self.ok = [False] * n
        self.socks = []
        for i in range(n):
            so = socket.create_connection(("127.0.0.1", port), timeout=10)
            so.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
            so.setblocking(False)
            self.sel.register(so, selectors.EVENT_READ, i)
            self.socks.append(so)
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:  # the client's thread yields to the server's loop (2 cores for both)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        while not self.stop_ev.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                i = key.data
                try:
                    data = key.fileobj.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(key.fileobj)
                    continue
                if not self.ok[i] and self.bytes[i] == 0:
                    self.ok[i] = data.startswith(b"HTTP/1.1 200")
                self.bytes[i] += len(data)

    def total(self):
        return sum(self.bytes)

    def stop(self):
        self.stop_ev.set()
        self.t.join(5)
        for so in self.socks:
            so.close()


def s15_events(cfg):
    """Server-sent events: /health latency idle, with every worker busy
    (spin jobs), and with every worker busy and 200 open /events streams
    (start, progress at most 10/s per job and stats each second go to every
    stream), in alternating rounds; then what one stream costs at ~1000 tiny
    jobs/s (bytes received per second)."""
    s = make("offload", extra=["--max-event-streams", "256"])
    reps = 3 if cfg["quick"] else 5
    out = {}
    try:
        s.start()
        lat = [loadgen(), "latency", "--port", str(s.port), "--n", str(cfg["health_n"]), "--interval-us", "1000",
               "--max-s", "60"]
        runs = []
        for r in range(reps):
            idle, idle_cpu = timed(s.pid, lambda: run_json(lat, 90))
            spin_ms = int((2 * cfg["health_n"] / 1000.0 + 4) * 1000)
            ids = [http(s.port, "POST", "/jobs", {"task": "spin", "params": {"ms": spin_ms}})[1]["id"]
                   for _ in range(CORES + 2)]
            time.sleep(0.3)
            busy, busy_cpu = timed(s.pid, lambda: run_json(lat, 90))
            rd = EventReaders(s.port, EVENT_STREAMS)
            deadline = time.time() + 10
            while sum(rd.ok) < EVENT_STREAMS and time.time() < deadline:
                time.sleep(0.05)
            st, health = http(s.port, "GET", "/health")
            b0, t0 = rd.total(), time.time()
            streams, streams_cpu = timed(s.pid, lambda: run_json(lat, 90))
            b1, t1 = rd.total(), time.time()
            runs.append({"idle": idle, "busy": busy, "streams": streams, "open": sum(rd.ok),
                         "idle_cpu": idle_cpu, "busy_cpu": busy_cpu, "streams_cpu": streams_cpu,
                         "busy_workers": health["workers"]["busy"], "workers": health["workers"]["total"],
                         "bytes_per_stream_per_s": (b1 - b0) / EVENT_STREAMS / (t1 - t0)})
            rd.stop()
            for jid in ids:
                http(s.port, "DELETE", f"/jobs/{jid}")
            time.sleep(0.5)
        h = {"rounds": reps, "streams": min(x["open"] for x in runs), "busy": med([x["busy_workers"] for x in runs]),
             "workers": runs[0]["workers"],
             "bytes_per_stream_per_s": med([x["bytes_per_stream_per_s"] for x in runs])}
        for k in ("idle", "busy", "streams"):
            for q in ("p50", "p99"):
                h[f"{k}_{q}_ms"] = med([x[k][f"{q}_us"] / 1000 for x in runs])
            h[f"{k}_loop_cpu_pct"] = med([x[f"{k}_cpu"] * 100 for x in runs if x[f"{k}_cpu"] is not None])
        h["ratio_p99"] = h["streams_p99_ms"] / h["idle_p99_ms"]
        h["met"] = h["ratio_p99"] <= EVENTS_TARGET_P99_RATIO
        h["runs"] = runs
        out["health"] = h
        # One stream while tiny jobs are submitted at ~1000/s.
        one = EventReaders(s.port, 1)
        time.sleep(0.3)
        secs = cfg["events_rate_s"]
        conn = http_client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        body = json.dumps({"task": "report", "params": {"heavyIterations": 1}})
        n, bad = 0, 0
        b0, t0 = one.total(), time.time()
        while time.time() - t0 < secs:
            wait = t0 + n / 1000.0 - time.time()
            if wait > 0:
                time.sleep(wait)
            conn.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            n += 1
            bad += r.status != 202
        t1 = time.time()
        time.sleep(0.5)  # the last jobs' final events
        b1 = one.total()
        conn.close()
        one.stop()
        out["rate"] = {"jobs": n, "non_202": bad, "seconds": t1 - t0, "jobs_per_s": n / (t1 - t0),
                       "bytes": b1 - b0, "bytes_per_s": (b1 - b0) / (t1 - t0 + 0.5),
                       "bytes_per_job": (b1 - b0) / max(n, 1)}
        log(f"S15: /health p99 idle {h['idle_p99_ms']:.3f} ms, workers busy {h['busy_p99_ms']:.3f} ms, and "
            f"{h['streams']} streams {h['streams_p99_ms']:.3f} ms (x{h['ratio_p99']:.2f}); loop CPU "
            f"{h['busy_loop_cpu_pct']:.1f} % -> {h['streams_loop_cpu_pct']:.1f} %; one stream at "
            f"{out['rate']['jobs_per_s']:.0f} jobs/s: {out['rate']['bytes_per_s'] / 1e6:.2f} MB/s, "
            f"{out['rate']['bytes_per_job']:.0f} B/job")
    finally:
        s.stop()
    return out


# S16: many offload nodes on one PostgreSQL (issue 12), side by side with
# graphile-worker and pg-boss (bench/peers/node-graphile, node-pgboss) on the
# same throwaway PostgreSQL 15 (scripts/pgtmp.py), the same settings and the
# same closed loop. Targets: offload at least graphile-worker's jobs/s, at
# least 3x pg-boss's, and >= 10,000 jobs/s with 2 nodes.
CLUSTER_NODES = [1, 2, 3]
CLUSTER_SYSTEMS = ["offload", "graphile-worker", "pg-boss"]
CLUSTER_INFLIGHT = 64
CLUSTER_JOB = '{"task":"fibonacci","params":{"n":1}}'  # spin's ms must be >= 1: F(1) is the cheapest task
CLUSTER_TARGET = {"jobs_per_s_2_nodes": 10000.0, "vs_graphile": 1.0, "vs_pgboss": 3.0}
CLUSTER_DB = "s16"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid, reaped=False):
    """utime + stime of a process (+ cutime + cstime: its reaped children), s."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return 0.0
    f = st[st.rindex(")") + 2:].split()
    t = int(f[11]) + int(f[12])
    if reaped:
        t += int(f[13]) + int(f[14])
    return t / CLK_TCK


def tree_cpu_s(root):
    """CPU seconds of a process, its live children and the children it reaped
    (a PostgreSQL backend that exits is added to the postmaster's cutime)."""
    total = proc_cpu_s(root, reaped=True)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            if int(st[st.rindex(")") + 2:].split()[1]) == root:
                total += proc_cpu_s(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return total


def machine_cpu_s():
    """Busy CPU seconds of the whole machine since boot (/proc/stat, all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK


def wait_quiet(max_s=60.0, busy_frac=0.15):
    """Waits (at most max_s) until the machine's busy CPU over 1 s is under
    busy_frac of its cores, so a run does not share the cores with other
    work; returns the busy fraction last seen."""
    t_end = time.time() + max_s
    while True:
        m0, t0 = machine_cpu_s(), time.time()
        time.sleep(1.0)
        frac = (machine_cpu_s() - m0) / (time.time() - t0) / CORES
        if frac < busy_frac or time.time() >= t_end:
            return frac


def pg_fresh_db(pg):
    """An empty database for the next system: every run starts clean."""
    pg.psql(f"DROP DATABASE IF EXISTS {CLUSTER_DB} WITH (FORCE)", db="postgres")
    pg.psql(f"CREATE DATABASE {CLUSTER_DB}", db="postgres")
    pg.psql("CHECKPOINT", db="postgres")


def postmaster_pid(pg):
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        return int(f.readline())


def cluster_offload(cfg, pg, nodes):
    """N offload nodes on PostgreSQL, loadgen cluster against them."""
    url = "host=%s port=%d dbname=%s user=%s" % (pg.sock, pg.port, CLUSTER_DB, pg.user)
    servers = [Server(f"offload-n{k + 1}", "offload", cfg["cluster_workers"],
                      ["--store", "postgres", "--pg-url", url, "--node-id", f"n{k + 1}",
                       # info: a node's cluster events (and a signal it got) are kept; a few lines a run
                       "--log-level", "info"]) for k in range(nodes)]
    logdir = tempfile.mkdtemp(prefix="offload-s16-logs-")
    for sv in servers:
        sv.log_path = os.path.join(logdir, sv.name + ".log")  # warn and up: kept in the results when not empty
    try:
        for sv in servers:
            sv.start()
        pgpid = postmaster_pid(pg)
        db0, nodes0, m0 = tree_cpu_s(pgpid), sum(tree_cpu_s(sv.pid) for sv in servers), machine_cpu_s()
        t0 = time.time()
        cmd = [loadgen(), "cluster", "--ports", ",".join(str(sv.port) for sv in servers),
               "--inflight", str(CLUSTER_INFLIGHT), "--seconds", str(cfg["cluster_s"]),
               "--warmup-s", str(cfg["cluster_warmup_s"]), "--body", CLUSTER_JOB, "--wait-s", "30",
               "--max-s", str(cfg["cluster_warmup_s"] + cfg["cluster_s"] + 60)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg["cluster_warmup_s"] + cfg["cluster_s"] + 120)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode not in (0, 3) or not lines:
            raise RuntimeError(f"loadgen cluster exited {p.returncode}: {p.stderr[-500:]}")
        x = json.loads(lines[-1])
        run_s, machine = time.time() - t0, machine_cpu_s() - m0
        dead = [sv.name for sv in servers if sv.proc.poll() is not None]
        node_logs = {}
        for sv in servers:
            try:
                with open(sv.log_path, errors="replace") as f:
                    text = f.read().strip()
            except OSError:
                text = ""
            # the start-up lines of every node are not news
            text = "\n".join(l for l in text.splitlines() if "cluster: node " not in l
                             and "the database answers" not in l)
            if text:
                node_logs[sv.name] = text[-2000:]
        if p.stderr.strip() or node_logs:
            log(f"S16 offload x{nodes}: loadgen said {p.stderr.strip()[-400:]!r}; node logs: "
                + "; ".join(f"{k}: {v[-300:]!r}" for k, v in node_logs.items()))
        return {"loadgen_stderr": p.stderr[-2000:], "node_logs": node_logs,"jobs_per_s": x["jobs_per_s"], "p50_ms": x["p50_us"] / 1000, "p99_ms": x["p99_us"] / 1000,
                "max_ms": x["max_us"] / 1000, "completed": x["completed"], "lost": x["lost"],
                "failed": x["failed"], "errors": x["errors"] + x["non_202"] + len(dead), "run_s": run_s,
                "db_cpu_s": tree_cpu_s(pgpid) - db0,
                "nodes_cpu_s": sum(tree_cpu_s(sv.pid) for sv in servers) - nodes0,
                "client_cpu_s": x["client_cpu_s"], "machine_cpu_s": machine, "dead_nodes": dead, "raw": x}
    finally:
        for sv in servers:
            sv.stop()
        shutil.rmtree(logdir, ignore_errors=True)


def cluster_peer(cfg, pg, system, nodes):
    script = {"graphile-worker": "node-graphile", "pg-boss": "node-pgboss"}[system]
    env = dict(os.environ, PGHOST=pg.sock, PGPORT=str(pg.port), PGDATABASE=CLUSTER_DB, PGUSER=pg.user,
               NODES=str(nodes), WORKERS=str(cfg["cluster_workers"]), INFLIGHT=str(CLUSTER_INFLIGHT),
               SECONDS=str(cfg["cluster_s"]), WARMUP_S=str(cfg["cluster_warmup_s"]), DRAIN_S="30",
               PG_POSTMASTER_PID=str(postmaster_pid(pg)))
    timeout = cfg["cluster_warmup_s"] + cfg["cluster_s"] + 150
    p = subprocess.run(["node", os.path.join(PEERS, script, "bench.js")], env=env, capture_output=True,
                       text=True, timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode not in (0, 3) or not lines:
        raise RuntimeError(f"S16 {system} x{nodes} exited {p.returncode}: {p.stderr[-800:]}")
    x = json.loads(lines[-1])
    return {"jobs_per_s": x["jobs_per_s"], "p50_ms": x["p50_ms"], "p99_ms": x["p99_ms"], "max_ms": x["max_ms"],
            "completed": x["completed"], "lost": x["lost"], "failed": x["not_run"],
            "errors": x["add_errors"] + x["unknown_completions"], "run_s": x["run_s"],
            "db_cpu_s": x["db_cpu_s"], "nodes_cpu_s": x["nodes_cpu_s"], "client_cpu_s": x["client_cpu_s"],
            "machine_cpu_s": x.get("machine_cpu_s"), "raw": x}


def s16_cluster(cfg):
    """Tiny jobs end to end (submit -> complete) on one PostgreSQL with 1, 2
    and 3 nodes: offload (`--store postgres`, W workers a node), graphile-worker
    (N worker processes, concurrency W) and pg-boss (N processes, W work()
    loops), a closed loop of 64 jobs in flight, alternating per round."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from pgtmp import PgTmp
    pg = PgTmp()
    # BENCH_S16_SYSTEMS=graphile-worker,pg-boss runs a subset (e.g. the peers alone).
    systems = [x for x in os.environ.get("BENCH_S16_SYSTEMS", ",".join(CLUSTER_SYSTEMS)).split(",") if x]
    runs = {(sy, n): [] for n in CLUSTER_NODES for sy in systems}
    try:
        pg.start()
        pg_version = pg.psql("SHOW server_version", db="postgres").strip()
        pg_settings = {k: pg.psql(f"SHOW {k}", db="postgres").strip() for k in
                       ("shared_buffers", "fsync", "synchronous_commit", "max_connections", "wal_level")}
        for r in range(cfg["cluster_rounds"]):
            for n in CLUSTER_NODES:
                for sy in systems:
                    pg_fresh_db(pg)
                    busy = wait_quiet(cfg["cluster_quiet_s"])
                    if busy >= 0.15:
                        log(f"S16: the machine is still {busy:.0%} busy with other work; running anyway")
                    x = cluster_offload(cfg, pg, n) if sy == "offload" else cluster_peer(cfg, pg, sy, n)
                    runs[(sy, n)].append(x)
                    log(f"S16 r{r} {sy} x{n}: {x['jobs_per_s']:.0f} jobs/s, p50 {x['p50_ms']:.2f} ms, "
                        f"p99 {x['p99_ms']:.2f} ms; CPU s: db {x['db_cpu_s']:.2f}, nodes {x['nodes_cpu_s']:.2f}, "
                        f"client {x['client_cpu_s']:.2f}, whole machine {x['machine_cpu_s']:.2f} in {x['run_s']:.1f} s"
                        + (f"; LOST {x['lost']}" if x["lost"] else "")
                        + (f", failed {x['failed']}" if x["failed"] else "")
                        + (f", errors {x['errors']}" if x["errors"] else ""))
    finally:
        pg.cleanup()
    cells = {}
    for (sy, n), rs in runs.items():
        if not rs:
            continue
        per_job = lambda k: med([x[k] / x["completed"] * 1000 if x["completed"] else None for x in rs])
        share = lambda k: med([x[k] / x["run_s"] for x in rs])
        cells.setdefault(sy, {})[str(n)] = {
            "jobs_per_s": med([x["jobs_per_s"] for x in rs]),
            "p50_ms": med([x["p50_ms"] for x in rs]),
            "p99_ms": med([x["p99_ms"] for x in rs]),
            "db_cores": share("db_cpu_s"), "nodes_cores": share("nodes_cpu_s"),
            "client_cores": share("client_cpu_s"),
            "other_cores": med([max(0.0, x["machine_cpu_s"] - x["db_cpu_s"] - x["nodes_cpu_s"] - x["client_cpu_s"])
                                / x["run_s"] for x in rs if x.get("machine_cpu_s") is not None]),
            "db_ms_per_job": per_job("db_cpu_s"), "nodes_ms_per_job": per_job("nodes_cpu_s"),
            "client_ms_per_job": per_job("client_cpu_s"),
            "lost": sum(x["lost"] for x in rs), "failed": sum(x["failed"] for x in rs),
            "errors": sum(x["errors"] for x in rs), "runs": rs,
        }
    off = cells.get("offload", {})
    two = off.get("2", {}).get("jobs_per_s")
    ratios = {}
    for n in CLUSTER_NODES:
        o = off.get(str(n), {}).get("jobs_per_s")
        g = cells.get("graphile-worker", {}).get(str(n), {}).get("jobs_per_s")
        b = cells.get("pg-boss", {}).get(str(n), {}).get("jobs_per_s")
        ratios[str(n)] = {"vs_graphile": o / g if o and g else None, "vs_pgboss": o / b if o and b else None}
    met = {"jobs_per_s_2_nodes": bool(two and two >= CLUSTER_TARGET["jobs_per_s_2_nodes"]),
           "vs_graphile": all(v["vs_graphile"] is not None and v["vs_graphile"] >= CLUSTER_TARGET["vs_graphile"]
                              for v in ratios.values()),
           "vs_pgboss": all(v["vs_pgboss"] is not None and v["vs_pgboss"] >= CLUSTER_TARGET["vs_pgboss"]
                            for v in ratios.values())}
    return {"inflight": CLUSTER_INFLIGHT, "workers_per_node": cfg["cluster_workers"], "seconds": cfg["cluster_s"],
            "warmup_s": cfg["cluster_warmup_s"], "rounds": cfg["cluster_rounds"], "job": CLUSTER_JOB,
            "postgres": pg_version, "pg_settings": pg_settings, "versions": peer_versions(),
            "systems": cells, "ratios": ratios, "target": CLUSTER_TARGET, "met": met}


def peer_versions():
    out = {}
    for name in ("graphile-worker", "pg-boss", "pg"):
        try:
            with open(os.path.join(PEERS, "node_modules", name, "package.json")) as f:
                out[name] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            out[name] = None
    return out


# ---------------------------------------------------------------- report

def fmt(x, nd=2):
    if x is None:
        return "—"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def ratio(a, b, higher_better=False):
    """How many times better offload (a) is than the peer (b)."""
    if not a or not b:
        return "—"
    r = (a / b) if higher_better else (b / a)
    return f"{r:.1f}×"


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": CORES, "kernel": platform.release(), "compiler": cc[0] if cc else "?",
            "node": node, "commit": commit + ("-dirty" if dirty else ""),
            "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")}


def render(results, cfg, cmdline):
    m = results["machine"]
    L = []
    L.append("# offload benchmarks\n")
    L.append(f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, {m['compiler']}, Node {m['node']}. "
             f"Commit {m['commit']}, {m['date']}. Mode: {'QUICK' if cfg['quick'] else 'full'}, "
             f"{cfg['rounds']} alternating rounds per server, medians shown.\n")
    L.append(f"Command: `{cmdline}`. Raw figures: `bench/results/latest.json`. "
             "Ratios are offload's advantage (×>1: offload better) from this run only.\n")
    if "S2" in results:
        L.append("![/health latency during the saturation run](health-latency.png)\n")

    if "S1" in results:
        r = results["S1"]
        L.append(f"## 1. worker-benchmark: one report job ({r['heavyIterations']:,} iterations), /health meanwhile\n")
        L.append("| server | job total (s) | /health p50 (ms) | p99 (ms) | max (ms) | requests | max vs offload |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        base = r["servers"].get("offload", {})
        for name, v in r["servers"].items():
            L.append(f"| {name} | {fmt(v['total_s'])} | {fmt(v['health_p50_us'] and v['health_p50_us'] / 1000, 3)} | "
                     f"{fmt(v['health_p99_us'] and v['health_p99_us'] / 1000, 3)} | "
                     f"{fmt(v['health_max_us'] and v['health_max_us'] / 1000, 1)} | {fmt(v['health_n'], 0)} | "
                     f"{ratio(base.get('health_max_us'), v['health_max_us'])} |")
        L.append("")
    if "S2" in results:
        r = results["S2"]
        L.append(f"## 2. Responsiveness under saturation ({r['jobs']} report jobs on {CORES} workers; "
                 "paced sequential /health, 1 per ms)\n")
        L.append("| server | idle p50 | idle p99 | loaded p50 | loaded p99 | loaded p99.9 | loaded max | "
                 "loaded/idle p50 | loaded/idle p99 | samples | p99 vs offload |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = r["servers"].get("offload", {})
        for name, v in r["servers"].items():
            L.append(f"| {name} | {fmt(v['idle_p50_ms'], 3)} | {fmt(v['idle_p99_ms'], 3)} | "
                     f"{fmt(v['loaded_p50_ms'], 3)} | {fmt(v['loaded_p99_ms'], 3)} | {fmt(v['loaded_p999_ms'], 3)} | "
                     f"{fmt(v['loaded_max_ms'], 1)} | {fmt(v['ratio_p50'])} | {fmt(v['ratio_p99'])} | "
                     f"{fmt(v['loaded_n'], 0)} | {ratio(base.get('loaded_p99_ms'), v['loaded_p99_ms'])} |")
        L.append("\nTimes in ms.\n")
    if "S3" in results:
        r = results["S3"]
        L.append(f"## 3. Front door: wrk {r['wrk']} on /health\n")
        L.append("| server | idle req/s | idle p99 (ms) | saturated req/s | saturated p99 (ms) | "
                 "saturated req/s vs offload |")
        L.append("|---|---:|---:|---:|---:|---:|")
        base = r["servers"].get("offload", {})
        for name, v in r["servers"].items():
            blocked = v["loaded_rps"] is not None and v["loaded_rps"] < 1
            L.append(f"| {name} | {fmt(v['idle_rps'])} | {fmt(v['idle_p99_ms'], 3)} | "
                     f"{'0 (blocked)' if blocked else fmt(v['loaded_rps'])} | "
                     f"{'—' if blocked else fmt(v['loaded_p99_ms'], 3)} | "
                     f"{'∞' if blocked else ratio(base.get('loaded_rps'), v['loaded_rps'], True)} |")
        L.append("")
    if "S4" in results:
        r = results["S4"]
        L.append(f"## 4. Tiny jobs: {r['jobs']:,} report jobs (heavyIterations=1), {r['inflight']} in flight\n")
        L.append("Submit, then long-poll `GET /jobs/<id>?wait=60` (wait) or poll `GET /tasks/reports/<id>` "
                 "(poll) until complete. nginx answers the same cycle with fixed replies: the load "
                 "client's own ceiling.\n")
        L.append("| server | jobs/s | HTTP req/s | p99 end-to-end (ms) | errors | jobs/s vs offload (wait) |")
        L.append("|---|---:|---:|---:|---:|---:|")
        base = r["servers"].get("offload (wait)", {})
        for name, v in r["servers"].items():
            L.append(f"| {name} | {fmt(v['jobs_per_s'])} | {fmt(v['requests_per_s'])} | {fmt(v['p99_ms'])} | "
                     f"{v['errors']} | {ratio(base.get('jobs_per_s'), v['jobs_per_s'], True)} |")
        if r.get("per_job"):
            L.append(f"\nPer tiny job, worker threads vs worker processes (`--isolation process`): µs/job = "
                     f"10⁶ / jobs/s at {r['inflight']} in flight, from the rows above. Target: process isolation "
                     f"adds under {r['target_overhead_us']:.0f} µs a job.\n")
            L.append("| client | offload, threads (µs/job) | offload-process (µs/job) | process − thread (µs/job) | "
                     "target |")
            L.append("|---|---:|---:|---:|---|")
            for mode, v in r["per_job"].items():
                L.append(f"| {mode} | {fmt(v['thread_us'], 1)} | {fmt(v['process_us'], 1)} | "
                         f"{fmt(v['overhead_us'], 1)} | {'met' if v['met'] else 'missed'} |")
        if r["micro"]:
            mo, mp = r["micro"]["offload-pool"], r["micro"]["piscina"]
            L.append(f"\nIn-process, empty task, 64 in flight: offload pool API {fmt(mo['tasks_per_s'])} tasks/s, "
                     f"piscina `run()` {fmt(mp['tasks_per_s'])} tasks/s "
                     f"({ratio(mo['tasks_per_s'], mp['tasks_per_s'], True)}).\n")
        L.append("")
    if "S5" in results:
        r = results["S5"]
        so, sn = r["startup"]["offload-thread"], r["startup"]["node-worker_threads"]
        L.append("## 5. Worker cost\n")
        L.append("| | offload thread | Node worker_threads | offload advantage |")
        L.append("|---|---:|---:|---:|")
        L.append(f"| ask → first task done, median (ms) | {fmt(so['median_ms'], 3)} | {fmt(sn['median_ms'], 3)} | "
                 f"{ratio(so['median_ms'], sn['median_ms'])} |")
        L.append(f"| ask → first task done, p90 (ms) | {fmt(so['p90_ms'], 3)} | {fmt(sn['p90_ms'], 3)} | "
                 f"{ratio(so['p90_ms'], sn['p90_ms'])} |")
        rs = r["rss"]
        for peer in ("node-seed", "node-piscina"):
            L.append(f"| RSS per idle worker, vs {peer} (KiB) | {fmt(rs['offload']['per_worker_kib'], 0)} | "
                     f"{fmt(rs[peer]['per_worker_kib'], 0)} | "
                     f"{ratio(rs['offload']['per_worker_kib'], rs[peer]['per_worker_kib'])} |")
        L.append(f"\nRSS with 1 / 16 workers (KiB): " + ", ".join(
            f"{k} {fmt(v['rss1_kib'], 0)} / {fmt(v['rss16_kib'], 0)}" for k, v in rs.items()) + "\n")
        sp = r["startup"].get("offload-process")
        if sp:
            L.append(f"A worker process (`--isolation process`): spawn → ready → first task done "
                     f"{fmt(sp['cycle_ms'], 3)} ms, the mean over {sp['k']} workers each replaced after one job "
                     f"(`--max-jobs-per-worker 1`); a warm worker's job cycle is {fmt(sp['warm_cycle_ms'], 3)} ms"
                     f"{'' if sp['valid'] else ' (**not valid**: some jobs were not queued in time or not recycled)'}. "
                     f"RSS per idle worker process {fmt(rs['offload-process']['per_worker_kib'], 0)} KiB "
                     f"(each process's RSS counts the pages it shares with the others again).\n")
    if "S6" in results:
        r = results["S6"]
        L.append("## 6. Kernel efficiency: a job vs the bare loop (same flags)\n")
        L.append("| kernel | n | job run time (s) | bare C (s) | framework overhead |")
        L.append("|---|---:|---:|---:|---:|")
        for k, v in r.items():
            L.append(f"| {k} | {v['n']:,} | {fmt(v['job_s'], 3)} | {fmt(v['bare_s'], 3)} | "
                     f"{fmt(v['overhead_pct'])} % |")
        L.append("")
    if "S7" in results:
        r = results["S7"]
        L.append(f"## 7. Parallel scaling: k report jobs ({r['heavyIterations']:,} iterations) on k workers\n")
        ks = list(range(1, CORES + 1))
        L.append("| server | " + " | ".join(f"k={k} wall (s)" for k in ks) + " | " +
                 " | ".join(f"k={k} / k=1" for k in ks[1:]) + " |")
        L.append("|---|" + "---:|" * (2 * len(ks) - 1))
        for name, v in r["servers"].items():
            L.append(f"| {name} | " + " | ".join(fmt(v["wall_s"][k]) for k in ks) + " | " +
                     " | ".join(fmt(v["relative"][k]) for k in ks[1:]) + " |")
        L.append("\n1.00 is perfect scaling (k jobs take as long as one).\n")
    if "S8" in results:
        r = results["S8"]
        L.append(f"## 8. Memory stability: {r['jobs']:,} tiny jobs\n")
        L.append("| server | RSS before (MiB) | peak (MiB) | right after (MiB) | after eviction (MiB) | "
                 "2nd pass peak (MiB) | completed | peak vs offload |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = r["servers"].get("offload", {})
        for name, v in r["servers"].items():
            p2 = f"{v['peak2_kib'] / 1024:.1f}" if "peak2_kib" in v else "—"
            L.append(f"| {name} | {v['before_kib'] / 1024:.1f} | {v['peak_kib'] / 1024:.1f} | "
                     f"{v['after_run_kib'] / 1024:.1f} | "
                     f"{(v['after_kib'] / 1024):.1f}{'' if v.get('evicted_all') else ' (kept)'} | {p2} | "
                     f"{v['completed']} | {ratio(base.get('peak_kib'), v['peak_kib'])} |")
        L.append(f"\noffload runs with `--retention-s {cfg['mem_retention_s']}` here so eviction happens within "
                 "the run; the Node peers keep up to 100000 finished jobs (count cap) and never evict by age. "
                 "glibc keeps freed heap pages mapped, so offload's RSS stays at its high-water mark after "
                 "eviction; the second pass of the same load shows that memory is reused, not leaked.\n")
    if "S9" in results:
        r = results["S9"]
        t = r["targets"]
        kb = r.get("listing_bytes")
        L.append(f"## 9. Hostile clients: {r['jobs']} finished jobs retained, `GET /jobs?limit=1000` "
                 f"({fmt(kb and kb / 1000, 0)} KB a reply)\n")
        L.append("offload alone (the Node peers have no `GET /jobs` listing); a fresh server per case. "
                 "/health is probed on a fresh connection each time, one probe after another.\n")
        L.append(f"**A**: C connections each pipeline R listings and never read; they stay open until the "
                 f"server goes quiet (at most {cfg['hostile_hold_max_s']} s), probes every 250 ms. Target: every "
                 f"/health under {t['a_health_max_ms']:.0f} ms, RSS growth under {t['a_rss_growth_mib']:.0f} MiB.\n")
        L.append("| C × R | /health max (ms) | p99 (ms) | p50 (ms) | answered | RSS before (MiB) | peak (MiB) | "
                 "after they left (MiB) | server CPU (s) | held (s) | target |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        unanswered = []
        for k, v in r["a"].items():
            # over every probe: an unanswered one counts with its wait, shown as "> wait"
            worst = fmt(v["health_max_ms"], 1)
            if v["probes_ok"] < v["probes"]:
                worst = "> " + worst
                unanswered.append(f"{k.replace('x', ' × ')}: " + "; ".join(v["probe_errors"]))
            p99 = fmt(v["health_p99_ms"], 1)
            if v["probes_ok"] < v["probes"] and v["health_p99_ms"] == v["health_max_ms"]:
                p99 = "> " + p99
            L.append(f"| {k.replace('x', ' × ')} | {worst} | {p99} | "
                     f"{fmt(v['health_p50_ms'], 1)} | {v['probes_ok']}/{v['probes']} | "
                     f"{v['rss_before_kib'] / 1024:.1f} | "
                     f"{v['rss_peak_kib'] / 1024:.1f} | {v['rss_after_kib'] / 1024:.1f} | "
                     f"{fmt(v['server_cpu_s'], 1)} | {fmt(v['held_s'], 1)} | {'met' if v['met'] else 'missed'} |")
        if unanswered:
            L.append("\nUnanswered probes (counted with how long they waited): " + " — ".join(unanswered))
        L.append(f"\n**B**: 4 connections keep {cfg['hostile_b_depth']} listings in flight each and read every "
                 f"reply for {cfg['hostile_b_s']} s; a /health probe every 20 ms. Target: p99 under "
                 f"{t['b_health_p99_ms']:.0f} ms.\n")
        L.append("| conns × in flight | /health p50 (ms) | p99 (ms) | max (ms) | answered | listings read/s | "
                 "RSS before (MiB) | peak (MiB) | after (MiB) | target |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for k, v in r["b"].items():
            L.append(f"| {k.replace('x', ' × ')} | {fmt(v['health_p50_ms'], 1)} | {fmt(v['health_p99_ms'], 1)} | "
                     f"{fmt(v['health_max_ms'], 1)} | {v['probes_ok']}/{v['probes']} | "
                     f"{fmt(v.get('listings_per_s'), 0)} | "
                     f"{v['rss_before_kib'] / 1024:.1f} | {v['rss_peak_kib'] / 1024:.1f} | "
                     f"{v['rss_after_kib'] / 1024:.1f} | {'met' if v['met'] else 'missed'} |")
        L.append("")
    if "S10" in results:
        r = results["S10"]
        L.append(f"## 10. Submissions: POST /jobs with the job store, {r['rounds']} alternating round(s) of "
                 f"{fmt(r['seconds_per_cell'], 1)} s per cell\n")
        L.append("`loadgen submit`: K keep-alive connections each keep one "
                 "`POST /jobs {\"task\":\"report\",\"params\":{\"heavyIterations\":1}}` in flight; latency is "
                 "request sent → 202 read (with sqlite the 202 waits for the row's commit, group-committed per "
                 "event-loop turn). offload alone (the Node peers keep nothing), default workers, "
                 "`--max-queue 1000000`, a fresh temp data dir per server.\n")
        L.append("| server | in flight | submissions/s | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | "
                 "non-202 | errors | vs memory |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, cells in r["servers"].items():
            for k, v in cells.items():
                base = r["servers"]["memory"][k]["per_s"]
                L.append(f"| {name} | {k} | {fmt(v['per_s'], 0)} | {fmt(v['p50_ms'], 3)} | {fmt(v['p99_ms'], 3)} | "
                         f"{fmt(v['p999_ms'], 2)} | {fmt(v['max_ms'], 1)} | {v['non_202']} | {v['errors']} | "
                         f"{fmt(v['per_s'] / base if v['per_s'] and base else None)}× |")
        t = r["target"]
        L.append(f"\nTarget: sqlite-strict at 64 in flight ≥ {t['strict_64_per_s']:,.0f} submissions/s and within "
                 f"{t['max_ratio_vs_memory']:.0f}× of memory at 64. Measured: strict {fmt(r['strict_64_per_s'], 0)}/s, "
                 f"memory {fmt(r['memory_64_per_s'], 0)}/s, memory/strict = {fmt(r['memory_over_strict'])}× — "
                 f"**{'met' if r['met'] else 'missed'}**.\n")
        if any(r["db_bytes"].values()):
            L.append("Data dir size after a round: " + ", ".join(
                f"{k} {v / 1e6:.1f} MB" for k, v in r["db_bytes"].items() if v) + ".\n")
    if "S11" in results:
        r = results["S11"]
        v, ph = r["versions"], r["photo"]
        L.append(f"## 11. Images: a {ph['width'] * ph['height'] / 1e6:.0f}-megapixel JPEG to "
                 f"{len(r['widths'])} WebP widths, {r['images']} images per cell, "
                 f"{r['rounds']} alternating round(s)\n")
        L.append(f"The upload: {ph['width']}×{ph['height']}, {ph['bytes'] / 1e6:.2f} MB, quality 90, made by libvips' "
                 "CLI (a fractal surface tinted by two gradients, plus a little noise: photo-like detail, "
                 "not pure noise). W clients in a closed loop, one keep-alive connection each, share a fixed "
                 "count of images; each sends the JPEG and waits for all of "
                 f"{', '.join(map(str, r['widths']))} (`{r['query']}`). offload: "
                 "`POST /jobs/image` (202), then `GET /jobs/<id>?wait=60` until complete, with "
                 f"`--workers {CORES} --process-workers {CORES} --store memory` (the files are written to its "
                 "temp dir); node-sharp: `POST /process`, whose reply waits for every width, a piscina pool "
                 f"of {CORES} threads, `sharp.concurrency` = cores / pool size, cache off, "
                 f"`UV_THREADPOOL_SIZE={CORES}`; it keeps only the sizes of its outputs. **node-sharp** decodes "
                 "once (shrink-on-load at 2048 into raw pixels, every width derived from those: offload's plan); "
                 "**node-sharp-clone** is sharp's `clone()` idiom, one pipeline per width from the JPEG. "
                 "images/s = completed images / the cell's wall time; latency = submit → every width done "
                 f"(p99 of {r['images']} samples is close to their max). Each server starts fresh and runs "
                 "an unmeasured warm-up first.\n")
        L.append(f"Libraries: offload libvips {v.get('offload_vips')}, libwebp {v.get('offload_libwebp')}, "
                 f"libjpeg-turbo {v.get('offload_libjpeg')} (the system's); sharp {v.get('sharp')} with its "
                 f"own libvips {v.get('sharp_vips')}, libwebp {v.get('sharp_webp')}, {v.get('sharp_jpeg')}.\n")
        L.append("| server | W | images/s | p50 (ms) | p99 (ms) | job run p50 (ms) | output KB/image | completed | "
                 "errors | images/s: offload vs this | p99: offload vs this |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for w in map(str, r["clients"]):
            base = r["servers"]["offload"][w]
            for name, cells in r["servers"].items():
                c = cells[w]
                L.append(f"| {name} | {w} | {fmt(c['images_per_s'])} | {fmt(c['p50_ms'], 0)} | "
                         f"{fmt(c['p99_ms'], 0)} | {fmt(c['run_p50_ms'], 0)} | {fmt(c['kb_per_image'], 0)} | "
                         f"{c['completed']} | {c['errors']} | "
                         f"{'' if name == 'offload' else ratio(base['images_per_s'], c['images_per_s'], True)} | "
                         f"{'' if name == 'offload' else ratio(base['p99_ms'], c['p99_ms'])} |")
        L.append("\nJob run = offload's `startedAt` → `finishedAt` (in its worker process: the input mapped, "
                 "decode, five encodes, five files written), the rest of its latency is HTTP, the upload and "
                 "queueing; node-sharp has no such stamp (—).")
        bad = {k: x for k, x in r["checks"].items() if x != "ok"}
        L.append("\nOutputs checked once per server (the first warm-up image): offload's job lists "
                 f"{', '.join(f'w{w}.webp' for w in r['widths'])}; sharp's reply has those "
                 f"{len(r['widths'])} widths — " + ("**ok**." if not bad else "**FAILED**: " + "; ".join(
                     f"{k}: {x}" for k, x in bad.items()) + "."))
        t = r["target"]
        L.append("\nTarget: offload ahead of sharp on images/s and p99 (against the better sharp pipeline of "
                 "each figure). " + " ".join(
                     f"W={w}: offload {fmt(r['servers']['offload'][w]['images_per_s'])} images/s, p99 "
                     f"{fmt(r['servers']['offload'][w]['p99_ms'], 0)} ms vs sharp's best "
                     f"{fmt(x['best_sharp_images_per_s'])} images/s, p99 {fmt(x['best_sharp_p99_ms'], 0)} ms — "
                     f"**{'met' if x['met'] else 'missed'}**." for w, x in t.items()) + "\n")
    if "S12" in results:
        r = results["S12"]
        L.append(f"## 12. Password hashing: pbkdf2-sha512, {r['iterations']:,} iterations, {r['hashes']} hashes, "
                 f"W = {r['clients']} clients, {r['rounds']} alternating round(s)\n")
        L.append("64-byte key, 16 random salt bytes. Closed loop as in 11. offload: `POST /jobs` "
                 "`{\"task\":\"password-hash\",\"params\":{\"password\":…,\"iterations\":210000}}` then "
                 f"`GET /jobs/<id>?wait=60`, OpenSSL's PKCS5_PBKDF2_HMAC on its {CORES} worker threads "
                 f"(`--workers {CORES} --store memory`); node-sharp: `POST /pbkdf2`, `crypto.pbkdf2` (async) "
                 f"on libuv's pool, `UV_THREADPOOL_SIZE={CORES}`. hashes/s = completed / wall time; latency = "
                 "submit → hash read. Each server runs an unmeasured warm-up first.\n")
        L.append("| server | hashes/s | p50 (ms) | p99 (ms) | job run p50 (ms) | completed | errors | "
                 "hashes/s: offload vs this | p99: offload vs this |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = r["servers"]["offload"]
        for name, c in r["servers"].items():
            L.append(f"| {name} | {fmt(c['hashes_per_s'])} | {fmt(c['p50_ms'], 0)} | {fmt(c['p99_ms'], 0)} | "
                     f"{fmt(c['run_p50_ms'], 0)} | {c['completed']} | {c['errors']} | "
                     f"{'' if name == 'offload' else ratio(base['hashes_per_s'], c['hashes_per_s'], True)} | "
                     f"{'' if name == 'offload' else ratio(base['p99_ms'], c['p99_ms'])} |")
        L.append("\nJob run = offload's `startedAt` → `finishedAt` (ms stamps: the KDF call on a worker thread).")
        bad = {k: x for k, x in r["checks"].items() if x != "ok"}
        L.append("\nThe first warm-up hash of each server equals Python's "
                 "`hashlib.pbkdf2_hmac('sha512', password, salt, 210000, 64)` with the salt it returned — " +
                 ("**ok**." if not bad else "**FAILED**: " + "; ".join(f"{k}: {x}" for k, x in bad.items()) + ".")
                 + "\n")
    if "S13" in results:
        r = results["S13"]
        L.append(f"## 13. Data analysis: one stats job over {r['values'] / 1e6:,.0f} M values, all {CORES} cores "
                 f"vs one, {r['rounds']} alternating round(s)\n")
        L.append(f"The input: {r['bytes'] / 2**20:,.0f} MiB of little-endian float64 (`POST /jobs/stats` with "
                 "`Content-Type: application/octet-stream`, analysed where it lies in the upload's memfd), a block "
                 f"of {r['block']:,} pseudo-random log-normal values repeated. The job: compensated sum, min, max, "
                 "corrected two-pass variance, and p50/p90/p99 by a per-chunk histogram then selection inside "
                 "the wanted buckets, each pass as chunks on every idle worker at once "
                 f"(`offload_task_parallel`). All cores: `--workers {CORES}`; one core: `--workers 1` (the same "
                 "chunks, one after another). Job run = `startedAt` → `finishedAt`; submit → result adds the "
                 "upload over loopback and the reply.\n")
        L.append("| server | workers | job run (s) | M values/s | submit → result (s) |")
        L.append("|---|---:|---:|---:|---:|")
        for name, c in r["servers"].items():
            L.append(f"| {name} | {c['workers']} | {fmt(c['run_s'])} | {fmt(r['values'] / c['run_s'] / 1e6, 0)} | "
                     f"{fmt(c['e2e_s'])} |")
        bad = {k: x for k, x in r["checks"].items() if x != "ok"}
        L.append(f"\nAll cores vs one: **{r['speedup_run']:.2f}×** on the job's run, {r['speedup_e2e']:.2f}× "
                 "submit → result. Results checked against Python's figures for the same data — " +
                 ("**ok**" if not bad else "**FAILED**: " + "; ".join(f"{k}: {x}" for k, x in bad.items())) +
                 "; the two servers' results are " + ("identical." if r["identical"] else "**different**.") + "\n")
    if "S14" in results:
        r = results["S14"]
        L.append(f"## 14. External programs: ffmpeg transcode by hand vs as an offload job, "
                 f"{r['rounds']} alternating round(s)\n")
        L.append(f"A {r['clip_seconds']} s 1280x720 H.264 test clip ({r['clip_bytes'] / 2**20:.1f} MiB, "
                 "`ffmpeg -f lavfi -i testsrc`) transcoded by examples/commands.json's `video.transcode` "
                 f"({', '.join(f'{k}={v}' for k, v in r['params'].items())}). By hand: the same argv offload builds, "
                 "its wall time. offload: `POST /jobs/video.transcode` with the clip as the body, then "
                 "`GET /jobs/<id>?wait=60` until complete (the upload, the input written to the job's "
                 "directory, the spawn through `offload exec-command`, the log and the output adopted). "
                 "One unmeasured warm-up job first.\n")
        L.append("| | median (s) | runs (s) |")
        L.append("|---|---:|---|")
        L.append(f"| by hand | {fmt(r['hand_med_s'])} | {', '.join(f'{x:.2f}' for x in r['hand_s'])} |")
        L.append(f"| offload job (submit → complete) | {fmt(r['job_med_s'])} | "
                 f"{', '.join(f'{x:.2f}' for x in r['job_s'])} |")
        L.append(f"| offload job run (startedAt → finishedAt) | {fmt(r['run_med_s'])} | "
                 f"{', '.join(f'{x:.2f}' for x in r['run_s'])} |")
        L.append(f"\nOverhead offload adds: **{r['overhead_pct']:+.1f} %** (median submit → complete vs median by "
                 "hand).\n")
    if "S15" in results:
        r = results["S15"]
        h, g = r["health"], r["rate"]
        L.append(f"## 15. Server-sent events: /health with {h['streams']} open `GET /events` streams and every "
                 f"worker busy; one stream at ~1000 jobs/s\n")
        L.append(f"Paced sequential `/health` (1 per ms), {h['rounds']} alternating rounds of: idle; every worker "
                 f"busy ({h['busy']:.0f} of {h['workers']} busy: spin jobs plus a queue on every thread worker; the "
                 f"process pool serves only image jobs); busy with {EVENT_STREAMS} "
                 "`GET /events` streams open (one client thread, at nice 10, reads them all: on this 2-core "
                 "machine the clients share the cores with the server). Each stream gets every job event "
                 "(start, progress at most 10 a second per job) and a `stats` event each second. Medians of the "
                 "rounds. Then one stream while `POST /jobs` of tiny report jobs arrive at ~1000/s (paced, one "
                 "keep-alive connection).\n")
        L.append("| | idle | workers busy | workers busy + streams | streams vs idle | target |")
        L.append("|---|---:|---:|---:|---:|---:|")
        L.append(f"| /health p50 (ms) | {fmt(h['idle_p50_ms'], 3)} | {fmt(h['busy_p50_ms'], 3)} | "
                 f"{fmt(h['streams_p50_ms'], 3)} | {fmt(h['streams_p50_ms'] / h['idle_p50_ms'])} | |")
        L.append(f"| /health p99 (ms) | {fmt(h['idle_p99_ms'], 3)} | {fmt(h['busy_p99_ms'], 3)} | "
                 f"{fmt(h['streams_p99_ms'], 3)} | {fmt(h['ratio_p99'])} | ≤ {EVENTS_TARGET_P99_RATIO:.0f}× "
                 f"{'met' if h['met'] else '**not met**'} |")
        L.append(f"| loop thread CPU (% of a core, `/health` included) | {fmt(h['idle_loop_cpu_pct'], 1)} | "
                 f"{fmt(h['busy_loop_cpu_pct'], 1)} | {fmt(h['streams_loop_cpu_pct'], 1)} | | |")
        L.append(f"\nEach of the {EVENT_STREAMS} streams received {fmt(h['bytes_per_stream_per_s'], 0)} B/s meanwhile. "
                 f"One stream at {fmt(g['jobs_per_s'], 0)} jobs/s ({g['jobs']:,} jobs, {g['non_202']} not 202): "
                 f"**{g['bytes_per_s'] / 1e3:,.0f} kB/s**, {fmt(g['bytes_per_job'], 0)} bytes per job.\n")
    if "S16" in results:
        r = results["S16"]
        v = r["versions"]
        L.append(f"## 16. Cluster: tiny jobs end to end on one PostgreSQL, 1–3 nodes, vs graphile-worker and pg-boss\n")
        L.append(f"PostgreSQL {r['postgres']} (scripts/pgtmp.py: unix socket, "
                 + ", ".join(f"{k} {x}" for k, x in r["pg_settings"].items())
                 + "), a fresh database for every run, the same for all three. A closed loop of "
                 f"{r['inflight']} jobs in flight: submit, learn the job is complete, submit the next; "
                 f"{fmt(r['warmup_s'], 0)} s warm-up, then {fmt(r['seconds'], 0)} s measured, {r['rounds']} "
                 f"alternating round(s), medians. jobs/s = jobs complete in the window / window; p50/p99: "
                 "submit → completion seen, of the jobs submitted in the window. N nodes, "
                 f"{r['workers_per_node']} workers each:\n")
        L.append(f"- **offload**: N `offload serve --store postgres --node-id nK --workers "
                 f"{r['workers_per_node']}`; `loadgen cluster`: lane i sends `POST /jobs {r['job']}` to node i mod N "
                 "and `GET /jobs/<id>?wait=30` to node i+1 mod N (another node when N > 1), one keep-alive "
                 "connection each.")
        L.append(f"- **graphile-worker {v.get('graphile-worker')}**: N processes of `run()` with concurrency "
                 f"{r['workers_per_node']}, LISTEN/NOTIFY wake-up, `localQueue.size` = concurrency + 1, "
                 "`completeJobBatchDelay` 0, pool 10 (its default); one producer process (`addJob`, 16 "
                 "connections). (`bench/peers/node-graphile`)")
        L.append(f"- **pg-boss {v.get('pg-boss')}** (the last for Node 20): N processes with "
                 f"{r['workers_per_node']} `work()` loops each, `pollingIntervalSeconds` 0.5 (its minimum; pg-boss 10 "
                 f"has no LISTEN wake-up and a loop waits out the interval after each fetch), `batchSize` "
                 f"{r['inflight']}; one producer (`send`, 16 connections). (`bench/peers/node-pgboss`)")
        L.append("- A peer's job counts as complete when the library's own completion query has been answered "
                 "by PostgreSQL (its worker process then tells the producer over IPC, and checks that the job's "
                 "handler ran); offload's when `GET /jobs/<id>?wait` answers `complete`.")
        L.append("- CPU over the run (warm-up + window + drain): DB = the postmaster and every backend "
                 "(`/proc` utime+stime, exited backends through the postmaster's cutime); nodes = offload's "
                 "processes or the peers' worker processes; client = loadgen or the peers' producer. Cores = "
                 f"CPU s / run s (this machine has {CORES}); per job = CPU ms / jobs completed in the run; other = "
                 "the whole machine's busy time (`/proc/stat`) less those three: anything else that ran meanwhile "
                 "(it takes cores from the run under test).\n")
        L.append("| nodes | system | jobs/s | p50 (ms) | p99 (ms) | DB CPU (cores) | DB ms/job | nodes CPU (cores) | "
                 "client CPU (cores) | other (cores) | lost / failed / errors | offload ×, jobs/s | bound |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for n in ("1", "2", "3"):
            o = r["systems"].get("offload", {}).get(n, {})
            for sy in ("offload", "graphile-worker", "pg-boss"):
                c = r["systems"].get(sy, {}).get(n)
                if not c:
                    continue
                total = sum(x or 0 for x in (c["db_cores"], c["nodes_cores"], c["client_cores"]))
                other = c.get("other_cores") or 0
                if sy == "pg-boss":
                    bound = f"polling: each work() loop fetches once per 0.5 s ({total:.2f} of {CORES} cores busy)"
                elif total + other >= 0.75 * CORES:
                    bound = (f"CPU: {total:.2f} of {CORES} cores, DB {c['db_cores'] / total:.0%}"
                             + (f"; {other:.2f} taken by other work" if other >= 0.2 else "")) if total else "CPU"
                else:
                    bound = f"waits / round trips ({total:.2f} of {CORES} cores busy)"
                L.append(f"| {n} | {sy} | {fmt(c['jobs_per_s'], 0)} | {fmt(c['p50_ms'])} | {fmt(c['p99_ms'])} | "
                         f"{fmt(c['db_cores'])} | {fmt(c['db_ms_per_job'], 3)} | {fmt(c['nodes_cores'])} | "
                         f"{fmt(c['client_cores'])} | {fmt(c.get('other_cores'))} | "
                         f"{c['lost']} / {c['failed']} / {c['errors']} | "
                         f"{'' if sy == 'offload' else ratio(o.get('jobs_per_s'), c['jobs_per_s'], True)} | "
                         f"{bound} |")
        t, m = r["target"], r["met"]
        two = r["systems"].get("offload", {}).get("2", {}).get("jobs_per_s")
        L.append(f"\nTargets: offload with 2 nodes ≥ {t['jobs_per_s_2_nodes']:,.0f} jobs/s: {fmt(two, 0)} — "
                 f"**{'met' if m['jobs_per_s_2_nodes'] else 'missed'}**; at least graphile-worker's jobs/s at 1, 2 "
                 f"and 3 nodes (" + ", ".join(f"{fmt(x['vs_graphile'])}×" for x in r["ratios"].values())
                 + f") — **{'met' if m['vs_graphile'] else 'missed'}**; ≥ {t['vs_pgboss']:.0f}× pg-boss's ("
                 + ", ".join(f"{fmt(x['vs_pgboss'])}×" for x in r["ratios"].values())
                 + f") — **{'met' if m['vs_pgboss'] else 'missed'}**.\n")
        L.append("pg-boss's figure is its polling, not the database: each of its N × "
                 f"{r['workers_per_node']} `work()` loops fetches at most once per 0.5 s (jobs found or not), so a "
                 "job waits for the next poll of whichever loop comes first; the loops' phases fall where they "
                 "start, so its p50 lands anywhere from tens of ms to 0.5 s from one run to the next.\n")
        if any((c.get("other_cores") or 0) >= 0.2 for cs in r["systems"].values() for c in cs.values()):
            L.append("Some runs shared the machine with other work (the `other` column): those cells understate "
                     "the system under test.\n")
    return "\n".join(L) + "\n"


PEER_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def plot(results, out_png, tmpdir):
    """health-latency.png: /health latency over time in the saturation run, one line per server."""
    if "S2" not in results or not shutil.which("gnuplot"):
        return False
    lines, marks = [], []
    # offload last, so it is drawn on top of the peers (offload-process just below it).
    order = {"offload-process": 1, "offload": 2}
    items = sorted(results["S2"]["servers"].items(), key=lambda kv: order.get(kv[0], 0))
    for i, (name, v) in enumerate(items):
        run = v["runs"][0]
        shifted = os.path.join(tmpdir, f"plot-{name}.dat")
        with open(run["series"]) as f, open(shifted, "w") as g:
            for line in f:
                t, lat = line.split()
                g.write(f"{float(t) - run['t_start']:.4f} {lat}\n")
        color = {"offload": "#d62728", "offload-process": "#e377c2"}.get(name, PEER_COLORS[i % len(PEER_COLORS)])
        lines.append(f"'{shifted}' using 1:2 with points pt 7 ps 0.35 lc rgb '{color}' title '{name}'")
        marks.append((run["t_end"] - run["t_start"], color, name))
    script = [
        "set terminal pngcairo size 1400,700 font 'DejaVu Sans,10'",
        f"set output '{out_png}'",
        "set title '/health latency during the saturation run (paced sequential client, 1 request per ms)'",
        "set xlabel 'seconds since the heavy jobs were submitted'",
        "set ylabel 'latency (ms, log scale)'",
        "set logscale y",
        "set grid",
        "set key outside right top spacing 1.3",
        "set arrow from 0, graph 0 to 0, graph 1 nohead lw 2 lc rgb 'black'",
        "set label 'jobs start' at 0, graph 0.97 offset 0.5,0",
    ]
    for k, (x, color, name) in enumerate(marks):
        script.append(f"set arrow from {x:.3f}, graph 0 to {x:.3f}, graph 1 nohead dt 2 lc rgb '{color}'")
        script.append(f"set label 'end: {name}' at {x:.3f}, graph {0.90 - 0.04 * k:.2f} offset 0.5,0 "
                      f"tc rgb '{color}' font ',8'")
    script.append("plot " + ", ".join(lines))
    gp = os.path.join(tmpdir, "plot.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    subprocess.run(["gnuplot", gp], check=True, timeout=120)
    return True


# ---------------------------------------------------------------- main

def config(quick, smoke):
    n_3s = calibrate(3.0 if not (quick or smoke) else 1.0)
    per_s = n_3s / (3.0 if not (quick or smoke) else 1.0)
    cfg = {
        "quick": quick, "smoke": smoke,
        "rounds": 1 if (quick or smoke) else 2,
        "n_3s": n_3s,
        "n_job": int(per_s * (0.5 if (quick or smoke) else 1.5)),
        "health_n": 300 if smoke else (500 if quick else 2000),
        "sat_max_s": 120,
        "wrk_s": 1 if quick else 2,
        "tiny_jobs": 2000 if smoke else (5000 if quick else 20000),
        "tiny_max_s": 60 if smoke else 120,
        "micro_tasks": 100000 if quick else 1000000,
        "kernel_report_n": 300_000_000 if quick else 3_000_000_000,
        "kernel_fib_n": 40 if quick else 42,
        "n_scale": int(per_s * (0.5 if quick else 1.0)),
        "mem_jobs": 20000 if quick else 200000,
        "mem_retention_s": 3 if quick else 5,
        "mem_max_s": 120 if quick else 300,
        "hostile_jobs": 1000,
        "hostile_a": [[100, 100]] if (quick or smoke) else [[100, 100], [200, 200]],
        "hostile_hold_max_s": 30 if (quick or smoke) else 40,
        "hostile_b_s": 3.0 if (quick or smoke) else 5.0,
        "hostile_b_depth": 16,
        "submit_s": 1.0 if quick else 3.0,
        "submit_rounds": 1 if quick else 3,
        "submit_warmup": 200 if quick else 1000,
        "img_count": 6 if quick else 40,
        "img_clients": [CORES] if quick else [CORES, 2 * CORES],
        "pbkdf2_count": 10 if quick else 60,
        "stats_values": 10_000_000 if quick else 100_000_000,
        "transcode_seconds": 4 if quick else 30,
        "transcode_rounds": 2 if quick else 5,
        "events_rate_s": 2.0 if quick else 5.0,
        "cluster_s": 3.0 if quick else 10.0,
        "cluster_warmup_s": 1.0 if quick else 2.0,
        "cluster_rounds": 1 if quick else 2,
        "cluster_workers": CORES,
        "cluster_quiet_s": 10.0 if quick else 60.0,
    }
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.out is None:  # a quick run never overwrites the full report
        args.out = os.path.join(ROOT, "bench", "results", "quick" if args.quick else "")
    cmdline = "bench/run.py " + " ".join(sys.argv[1:])
    os.makedirs(args.out, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix="offload-bench-")
    t_all = time.time()
    try:
        cfg = config(args.quick, args.smoke)
        results = {"machine": machine_info(), "config": cfg}
        log(f"config: {json.dumps({k: v for k, v in cfg.items()})}")
        if args.smoke:
            only = ["S2", "S4"]
        else:
            only = [s.strip().upper() for s in args.only.split(",") if s.strip()] or \
                   ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14",
                    "S15", "S16"]
        scen = {
            "S1": lambda: s1_worker_benchmark(cfg),
            "S2": lambda: s2_saturation(cfg, names=["offload"] if args.smoke else None, series_dir=tmpdir),
            "S3": lambda: s3_front_door(cfg),
            "S4": lambda: s4_tiny_jobs(cfg, names=["offload", "offload-process"] if args.smoke else None),
            "S5": lambda: s5_worker_cost(cfg),
            "S6": lambda: s6_kernel(cfg),
            "S7": lambda: s7_scaling(cfg),
            "S8": lambda: s8_memory(cfg),
            "S9": lambda: s9_hostile(cfg),
            "S10": lambda: s10_submissions(cfg),
            "S11": lambda: s11_images(cfg, tmpdir),
            "S12": lambda: s12_pbkdf2(cfg),
            "S13": lambda: s13_stats(cfg),
            "S14": lambda: s14_transcode(cfg, tmpdir),
            "S15": lambda: s15_events(cfg),
            "S16": lambda: s16_cluster(cfg),
        }
        unknown = [k for k in only if k not in scen]
        if unknown:
            ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scen)}")
        for key in only:
            t = time.time()
            log(f"{key} ...")
            results[key] = scen[key]()
            log(f"{key} done in {time.time() - t:.0f} s")
        results["seconds"] = time.time() - t_all
        if args.smoke:
            return smoke_check(results)
        md = render(results, cfg, cmdline)
        with open(os.path.join(args.out, "latest.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "latest.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        print(md)
        plot(results, os.path.join(args.out, "health-latency.png"), tmpdir)
        log(f"all done in {time.time() - t_all:.0f} s; wrote {args.out}/latest.md, latest.json, health-latency.png")
        return 0
    finally:
        for p in STARTED:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL) if p.pid == os.getpgid(p.pid) else p.kill()
                except (ProcessLookupError, PermissionError):
                    pass
        shutil.rmtree(tmpdir, ignore_errors=True)


def smoke_check(results):
    """make test's check that the benchmark still runs: numbers, not speed."""
    problems = []
    s2 = results["S2"]["servers"]["offload"]
    for k in ("idle_p50_ms", "idle_p99_ms", "loaded_p50_ms", "loaded_p99_ms"):
        if not isinstance(s2.get(k), (int, float)) or s2[k] <= 0:
            problems.append(f"S2 {k} = {s2.get(k)!r}")
    if not s2.get("loaded_n"):
        problems.append("S2 took no loaded samples")
    for mode in ("offload (wait)", "offload (poll)", "offload-process (wait)", "offload-process (poll)"):
        v = results["S4"]["servers"].get(mode)
        if not v or not v["jobs_per_s"] or v["jobs_per_s"] <= 0:
            problems.append(f"S4 {mode}: no throughput figure")
        elif v["errors"] or v["completed"] != results["config"]["tiny_jobs"]:
            problems.append(f"S4 {mode}: {v['completed']} of {results['config']['tiny_jobs']} jobs, "
                            f"{v['errors']} errors")
    summary = (f"S2 idle p99 {s2.get('idle_p99_ms')} ms, loaded p99 {s2.get('loaded_p99_ms')} ms "
               f"({s2.get('loaded_n')} samples); S4 " + ", ".join(
                   f"{k}: {v['jobs_per_s']:.0f} jobs/s" for k, v in results["S4"]["servers"].items()))
    print(f"bench smoke: {summary}")
    if problems:
        print("bench smoke FAILED: " + "; ".join(problems))
        return 1
    print("bench smoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
