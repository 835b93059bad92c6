"""The command-line client against tiny Python servers, for what the real
server cannot show: the Authorization header it was sent (--token,
OFFLOAD_TOKEN), a URL with a path prefix, an error reply's code and message,
and the event streams (GET /jobs/<id>/events for `wait`, GET /events for
`top`) with the fallbacks when they are missing (long polls; polling
/health and /jobs)."""
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from cli_harness import CliMixin  # noqa: E402

JOB = {"id": "J1", "task": "spin", "params": {"ms": 1}, "status": "processing", "progress": 0.5, "result": None,
       "error": None, "queuePosition": None, "createdAt": 1, "startedAt": 1, "finishedAt": None, "attempts": 1}


class Recorder(http.server.BaseHTTPRequestHandler):
    seen = []  # (method, path, Authorization or None)
    events = True  # serve GET /jobs/J1/events and GET /events; False: 404; 503 or 400: that error

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            self.wfile.write(b": keep-alive\n\n")
            for i, (name, data) in enumerate(events):
                self.wfile.write(b"id: %d\r\nevent: %s\r\ndata: %s\r\n\r\n" % (i + 1, name.encode(),
                                                                              json.dumps(data).encode()))
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client had seen enough

    def do_GET(self):
        Recorder.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path == "/jobs?limit=20" or self.path == "/jobs":
            self.reply(200, {"jobs": [JOB]})
        elif self.path.endswith("events") and Recorder.events == 503:
            self.reply(503, {"error": {"code": "too_many_streams", "message": "All 1 event streams are open."}})
        elif self.path.endswith("events") and Recorder.events == 400:
            self.reply(400, {"error": {"code": "unknown_param", "message": "No such parameter."}})
        elif self.path.startswith("/secret"):
            self.reply(401, {"error": {"code": "unauthorized", "message": "A valid bearer token is required."}})
        elif self.path == "/jobs/J1/events" and Recorder.events:
            done = dict(JOB, status="complete", progress=1.0, result=42, finishedAt=2)
            self.stream([("job", JOB), ("job", done)])
        elif self.path == "/events" and Recorder.events:
            stats = {"queue": {"depth": 7, "capacity": 99}, "workers": {"total": 4, "busy": 3},
                     "completedPerSec": 12.5, "failedPerSec": 0.5, "loopLagMs": 0.25}
            self.stream([("stats", stats), ("job", dict(JOB, id="J2", task="pdf"))] + [("stats", stats)] * 100)
        elif self.path == "/jobs/J1":
            self.reply(200, JOB)
        elif self.path.startswith("/jobs/J1?wait="):
            self.reply(200, dict(JOB, status="complete", progress=1.0, result=42, finishedAt=2))
        elif self.path == "/health":
            self.reply(200, {"status": "ok", "workers": {"total": 4, "busy": 1}, "queue": {"depth": 5,
                                                                                         "capacity": 50}})
        else:
            self.reply(404, {"error": {"code": "not_found", "message": "There is no endpoint at %s." % self.path}})


class FakeServer(CliMixin, OffloadTestCase):

    def setUp(self):
        Recorder.seen = []
        Recorder.events = True
        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Recorder)
        self.httpd.daemon_threads = True
        t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        t.start()
        self.addCleanup(self.httpd.server_close)
        self.addCleanup(self.httpd.shutdown)
        self.url = "http://%s:%d" % (HOST, self.httpd.server_address[1])

    def test_token_is_sent(self):
        self.ok("jobs", "--token", "abc")
        self.ok("jobs", env={"OFFLOAD_TOKEN": "from-env"})
        self.ok("jobs", "--token", "flag-wins", env={"OFFLOAD_TOKEN": "from-env"})
        self.ok("jobs")
        self.assertEqual([s[2] for s in Recorder.seen],
                         ["Bearer abc", "Bearer from-env", "Bearer flag-wins", None])
        rc, out, err = self.cli("jobs", "--token", "a\nb")
        self.assertEqual(rc, 2)

    def test_http_error_names_code_and_message(self):
        # the URL's path is a prefix of every request's
        rc, out, err = self.cli("jobs", "--url", self.url + "/secret/", url=False)
        self.assertEqual((rc, out), (4, ""))
        self.assertEqual(err, "offload: 401 unauthorized: A valid bearer token is required.\n")
        self.assertEqual(Recorder.seen[-1][1], "/secret/jobs")
        rc, out, err = self.cli("status", "x")
        self.assertEqual(rc, 4)
        self.assertEqual(err, "offload: 404 not_found: There is no endpoint at /jobs/x.\n")

    def test_wait_follows_the_event_stream(self):
        rc, out, err = self.cli("wait", "J1", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.one_json(out)["result"], 42)
        paths = [s[1] for s in Recorder.seen]
        self.assertEqual(paths, ["/jobs/J1/events"], "followed the stream alone")
        rc, screen, out = self.run_pty(["wait", "J1"])
        self.assertEqual((rc, out), (0, b"42\n"), screen)
        self.assertIn(b"[####################....................]  50%  spin", screen)

    def test_wait_falls_back_to_long_polls(self):
        Recorder.events = False
        rc, out, err = self.cli("wait", "J1")
        self.assertEqual((rc, out), (0, "42\n"), err)
        self.assertEqual([s[1] for s in Recorder.seen], ["/jobs/J1/events", "/jobs/J1", "/jobs/J1?wait=30"])
        Recorder.seen = []
        rc, screen, out = self.run_pty(["wait", "J1"])
        self.assertEqual(rc, 0)
        self.assertEqual([s[1] for s in Recorder.seen], ["/jobs/J1/events", "/jobs/J1", "/jobs/J1?wait=1"])
        self.assertIn(b"50%  spin", screen)  # the first look, drawn at once

    def test_wait_without_a_stream_to_spare(self):
        # 503 too_many_streams: long polls do; another error is the command's
        Recorder.events = 503
        rc, out, err = self.cli("wait", "J1")
        self.assertEqual((rc, out), (0, "42\n"), err)
        self.assertEqual([s[1] for s in Recorder.seen], ["/jobs/J1/events", "/jobs/J1", "/jobs/J1?wait=30"])
        Recorder.events = 400
        rc, out, err = self.cli("wait", "J1")
        self.assertEqual((rc, out, err), (4, "", "offload: 400 unknown_param: No such parameter.\n"))

    def test_top_reads_the_event_stream(self):
        rc, screen, _ = self.run_pty(["top"], stdin_pty=True, timeout=30,
                                     send=lambda p, m: os.write(m, b"q"),
                                     send_after=lambda got: b"12.5" in got and b"J2" in got)
        self.assertEqual(rc, 0)
        self.assertRegex(screen, rb"queue\s+7 / 99")
        self.assertIn(b"3 of 4 busy", screen)
        self.assertIn(b"live (GET /events)", screen)

    def test_top_polls_without_the_stream(self):
        for events in (False, 503):
            with self.subTest(events=events):
                Recorder.events = events
                Recorder.seen = []
                rc, screen, _ = self.run_pty(["top"], stdin_pty=True, timeout=30,
                                             send=lambda p, m: os.write(m, b"q"),
                                             send_after=lambda got: b"5 / 50" in got)
                self.assertEqual(rc, 0)
                self.assertIn(b"polling every 1 s", screen)
                self.assertIn(b"1 of 4 busy", screen)
                self.assertIn("/health", [s[1] for s in Recorder.seen])


if __name__ == "__main__":
    main()
