"""The front door (issue 6): Expect: 100-continue answered only after the
route, method and declared length are checked; a listener that keeps going
when the process runs out of file descriptors; client errors that are always
4xx with valid UTF-8 JSON (even when echoing bytes that are not UTF-8, or
truncating inside a multi-byte character); NUL bytes decoded from a query;
a header name with a space; and HEAD replies."""
import json
import os
import re
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


# Multi-byte characters of every UTF-8 length above one byte.
MULTI = ("\u00e9", "\u20ac", "\U0001F600")  # é (2 bytes), € (3), 😀 (4)
# ASCII prefix lengths put in front of a multi-byte character, so that a
# truncation of the echoed text at any usual size (32, 64, 128, 256 bytes)
# falls inside the character, wherever the server cuts.
PREFIXES = sorted(set(range(0, 4)) | set(range(28, 34)) | set(range(58, 68))
                  | set(range(122, 131)) | set(range(250, 259)))


def raw_exchange(srv, data, timeout=10.0, head_request=False):
    """Send data on a fresh connection and read one reply."""
    c = srv.raw(timeout)
    try:
        c.send(data)
        return c.read_response(timeout=timeout, head_request=head_request)
    finally:
        c.close()


def head_only(method, path, headers):
    """A request head with no body (path: str, or bytes sent as they are)."""
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    out = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
    out += "".join("%s: %s\r\n" % kv for kv in headers)
    return (out + "\r\n").encode("latin-1")


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)


def metric(text, name):
    """The sum of a metric's samples over all label sets, or None if absent."""
    vals = [float(v) for v in re.findall(r"^%s(?:\{[^}\n]*\})? +([0-9.eE+-]+)\s*$" % re.escape(name), text, re.M)]
    return sum(vals) if vals else None


class FrontDoorCase(OffloadTestCase):

    def assertUtf8Json(self, resp, what=""):
        """The body is strict UTF-8 JSON, and no string in it holds a lone
        surrogate (a \\udcXX escape would be JSON but not UTF-8 text)."""
        self.assertJsonType(resp)
        try:
            text = resp.body.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail("%sreply body is not valid UTF-8 (%s): %r" % (what, e, resp.body[:400]))
        try:
            obj = json.loads(text)
        except ValueError as e:
            self.fail("%sreply body is not JSON (%s): %r" % (what, e, resp.body[:400]))
        for s in _strings(obj):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                self.fail("%sreply body has a string that is not Unicode text (lone surrogate): %r"
                          % (what, resp.body[:400]))
        return obj

    def assertClientError(self, resp, status, code, param=None, what=""):
        self.assertNotEqual(resp.status, 500, "%sa client error answered 500: %r" % (what, resp))
        self.assertEqual(resp.status, status, "%sexpected %d %s, got %r" % (what, status, code, resp))
        self.assertUtf8Json(resp, what)
        return self.assertError(resp, status, code, param)


# --------------------------------------------------------------------------
# 1. Expect: 100-continue
# --------------------------------------------------------------------------

