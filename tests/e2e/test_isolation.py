"""Isolation (issue 7): worker processes beside worker threads, crashes,
hard timeouts and kills, stuck threads, retries, recycling, GET /workers and
the new /metrics lines.

Black-box: everything here is observed through HTTP, /proc and signals.

Zombies: in this sandbox PID 1 does not reap orphans, so a worker that
outlives its server may linger as a zombie. A process counts as dead when
its /proc entry is gone or its state is 'Z' (os.kill(pid, 0) alone would
call a zombie alive).
"""
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

ASAN = is_asan()

# Slack added to every contract time bound: a loaded 2-core machine running
# an ASan build (2-3x slower, worker processes much slower to start). Each
# bound is still far below what a broken feature gives (a timeout that never
# fires, a kill that never comes, a backoff that is skipped).
SLACK_MS = 1000
GRACE_MS = 200          # --kill-grace-ms default
# ms stamps are truncated wall-clock readings while the server times on the
# monotonic clock: a lower bound may read up to this much short.
ROUND_MS = 3
# A /health reply must come within this, every time, while workers die.
HEALTH_MAX_S = 2.0 if ASAN else 1.0
# Per-job limit in the storm: a job not final by then is a hung job.
STORM_JOB_S = 120.0 if ASAN else 60.0

# Workers run at nice 19 by default, so any other load on the machine (a
# parallel build, the other build's tests) can starve them for seconds. The
# classes whose premise needs a worker to be running its task promptly (a
# task that ignores a cancel must actually be in its loop when the cancel
# comes; CPU must actually be used) start their servers with --worker-nice 0.
# The other classes keep the default.
NICE0 = ["--worker-nice", "0"]

CRASH_MODES = ["segv", "abort", "exit", "oom", "hang", "ignore-cancel"]
WORKER_KEYS = {"id", "mode", "pid", "state", "jobId", "jobsDone", "cpuMs", "rssBytes", "startedAt"}
WORKER_STATES = {"idle", "busy", "starting", "stuck"}
RESTART_CAUSES = ("crash", "oom", "timeout_kill", "recycled")

# Under AddressSanitizer the oom cap is ASan's soft RSS limit (the server sets
# it for its workers, since ASan's shadow memory cannot live under
# RLIMIT_DATA), and ASan prints this line on the shared stderr when a worker
# reaches it. It is the cap doing its job, not a sanitizer finding.
ASAN_OOM_LINE = re.compile(r"^==\d+==AddressSanitizer: soft rss limit exhausted")
SANITIZER_RE = re.compile(r"(AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer)")


class IsoServer(Server):
    """A harness Server whose teardown check reads ALL of stderr (a storm
    logs hundreds of worker deaths, so a worker's sanitizer report could
    scroll out of the harness's last-80-lines window), minus the expected
    ASan soft-RSS-limit lines of oom jobs."""

    def stderr(self):
        return "\n".join(l for l in self.err_lines if not ASAN_OOM_LINE.search(l))


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid) of pid, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def is_dead(pid):
    st = proc_stat(pid)
    return st is None or st[0] in ("Z", "X")


def children_of(ppid):
    """{pid: state} of every process whose parent is ppid."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is not None and st[1] == ppid:
            out[int(name)] = st[0]
    return out


def in_nap(pid):
    """True while pid sleeps in nanosleep: the crash modes hang and
    ignore-cancel nap in their loops, and a worker waiting for a job sleeps
    in recvmsg instead, so this shows the task itself is running."""
    try:
        with open("/proc/%d/wchan" % pid) as f:
            if "nanosleep" in f.read():
                return True
        with open("/proc/%d/syscall" % pid) as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    return os.uname().machine == "x86_64" and nr in ("35", "230")  # nanosleep, clock_nanosleep


def start_ticks(pid):
    """Start time of pid (clock ticks since boot), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(")") + 2:].split()[19])


def live_workers_of_binary(binary, since_ticks, orphans_only=False):
    """{pid: stat} of every live `<binary> worker` process started at or
    after since_ticks; with orphans_only, only those whose parent is not a
    live process of that binary (a server)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.path.realpath("/proc/%d/exe" % pid) != binary:
                continue
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        st, t = proc_stat(pid), start_ticks(pid)
        if argv[1:2] == [b"worker"] and st and st[0] not in ("Z", "X") and t is not None and t >= since_ticks:
            if orphans_only:
                try:
                    parent_is_server = (os.path.realpath("/proc/%d/exe" % st[1]) == binary
                                        and not is_dead(st[1]))
                except OSError:
                    parent_is_server = False
                if parent_is_server:
                    continue
            out[pid] = st
    return out


def fd_list(pid):
    out = []
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            out.append("%s -> %s" % (name, os.readlink(os.path.join(d, name))))
        except OSError:
            pass
    return sorted(out)


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class HealthProbe(threading.Thread):
    """GET /health on a fresh connection every ~20 ms until stopped; records
    every failure (non-200, error, slower than HEALTH_MAX_S)."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.stop_ev = threading.Event()
        self.failures = []
        self.latencies = []

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                r = request(self.srv.port, "GET", "/health", timeout=HEALTH_MAX_S + 5)
                dt = time.monotonic() - t0
                self.latencies.append(dt)
                if r.status != 200 or r.json().get("status") != "ok":
                    self.failures.append("bad /health reply %r" % r)
                elif dt > HEALTH_MAX_S:
                    self.failures.append("/health took %.3fs" % dt)
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                self.failures.append("/health failed after %.3fs: %r" % (time.monotonic() - t0, e))
            self.stop_ev.wait(0.02)

    def finish(self, case):
        self.stop_ev.set()
        self.join(30)
        case.assertFalse(self.is_alive(), "health probe did not stop")
        case.assertEqual(self.failures, [], "/health failed while workers died")
        case.assertGreater(len(self.latencies), 0, "the health probe never ran")


# --------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------

