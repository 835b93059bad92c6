"""The command-line client (`offload submit|status|wait|cancel|jobs|tasks|
workers|download|top`, docs/CLI.md), end to end: the built binary against a
real server (test_cli_fake.py has the Python servers that show what this
one cannot: the Authorization header, event streams).

- Every command works, human and --json; --json prints exactly one JSON
  document on stdout and nothing else.
- Exit statuses: 0 complete, 1 failed, 3 canceled, 2 bad usage, 4 unreachable
  or an HTTP error, each with one line on stderr naming what went wrong.
- On a terminal (a pty) `wait` draws a progress bar on stderr; in a pipe it
  draws none.
- `top` draws a full screen on a pty, quits on q and on SIGINT, and restores
  the terminal.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from cli_harness import BAR_RE, CliMixin, dead_port, _die_with_parent  # noqa: E402


class Cli(CliMixin, SharedServerTestCase):
    SERVER_ARGS = ["--workers", "2", "--store", "memory"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.url = "http://%s:%d" % (HOST, cls.srv.port)

    # -- help and usage ---------------------------------------------------------
    def test_help_lists_everything(self):
        out, _ = self.ok("--help", url=False)
        for c in ("serve", "submit", "status", "wait", "cancel", "jobs", "tasks", "workers", "download", "top",
                  "--url", "OFFLOAD_URL", "OFFLOAD_TOKEN", "--json"):
            self.assertIn(c, out)
        for cmd, flags in {"submit": ["--file", "--type", "--wait", "--timeout-ms", "--retries"],
                           "status": [], "wait": [], "cancel": [], "jobs": ["--status", "--limit"],
                           "tasks": [], "workers": [], "download": ["-o, --output"], "top": []}.items():
            with self.subTest(cmd=cmd):
                out, err = self.ok(cmd, "--help", url=False)
                self.assertIn("usage: offload %s" % cmd, out)
                for f in flags + ["--url", "--token", "OFFLOAD_URL", "OFFLOAD_TOKEN", "Exit status"]:
                    self.assertIn(f, out)
                self.assertEqual(err, "")

    def test_bad_usage_exits_2(self):
        cases = [["submit"], ["status"], ["status", "a", "b"], ["wait"], ["cancel"], ["download", "x"],
                 ["jobs", "--bogus"], ["jobs", "--limit"], ["jobs", "extra"], ["top", "--json"],
                 ["download", "x", "y", "--json"], ["submit", "spin", "ms"], ["submit", "spin", "ms=1", "ms=2"],
                 ["submit", "spin", "--type", "text/csv"], ["submit", "spin", "--timeout-ms", "soon"],
                 ["submit", "stats", "--file", "/nonexistent/x.csv"], ["jobs", "--url", "https://x"],
                 ["jobs", "--url", "http://x:99999"], ["submit", "spin", "--wait", "--wait"]]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.cli(*args)
                self.assertEqual(rc, 2, "%r: %r" % (args, err))
                self.assertEqual(out, "")
                self.one_line(err)
                self.assertRegex(err, r"see `offload \w+ --help`")

    # -- submit, status, wait ----------------------------------------------------
    def test_submit_status_wait(self):
        out, err = self.ok("submit", "spin", "ms=200")
        jid = out.strip()
        self.assertRegex(jid, ID_RE)
        self.assertEqual(out, jid + "\n")
        out, _ = self.ok("status", jid)
        self.assertIn("id        %s" % jid, out)
        self.assertRegex(out, r"status\s+(queued|processing|complete)")
        out, err = self.ok("wait", jid)
        self.assertEqual(out, "null\n")  # spin's result
        self.assertRegex(err, r"^job %s \(spin\) complete in \d+\.\ds\n$" % re.escape(jid))
        j = self.one_json(self.ok("status", jid, "--json")[0])
        self.checkJob(j, expect_status="complete", task="spin", params={"ms": 200}, job_id=jid)

    def test_values_are_typed_by_the_task(self):
        out, _ = self.ok("submit", "report", "heavyIterations=1000", "--json")
        j = self.one_json(out)
        self.assertEqual(j["params"], {"heavyIterations": 1000})
        out, _ = self.ok("submit", "stats", "values=1,2,3.5", "--wait", "--json")
        j = self.one_json(out)
        self.assertEqual(j["params"], {"values": [1, 2, 3.5]})
        self.assertEqual(j["result"]["count"], 3)
        out, _ = self.ok("submit", "stats", "values:=[4, 5]", "--wait")
        self.assertEqual(json.loads(out)["sum"], 9)
        # what does not read as its type is the server's to refuse
        rc, out, err = self.cli("submit", "spin", "ms=soon")
        self.assertEqual(rc, 4)
        self.assertEqual(out, "")
        self.one_line(err)
        self.assertIn("400 invalid_param: params.ms must be an integer", err)
        rc, out, err = self.cli("submit", "nosuchtask", "a=1")
        self.assertEqual(rc, 4)
        self.assertIn("400 unknown_task: ", self.one_line(err))

    def test_submit_wait_json_is_one_document(self):
        rc, out, err = self.cli("submit", "fibonacci", "n=20", "--wait", "--json")
        self.assertEqual(rc, 0, err)
        j = self.one_json(out)
        self.checkJob(j, expect_status="complete", task="fibonacci")
        self.assertEqual(j["result"], 6765)
        self.assertRegex(err, r"submitted job \S+ \(fibonacci\)\njob \S+ \(fibonacci\) complete in")
        rc, out, err = self.cli("submit", "fibonacci", "n=20", "--wait")
        self.assertEqual((rc, out), (0, "6765\n"), err)

    def test_failed_exits_1(self):
        rc, out, err = self.cli("submit", "spin", "ms=20000", "--timeout-ms", "200", "--wait")
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(len(lines), 2, err)  # "submitted job ..." and the summary
        self.assertRegex(lines[1], r"^offload: job \S+ \(spin\) failed: timeout: The job ran longer than its timeout")
        rc, out, err = self.cli("submit", "spin", "ms=20000", "--timeout-ms", "200", "--wait", "--json")
        self.assertEqual(rc, 1, err)
        j = self.one_json(out)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "timeout"))

    def test_canceled_exits_3_and_cancel(self):
        jid = self.ok("submit", "spin", "ms=30000")[0].strip()
        e = dict(os.environ, OFFLOAD_URL=self.url)
        w = subprocess.Popen([os.environ["OFFLOAD_BIN"], "wait", jid], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=e, preexec_fn=_die_with_parent)
        try:
            self.wait_status(self.srv, jid, "processing", 20)
            out, err = self.ok("cancel", jid)
            self.assertIn(jid, out)
            out, err = w.communicate(timeout=30)
        finally:
            if w.poll() is None:
                w.kill()
                w.communicate()
        self.assertEqual(w.returncode, 3, err)
        self.assertEqual(out, b"")
        self.assertRegex(err.decode(), r"^offload: job %s \(spin\) canceled: The job was canceled by a client"
                         % re.escape(jid))
        self.assertEqual(err.count(b"\n"), 1)
        # canceling it again: the server's 409, exit 4
        rc, out, err = self.cli("cancel", jid)
        self.assertEqual(rc, 4)
        self.assertIn("offload: 409 already_finished: The job is already canceled.", self.one_line(err))
        # a queued job is canceled at once; --json prints it
        blockers = [self.ok("submit", "spin", "ms=30000")[0].strip() for _ in range(2)]
        queued = self.ok("submit", "spin", "ms=1")[0].strip()
        j = self.one_json(self.ok("cancel", queued, "--json")[0])
        self.assertEqual((j["id"], j["status"]), (queued, "canceled"))
        rc, out, err = self.cli("wait", queued, "--json")
        self.assertEqual(rc, 3)
        self.assertEqual(self.one_json(out)["status"], "canceled")
        for b in blockers:
            self.ok("cancel", b)

    def test_unknown_job_exits_4(self):
        for cmd in ("status", "wait", "cancel", "download"):
            with self.subTest(cmd=cmd):
                args = [cmd, "AAAAAAAAAAAAAAAAAAAAAA"]
                if cmd == "download":
                    args += ["x.pdf", "-o", os.path.join(tempfile.gettempdir(), "offload-cli-%d.pdf" % os.getpid())]
                rc, out, err = self.cli(*args)
                self.assertEqual(rc, 4, err)
                self.assertEqual(out, "")
                self.assertRegex(self.one_line(err), r"^offload: 404 not_found: \S")
        # an id may start with '-': it is an argument, not an option
        rc, out, err = self.cli("status", "-AAAAAAAAAAAAAAAAAAAAA")
        self.assertEqual(rc, 4, err)
        self.assertIn("404 not_found", self.one_line(err))

    # -- listings --------------------------------------------------------------------
    def test_jobs_tasks_workers(self):
        jid = self.ok("submit", "fibonacci", "n=5", "--wait", "--json")[0]
        jid = json.loads(jid)["id"]
        out, _ = self.ok("jobs")
        self.assertRegex(out.splitlines()[0], r"^ID\s+TASK\s+STATUS\s+PROGRESS")
        self.assertIn(jid, out)
        j = self.one_json(self.ok("jobs", "--status", "complete", "--limit", "2", "--json")[0])
        self.assertLessEqual(len(j["jobs"]), 2)
        self.assertTrue(all(x["status"] == "complete" for x in j["jobs"]), j)
        rc, out, err = self.cli("jobs", "--status", "done")
        self.assertEqual(rc, 4)
        self.assertIn("400 invalid_param: status must be one of", self.one_line(err))
        out, _ = self.ok("tasks")
        for t in ("report", "spin", "stats", "pdf", "heavyIterations", "integer"):
            self.assertIn(t, out)
        self.assertIn("input: --file PATH", out)
        j = self.one_json(self.ok("tasks", "--json")[0])
        self.assertIn("spin", [t["name"] for t in j["tasks"]])
        out, _ = self.ok("workers")
        self.assertRegex(out, r"(?m)^0\s+thread\s+\d+\s+(idle|busy)")
        n = len(self.srv.get("/workers").json()["workers"])  # threads, and the image task's processes
        j = self.one_json(self.ok("workers", "--json")[0])
        self.assertEqual(len(j["workers"]), n)
        self.assertEqual(len(out.splitlines()), n + 1)
        # a name: each of its addresses is tried in turn (localhost may be ::1 first)
        out, _ = self.ok("workers", "--json", "--url", "localhost:%d" % self.srv.port, url=False)
        self.assertEqual(len(self.one_json(out)["workers"]), n)
        # global flags may also come before the command
        out, _ = self.ok("--url", self.url, "--json", "workers", url=False)
        self.assertEqual(len(self.one_json(out)["workers"]), n)

    # -- files -----------------------------------------------------------------------
    def test_upload_and_download(self):
        d = tempfile.mkdtemp(prefix="offload-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        csv = os.path.join(d, "prices.csv")
        with open(csv, "w") as f:
            f.write("id,unit price\n1,9.5\n2,10.5\n3,\"12.0\"\n")
        out, err = self.ok("submit", "stats", "column=unit price", "header=true", "--file", csv, "--wait", "--json")
        j = self.one_json(out)
        self.assertEqual(j["params"], {"column": "unit price", "header": True})
        self.assertEqual((j["result"]["count"], j["result"]["sum"]), (3, 32))
        # from stdin, with an explicit type
        p = subprocess.run([os.environ["OFFLOAD_BIN"], "submit", "stats", "--file", "-", "--type", "text/csv",
                            "--wait", "--url", self.url], input=b"v\n1\n2\n", capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["count"], 2)
        # the server refuses a type the task does not take
        rc, out, err = self.cli("submit", "stats", "--file", csv, "--type", "image/png")
        self.assertEqual(rc, 4)
        self.assertIn("415 unsupported_media_type", self.one_line(err))
        # a pdf, downloaded three ways
        out, err = self.ok("submit", "pdf", "title=CLI test", "content=Hello from the client.", "--wait", "--json")
        job = self.one_json(out)
        self.assertIn("files: document.pdf", err)
        jid = job["id"]
        size = job["files"][0]["bytes"]
        out, err = self.ok("download", jid, "document.pdf", cwd=d)
        self.assertEqual(out, "")
        with open(os.path.join(d, "document.pdf"), "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"%PDF"))
        self.assertEqual(len(data), size)
        target = os.path.join(d, "copy.pdf")
        self.ok("download", jid, "document.pdf", "-o", target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), data)
        p = subprocess.run([os.environ["OFFLOAD_BIN"], "download", jid, "document.pdf", "-o", "-", "--url", self.url],
                           capture_output=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, data))
        # a missing file: exit 4 and nothing left behind
        before = sorted(os.listdir(d))
        rc, out, err = self.cli("download", jid, "nope.pdf", "-o", os.path.join(d, "nope.pdf"))
        self.assertEqual(rc, 4)
        self.assertIn("404 not_found", self.one_line(err))
        self.assertEqual(sorted(os.listdir(d)), before)

    # -- the progress bar --------------------------------------------------------------
    def test_progress_bar_on_a_terminal_only(self):
        jid = self.ok("submit", "spin", "ms=2500")[0].strip()
        rc, screen, out = self.run_pty(["wait", jid])
        self.assertEqual(rc, 0, screen)
        self.assertEqual(out, b"null\n")
        self.assertRegex(screen, BAR_RE)
        self.assertIn(b"\r", screen)
        self.assertRegex(screen, rb"job %s \(spin\) complete in" % jid.encode())
        self.assertGreater(len(BAR_RE.findall(screen)), 3, "the bar was drawn only %r" % screen)
        # the same in a pipe: no bar, no carriage return
        jid = self.ok("submit", "spin", "ms=1500")[0].strip()
        rc, out, err = self.cli("wait", jid)
        self.assertEqual(rc, 0)
        self.assertNotRegex(err.encode(), BAR_RE)
        self.assertNotIn("\r", err)
        self.assertNotIn("\033", err)
        # submit --wait --json on a terminal: the bar on stderr, one document on stdout
        rc, screen, out = self.run_pty(["submit", "spin", "ms=1500", "--wait", "--json"])
        self.assertEqual(rc, 0, screen)
        self.assertRegex(screen, BAR_RE)
        self.assertEqual(json.loads(out)["status"], "complete")

    # -- top -----------------------------------------------------------------------------
    def test_top_quits_on_q_and_restores(self):
        self.ok("submit", "spin", "ms=3000")
        rc, screen, _ = self.run_pty(["top"], stdin_pty=True, timeout=30,
                                     send=lambda p, m: os.write(m, b"q"),
                                     send_after=lambda got: b"workers" in got and b"spin" in got)
        self.assertEqual(rc, 0, screen[-500:])
        self.assertIn(b"\033[?1049h", screen)  # the alternate screen
        self.assertIn(b"offload top", screen)
        self.assertRegex(screen, rb"queue\s+\d+ / \d+")
        self.assertTrue(screen.rstrip(b"\r\n").endswith(b"\033[?25h\033[?1049l"), screen[-100:])

    def test_top_quits_on_sigint(self):
        rc, screen, _ = self.run_pty(["top"], stdin_pty=True, timeout=30,
                                     send=lambda p, m: p.send_signal(signal.SIGINT),
                                     send_after=lambda got: b"workers" in got)
        self.assertEqual(rc, 0, screen[-500:])
        self.assertTrue(screen.rstrip(b"\r\n").endswith(b"\033[?25h\033[?1049l"), screen[-100:])

    def test_top_needs_a_terminal(self):
        rc, out, err = self.cli("top")
        self.assertEqual(rc, 2)
        self.assertIn("terminal", self.one_line(err))


class Auth(CliMixin, OffloadTestCase):
    TOKEN = "cli-test-token-0123456789abcdefghijklmnop"

    def test_a_server_that_wants_a_token(self):
        d = tempfile.mkdtemp(prefix="offload-cli-tokens-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "tokens")
        with open(path, "w") as f:
            f.write(self.TOKEN + "\n")
        os.chmod(path, 0o600)
        srv = self.start_server("--store", "memory", "--workers", "1", "--auth-token-file", path)
        self.url = "http://%s:%d" % (HOST, srv.port)
        rc, out, err = self.cli("jobs")
        self.assertEqual((rc, out), (4, ""))
        self.assertRegex(self.one_line(err), r"^offload: 401 unauthorized: \S")
        rc, out, err = self.cli("jobs", "--token", "not-" + self.TOKEN)
        self.assertEqual(rc, 4)
        self.assertIn("401 unauthorized", self.one_line(err))
        out, err = self.ok("submit", "fibonacci", "n=12", "--wait", "--token", self.TOKEN)
        self.assertEqual(out, "144\n")
        out, err = self.ok("jobs", "--json", env={"OFFLOAD_TOKEN": self.TOKEN})
        self.assertEqual(len(self.one_json(out)["jobs"]), 1)


class Unreachable(CliMixin, OffloadTestCase):

    def test_unreachable_exits_4(self):
        port = dead_port(self)
        url = "http://127.0.0.1:%d" % port
        for args, env in ((["jobs", "--url", url], None), (["status", "x"], {"OFFLOAD_URL": url}),
                          (["submit", "spin", "ms=1", "--wait", "--url", url], None), (["top", "--url", url], None),
                          (["wait", "x", "--url", url + "/"], None)):
            with self.subTest(args=args):
                rc, out, err = self.cli(*args, env=env, url=False)
                if args[0] == "top":  # not a terminal: that is said first
                    self.assertEqual(rc, 2)
                    continue
                self.assertEqual(rc, 4, err)
                self.assertEqual(out, "")
                self.assertIn("offload: cannot reach %s" % url, self.one_line(err))
                self.assertTrue(err.rstrip().endswith(": connection refused"), err)

    def test_ipv6_address(self):
        port = dead_port(self)
        rc, out, err = self.cli("jobs", "--url", "http://[::1]:%d" % port, url=False)
        self.assertEqual(rc, 4)
        self.assertRegex(self.one_line(err), r"^offload: cannot reach http://\[::1\]:%d: (connection refused|"
                         r"address not available|address family not supported)\n$" % port)

    def test_default_url(self):
        rc, out, err = self.cli("tasks", "--help", url=False)
        self.assertIn("http://127.0.0.1:3000", out)


if __name__ == "__main__":
    main()