class ExpectContinue(FrontDoorCase, SharedServerTestCase):

    SERVER_ARGS = ["--workers", "1", "--max-body", "1000"]

    def first_reply(self, c, what):
        r = c.read_response(timeout=10)
        self.assertNotEqual(r.status, 100, "%s: the server sent 100 Continue before its final answer "
                            "(the route, method and length must be checked first)" % what)
        return r

    def test_declared_length_over_max_body_gets_413_not_100(self):
        c = self.raw(self.srv)
        c.send(head_only("POST", "/jobs", [("Content-Type", "application/json"),
                                            ("Expect", "100-continue"), ("Content-Length", "5000")]))
        r = self.first_reply(c, "Content-Length 5000 over --max-body 1000")
        self.assertClientError(r, 413, "payload_too_large")
        self.assertTrue(c.wait_closed(5), "connection not closed after 413")
        self.assertNotIn(b"100 Continue", c.buf)
        self.assertEqual(c.buf, b"", "bytes after the 413")

    def test_unknown_path_gets_404_not_100(self):
        for path in ("/nope", "/jobs/", "/fibonacci/10/"):
            with self.subTest(path=path):
                c = self.raw(self.srv)
                c.send(head_only("POST", path, [("Content-Type", "application/json"),
                                                ("Expect", "100-continue"), ("Content-Length", "10")]))
                r = self.first_reply(c, "POST %s" % path)
                self.assertClientError(r, 404, "not_found")
                self.assertNotIn(b"100 Continue", c.buf)

    def test_wrong_method_gets_405_with_allow_not_100(self):
        for method, path, allowed in (("PUT", "/jobs", {"GET", "POST"}),
                                      ("POST", "/health", {"GET"}),
                                      ("PATCH", "/jobs/AAAAAAAAAAAAAAAAAAAAAA", {"GET", "DELETE"})):
            with self.subTest(method=method, path=path):
                c = self.raw(self.srv)
                c.send(head_only(method, path, [("Content-Type", "application/json"),
                                                ("Expect", "100-continue"), ("Content-Length", "10")]))
                r = self.first_reply(c, "%s %s" % (method, path))
                self.assertClientError(r, 405, "method_not_allowed")
                allow = r.header("Allow")
                self.assertIsNotNone(allow, "405 without an Allow header: %r" % r)
                methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
                self.assertTrue(allowed <= methods, "Allow %r lacks %r" % (allow, allowed))
                self.assertNotIn(method, methods)
                self.assertNotIn(b"100 Continue", c.buf)

    def test_valid_post_gets_100_then_202(self):
        body = b'{"task":"spin","params":{"ms":1}}'
        c = self.raw(self.srv)
        c.send(head_only("POST", "/jobs", [("Content-Type", "application/json"),
                                            ("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 100, "a valid POST /jobs with Expect: 100-continue: %r" % r)
        self.assertEqual(r.version, "HTTP/1.1")
        c.send(body)
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 202, repr(r))
        j = self.checkJob(r.json(), task="spin", params={"ms": 1})
        self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"])
        # the connection is still good
        self.assertEqual(c.request("GET", "/health").status, 200)

    def test_chunked_post(self):
        body = b'{"task":"spin","params":{"ms":1}}'
        chunked = (b"%x\r\n%s\r\n" % (7, body[:7]) + b"%x\r\n%s\r\n" % (len(body) - 7, body[7:])
                   + b"0\r\n\r\n")
        hdrs = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
        # plain
        c = self.raw(self.srv)
        c.send(head_only("POST", "/jobs", hdrs) + chunked)
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 202, repr(r))
        self.checkJob(r.json(), task="spin", params={"ms": 1})
        # with Expect: no declared length to refuse, so 100 first
        c = self.raw(self.srv)
        c.send(head_only("POST", "/jobs", hdrs + [("Expect", "100-continue")]))
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 100, "chunked POST /jobs with Expect: 100-continue: %r" % r)
        c.send(chunked)
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 202, repr(r))
        self.checkJob(r.json(), task="spin", params={"ms": 1})
        # a chunked body that grows over --max-body is still a 413
        c = self.raw(self.srv)
        c.send(head_only("POST", "/jobs", hdrs))
        try:
            for _ in range(4):
                c.send(b"190\r\n" + b" " * 400 + b"\r\n")
        except OSError:
            pass
        r = c.read_response(timeout=10)
        self.assertClientError(r, 413, "payload_too_large")


# --------------------------------------------------------------------------
# 2. The listener under EMFILE
# --------------------------------------------------------------------------