class IsoCase(OffloadTestCase):

    def start_iso(self, *args):
        srv = IsoServer([str(a) for a in args])
        self.addCleanup(srv.stop)
        return srv

    # -- requests ----------------------------------------------------------------
    def post_job(self, srv, task, params, timeout_ms=None, retries=None):
        body = {"task": task, "params": params}
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        if retries is not None:
            body["retries"] = retries
        r = srv.req("POST", "/jobs", body)
        self.assertEqual(r.status, 202, "POST /jobs %r: %r" % (body, r))
        j = self.checkJob(r.json(), task=task, params=params)
        if retries:
            self.assertEqual(j["retries"], retries, repr(j))
        else:
            self.assertNotIn("retries", j, "retries shows only for jobs submitted with retries > 0: %r" % j)
            self.assertNotIn("retryAt", j, repr(j))
        return j

    def metrics(self, srv):
        r = srv.get("/metrics")
        self.assertEqual(r.status, 200, repr(r))
        out = {}
        for line in r.body.decode("utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            m = METRIC_RE.match(line)
            self.assertIsNotNone(m, "bad metrics line %r" % line)
            out[m.group(1)] = float(m.group(2))
        return out

    def restarts(self, srv):
        m = self.metrics(srv)
        return {c: m['offload_worker_restarts_total{cause="%s"}' % c] for c in RESTART_CAUSES}

    def workers(self, srv):
        r = srv.get("/workers")
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        body = r.json()
        self.assertEqual(set(body.keys()), {"workers"}, repr(body))
        ws = body["workers"]
        self.assertIsInstance(ws, list)
        self.check_workers(srv, ws)
        return ws

    def check_workers(self, srv, ws):
        ids = []
        seen_process = False
        now = time.time() * 1000
        for w in ws:
            self.assertEqual(set(w.keys()), WORKER_KEYS, "worker keys: %r" % w)
            for k in ("id", "pid", "jobsDone", "cpuMs", "rssBytes", "startedAt"):
                self.assertTrue(is_int(w[k]), "%s must be an integer: %r" % (k, w))
            self.assertIn(w["mode"], ("thread", "process"), repr(w))
            self.assertIn(w["state"], WORKER_STATES, repr(w))
            self.assertGreaterEqual(w["jobsDone"], 0, repr(w))
            self.assertGreaterEqual(w["cpuMs"], 0, repr(w))
            self.assertGreaterEqual(w["rssBytes"], 0, repr(w))
            self.assertTrue(now - 600000 <= w["startedAt"] <= now + 60000, "startedAt not near now: %r" % w)
            if w["state"] in ("busy", "stuck"):
                self.assertRegex(w["jobId"] or "", ID_RE, "a %s worker names its job: %r" % (w["state"], w))
            elif w["state"] == "idle":
                self.assertIsNone(w["jobId"], "an idle worker has no job: %r" % w)
            else:
                self.assertTrue(w["jobId"] is None or ID_RE.match(w["jobId"]), repr(w))
            if w["mode"] == "thread":
                self.assertFalse(seen_process, "thread workers come first: %r" % ws)
                self.assertEqual(w["pid"], srv.pid, "a thread worker's pid is the server's: %r" % w)
            else:
                seen_process = True
                self.assertNotEqual(w["pid"], srv.pid, repr(w))
                self.assertGreater(w["pid"], 0, repr(w))
            ids.append(w["id"])
        self.assertEqual(len(ids), len(set(ids)), "worker ids must be unique: %r" % ws)

    def wait_pool_ready(self, srv, n_thread, n_process, timeout=None):
        """Polls GET /workers until there are n_thread thread workers (None:
        any number) and n_process process workers, all idle; returns them."""
        timeout = timeout or (20 if ASAN else 10)
        last = []

        def ready():
            last[:] = [self.workers(srv)]
            ws = last[0]
            th = [w for w in ws if w["mode"] == "thread"]
            pr = [w for w in ws if w["mode"] == "process"]
            return ((n_thread is None or len(th) == n_thread) and len(pr) == n_process
                    and all(w["state"] == "idle" for w in ws))
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                self.fail("pool not back to %r threads + %d idle processes within %ss: %r"
                          % (n_thread, n_process, timeout, last[0] if last else None))
            time.sleep(0.02)
        return last[0]

    def worker_running(self, srv, job_id, timeout=10):
        """The worker whose jobId is job_id (waits for it to show)."""
        found = []

        def look():
            found[:] = [w for w in self.workers(srv) if w["jobId"] == job_id]
            return bool(found)
        self.wait_until(look, timeout, what="a worker running job %s" % job_id)
        self.assertEqual(len(found), 1, "one job, one worker: %r" % found)
        return found[0]

    def assertChildrenSettled(self, srv, ws, timeout=10):
        """The server's children are exactly its live process workers: no
        zombie, no stray process."""
        want = {w["pid"] for w in ws if w["mode"] == "process"}
        last = {}

        def ok():
            last.clear()
            last.update(children_of(srv.pid))
            return set(last) == want and all(s not in ("Z", "X") for s in last.values())
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                self.fail("children of server %d: %r; want exactly the live workers %r"
                          % (srv.pid, last, sorted(want)))
            time.sleep(0.05)

    def wait_dead(self, pids, timeout):
        """Seconds until every pid is dead (zombie rule), or fails."""
        t0 = time.monotonic()
        while True:
            alive = [p for p in pids if not is_dead(p)]
            if not alive:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                self.fail("processes still alive after %.1fs: %r" % (timeout, {p: proc_stat(p) for p in alive}))
            time.sleep(0.005)

    def assertCrashFinal(self, f, mode, memory_mb=None):
        """The final state a crash job of this mode must reach."""
        self.checkJob(f, expect_status="failed", task="crash")
        code, msg = f["error"]["code"], f["error"]["message"]
        if mode == "segv":
            self.assertEqual(code, "worker_crashed", repr(f))
            self.assertIn("SIGSEGV", msg, repr(f))
        elif mode == "abort":
            self.assertEqual(code, "worker_crashed", repr(f))
            self.assertIn("SIGABRT", msg, repr(f))
        elif mode == "exit":
            self.assertEqual(code, "worker_crashed", repr(f))
            self.assertIn("status 3", msg, repr(f))
        elif mode == "oom":
            self.assertIn(code, ("out_of_memory", "worker_crashed"), repr(f))
            if code == "out_of_memory":
                self.assertIn(str(memory_mb), msg, "the message names the limit: %r" % f)
            else:
                self.assertTrue("SIGKILL" in msg or "SIGSEGV" in msg, repr(f))
        else:
            self.assertEqual(code, "timeout", repr(f))

    def wait_settled_fds(self, pid):
        """The fd count once two readings 100 ms apart agree."""
        prev = None
        for _ in range(100):
            n = len(fd_list(pid))
            if n == prev:
                return n
            prev = n
            time.sleep(0.1)
        self.fail("fd count of %d never settled" % pid)


# --------------------------------------------------------------------------
# 1. The mixed storm, in both modes
# --------------------------------------------------------------------------

class MixedStorm(IsoCase):
    """200 crash jobs of random modes interleaved with 200 report jobs under
    16-way concurrency; under ASan 100 + 100 (the build is 2-3x slower and
    `make test` runs this file in both builds; the mix is the same)."""

    N = 100 if ASAN else 200
    CONCURRENCY = 16
    MEMORY_MB = 256

    def storm(self, isolation, seed):
        srv = self.start_iso("--isolation", isolation, "--workers", 2, "--process-workers", 2,
                             "--worker-memory-mb", self.MEMORY_MB, "--enable-test-tasks", *NICE0)
        n_thread = 2 if isolation == "thread" else None
        tasks = {t["name"]: t["isolation"] for t in srv.get("/tasks").json()["tasks"]}
        self.assertEqual((tasks["report"], tasks["crash"]), (isolation, "process"), repr(tasks))
        # Warm-up: one job of each kind, so whatever the server opens lazily is open.
        warm = [self.post_job(srv, "report", {"heavyIterations": 10})]
        for mode in CRASH_MODES:
            warm.append(self.post_job(srv, "crash", {"mode": mode},
                                      timeout_ms=300 if mode in ("hang", "ignore-cancel") else None))
        for j in warm:
            self.assertIn(self.wait_final(srv, j["id"], 30)["status"], ("complete", "failed"))
        self.wait_pool_ready(srv, n_thread, 2)
        fds_before = self.wait_settled_fds(srv.pid)
        list_before = fd_list(srv.pid)
        m_before = self.metrics(srv)

        rng = random.Random(seed)
        work = [("crash", rng.choice(CRASH_MODES)) for _ in range(self.N)]
        work += [("report", rng.randint(1000, 3000)) for _ in range(self.N)]
        rng.shuffle(work)
        for kind, arg in work:
            if kind == "report":
                sqrt_sum(arg)  # cache the expected results before the clock starts

        results = [None] * len(work)
        errors = []
        lock = threading.Lock()
        next_i = [0]

        def one(i):
            kind, arg = work[i]
            if kind == "report":
                body = {"task": "report", "params": {"heavyIterations": arg}}
            else:
                body = {"task": "crash", "params": {"mode": arg}}
                if arg in ("hang", "ignore-cancel"):
                    body["timeoutMs"] = 300
            r = srv.req("POST", "/jobs", body)
            if r.status != 202:
                raise AssertionError("POST %r: %r" % (body, r))
            jid = r.json()["id"]
            deadline = time.monotonic() + STORM_JOB_S
            while True:
                r = srv.get("/jobs/%s?wait=10" % jid, timeout=30)
                if r.status != 200:
                    raise AssertionError("GET job %s: %r" % (jid, r))
                j = r.json()
                if j["status"] in FINAL:
                    return j
                if time.monotonic() > deadline:
                    raise AssertionError("job %r not final within %ss: %r" % (body, STORM_JOB_S, j))

        def client():
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= len(work) or errors:
                    return
                try:
                    results[i] = one(i)
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append("%r: %r" % (work[i], e))

        probe = HealthProbe(srv)
        probe.start()
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(self.CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(STORM_JOB_S * 4)
            self.assertFalse(t.is_alive(), "a storm client is still running")
        storm_s = time.monotonic() - t0
        probe.finish(self)
        self.assertEqual(errors, [])
        self.assertTrue(srv.alive(), "the server died in the storm")

        counts = {m: 0 for m in CRASH_MODES}
        for (kind, arg), f in zip(work, results):
            with self.subTest(kind=kind, arg=arg, job=f["id"]):
                if kind == "report":
                    self.checkJob(f, expect_status="complete", task="report", params={"heavyIterations": arg})
                    want = sqrt_sum(arg)
                    self.assertTrue(f["result"] == want or rel_close(f["result"], want, 1e-9),
                                    "report %d: got %r want %r" % (arg, f["result"], want))
                else:
                    counts[arg] += 1
                    self.assertCrashFinal(f, arg, self.MEMORY_MB)
                    if arg in ("hang", "ignore-cancel"):
                        # failed at its 300 ms deadline, whether or not the task cooperates
                        run = f["finishedAt"] - f["startedAt"]
                        self.assertGreaterEqual(run, 300 - ROUND_MS, repr(f))
                        self.assertLessEqual(run, 300 + SLACK_MS, repr(f))
                self.assertEqual(f["attempts"], 1, repr(f))
                self.assertNotIn("retries", f)

        # The pool is back to full size, every worker idle; the server's
        # children are exactly those workers, none a zombie.
        ws = self.wait_pool_ready(srv, n_thread, 2)
        self.assertChildrenSettled(srv, ws)

        m = self.metrics(srv)
        self.assertEqual(m["offload_workers"], len(ws), "offload_workers counts threads + processes")
        self.assertEqual(m["offload_job_attempts_total"] - m_before["offload_job_attempts_total"], len(work))
        self.assertEqual(m["offload_job_retries_total"], m_before["offload_job_retries_total"])
        d = {c: m['offload_worker_restarts_total{cause="%s"}' % c]
             - m_before['offload_worker_restarts_total{cause="%s"}' % c] for c in RESTART_CAUSES}
        died = counts["segv"] + counts["abort"] + counts["exit"]
        # each segv/abort/exit kills its worker; each oom too (cause oom, or crash if
        # the cap showed as a plain death); each ignore-cancel is killed after grace
        self.assertEqual(d["crash"] + d["oom"], died + counts["oom"], "restarts %r for %r" % (d, counts))
        self.assertGreaterEqual(d["crash"], died, repr(d))
        self.assertGreaterEqual(d["timeout_kill"], counts["ignore-cancel"], repr(d))
        self.assertLessEqual(d["timeout_kill"], counts["ignore-cancel"] + counts["hang"], repr(d))
        self.assertEqual(d["recycled"], 0, repr(d))

        # No descriptor leaked: the count is back where it was before the storm.
        deadline = time.monotonic() + 10
        while len(fd_list(srv.pid)) != fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
        after = fd_list(srv.pid)
        self.assertEqual(len(after), fds_before, "fd leak: before %r\nafter %r" % (list_before, after))
        self.assertTrue(srv.alive())
        sys.stderr.write("[storm %s: %d jobs in %.1fs, modes %r, /health max %.3fs] "
                         % (isolation, len(work), storm_s, counts, max(probe.latencies)))

    def test_storm_thread_isolation(self):
        self.storm("thread", 7001)

    def test_storm_process_isolation(self):
        self.storm("process", 7002)


# --------------------------------------------------------------------------
# 2-4, 10 (process part), 11: one shared process-isolation server
# --------------------------------------------------------------------------

class ProcessPool(IsoCase):
    """--isolation process --workers 2 --process-workers 2 --worker-memory-mb 256.
    Every test leaves both workers idle."""
    ARGS = ["--isolation", "process", "--workers", "2", "--process-workers", "2",
            "--worker-memory-mb", "256", "--enable-test-tasks"] + NICE0

    @classmethod
    def setUpClass(cls):
        cls.srv = IsoServer(cls.ARGS)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        self.assertTrue(self.srv.alive(), "the shared server is gone")
        self.ready = self.wait_pool_ready(self.srv, None, 2)

    def tearDown(self):
        self.assertTrue(self.srv.alive(), "the shared server is gone")

    def test_oom_is_contained(self):
        srv = self.srv
        rss0 = vm_rss_kib(srv.pid)
        r0 = self.restarts(srv)
        for _ in range(3):
            j = self.post_job(srv, "crash", {"mode": "oom"})
            f = self.wait_final(srv, j["id"], 60)
            self.assertCrashFinal(f, "oom", 256)
            self.assertEqual(f["attempts"], 1)
        ws = self.wait_pool_ready(srv, None, 2)
        r1 = self.restarts(srv)
        self.assertEqual((r1["oom"] + r1["crash"]) - (r0["oom"] + r0["crash"]), 3, "%r -> %r" % (r0, r1))
        rss1 = vm_rss_kib(srv.pid)
        # the worker ate 256 MiB three times; the server itself did not grow
        self.assertLess(rss1 - rss0, 20 * 1024, "server VmRSS %d KiB -> %d KiB" % (rss0, rss1))
        self.assertChildrenSettled(srv, ws)

    def test_hang_timeout(self):
        srv = self.srv
        r0 = self.restarts(srv)
        j = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=300)
        w = self.worker_running(srv, j["id"])
        self.assertEqual(w["mode"], "process")
        f = self.wait_final(srv, j["id"], 20)
        self.assertCrashFinal(f, "hang")
        self.assertIn("300", f["error"]["message"])
        run = f["finishedAt"] - f["startedAt"]
        self.assertGreaterEqual(run, 300 - ROUND_MS, repr(f))
        self.assertLessEqual(run, 300 + GRACE_MS + SLACK_MS, repr(f))
        # hang honours the timeout: its worker stops in time and is not killed
        ws = self.wait_pool_ready(srv, None, 2)
        self.assertIn(w["pid"], [x["pid"] for x in ws], "a cooperating worker was replaced")
        self.assertEqual(self.restarts(srv), r0)

    def test_hang_delete(self):
        srv = self.srv
        r0 = self.restarts(srv)
        j = self.post_job(srv, "crash", {"mode": "hang"})
        w = self.worker_running(srv, j["id"])
        self.wait_status(srv, j["id"], "processing", 10)
        t0 = time.monotonic()
        r = srv.req("DELETE", "/jobs/%s" % j["id"])
        self.assertEqual(r.status, 202, repr(r))
        self.checkJob(r.json(), expect_status={"processing", "canceled"}, job_id=j["id"])
        f = self.wait_status(srv, j["id"], FINAL, 20)
        dt = (time.monotonic() - t0) * 1000
        self.checkJob(f, expect_status="canceled", job_id=j["id"])
        self.assertEqual(f["error"]["code"], "canceled", repr(f))
        self.assertLess(dt, GRACE_MS + 100 + SLACK_MS, "canceled %.0f ms after DELETE" % dt)
        ws = self.wait_pool_ready(srv, None, 2)
        self.assertIn(w["pid"], [x["pid"] for x in ws], "a cooperating worker was replaced")
        self.assertEqual(self.restarts(srv), r0)

    def test_ignore_cancel_delete_kills_worker(self):
        srv = self.srv
        r0 = self.restarts(srv)
        j = self.post_job(srv, "crash", {"mode": "ignore-cancel"})
        w = self.worker_running(srv, j["id"])
        self.assertEqual(w["mode"], "process")
        self.wait_status(srv, j["id"], "processing", 10)
        # the task must be in its loop: a job canceled before its task starts
        # ends without a kill (nothing ignores anything yet)
        self.wait_until(lambda: in_nap(w["pid"]), 10, interval=0.005, what="the task looping in its worker")
        t0 = time.monotonic()
        r = srv.req("DELETE", "/jobs/%s" % j["id"])
        self.assertEqual(r.status, 202, repr(r))
        f = self.wait_status(srv, j["id"], FINAL, 20)
        dt = (time.monotonic() - t0) * 1000
        self.checkJob(f, expect_status="canceled", job_id=j["id"])
        self.assertEqual(f["error"]["code"], "canceled", repr(f))
        self.assertLess(dt, GRACE_MS + 100 + SLACK_MS, "canceled %.0f ms after DELETE" % dt)
        # killed (SIGKILL after the grace period) and replaced in the same slot
        self.wait_dead([w["pid"]], 10)
        ws = self.wait_pool_ready(srv, None, 2)
        slot = [x for x in ws if x["id"] == w["id"]]
        pids = [x["pid"] for x in ws]
        self.assertNotIn(w["pid"], pids, "the worker that ignored the cancel was not replaced: %r" % ws)
        if slot:
            self.assertNotEqual(slot[0]["pid"], w["pid"])
            self.assertEqual(slot[0]["jobsDone"], 0, "a replacement starts at 0 jobs: %r" % slot)
            self.assertGreaterEqual(slot[0]["startedAt"], w["startedAt"], repr((w, slot)))
        r1 = self.restarts(srv)
        self.assertEqual(r1["timeout_kill"], r0["timeout_kill"] + 1, "%r -> %r" % (r0, r1))
        self.assertChildrenSettled(srv, ws)
        # the new worker runs jobs
        k = self.post_job(srv, "report", {"heavyIterations": 1000})
        f = self.wait_final(srv, k["id"], 20)
        self.assertEqual(f["status"], "complete", repr(f))

    def test_ignore_cancel_timeout(self):
        srv = self.srv
        r0 = self.restarts(srv)
        j = self.post_job(srv, "crash", {"mode": "ignore-cancel"}, timeout_ms=300)
        w = self.worker_running(srv, j["id"])
        f = self.wait_final(srv, j["id"], 20)
        self.assertCrashFinal(f, "ignore-cancel")
        run = f["finishedAt"] - f["startedAt"]
        # failed at the deadline itself, not after the grace period or the kill
        self.assertGreaterEqual(run, 300 - ROUND_MS, repr(f))
        self.assertLessEqual(run, 300 + SLACK_MS, repr(f))
        self.wait_dead([w["pid"]], 10)
        ws = self.wait_pool_ready(srv, None, 2)
        self.assertNotIn(w["pid"], [x["pid"] for x in ws])
        r1 = self.restarts(srv)
        self.assertEqual(r1["timeout_kill"], r0["timeout_kill"] + 1, "%r -> %r" % (r0, r1))

    def test_every_task_runs_in_a_process(self):
        srv = self.srv
        j = self.post_job(srv, "spin", {"ms": 400})
        w = self.worker_running(srv, j["id"])
        self.assertEqual(w["mode"], "process", repr(w))
        self.assertEqual(w["state"], "busy", repr(w))
        self.assertEqual(proc_stat(w["pid"])[1], srv.pid, "a process worker is a child of the server")
        f = self.wait_final(srv, j["id"], 20)
        self.assertEqual(f["status"], "complete", repr(f))
        ws = self.wait_pool_ready(srv, None, 2)
        after = [x for x in ws if x["pid"] == w["pid"]]
        self.assertEqual(len(after), 1, repr(ws))
        self.assertEqual(after[0]["jobsDone"], w["jobsDone"] + 1, "jobsDone counts the process's jobs")
        self.assertGreater(after[0]["cpuMs"], 0, "a 400 ms spin used no CPU? %r" % after)
        self.assertGreater(after[0]["rssBytes"], 0, repr(after))
        for t in self.srv.get("/tasks").json()["tasks"]:
            self.assertEqual(t["isolation"], "process", "--isolation process: %r" % t)

    def test_health_during_crash_burst(self):
        srv = self.srv
        probe = HealthProbe(srv)
        probe.start()
        try:
            # quick deaths, and a few oom deaths (~0.3 s each) to make the burst last
            modes = ["segv", "abort", "exit"] * 14 + ["oom"] * 4
            random.Random(11).shuffle(modes)
            jobs = [(m, self.post_job(srv, "crash", {"mode": m})) for m in modes]
            for m, j in jobs:
                self.assertCrashFinal(self.wait_final(srv, j["id"], 60), m, 256)
            n_during = len(probe.latencies)
        finally:
            probe.finish(self)
        self.assertGreaterEqual(n_during, 10, "/health was probed only %d times during the burst" % n_during)
        self.assertTrue(srv.alive())
        ws = self.wait_pool_ready(srv, None, 2)
        self.assertChildrenSettled(srv, ws)
        sys.stderr.write("[%d /health probes, max %.3fs] " % (len(probe.latencies), max(probe.latencies)))

    def test_progress_of_a_running_process_job(self):
        # API.md: progress is 0-1, updated by the task while it runs (spin:
        # every 20,000 loop iterations), never decreases; a failed or canceled
        # job keeps its last value. Process isolation must not hide it.
        srv = self.srv
        j = self.post_job(srv, "spin", {"ms": 1500})
        seen = []
        deadline = time.monotonic() + 30
        while True:
            f = self.job(srv, j["id"])
            seen.append((f["status"], f["progress"]))
            if f["status"] in FINAL:
                break
            self.assertLess(time.monotonic(), deadline, repr(seen[-5:]))
            time.sleep(0.05)
        self.assertEqual(f["status"], "complete", repr(f))
        progress = [p for _, p in seen]
        self.assertEqual(progress, sorted(progress), "progress went down: %r" % seen)
        running = [p for st, p in seen if st == "processing"]
        self.assertGreaterEqual(len(running), 5, repr(seen))
        self.assertTrue(any(0 < p < 1 for p in running),
                        "progress of a job running in a worker process never moved: %d polls while "
                        "processing read %r; then %r" % (len(running), sorted(set(running)), seen[-1]))
        # stopped by its timeout (and then killed): keeps the progress it had
        r0 = self.restarts(srv)
        j = self.post_job(srv, "spin", {"ms": 1000, "ignoreCancel": True}, timeout_ms=300)
        f = self.wait_final(srv, j["id"], 20)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["error"]["code"], "timeout", repr(f))
        self.assertGreater(f["progress"], 0, "a job stopped at 300 ms of a 1000 ms spin keeps its progress: %r" % f)
        self.assertLess(f["progress"], 1, repr(f))
        self.wait_pool_ready(srv, None, 2)
        self.assertEqual(self.restarts(srv)["timeout_kill"], r0["timeout_kill"] + 1)

    def test_every_entry_point_in_processes(self):
        # The seeds' endpoints work unchanged when their jobs run in processes.
        srv = self.srv
        r = srv.get("/fibonacci/25", timeout=60)
        self.assertEqual((r.status, r.json()), (200, {"n": 25, "result": fib(25)}), repr(r))
        r = srv.get("/tasks/reports/start?heavyIterations=123457")
        self.assertEqual(r.status, 202, repr(r))
        jid = r.json()["jobId"]
        f = self.wait_final(srv, jid, 30)
        self.assertEqual(f["status"], "complete", repr(f))
        self.assertTrue(rel_close(f["result"], sqrt_sum(123457), 1e-9), repr(f))
        j = self.post_job(srv, "primes", {"max": 1000000})
        f = self.wait_final(srv, j["id"], 30)
        self.assertEqual((f["status"], f["result"]), ("complete", 78498), repr(f))
        # a /fibonacci client that leaves cancels its job; the task stops by itself
        r0 = self.restarts(srv)
        c = self.raw(srv)
        c.send(build_request("GET", "/fibonacci/92"))
        busy = self.wait_until(lambda: [w for w in self.workers(srv) if w["state"] == "busy"] or None, 10,
                               what="the fibonacci job running")
        self.assertEqual(len(busy), 1, repr(busy))
        jid, pid = busy[0]["jobId"], busy[0]["pid"]
        c.close()
        f = self.wait_final(srv, jid, 10)
        self.assertEqual(f["status"], "canceled", repr(f))
        ws = self.wait_pool_ready(srv, None, 2)
        self.assertIn(pid, [w["pid"] for w in ws], "a cooperating worker was killed")
        self.assertEqual(self.restarts(srv), r0)

    def test_oom_retried(self):
        # out_of_memory is one of the codes a retry covers (default backoff 500 ms)
        srv = self.srv
        j = self.post_job(srv, "crash", {"mode": "oom"}, retries=1)
        f = self.wait_final(srv, j["id"], 60)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["attempts"], 2, repr(f))
        self.assertIn(f["error"]["code"], ("out_of_memory", "worker_crashed"), repr(f))
        self.assertTrue(f["error"]["message"].endswith("(attempt 2 of 2)."), repr(f))


