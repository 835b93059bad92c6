"""Server-sent events (GET /events, GET /jobs/<id>/events), end to end, on raw
sockets.

- A job's events come in order (queued -> processing -> complete), each with
  an id greater than the last, the job object as GET /jobs/<id> shows it.
- A 2 s spin job sends between 3 and 25 processing events (at most 10 a
  second), and a `stats` event comes within 1.5 s of opening.
- /jobs/<id>/events starts with the job's current state and ends right
  after its final event; an unknown id is 404; a reconnect after the end
  gets 204 (an EventSource stops there).
- Last-Event-ID replays exactly the events missed, then the live stream.
- A client that never reads (a small SO_RCVBUF) is dropped once 1 MiB waits
  for it, while /health keeps answering.
- Stream 5 of --max-event-streams 4, and stream 257 at the default, get 503
  too_many_streams; a keep-alive comment comes every 15 s; SIGTERM ends
  every stream's body cleanly.
"""
import json
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


class SSE:
    """One event-stream request on its own socket, with an incremental
    chunked + text/event-stream parser."""

    def __init__(self, port, path="/events", last_id=None, rcvbuf=None, timeout=10.0, read_head=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        hdrs = {"Accept": "text/event-stream"}
        if last_id is not None:
            hdrs["Last-Event-ID"] = str(last_id)
        self.sock.sendall(build_request("GET", path, headers=hdrs))
        self.raw = b""
        self.body = b""
        self.rest = b""  # body bytes not yet a whole event
        self.events = []  # {"id": int, "event": str, "data": obj}
        self.comments = []
        self.status = None
        self.headers = []
        self.ended = False
        self.eof = False
        if read_head:
            self.read_head()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.raw += chunk
        return True

    def read_head(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if self.eof or not self._recv(deadline):
                raise ConnectionError("closed before a head: %r" % self.raw[:200])
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [(k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        if self.header("content-length") is not None:  # an error (or 204): a whole reply
            n = int(self.header("content-length"))
            while len(self.raw) < n and not self.eof:
                self._recv(deadline)
            self.body, self.raw = self.raw[:n], self.raw[n:]
            self.ended = True

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def _parse(self):
        while not self.ended and b"\r\n" in self.raw:
            line, rest = self.raw.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if len(rest) < size + 2:
                break
            if size == 0:
                self.ended = True
                self.raw = rest[2:]
                break
            self.body += rest[:size]
            self.rest += rest[:size]
            self.raw = rest[size + 2:]
        while b"\n\n" in self.rest:
            block, self.rest = self.rest.split(b"\n\n", 1)
            text = block.decode("utf-8")
            if text.startswith(":"):
                self.comments.append(text)
                continue
            ev = {}
            for ln in text.split("\n"):
                k, _, v = ln.partition(": ")
                ev[k] = v
            assert set(ev) == {"id", "event", "data"}, "an event has id, event and one data line: %r" % text
            self.events.append({"id": int(ev["id"]), "event": ev["event"], "data": json.loads(ev["data"])})

    def wait(self, pred, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            self._parse()
            if pred(self):
                return self
            if self.eof or self.ended:
                raise AssertionError("stream ended before %s: %r" % (what, self.events[-5:]))
            try:
                self._recv(deadline)
            except socket.timeout:
                raise AssertionError("%s not reached within %.1fs; last events %r" % (what, timeout, self.events[-5:]))

    def wait_end(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not self.ended:
            self._parse()
            if self.ended:
                break
            if self.eof:
                raise AssertionError("closed without the last chunk")
            self._recv(deadline)
        return self

    def job_events(self, job_id):
        return [e for e in self.events if e["event"] == "job" and e["data"]["id"] == job_id]


def final_of(job_id):
    return lambda s: any(e["data"]["status"] in FINAL for e in s.job_events(job_id))


class TestEvents(OffloadTestCase):
    def sse(self, srv, *args, **kw):
        return self.track(SSE(srv.port, *args, **kw))

    def check_stream_head(self, s):
        self.assertEqual(s.status, 200)
        self.assertEqual(s.header("content-type"), "text/event-stream")
        self.assertEqual(s.header("cache-control"), "no-store")
        self.assertEqual(s.header("transfer-encoding"), "chunked")

    def test_job_events_in_order_and_stats(self):
        srv = self.start_server("--workers", "2")
        t0 = time.monotonic()
        s = self.sse(srv)
        self.check_stream_head(s)
        s.wait(lambda s: any(e["event"] == "stats" for e in s.events), timeout=5, what="a stats event")
        self.assertLess(time.monotonic() - t0, 1.5 + 0.5, "stats within 1.5 s (plus slack for a loaded machine)")
        st = [e for e in s.events if e["event"] == "stats"][0]["data"]
        self.assertEqual(set(st), {"queue", "workers", "completedPerSec", "failedPerSec", "loopLagMs"})
        self.assertEqual(set(st["queue"]), {"depth", "capacity"})
        self.assertEqual(set(st["workers"]), {"total", "busy"})
        h = self.health(srv)
        self.assertEqual(st["workers"]["total"], h["workers"]["total"], "the figures /health shows")
        self.assertEqual(st["queue"]["capacity"], h["queue"]["capacity"])
        j = self.submit(srv, "spin", {"ms": 300})
        s.wait(final_of(j["id"]), what="the job's final event")
        ids = [e["id"] for e in s.events]
        self.assertEqual(ids, sorted(set(ids)), "ids only grow")
        evs = s.job_events(j["id"])
        statuses = [e["data"]["status"] for e in evs]
        self.assertEqual(statuses[0], "queued", statuses)
        self.assertEqual(statuses[-1], "complete", statuses)
        self.assertIn("processing", statuses)
        self.assertEqual(statuses, sorted(statuses, key=["queued", "processing", "complete"].index))
        for e in evs:
            self.checkJob(e["data"], job_id=j["id"], task="spin")
        self.assertEqual(evs[-1]["data"], self.job(srv, j["id"]), "the final event is the job as GET shows it")
        # completedPerSec counts it in the next stats event.
        s.wait(lambda s: any(e["event"] == "stats" and e["data"]["completedPerSec"] > 0 for e in s.events),
               timeout=5, what="completedPerSec > 0")

    def test_progress_of_a_2s_spin(self):
        srv = self.start_server("--workers", "1")
        s = self.sse(srv)
        j = self.submit(srv, "spin", {"ms": 2000})
        s.wait(final_of(j["id"]), timeout=30, what="the job's final event")
        running = [e for e in s.job_events(j["id"]) if e["data"]["status"] == "processing"]
        self.assertTrue(3 <= len(running) <= 25, "%d processing events" % len(running))
        ps = [e["data"]["progress"] for e in running]
        self.assertEqual(ps, sorted(ps), "progress never goes back")

    def test_job_stream(self):
        srv = self.start_server("--workers", "1")
        r = SSE(srv.port, "/jobs/AAAAAAAAAAAAAAAAAAAAAA/events")
        self.assertError(Response(r.status, "", "HTTP/1.1", r.headers, r.body), 404, "not_found")
        r.close()
        j = self.submit(srv, "spin", {"ms": 600})
        self.wait_status(srv, j["id"], "processing", 10)
        s = self.sse(srv, "/jobs/%s/events" % j["id"])
        self.check_stream_head(s)
        s.wait(lambda s: s.events, what="the first event")
        self.assertEqual(s.events[0]["data"]["status"], "processing", "it starts with the current state")
        s.wait_end(timeout=15)
        self.assertEqual(s.events[-1]["data"]["status"], "complete")
        self.assertTrue(all(e["data"]["id"] == j["id"] for e in s.events))
        ids = [e["id"] for e in s.events]
        self.assertEqual(ids, sorted(set(ids)))
        # A finished job: its state, then the end; a reconnect from there: 204.
        s2 = self.sse(srv, "/jobs/%s/events" % j["id"]).wait_end()
        self.assertEqual([e["data"]["status"] for e in s2.events], ["complete"])
        s3 = self.sse(srv, "/jobs/%s/events" % j["id"], last_id=s2.events[-1]["id"])
        self.assertEqual(s3.status, 204)

    def test_last_event_id_replays_exactly_the_missed(self):
        srv = self.start_server("--workers", "2", "--store", "memory")
        a = self.sse(srv)
        jobs = [self.submit(srv, "spin", {"ms": 100}) for _ in range(3)]
        for j in jobs:
            a.wait(final_of(j["id"]), what="final events")
        k = a.events[1]["id"]  # the client "had" the first two events
        b = self.sse(srv, last_id=k)
        last = a.events[-1]["id"]
        b.wait(lambda s: s.events and s.events[-1]["id"] >= last, what="the replay")
        missed = [e for e in a.events if k < e["id"] <= last]
        self.assertEqual([e for e in b.events if e["id"] <= last], missed)
        # ...then the live stream: both see the next job alike.
        j = self.submit(srv, "spin", {"ms": 50})
        a.wait(final_of(j["id"]))
        b.wait(final_of(j["id"]))
        self.assertEqual(a.job_events(j["id"]), b.job_events(j["id"]))
        # One job's replay: its events after k only, then the end.
        c = self.sse(srv, "/jobs/%s/events" % jobs[2]["id"], last_id=k).wait_end()
        self.assertEqual(c.events, [e for e in missed if e["event"] == "job" and e["data"]["id"] == jobs[2]["id"]])

    def test_client_that_never_reads_is_dropped(self):
        srv = self.start_server("--workers", "2", "--store", "memory")
        s = self.sse(srv, rcvbuf=4096)  # reads its head, then never again
        values = [1.5] * 20000  # each job event is ~100 KB
        for i in range(60):
            r = srv.req("POST", "/jobs", {"task": "stats", "params": {"values": values}})
            self.assertEqual(r.status, 202, repr(r)[:300])
            t = time.monotonic()
            self.health(srv)
            self.assertLess(time.monotonic() - t, 2.0, "/health answers while a client does not read")

        def dropped():
            m = srv.get("/metrics").body.decode()
            line = [ln for ln in m.splitlines() if ln.startswith("offload_http_slow_clients_dropped_total")]
            return line and float(line[0].split()[-1]) >= 1
        self.wait_until(dropped, 20, what="the slow client dropped")
        got = 0
        s.sock.settimeout(10)
        try:
            while True:
                chunk = s.sock.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        except ConnectionResetError:
            pass
        self.assertLess(got, 60 * 300 * 1024, "the client got less than was sent")

    def test_stream_limit(self):
        srv = self.start_server("--workers", "1", "--max-event-streams", "4", "--store", "memory")
        open_ = [self.sse(srv) for _ in range(4)]
        for s in open_:
            self.check_stream_head(s)
        r = SSE(srv.port)
        resp = Response(r.status, "", "HTTP/1.1", r.headers, r.body)
        self.assertError(resp, 503, "too_many_streams")
        self.assertEqual(resp.header("Retry-After"), "1")
        r.close()
        open_[0].close()
        def one_more():
            s = SSE(srv.port)
            ok = s.status == 200
            if ok:
                self.track(s)
            else:
                s.close()
            return ok
        self.wait_until(one_more, 10, interval=0.05, what="a stream once one closed")

    def test_stream_257_at_the_default(self):
        srv = self.start_server("--workers", "1", "--store", "memory")
        streams = [self.sse(srv) for _ in range(256)]
        self.assertTrue(all(s.status == 200 for s in streams))
        r = SSE(srv.port)
        self.assertError(Response(r.status, "", "HTTP/1.1", r.headers, r.body), 503, "too_many_streams")
        r.close()
        self.assertEqual(self.health(srv)["status"], "ok")

    def test_keepalive_and_shutdown(self):
        srv = self.start_server("--workers", "1", "--store", "memory")
        s = self.sse(srv, "/events", timeout=30)
        t = time.monotonic()
        s.wait(lambda s: s.comments, timeout=20, what="a keep-alive comment")
        self.assertEqual(s.comments[0], ": keep-alive")
        self.assertGreater(time.monotonic() - t, 13)
        srv.signal(signal.SIGTERM)
        s.wait_end(timeout=15)
        self.assertEqual(srv.wait_exit(20), 0)


if __name__ == "__main__":
    main()
