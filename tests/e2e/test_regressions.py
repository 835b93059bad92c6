"""Regressions from a connection-handling review: teardown during a drain,
keep-alive after held replies, pipelined bursts, large body buffers,
100-continue with Connection: close, and half-closed clients."""
import os
import re
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


def make_finished_jobs(srv, n, batch=100):
    """n tiny report jobs, submitted pipelined on one connection; waits until
    they are all final."""
    c = srv.raw(timeout=30)
    try:
        one = build_request("POST", "/jobs", {"task": "report", "params": {"heavyIterations": 1}})
        left = n
        while left:
            k = min(batch, left)
            c.send(one * k)
            for _ in range(k):
                r = c.read_response(timeout=30)
                assert r.status == 202, repr(r)
            left -= k
    finally:
        c.close()
    deadline = time.monotonic() + 60
    while True:
        h = srv.get("/health").json()
        if h["workers"]["busy"] == 0 and h["queue"]["depth"] == 0:
            return
        assert time.monotonic() < deadline, "%d tiny jobs not finished within 60 s: %r" % (n, h)
        time.sleep(0.05)


def requests_200(conn):
    """offload_http_requests_total{code="200"}, read on conn (a RawConn)."""
    return parse_200(conn.request("GET", "/metrics", timeout=20))


def parse_200(r):
    assert r.status == 200, repr(r)
    m = re.search(r'^offload_http_requests_total\{code="200"\} (\d+)', r.body.decode(), re.M)
    return int(m.group(1)) if m else 0


def complete_replies(buf):
    """How many complete Content-Length replies buf starts with."""
    n = off = 0
    while True:
        end = buf.find(b"\r\n\r\n", off)
        if end < 0:
            return n
        m = re.search(rb"\r\ncontent-length: *(\d+)", buf[off:end].lower())
        size = int(m.group(1)) if m else 0
        if len(buf) < end + 4 + size:
            return n
        off = end + 4 + size
        n += 1


class SmallBufConn(RawConn):
    """A RawConn whose receive buffer is small, so that replies the client has
    not read yet stay queued in the server rather than in our kernel."""

    def __init__(self, port, timeout=10.0, rcvbuf=8192):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.timeout = timeout
        self.buf = b""
        self.eof = False


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)\s+kB", f.read()).group(1))


class DrainTeardown(OffloadTestCase):

    def test_requests_arriving_as_the_last_job_ends_during_drain(self):
        # The job that ends the drain was reaped from inside a request handler,
        # which then tore the server down under that handler (use after free).
        srv = self.start_server("--workers", "1", "--drain-timeout-s", "30")
        make_finished_jobs(srv, 300)
        conns = []
        for _ in range(100):
            c = self.raw(srv, timeout=30)
            self.assertEqual(c.request("GET", "/health").status, 200)  # accepted, now idle
            conns.append(c)
        j = self.submit(srv, "spin", {"ms": 1500})
        j = self.wait_status(srv, j["id"], "processing", 10)
        end = j["startedAt"] / 1000.0 + 1.5  # server and test share the clock
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        time.sleep(max(0.0, end - 0.08 - time.time()))  # the loop is busy as the job ends
        msg = build_request("GET", "/jobs?limit=1000")
        sent = 0
        for c in conns:
            try:
                c.send(msg)
                sent += 1
            except OSError:
                pass  # already closed by a finished drain: fine
        full = closed = 0
        for i, c in enumerate(conns):
            try:
                r = c.read_response(timeout=30)
            except ConnectionError as e:
                self.assertEqual(c.buf, b"", "connection %d: partial reply (%s)" % (i, e))
                self.assertNotIn("inside", str(e), "connection %d: partial reply (%s)" % (i, e))
                closed += 1
                continue
            self.assertEqual(r.status, 200, "connection %d: %r" % (i, r))
            self.assertLessEqual(len(r.json()["jobs"]), 1000)
            full += 1
        self.assertEqual(full + closed, len(conns))
        rc = srv.wait_exit(30)
        self.assertEqual(rc, 0, "exit %r (sent %d, %d replies, %d closed)\n%s"
                         % (rc, sent, full, closed, srv.stderr()))
        # srv.stop() at cleanup also fails the test on any sanitizer report


