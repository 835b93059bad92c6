"""Shared helpers for offload's end-to-end tests (Python 3 standard library only).

Every test file does:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import *

Environment:
    OFFLOAD_BIN   absolute path of the offload binary (required)

Rules kept here so the tests stay honest on a slow, noisy 2-core machine and
under AddressSanitizer (2-3x slower):
  * every socket operation has a timeout;
  * every server started by a test is stopped in cleanup by its PID
    (SIGTERM, then SIGKILL if it does not exit), even when the test failed;
  * a server that exits non-zero at teardown (e.g. an ASan report) fails the
    test, unless the test itself killed it;
  * timing bounds are generous (see the comments where they are asserted).
"""

import atexit
import ctypes
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HOST = "127.0.0.1"  # the only address these tests ever talk to

ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,}$")
STATUSES = {"queued", "processing", "complete", "failed", "canceled"}
FINAL = {"complete", "failed", "canceled"}
TASKS = {"report", "fibonacci", "primes", "spin", "password-hash", "password-verify", "pdf", "stats", "image"}
TEST_TASKS = {"crash"}  # only under --enable-test-tasks
# Plug-ins' tasks (test_plugins.py): the example's and the test plug-in's.
PLUGIN_TASKS = {"wordfreq", "plugtest.echo", "plugtest.where"}
JOB_KEYS = {"id", "task", "params", "status", "progress", "result", "error",
            "queuePosition", "createdAt", "startedAt", "finishedAt", "attempts"}
# A job submitted with "retries" > 0 also shows these.
RETRY_KEYS = {"retries", "retryAt"}
# A job of a task that writes output files shows them ([] until complete).
FILE_TASKS = {"pdf", "image"}
# Tasks that take an input body (POST /jobs/<task>).
INPUT_TASKS = {"stats", "image"}
# Tasks that run in worker processes whatever --isolation says.
PROCESS_TASKS = {"image"}
FILE_KEYS = {"files"}
REPORT_KEYS = {"jobId", "status", "progress", "result", "error",
               "queuePosition", "createdAt", "startedAt", "finishedAt"}

# How long a server may take to print its "listening" line.
START_TIMEOUT = 10.0
# How long a server may take to exit after SIGTERM at teardown. The harness
# starts servers with --drain-timeout-s 1 unless a test says otherwise, so a
# test that leaves a long job running costs ~1 s here; the rest is slack for
# ASan's exit-time leak check on a loaded machine.
STOP_TIMEOUT = 20.0
# Default timeout of one HTTP request made by the helpers.
HTTP_TIMEOUT = 15.0


def _bin():
    b = os.environ.get("OFFLOAD_BIN")
    if not b:
        raise RuntimeError("OFFLOAD_BIN is not set (absolute path of the offload binary)")
    if not os.path.isabs(b):
        b = os.path.abspath(b)
    if not os.access(b, os.X_OK):
        raise RuntimeError("OFFLOAD_BIN=%s is not an executable file" % b)
    return b


_ASAN = None


def is_asan():
    """True when the binary is built with AddressSanitizer (used only to pick
    workload sizes; bounds are generous either way)."""
    global _ASAN
    if _ASAN is None:
        try:
            with open(_bin(), "rb") as f:
                data = f.read()
            _ASAN = b"__asan_init" in data or b"AddressSanitizer" in data
        except Exception:
            _ASAN = False
    return _ASAN


# --------------------------------------------------------------------------
# HTTP responses and clients
# --------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, version, headers, body):
        self.status = status
        self.reason = reason
        self.version = version      # e.g. "HTTP/1.1"
        self.headers = headers      # list of (name, value)
        self.body = body            # bytes
        self._json = None

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except Exception as e:
                raise AssertionError("response body is not JSON (%s): %r" % (e, self.body[:500]))
        return self._json

    def __repr__(self):
        return "<Response %s %r %r>" % (self.status, self.headers, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT, host=HOST):
    """One request on a fresh connection (closed afterwards). `host` may be
    a name (every address it has is tried) or an IPv6 address."""
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, "HTTP/%d.%d" % divmod(r.version, 10),
                        r.getheaders(), data)
    finally:
        conn.close()