# --------------------------------------------------------------------------
# 5. Thread mode: a task that ignores cancellation leaves its worker stuck
# --------------------------------------------------------------------------

class StuckThread(IsoCase):

    def test_stuck_thread_worker(self):
        srv = self.start_iso("--workers", 3, "--process-workers", 1, "--enable-test-tasks", *NICE0)
        self.wait_pool_ready(srv, 3, 1)
        t_start = time.monotonic()
        a = self.post_job(srv, "spin", {"ms": 3000, "ignoreCancel": True}, timeout_ms=200)
        b = self.post_job(srv, "spin", {"ms": 3000, "ignoreCancel": True})
        wa = self.worker_running(srv, a["id"])
        wb = self.worker_running(srv, b["id"])
        self.assertEqual((wa["mode"], wb["mode"]), ("thread", "thread"))
        self.wait_status(srv, b["id"], "processing", 10)
        t_del = time.monotonic()
        r = srv.req("DELETE", "/jobs/%s" % b["id"])
        self.assertEqual(r.status, 202, repr(r))

        fa = self.wait_final(srv, a["id"], 10)
        self.checkJob(fa, expect_status="failed")
        self.assertEqual(fa["error"]["code"], "timeout", repr(fa))
        run = fa["finishedAt"] - fa["startedAt"]
        self.assertGreaterEqual(run, 200 - ROUND_MS, repr(fa))
        self.assertLessEqual(run, 200 + SLACK_MS, "timed out well before the spin's 3000 ms? %r" % fa)
        fb = self.wait_final(srv, b["id"], 10)
        self.checkJob(fb, expect_status="canceled")
        self.assertLess((time.monotonic() - t_del) * 1000, GRACE_MS + 100 + SLACK_MS)

        # past the grace period both threads are reported stuck, with their jobs
        def stuck():
            ws = self.workers(srv)
            by_id = {w["id"]: w for w in ws}
            return (by_id[wa["id"]]["state"] == "stuck" and by_id[wb["id"]]["state"] == "stuck") and ws
        ws = self.wait_until(stuck, 5, what="both ignoring threads reported stuck")
        by_id = {w["id"]: w for w in ws}
        self.assertEqual(by_id[wa["id"]]["jobId"], a["id"])
        self.assertEqual(by_id[wb["id"]]["jobId"], b["id"])
        self.assertLess(time.monotonic() - t_start, 2.8, "stuck was seen only after the spins ended")
        self.assertTrue(srv.alive())

        # the pool runs on with the remaining worker meanwhile: these finish
        # before the stuck spins (3000 ms of wall time) can have returned
        others = [self.post_job(srv, "spin", {"ms": 50}) for _ in range(3)]
        others.append(self.post_job(srv, "report", {"heavyIterations": 1000}))
        for j in others:
            f = self.wait_final(srv, j["id"], 10)
            self.assertEqual(f["status"], "complete", repr(f))
            self.assertLess(f["finishedAt"], fa["startedAt"] + 3000,
                            "ran only after the stuck threads were free: %r" % f)
        self.assertEqual(self.health(srv)["status"], "ok")

        # when the spins return, the threads are idle again; the jobs keep their end
        self.wait_pool_ready(srv, 3, 1, timeout=15)
        self.assertGreater(time.monotonic() - t_start, 2.5, "the spins cannot be over before ~3 s")
        fa2, fb2 = self.job(srv, a["id"]), self.job(srv, b["id"])
        self.assertEqual((fa2["status"], fa2["error"]), (fa["status"], fa["error"]))
        self.assertEqual(fa2["finishedAt"], fa["finishedAt"])
        self.assertEqual(fb2["status"], "canceled")
        self.assertIsNone(fa2["result"])
        # and take jobs
        j = self.post_job(srv, "spin", {"ms": 1})
        self.assertEqual(self.wait_final(srv, j["id"], 10)["status"], "complete")
        # a crash job runs in a process even in thread mode
        c = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=1000)
        self.assertEqual(self.worker_running(srv, c["id"])["mode"], "process")
        self.assertEqual(srv.req("DELETE", "/jobs/%s" % c["id"]).status, 202)
        self.assertEqual(self.wait_final(srv, c["id"], 10)["status"], "canceled")


    def test_retry_while_a_thread_is_stuck(self):
        # A thread-run timeout is retried on another thread while the first
        # is still stuck in the old run; when the old runs return they change
        # nothing about the job.
        srv = self.start_iso("--workers", 2, "--process-workers", 1, "--enable-test-tasks",
                             "--retry-backoff-ms", 100, *NICE0)
        self.wait_pool_ready(srv, 2, 1)
        j = self.post_job(srv, "spin", {"ms": 1500, "ignoreCancel": True}, timeout_ms=200, retries=1)
        f = self.wait_final(srv, j["id"], 10)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["attempts"], 2, repr(f))
        self.assertEqual(f["error"]["code"], "timeout", repr(f))
        self.assertTrue(f["error"]["message"].endswith("(attempt 2 of 2)."), repr(f))
        self.assertLess(f["finishedAt"] - f["createdAt"], 200 + 110 + 200 + SLACK_MS, repr(f))
        ws = self.wait_until(lambda: [w for w in self.workers(srv) if w["state"] == "stuck"] or None, 5,
                             what="a stuck thread")
        self.assertTrue(all(w["jobId"] == j["id"] and w["mode"] == "thread" for w in ws), repr(ws))
        self.wait_pool_ready(srv, 2, 1, timeout=15)
        f2 = self.job(srv, j["id"])
        for k in ("status", "error", "attempts", "finishedAt", "startedAt", "result"):
            self.assertEqual(f2[k], f[k], "the old runs' return changed the job: %r -> %r" % (f, f2))
        k = self.post_job(srv, "spin", {"ms": 1})
        self.assertEqual(self.wait_final(srv, k["id"], 10)["status"], "complete")