class KeepAliveAfterHeldReply(OffloadTestCase):

    def test_idle_timeout_after_held_replies(self):
        srv = self.start_server("--workers", "1", "--keepalive-timeout-s", "1")
        # /fibonacci/<n> is always a held reply
        c = self.raw(srv, timeout=10)
        r = c.request("GET", "/fibonacci/5")
        self.assertEqual(r.json(), {"n": 5, "result": 5})
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(5), "idle connection after a held /fibonacci reply still open after 5 s "
                        "(--keepalive-timeout-s 1)")
        self.assertEqual(c.buf, b"")
        self.assertGreater(time.monotonic() - t0, 0.5, "closed well before the keep-alive limit")
        # ?wait on a running job is held too
        j = self.submit(srv, "spin", {"ms": 300})
        c = self.raw(srv, timeout=10)
        r = c.request("GET", "/jobs/%s?wait=5" % j["id"])
        self.assertEqual(r.status, 200)
        self.checkJob(r.json(), expect_status="complete", job_id=j["id"])
        self.assertTrue(c.wait_closed(5), "idle connection after a held ?wait reply still open after 5 s "
                        "(--keepalive-timeout-s 1)")
        self.assertEqual(c.buf, b"")


class PipelinedBurst(OffloadTestCase):

    def test_burst_yields_to_other_connections(self):
        # One connection's 64 KiB of pipelined requests used to be served in one
        # go before the loop looked at anything else.
        srv = self.start_server("--workers", "1")
        make_finished_jobs(srv, 100)
        probe = self.raw(srv, timeout=20)
        one = b"GET /jobs?limit=10 HTTP/1.1\r\nHost: x\r\n\r\n"
        n = 65536 // len(one)  # ~1600 requests in one 64 KiB write
        pair = build_request("GET", "/health") + build_request("GET", "/metrics")
        # the probe's own share of the 200 counter (health + metrics replies)
        m0 = requests_200(probe)
        probe.send(pair)
        self.assertEqual(probe.read_response(timeout=20).status, 200)
        own = parse_200(probe.read_response(timeout=20)) - m0
        self.assertIn(own, (1, 2, 3), "unexpected metrics counting")
        results = []
        for attempt in range(3):
            burst = self.raw(srv, timeout=30)
            before = requests_200(probe)
            burst.send(one * n)
            t0 = time.monotonic()
            probe.send(pair)
            # Read the burst as fast as it comes (so the old code is never held
            # back by a full socket) and note how much had arrived when the
            # probe's reply completed.
            got_at_probe = None
            probe_done = False
            burst_bytes = b""
            health_s = None
            deadline = time.monotonic() + 30
            while not probe_done:
                self.assertLess(time.monotonic(), deadline, "probe reply not received within 30 s")
                rd, _, _ = select.select([probe.sock, burst.sock], [], [], 1.0)
                if burst.sock in rd:
                    d = burst.sock.recv(1 << 20)
                    self.assertTrue(d, "burst connection closed")
                    burst_bytes += d
                if probe.sock in rd:
                    if not probe._fill(deadline):
                        self.fail("probe connection closed")
                    if complete_replies(probe.buf) >= 2:
                        probe_done = True
                        health_s = time.monotonic() - t0
                        got_at_probe = complete_replies(burst_bytes)
            probe.read_response(timeout=5)  # health
            served_at_probe = parse_200(probe.read_response(timeout=5)) - before - own
            # now collect the whole burst
            burst.buf = burst_bytes
            for i in range(n):
                r = burst.read_response(timeout=60)
                self.assertEqual(r.status, 200, "burst reply %d: %r" % (i, r))
            self.assertEqual(burst.buf, b"")
            burst.close()
            results.append((served_at_probe, got_at_probe, round(health_s, 3)))
            if served_at_probe < n and got_at_probe < n and health_s < 1.0:
                break
            # the test process may have been descheduled between the two sends
            # long enough for the burst to finish: try again
        served_at_probe, got_at_probe, health_s = results[-1]
        # generous: the bug made it ~100 ms on a quiet machine; now it is one
        # loop turn of at most 32 requests
        self.assertLess(health_s, 1.0, "in every try, /health took over 1 s during a burst "
                        "(burst served, burst received, /health s): %r" % results)
        self.assertLess(served_at_probe, n,
                        "in every try, all %d pipelined requests of one connection were served before another "
                        "connection's /health (burst served, burst received, /health s): %r" % (n, results))
        self.assertLess(got_at_probe, n,
                        "in every try, /health came after all %d burst replies "
                        "(burst served, burst received, /health s): %r" % (n, results))