class RawConn:
    """A raw TCP connection to the server with a tiny HTTP/1.x response parser
    (Content-Length, chunked, or read-to-close bodies)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout=None, head_request=False):
        """Read one response. Raises ConnectionError if the peer closed before
        a full response arrived, socket.timeout on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if self.eof or not self._fill(deadline):
                raise ConnectionError("connection closed before a response head (got %r)" % self.buf[:200])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(status, reason, version, headers, b"")
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in te:
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if self.eof or not self._fill(deadline):
                        raise ConnectionError("closed inside chunked body")
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0].strip(), 16)
                while len(self.buf) < size + 2:
                    if self.eof or not self._fill(deadline):
                        raise ConnectionError("closed inside chunk")
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    # trailers (none expected): consume up to the empty line
                    break
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if self.eof or not self._fill(deadline):
                    raise ConnectionError("closed inside body (%d of %d bytes)" % (len(self.buf), n))
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while not self.eof:
                self._fill(deadline)
            body, self.buf = self.buf, b""
        resp.body = body
        return resp

    def request(self, method, path, body=None, headers=None, version="HTTP/1.1", timeout=None):
        self.send(build_request(method, path, body, headers, version))
        return self.read_response(timeout=timeout, head_request=(method == "HEAD"))

    def wait_closed(self, timeout):
        """True if the peer closes (EOF or reset) within timeout seconds; any
        bytes received meanwhile are kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                self._fill(deadline)
        except socket.timeout:
            return False
        except OSError:
            return True
        return True


def build_request(method, path, body=None, headers=None, version="HTTP/1.1"):
    hdrs = [("Host", "%s" % HOST)]
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.append(("Content-Type", "application/json"))
    elif isinstance(body, str):
        body = body.encode()
    for k, v in (headers or {}).items():
        hdrs = [(a, b) for a, b in hdrs if a.lower() != k.lower()]
        hdrs.append((k, v))
    if body is not None and not any(k.lower() == "content-length" for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    out = "%s %s %s\r\n" % (method, path, version)
    out += "".join("%s: %s\r\n" % kv for kv in hdrs)
    out += "\r\n"
    return out.encode("latin-1") + (body or b"")


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------

_LIVE = set()


def _kill_leftovers():
    # Last resort if the test process exits abruptly: no server outlives it.
    for p in list(_LIVE):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass


atexit.register(_kill_leftovers)


try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork
except Exception:  # pragma: no cover - not Linux
    _PRCTL = None


def _die_with_parent():
    # Runs in the child before exec: SIGKILL it if the test process dies
    # (e.g. ctest's timeout kills python), so servers never leak.
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


# Where servers' own data dirs go (see Server).
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _store_memory(args, kind="memory"):
    """True if these serve flags choose --store memory (or `kind`)."""
    for i, a in enumerate(args):
        if a == "--store=" + kind or (a == "--store" and i + 1 < len(args) and args[i + 1] == kind):
            return True
    return False


LISTEN_RE = re.compile(r"offload listening on http://(?:\[[^\]]*\]|[^\s:/\[]+):(\d+)")


def _names_flag(args, flag):
    """True if these serve flags set `flag` (as "--flag V" or "--flag=V")."""
    return any(a == flag or a.startswith(flag + "=") for a in args)


class Server:
    """`offload serve ARGS` on `port` (0: any free port, read from its
    listening line; a fixed port lets a test restart a node where it was)."""
    def __init__(self, args, drain_default=True, host=HOST, env=None, access_log_off=True, port=0):
        self.args = list(args)
        if drain_default and "--drain-timeout-s" not in self.args:
            self.args += ["--drain-timeout-s", "1"]
        # The access log (on by default, to stderr) is left out unless a
        # test asks for it: stderr is the tests' window on the server's own
        # log (stderr() shows its last 80 lines in failure messages, and is
        # searched for sanitizer reports), and the timing-bound tests should
        # not pay a reader thread per request. test_ops.py covers the log
        # (access_log_off=False keeps the server's default).
        if access_log_off and not _names_flag(self.args, "--access-log") and "OFFLOAD_ACCESS_LOG" not in (env or {}):
            self.args += ["--access-log", "off"]
        self.host = host
        # The default store is SQLite in ./offload-data: each server gets its
        # own fresh data dir instead (on /dev/shm when there is one, so a
        # strict commit's fsync costs little), removed once it stopped. A
        # test that names --data-dir or --store memory keeps its choice.
        self.own_dir = None
        if "--data-dir" not in self.args and not _store_memory(self.args) and not _store_memory(self.args, "postgres"):
            self.own_dir = tempfile.mkdtemp(prefix="offload-e2e-", dir=_SCRATCH)
            self.args += ["--data-dir", os.path.join(self.own_dir, "data")]
        self.cmd = [_bin(), "serve"] + (["--host", host] if host is not None else []) + ["--port", str(port)] + self.args
        self.out_lines = []
        self.err_lines = []
        self.port = None
        self.killed_by_test = False
        self.expect_nonzero = False
        self._port_ev = threading.Event()
        penv = None
        if env is not None:
            penv = dict(os.environ)
            penv.update(env)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=_die_with_parent, env=penv)
        _LIVE.add(self.proc)
        self.pid = self.proc.pid
        self._t_out = threading.Thread(target=self._drain, args=(self.proc.stdout, self.out_lines, True), daemon=True)
        self._t_err = threading.Thread(target=self._drain, args=(self.proc.stderr, self.err_lines, False), daemon=True)
        self._t_out.start()
        self._t_err.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._port_ev.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        if self.port is None:
            rc = self.proc.poll()
            if rc is None:
                self.kill()
            self._join()
            raise AssertionError("server did not print its listening line within %.0fs (exit=%r)\ncmd: %s\nstdout:\n%s\nstderr:\n%s"
                                 % (START_TIMEOUT, rc, " ".join(self.cmd), self.stdout(), self.stderr()))

    def _drain(self, pipe, sink, want_port):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            if want_port and self.port is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._port_ev.set()
        pipe.close()

    def _join(self):
        self._t_out.join(5)
        self._t_err.join(5)

    def stdout(self):
        return "\n".join(self.out_lines)

    def stderr(self):
        return "\n".join(self.err_lines[-80:])

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL by the test itself: a non-zero exit is then expected."""
        self.killed_by_test = True
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def wait_exit(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Teardown: SIGTERM, wait, SIGKILL as a last resort. Raises
        AssertionError if the exit was not clean."""
        problem = None
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)  # a test may have left it SIGSTOPped
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            rc = self.wait_exit(STOP_TIMEOUT)
            if rc is None:
                self.killed_by_test = True
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
                problem = "server pid %d did not exit within %.0fs of SIGTERM (killed)" % (self.pid, STOP_TIMEOUT)
        self._join()
        _LIVE.discard(self.proc)
        if self.own_dir:
            shutil.rmtree(self.own_dir, True)
        rc = self.proc.returncode
        if problem is None and rc != 0 and not self.killed_by_test and not self.expect_nonzero:
            problem = "server exited with code %r at teardown" % rc
        if problem is None and not self.expect_nonzero and re.search(
                r"(AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer)", self.stderr()):
            problem = "sanitizer report in server stderr"
        if problem:
            raise AssertionError("%s\ncmd: %s\nstderr (tail):\n%s" % (problem, " ".join(self.cmd), self.stderr()))

    # convenience HTTP --------------------------------------------------------
    def req(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        return request(self.port, method, path, body, headers, timeout, host=self.host or HOST)

    def get(self, path, timeout=HTTP_TIMEOUT):
        return self.req("GET", path, timeout=timeout)

    def raw(self, timeout=10.0):
        return RawConn(self.port, timeout)


# --------------------------------------------------------------------------
# Base test case
# --------------------------------------------------------------------------

class OffloadTestCase(unittest.TestCase):
    maxDiff = 4000

    # -- lifecycle -------------------------------------------------------------
    def start_server(self, *args, drain_default=True, host=HOST, env=None, access_log_off=True, port=0):
        srv = Server([str(a) for a in args], drain_default=drain_default, host=host, env=env,
                     access_log_off=access_log_off, port=port)
        self.addCleanup(srv.stop)
        return srv

    def track(self, closable):
        """Close a socket/connection at cleanup (before the server stops)."""
        self.addCleanup(closable.close)
        return closable

    def raw(self, srv, timeout=10.0):
        return self.track(srv.raw(timeout))

    # -- generic assertions ----------------------------------------------------
    def assertJsonType(self, resp):
        ct = resp.header("Content-Type")
        self.assertIsNotNone(ct, "no Content-Type in %r" % resp)
        self.assertEqual(ct.split(";")[0].strip().lower(), "application/json",
                         "Content-Type %r is not application/json" % ct)

    def assertError(self, resp, status, code, param=None, message_contains=()):
        """Exact error reply: status, JSON content type, body
        {"error":{"code":..,"message":..[,"param":..]}}. Returns the error object."""
        self.assertEqual(resp.status, status, "expected %d %s, got %r" % (status, code, resp))
        self.assertJsonType(resp)
        body = resp.json()
        self.assertIsInstance(body, dict)
        self.assertEqual(set(body.keys()), {"error"}, "error body must be exactly {\"error\":{...}}: %r" % body)
        err = body["error"]
        self.assertIsInstance(err, dict)
        self.assertTrue({"code", "message"} <= set(err.keys()), "error object lacks code/message: %r" % err)
        self.assertTrue(set(err.keys()) <= {"code", "message", "param"}, "unexpected keys in error object: %r" % err)
        if isinstance(code, (tuple, list, set)):
            self.assertIn(err["code"], code, "wrong error code in %r" % body)
        else:
            self.assertEqual(err["code"], code, "wrong error code in %r" % body)
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"].strip(), "empty error message")
        if param is not None:
            self.assertEqual(err.get("param"), param, "wrong/missing param in %r" % body)
        for s in message_contains:
            self.assertIn(s, err["message"])
        return err

    def assertMs(self, v, what):
        self.assertTrue(isinstance(v, int) and not isinstance(v, bool), "%s must be an integer, got %r" % (what, v))
        now = time.time() * 1000
        # Generous: the job may have been created a few minutes ago in a slow run.
        self.assertTrue(now - 600000 <= v <= now + 60000, "%s=%r is not near now (%d ms)" % (what, v, now))

    def _check_common(self, j, status_key_set, expect_status=None):
        self.assertEqual(set(j.keys()), status_key_set, "wrong key set: %r" % j)
        st = j["status"]
        self.assertIn(st, STATUSES)
        if expect_status is not None:
            if isinstance(expect_status, (set, tuple, list)):
                self.assertIn(st, expect_status, "status %r not in %r: %r" % (st, expect_status, j))
            else:
                self.assertEqual(st, expect_status, "unexpected status: %r" % j)
        p = j["progress"]
        self.assertTrue(isinstance(p, (int, float)) and not isinstance(p, bool), "progress not a number: %r" % j)
        self.assertTrue(0 <= p <= 1, "progress out of 0..1: %r" % j)
        self.assertMs(j["createdAt"], "createdAt")
        if st == "queued" and j.get("retryAt") is not None:
            # Waiting out a retry's backoff: not in any queue yet.
            self.assertIsNone(j["queuePosition"], "a job waiting to retry has no queue place: %r" % j)
            self.assertMs(j["retryAt"], "retryAt")
        elif st == "queued":
            self.assertTrue(isinstance(j["queuePosition"], int) and not isinstance(j["queuePosition"], bool)
                            and j["queuePosition"] >= 1, "queued job needs a 1-based queuePosition: %r" % j)
            self.assertIsNone(j["startedAt"], "queued job has startedAt: %r" % j)
        else:
            self.assertIsNone(j["queuePosition"], "queuePosition must be null unless queued: %r" % j)
        if st == "processing":
            self.assertMs(j["startedAt"], "startedAt")
        if st in ("processing", "queued"):
            self.assertIsNone(j["finishedAt"], "non-final job has finishedAt: %r" % j)
            self.assertIsNone(j["result"], "non-final job has a result: %r" % j)
        if st in FINAL:
            self.assertMs(j["finishedAt"], "finishedAt")
            self.assertGreaterEqual(j["finishedAt"], j["createdAt"], "finished before it was created: %r" % j)
        if j["startedAt"] is not None:
            self.assertMs(j["startedAt"], "startedAt")
            self.assertGreaterEqual(j["startedAt"], j["createdAt"], "started before it was created: %r" % j)
            if j["finishedAt"] is not None:
                self.assertGreaterEqual(j["finishedAt"], j["startedAt"], "finished before it started: %r" % j)
        if st == "complete":
            self.assertEqual(p, 1, "complete job must have progress exactly 1: %r" % j)
            self.assertIsNone(j["error"], "complete job has an error: %r" % j)
            self.assertMs(j["startedAt"], "startedAt")
        if st != "complete":
            self.assertIsNone(j["result"], "result must be null unless complete: %r" % j)
        if j["error"] is not None:
            self.assertIsInstance(j["error"], dict, "error must be null or an object: %r" % j)
            self.assertIn("code", j["error"])
            self.assertIn("message", j["error"])
        if st == "failed":
            self.assertIsInstance(j["error"], dict, "failed job needs an error object: %r" % j)

    def checkJob(self, j, expect_status=None, task=None, params=None, job_id=None):
        keys = JOB_KEYS | (RETRY_KEYS if "retries" in j else set()) | (FILE_KEYS if j.get("task") in FILE_TASKS else set())
        self._check_common(j, keys, expect_status)
        if j.get("task") in FILE_TASKS:
            self.assertIsInstance(j["files"], list)
            if j["status"] != "complete":
                self.assertEqual(j["files"], [], "only a complete job has files: %r" % j)
            for f in j["files"]:
                self.assertEqual(set(f), {"name", "contentType", "bytes", "url"}, repr(f))
                self.assertEqual(f["url"], "/jobs/%s/files/%s" % (j["id"], f["name"]))
        self.assertRegex(j["id"], ID_RE)
        self.assertIn(j["task"], TASKS | TEST_TASKS | PLUGIN_TASKS)
        a = j["attempts"]
        self.assertTrue(isinstance(a, int) and not isinstance(a, bool) and a >= 0, "attempts: %r" % j)
        if j["startedAt"] is not None:
            self.assertGreaterEqual(a, 1, "a job that started has attempts >= 1: %r" % j)
        if "retries" in j:
            self.assertTrue(isinstance(j["retries"], int) and 1 <= j["retries"] <= 10, "retries: %r" % j)
            self.assertLessEqual(a, j["retries"] + 1, "more runs than retries allow: %r" % j)
        self.assertIsInstance(j["params"], dict)
        if task is not None:
            self.assertEqual(j["task"], task)
        if params is not None:
            self.assertEqual(j["params"], params)
        if job_id is not None:
            self.assertEqual(j["id"], job_id)
        return j

    def checkReportAccepted(self, r):
        """The 202 of /tasks/reports/start: the seed's body and Location. Its job id."""
        self.assertEqual(r.status, 202, repr(r))
        self.assertJsonType(r)
        b = r.json()
        self.assertEqual(set(b.keys()), {"jobId", "status", "statusUrl"}, repr(b))
        self.assertRegex(b["jobId"], ID_RE)
        self.assertEqual(b["status"], "queued")
        self.assertEqual(b["statusUrl"], "/tasks/reports/%s" % b["jobId"])
        self.assertEqual(r.header("Location"), "/tasks/reports/%s" % b["jobId"])
        return b["jobId"]

    def checkReportStatus(self, j, expect_status=None, job_id=None):
        self._check_common(j, REPORT_KEYS, expect_status)
        self.assertRegex(j["jobId"], ID_RE)
        if job_id is not None:
            self.assertEqual(j["jobId"], job_id)
        if j["status"] == "complete":
            self.assertTrue(isinstance(j["result"], (int, float)) and not isinstance(j["result"], bool),
                            "complete report needs a numeric result: %r" % j)
        return j

    # -- job helpers -------------------------------------------------------------
    def submit(self, srv, task, params, timeout_ms=None, expect=202):
        body = {"task": task, "params": params}
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        r = srv.req("POST", "/jobs", body)
        if expect is None:
            return r
        self.assertEqual(r.status, expect, "POST /jobs %r: %r" % (body, r))
        if expect != 202:
            return r
        self.assertJsonType(r)
        j = r.json()
        self.checkJob(j, expect_status={"queued", "processing", "complete"}, task=task, params=params)
        self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"])
        return j

    def job(self, srv, job_id, expect=200):
        r = srv.get("/jobs/%s" % job_id)
        self.assertEqual(r.status, expect, "GET /jobs/%s: %r" % (job_id, r))
        if expect != 200:
            return r
        self.assertJsonType(r)
        return self.checkJob(r.json(), job_id=job_id)

    def wait_job(self, srv, job_id, pred, timeout, interval=0.02, what="condition"):
        """Poll GET /jobs/<id> until pred(job) or timeout; returns the job."""
        deadline = time.monotonic() + timeout
        j = None
        while True:
            j = self.job(srv, job_id)
            if pred(j):
                return j
            if time.monotonic() > deadline:
                self.fail("job %s: %s not reached within %.1fs; last: %r" % (job_id, what, timeout, j))
            time.sleep(interval)

    def wait_status(self, srv, job_id, statuses, timeout):
        if isinstance(statuses, str):
            statuses = {statuses}
        return self.wait_job(srv, job_id, lambda j: j["status"] in statuses, timeout,
                             what="status in %r" % sorted(statuses))

    def wait_final(self, srv, job_id, timeout=30):
        return self.wait_status(srv, job_id, FINAL, timeout)

    def health(self, srv):
        r = srv.get("/health")
        self.assertEqual(r.status, 200, repr(r))
        return r.json()

    def wait_until(self, fn, timeout, interval=0.02, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = fn()
            if last:
                return last
            if time.monotonic() > deadline:
                self.fail("%s not reached within %.1fs" % (what, timeout))
            time.sleep(interval)

    def calibrate_report(self, srv, target_s):
        """heavyIterations that make one report job take about target_s seconds
        on this server (measured by the server's own startedAt/finishedAt)."""
        n = 2000000
        for _ in range(8):
            j = self.submit(srv, "report", {"heavyIterations": n})
            j = self.wait_final(srv, j["id"], timeout=60)
            self.assertEqual(j["status"], "complete", repr(j))
            dur = j["finishedAt"] - j["startedAt"]
            if dur >= 150:
                break
            n *= 4
        rate = n / max(dur, 1) * 1000.0  # iterations per second
        return max(1000000, min(int(rate * target_s), 100000000000))


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------

_SQRT_CACHE = {}


def sqrt_sum(n):
    """Sequential double sum of sqrt(i), i = 0..n-1 (the contract's reference)."""
    if n not in _SQRT_CACHE:
        s = 0.0
        sq = math.sqrt
        for i in range(n):
            s += sq(i)
        _SQRT_CACHE[n] = s
    return _SQRT_CACHE[n]


def sqrt_sum_approx(n):
    """Euler-Maclaurin approximation of sum sqrt(i), i = 0..n-1; relative error
    far below 1e-12 for n >= 10^6 (used where the sequential sum is too slow)."""
    zeta_m_half = -0.2078862249773545
    return (2.0 / 3.0) * n ** 1.5 - 0.5 * math.sqrt(n) + zeta_m_half + 1.0 / (24.0 * math.sqrt(n))


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def rel_close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def main():
    unittest.main(verbosity=2)


class SharedServerTestCase(OffloadTestCase):
    """One server for the whole class, started with SERVER_ARGS and stopped
    (by PID, as every harness server) when the class is done."""
    SERVER_ARGS = ["--workers", "1"]

    @classmethod
    def setUpClass(cls):
        cls.srv = Server([str(a) for a in cls.SERVER_ARGS])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
