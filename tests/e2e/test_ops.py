"""Operator basics and authentication (issue 11, parts 4 and 5).

- The access log: one line per request (time, remote address, method, path
  without the query string, status, bytes sent, duration in us), on by
  default to stderr, --access-log PATH|off, --log-format text|json (the
  server's own lines too); a reader that never reads costs dropped lines,
  counted in /metrics, never a stalled server.
- OFFLOAD_<FLAG> environment variables (a flag beats its variable; a bad
  value names the variable), --version, --host with a name or an IPv6
  address (a bad one says what it tried), one-line errors for an unknown
  command or flag.
- --auth-token-file: 401 unauthorized + WWW-Authenticate: Bearer without a
  token or with a wrong one, /health open, /metrics per --metrics-public, a
  short token stops the start naming its line, the token never printed.
"""
import calendar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

TOKEN_A = "tok-A-" + "q7Xw9Lr2Zp4Ks8Vn3Bm6Hd1Jf5Gt0Yc"  # 38 characters
TOKEN_B = "tok-B-" + "M4nR8sT2vW6yZ0aC3eG7iK1oQ5uX9bD"
TEXT_LINE_RE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\S+) (\d{3}) (\d+) (\d+)us$")
JSON_KEYS = {"time", "remote", "method", "path", "status", "bytes", "duration_us"}


def bin_path():
    return os.environ["OFFLOAD_BIN"]


def run_cli(args, env=None, timeout=10):
    """Runs the binary to completion: (exit code, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([bin_path()] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def raw_exchange(port, data, host=HOST, timeout=10):
    """Sends `data` on a fresh connection and reads until the server
    closes: every byte it sent."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


class OpsCase(OffloadTestCase):

    def token_file(self, *lines, mode=0o600):
        d = tempfile.mkdtemp(prefix="offload-tokens-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, True))
        path = os.path.join(d, "tokens")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, mode)
        return path

    def access_lines(self, srv, n, timeout=10):
        """The first n access-log lines (text format) on srv's stderr."""
        def found():
            got = [m for m in (TEXT_LINE_RE.match(l) for l in list(srv.err_lines)) if m]
            return got if len(got) >= n else None
        return self.wait_until(found, timeout, what="%d access-log lines" % n)


# --------------------------------------------------------------------------
# The access log
# --------------------------------------------------------------------------