class ListenerOutOfDescriptors(FrontDoorCase):

    def test_emfile_does_not_stall_the_listener(self):
        # Long request/keep-alive deadlines: nothing frees a descriptor but us.
        srv = self.start_server("--workers", "1", "--request-timeout-ms", "60000",
                                "--keepalive-timeout-s", "60")
        self.assertEqual(srv.get("/health").status, 200)
        time.sleep(0.2)  # the /health connection's descriptor is closed by now
        nfd = len(os.listdir("/proc/%d/fd" % srv.pid))
        room = 6
        limit = nfd + room
        # The server now runs under a low open-file limit: at most `room` more
        # descriptors, then accept() fails with EMFILE.
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (limit, limit))
        n = room + 20
        socks = []
        for _ in range(n):
            s = socket.create_connection((HOST, srv.port), timeout=5)  # the kernel's backlog completes it
            self.track(s)
            socks.append(s)

        def closed_by_peer(s):
            try:
                s.setblocking(False)
                d = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True  # reset
            finally:
                s.settimeout(5)
            if d:
                self.fail("unsolicited bytes on an idle connection: %r" % d[:200])
            return True

        # Connections that do not fit are accepted and closed at once.
        closed = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(closed) < n:
            live = [s for s in socks if s not in closed]
            rd, _, _ = select.select(live, [], [], 0.2)
            for s in rd:
                if closed_by_peer(s):
                    closed.add(s)
            if len(closed) >= n - room:
                time.sleep(0.3)  # let any stragglers be closed too
                for s in [s for s in socks if s not in closed]:
                    if select.select([s], [], [], 0)[0] and closed_by_peer(s):
                        closed.add(s)
                break
        self.assertTrue(srv.alive(), "server died under EMFILE:\n%s" % srv.stderr())
        self.assertGreaterEqual(len(closed), 1,
                                "%d connections to a server with room for about %d more descriptors: none was "
                                "closed within 5 s (they wait in the backlog)" % (n, room))
        # Every other connection was accepted and is served: none is stuck.
        pending = {}
        for i, s in enumerate(socks):
            if s in closed:
                continue
            try:
                s.sendall(build_request("GET", "/health"))
                pending[s] = (i, b"")
            except OSError:
                closed.add(s)  # closed late: accepted and closed, fine
        served = 0
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            rd, _, _ = select.select(list(pending), [], [], 0.2)
            for s in rd:
                i, data = pending[s]
                try:
                    d = s.recv(65536)
                except OSError:
                    d = b""
                if not d:
                    del pending[s]
                    if data:
                        self.fail("connection %d: cut inside a reply: %r" % (i, data[:200]))
                    closed.add(s)  # closed late: accepted and closed, fine
                    continue
                data += d
                pending[s] = (i, data)
                if b"\r\n\r\n" in data:
                    del pending[s]
                    self.assertTrue(data.startswith(b"HTTP/1.1 200"), "connection %d: %r" % (i, data[:200]))
                    served += 1
        self.assertEqual(sorted(i for i, _ in pending.values()), [],
                         "of %d connections (%d closed by the server, %d served), these got neither a reply "
                         "nor EOF within 5 s: stuck in the backlog" % (n, len(closed), served))
        # A connection attempted while the table is still full is closed too.
        late = self.track(socket.create_connection((HOST, srv.port), timeout=5))
        late.settimeout(3)
        try:
            late.sendall(build_request("GET", "/health"))
            got = late.recv(65536)
        except socket.timeout:
            self.fail("a connection attempted while the descriptor table was full got neither a reply "
                      "nor EOF within 3 s (stuck in the backlog)")
        except OSError:
            got = b""
        self.assertTrue(got == b"" or got.startswith(b"HTTP/1.1 200"), "late connection: %r" % got[:200])
        # Free the descriptors: a fresh /health answers at once.
        for s in socks:
            s.close()
        late.close()

        def fresh_ok():
            try:
                return request(srv.port, "GET", "/health", timeout=2).status == 200
            except OSError:
                return False
        t0 = time.monotonic()
        self.wait_until(fresh_ok, 5, interval=0.05, what="a fresh /health after the descriptors were freed")
        self.assertLess(time.monotonic() - t0, 5)
        r = srv.get("/metrics", timeout=10)
        self.assertEqual(r.status, 200, repr(r))
        text = r.body.decode()
        v = metric(text, "offload_http_accept_failures_total")
        self.assertIsNotNone(v, "no offload_http_accept_failures_total counter in /metrics")
        self.assertGreater(v, 0, "offload_http_accept_failures_total did not count the EMFILE accepts")
        self.assertIn("# TYPE offload_http_accept_failures_total counter", text)
        self.assertTrue(srv.alive())


# --------------------------------------------------------------------------
# 3. Client errors are 4xx with valid UTF-8 JSON
# --------------------------------------------------------------------------

