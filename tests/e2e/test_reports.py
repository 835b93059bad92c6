"""GET /tasks/reports/start and GET /tasks/reports/<id>: the seeds' report API."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


class ReportStart(OffloadTestCase):

    def start_report(self, srv, n):
        r = srv.get("/tasks/reports/start?heavyIterations=%d" % n)
        return self.checkReportAccepted(r)

    def report(self, srv, jid):
        r = srv.get("/tasks/reports/%s" % jid)
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        return self.checkReportStatus(r.json(), job_id=jid)

    def wait_report_final(self, srv, jid, timeout):
        deadline = time.monotonic() + timeout
        while True:
            j = self.report(srv, jid)
            if j["status"] in FINAL:
                return j
            self.assertLess(time.monotonic(), deadline, "report %s not final within %ss: %r" % (jid, timeout, j))
            time.sleep(0.02)

    def test_small_results_exact(self):
        srv = self.start_server("--workers", "2")
        ids = {n: self.start_report(srv, n) for n in (1, 2, 1000, 123457)}
        for n, jid in ids.items():
            j = self.wait_report_final(srv, jid, 30)
            self.assertEqual(j["status"], "complete", repr(j))
            self.assertTrue(rel_close(j["result"], sqrt_sum(n), 1e-9) or j["result"] == sqrt_sum(n),
                            "n=%d: got %r want %r" % (n, j["result"], sqrt_sum(n)))
            self.assertEqual(j["progress"], 1)
            self.assertIsNone(j["error"])
        self.assertEqual(len(set(ids.values())), len(ids))

    def test_validation(self):
        srv = self.start_server("--max-iterations", "1000")
        P = "heavyIterations"
        r = srv.get("/tasks/reports/start")
        self.assertError(r, 400, "missing_param", P)
        r = srv.get("/tasks/reports/start?heavyIterations=")
        self.assertError(r, 400, ("invalid_param", "missing_param"), P)
        for bad in ("abc", "1e5", "-3", "0", "1001", "1.5", "99999999999999999999999999", "5abc", "0x10"):
            with self.subTest(value=bad):
                r = srv.get("/tasks/reports/start?heavyIterations=" + bad)
                self.assertError(r, 400, "invalid_param", P)
        r = srv.get("/tasks/reports/start?heavyIterations=5&heavyIterations=6")
        self.assertError(r, 400, "invalid_param", P)
        r = srv.get("/tasks/reports/start?heavyIterations=5&bogus=1")
        self.assertError(r, 400, "unknown_param", "bogus")
        # the limit itself is accepted
        self.start_report(srv, 1000)
        # and it bounds report jobs submitted through POST /jobs too
        r = srv.req("POST", "/jobs", {"task": "report", "params": {"heavyIterations": 1001}})
        self.assertError(r, 400, "invalid_param", "params.heavyIterations")
        self.submit(srv, "report", {"heavyIterations": 1000})

    def test_default_max_iterations_bound(self):
        srv = self.start_server()
        r = srv.get("/tasks/reports/start?heavyIterations=100000000001")
        self.assertError(r, 400, "invalid_param", "heavyIterations")

    def test_unknown_report_id(self):
        srv = self.start_server()
        for path in ("/tasks/reports/AAAAAAAAAAAAAAAAAAAAAAAA", "/tasks/reports/nope"):
            with self.subTest(path=path):
                self.assertError(srv.get(path), 404, "not_found")

    def test_report_ids_are_jobs(self):
        # A report started through the seeds' API is an ordinary job.
        srv = self.start_server()
        jid = self.start_report(srv, 10)
        j = self.wait_final(srv, jid, 30)
        self.assertEqual(j["task"], "report")
        self.assertEqual(j["params"], {"heavyIterations": 10})
        self.assertTrue(rel_close(j["result"], sqrt_sum(10), 1e-9))

    def test_rising_progress_then_cancel(self):
        # A huge report: progress must be observed rising while it runs.
        srv = self.start_server("--workers", "1")
        jid = self.start_report(srv, 10 ** 11)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            j = self.report(srv, jid)
            if j["status"] == "processing":
                seen.append(j["progress"])
                if len(set(seen)) >= 3:
                    break
            time.sleep(0.05)
        self.assertGreaterEqual(len(set(seen)), 3, "progress did not rise while processing: %r" % seen[-10:])
        self.assertEqual(seen, sorted(seen), "progress decreased: %r" % seen)
        self.assertLess(seen[-1], 1)
        r = srv.req("DELETE", "/jobs/%s" % jid)
        self.assertEqual(r.status, 202, repr(r))
        j = self.wait_report_final(srv, jid, 10)
        self.assertEqual(j["status"], "canceled")
        self.assertIsNone(j["result"])
        self.assertGreaterEqual(j["progress"], seen[-1])

    def test_seed_walkthrough(self):
        # The seeds' walk-through: one report of 3e7 iterations polled to the end,
        # then 5 of them started at once.
        n = 30000000
        ref = {}
        t = threading.Thread(target=lambda: ref.setdefault("v", sqrt_sum(n)), daemon=True)
        t.start()
        srv = self.start_server()
        jid = self.start_report(srv, n)
        history = []
        while True:
            j = self.report(srv, jid)
            history.append(j)
            if j["status"] in FINAL:
                break
            self.assertLess(len(history), 20000, "report never finished")
            time.sleep(0.01)
        progress = [h["progress"] for h in history]
        self.assertEqual(progress, sorted(progress), "progress decreased: %r" % progress)
        statuses = [h["status"] for h in history]
        # statuses only move forward
        order = {"queued": 0, "processing": 1, "complete": 2}
        self.assertEqual(statuses, sorted(statuses, key=lambda s: order.get(s, 9)), repr(statuses))
        self.assertEqual(j["status"], "complete", repr(j))
        if j["finishedAt"] - j["startedAt"] >= 150:
            # polling every ~10 ms cannot miss 150 ms of processing, nor a rise in progress
            self.assertIn("processing", statuses)
            rising = [h["progress"] for h in history if h["status"] == "processing"]
            self.assertGreaterEqual(len(set(rising)), 2, "progress did not rise while processing: %r" % rising)
        t.join(60)
        self.assertTrue(rel_close(j["result"], ref["v"], 1e-9), "got %r want %r" % (j["result"], ref["v"]))

        ids, errors = [], []

        def go():
            try:
                r = srv.get("/tasks/reports/start?heavyIterations=%d" % n)
                if r.status != 202:
                    errors.append(repr(r))
                else:
                    ids.append(r.json()["jobId"])
            except Exception as e:  # pragma: no cover
                errors.append(repr(e))
        ths = [threading.Thread(target=go) for _ in range(5)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(set(ids)), 5)
        for jid in ids:
            j = self.wait_report_final(srv, jid, 120)
            self.assertEqual(j["status"], "complete", repr(j))
            self.assertTrue(rel_close(j["result"], ref["v"], 1e-9))

    def test_two_workers_five_reports(self):
        srv = self.start_server("--workers", "2")
        n = self.calibrate_report(srv, 1.5)
        ids = [self.start_report(srv, n) for _ in range(5)]

        def snap():
            return [self.report(srv, i) for i in ids]
        # wait (a few seconds at most) until both workers picked their job up
        s = self.wait_until(lambda: (lambda s: s if sum(x["status"] == "processing" for x in s) == 2 else None)(snap()),
                            5, what="2 jobs processing")
        st = [x["status"] for x in s]
        self.assertEqual(st, ["processing", "processing", "queued", "queued", "queued"], repr(s))
        self.assertEqual([x["queuePosition"] for x in s], [None, None, 1, 2, 3], repr(s))
        max_proc = 0
        deadline = time.monotonic() + 120
        while True:
            # one request = one consistent snapshot of all five jobs
            # (five separate GETs could straddle a hand-over between jobs)
            listed = {j["id"]: j for j in srv.get("/jobs?limit=1000").json()["jobs"]}
            s = [listed[i] for i in ids]
            procs = sum(x["status"] == "processing" for x in s)
            max_proc = max(max_proc, procs)
            self.assertLessEqual(procs, 2, repr(s))
            queued = sorted(x["queuePosition"] for x in s if x["status"] == "queued")
            self.assertEqual(queued, list(range(1, len(queued) + 1)), "queue positions not 1..k: %r" % s)
            if all(x["status"] in FINAL for x in s):
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(max_proc, 2)
        for i in ids:
            x = self.report(srv, i)
            self.assertEqual(x["status"], "complete", repr(x))
            self.assertTrue(rel_close(x["result"], sqrt_sum_approx(n), 1e-7), repr(x))


if __name__ == "__main__":
    main()