class Grace(IsoCase):

    def test_kill_grace_ms(self):
        # --kill-grace-ms 1500: nothing is killed or reported stuck before the
        # grace period ends; both happen soon after it.
        grace = 1500
        srv = self.start_iso("--workers", 1, "--process-workers", 1, "--enable-test-tasks",
                             "--kill-grace-ms", grace, *NICE0)
        self.wait_pool_ready(srv, 1, 1)
        tj = self.post_job(srv, "spin", {"ms": 3000, "ignoreCancel": True})
        pj = self.post_job(srv, "crash", {"mode": "ignore-cancel"})
        tw = self.worker_running(srv, tj["id"])
        pw = self.worker_running(srv, pj["id"])
        self.assertEqual((tw["mode"], pw["mode"]), ("thread", "process"))
        self.wait_job(srv, tj["id"], lambda j: j["progress"] > 0, 10, what="the spin running")
        self.wait_until(lambda: in_nap(pw["pid"]), 10, interval=0.005, what="the crash task looping")
        t0 = time.monotonic()
        for j in (tj, pj):
            self.assertEqual(srv.req("DELETE", "/jobs/%s" % j["id"]).status, 202)
        # well inside the grace period: neither is forced yet
        while time.monotonic() - t0 < 0.5:
            time.sleep(0.02)
        by_id = {w["id"]: w for w in self.workers(srv)}
        checked_at = time.monotonic() - t0
        self.assertLess(checked_at, grace / 1000.0 - 0.1, "checked too late to tell")
        self.assertFalse(is_dead(pw["pid"]), "killed %.2fs after the DELETE, before its grace" % checked_at)
        self.assertEqual(by_id[pw["id"]]["pid"], pw["pid"])
        self.assertNotEqual(by_id[tw["id"]]["state"], "stuck", "stuck before the grace period ended")
        # then the process is killed and the thread reported stuck
        self.wait_dead([pw["pid"]], grace / 1000.0 + SLACK_MS / 1000.0)
        fp = self.wait_final(srv, pj["id"], 10)
        self.assertEqual(fp["status"], "canceled", repr(fp))
        self.assertLess(time.monotonic() - t0, (grace + 100 + SLACK_MS) / 1000.0)
        self.wait_until(lambda: {w["id"]: w for w in self.workers(srv)}[tw["id"]]["state"] == "stuck",
                        SLACK_MS / 1000.0 + 1, what="the thread reported stuck")
        self.assertLess(time.monotonic() - t0, (grace + SLACK_MS) / 1000.0 + 1)
        self.assertEqual(self.job(srv, tj["id"])["status"], "canceled")
        self.wait_pool_ready(srv, 1, 1, timeout=15)