class AccessLog(OpsCase):

    def test_one_text_line_per_request_with_every_field(self):
        srv = self.start_server("--workers", "1", "--store", "memory", access_log_off=False)  # the default: on, stderr
        t0 = time.time()
        sent = []
        # Exact bytes: each on its own connection, read to the close.
        reqs = [
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /jobs?limit=1&status=queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /no/such/path?secret=hunter2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"DELETE /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ]
        for r in reqs:
            sent.append(raw_exchange(srv.port, r))
        lines = self.access_lines(srv, len(reqs))
        self.assertEqual(len(lines), len(reqs), "one line per request: %r" % [m.group(0) for m in lines])
        want = [("GET", "/health", 200), ("GET", "/jobs", 200), ("GET", "/no/such/path", 404),
                ("HEAD", "/health", 200), ("DELETE", "/jobs", 405)]
        for m, (method, path, status), reply in zip(lines, want, sent):
            when, remote, got_method, got_path, got_status, nbytes, us = m.groups()
            self.assertEqual((got_method, got_path, int(got_status)), (method, path, status), m.group(0))
            self.assertEqual(remote, "127.0.0.1", m.group(0))
            self.assertEqual(int(nbytes), len(reply), "bytes sent: %s vs %d received" % (m.group(0), len(reply)))
            self.assertTrue(reply.startswith(b"HTTP/1.1 %d " % status), reply[:40])
            ts = calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S"))
            self.assertLess(abs(ts - t0), 120, "time %s is not now (UTC)" % when)
            self.assertGreaterEqual(int(us), 0)
        # The query string never reaches the log.
        log = "\n".join(srv.err_lines)
        for q in ("limit=1", "status=queued", "secret", "hunter2", "?"):
            self.assertNotIn(q, "\n".join(m.group(0) for m in lines), "query text %r logged" % q)
        self.assertNotIn("hunter2", log)

    def test_duration_and_a_held_reply(self):
        srv = self.start_server("--workers", "1", "--store", "memory", access_log_off=False)
        j = self.submit(srv, "spin", {"ms": 60000})
        self.wait_status(srv, j["id"], "processing", 10)
        t0 = time.monotonic()
        r = srv.get("/jobs/%s?wait=1" % j["id"])
        held = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        def held_line():
            ms = [m for m in (TEXT_LINE_RE.match(l) for l in list(srv.err_lines)) if m]
            return [m for m in ms if m.group(3) == "GET" and m.group(4) == "/jobs/%s" % j["id"]
                    and int(m.group(7)) >= 900000]
        waits = self.wait_until(held_line, 10, what="the held request's line")
        self.assertEqual(len(waits), 1, [m.group(0) for m in waits])
        us = int(waits[0].group(7))
        self.assertLessEqual(us, held * 1e6 + 100000, "longer than the client saw")
        self.assertEqual(srv.req("DELETE", "/jobs/%s" % j["id"]).status, 202)

    def test_json_format_and_the_servers_own_lines(self):
        srv = self.start_server("--workers", "1", "--store", "memory", "--log-format", "json",
                                access_log_off=False)
        self.assertEqual(srv.get("/health").status, 200)
        self.assertEqual(srv.get("/jobs?limit=2").status, 200)
        self.assertEqual(srv.req("POST", "/jobs", {"task": "nope", "params": {}}).status, 400)

        def parsed():
            out = []
            for l in list(srv.err_lines):
                try:
                    o = json.loads(l)
                except ValueError:
                    continue
                if "status" in o:
                    out.append(o)
            return out if len(out) >= 3 else None
        objs = self.wait_until(parsed, 10, what="3 JSON access-log lines")
        for o in objs:
            self.assertEqual(set(o), JSON_KEYS, o)
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(o["remote"], "127.0.0.1")
            for k in ("status", "bytes", "duration_us"):
                self.assertIsInstance(o[k], int, o)
        self.assertEqual([(o["method"], o["path"], o["status"]) for o in objs[:3]],
                         [("GET", "/health", 200), ("GET", "/jobs", 200), ("POST", "/jobs", 400)])
        # The server's own lines (the drain at SIGTERM) are JSON objects too.
        srv.stop()
        own = [json.loads(l) for l in srv.err_lines if l.strip()]
        levels = [o for o in own if "level" in o]
        self.assertTrue(levels, "no server log line seen: %r" % srv.err_lines[-5:])
        for o in levels:
            self.assertEqual(set(o), {"time", "level", "msg"}, o)

    def test_to_a_file_and_off(self):
        d = tempfile.mkdtemp(prefix="offload-alog-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, True))
        path = os.path.join(d, "access.log")
        srv = self.start_server("--store", "memory", "--access-log", path)
        for _ in range(3):
            self.assertEqual(srv.get("/health").status, 200)
        def lines():
            try:
                with open(path) as f:
                    ls = [l for l in f.read().splitlines() if l]
            except FileNotFoundError:
                return None
            return ls if len(ls) >= 3 else None
        ls = self.wait_until(lines, 10, what="3 lines in the file")
        self.assertEqual(len(ls), 3)
        for l in ls:
            self.assertRegex(l, TEXT_LINE_RE)
        self.assertFalse([l for l in srv.err_lines if TEXT_LINE_RE.match(l)], "the file's lines went to stderr too")
        # off: nothing.
        off = self.start_server("--store", "memory", "--access-log", "off")
        self.assertEqual(off.get("/health").status, 200)
        off.stop()
        self.assertFalse([l for l in off.err_lines if TEXT_LINE_RE.match(l)], off.err_lines)
        # A file that cannot be opened stops the start.
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--access-log", os.path.join(d, "no", "x.log")])
        self.assertNotEqual(rc, 0)
        self.assertIn("--access-log", err)
        self.assertNotIn("listening", out)

    def test_a_reader_that_never_reads_costs_dropped_lines_not_a_stall(self):
        # stderr is a pipe nobody reads: the writer thread blocks, lines past
        # the 1 MiB queue are dropped and counted, and the loop goes on.
        # --log-level error: the server's own info lines are written on the
        # loop (util/log.c) and would block on this pipe.
        port = free_port()
        p = subprocess.Popen([bin_path(), "serve", "--host", HOST, "--port", str(port), "--store", "memory",
                              "--log-level", "error", "--drain-timeout-s", "1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(10)))
        self.wait_until(lambda: self._up(port), 10, what="the server listening")
        c = RawConn(port, timeout=10)
        self.addCleanup(c.close)
        long_path = "/" + "a" * 12000  # a line of ~12 KB
        t0 = time.monotonic()
        for _ in range(400):  # ~4.8 MB of lines: more than the pipe and the queue hold
            r = c.request("GET", long_path)
            self.assertEqual(r.status, 404)
        self.assertLess(time.monotonic() - t0, 60)
        m = c.request("GET", "/metrics")
        self.assertEqual(m.status, 200)
        text = m.body.decode()
        dropped = int(re.search(r"^offload_access_log_dropped_total (\d+)$", text, re.M).group(1))
        written = int(re.search(r"^offload_access_log_lines_total (\d+)$", text, re.M).group(1))
        self.assertGreater(dropped, 0, "nothing dropped with a stuck reader?")
        self.assertLess(written, 400)
        # /health answers at once.
        t1 = time.monotonic()
        self.assertEqual(c.request("GET", "/health").status, 200)
        self.assertLess(time.monotonic() - t1, 1.0)
        # SIGTERM: the exit does not wait for the reader (at most the 2 s flush).
        t2 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("the server did not exit with its stderr pipe full")
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t2, 10)
        # What was written is whole lines, but for the last: a line longer
        # than PIPE_BUF goes in pieces, and the exit may cut it.
        err = p.stderr.read().decode("utf-8", "replace")
        self.assertTrue(err)
        for l in err.split("\n")[:-1]:
            self.assertRegex(l, TEXT_LINE_RE)

    @staticmethod
    def _up(port):
        try:
            return request(port, "GET", "/health", timeout=1).status == 200
        except OSError:
            return False


# --------------------------------------------------------------------------
# The command line: environment, --version, --host, one-line errors
# --------------------------------------------------------------------------

class CommandLine(OpsCase):

    def test_offload_port_is_honoured_and_beaten_by_port(self):
        port = free_port()
        srv = self.start_server("--store", "memory", host=None, env={"OFFLOAD_PORT": str(port)})
        self.assertNotEqual(srv.port, port, "the harness's --port 0 must beat OFFLOAD_PORT")
        self.assertEqual(srv.get("/health").status, 200)
        # Without --port the variable decides.
        p = subprocess.Popen([bin_path(), "serve", "--host", HOST, "--store", "memory", "--access-log", "off"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, OFFLOAD_PORT=str(port)))
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(10)))
        line = p.stdout.readline().decode()
        self.assertIn("offload listening on http://127.0.0.1:%d " % port, line)
        self.assertEqual(request(port, "GET", "/health").status, 200)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0)

    def test_bad_variable_is_named(self):
        for var, value in (("OFFLOAD_PORT", "abc"), ("OFFLOAD_WORKERS", "0"), ("OFFLOAD_STORE", "disk"),
                           ("OFFLOAD_METRICS_PUBLIC", "maybe"), ("OFFLOAD_LOG_LEVEL", "loud")):
            with self.subTest(var=var):
                # No flag for it: the flag would win, and the variable not be read.
                env = {"OFFLOAD_PORT": "0", "OFFLOAD_STORE": "memory"}
                env[var] = value
                rc, out, err = run_cli(["serve", "--access-log", "off"], env=env)
                self.assertEqual(rc, 2, err)
                self.assertIn(var, err)
                self.assertIn(value, err)
                self.assertNotIn("listening", out)
        # A flag beats its variable, which is then not even read: a bad one
        # does not matter.
        srv = self.start_server("--store", "memory", "--workers", "1", env={"OFFLOAD_PORT": "abc", "OFFLOAD_WORKERS": "0"})
        self.assertEqual(srv.get("/health").json()["workers"]["total"], 2)  # threads + the image task's processes

    def test_other_variables(self):
        tokens = self.token_file(TOKEN_A)
        srv = self.start_server("--store", "memory",
                                env={"OFFLOAD_AUTH_TOKEN_FILE": tokens, "OFFLOAD_METRICS_PUBLIC": "true",
                                     "OFFLOAD_WORKERS": "3", "OFFLOAD_LOG_FORMAT": "json"})
        self.assertIn("auth: on (1 token)", srv.stdout())
        self.assertEqual(srv.get("/metrics").status, 200)
        self.assertEqual(srv.get("/jobs").status, 401)
        h = srv.req("GET", "/health").json()
        self.assertEqual(h["workers"]["total"], 2 * 3, h)  # threads + the image task's processes
        # OFFLOAD_METRICS_PUBLIC=0 and a flag beating a variable.
        srv2 = self.start_server("--store", "memory", "--workers", "2",
                                 env={"OFFLOAD_AUTH_TOKEN_FILE": tokens, "OFFLOAD_METRICS_PUBLIC": "0",
                                      "OFFLOAD_WORKERS": "3"})
        self.assertEqual(srv2.get("/metrics").status, 401)
        self.assertEqual(srv2.get("/health").json()["workers"]["total"], 2 * 2)

    def test_version(self):
        rc, out, err = run_cli(["--version"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^offload \d+\.\d+\.\d+\n$")
        self.assertEqual(err, "")
        rc2, out2, _ = run_cli(["serve", "--version"])
        self.assertEqual((rc2, out2), (0, out))

    def test_host_localhost(self):
        srv = self.start_server("--store", "memory", host="localhost")
        self.assertIn("offload listening on http://localhost:%d " % srv.port, srv.stdout())
        self.assertEqual(request(srv.port, "GET", "/health", host="localhost").status, 200)
        self.assertRegex(srv.stderr(), r"--host localhost: listening on (127\.0\.0\.1|\[::1\]):%d" % srv.port)

    def test_host_ipv6(self):
        if not ipv6_loopback():
            self.skipTest("this machine has no IPv6 loopback (::1)")
        srv = self.start_server("--store", "memory", host="::1")
        self.assertIn("offload listening on http://[::1]:%d " % srv.port, srv.stdout())
        r = request(srv.port, "GET", "/health", host="::1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ok")
        with self.assertRaises(OSError):  # not on IPv4
            request(srv.port, "GET", "/health", host="127.0.0.1", timeout=2)

    def test_bad_host_says_what_it_tried(self):
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--host", "not an address"])
        self.assertNotEqual(rc, 0)
        self.assertIn('"not an address" is neither an IPv4 or IPv6 address nor a host name', err)
        # A valid address this machine does not have (TEST-NET-1).
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--host", "192.0.2.1"])
        self.assertNotEqual(rc, 0)
        self.assertIn("cannot listen on 192.0.2.1:0: tried 192.0.2.1 (", err)
        self.assertNotIn("listening on http", out)
        # A name that does not resolve (.invalid never does, RFC 6761).
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--host", "no-such-host.invalid"],
                               timeout=60)
        self.assertNotEqual(rc, 0)
        self.assertIn('looked up the name "no-such-host.invalid"', err)

    def test_unknown_command_or_flag_is_one_line(self):
        cases = [
            (["frobnicate"], "offload: unknown command frobnicate (see offload --help)"),
            (["--frobnicate"], "offload: unknown flag --frobnicate (see offload --help)"),
            (["serve", "--frobnicate"], "offload: unknown flag --frobnicate (see offload serve --help)"),
            (["serve", "--frobnicate=3"], "offload: unknown flag --frobnicate (see offload serve --help)"),
            (["serve", "-x"], "offload: unknown flag -x (see offload serve --help)"),
            (["serve", "--workers"], "offload: --workers needs a value (see offload serve --help)"),
            (["serve", "--inline=1"], "offload: --inline takes no value (see offload serve --help)"),
        ]
        for args, line in cases:
            with self.subTest(args=args):
                rc, out, err = run_cli(args)
                self.assertEqual(rc, 2, err)
                self.assertEqual(err, line + "\n")
                self.assertEqual(out, "")
        rc, out, err = run_cli(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("OFFLOAD_<FLAG>", out)
        for f in ("--access-log", "--log-format", "--auth-token-file", "--metrics-public", "--version"):
            self.assertIn(f, out)


# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------

class Auth(OpsCase):

    def auth_server(self, *extra, **kw):
        tokens = self.token_file("# offload tokens", "", "  " + TOKEN_A + "  ", "# the second", TOKEN_B, "")
        return self.start_server("--store", "memory", "--workers", "1", "--auth-token-file", tokens, *extra, **kw)

    def check_401(self, r):
        err = self.assertError(r, 401, "unauthorized")
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        return err

    def test_banner(self):
        srv = self.start_server("--store", "memory")
        self.assertIn("auth: off (every endpoint is open; --auth-token-file FILE to require a token)", srv.stdout())
        self.assertRegex(srv.out_lines[0], r"^offload listening on http://127\.0\.0\.1:\d+ \(")
        srv2 = self.auth_server()
        self.assertIn("auth: on (2 tokens)", srv2.stdout())
        self.assertRegex(srv2.out_lines[0], r"^offload listening on http://127\.0\.0\.1:\d+ \(")

    def test_open_without_the_flag(self):
        srv = self.start_server("--store", "memory")
        for path in ("/jobs", "/tasks", "/metrics", "/workers"):
            self.assertEqual(srv.get(path).status, 200, path)

    def test_401_without_or_with_a_wrong_token(self):
        srv = self.auth_server()
        bad = [None, "Bearer", "Bearer ", "Bearer " + TOKEN_A[:-1], "Bearer " + TOKEN_A + "x",
               "Bearer " + TOKEN_A.upper(), "Basic " + TOKEN_A, TOKEN_A, "Bearer " + TOKEN_A + " " + TOKEN_B]
        for h in bad:
            with self.subTest(header=h):
                headers = {"Authorization": h} if h is not None else {}
                for method, path, body in (("GET", "/jobs", None), ("GET", "/tasks", None),
                                           ("POST", "/jobs", {"task": "spin", "params": {"ms": 1}}),
                                           ("DELETE", "/jobs/abc", None), ("GET", "/no/such/path", None),
                                           ("POST", "/health", None), ("HEAD", "/jobs", None)):
                    r = srv.req(method, path, body, headers=headers)
                    if method == "HEAD":
                        self.assertEqual(r.status, 401)
                        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
                        self.assertEqual(r.body, b"")
                    else:
                        err = self.check_401(r)
                        if h and len(h.split()[-1]) > 20:
                            self.assertNotIn(h.split()[-1], err["message"], "the header is echoed")
        # Nothing was submitted.
        r = srv.req("GET", "/jobs", headers={"Authorization": "Bearer " + TOKEN_A})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["jobs"], [])

    def test_either_token_works(self):
        srv = self.auth_server()
        for tok in (TOKEN_A, TOKEN_B):
            for scheme in ("Bearer", "bearer", "BEARER"):
                r = srv.req("GET", "/jobs", headers={"Authorization": "%s %s" % (scheme, tok)})
                self.assertEqual(r.status, 200, r)
        r = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}},
                    headers={"Authorization": "Bearer " + TOKEN_B})
        self.assertEqual(r.status, 202, r)
        # An unknown path with a token is a 404 again.
        self.assertEqual(srv.req("GET", "/nope", headers={"Authorization": "Bearer " + TOKEN_A}).status, 404)

    def test_health_is_open(self):
        srv = self.auth_server()
        r = srv.get("/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ok")
        self.assertEqual(srv.req("HEAD", "/health").status, 200)
        self.assertEqual(srv.req("GET", "/health", headers={"Authorization": "Bearer wrong"}).status, 200)

    def test_metrics_per_flag(self):
        srv = self.auth_server()
        self.check_401(srv.get("/metrics"))
        r = srv.req("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN_A})
        self.assertEqual(r.status, 200)
        self.assertIn("offload_access_log_dropped_total 0", r.body.decode())
        self.assertIn('offload_http_requests_total{code="401"} 1', r.body.decode())
        pub = self.auth_server("--metrics-public")
        self.assertEqual(pub.get("/metrics").status, 200)
        self.check_401(pub.get("/jobs"))
        self.check_401(pub.req("POST", "/metrics"))

    def test_an_upload_is_refused_before_its_body(self):
        srv = self.auth_server()
        c = self.raw(srv)
        c.send(b"POST /jobs/stats HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
               b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=10)
        self.check_401(r)  # not 100 Continue, not 413
        self.assertTrue(c.wait_closed(10), "the connection stays open after a 401 with an unread body")
        self.assertNotIn(b"100 Continue", c.buf)
        # Without Expect, the head alone gets the 401 (the body is not awaited).
        c2 = self.raw(srv)
        c2.send(b"POST /jobs/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\nabc")
        self.check_401(c2.read_response(timeout=10))

    def test_short_token_fails_startup_naming_the_line(self):
        short = "short-but-secret-1234"
        path = self.token_file("# comment", TOKEN_A, "", short, TOKEN_B)
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--auth-token-file", path])
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:4:" % path, err)
        self.assertIn("at least 32", err)
        self.assertNotIn(short, err + out)
        self.assertNotIn(TOKEN_A, err + out)
        self.assertNotIn("listening", out)
        for lines, what in (((), "no token"), (("# only a comment", ""), "no token"),
                            (("two words " + TOKEN_A,), ":1:")):
            p = self.token_file(*lines)
            rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--auth-token-file", p])
            self.assertNotEqual(rc, 0, lines)
            self.assertIn(what, err)
        rc, out, err = run_cli(["serve", "--port", "0", "--store", "memory", "--auth-token-file", "/no/such/file"])
        self.assertNotEqual(rc, 0)
        self.assertIn("/no/such/file", err)

    def test_the_token_is_never_printed(self):
        srv = self.auth_server("--log-level", "debug", access_log_off=False)
        near = TOKEN_A[:-2] + "zz"
        for h in (TOKEN_A, TOKEN_B, near):
            for path in ("/jobs", "/metrics", "/nope", "/health"):
                r = srv.req("GET", path + "?token=" + h, headers={"Authorization": "Bearer " + h})
                self.assertNotIn(h.encode(), r.body)
        self.assertEqual(srv.req("POST", "/jobs", "{", headers={"Authorization": "Bearer " + near,
                                                                 "Content-Type": "application/json"}).status, 401)
        self.access_lines(srv, 13)
        srv.stop()
        everything = "\n".join(srv.out_lines + srv.err_lines)
        for secret in (TOKEN_A, TOKEN_B, near, TOKEN_A[6:], TOKEN_B[6:]):
            self.assertNotIn(secret, everything)


if __name__ == "__main__":
    main()