class Utf8ClientErrors(FrontDoorCase, SharedServerTestCase):

    SERVER_ARGS = ["--workers", "1"]

    def post_json_bytes(self, c, body):
        return c.request("POST", "/jobs", body, {"Content-Type": "application/json"})

    def test_raw_invalid_utf8_path(self):
        for path in (b"/\xff\xfe\x80", b"/jobs\xff", b"/\xc3", b"/tasks/reports/\xe2\x82",
                     b"/" + b"a" * 61 + b"\xe2\x82\xac", b"/\xed\xa0\x80", b"/\xc0\xaf"):
            with self.subTest(path=path):
                r = raw_exchange(self.srv, head_only("GET", path, []))
                self.assertClientError(r, 404, "not_found", what="GET %r: " % path)

    def test_invalid_utf8_query(self):
        c = self.raw(self.srv)
        cases = [("/jobs?%FF%FE=1", 400, "unknown_param", None),
                 ("/health?%C3=1", 400, "unknown_param", None),
                 ("/jobs?limit=%FF", 400, "invalid_param", "limit"),
                 ("/jobs?status=%C3", 400, "invalid_param", "status"),
                 ("/jobs?status=%E2%82", 400, "invalid_param", "status"),
                 ("/jobs?status=queued%FF", 400, "invalid_param", "status"),
                 ("/tasks/reports/start?heavyIterations=%F0%9F%98", 400, "invalid_param", "heavyIterations"),
                 ("/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=%FF", 400, "invalid_param", "wait")]
        for path, status, code, param in cases:
            with self.subTest(path=path):
                r = c.request("GET", path)
                self.assertClientError(r, status, code, param, what="GET %s: " % path)
        # the same bytes sent raw, not %-escaped
        for path, code in ((b"/jobs?status=\xff", "invalid_param"), (b"/jobs?\xff\xfe=1", "unknown_param"),
                           (b"/jobs?limit=\xc3", "invalid_param")):
            with self.subTest(path=path):
                r = raw_exchange(self.srv, head_only("GET", path, []))
                self.assertNotEqual(r.status, 500, repr(r))
                self.assertClientError(r, 400, code, what="GET %r: " % path)

    def test_long_query_value_truncated_inside_a_character(self):
        c = self.raw(self.srv)
        for ch in MULTI:
            esc = "".join("%%%02X" % b for b in ch.encode("utf-8"))
            for k in PREFIXES:
                for name in ("status", "limit"):
                    path = "/jobs?%s=%s%s" % (name, "q" * k, esc)
                    r = c.request("GET", path)
                    self.assertClientError(r, 400, "invalid_param", name, what="GET %s: " % path)
                path = "/jobs?%s%s=1" % ("n" * k, esc)
                r = c.request("GET", path)
                self.assertClientError(r, 400, "unknown_param", what="GET %s: " % path)

    def test_unknown_key_truncated_inside_a_character(self):
        c = self.raw(self.srv)
        for ch in MULTI:
            for k in PREFIXES:
                key = "k" * k + ch
                body = ('{"task":"spin","params":{"ms":1},"%s":1}' % key).encode("utf-8")
                r = self.post_json_bytes(c, body)
                self.assertClientError(r, 400, "unknown_param", what="unknown key %d+%r: " % (k, ch))
                body = ('{"task":"spin","params":{"ms":1,"%s":1}}' % key).encode("utf-8")
                r = self.post_json_bytes(c, body)
                self.assertClientError(r, 400, "unknown_param", what="unknown task param %d+%r: " % (k, ch))

    def test_unknown_task_truncated_inside_a_character(self):
        c = self.raw(self.srv)
        for ch in MULTI:
            for k in PREFIXES:
                body = ('{"task":"%s","params":{}}' % ("x" * k + ch)).encode("utf-8")
                r = self.post_json_bytes(c, body)
                self.assertClientError(r, 400, "unknown_task", "task", what="task %d+%r: " % (k, ch))

    def test_fibonacci_segment_truncated_inside_a_character(self):
        c = self.raw(self.srv)
        for ch in MULTI:
            for k in sorted(set(PREFIXES) | set(range(36, 44))):
                path = ("/fibonacci/" + "1" * k).encode() + ch.encode("utf-8")
                r = raw_exchange(self.srv, head_only("GET", path, []))
                self.assertClientError(r, 400, "invalid_param", "n", what="GET %r: " % path)
            # and %-escaped (paths are not decoded)
            path = "/fibonacci/" + "2" * 40 + "".join("%%%02X" % b for b in ch.encode("utf-8"))
            self.assertClientError(c.request("GET", path), 400, "invalid_param", "n", what="GET %s: " % path)
        for path in (b"/fibonacci/\xff", b"/fibonacci/1\xc3", b"/fibonacci/" + b"9" * 40 + b"\xe2\x82"):
            r = raw_exchange(self.srv, head_only("GET", path, []))
            self.assertClientError(r, 400, "invalid_param", "n", what="GET %r: " % path)

    def test_report_id_with_multibyte(self):
        for ch in MULTI:
            for k in (21, 22, 40, 63):
                path = ("/tasks/reports/" + "A" * k).encode() + ch.encode("utf-8")
                r = raw_exchange(self.srv, head_only("GET", path, []))
                self.assertClientError(r, 404, "not_found", what="GET %r: " % path)
                path = ("/jobs/" + "A" * k).encode() + ch.encode("utf-8")
                r = raw_exchange(self.srv, head_only("GET", path, []))
                self.assertClientError(r, 404, "not_found", what="GET %r: " % path)

    def test_json_body_not_utf8(self):
        c = self.raw(self.srv)
        for body in (b'{"task":"\xff\xfe"}', b'{"\xff":1}', b'{"task":"spin","params":{"ms":1},"\xc3":1}',
                     b'{"task":"' + "\u20ac".encode() * 40 + b'"', b'{"task":"spin"\xe2\x82}',
                     b'{"task":' + "\u00e9".encode() * 50 + b'}', b"\xef\xbb\xbf\xff"):
            with self.subTest(body=body[:40]):
                r = self.post_json_bytes(c, body)
                self.assertClientError(r, 400, "invalid_json", what="body %r: " % body[:60])


