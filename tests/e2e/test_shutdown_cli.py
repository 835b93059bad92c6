"""Signals (SIGTERM/SIGINT drain, second signal) and the command line."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

FLAGS = ["--host", "--port", "--workers", "--max-queue", "--max-iterations", "--max-body",
         "--job-timeout-ms", "--retention-s", "--max-finished", "--keepalive-timeout-s",
         "--max-connections", "--drain-timeout-s", "--request-timeout-ms", "--worker-nice"]


class Shutdown(OffloadTestCase):

    def test_sigterm_idle_exits_0(self):
        srv = self.start_server()
        self.assertEqual(srv.get("/health").status, 200)
        srv.signal(signal.SIGTERM)
        # an idle server stops at once; 10 s bound for ASan's exit-time checks
        self.assertEqual(srv.wait_exit(10), 0, srv.stderr())

    def test_sigint_idle_exits_0(self):
        srv = self.start_server()
        c = self.raw(srv)  # an idle keep-alive connection does not hold the exit
        self.assertEqual(c.request("GET", "/health").status, 200)
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait_exit(10), 0, srv.stderr())

    def test_drain(self):
        srv = self.start_server("--workers", "1", "--drain-timeout-s", "30")
        run = self.submit(srv, "spin", {"ms": 2000})
        self.wait_status(srv, run["id"], "processing", 10)
        queued = [self.submit(srv, "spin", {"ms": 3000}) for _ in range(2)]
        # requests sent before the signal, completed after it
        waiter = self.raw(srv, timeout=30)
        waiter.send(build_request("GET", "/jobs/%s?wait=30" % run["id"]))
        late_post = self.raw(srv)
        body = b'{"task":"spin","params":{"ms":1}}'
        late_post.send(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body))
        late_report = self.raw(srv)
        late_report.send(b"GET /tasks/reports/start?heavyIterations=10 HTTP/1.1\r\n")
        late_fib = self.raw(srv)
        late_fib.send(b"GET /fibonacci/5 HTTP/1.1\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        # new submissions are refused while draining
        late_post.send(body)
        self.assertError(late_post.read_response(timeout=10), 503, "shutting_down")
        late_report.send(b"Host: x\r\n\r\n")
        self.assertError(late_report.read_response(timeout=10), 503, "shutting_down")
        late_fib.send(b"Host: x\r\n\r\n")
        self.assertError(late_fib.read_response(timeout=10), 503, "shutting_down")
        # no new connections are served
        try:
            fresh = request(srv.port, "GET", "/health", timeout=2)
            self.assertNotEqual(fresh.status, 200, "a new connection was served while draining")
        except OSError:
            pass
        # the running job finishes: the held ?wait request sees it complete
        r = waiter.read_response(timeout=30)
        self.assertEqual(r.status, 200)
        self.checkJob(r.json(), expect_status="complete", job_id=run["id"])
        rc = srv.wait_exit(20)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        # the queued jobs (2 x 3 s) were canceled, not run: exit well before 6 s of extra work
        self.assertLess(dt, 5.5, "exit took %.1fs: queued jobs ran?" % dt)

    def test_drain_timeout_cancels_running(self):
        srv = self.start_server("--workers", "1", "--drain-timeout-s", "1")
        j = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, j["id"], "processing", 10)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(15)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        self.assertGreater(dt, 0.7, "did not drain for --drain-timeout-s 1")
        self.assertLess(dt, 8, "1 s drain took %.1fs" % dt)  # generous for ASan

    def test_second_signal_exits_at_once(self):
        srv = self.start_server("--workers", "1", "--drain-timeout-s", "60")
        j = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, j["id"], "processing", 10)
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertTrue(srv.alive(), "server did not drain the running job")
        srv.expect_nonzero = True
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        rc = srv.wait_exit(5)
        self.assertIsNotNone(rc, "second signal did not stop the server")
        self.assertLess(time.monotonic() - t0, 2.0, "second signal: exit took too long")


class Cli(OffloadTestCase):

    def run_cli(self, args, timeout=5):
        p = subprocess.Popen([os.environ["OFFLOAD_BIN"]] + args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("%r still running after %ss (accepted a bad value?) stdout=%r" % (args, timeout, out[:300]))
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def test_help(self):
        rc, out, err = self.run_cli(["serve", "--help"])
        self.assertEqual(rc, 0, err)
        for f in FLAGS:
            self.assertIn(f, out, "--help does not list %s on stdout" % f)

    def test_invalid_values(self):
        bad = [["--port", "abc"], ["--port", "70000"], ["--port", "-1"], ["--workers", "0"],
               ["--workers", "abc"], ["--workers", "-2"], ["--max-queue", "x"], ["--max-iterations", "0"],
               ["--max-iterations", "abc"], ["--max-body", "-1"], ["--max-body", "1k"],
               ["--job-timeout-ms", "-1"], ["--retention-s", "x"], ["--max-finished", "-1"],
               ["--keepalive-timeout-s", "abc"], ["--max-connections", "0"], ["--drain-timeout-s", "-1"],
               ["--request-timeout-ms", "abc"], ["--worker-nice", "abc"], ["--bogus-flag", "1"],
               ["--workers"], ["--host", "not an address"]]
        for args in bad:
            with self.subTest(args=args):
                rc, out, err = self.run_cli(["serve", "--port", "0", "--host", "127.0.0.1"] + args)
                self.assertNotEqual(rc, 0, "accepted %r" % args)
                self.assertTrue(err.strip(), "no message on stderr for %r" % args)
                self.assertNotIn("listening", out)


if __name__ == "__main__":
    main()