class LargeBodyBuffers(OffloadTestCase):

    def test_large_body_buffer_not_kept_per_connection(self):
        # ASan's quarantine would keep freed buffers resident; shrink it for
        # this server (the harness passes our environment on).
        old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = ((old + ":") if old else "") + "quarantine_size_mb=1"
        try:
            srv = self.start_server("--workers", "1")
        finally:
            if old is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = old
        conns = []
        for _ in range(50):
            c = self.raw(srv, timeout=30)
            self.assertEqual(c.request("GET", "/health").status, 200)
            conns.append(c)
        body = b" " * (1024 * 1024 - 16) + b'{"nope":1}'  # within --max-body, rejected at once
        # one round first, so one-off growth (allocator arenas, ASan) is not counted
        r = conns[0].request("POST", "/jobs", body, {"Content-Type": "application/json"}, timeout=30)
        self.assertEqual(r.status, 400, repr(r))
        time.sleep(0.3)
        before = vm_rss_kib(srv.pid)
        for i, c in enumerate(conns[1:]):
            r = c.request("POST", "/jobs", body, {"Content-Type": "application/json"}, timeout=30)
            self.assertEqual(r.status, 400, "connection %d: %r" % (i, r))
        time.sleep(0.5)
        after = vm_rss_kib(srv.pid)
        grew = (after - before) / 1024.0
        self.assertLess(grew, 40, "RSS grew %.1f MiB (%d -> %d KiB) with 50 idle connections that each sent "
                        "one 1 MiB body" % (grew, before, after))
        for c in conns:  # they were kept open all along
            self.assertEqual(c.request("GET", "/health").status, 200)


class ExpectContinueClose(OffloadTestCase):

    def test_100_continue_with_connection_close_lingers(self):
        srv = self.start_server("--workers", "1")
        body = b'{"task":"spin","params":{"ms":1}}'
        c = self.raw(srv, timeout=10)
        # head and body together: 100 Continue and the reply leave in one loop turn
        c.send(build_request("POST", "/jobs", body, {"Content-Type": "application/json",
                                                     "Connection": "close",
                                                     "Expect": "100-continue"}))
        r1 = c.read_response(timeout=10)
        self.assertEqual(r1.status, 100, repr(r1))
        r2 = c.read_response(timeout=10)
        self.assertEqual(r2.status, 202, repr(r2))
        self.assertTrue(c.wait_closed(10), "no EOF after a Connection: close reply")
        self.assertEqual(c.buf, b"")
        # The server half-closed and lingers, reading and discarding: our late
        # bytes must not be answered by a reset.
        try:
            for chunk in (b"x" * 100, b"y" * 100, b"z"):
                time.sleep(0.2)
                c.sock.sendall(chunk)
            time.sleep(0.1)
            c.sock.settimeout(5)
            d = c.sock.recv(100)
        except (BrokenPipeError, ConnectionResetError) as e:
            self.fail("connection reset while the server should linger: %r" % e)
        self.assertEqual(d, b"", "data after the final reply")


class HalfClose(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2"])
        try:
            make_finished_jobs(cls.srv, 1000)
        except BaseException:
            cls.srv.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_half_close_after_pipelined_requests_gets_every_reply(self):
        for last_close in (False, True):
            with self.subTest(connection_close_on_last=last_close):
                c = self.track(SmallBufConn(self.srv.port, timeout=30))
                req = build_request("GET", "/jobs?limit=1000")
                lastreq = build_request("GET", "/jobs?limit=1000", headers={"Connection": "close"}) \
                    if last_close else req
                c.send(req * 19 + lastreq)
                c.sock.shutdown(socket.SHUT_WR)
                time.sleep(0.5)  # a slow reader: the replies back up in the server
                for i in range(20):
                    try:
                        r = c.read_response(timeout=30)
                    except ConnectionError as e:
                        self.fail("half-closed client: reply %d of 20 missing (%s)" % (i + 1, e))
                    self.assertEqual(r.status, 200, "reply %d: %r" % (i + 1, r))
                    self.assertEqual(len(r.json()["jobs"]), 1000)
                self.assertTrue(c.wait_closed(10), "no EOF after the 20 replies")
                self.assertEqual(c.buf, b"", "bytes after the 20 replies")

    def test_half_close_inside_request_line_closes(self):
        c = self.raw(self.srv, timeout=10)
        c.send(b"GET /jobs?li")
        time.sleep(0.1)
        c.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(c.wait_closed(2), "half-closed partial request: connection still open after 2 s")
        self.assertEqual(c.buf, b"")
        self.assertEqual(self.srv.get("/health").status, 200)


class HalfCloseHeldFibonacci(OffloadTestCase):

    def test_half_close_cancels_held_fibonacci(self):
        # Documented: a half-close while a reply is held is a disconnect.
        srv = self.start_server("--workers", "1")
        c = self.raw(srv, timeout=10)
        c.send(build_request("GET", "/fibonacci/92"))

        def running():
            r = srv.get("/jobs?status=processing&limit=10")
            self.assertEqual(r.status, 200)
            js = [j for j in r.json()["jobs"] if j["task"] == "fibonacci"]
            return js[0] if js else None

        j = self.wait_until(running, 10, what="fibonacci job processing")
        c.sock.shutdown(socket.SHUT_WR)
        j = self.wait_status(srv, j["id"], FINAL, 10)
        self.assertEqual(j["status"], "canceled", repr(j))
        self.assertTrue(c.wait_closed(5), "connection of a half-closed held request still open")
        self.assertEqual(c.buf, b"")


if __name__ == "__main__":
    main()