# --------------------------------------------------------------------------
# 4. NUL bytes decoded from a query
# --------------------------------------------------------------------------

class NulInQuery(FrontDoorCase):

    def test_nul_in_query_is_400_and_starts_nothing(self):
        srv = self.start_server("--workers", "1")
        c = self.raw(srv)
        r = c.request("GET", "/jobs?status=queued%00junk")
        self.assertClientError(r, 400, "invalid_param", "status", what="status=queued%00junk: ")
        r = c.request("GET", "/jobs?limit=5%00")
        self.assertClientError(r, 400, "invalid_param", "limit", what="limit=5%00: ")
        r = c.request("GET", "/jobs?limit=%005")
        self.assertClientError(r, 400, "invalid_param", "limit", what="limit=%005: ")
        r = c.request("GET", "/jobs?status%00=queued")
        self.assertNotEqual(r.status, 500, repr(r))
        self.assertEqual(r.status, 400, "status%%00=queued: %r" % r)
        self.assertUtf8Json(r)
        self.assertError(r, 400, ("unknown_param", "invalid_param"))
        for path in ("/tasks/reports/start?heavyIterations%00junk=1",
                     "/tasks/reports/start?heavyIterations=5%00",
                     "/tasks/reports/start?heavyIterations=5%00junk",
                     "/fibonacci/5?x%00=1"):
            with self.subTest(path=path):
                r = c.request("GET", path)
                self.assertNotEqual(r.status, 500, repr(r))
                self.assertEqual(r.status, 400, "GET %s: %r" % (path, r))
                self.assertUtf8Json(r)
                self.assertError(r, 400, ("unknown_param", "invalid_param"))
        r = c.request("GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=1%00")
        self.assertClientError(r, 400, "invalid_param", "wait")
        r = c.request("GET", "/jobs")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()["jobs"], [], "a request with a NUL in its query started a job")
        self.assertEqual(c.request("GET", "/health").json()["queue"]["depth"], 0)

    def test_nul_in_json_strings(self):
        srv = self.start_server("--workers", "1")
        c = self.raw(srv)
        for body in (b'{"task":"spin\\u0000x","params":{"ms":1}}',
                     b'{"task":"spin","params":{"ms":1},"a\\u0000b":1}',
                     b'{"task":"spin","params":{"ms\\u0000":1}}'):
            with self.subTest(body=body):
                r = c.request("POST", "/jobs", body, {"Content-Type": "application/json"})
                self.assertNotEqual(r.status, 500, repr(r))
                self.assertEqual(r.status, 400, "body %r: %r" % (body, r))
                self.assertUtf8Json(r)
                self.assertError(r, 400, ("invalid_json", "unknown_task", "unknown_param", "missing_param"))
        self.assertEqual(c.request("GET", "/jobs").json()["jobs"], [])


