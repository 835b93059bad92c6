"""GET /fibonacci/<n>: a job awaited by the request, canceled if the client leaves."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


class Fibonacci(OffloadTestCase):

    def test_values(self):
        srv = self.start_server("--workers", "2")
        for n in (0, 1, 2, 10, 20, 25, 30):
            with self.subTest(n=n):
                r = srv.get("/fibonacci/%d" % n, timeout=60)
                self.assertEqual(r.status, 200, repr(r))
                self.assertJsonType(r)
                b = r.json()
                self.assertEqual(b, {"n": n, "result": fib(n)})
                self.assertIsInstance(b["result"], int)

    def test_concurrent(self):
        srv = self.start_server("--workers", "2")
        out, errs = {}, []

        def go(n):
            try:
                r = srv.get("/fibonacci/%d" % n, timeout=60)
                out[n] = (r.status, r.json())
            except Exception as e:  # pragma: no cover
                errs.append(repr(e))
        ths = [threading.Thread(target=go, args=(n,)) for n in range(20, 28)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(90)
        self.assertEqual(errs, [])
        for n in range(20, 28):
            self.assertEqual(out[n], (200, {"n": n, "result": fib(n)}))

    def test_invalid(self):
        srv = self.start_server()
        for bad in ("93", "-1", "abc", "1.5", "1e1", "100000000000000000000000"):
            with self.subTest(n=bad):
                self.assertError(srv.get("/fibonacci/" + bad), 400, "invalid_param", "n")

    def test_fibonacci_job_via_post(self):
        srv = self.start_server()
        j = self.submit(srv, "fibonacci", {"n": 25})
        j = self.wait_final(srv, j["id"], 60)
        self.assertEqual(j["status"], "complete")
        self.assertEqual(j["result"], fib(25))
        self.assertIsInstance(j["result"], int)

    def _fib_jobs(self, srv, status):
        r = srv.get("/jobs?status=%s" % status)
        self.assertEqual(r.status, 200, repr(r))
        return [j for j in r.json()["jobs"] if j["task"] == "fibonacci"]

    def test_disconnect_cancels(self):
        srv = self.start_server("--workers", "1")
        c = self.raw(srv)
        c.send(build_request("GET", "/fibonacci/92"))
        running = self.wait_until(lambda: self._fib_jobs(srv, "processing"), 10, what="fibonacci 92 processing")
        self.assertEqual(len(running), 1)
        jid = running[0]["id"]
        self.checkJob(running[0], expect_status="processing", params={"n": 92})
        c.close()
        t0 = time.monotonic()
        # "within a few seconds"
        canceled = self.wait_until(lambda: [j for j in self._fib_jobs(srv, "canceled") if j["id"] == jid], 5,
                                   what="fibonacci job canceled after disconnect")
        self.checkJob(canceled[0], expect_status="canceled")
        # and the worker is free again: a new request is answered
        r = srv.get("/fibonacci/15", timeout=30)
        self.assertEqual(r.json(), {"n": 15, "result": fib(15)})
        self.assertLess(time.monotonic() - t0, 30)

    def test_disconnect_while_queued(self):
        # the only worker is busy; a queued /fibonacci whose client leaves is canceled too
        srv = self.start_server("--workers", "1")
        spin = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, spin["id"], "processing", 10)
        c = self.raw(srv)
        c.send(build_request("GET", "/fibonacci/5"))
        q = self.wait_until(lambda: self._fib_jobs(srv, "queued"), 10, what="fibonacci queued")
        c.close()
        self.wait_status(srv, q[0]["id"], "canceled", 5)


if __name__ == "__main__":
    main()