# --------------------------------------------------------------------------
# 6-7. The server's death and its drain
# --------------------------------------------------------------------------

class ServerExit(IsoCase):

    def test_sigkill_server_kills_workers(self):
        for isolation in ("thread", "process"):
            with self.subTest(isolation=isolation):
                srv = self.start_iso("--isolation", isolation, "--workers", 1, "--process-workers", 3,
                                     "--enable-test-tasks")
                self.wait_pool_ready(srv, None, 3)
                jobs = [self.post_job(srv, "crash", {"mode": "hang"}),
                        self.post_job(srv, "crash", {"mode": "ignore-cancel"})]
                busy = [self.worker_running(srv, j["id"]) for j in jobs]
                ws = self.workers(srv)
                pids = [w["pid"] for w in ws if w["mode"] == "process"]
                self.assertEqual(len(pids), 3)
                self.assertTrue({w["pid"] for w in busy} <= set(pids))
                kids = children_of(srv.pid)
                self.assertTrue(set(pids) <= set(kids), "workers %r, children %r" % (pids, kids))
                t0 = time.monotonic()
                srv.kill()
                self.assertFalse(srv.alive())
                dt = self.wait_dead(pids, 5)
                total = time.monotonic() - t0
                self.assertLessEqual(total, 1.0, "workers outlived the SIGKILLed server by %.2fs" % total)
                sys.stderr.write("[%s: workers dead %.3fs after SIGKILL] " % (isolation, total))
                del dt

    def test_sigkill_during_respawn_churn(self):
        # Workers die and are replaced as fast as 4 clients can post crash
        # jobs when the server is SIGKILLed: no worker outlives it, not even
        # one started a moment before the kill.
        binary = os.path.realpath(os.environ["OFFLOAD_BIN"])
        for round_ in range(3):
            with self.subTest(round=round_):
                srv = self.start_iso("--isolation", "process", "--workers", 4, "--process-workers", 4,
                                     "--enable-test-tasks")
                since = start_ticks(srv.pid)
                stop = threading.Event()

                def spam():
                    while not stop.is_set():
                        try:
                            srv.req("POST", "/jobs", {"task": "crash", "params": {"mode": "exit"}}, timeout=2)
                        except OSError:
                            return
                ts = [threading.Thread(target=spam, daemon=True) for _ in range(4)]
                for t in ts:
                    t.start()
                try:
                    self.wait_until(lambda: self.restarts(srv)["crash"] >= 20, 20, what="worker churn")
                    # the scan does see this server's workers (those past their exec)
                    self.wait_until(lambda: live_workers_of_binary(binary, since), 10, interval=0.005,
                                    what="a worker seen by the scan")
                    t0 = time.monotonic()
                    srv.kill()
                finally:
                    stop.set()
                left = {}
                while time.monotonic() - t0 <= 1.0:
                    left = live_workers_of_binary(binary, since, orphans_only=True)
                    if not left:
                        break
                    time.sleep(0.01)
                for t in ts:
                    t.join(10)
                self.assertEqual(left, {}, "workers alive 1 s after their server was SIGKILLed")

    def wait_listener_closed(self, srv, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((HOST, srv.port), timeout=2).close()
            except (ConnectionRefusedError, ConnectionResetError):
                return  # refused, or reset out of the backlog of a closed listener
            self.assertLess(time.monotonic(), deadline, "the listener is still open after SIGTERM")
            time.sleep(0.005)

    def drain(self, modes):
        srv = self.start_iso("--isolation", "process", "--workers", 1, "--process-workers", len(modes) + 1,
                             "--enable-test-tasks", "--drain-timeout-s", 1)
        self.wait_pool_ready(srv, None, len(modes) + 1)
        jobs = [self.post_job(srv, "crash", {"mode": m}) for m in modes]
        for j in jobs:
            self.worker_running(srv, j["id"])
        ws = self.workers(srv)
        self.assertEqual(len([w for w in ws if w["state"] == "idle"]), 1, "one idle worker: %r" % ws)
        seen = set(children_of(srv.pid))
        self.assertTrue({w["pid"] for w in ws} <= seen)
        stop = threading.Event()

        def watch():  # every child the server has while it drains
            while not stop.is_set():
                seen.update(children_of(srv.pid))
                time.sleep(0.005)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(20)
        dt = time.monotonic() - t0
        stop.set()
        t.join(5)
        self.assertEqual(rc, 0, "drain exit code %r\n%s" % (rc, srv.stderr()))
        # the running jobs held the drain for --drain-timeout-s 1, then were stopped
        self.assertGreater(dt, 0.7, "did not drain for --drain-timeout-s 1")
        self.assertLess(dt, 1 + (GRACE_MS + SLACK_MS) / 1000 + 3, "drain took %.1fs" % dt)
        left = {p: proc_stat(p) for p in seen if not is_dead(p)}
        self.assertEqual(left, {}, "children left alive after the server exited")

    def test_sigterm_drain_leaves_no_child(self):
        self.drain(["hang"])

    def test_sigterm_drain_kills_ignoring_worker(self):
        self.drain(["hang", "ignore-cancel"])

    def test_sigterm_with_stuck_threads_exits_0(self):
        # Thread mode: one thread stuck after a DELETE, one stuck after the
        # drain's own cancel; the server still exits 0 soon after the drain
        # timeout and leaves no worker process behind.
        srv = self.start_iso("--workers", 2, "--process-workers", 1, "--enable-test-tasks",
                             "--drain-timeout-s", 1, *NICE0)
        self.wait_pool_ready(srv, 2, 1)
        a = self.post_job(srv, "spin", {"ms": 600000, "ignoreCancel": True})
        b = self.post_job(srv, "spin", {"ms": 600000, "ignoreCancel": True})
        for j in (a, b):
            self.worker_running(srv, j["id"])
        self.assertEqual(srv.req("DELETE", "/jobs/%s" % a["id"]).status, 202)
        self.wait_until(lambda: any(w["state"] == "stuck" for w in self.workers(srv)), 5, what="a stuck thread")
        kids = set(children_of(srv.pid))
        self.assertEqual(len(kids), 1, repr(kids))
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(20)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        self.assertLess(dt, 1 + (GRACE_MS + SLACK_MS) / 1000 + 3, "exit took %.1fs" % dt)
        self.assertEqual({p: proc_stat(p) for p in kids if not is_dead(p)}, {})

    def test_sigterm_cancels_job_waiting_to_retry(self):
        # API.md: at shutdown (--store memory) a job waiting to retry is
        # canceled like a queued job; the drain does not wait out its 10 s
        # backoff. (With the SQLite store it stays queued: next test.)
        srv = self.start_iso("--workers", 1, "--process-workers", 2, "--enable-test-tasks",
                             "--retry-backoff-ms", 10000, "--drain-timeout-s", 1, "--store", "memory")
        self.wait_pool_ready(srv, 1, 2)
        a = self.post_job(srv, "crash", {"mode": "segv"}, retries=1)
        self.wait_job(srv, a["id"], lambda j: j["retryAt"] is not None, 10, what="waiting to retry")
        h = self.post_job(srv, "crash", {"mode": "hang"})  # holds the drain for its 1 s
        self.worker_running(srv, h["id"])
        c = self.raw(srv)
        self.assertEqual(c.request("GET", "/health").status, 200)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        self.wait_listener_closed(srv)  # the drain has begun (same step as the cancels)
        r = c.request("GET", "/jobs/%s" % a["id"], timeout=10)
        self.assertEqual(r.status, 200, repr(r))
        ja = self.checkJob(r.json(), job_id=a["id"])
        self.assertEqual(ja["status"], "canceled", repr(ja))
        self.assertEqual(ja["attempts"], 1, repr(ja))
        self.assertIsNone(ja["retryAt"], repr(ja))
        rc = srv.wait_exit(20)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        self.assertLess(dt, 1 + (GRACE_MS + SLACK_MS) / 1000 + 3, "exit took %.1fs" % dt)

    def test_sigterm_keeps_job_waiting_to_retry_on_disk(self):
        # API.md: with the SQLite store (the default) a job waiting to retry
        # stays queued through the drain (first in the queue the next start
        # runs, its backoff not waited out) and runs its retry after the
        # next start.
        d = os.path.join(tempfile.mkdtemp(prefix="offload-iso-"), "data")
        self.addCleanup(shutil.rmtree, os.path.dirname(d), True)
        srv = self.start_iso("--workers", 1, "--process-workers", 2, "--enable-test-tasks",
                             "--retry-backoff-ms", 10000, "--drain-timeout-s", 1, "--data-dir", d)
        self.wait_pool_ready(srv, 1, 2)
        a = self.post_job(srv, "crash", {"mode": "segv"}, retries=1)
        self.wait_job(srv, a["id"], lambda j: j["retryAt"] is not None, 10, what="waiting to retry")
        h = self.post_job(srv, "crash", {"mode": "hang"})  # holds the drain for its 1 s
        self.worker_running(srv, h["id"])
        c = self.raw(srv)
        self.assertEqual(c.request("GET", "/health").status, 200)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        self.wait_listener_closed(srv)
        r = c.request("GET", "/jobs/%s" % a["id"], timeout=10)
        self.assertEqual(r.status, 200, repr(r))
        ja = self.checkJob(r.json(), job_id=a["id"])
        self.assertEqual((ja["status"], ja["queuePosition"], ja["retryAt"], ja["attempts"]), ("queued", 1, None, 1),
                         repr(ja))
        rc = srv.wait_exit(20)
        self.assertEqual(rc, 0, srv.stderr())
        self.assertLess(time.monotonic() - t0, 1 + (GRACE_MS + SLACK_MS) / 1000 + 3)
        # The next start runs its retry at once (and it fails again: the
        # crash task exits every time).
        srv2 = self.start_iso("--workers", 1, "--process-workers", 2, "--enable-test-tasks", "--data-dir", d)
        j = self.wait_final(srv2, a["id"], timeout=15)
        self.checkJob(j, expect_status="failed", job_id=a["id"])
        self.assertEqual((j["attempts"], j["error"]["code"]), (2, "worker_crashed"), repr(j))
        hj = self.wait_final(srv2, h["id"], timeout=15)
        self.assertEqual(hj["status"], "canceled", repr(hj))


# --------------------------------------------------------------------------
# 8. Retries
# --------------------------------------------------------------------------

class Retries(IsoCase):
    """--retry-backoff-ms 100, one worker process, no memory cap."""

    @classmethod
    def setUpClass(cls):
        cls.srv = IsoServer(["--workers", "1", "--process-workers", "1", "--enable-test-tasks",
                             "--retry-backoff-ms", "100"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        self.assertTrue(self.srv.alive(), "the shared server is gone")
        self.wait_pool_ready(self.srv, 1, 1)

    def follow(self, srv, first, timeout=30):
        """Polls a job (on one keep-alive connection, no sleep) until final;
        returns every distinct observation as (client wall ms, job)."""
        c = self.raw(srv)
        obs = [(time.time() * 1000, first)]
        deadline = time.monotonic() + timeout
        while True:
            r = c.request("GET", "/jobs/%s" % first["id"])
            self.assertEqual(r.status, 200, repr(r))
            j = self.checkJob(r.json(), job_id=first["id"])
            key = lambda x: (x["status"], x["attempts"], x["startedAt"], x["retryAt"], x["queuePosition"])  # noqa: E731
            if key(j) != key(obs[-1][1]):
                obs.append((time.time() * 1000, j))
            if j["status"] in FINAL:
                return obs
            self.assertLess(time.monotonic(), deadline, "job not final: %r" % obs[-3:])

    def test_segv_retried_with_backoff(self):
        srv = self.srv
        m0 = self.metrics(srv)
        j = self.post_job(srv, "crash", {"mode": "segv"}, retries=2)
        obs = self.follow(srv, j)
        f = obs[-1][1]
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["attempts"], 3, repr(f))
        self.assertEqual(f["retries"], 2)
        self.assertIsNone(f["retryAt"])
        self.assertEqual(f["error"]["code"], "worker_crashed", repr(f))
        self.assertIn("SIGSEGV", f["error"]["message"])
        self.assertTrue(f["error"]["message"].endswith("(attempt 3 of 3)."), repr(f))

        attempts = [o["attempts"] for _, o in obs]
        self.assertEqual(attempts, sorted(attempts), "attempts only grow: %r" % attempts)
        self.assertTrue(set(attempts) <= {0, 1, 2, 3}, attempts)
        started = {}     # attempt -> startedAt, where a run was seen
        retry_at = {}    # attempts so far -> retryAt while waiting
        for _, o in obs:
            if o["retryAt"] is not None:
                self.assertEqual(o["status"], "queued", "retryAt is set only while waiting: %r" % o)
                self.assertIsNone(o["queuePosition"], "a job waiting to retry has no queue place: %r" % o)
                self.assertIsNone(o["finishedAt"])
                self.assertIsNone(o["error"])
                self.assertEqual(retry_at.setdefault(o["attempts"], o["retryAt"]), o["retryAt"],
                                 "retryAt moved while waiting: %r" % obs)
            if o["status"] != "queued" and o["startedAt"] is not None:
                self.assertEqual(started.setdefault(o["attempts"], o["startedAt"]), o["startedAt"], repr(obs))
        # the two waits (100 ms, then 200 ms) were seen, queued with retryAt
        self.assertEqual(sorted(retry_at), [1, 2], "waits seen: %r\n%r" % (retry_at, obs))
        started[3] = f["startedAt"]
        # retryAt is the next run's start: the next run starts at it, not before
        for k in (1, 2):
            if k + 1 in started:
                self.assertGreaterEqual(started[k + 1], retry_at[k] - ROUND_MS, repr(obs))
                self.assertLessEqual(started[k + 1], retry_at[k] + SLACK_MS, repr(obs))
        # the n-th retry waits backoff x 2^(n-1), plus up to 10 % (never less)
        s1 = started.get(1, j["createdAt"])  # run 1 started no earlier than its creation
        self.assertGreaterEqual(retry_at[1] - s1, 100 - ROUND_MS, repr(obs))
        self.assertLessEqual(retry_at[1] - j["createdAt"], 110 + SLACK_MS, repr(obs))
        # run 2 starts at retry_at[1]; its crash is quick, then 200 ms more
        self.assertGreaterEqual(retry_at[2] - retry_at[1], 200 - ROUND_MS, repr(obs))
        self.assertLessEqual(retry_at[2] - retry_at[1], 220 + SLACK_MS, repr(obs))
        for k, b in ((1, 100), (2, 200)):
            if k in started and k + 1 in started:
                gap = started[k + 1] - started[k]
                self.assertGreaterEqual(gap, b - ROUND_MS, "gap %d after run %d: %r" % (gap, k, obs))
                self.assertLessEqual(gap, b * 1.1 + SLACK_MS, "gap %d after run %d: %r" % (gap, k, obs))
        m1 = self.metrics(srv)
        self.assertEqual(m1["offload_job_attempts_total"] - m0["offload_job_attempts_total"], 3)
        self.assertEqual(m1["offload_job_retries_total"] - m0["offload_job_retries_total"], 2)

    def test_timeout_retried(self):
        srv = self.srv
        j = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=300, retries=1)
        obs = self.follow(srv, j)
        f = obs[-1][1]
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["attempts"], 2, repr(obs))
        self.assertEqual(f["error"]["code"], "timeout", repr(f))
        self.assertTrue(f["error"]["message"].endswith("(attempt 2 of 2)."), repr(f))
        started = {o["attempts"]: o["startedAt"] for _, o in obs if o["status"] == "processing"}
        waits = [o for _, o in obs if o["retryAt"] is not None]
        self.assertTrue(waits, "the 100 ms wait was not seen: %r" % obs)
        self.assertEqual(sorted(started), [1, 2], "each 300 ms run is seen: %r" % obs)
        # run 1 timed out at +300, then waited 100..110 ms
        gap = started[2] - started[1]
        self.assertGreaterEqual(gap, 300 + 100 - ROUND_MS, repr(obs))
        self.assertLessEqual(gap, 300 + 110 + SLACK_MS, repr(obs))
        self.assertEqual(f["startedAt"], started[2])

    def test_normal_job_attempts(self):
        srv = self.srv
        j = self.post_job(srv, "spin", {"ms": 1})
        self.assertIn(j["attempts"], (0, 1))
        f = self.wait_final(srv, j["id"], 10)
        self.checkJob(f, expect_status="complete")
        self.assertEqual(f["attempts"], 1)
        self.assertNotIn("retries", f)
        self.assertNotIn("retryAt", f)
        # retries 0 is the default: no retries key either
        j = self.post_job(srv, "spin", {"ms": 1}, retries=0)
        self.assertNotIn("retries", self.wait_final(srv, j["id"], 10))
        # a job that succeeds uses one run of its retries
        j = self.post_job(srv, "spin", {"ms": 1}, retries=10)
        f = self.wait_final(srv, j["id"], 10)
        self.checkJob(f, expect_status="complete")
        self.assertEqual((f["attempts"], f["retries"], f["retryAt"]), (1, 10, None))

    def test_other_failures_not_retried(self):
        # oom without --worker-memory-mb is the task's own failure: not retried
        srv = self.srv
        j = self.post_job(srv, "crash", {"mode": "oom"}, retries=3)
        f = self.wait_final(srv, j["id"], 20)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["error"]["code"], "no_memory_limit", repr(f))
        self.assertEqual(f["attempts"], 1, repr(f))
        self.assertIsNone(f["retryAt"])
        # a canceled job is not retried either
        j = self.post_job(srv, "crash", {"mode": "hang"}, retries=3)
        self.wait_status(srv, j["id"], "processing", 10)
        self.assertEqual(srv.req("DELETE", "/jobs/%s" % j["id"]).status, 202)
        f = self.wait_final(srv, j["id"], 10)
        self.assertEqual((f["status"], f["attempts"]), ("canceled", 1), repr(f))
        time.sleep(0.3)  # past the first backoff (100..110 ms): still canceled, not rerun
        f2 = self.job(srv, j["id"])
        self.assertEqual((f2["status"], f2["attempts"]), ("canceled", 1), repr(f2))

    def test_retry_keeps_its_place_in_the_queue(self):
        # After its backoff a job queues again in its original place: ahead of
        # a job submitted after it (one process worker).
        srv = self.srv
        a = self.post_job(srv, "crash", {"mode": "segv"}, retries=1)
        self.wait_job(srv, a["id"], lambda j: j["retryAt"] is not None, 10, what="waiting to retry")
        x = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=800)  # keeps the worker busy
        b = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=50)
        ja = self.wait_job(srv, a["id"], lambda j: j["retryAt"] is None, 10, what="back from its backoff")
        jb = self.job(srv, b["id"])
        if ja["status"] == "queued" and jb["status"] == "queued":
            self.assertLess(ja["queuePosition"], jb["queuePosition"], repr((ja, jb)))
        fa = self.wait_final(srv, a["id"], 20)
        fb = self.wait_final(srv, b["id"], 20)
        fx = self.wait_final(srv, x["id"], 20)
        self.assertEqual(fa["attempts"], 2, repr(fa))
        self.assertEqual(fa["error"]["code"], "worker_crashed", repr(fa))
        self.assertEqual(fb["error"]["code"], "timeout", repr(fb))
        self.assertEqual(fx["error"]["code"], "timeout", repr(fx))
        self.assertLess(fa["startedAt"], fb["startedAt"], "the retry ran after a later job: %r %r" % (fa, fb))

    def test_two_queues(self):
        # Jobs that run in threads and jobs that run in processes wait in two
        # queues; queuePosition counts within the job's own queue.
        srv = self.srv
        t = self.post_job(srv, "spin", {"ms": 600000})
        p = self.post_job(srv, "crash", {"mode": "hang"})
        self.assertEqual(self.worker_running(srv, t["id"])["mode"], "thread")
        self.assertEqual(self.worker_running(srv, p["id"])["mode"], "process")
        a1 = self.post_job(srv, "spin", {"ms": 1})
        c1 = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=50)
        a2 = self.post_job(srv, "spin", {"ms": 1})
        c2 = self.post_job(srv, "crash", {"mode": "hang"}, timeout_ms=50)
        for j, pos in ((a1, 1), (a2, 2), (c1, 1), (c2, 2)):
            q = self.job(srv, j["id"])
            self.checkJob(q, expect_status="queued")
            self.assertEqual((q["queuePosition"], q["attempts"]), (pos, 0), "%r" % q)
        self.assertEqual(self.health(srv)["queue"]["depth"], 4)
        for j in (t, p):
            self.assertEqual(srv.req("DELETE", "/jobs/%s" % j["id"]).status, 202)
        for j, want in ((a1, "complete"), (a2, "complete"), (c1, "failed"), (c2, "failed")):
            f = self.wait_final(srv, j["id"], 20)
            self.assertEqual(f["status"], want, repr(f))
        self.assertLessEqual(self.job(srv, a1["id"])["startedAt"], self.job(srv, a2["id"])["startedAt"])
        self.assertLess(self.job(srv, c1["id"])["startedAt"], self.job(srv, c2["id"])["startedAt"])

    def test_invalid_retries(self):
        for bad in (-1, 11, "2", 1.5, 2.0, True, None, [], {}, 99999999999999999999):
            with self.subTest(retries=bad):
                r = self.srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}, "retries": bad})
                self.assertError(r, 400, "invalid_param", "retries")
        for good in (0, 1, 10):
            with self.subTest(retries=good):
                self.post_job(self.srv, "spin", {"ms": 1}, retries=good)


