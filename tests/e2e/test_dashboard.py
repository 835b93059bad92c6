"""The web dashboard (GET / and /ui/*) in a real browser.

Debian's chromium, headless, driven by chromedriver over the W3C WebDriver
HTTP API (urllib and json: no client library), against a real server:

- GET /, /ui/app.js and /ui/app.css carry their type, ETag, Cache-Control,
  the Content-Security-Policy and nosniff; If-None-Match gets 304; an
  unknown /ui/ path is 404.
- The page loads with no console error (severity SEVERE) and makes no
  request to another host (every resource entry's origin is the server's;
  the browser also resolves no other host name at all).
- The submit form is generated from GET /tasks with typed controls: number
  inputs with min/max, selects for enums, a file input for tasks that take
  a body (stats, image); every control has a label.
- A spin job submitted through the form appears with a progress bar and
  reaches complete; a long spin job submitted from the keyboard is
  canceled with its row's Cancel button and shows canceled.
- At 375 px wide nothing overflows horizontally.
- With --auth-token-file (the server's own auth): a token prompt on 401, a
  refused token asked again, the token in sessionStorage and in the
  Authorization header of every request (GET /events's too), never in a
  URL; a reload does not ask again.
- The server's own GET /events, read with fetch (through Relay, a byte
  relay that notes the headers, re-frames the stream as the grammar allows
  and drops it): stats and job events reach the figures and the table; the
  page reconnects with Last-Event-ID and gets the server's replay.
- Screenshots with running jobs go to the build directory
  (dashboard.png, dashboard-375.png); docs/dashboard.png is one of them.

Without chromium and chromedriver (scripts/install-deps.sh test) the test
fails, naming the packages.
"""
import base64
import json
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
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# ASan servers and a busy 2-core machine: waits are on conditions, bounded generously.
WAIT = 60.0


def out_dir():
    """The build directory (where OFFLOAD_BIN is): screenshots go there."""
    d = os.environ.get("OFFLOAD_ARTIFACT_DIR") or os.path.dirname(os.path.abspath(os.environ["OFFLOAD_BIN"]))
    os.makedirs(d, exist_ok=True)
    return d


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriverError(AssertionError):
    pass


