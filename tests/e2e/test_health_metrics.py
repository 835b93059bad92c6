"""GET /health, GET /tasks, GET /metrics, and routing (404 / 405)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """-> (samples: list of (name, labels dict, float), types: {name: type})"""
    samples, types = [], {}
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if ln.startswith("#"):
            m = re.match(r"^# TYPE (\S+) (\S+)$", ln)
            if m:
                types[m.group(1)] = m.group(2)
            continue
        m = SAMPLE_RE.match(ln)
        if not m:
            raise AssertionError("unparsable metrics line: %r" % ln)
        labels = dict(LABEL_RE.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples, types


def find(samples, name, **labels):
    return [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]


class Health(OffloadTestCase):

    def test_health_shape(self):
        srv = self.start_server("--workers", "3", "--max-queue", "7")
        r = srv.get("/health")
        self.assertEqual(r.status, 200)
        self.assertJsonType(r)
        h = r.json()
        self.assertEqual(set(h.keys()), {"status", "workers", "queue", "uptimeMs", "store"})
        self.assertEqual(h["status"], "ok")
        # The store's kind and state (issue 12): the harness's default is SQLite.
        self.assertEqual(h["store"], {"kind": "sqlite", "ok": True})
        mem = self.start_server("--store", "memory")
        self.assertEqual(self.health(mem)["store"], {"kind": "memory", "ok": True})
        # The image task runs in worker processes (issue 9), so every server
        # has both pools: --workers threads and as many processes (the
        # default --process-workers), each pool with its own --max-queue.
        self.assertEqual(h["workers"], {"total": 3 + 3, "busy": 0})
        self.assertEqual(h["queue"], {"depth": 0, "capacity": 7 + 7})
        self.assertIsInstance(h["uptimeMs"], int)
        self.assertGreaterEqual(h["uptimeMs"], 0)
        self.assertLess(h["uptimeMs"], 120000)
        time.sleep(0.05)
        self.assertGreaterEqual(self.health(srv)["uptimeMs"], h["uptimeMs"])

    def test_default_workers_is_cpu_count(self):
        srv = self.start_server()
        h = self.health(srv)
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.assertIn(h["workers"]["total"], {2 * ncpu, 2 * os.cpu_count()})  # threads + processes
        self.assertEqual(h["queue"]["capacity"], 2 * 10000)

    def test_health_while_all_workers_busy(self):
        srv = self.start_server("--workers", "2", "--max-queue", "10")
        running = [self.submit(srv, "spin", {"ms": 600000}) for _ in range(2)]
        queued = [self.submit(srv, "spin", {"ms": 600000}) for _ in range(3)]
        for j in running:
            self.wait_status(srv, j["id"], "processing", 10)
        for j in queued:
            self.assertEqual(self.job(srv, j["id"])["status"], "queued")
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            r = srv.get("/health", timeout=5)
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(r.status, 200)
            h = r.json()
            self.assertEqual(h["status"], "ok")
            self.assertEqual(h["workers"], {"total": 2 + 2, "busy": 2})  # the process pool idles
            self.assertEqual(h["queue"], {"depth": 3, "capacity": 10 + 10})
            time.sleep(0.05)
        # contract: well under 1 s even under ASan while workers burn CPU
        self.assertLess(worst, 1.0, "slowest /health took %.3fs" % worst)
        # and the other read-only endpoints answer too
        self.assertEqual(srv.get("/tasks", timeout=5).status, 200)
        self.assertEqual(srv.get("/jobs", timeout=5).status, 200)
        self.assertEqual(srv.get("/metrics", timeout=5).status, 200)


class Tasks(OffloadTestCase):

    def test_tasks(self):
        srv = self.start_server("--max-iterations", "5000")
        r = srv.get("/tasks")
        self.assertEqual(r.status, 200)
        self.assertJsonType(r)
        body = r.json()
        self.assertEqual(set(body.keys()), {"tasks"})
        by_name = {}
        for t in body["tasks"]:
            # "input" only on tasks that take a body (POST /jobs/<task>)
            self.assertEqual(set(t.keys()) - {"input"}, {"name", "description", "params", "isolation"}, repr(t))
            self.assertEqual("input" in t, t["name"] in INPUT_TASKS, repr(t))
            self.assertEqual(t["isolation"], "process" if t["name"] in PROCESS_TASKS else "thread",
                             "the default --isolation is thread, but for tasks that always use processes: %r" % t)
            self.assertIsInstance(t["description"], str)
            self.assertTrue(t["description"].strip())
            by_name[t["name"]] = t
        self.assertEqual(len(body["tasks"]), len(TASKS))
        self.assertEqual(set(by_name), TASKS)
        want = {"report": ("heavyIterations", 1, 5000),
                "fibonacci": ("n", 0, 92),
                "primes": ("max", 1, 10 ** 12),
                "spin": ("ms", 1, 600000)}
        for name, (pname, lo, hi) in want.items():
            with self.subTest(task=name):
                params = by_name[name]["params"]
                self.assertEqual(len(params), 1, repr(params))
                p = params[0]
                self.assertEqual(set(p.keys()), {"name", "type", "required", "min", "max"}, repr(p))
                self.assertEqual(p["name"], pname)
                self.assertIsInstance(p["type"], str)
                self.assertIn(p["type"], ("integer", "int"), repr(p))
                self.assertIs(p["required"], True)
                self.assertEqual(p["min"], lo)
                if name == "report":
                    # the configured --max-iterations bounds the report task
                    self.assertEqual(p["max"], hi, repr(p))
                else:
                    self.assertEqual(p["max"], hi, repr(p))

    def test_tasks_default_max_iterations(self):
        srv = self.start_server()
        rep = [t for t in srv.get("/tasks").json()["tasks"] if t["name"] == "report"][0]
        self.assertEqual(rep["params"][0]["max"], 100000000000)


class Metrics(OffloadTestCase):

    def test_metrics(self):
        srv = self.start_server("--workers", "1")
        j = self.submit(srv, "spin", {"ms": 20})
        self.wait_status(srv, j["id"], "complete", 20)
        f = self.submit(srv, "spin", {"ms": 600000}, timeout_ms=100)
        self.wait_status(srv, f["id"], "failed", 20)
        c = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, c["id"], "processing", 10)
        srv.req("DELETE", "/jobs/%s" % c["id"])
        self.wait_status(srv, c["id"], "canceled", 5)
        # The job is final at once; its worker is idle once the task has seen
        # the cancel and returned (a few ms; longer on a loaded machine).
        self.wait_until(lambda: self.health(srv)["workers"]["busy"] == 0, 10, what="the worker idle")
        srv.get("/nope")
        r = srv.get("/metrics")
        self.assertEqual(r.status, 200)
        ct = r.header("Content-Type") or ""
        self.assertEqual(ct.split(";")[0].strip(), "text/plain", repr(ct))
        self.assertIn("version=0.0.4", ct.replace(" ", ""))
        text = r.body.decode()
        samples, types = parse_metrics(text)

        self.assertEqual(find(samples, "offload_jobs_total", task="spin", status="complete"), [1.0], text)
        self.assertEqual(find(samples, "offload_jobs_total", task="spin", status="failed"), [1.0], text)
        self.assertEqual(find(samples, "offload_jobs_total", task="spin", status="canceled"), [1.0], text)
        self.assertEqual(types.get("offload_jobs_total"), "counter")

        self.assertEqual(find(samples, "offload_queue_depth"), [0.0], text)
        self.assertEqual(types.get("offload_queue_depth"), "gauge")
        self.assertEqual(find(samples, "offload_workers_busy"), [0.0], text)
        self.assertEqual(types.get("offload_workers_busy"), "gauge")

        self.assertEqual(types.get("offload_job_duration_seconds"), "histogram")
        buckets = [(l, v) for n, l, v in samples if n == "offload_job_duration_seconds_bucket"]
        self.assertTrue(buckets, text)
        inf = [v for l, v in buckets if l.get("le") == "+Inf"]
        self.assertTrue(inf, "no +Inf bucket")
        self.assertGreaterEqual(sum(inf), 3, "3 jobs ran: %r" % inf)
        self.assertTrue(find(samples, "offload_job_duration_seconds_count"))
        self.assertTrue(find(samples, "offload_job_duration_seconds_sum"))

        self.assertGreaterEqual(sum(find(samples, "offload_http_requests_total", code="200")), 1, text)
        self.assertGreaterEqual(sum(find(samples, "offload_http_requests_total", code="202")), 3, text)
        self.assertGreaterEqual(sum(find(samples, "offload_http_requests_total", code="404")), 1, text)
        self.assertEqual(types.get("offload_http_requests_total"), "counter")

        self.assertEqual(types.get("offload_event_loop_lag_seconds"), "histogram", text)
        self.assertTrue([1 for n, l, v in samples if n == "offload_event_loop_lag_seconds_bucket"], text)
        self.assertTrue(find(samples, "offload_event_loop_lag_seconds_count"), text)

    def test_metrics_gauges_under_load(self):
        srv = self.start_server("--workers", "1")
        a = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, a["id"], "processing", 10)
        self.submit(srv, "spin", {"ms": 1})
        self.submit(srv, "spin", {"ms": 1})
        samples, _ = parse_metrics(srv.get("/metrics").body.decode())
        self.assertEqual(find(samples, "offload_queue_depth"), [2.0])
        self.assertEqual(find(samples, "offload_workers_busy"), [1.0])


class Routing(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server([])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_not_found(self):
        # GET / is the dashboard (test_dashboard.py); /ui/ holds only its files.
        for method, path in (("GET", "/ui/nope.js"), ("GET", "/nope"), ("GET", "/healthz"), ("GET", "/health/x"),
                             ("GET", "/jobs/abc/def"), ("POST", "/nope"), ("GET", "/tasks/reports"),
                             ("GET", "/fibonacci"), ("GET", "/fibonacci/1/2"), ("DELETE", "/nothing/here")):
            with self.subTest(method=method, path=path):
                self.assertError(self.srv.req(method, path), 404, "not_found")

    def test_method_not_allowed(self):
        cases = [("PUT", "/health", {"GET"}), ("POST", "/health", {"GET"}), ("DELETE", "/health", {"GET"}),
                 ("DELETE", "/tasks", {"GET"}), ("POST", "/tasks", {"GET"}),
                 ("POST", "/metrics", {"GET"}),
                 ("PUT", "/jobs", {"GET", "POST"}), ("DELETE", "/jobs", {"GET", "POST"}),
                 ("PUT", "/jobs/abc", {"GET", "POST", "DELETE"}),  # POST /jobs/<task>: an upload (issue 9)
                 ("POST", "/tasks/reports/start", {"GET"}), ("DELETE", "/tasks/reports/abc", {"GET"}),
                 ("POST", "/fibonacci/5", {"GET"}), ("PATCH", "/jobs", {"GET", "POST"})]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = self.srv.req(method, path)
                self.assertError(r, 405, "method_not_allowed")
                allow = r.header("Allow")
                self.assertIsNotNone(allow, "405 without Allow header")
                methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
                self.assertTrue(allowed <= methods, "Allow %r lacks %r" % (allow, allowed))
                self.assertNotIn(method, methods)
                self.assertTrue(methods <= allowed | {"HEAD", "OPTIONS"}, "Allow %r lists too much" % allow)


if __name__ == "__main__":
    main()