class RetryKilled(IsoCase):

    def test_killed_run_retried_and_killed_again(self):
        # Each run of an ignore-cancel job with a timeout is failed at its
        # deadline and its worker killed after the grace period, the retry
        # included (one slot, so the retry runs where the first run was killed).
        srv = self.start_iso("--isolation", "process", "--workers", 1, "--process-workers", 1,
                             "--enable-test-tasks", "--retry-backoff-ms", 100, *NICE0)
        self.wait_pool_ready(srv, None, 1)
        r0 = self.restarts(srv)
        j = self.post_job(srv, "crash", {"mode": "ignore-cancel"}, timeout_ms=300, retries=2)
        # one held request rather than polling, so the server allocates
        # little while the job moves between runs
        r = srv.get("/jobs/%s?wait=30" % j["id"], timeout=40)
        self.assertEqual(r.status, 200, repr(r))
        f = self.checkJob(r.json(), job_id=j["id"])
        self.assertIn(f["status"], FINAL, "not final after 30 s: %r" % f)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["attempts"], 3, repr(f))
        self.assertEqual(f["error"]["code"], "timeout", repr(f))
        self.assertTrue(f["error"]["message"].endswith("(attempt 3 of 3)."), repr(f))
        run = f["finishedAt"] - f["startedAt"]
        self.assertGreaterEqual(run, 300 - ROUND_MS, repr(f))
        self.assertLessEqual(run, 300 + SLACK_MS, "the last run was not failed at its deadline: %r" % f)
        self.wait_pool_ready(srv, None, 1)
        r1 = self.restarts(srv)
        self.assertEqual(r1["timeout_kill"] - r0["timeout_kill"], 3, "%r -> %r" % (r0, r1))