class Browser:
    """chromedriver + one headless chromium session."""

    def __init__(self):
        self.driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        self.chromium = shutil.which("chromium") or "/usr/bin/chromium"
        for path, pkg in ((self.driver, "chromium-driver"), (self.chromium, "chromium")):
            if not os.access(path, os.X_OK):
                raise AssertionError("%s is missing (Debian package %s): run scripts/install-deps.sh test as root"
                                     % (path, pkg))
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="offload-chromium-")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w+")
        self.proc = subprocess.Popen([self.driver, "--port=%d" % self.port], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = "http://%s:%d" % (HOST, self.port)
        self.sid = None
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status", timeout=2).get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError("chromedriver did not start: %s" % self._driver_log())
            time.sleep(0.1)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                         "--user-data-dir=" + os.path.join(self.profile, "profile"),
                         "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-extensions", "--disable-default-apps", "--metrics-recording-only",
                         # No other host resolves: a request elsewhere could not even start.
                         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "pageLoadStrategy": "normal",
        }
        try:
            v = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, timeout=120)
        except Exception:
            self.close()
            raise
        self.sid = v["sessionId"]

    def _driver_log(self):
        try:
            self.log.seek(0)
            return self.log.read()[-3000:]
        except Exception:
            return "(no log)"

    def _call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                v = json.loads(raw.decode())["value"]
            except Exception:
                v = raw[:500]
            raise WebDriverError("%s %s: HTTP %d %r" % (method, path, e.code, v))
        return json.loads(raw.decode())["value"]

    def s(self, method, path, body=None, timeout=60):
        return self._call(method, "/session/%s%s" % (self.sid, path), body, timeout)

    def close(self):
        if self.sid:
            try:
                self._call("DELETE", "/session/" + self.sid, timeout=30)
            except Exception:
                pass
            self.sid = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # chromedriver's own group: it and its chromium
                self.proc.wait(10)
            except Exception:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
                except Exception:
                    pass
        self.log.close()
        shutil.rmtree(self.profile, True)

    # -- WebDriver commands ---------------------------------------------------
    def go(self, url):
        self.s("POST", "/url", {"url": url}, timeout=120)

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.s("POST", "/element/%s/click" % self.find(css), {})

    def clear(self, css):
        self.s("POST", "/element/%s/clear" % self.find(css), {})

    def type(self, css, text):
        self.s("POST", "/element/%s/value" % self.find(css), {"text": text})

    def keys(self, *keys):
        """Key presses on whatever has focus (the actions API)."""
        acts = []
        for k in keys:
            acts += [{"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]
        self.s("POST", "/actions", {"actions": [{"type": "key", "id": "kbd", "actions": acts}]})
        self.s("DELETE", "/actions")

    def window(self, width, height):
        self.s("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot", timeout=120))
        with open(path, "wb") as f:
            f.write(png)
        return png

    def logs(self):
        for path in ("/se/log", "/log"):
            try:
                return self.s("POST", path, {"type": "browser"})
            except WebDriverError:
                continue
        raise AssertionError("chromedriver returned no browser log")


TAB = "\ue004"
ENTER = "\ue007"


class Dashboard(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2", "--enable-test-tasks"])
        try:
            cls.b = Browser()
        except Exception:
            cls.srv.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.b.close()
        cls.srv.stop()

    def setUp(self):
        # Each test reads its own console: what an earlier test left (a
        # failed one that never read it) is not its.
        self.b.logs()

    def tearDown(self):
        # Before this test's servers stop (cleanups run after tearDown): the
        # page forgets its token (sessionStorage is per origin: each test's
        # page clears its own) and leaves, so it does not go on calling a
        # server that is gone while the next test reads the console.
        try:
            self.b.js("try { sessionStorage.clear(); } catch (e) {}")
            self.b.go("about:blank")
        except Exception:
            pass

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.srv.port, path)

    def wait_js(self, script, what, *args, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            v = self.b.js(script, *args)
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s not reached within %.0fs" % (what, timeout))
            time.sleep(0.1)

    def load(self):
        self.b.window(1280, 900)
        self.b.go(self.url("/"))
        self.wait_js("return document.querySelectorAll('#s-task option').length > 3", "the task list")
        self.wait_js("return /^Live/.test(document.getElementById('conn').textContent)", "a live connection")

    def choose_task(self, name):
        self.b.click("#s-task option[value='%s']" % name)
        self.wait_js("return document.getElementById('s-task').value === arguments[0]", "task " + name, name)

    def submit_spin(self, ms, keyboard=False):
        """Submits spin through the form; returns the new job's id."""
        self.choose_task("spin")
        self.b.clear("#p-ms")
        before = self.b.js("return document.getElementById('s-status').textContent")
        if keyboard:
            self.b.type("#p-ms", str(ms) + ENTER)  # implicit submission: Enter in a field
        else:
            self.b.type("#p-ms", str(ms))
            self.b.click("#s-go")
        text = self.wait_js("var t = document.getElementById('s-status').textContent;"
                            "return /^Submitted/.test(t) && t !== arguments[0] ? t : null", "the 202", before)
        m = re.search(r"spin job ([A-Za-z0-9_-]{16,})\.", text)
        self.assertTrue(m, text)
        return m.group(1)

    def submit_form(self, task, fields):
        """Fills the generated form ({element id: text}) and submits it;
        returns the new job's id."""
        self.choose_task(task)
        for fid, text in fields.items():
            # A control under the closed "Timeout and retries" is opened first.
            kind = self.b.js("var e = document.getElementById(arguments[0]), d = e.closest('details');"
                             "if (d) d.open = true; return e.type;", fid)
            if kind != "file":
                self.b.clear("#" + fid)
            self.b.type("#" + fid, text)
        before = self.b.js("return document.getElementById('s-status').textContent")
        self.b.click("#s-go")
        text = self.wait_js("var t = document.getElementById('s-status').textContent;"
                            "return t !== arguments[0] && /^(Submitted|Not submitted)/.test(t) ? t : null;",
                            "the form's reply", before)
        m = re.search(r"^Submitted \S+ job ([A-Za-z0-9_-]{16,})\.$", text)
        self.assertTrue(m, text)
        return m.group(1)

    def open_detail(self, jid):
        """Opens a job's detail from its row once it is final; returns what
        the panel shows."""
        self.wait_row(jid, lambda r: r["status"] in ("complete", "failed", "canceled"), "final")
        self.b.click("#jobs tbody tr[data-id='%s'] button[data-act=open]" % jid)
        return self.wait_js(
            "var $ = function (id) { return document.getElementById(id); };"
            "if ($('detail').hidden || $('d-kv').children[1].textContent !== arguments[0]) return null;"
            "var files = [].map.call($('d-files').querySelectorAll('a'), function (a) {"
            " return {name: a.textContent, href: a.getAttribute('href'), download: a.getAttribute('download')}; });"
            "return {params: JSON.parse($('d-params').textContent),"
            " result: $('d-result-box').hidden ? null : $('d-result').textContent,"
            " error: $('d-error-box').hidden ? null : $('d-error').textContent,"
            " files: $('d-files-box').hidden ? null : files,"
            " log: $('d-log-box').hidden ? null : $('d-log').textContent,"
            " cancel: !!$('d-actions').querySelector('button')};", "the detail of " + jid, jid)

    def row(self, jid):
        """What the jobs table shows for one job."""
        return self.b.js(
            "var tr = document.querySelector('#jobs tbody tr[data-id=\"' + arguments[0] + '\"]');"
            "if (!tr) return null;"
            "var bar = tr.querySelector('progress');"
            "return {status: tr.dataset.status, text: tr.querySelector('.st').textContent,"
            " bar: bar ? bar.value : null, barLabel: bar ? bar.getAttribute('aria-label') : null,"
            " cancel: !!tr.querySelector('button[data-act=cancel]')};", jid)

    def wait_row(self, jid, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        r = None
        while True:
            r = self.row(jid)
            if r and pred(r):
                return r
            if time.monotonic() > deadline:
                self.fail("job %s: %s not shown within %.0fs; row: %r" % (jid, what, timeout, r))
            time.sleep(0.05)

    def events_status(self):
        """The status of GET /events, read from its status line only (a
        server that has the stream never ends that reply)."""
        with socket.create_connection((HOST, self.srv.port), timeout=10) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            line = b""
            while b"\r\n" not in line:
                chunk = sock.recv(256)
                if not chunk:
                    break
                line += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
        self.assertTrue(m, line)
        return int(m.group(1))

    def severe_logs(self):
        """SEVERE browser log entries, less the one a server without GET
        /events causes (the dashboard then polls, as designed)."""
        no_events = self.events_status() == 404
        out = []
        for e in self.b.logs():
            if e.get("level") != "SEVERE":
                continue
            msg = e.get("message", "")
            if no_events and "/events" in msg and "404" in msg:
                continue
            out.append(e)
        return out

    # -- the routes ------------------------------------------------------------
    def test_0_headers(self):
        types = {"/": "text/html; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8",
                 "/ui/app.css": "text/css; charset=utf-8"}
        for path, ctype in types.items():
            r = self.srv.get(path)
            self.assertEqual(r.status, 200, repr(r))
            self.assertEqual(r.header("Content-Type"), ctype)
            self.assertEqual(r.header("Content-Security-Policy"), CSP)
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
            self.assertEqual(r.header("Cache-Control"), "no-cache")
            tag = r.header("ETag")
            self.assertRegex(tag, r'^"[0-9a-f]{32}"$')
            with open(os.path.join(os.path.dirname(__file__), "..", "..", "web",
                                   "index.html" if path == "/" else path[1:]), "rb") as f:
                self.assertEqual(r.body, f.read(), "the served bytes are the repo's web/ file")
            for bad in (b"http:", b"https:"):
                self.assertNotIn(bad, r.body)
            r2 = self.srv.req("GET", path, headers={"If-None-Match": tag})
            self.assertEqual((r2.status, r2.body, r2.header("ETag")), (304, b"", tag))
            h = self.srv.req("HEAD", path)
            self.assertEqual((h.status, h.body, h.header("Content-Length")), (200, b"", str(len(r.body))))
        self.assertError(self.srv.get("/ui/nope.js"), 404, "not_found")
        self.assertError(self.srv.get("/index.html"), 404, "not_found")
        self.assertError(self.srv.req("POST", "/", "x"), 405, "method_not_allowed")

    # -- the page in the browser -------------------------------------------------
    def test_1_page(self):
        self.load()
        self.assertEqual(self.severe_logs(), [], "console errors on load")
        # The live stream when the server has one; polling otherwise.
        want = "Live (event stream)" if self.events_status() == 200 else "Live (polling"
        self.assertTrue(self.b.js("return document.getElementById('conn').textContent").startswith(want))
        # Typed controls, generated from GET /tasks.
        self.choose_task("spin")
        ms = self.b.js("var e = document.getElementById('p-ms');"
                       "return {type: e.type, min: e.min, max: e.max, required: e.required, step: e.step};")
        self.assertEqual(ms, {"type": "number", "min": "1", "max": "600000", "required": True, "step": "1"})
        self.choose_task("password-hash")
        alg = self.b.js("var e = document.getElementById('p-algorithm');"
                        "return {tag: e.tagName, values: [].map.call(e.options, function (o) { return o.value; }),"
                        " value: e.value};")
        self.assertEqual(alg, {"tag": "SELECT", "values": ["pbkdf2-sha512", "pbkdf2-sha256", "argon2id"],
                               "value": "pbkdf2-sha512"})
        self.assertEqual(self.b.js("return document.getElementById('p-password').type"), "password")
        it = self.b.js("var e = document.getElementById('p-iterations'); return [e.type, e.min, e.max];")
        self.assertEqual(it, ["number", "1000", "10000000"])
        for task in ("stats", "image"):
            self.choose_task(task)
            f = self.b.js("var e = document.getElementById('p-input-file');"
                          "return e ? {type: e.type, accept: e.accept} : null;")
            self.assertIsNotNone(f, task)
            self.assertEqual(f["type"], "file")
            self.assertTrue(f["accept"], task)
        self.choose_task("spin")
        # Every control has a name a screen reader can say.
        unlabeled = self.b.js(
            "return [].filter.call(document.querySelectorAll('input, select, textarea, button'), function (e) {"
            "  if (e.closest('[hidden]') || e.closest('dialog:not([open])')) return false;"
            "  var named = (e.labels && e.labels.length) || e.getAttribute('aria-label') ||"
            "              e.getAttribute('aria-labelledby') || (e.tagName === 'BUTTON' && e.textContent.trim());"
            "  return !named;"
            "}).map(function (e) { return e.outerHTML.slice(0, 120); });")
        self.assertEqual(unlabeled, [])
        # The keyboard: on a fresh page the first Tab lands on the skip link,
        # the next ones on the form's controls, in order.
        self.load()
        self.b.keys(TAB)
        self.assertEqual(self.b.js("return document.activeElement.textContent"), "Skip to jobs")
        self.b.keys(TAB)
        self.assertEqual(self.b.js("return document.activeElement.id"), "s-task")
        self.b.keys(TAB)
        first = self.b.js("return document.getElementById('s-params').querySelector('input, select, textarea').id")
        self.assertEqual(self.b.js("return document.activeElement.id"), first)

    def test_2_jobs(self):
        self.load()
        # A long job keeps a worker busy for the screenshot.
        long_id = self.submit_spin(600000)
        jid = self.submit_spin(4000)
        # Short jobs queued behind them, for the table and the queue chart.
        for _ in range(6):
            self.submit(self.srv, "spin", {"ms": 300})
        r = self.wait_row(jid, lambda r: r["status"] == "processing" and r["bar"] is not None, "a progress bar")
        self.assertTrue(r["cancel"], r)
        self.assertIn("spin", r["barLabel"])
        self.wait_row(jid, lambda r: r["bar"] and r["bar"] > 0, "progress above 0")
        self.wait_row(long_id, lambda r: r["status"] == "processing", "the long job running")
        # The live figures have a sample and the chart has been drawn.
        self.wait_js("return /^[0-9]/.test(document.getElementById('f-workers').textContent)", "live figures")
        self.wait_js("return /busy now [12]/.test(document.getElementById('c-workers').getAttribute('aria-label'))",
                     "the workers chart")
        time.sleep(1.5)  # a few more samples on the chart
        self.b.window(1280, 1200)  # taller: the table's rows too
        time.sleep(0.5)
        self.b.screenshot(os.path.join(out_dir(), "dashboard.png"))
        self.b.window(1280, 900)
        r = self.wait_row(jid, lambda r: r["status"] == "complete", "complete")
        self.assertIsNone(r["bar"])
        self.assertFalse(r["cancel"], "a final job has no Cancel button")
        self.assertEqual(self.job(self.srv, jid)["status"], "complete")
        # The job's detail: params, no cancel once final.
        self.b.click("#jobs tbody tr[data-id='%s'] button[data-act=open]" % jid)
        d = self.wait_js("var s = document.getElementById('detail');"
                         "return !s.hidden && /complete/.test(s.textContent) ?"
                         " {params: JSON.parse(document.getElementById('d-params').textContent),"
                         "  focus: document.activeElement.id} : null;", "the detail panel")
        self.assertEqual(d, {"params": {"ms": 4000}, "focus": "detail-h"})

        # Cancel, from the keyboard: Enter submits, then Enter on the row's button.
        cid = self.submit_spin(600000, keyboard=True)
        self.wait_row(cid, lambda r: r["status"] in ("queued", "processing") and r["cancel"], "a Cancel button")
        self.b.js("document.querySelector('#jobs tbody tr[data-id=\"' + arguments[0] + '\"]"
                  " button[data-act=cancel]').focus();", cid)
        self.b.keys(ENTER)
        r = self.wait_row(cid, lambda r: r["status"] == "canceled", "canceled")
        self.assertFalse(r["cancel"])
        self.assertEqual(self.job(self.srv, cid)["status"], "canceled")
        self.wait_js("return /Cancel/.test(document.getElementById('announce').textContent)", "the announcement")
        # The filter shows canceled jobs only.
        self.b.click("#j-filter option[value=canceled]")
        self.wait_js("var rows = document.querySelectorAll('#jobs tbody tr');"
                     "return rows.length > 0 && [].every.call(rows, function (r) {"
                     " return r.dataset.status === 'canceled'; });", "the status filter")
        self.b.click("#j-filter option[value='']")

        # 375 px wide: one column, nothing wider than the window.
        self.b.window(375, 900)
        m = self.wait_js("var d = document.documentElement;"
                         "return innerWidth <= 400 ? {sw: d.scrollWidth, cw: d.clientWidth, iw: innerWidth} : null;",
                         "a narrow window")
        self.assertLessEqual(m["sw"], m["cw"], "horizontal overflow at 375 px: %r" % m)
        self.assertLessEqual(m["sw"], 375, m)
        # Nor do the tables need their own scroll bars.
        wide = self.b.js("return [].filter.call(document.querySelectorAll('.scroll'), function (e) {"
                         " return e.scrollWidth > e.clientWidth + 1; }).map(function (e) {"
                         " return e.parentNode.id || e.parentNode.getAttribute('aria-labelledby'); });")
        self.assertEqual(wide, [], "a table wider than the screen at 375 px")
        self.b.screenshot(os.path.join(out_dir(), "dashboard-375.png"))
        self.b.window(1280, 900)
        self.assertEqual(self.srv.req("DELETE", "/jobs/" + long_id).status, 202)

        # Nothing was fetched from another host, and nothing went wrong.
        origin = self.url("")
        urls = self.b.js("return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
                         ".concat([location.href]);")
        self.assertTrue(len(urls) > 3, urls)
        for u in urls:
            self.assertTrue(u.startswith(origin + "/"), "a request to another host: %s" % u)
        self.assertEqual(self.severe_logs(), [], "console errors")

    # -- a server that asks for a token -------------------------------------------
    def auth_server(self, tok, *args):
        """A real server with --auth-token-file holding `tok`."""
        d = tempfile.mkdtemp(prefix="offload-dash-token-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "token")
        with open(path, "w") as f:
            f.write(tok + "\n")
        os.chmod(path, 0o600)
        return self.start_server("--workers", "1", "--auth-token-file", path, *args)

    def test_3_token(self):
        tok = "dash-" + base64.urlsafe_b64encode(os.urandom(24)).decode()  # 37 characters (at least 32)
        srv = self.auth_server(tok)
        self.assertEqual(srv.get("/jobs").status, 401)
        self.assertEqual(srv.get("/").status, 200, "the page itself needs no token: it asks for one")
        base = "http://%s:%d" % (HOST, srv.port)
        self.b.window(1280, 900)
        self.b.go(base + "/")
        self.wait_js("return document.getElementById('token-dlg').open", "the token prompt")
        self.b.type("#token-in", tok + ENTER)
        self.wait_js("return !document.getElementById('token-dlg').open &&"
                     " document.querySelectorAll('#s-task option').length > 3", "the tasks, with the token")
        self.wait_js("return /^Live/.test(document.getElementById('conn').textContent)", "a live connection")
        self.assertEqual(self.b.js("return sessionStorage.getItem('offload.token')"), tok)
        jid = self.submit_spin(300)
        self.wait_row(jid, lambda r: r["status"] == "complete", "complete")
        # Once given, the token is not asked for again in this tab.
        self.b.go(base + "/")
        self.wait_js("return document.querySelectorAll('#s-task option').length > 3", "the tasks")
        self.assertFalse(self.b.js("return document.getElementById('token-dlg').open"))
        urls = self.b.js("return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
        for u in urls:
            self.assertTrue(u.startswith(base + "/"), u)
            self.assertNotIn(tok, u, "the token travelled in a URL")
        for e in self.b.logs():
            msg = e.get("message", "")
            if e.get("level") == "SEVERE" and "401" not in msg and not ("/events" in msg and "404" in msg):
                self.fail("console error: %r" % e)

    # -- the event stream, as its contract says -----------------------------------
    def test_4_event_stream(self):
        """The page reads the server's real GET /events with fetch: job and
        stats events, as the server sends them and re-framed (CRLF, comment
        lines, events split across small chunks) by a Relay in front of it,
        which then drops the stream: the page reconnects with Last-Event-ID,
        the id of the last event it got, and gets what happened meanwhile
        (the server's replay)."""
        relay = Relay(self.srv.port, reframe=True)
        self.addCleanup(relay.close)
        self.b.window(1280, 900)
        self.b.go("http://%s:%d/" % (HOST, relay.port))
        self.wait_js("return document.getElementById('conn').textContent === 'Live (event stream)'",
                     "the event stream")
        first = relay.events_requests()[0]
        self.assertEqual(first["headers"].get("accept"), "text/event-stream")
        self.assertIsNone(first["headers"].get("last-event-id"))
        # Stats events: the figures are the server's ({"queue":{"depth","capacity"},"workers":{"total","busy"},...}).
        self.wait_until(lambda: any(t == "stats" for _, t, _ in first["events"]), WAIT, what="a stats event")
        stats = [d for _, t, d in first["events"] if t == "stats"][0]
        self.assertEqual(set(stats), {"queue", "workers", "completedPerSec", "failedPerSec", "loopLagMs"})
        h = self.srv.get("/health").json()
        self.assertEqual(stats["queue"]["capacity"], h["queue"]["capacity"])
        self.assertEqual(stats["workers"]["total"], h["workers"]["total"])
        self.wait_js("return document.getElementById('f-queue').textContent === arguments[0]", "the queue figure",
                     "0 / %d" % h["queue"]["capacity"])
        self.wait_js("return document.getElementById('f-workers').textContent === arguments[0]",
                     "the workers figure", "0 / %d" % h["workers"]["total"])
        # A job submitted elsewhere reaches the table through the stream: the
        # page asks for no job list while the stream is up.
        n_req = len(relay.requests)
        jid = self.submit(self.srv, "spin", {"ms": 600000})["id"]
        self.addCleanup(self.srv.req, "DELETE", "/jobs/" + jid)
        self.wait_row(jid, lambda r: r["status"] == "processing" and r["bar"] is not None, "a progress bar")
        self.wait_row(jid, lambda r: r["bar"] > 0, "progress above 0")
        self.wait_js("return /^1 \\/ /.test(document.getElementById('f-workers').textContent)", "a busy worker")
        lists = [r["target"] for r in relay.requests[n_req:] if re.match(r"/jobs(\?|$)", r["target"])]
        self.assertEqual(lists, [], "the job list was polled while the stream was up")
        # The stream drops; the reconnection waits at the relay while the job
        # is canceled, so only the server's replay can bring that.
        relay.hold()
        relay.drop()
        last = first["ids"][-1]
        self.wait_until(lambda: len(relay.events_requests()) >= 2, WAIT, what="a reconnect")
        second = relay.events_requests()[1]
        self.assertEqual(second["headers"].get("last-event-id"), last)
        self.assertEqual(self.srv.req("DELETE", "/jobs/" + jid).status, 202)
        self.wait_status(self.srv, jid, "canceled", WAIT)
        relay.release()
        r = self.wait_row(jid, lambda r: r["status"] == "canceled", "the final job event")
        self.assertEqual((r["bar"], r["cancel"]), (None, False))
        self.wait_until(lambda: any(t == "job" and d["id"] == jid and d["status"] == "canceled"
                                    for _, t, d in second["events"]), WAIT, what="the replayed cancel")
        ids = [int(i) for i in second["ids"]]
        self.assertTrue(ids and ids[0] > int(last) and ids == sorted(ids), (last, ids[:5]))
        self.wait_js("return document.getElementById('conn').textContent === 'Live (event stream)'",
                     "the stream again")
        self.wait_js("return document.getElementById('f-workers').textContent === arguments[0]",
                     "the second stats", "0 / %d" % h["workers"]["total"])
        self.assertEqual(self.severe_logs(), [], "console errors")

    # -- the token prompt, against the server's own auth --------------------------------
    def test_3b_token_prompt(self):
        """The real server with --auth-token-file, through a Relay that keeps
        every request's headers. The page asks once, a refused token is
        asked again; the token is kept in sessionStorage, sent as a header
        on every request (the event stream's too) and never in a URL; a
        reload does not ask again."""
        tok = "dash-" + base64.urlsafe_b64encode(os.urandom(24)).decode()
        srv = self.auth_server(tok, "--enable-test-tasks")
        relay = Relay(srv.port)
        self.addCleanup(relay.close)
        base = "http://%s:%d" % (HOST, relay.port)
        self.b.window(1280, 900)
        self.b.go(base + "/")
        self.wait_js("return document.getElementById('token-dlg').open", "the token prompt")
        self.assertEqual(self.b.js("return document.activeElement.id"), "token-in")
        self.b.type("#token-in", "wrong" + ENTER)
        self.wait_js("return document.getElementById('token-dlg').open &&"
                     " /refused/.test(document.getElementById('token-msg').textContent)", "the prompt again")
        self.b.type("#token-in", tok + ENTER)
        self.wait_js("return !document.getElementById('token-dlg').open &&"
                     " document.querySelectorAll('#s-task option').length > 3", "the tasks, with the token")
        self.wait_js("return document.getElementById('conn').textContent === 'Live (event stream)'",
                     "the event stream, with the token")
        self.assertEqual(self.b.js("return sessionStorage.getItem('offload.token')"), tok)
        jid = self.submit_spin(200)
        self.wait_row(jid, lambda r: r["status"] == "complete", "complete")
        # A reload keeps the token (this tab) and does not ask again: every
        # request after it has the token from the start.
        n_req = len(relay.requests)
        self.b.go(base + "/")
        self.wait_js("return document.querySelectorAll('#s-task option').length > 3", "the tasks")
        self.wait_js("return document.getElementById('conn').textContent === 'Live (event stream)'",
                     "the event stream after the reload")
        time.sleep(1.5)
        self.assertFalse(self.b.js("return document.getElementById('token-dlg').open"))
        seen = [(r["method"], r["target"], r["headers"].get("authorization")) for r in relay.requests]
        api = [x for x in seen if not (x[1] == "/" or x[1].startswith("/ui/"))]
        self.assertIn(("GET", "/events", "Bearer " + tok), api, "the stream is read with the header")
        for _, t, _ in seen:
            self.assertNotIn(tok, t, "the token travelled in a URL")
        after = api[[i for i, x in enumerate(api) if x[2] == "Bearer " + tok][0]:]
        self.assertTrue(all(a == "Bearer " + tok for _, _, a in after[:20]), after[:20])
        reload_api = [x for x in seen[n_req:] if not (x[1] == "/" or x[1].startswith("/ui/"))]
        self.assertIn(("GET", "/events", "Bearer " + tok), reload_api)
        self.assertTrue(all(a == "Bearer " + tok for _, _, a in reload_api), reload_api)
        for e in self.b.logs():
            msg = e.get("message", "")
            if e.get("level") == "SEVERE" and "401" not in msg:
                self.fail("console error: %r" % e)

    # -- a job's detail: log, files, secrets, errors; workers -------------------------
    def test_5_detail(self):
        here = os.path.dirname(os.path.abspath(__file__))
        srv = self.start_server("--workers", "2", "--commands", os.path.join(here, "commands_test.json"))
        base = "http://%s:%d" % (HOST, srv.port)
        self.b.window(1280, 900)
        self.b.go(base + "/")
        self.wait_js("return document.querySelectorAll('#s-task option').length > 3", "the task list")
        # A command job: its log's tail.
        jid = self.submit_form("test.echo", {"p-msg": "hello dashboard"})
        d = self.open_detail(jid)
        self.assertEqual(d["params"], {"msg": "hello dashboard"})
        self.assertFalse(d["cancel"])
        self.wait_js("return document.getElementById('d-log').textContent === arguments[0]", "the log tail",
                     "hello dashboard|1|0.5|false\n")
        # An upload through the file input; its output file as a link.
        tmp = tempfile.mkdtemp(prefix="offload-dash-upload-")
        self.addCleanup(shutil.rmtree, tmp, True)
        up = os.path.join(tmp, "note.txt")
        with open(up, "w") as f:
            f.write("uploaded through the dashboard\n")
        jid = self.submit_form("test.copy", {"p-input-file": up})
        d = self.open_detail(jid)
        self.assertEqual(d["files"], [{"name": "copy.txt", "href": "/jobs/%s/files/copy.txt" % jid,
                                       "download": "copy.txt"}])
        body = self.srv_text(srv, d["files"][0]["href"])
        self.assertEqual(body, "uploaded through the dashboard\n")
        # A secret param is never shown; the result is.
        jid = self.submit_form("password-hash", {"p-password": "correct horse", "p-iterations": "1000"})
        d = self.open_detail(jid)
        self.assertEqual(d["params"]["password"], "[redacted]")
        self.assertEqual(d["params"]["iterations"], 1000)
        self.assertNotIn("correct horse", self.b.js("return document.body.textContent"))
        self.assertIn("hash", json.loads(d["result"]))
        self.assertIsNone(d["log"], "only command tasks have a log")
        # A failed job: its error.
        jid = self.submit_form("spin", {"p-ms": "5000", "s-timeout": "100"})
        d = self.open_detail(jid)
        self.assertTrue(d["error"].startswith("timeout: "), d)
        self.assertIsNone(d["result"])
        # Refused by the server: the reply's message, and the field it names has focus.
        self.choose_task("test.tag")
        self.b.type("#p-tag", "UPPER")
        self.b.click("#s-go")
        self.wait_js("return /^Not submitted: 400 invalid_param/.test(document.getElementById('s-status').textContent)"
                     " && document.activeElement.id === 'p-tag'", "the 400 shown")
        # Workers: one row each.
        n = len(srv.get("/workers").json()["workers"])
        self.wait_js("return document.querySelectorAll('#workers tbody tr').length === arguments[0]", "workers", n)
        for e in self.b.logs():
            msg = e.get("message", "")
            if e.get("level") == "SEVERE" and not ("/events" in msg and "404" in msg) and \
                    not ("/jobs" in msg and "400" in msg):  # the refused submission
                self.fail("console error: %r" % e)

    def srv_text(self, srv, path):
        r = srv.get(path)
        self.assertEqual(r.status, 200, repr(r))
        return r.body.decode()


class Relay:
    """A byte relay in front of the REAL server (its /events, its auth): no
    route is served here. Every request's method, target and headers are
    kept in `requests` (so a test can see what the page sent, Authorization
    and Last-Event-ID included); the server's replies go back unchanged,
    except a GET /events reply while `reframe` is on: its body (the
    server's own events, ids and bytes) is sent on as the SSE grammar also
    allows it, CRLF line ends, a comment line before each event, and every
    event split across small chunks written apart, so the page's parser
    meets those too. `drop()` closes the open /events connections (the
    page must come back with Last-Event-ID). Each /events request's record
    gets "ids": the ids of the events whose end (the blank line) went to
    the page on that connection."""

    def __init__(self, upstream, reframe=False):
        self.upstream = upstream
        self.reframe = reframe
        self.requests = []
        self.lock = threading.Lock()
        self.socks = []
        self.events_socks = []
        self.closed = False
        self.gate = threading.Event()  # cleared by hold(): new /events requests wait
        self.gate.set()
        self.send_lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _recv(s, buf):
        d = s.recv(65536)
        if not d:
            raise EOFError
        return buf + d

    def _serve(self, c):
        try:
            u = socket.create_connection((HOST, self.upstream), timeout=None)
        except OSError:
            c.close()
            return
        with self.lock:
            self.socks += [c, u]
        state = {"events": None}
        threading.Thread(target=self._down, args=(u, c, state), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf = self._recv(c, buf)
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                hdrs = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                if hdrs.get("transfer-encoding"):
                    raise AssertionError("the relay does not take chunked request bodies")
                n = int(hdrs.get("content-length") or 0)
                while len(buf) < n:
                    buf = self._recv(c, buf)
                body, buf = buf[:n], buf[n:]
                rec = {"method": method, "target": target, "headers": hdrs}
                if method == "GET" and target.split("?")[0] == "/events":
                    rec["ids"] = []
                    rec["events"] = []
                    state["events"] = rec
                    with self.lock:
                        self.events_socks.append(c)
                with self.lock:
                    self.requests.append(rec)
                if "ids" in rec:
                    self.gate.wait()
                u.sendall(head + b"\r\n\r\n" + body)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _down(self, u, c, state):
        """Server to page. A /events reply is decoded (chunked) to note its
        events' ids, and re-framed when `reframe` is on."""
        buf = b""
        try:
            while state["events"] is None:
                buf = self._recv(u, buf)
                if state["events"] is None:
                    c.sendall(buf)
                    buf = b""
            rec = state["events"]
            while b"\r\n\r\n" not in buf:
                buf = self._recv(u, buf)
            head, buf = buf.split(b"\r\n\r\n", 1)
            c.sendall(head + b"\r\n\r\n")
            if b"chunked" not in head.lower():  # a 401 or another whole reply: as it came
                with self.lock:
                    if c in self.events_socks:
                        self.events_socks.remove(c)
                c.sendall(buf)
                while True:
                    c.sendall(self._recv(u, b""))
            text = b""
            while True:
                while b"\r\n" not in buf:
                    buf = self._recv(u, buf)
                size_line, rest = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest = self._recv(u, rest)
                data, buf = rest[:size], rest[size + 2:]
                if size == 0:
                    c.sendall(b"0\r\n\r\n")
                    return
                text += data
                while b"\n\n" in text:
                    ev, text = text.split(b"\n\n", 1)
                    f = dict(ln.split(": ", 1) for ln in ev.decode().split("\n") if ln and ln[0] != ":")
                    with self.send_lock:  # drop() cuts between events or inside one, never after an unnoted one
                        self._send_event(c, ev + b"\n\n")
                        if "id" in f:
                            rec["ids"].append(f["id"])
                            rec["events"].append((f["id"], f.get("event"), json.loads(f["data"])))
        except (OSError, EOFError, ValueError):
            pass
        finally:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _send_event(self, c, ev):
        if not self.reframe:
            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            return
        out = b": relayed\r\n" + ev.replace(b"\n", b"\r\n")
        for i in range(0, len(out), 7):
            piece = out[i:i + 7]
            c.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.002)

    def events_requests(self):
        with self.lock:
            return [r for r in self.requests if "ids" in r]

    def hold(self):
        """From now on a new GET /events waits here (recorded, not sent on)."""
        self.gate.clear()

    def release(self):
        self.gate.set()

    def drop(self):
        """Ends the open /events replies (the last chunk, between two events,
        as a server that stops does) and closes their connections."""
        with self.send_lock, self.lock:
            socks, self.events_socks = self.events_socks, []
            for s in socks:
                try:
                    s.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.gate.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


if __name__ == "__main__":
    main()