# --------------------------------------------------------------------------
# 5. A header name with a space
# --------------------------------------------------------------------------

class HeaderNameWithSpace(FrontDoorCase, SharedServerTestCase):

    SERVER_ARGS = ["--workers", "1"]

    def test_no_request_smuggled_after_a_bad_header_name(self):
        inner = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for head in (b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent Length: 5\r\n\r\n",
                     b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n",
                     b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer Encoding: chunked\r\n\r\n",
                     b"GET /health HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n"):
            with self.subTest(head=head):
                c = self.raw(self.srv)
                c.send(head + inner)
                r = c.read_response(timeout=10)
                self.assertClientError(r, 400, "bad_request", what="%r: " % head)
                self.assertTrue(c.wait_closed(5), "connection still open after 400 bad_request")
                self.assertEqual(c.buf, b"", "a second reply was served after the 400: %r" % c.buf[:200])
        self.assertEqual(self.srv.get("/health").status, 200)


# --------------------------------------------------------------------------
# 7. Behaviour that must not change: HEAD
# --------------------------------------------------------------------------

class HeadRequests(FrontDoorCase):

    def test_head_answers_like_get_without_body(self):
        srv = self.start_server("--workers", "1")
        j = self.submit(srv, "spin", {"ms": 1})
        self.wait_status(srv, j["id"], "complete", 20)
        c = self.raw(srv)
        # stable bodies: Content-Length equal to the GET body's length
        for path in ("/tasks", "/jobs/%s" % j["id"], "/tasks/reports/%s" % j["id"], "/jobs?limit=5",
                     "/jobs/%s?wait=1" % j["id"]):
            with self.subTest(path=path):
                g = c.request("GET", path)
                self.assertEqual(g.status, 200, repr(g))
                c.send(build_request("HEAD", path) + build_request("GET", "/health"))
                h = c.read_response(timeout=10, head_request=True)
                nxt = c.read_response(timeout=10)
                self.assertEqual(h.status, 200, repr(h))
                self.assertEqual(h.header("Content-Type"), g.header("Content-Type"))
                self.assertEqual(h.header("Content-Length"), str(len(g.body)),
                                 "HEAD %s: Content-Length is not the GET body's length" % path)
                self.assertEqual(nxt.status, 200, "HEAD %s sent a body: the next reply is %r" % (path, nxt))
                self.assertEqual(nxt.json()["status"], "ok")
        # changing bodies: Content-Length present and numeric, still no body
        for path in ("/health", "/metrics", "/nope", "/jobs/AAAAAAAAAAAAAAAAAAAAAA"):
            with self.subTest(path=path):
                c.send(build_request("HEAD", path) + build_request("GET", "/tasks"))
                h = c.read_response(timeout=10, head_request=True)
                nxt = c.read_response(timeout=10)
                self.assertIn(h.status, (200, 404), repr(h))
                self.assertRegex(h.header("Content-Length") or "", r"^[0-9]+$")
                self.assertEqual(nxt.status, 200, "HEAD %s sent a body: the next reply is %r" % (path, nxt))
                self.assertIn("tasks", nxt.json())
        self.assertFalse(c.wait_closed(0.2))
        self.assertEqual(c.buf, b"")

    def test_head_on_routes_that_start_work_is_405(self):
        srv = self.start_server("--workers", "1")
        c = self.raw(srv)
        for path in ("/tasks/reports/start?heavyIterations=5", "/fibonacci/5"):
            with self.subTest(path=path):
                c.send(build_request("HEAD", path) + build_request("GET", "/health"))
                h = c.read_response(timeout=10, head_request=True)
                nxt = c.read_response(timeout=10)
                self.assertEqual(h.status, 405, repr(h))
                self.assertEqual((h.header("Allow") or "").replace(" ", ""), "GET")
                self.assertEqual(nxt.status, 200, "HEAD %s sent a body: the next reply is %r" % (path, nxt))
        self.assertEqual(c.request("GET", "/jobs").json()["jobs"], [], "HEAD started a job")


if __name__ == "__main__":
    main()
