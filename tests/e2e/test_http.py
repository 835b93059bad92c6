"""Connection handling: keep-alive, pipelining, HTTP/1.0, limits, timeouts,
malformed input and a small fuzz run."""
import json
import os
import random
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


class KeepAliveAndPipelining(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_keep_alive(self):
        c = self.raw(self.srv)
        for path in ("/health", "/tasks", "/nope", "/health", "/jobs?limit=1"):
            r = c.request("GET", path)
            self.assertIn(r.status, (200, 404))
            self.assertEqual(r.version, "HTTP/1.1")
            self.assertJsonType(r)
            self.assertNotEqual((r.header("Connection") or "").lower(), "close")
        r = c.request("POST", "/jobs", {"task": "spin", "params": {"ms": 1}})
        self.assertEqual(r.status, 202)
        r = c.request("GET", "/fibonacci/10")
        self.assertEqual(r.json(), {"n": 10, "result": 55})
        self.assertEqual(c.request("GET", "/health").status, 200)
        self.assertFalse(c.wait_closed(0.3), "server closed a keep-alive connection")

    def test_errors_keep_connection(self):
        # an application-level error (404, 400 on a parameter) does not close the connection
        c = self.raw(self.srv)
        self.assertEqual(c.request("GET", "/nope").status, 404)
        self.assertEqual(c.request("GET", "/fibonacci/93").status, 400)
        self.assertEqual(c.request("POST", "/jobs", "{", {"Content-Type": "application/json"}).status, 400)
        self.assertEqual(c.request("GET", "/health").status, 200)

    def test_pipelining(self):
        c = self.raw(self.srv)
        c.send(build_request("GET", "/health") + build_request("GET", "/fibonacci/20")
               + build_request("GET", "/tasks"))
        r1 = c.read_response(timeout=20)
        r2 = c.read_response(timeout=20)
        r3 = c.read_response(timeout=20)
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.json()["status"], "ok")
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.json(), {"n": 20, "result": 6765})
        self.assertEqual(r3.status, 200)
        self.assertIn("tasks", r3.json())
        # still usable
        self.assertEqual(c.request("GET", "/health").status, 200)

    def test_pipelining_slow_first(self):
        # the slow async answer comes first: later responses must wait for it
        c = self.raw(self.srv)
        c.send(build_request("GET", "/fibonacci/27") + build_request("GET", "/health")
               + build_request("GET", "/fibonacci/3") + build_request("GET", "/nope"))
        rs = [c.read_response(timeout=30) for _ in range(4)]
        self.assertEqual(rs[0].json(), {"n": 27, "result": fib(27)})
        self.assertEqual(rs[1].json()["status"], "ok")
        self.assertEqual(rs[2].json(), {"n": 3, "result": 2})
        self.assertEqual(rs[3].status, 404)

    def test_pipelined_post_bodies(self):
        c = self.raw(self.srv)
        c.send(build_request("POST", "/jobs", {"task": "spin", "params": {"ms": 1}})
               + build_request("POST", "/jobs", {"task": "primes", "params": {"max": 100}})
               + build_request("GET", "/health"))
        a, b, h = (c.read_response(timeout=20) for _ in range(3))
        self.assertEqual((a.status, b.status, h.status), (202, 202, 200))
        self.assertEqual(a.json()["task"], "spin")
        self.assertEqual(b.json()["task"], "primes")

    def test_chunked_post(self):
        c = self.raw(self.srv)
        body = b'{"task":"spin","params":{"ms":1}}'
        c.send(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n" % (10, body[:10]) + b"%x\r\n%s\r\n" % (len(body) - 10, body[10:])
               + b"0\r\n\r\n")
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 202, repr(r))
        self.checkJob(r.json(), task="spin", params={"ms": 1})
        self.assertEqual(c.request("GET", "/health").status, 200)

    def test_http10(self):
        c = self.raw(self.srv)
        c.send(b"GET /health HTTP/1.0\r\n\r\n")
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ok")
        self.assertTrue(c.wait_closed(5), "HTTP/1.0 without keep-alive must be closed after the response")

    def test_http10_keep_alive(self):
        c = self.raw(self.srv)
        c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(r.header("Content-Length"), "a kept-alive HTTP/1.0 response needs Content-Length")
        c.send(b"GET /tasks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200)
        self.assertIn("tasks", r.json())

    def test_connection_close(self):
        c = self.raw(self.srv)
        r = c.request("GET", "/health", headers={"Connection": "close"})
        self.assertEqual(r.status, 200)
        self.assertTrue(c.wait_closed(5), "Connection: close not honored")

    def test_big_but_allowed_headers(self):
        c = self.raw(self.srv)
        r = c.request("GET", "/health", headers={"X-Pad": "a" * 8000, "X-Pad2": "b" * 4000})
        self.assertEqual(r.status, 200)

    def test_header_too_large(self):
        c = self.raw(self.srv)
        c.send(build_request("GET", "/health", headers={"X-Big": "a" * 17000}))
        r = c.read_response(timeout=10)
        self.assertError(r, 431, "header_too_large")
        c = self.raw(self.srv)
        c.send(build_request("GET", "/health", headers={"X-H%d" % i: "v" * 100 for i in range(200)}))
        self.assertError(c.read_response(timeout=10), 431, "header_too_large")
        # and a never-ending header block is cut off too, not buffered forever
        c = self.raw(self.srv)
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(40):
                c.send(b"X-Flood-%d: %s\r\n" % (i, b"z" * 1000))
        except OSError:
            pass
        r = c.read_response(timeout=10)
        self.assertError(r, 431, "header_too_large")
        self.assertEqual(self.srv.get("/health").status, 200)

    def test_garbage(self):
        for junk in (b"GARBAGE\r\n\r\n",
                     bytes(range(256)) + b"\r\n\r\n",
                     b"A" * 2000 + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"GET /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                     b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                     b"POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
                     b"GET /health HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
                     b"\r\n\r\n\r\n\r\n GET"):
            with self.subTest(junk=junk[:40]):
                c = self.raw(self.srv)
                c.send(junk)
                r = c.read_response(timeout=10)
                self.assertError(r, 400, "bad_request")
                self.assertTrue(c.wait_closed(5), "connection not closed after bad_request")
        self.assertEqual(self.srv.get("/health").status, 200)

    def test_bad_request_after_good_one(self):
        c = self.raw(self.srv)
        c.send(build_request("GET", "/health") + b"NOT HTTP AT ALL\r\n\r\n")
        self.assertEqual(c.read_response(timeout=10).status, 200)
        self.assertError(c.read_response(timeout=10), 400, "bad_request")
        self.assertTrue(c.wait_closed(5))


class Timeouts(OffloadTestCase):

    def test_request_timeout_partial_head(self):
        srv = self.start_server("--request-timeout-ms", "500")
        c = self.raw(srv)
        c.send(b"GET /heal")
        t0 = time.monotonic()
        # contract: closed 500 ms after the first byte; 5 s allows for ASan and load
        self.assertTrue(c.wait_closed(5), "partial request head not timed out")
        dt = time.monotonic() - t0
        self.assertGreater(dt, 0.3, "closed too early (%.2fs)" % dt)
        self.assertEqual(srv.get("/health").status, 200)

    def test_request_timeout_second_request(self):
        # the head deadline also applies to a later request on a kept-alive connection
        srv = self.start_server("--request-timeout-ms", "500", "--keepalive-timeout-s", "30")
        c = self.raw(srv)
        self.assertEqual(c.request("GET", "/health").status, 200)
        c.send(b"GET /health HTTP/1.1\r\nHost:")
        # 500 ms deadline; 5 s bound for ASan and load
        self.assertTrue(c.wait_closed(5), "partial second head not timed out")

    def test_request_timeout_silent_connection(self):
        srv = self.start_server("--request-timeout-ms", "500")
        c = self.raw(srv)
        self.assertTrue(c.wait_closed(5), "silent connection not closed")

    def test_request_timeout_slowloris(self):
        # bytes trickling in do not extend the deadline
        srv = self.start_server("--request-timeout-ms", "500")
        c = self.raw(srv)
        t0 = time.monotonic()
        closed = False
        for ch in b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                c.send(bytes([ch]))
            except OSError:
                closed = True
                break
            if c.wait_closed(0.1):
                closed = True
                break
            if time.monotonic() - t0 > 6:
                break
        self.assertTrue(closed or c.wait_closed(2), "slow head not closed")
        self.assertLess(time.monotonic() - t0, 8)

    def test_request_timeout_not_applied_to_waiting_request(self):
        # a complete head being answered slowly (?wait) is not cut by the head timeout
        srv = self.start_server("--request-timeout-ms", "500", "--workers", "1")
        j = self.submit(srv, "spin", {"ms": 600000})
        r = srv.get("/jobs/%s?wait=2" % j["id"], timeout=20)
        self.assertEqual(r.status, 200)

    def test_keepalive_idle_timeout(self):
        srv = self.start_server("--keepalive-timeout-s", "1")
        c = self.raw(srv)
        self.assertEqual(c.request("GET", "/health").status, 200)
        t0 = time.monotonic()
        self.assertFalse(c.wait_closed(0.4), "closed before the keep-alive timeout")
        self.assertEqual(c.request("GET", "/health").status, 200)
        t0 = time.monotonic()
        # 1 s idle timeout; 6 s bound for a slow run
        self.assertTrue(c.wait_closed(6), "idle keep-alive connection not closed")
        self.assertGreater(time.monotonic() - t0, 0.7)


class ConnectionLimit(OffloadTestCase):

    def test_max_connections(self):
        srv = self.start_server("--max-connections", "2")
        a = self.raw(srv)
        b = self.raw(srv)
        self.assertEqual(a.request("GET", "/health").status, 200)
        self.assertEqual(b.request("GET", "/health").status, 200)
        c = self.raw(srv)
        try:
            c.send(build_request("GET", "/health"))
        except OSError:
            pass
        # "closed at once"; 3 s bound for a slow run
        self.assertTrue(c.wait_closed(3), "third connection not closed")
        self.assertNotIn(b"HTTP/1.1 200", c.buf)
        # the first two still work
        self.assertEqual(a.request("GET", "/health").status, 200)
        a.close()

        def fresh_ok():
            try:
                return request(srv.port, "GET", "/health", timeout=2).status == 200
            except OSError:
                return False
        self.wait_until(fresh_ok, 5, interval=0.1, what="a slot frees up after a close")
        self.assertEqual(b.request("GET", "/health").status, 200)


class Fuzz(OffloadTestCase):

    BASES = [
        build_request("GET", "/health"),
        build_request("GET", "/tasks"),
        build_request("GET", "/jobs?status=complete&limit=5"),
        build_request("GET", "/fibonacci/10"),
        build_request("GET", "/tasks/reports/start?heavyIterations=1000"),
        build_request("DELETE", "/jobs/AAAAAAAAAAAAAAAAAAAA"),
        build_request("POST", "/jobs", {"task": "spin", "params": {"ms": 5}}),
        build_request("POST", "/jobs", {"task": "primes", "params": {"max": 1000}, "timeoutMs": 1000}),
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b"5\r\n{\"tas\r\n1c\r\nk\":\"spin\",\"params\":{\"ms\":1}}\r\n0\r\n\r\n",
        b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ]
    TOKENS = [b"\r\n", b"\r\n\r\n", b"\x00", b"\xff", b" ", b":", b"%", b"%00", b"?", b"&", b"=",
              b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: chunked\r\n",
              b"Content-Length: 5\r\n", b"{", b"}", b"\"", b"\\u0000", b"HTTP/1.1", b"/jobs/", b"\t",
              b"\n", b"-1", b"999999999999999999999", b"Expect: 100-continue\r\n"]

    # Client text that is not valid UTF-8, NUL bytes, and long runs that end in
    # a multi-byte character (so that a truncated echo would split it).
    TEXT_BASES = [
        build_request("POST", "/jobs", ('{"task":"spin","params":{"ms":1},"%s":1}' % ("k" * 63 + "\u00e9")).encode(),
                      {"Content-Type": "application/json"}),
        build_request("POST", "/jobs", ('{"task":"%s","params":{}}' % ("x" * 63 + "\u20ac")).encode(),
                      {"Content-Type": "application/json"}),
        build_request("POST", "/jobs", ('{"task":"spin","params":{"ms":1,"%s":2}}' % ("p" * 62 + "\u20ac")).encode(),
                      {"Content-Type": "application/json"}),
        build_request("GET", "/jobs?status=" + "q" * 62 + "%E2%82%AC&limit=5"),
        build_request("GET", "/jobs?" + "n" * 63 + "%C3%A9=1"),
        build_request("GET", (("/fibonacci/" + "1" * 40).encode() + "\u20ac".encode()).decode("latin-1")),
        build_request("GET", "/tasks/reports/start?heavyIterations=5"),
        build_request("GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=1"),
    ]
    BAD_BYTES = [b"\x00", b"\xff", b"\xfe\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf",
                 b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc3\xa9", b"\xe2\x82\xac"]
    BAD_ESCAPES = [b"%00", b"%FF", b"%FE%FF", b"%80", b"%C3", b"%E2%82", b"%F0%9F%98", b"%C0%AF", b"%ED%A0%80",
                   b"%C3%A9", b"%E2%82%AC"]
    JSON_BAD = [b"\\u0000", b"\\udcff", b"\\ud800", b"\\u00e9"]
    MULTI = ["\u00e9".encode(), "\u20ac".encode(), "\U0001F600".encode()]

    def bad_text(self, rnd, region):
        kind = rnd.randrange(4)
        if kind == 0:
            return rnd.choice(self.BAD_BYTES)
        if kind == 1:
            return rnd.choice(self.JSON_BAD if region == "body" else self.BAD_ESCAPES)
        run = b"z" * rnd.choice((0, 1, 30, 31, 62, 63, 64, 126, 127, 254, 255))
        tail = rnd.choice(self.MULTI) if kind == 2 else rnd.choice(self.BAD_BYTES)
        if region in ("line", "query") and rnd.random() < 0.5:
            tail = b"".join(b"%%%02X" % b for b in tail)
        return run + tail

    def mutate_text(self, rnd, data):
        """Insert invalid UTF-8, NUL bytes or a long run ending in a multi-byte
        character into the request line, the query, a header value or a JSON
        string of an otherwise well-formed request (Content-Length kept right)."""
        head, _, body = data.partition(b"\r\n\r\n")
        for _ in range(rnd.randint(1, 2)):
            lines = head.split(b"\r\n")
            region = rnd.choice(("line", "query", "header", "body"))
            if region == "body" and b'"' in body and re.search(rb"(?im)^content-length:", head):
                quotes = [i + 1 for i, ch in enumerate(body) if ch == 0x22]
                pos = rnd.choice(quotes)
                body = body[:pos] + self.bad_text(rnd, "body") + body[pos:]
                head = re.sub(rb"(?im)^(content-length:[ \t]*)\d+",
                              lambda m: m.group(1) + str(len(body)).encode(), head)
                continue
            if region == "header" and len(lines) > 1:
                i = rnd.randrange(1, len(lines))
                colon = lines[i].find(b":")
                if colon >= 0 and not lines[i].lower().startswith((b"content-length", b"transfer-encoding")):
                    pos = rnd.randint(colon + 1, len(lines[i]))
                    lines[i] = lines[i][:pos] + self.bad_text(rnd, "header") + lines[i][pos:]
                    head = b"\r\n".join(lines)
                    continue
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                continue
            target = parts[1]
            q = target.find(b"?")
            if region == "query" or (region != "line" and q >= 0):
                if q < 0:
                    target += b"?" + self.bad_text(rnd, "query") + b"=1"
                else:
                    pos = rnd.randint(q + 1, len(target))
                    target = target[:pos] + self.bad_text(rnd, "query") + target[pos:]
            else:
                end = q if q >= 0 else len(target)
                pos = rnd.randint(min(1, end), end)
                target = target[:pos] + self.bad_text(rnd, "line") + target[pos:]
            lines[0] = b" ".join((parts[0], target, parts[2]))
            head = b"\r\n".join(lines)
        return head + b"\r\n\r\n" + body

    def check_replies(self, data, got):
        """Problems in what the server sent back for one case: any 500, any
        application/json body that is not strict UTF-8 JSON, any bytes that
        are not an HTTP reply. Incomplete trailing replies are not judged."""
        problems = []
        off = 0
        head_req = b"HEAD" in data  # a HEAD reply has no body: stop after its head
        while True:
            end = got.find(b"\r\n\r\n", off)
            if end < 0:
                if not got[off:].startswith(b"HTTP/1.1 "[:len(got) - off]):
                    problems.append("not an HTTP reply: %r" % got[off:off + 80])
                break
            lines = got[off:end].split(b"\r\n")
            m = re.match(rb"^HTTP/1\.1 (\d{3})", lines[0])
            if not m:
                problems.append("not an HTTP reply: %r" % got[off:off + 80])
                break
            status = int(m.group(1))
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                hdrs[k.strip().lower()] = v.strip()
            if status == 500:
                problems.append("500 reply: %r" % got[off:off + 300])
            off = end + 4
            if 100 <= status < 200:
                continue
            cl = hdrs.get(b"content-length")
            if head_req or cl is None or not cl.isdigit() or len(got) < off + int(cl):
                break
            body = got[off:off + int(cl)]
            off += int(cl)
            if hdrs.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json":
                try:
                    obj = json.loads(body.decode("utf-8"))
                    json.dumps(obj, ensure_ascii=False).encode("utf-8")  # no lone surrogates
                except (UnicodeError, ValueError) as e:
                    problems.append("%d reply body is not UTF-8 JSON (%s): %r" % (status, e, body[:300]))
        return problems

    def mutate(self, rnd, data):
        data = bytearray(data)
        for _ in range(rnd.randint(1, 6)):
            op = rnd.randrange(6)
            pos = rnd.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rnd.randrange(256)
            elif op == 1:
                data[pos:pos] = rnd.choice(self.TOKENS)
            elif op == 2 and data:
                del data[pos:pos + rnd.randint(1, 8)]
            elif op == 3:
                data = data[:pos]
            elif op == 4:
                data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 20)))
            else:
                data[pos:pos] = data[rnd.randrange(len(data) + 1):][:30]
        return bytes(data)

    def test_fuzz(self):
        srv = self.start_server("--request-timeout-ms", "1000", "--workers", "2", "--max-body", "4096")
        seed = int(os.environ.get("OFFLOAD_FUZZ_SEED", "0")) or random.randrange(1, 1 << 30)
        print("fuzz seed %d (set OFFLOAD_FUZZ_SEED to replay)" % seed, file=sys.stderr)
        rnd = random.Random(seed)
        cases = []
        for i in range(400):
            if i % 10 == 0:
                cases.append(bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300))))
            else:
                cases.append(self.mutate(rnd, rnd.choice(self.BASES)))
        # Text cases from their own generator, so a seed replays the cases above unchanged.
        trnd = random.Random(seed ^ 0x5A5A5A)
        n_plain = len(cases)
        for i in range(160):
            base = trnd.choice(self.TEXT_BASES + self.BASES)
            data = self.mutate_text(trnd, base)
            if i % 4 == 3:
                data = self.mutate(trnd, data)
            cases.append(data)
        errors = []
        bad_replies = []
        lock = threading.Lock()

        def worker(chunk):
            wr = random.Random(rnd.random())
            for data, text_case in chunk:
                if not srv.alive():
                    return
                try:
                    s = socket.create_connection((HOST, srv.port), timeout=3)
                except OSError as e:
                    with lock:
                        errors.append("connect failed: %r" % e)
                    continue
                got = b""
                try:
                    s.settimeout(0.5)
                    s.sendall(data)
                    # (text cases are mostly complete requests: a half-close
                    # ends them as soon as they are answered)
                    if wr.random() < (0.9 if text_case else 0.5):
                        s.shutdown(socket.SHUT_WR)
                    deadline = time.monotonic() + 1.5
                    while time.monotonic() < deadline:
                        try:
                            d = s.recv(65536)
                            if not d:
                                break
                            got += d
                        except socket.timeout:
                            break
                except OSError:
                    pass
                finally:
                    s.close()
                problems = self.check_replies(data, got)
                if problems:
                    with lock:
                        bad_replies.append("sent %r\n    %s" % (data[:300], "\n    ".join(problems)))
        n_threads = 10
        tagged = [(data, i >= n_plain) for i, data in enumerate(cases)]
        threads = [threading.Thread(target=worker, args=(tagged[i::n_threads],)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertTrue(srv.alive(), "server died during fuzzing (seed %d); stderr:\n%s" % (seed, srv.stderr()))
        self.assertEqual(errors, [], "seed %d" % seed)
        r = srv.get("/health", timeout=10)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ok")
        c = self.raw(srv)
        self.assertEqual(c.request("GET", "/fibonacci/12").json(), {"n": 12, "result": 144})
        if bad_replies:
            self.fail("seed %d: %d of %d cases got a 500 or a JSON body that is not UTF-8:\n%s"
                      % (seed, len(bad_replies), len(cases), "\n".join(bad_replies[:15])))


if __name__ == "__main__":
    main()