class RetryWaits(IsoCase):
    """A long backoff (--retry-backoff-ms 5000): the wait can be acted on."""

    def test_delete_while_waiting_to_retry(self):
        srv = self.start_iso("--workers", 1, "--process-workers", 1, "--enable-test-tasks",
                             "--retry-backoff-ms", 5000)
        a = self.post_job(srv, "crash", {"mode": "abort"}, retries=3)
        w = self.wait_job(srv, a["id"], lambda j: j["retryAt"] is not None, 10, what="waiting to retry")
        self.checkJob(w, expect_status="queued")
        self.assertIsNone(w["queuePosition"])
        self.assertIsNone(w["startedAt"], "startedAt is null while waiting to retry: %r" % w)
        now = time.time() * 1000
        self.assertGreater(w["retryAt"], now + 2000, "a 5 s backoff: %r" % w)
        self.assertLess(w["retryAt"], now + 5500 + SLACK_MS, repr(w))
        r = srv.req("DELETE", "/jobs/%s" % a["id"])
        self.assertEqual(r.status, 200, "DELETE of a job waiting to retry cancels it at once: %r" % r)
        j = self.checkJob(r.json(), expect_status="canceled", job_id=a["id"])
        self.assertIsNone(j["retryAt"])
        self.assertEqual(j["attempts"], 1)
        self.assertError(srv.req("DELETE", "/jobs/%s" % a["id"]), 409, "already_finished")
        f = self.job(srv, a["id"])
        self.assertEqual((f["status"], f["attempts"]), ("canceled", 1), repr(f))
        m = self.metrics(srv)
        self.assertEqual(m["offload_job_attempts_total"], 1)
        self.assertEqual(m["offload_job_retries_total"], 1)


