"""Plug-ins (--plugin FILE.so, docs/PLUGINS.md), end to end.

- The example plug-in (examples/plugin/wordfreq.so, built by CMake with the
  line of its Makefile) loads: GET /tasks lists wordfreq after the built-ins
  with its params and input; a wordfreq job over an upload equals a Python
  count of the same text (top, ties, case, non-letters, an empty body).
- The test plug-in (testplugins/good.so from tests/plugins/testplug.c): its
  dotted task names work on every route (POST /jobs, POST /jobs/<task>); a
  task that declares PROCESS runs in a worker process (its pid is not the
  server's, its parent is), and one that segfaults fails the job
  worker_crashed while the server lives on. Under --isolation process the
  workers load the plug-ins too.
- A plug-in's jobs survive a restart with the plug-in; without it the
  server starts and leaves them on disk.
- Startup fails (non-zero exit, nothing listening) with a message naming the
  file and the fix for a missing file, no ABI symbol, a wrong ABI version, a
  name clash (with a built-in, between two plug-ins), a bad definition and
  an unresolved symbol.
- The binary exports every function of include/offload/task.h and no other
  symbol of the server (nm -D).
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.dirname(os.path.abspath(os.environ.get("OFFLOAD_BIN", ".")))
WORDFREQ = os.environ.get("OFFLOAD_EXAMPLE_PLUGIN") or os.path.join(BUILD, "examples", "plugin", "wordfreq.so")
TESTPLUG = os.environ.get("OFFLOAD_TESTPLUG_DIR") or os.path.join(BUILD, "testplugins")
TEXT_CT = {"Content-Type": "text/plain"}


def plug(name):
    return os.path.join(TESTPLUG, name + ".so")


def wordfreq(data, top=10):
    """What the wordfreq task answers, the Python way."""
    words = [w.lower().decode() for w in re.findall(rb"[A-Za-z]+", data)]
    ranked = sorted(collections.Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))
    return {"words": len(words), "top": [{"word": w, "count": n} for w, n in ranked[:top]]}


class PluginCase(OffloadTestCase):

    def upload(self, srv, task, query, body, headers=TEXT_CT):
        return srv.req("POST", "/jobs/%s%s" % (task, query), body, headers)

    def final_ok(self, srv, r, timeout=60):
        self.assertEqual(r.status, 202, repr(r))
        j = self.wait_final(srv, r.json()["id"], timeout=timeout)
        self.assertEqual(j["status"], "complete", repr(j))
        return j


class Plugins(PluginCase):

    @classmethod
    def setUpClass(cls):
        for f in (WORDFREQ, plug("good")):
            if not os.path.isfile(f):
                raise AssertionError("%s is not built (CMake builds it with the offload target's build)" % f)
        cls.srv = Server(["--workers", "2", "--process-workers", "1", "--store", "memory",
                          "--plugin", WORDFREQ, "--plugin", plug("good")])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_tasks_lists_them_after_the_builtins(self):
        tasks = self.srv.get("/tasks").json()["tasks"]
        names = [t["name"] for t in tasks]
        self.assertEqual(names[-3:], ["wordfreq", "plugtest.echo", "plugtest.where"], names)
        self.assertTrue(TASKS <= set(names[:-3]), names)
        by = {t["name"]: t for t in tasks}
        wf = by["wordfreq"]
        self.assertEqual(wf["isolation"], "thread")
        self.assertEqual(wf["input"], {"required": True, "contentTypes": ["text/plain"]})
        self.assertEqual(wf["params"], [{"name": "top", "type": "integer", "required": False, "min": 1, "max": 100,
                                         "default": 10,
                                         "description": "how many of the most frequent words to list"}])
        self.assertTrue(wf["description"])
        self.assertEqual(by["plugtest.where"]["isolation"], "process")
        self.assertEqual([p["name"] for p in by["plugtest.echo"]["params"]], ["word", "times"])
        self.assertEqual(by["plugtest.echo"]["params"][0]["enum"], ["hi", "ho"])

    def test_wordfreq(self):
        cases = [
            (b"The cat and the hat. THE end, cat!", ""),
            (b"The cat and the hat. THE end, cat!", "?top=2"),
            (b"b a c b a c", "?top=1"),  # ties: alphabetical
            (b"don't stop-me now2go caf\xc3\xa9 na\xefve 42 x_y", "?top=100"),  # non-letters split
            (b"", ""),
            (b" \n\t1234 !!", "?top=5"),
            (b"Zebra", "?top=3"),
        ]
        for body, q in cases:
            with self.subTest(body=body, q=q):
                j = self.final_ok(self.srv, self.upload(self.srv, "wordfreq", q, body))
                top = int(q.split("=")[1]) if q else 10
                self.assertEqual(j["result"], wordfreq(body, top))
                self.assertEqual(j["params"], {"top": top} if q else {})

    def test_wordfreq_big_text(self):
        words = ["alpha", "Beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
        parts = []
        for i in range(120000):
            parts.append(words[(i * i + 3 * i) % len(words)] + ("," if i % 7 == 0 else " "))
            if i % 11 == 0:
                parts.append("w%dx " % (i % 500))
        body = "".join(parts).encode()
        j = self.final_ok(self.srv, self.upload(self.srv, "wordfreq", "?top=12", body), timeout=120)
        self.assertEqual(j["result"], wordfreq(body, 12))

    def test_wordfreq_refusals(self):
        r = self.upload(self.srv, "wordfreq", "?top=0", b"a b")
        self.assertError(r, 400, "invalid_param", "params.top")
        r = self.upload(self.srv, "wordfreq", "?top=101", b"a b")
        self.assertError(r, 400, "invalid_param", "params.top")
        r = self.upload(self.srv, "wordfreq", "?depth=1", b"a b")
        self.assertEqual(r.status, 400, repr(r))
        r = self.upload(self.srv, "wordfreq", "", b"{}", {"Content-Type": "application/json"})
        self.assertEqual(r.status, 415, repr(r))
        r = self.srv.req("POST", "/jobs", {"task": "wordfreq", "params": {}})
        self.assertEqual(r.status, 400, repr(r))  # its input is required

    def test_dotted_names_on_every_route(self):
        j = self.submit(self.srv, "plugtest.echo", {"word": "ho", "times": 4})
        j = self.wait_final(self.srv, j["id"])
        self.assertEqual(j["result"], {"echo": "ho", "times": 4})
        j = self.submit(self.srv, "plugtest.echo", {})
        self.assertEqual(self.wait_final(self.srv, j["id"])["result"], {"echo": "hi", "times": 1})
        r = self.submit(self.srv, "plugtest.echo", {"times": 10}, expect=400)
        self.assertError(r, 400, "invalid_param", "params.times")
        # POST /jobs/<task> finds the dotted name (and says it takes no input).
        r = self.upload(self.srv, "plugtest.echo", "", b"x")
        self.assertError(r, 400, "invalid_param", "task", message_contains=("plugtest.echo takes no input",))
        r = self.upload(self.srv, "no.such.task", "", b"x")
        self.assertError(r, 400, "unknown_task", "task", message_contains=("wordfreq", "plugtest.where"))
        r = self.upload(self.srv, "a" * 65, "", b"x")
        self.assertError(r, 400, "unknown_task", "task")

    def test_process_task_runs_in_a_worker_process(self):
        j = self.submit(self.srv, "plugtest.where", {})
        j = self.wait_final(self.srv, j["id"])
        self.assertEqual(j["status"], "complete", repr(j))
        self.assertNotEqual(j["result"]["pid"], self.srv.pid)
        self.assertEqual(j["result"]["ppid"], self.srv.pid)
        with open("/proc/%d/cmdline" % j["result"]["pid"], "rb") as f:
            argv = f.read().split(b"\0")
        self.assertEqual(argv[1:6], [b"worker", b"--plugin", os.path.realpath(WORDFREQ).encode(),
                                     b"--plugin", os.path.realpath(plug("good")).encode()])

    def test_crash_in_a_plugin_fails_the_job_not_the_server(self):
        j = self.submit(self.srv, "plugtest.where", {"crash": True})
        j = self.wait_final(self.srv, j["id"])
        self.assertEqual(j["status"], "failed", repr(j))
        self.assertEqual(j["error"]["code"], "worker_crashed", repr(j))
        self.assertEqual(self.health(self.srv)["status"], "ok")
        # The slot's new worker loaded the plug-in too.
        j = self.submit(self.srv, "plugtest.where", {})
        self.assertEqual(self.wait_final(self.srv, j["id"])["status"], "complete")


class PluginsInProcesses(PluginCase):

    def test_isolation_process_runs_plugin_tasks_in_workers(self):
        srv = self.start_server("--workers", "1", "--isolation", "process", "--store", "memory",
                                "--plugin", WORDFREQ, "--plugin", plug("good"))
        tasks = {t["name"]: t for t in srv.get("/tasks").json()["tasks"]}
        self.assertEqual(tasks["wordfreq"]["isolation"], "process")
        body = b"one two two three three three " * 1000
        j = self.final_ok(srv, self.upload(srv, "wordfreq", "?top=2", body))
        self.assertEqual(j["result"], wordfreq(body, 2))
        j = self.submit(srv, "plugtest.echo", {"times": 2})
        self.assertEqual(self.wait_final(srv, j["id"])["result"], {"echo": "hi", "times": 2})


class PluginJobsAcrossRestarts(PluginCase):

    def test_restart_with_and_without_the_plugin(self):
        d = tempfile.mkdtemp(prefix="offload-plugins-")
        self.addCleanup(shutil.rmtree, d, True)
        data = os.path.join(d, "data")
        srv = self.start_server("--workers", "1", "--data-dir", data, "--plugin", WORDFREQ)
        j = self.final_ok(srv, self.upload(srv, "wordfreq", "?top=1", b"b a b"))
        srv.stop()
        srv = self.start_server("--workers", "1", "--data-dir", data, "--plugin", WORDFREQ)
        self.assertEqual(self.job(srv, j["id"])["result"], {"words": 3, "top": [{"word": "b", "count": 2}]})
        srv.stop()
        srv = self.start_server("--workers", "1", "--data-dir", data)
        self.assertEqual(srv.get("/jobs/%s" % j["id"]).status, 404)
        self.wait_until(lambda: "task wordfreq, which this server does not offer" in srv.stderr(), 10,
                        what="the left-on-disk warning on stderr")


class StartupFailures(PluginCase):

    def run_serve(self, *plugins):
        args = [os.environ["OFFLOAD_BIN"], "serve", "--host", HOST, "--port", "0", "--store", "memory"]
        for p in plugins:
            args += ["--plugin", p]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("%r still running: a bad plug-in was accepted; stdout=%r" % (plugins, out[:300]))
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def assertRefused(self, plugins, *says):
        rc, out, err = self.run_serve(*plugins)
        self.assertNotEqual(rc, 0, "started with %r: %s" % (plugins, out))
        self.assertNotIn("listening", out)
        self.assertNotRegex(err, r"(AddressSanitizer|LeakSanitizer|runtime error:)")
        for s in says:
            self.assertIn(s, err)
        return err

    def test_missing_file(self):
        missing = os.path.join(TESTPLUG, "nope.so")
        self.assertRefused([missing], "plug-in %s: No such file or directory" % missing,
                           "give --plugin the path of a shared object")

    def test_no_abi_symbol(self):
        self.assertRefused([plug("noabi")], "plug-in %s has no offload_plugin_abi symbol" % plug("noabi"),
                           "built against include/offload/task.h? export it with OFFLOAD_PLUGIN(...)")

    def test_wrong_abi(self):
        with open(os.path.join(ROOT, "include", "offload", "task.h")) as f:
            abi = int(re.search(r"#define OFFLOAD_PLUGIN_ABI (\d+)", f.read()).group(1))
        self.assertRefused([plug("badabi")], "plug-in %s has the wrong ABI version" % plug("badabi"),
                           "rebuild it against this server's include/offload/task.h (ABI %d, the plug-in has %d)"
                           % (abi, abi + 41))  # testplug.c's BADABI

    def test_clash_with_a_builtin(self):
        self.assertRefused([plug("clash")],
                           "plug-in %s: task \"stats\" clashes with the built-in task stats; rename it" % plug("clash"))

    def test_clash_between_plugins(self):
        self.assertRefused([plug("good"), plug("dup")],
                           "plug-in %s: task \"plugtest.echo\" clashes with task plugtest.echo of plug-in %s"
                           % (plug("dup"), os.path.realpath(plug("good"))), "rename one of them")

    def test_bad_definition(self):
        self.assertRefused([plug("baddef")], "plug-in %s: task #1 \"plugtest.norun\": run is NULL" % plug("baddef"),
                           "fix its offload_task_def_t and rebuild it")

    def test_unresolved_symbol(self):
        self.assertRefused([plug("undef")], "plug-in %s cannot be loaded" % plug("undef"),
                           "offload_task_not_exported")

    def test_a_good_one_then_a_bad_one(self):
        self.assertRefused([WORDFREQ, plug("badabi")], plug("badabi"))

    def test_help_lists_the_flag(self):
        r = subprocess.run([os.environ["OFFLOAD_BIN"], "serve", "--help"], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--plugin FILE.so", r.stdout)


class Exports(unittest.TestCase):

    def test_the_task_api_and_nothing_else(self):
        nm = shutil.which("nm")
        if not nm:
            self.skipTest("no nm")
        with open(os.path.join(ROOT, "include", "offload", "task.h")) as f:
            declared = set(re.findall(r"\b(offload_task_\w+)\s*\(", f.read()))
        self.assertIn("offload_task_result_json", declared)
        out = subprocess.run([nm, "-D", "--defined-only", os.environ["OFFLOAD_BIN"]], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
        self.assertEqual(declared - exported, set(), "task.h functions the binary does not export "
                         "(add them to src/tasks/plugin_api.dynlist)")
        ours = {s for s in exported if re.match(r"(offload|tasks?|pool|registry|api|http|store|plugins?)_", s)}
        self.assertEqual(ours, declared, "the binary exports more than the task API")


if __name__ == "__main__":
    main()