class CpuLimit(IsoCase):

    def test_worker_cpu_s(self):
        srv = self.start_iso("--isolation", "process", "--workers", 1, "--process-workers", 1,
                             "--worker-cpu-s", 1, *NICE0)
        ws = self.wait_pool_ready(srv, None, 1)
        pid = ws[0]["pid"]
        # the limit is per job: three jobs of < 1 s CPU each all complete on one process
        for _ in range(3):
            j = self.post_job(srv, "spin", {"ms": 700})
            self.assertEqual(self.wait_final(srv, j["id"], 20)["status"], "complete")
        ws = self.wait_pool_ready(srv, None, 1)
        self.assertEqual(ws[0]["pid"], pid, "a worker was replaced although no job used 1 s of CPU")
        self.assertEqual(ws[0]["jobsDone"], 3)
        # one job past 1 s of CPU: SIGXCPU (well before its 30 s timeout)
        j = self.post_job(srv, "spin", {"ms": 600000}, timeout_ms=30000)
        f = self.wait_final(srv, j["id"], 40)
        self.checkJob(f, expect_status="failed")
        self.assertEqual(f["error"]["code"], "worker_crashed", repr(f))
        self.assertIn("SIGXCPU", f["error"]["message"])
        ws = self.wait_pool_ready(srv, None, 1)
        self.assertNotEqual(ws[0]["pid"], pid)
        self.assertEqual(sum(self.restarts(srv).values()), 1)


# --------------------------------------------------------------------------
# 9. Recycling
# --------------------------------------------------------------------------

class Recycle(IsoCase):

    def test_max_jobs_per_worker(self):
        srv = self.start_iso("--isolation", "process", "--workers", 1, "--process-workers", 1,
                             "--max-jobs-per-worker", 3)
        ws = self.wait_pool_ready(srv, None, 1)
        pid0 = ws[0]["pid"]
        r0 = self.restarts(srv)
        pids = {pid0}
        for i in range(7):
            j = self.post_job(srv, "fibonacci", {"n": 10 + i})
            f = self.wait_final(srv, j["id"], 20)
            self.checkJob(f, expect_status="complete")
            self.assertEqual(f["result"], fib(10 + i))
            for w in self.workers(srv):
                pids.add(w["pid"])
                self.assertLessEqual(w["jobsDone"], 3, "a worker ran more than 3 jobs: %r" % w)
        ws = self.wait_pool_ready(srv, None, 1)
        r1 = self.restarts(srv)
        self.assertGreaterEqual(r1["recycled"] - r0["recycled"], 2, "%r -> %r" % (r0, r1))
        self.assertEqual(r1["crash"] + r1["oom"] + r1["timeout_kill"], 0, repr(r1))
        self.assertNotEqual(ws[0]["pid"], pid0, "the worker was never replaced")
        self.assertGreaterEqual(len(pids), 3, "pids seen: %r" % pids)
        self.assertEqual(ws[0]["jobsDone"], 7 - 3 * (r1["recycled"] - r0["recycled"]), repr(ws))
        self.wait_dead([pid0], 10)
        self.assertChildrenSettled(srv, ws)


# --------------------------------------------------------------------------
# 10. GET /tasks, GET /workers, /metrics
# --------------------------------------------------------------------------

class Introspection(IsoCase):

    def tasks(self, srv):
        r = srv.get("/tasks")
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        ts = r.json()["tasks"]
        for t in ts:
            self.assertEqual(set(t.keys()) - {"input"}, {"name", "description", "params", "isolation"}, repr(t))
            self.assertIn(t["isolation"], ("thread", "process"), repr(t))
        return {t["name"]: t for t in ts}

    def test_default_server(self):
        srv = self.start_iso("--workers", 2, *NICE0)
        ts = self.tasks(srv)
        self.assertEqual(set(ts), TASKS, "crash is listed only under --enable-test-tasks")
        for t in ts.values():
            self.assertEqual(t["isolation"], "process" if t["name"] in PROCESS_TASKS else "thread",
                             "default isolation is thread but for tasks that always use processes: %r" % t)
        self.assertNotIn("ignoreCancel", [p["name"] for p in ts["spin"]["params"]])
        r = srv.req("POST", "/jobs", {"task": "crash", "params": {"mode": "segv"}})
        self.assertError(r, 400, "unknown_task")
        r = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1, "ignoreCancel": True}})
        self.assertError(r, 400, "unknown_param", "params.ignoreCancel")
        ws = self.workers(srv)
        th = [w for w in ws if w["mode"] == "thread"]
        self.assertEqual(len(th), 2, repr(ws))
        # a job runs in a thread
        j = self.post_job(srv, "spin", {"ms": 300})
        w = self.worker_running(srv, j["id"])
        self.assertEqual((w["mode"], w["state"], w["pid"]), ("thread", "busy", srv.pid))
        self.wait_final(srv, j["id"], 10)
        ws = self.wait_pool_ready(srv, 2, len(ws) - 2)
        after = [x for x in ws if x["id"] == w["id"]][0]
        self.assertEqual(after["jobsDone"], w["jobsDone"] + 1, repr(after))
        self.assertGreater(after["cpuMs"], 0, repr(after))
        m = self.metrics(srv)
        self.assertEqual(m["offload_workers"], len(ws))
        self.assertEqual(self.health(srv)["workers"]["total"], len(ws))
        self.assertError(srv.get("/workers?x=1"), 400, "unknown_param", "x")
        r = srv.req("POST", "/workers", b"")
        self.assertError(r, 405, "method_not_allowed")
        self.assertIsNotNone(r.header("Allow"), repr(r))

    def test_test_tasks_listed(self):
        srv = self.start_iso("--workers", 2, "--process-workers", 1, "--enable-test-tasks")
        ts = self.tasks(srv)
        self.assertEqual(set(ts), TASKS | {"crash"})
        for name in TASKS:
            self.assertEqual(ts[name]["isolation"], "process" if name in PROCESS_TASKS else "thread", repr(ts[name]))
        crash = ts["crash"]
        self.assertEqual(crash["isolation"], "process", "crash always runs in processes")
        self.assertEqual(len(crash["params"]), 1, repr(crash))
        mode = crash["params"][0]
        self.assertEqual((mode["name"], mode["type"]), ("mode", "string"), repr(mode))
        self.assertEqual(mode["enum"], CRASH_MODES, repr(mode))
        ic = [p for p in ts["spin"]["params"] if p["name"] == "ignoreCancel"]
        self.assertEqual(len(ic), 1, repr(ts["spin"]))
        self.assertEqual(ic[0]["type"], "boolean", repr(ic))
        # the enum and the boolean are enforced
        r = srv.req("POST", "/jobs", {"task": "crash", "params": {"mode": "explode"}})
        self.assertError(r, 400, "invalid_param", "params.mode")
        r = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1, "ignoreCancel": "yes"}})
        self.assertError(r, 400, "invalid_param", "params.ignoreCancel")
        j = self.post_job(srv, "spin", {"ms": 1, "ignoreCancel": False})
        self.assertEqual(self.wait_final(srv, j["id"], 10)["status"], "complete")

        ws = self.wait_pool_ready(srv, 2, 1)
        self.assertEqual([w["mode"] for w in ws], ["thread", "thread", "process"])
        pw = ws[2]
        self.assertEqual(proc_stat(pw["pid"])[1], srv.pid, "a process worker is the server's child")
        # started from the server's own binary as `offload worker`
        with open("/proc/%d/cmdline" % pw["pid"], "rb") as f:
            argv = f.read().split(b"\0")
        self.assertEqual(argv[1:2], [b"worker"], repr(argv))
        self.assertEqual(os.readlink("/proc/%d/exe" % pw["pid"]), os.readlink("/proc/%d/exe" % srv.pid))
        self.assertGreater(pw["rssBytes"], 0)
        m = self.metrics(srv)
        for c in RESTART_CAUSES:
            self.assertEqual(m['offload_worker_restarts_total{cause="%s"}' % c], 0)
        self.assertIn("offload_job_attempts_total", m)
        self.assertIn("offload_job_retries_total", m)
        self.assertEqual(m["offload_workers"], 3, "threads + processes")
        self.assertEqual(self.health(srv)["workers"]["total"], 3)
        # a crash: the same slot, a new pid, a later startedAt, jobsDone from 0
        jobs0 = m["offload_job_attempts_total"]
        j = self.post_job(srv, "crash", {"mode": "abort"})
        self.assertCrashFinal(self.wait_final(srv, j["id"], 20), "abort")
        ws2 = self.wait_pool_ready(srv, 2, 1)
        self.assertEqual([w["id"] for w in ws2], [w["id"] for w in ws], "slots keep their ids")
        self.assertNotEqual(ws2[2]["pid"], pw["pid"])
        self.assertGreaterEqual(ws2[2]["startedAt"], pw["startedAt"])
        self.assertEqual(ws2[2]["jobsDone"], 0)
        m = self.metrics(srv)
        self.assertEqual(m['offload_worker_restarts_total{cause="crash"}'], 1)
        self.assertEqual(m["offload_job_attempts_total"], jobs0 + 1)
        self.assertEqual(m["offload_workers"], 3)
        text = srv.get("/metrics").body.decode()
        for name, typ in (("offload_worker_restarts_total", "counter"), ("offload_job_attempts_total", "counter"),
                          ("offload_job_retries_total", "counter"), ("offload_workers", "gauge")):
            self.assertIn("# TYPE %s %s\n" % (name, typ), text)

    def test_process_isolation_and_pool_size(self):
        # --process-workers 0 (the default): as many processes as --workers
        srv = self.start_iso("--isolation", "process", "--workers", 3)
        ts = self.tasks(srv)
        self.assertEqual(set(ts), TASKS)
        for t in ts.values():
            self.assertEqual(t["isolation"], "process", repr(t))
        ws = self.wait_pool_ready(srv, None, 3)
        self.assertEqual(self.metrics(srv)["offload_workers"], len(ws))
        pids = [w["pid"] for w in ws if w["mode"] == "process"]
        self.assertEqual(len(set(pids)), 3, repr(ws))
        self.assertChildrenSettled(srv, ws)


if __name__ == "__main__":
    main()
