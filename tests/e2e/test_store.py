"""The job store: `--store sqlite --data-dir DIR [--durability strict|relaxed]`.

Jobs are kept in DIR/offload.db (SQLite, WAL) and survive a restart: a clean
stop (SIGTERM, drain), a crash (SIGKILL) mid-run or right after a 202. A
server refuses to start on a data dir it cannot use, with a message that
names the path and says what to do, and deletes or overwrites nothing.
`--store sqlite` is the default; `--store memory` keeps nothing: shown here
for contrast.

Every server is stopped by its pid (the harness); every data dir is a fresh
temporary directory removed at cleanup, after the servers using it stopped.
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from harness import _die_with_parent  # noqa: E402  (a refused server never outlives the test)

# A refused start must end within this many seconds (it is an open() and a
# read of one page: well under a second, even under ASan on a loaded machine).
REFUSAL_S = 5.0


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class StoreCase(OffloadTestCase):

    # -- data dirs and servers --------------------------------------------------
    def data_dir(self):
        """A fresh temp dir; the store's data dir is D/data inside it (so the
        server creates it, as --data-dir promises). Removed at cleanup, which
        runs after the cleanups of servers started later (LIFO)."""
        base = tempfile.mkdtemp(prefix="offload-store-")
        self.addCleanup(shutil.rmtree, base, True)
        return os.path.join(base, "data")

    def sqlite_server(self, d, *args, **kw):
        return self.start_server("--store", "sqlite", "--data-dir", d, *args, **kw)

    def term(self, srv, timeout=20):
        """SIGTERM and the exit code 0, within timeout seconds."""
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(timeout)
        self.assertIsNotNone(rc, "server pid %d still running %ss after SIGTERM" % (srv.pid, timeout))
        self.assertEqual(rc, 0, "SIGTERM: exit code %r\nstderr:\n%s" % (rc, srv.stderr()))

    def post_job(self, srv, body):
        """POST /jobs with a raw body (e.g. with "retries"); the 202's job."""
        r = srv.req("POST", "/jobs", body)
        self.assertEqual(r.status, 202, "POST /jobs %r: %r" % (body, r))
        self.assertJsonType(r)
        j = self.checkJob(r.json(), task=body["task"], params=body["params"])
        self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"])
        return j

    def listing(self, srv):
        r = srv.get("/jobs?limit=1000")
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        b = r.json()
        self.assertEqual(set(b.keys()), {"jobs"}, repr(b))
        for j in b["jobs"]:
            self.checkJob(j)
        return b["jobs"]

    def rows(self, d):
        """{id: (status, attempts)} straight from D/offload.db (read-only)."""
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "offload.db"), uri=True, timeout=5)
        try:
            return {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, status, attempts FROM jobs")}
        finally:
            con.close()

    def wait_on_disk(self, d, jid, status, timeout=5):
        """Polls D/offload.db (read-only, beside the running server) until the
        job's row has `status`: a GET answers from memory and may show a
        state change a moment before its commit lands."""
        self.wait_until(lambda: self.rows(d).get(jid, (None,))[0] == status, timeout, interval=0.01,
                        what="job %s %s on disk" % (jid, status))

    def run_cli(self, args, timeout=15):
        """Runs `offload serve ...` that is expected to refuse to start:
        (exit code, stdout, stderr, seconds). A server that starts anyway is
        killed and the test fails."""
        cmd = [os.environ["OFFLOAD_BIN"], "serve", "--host", HOST, "--port", "0"] + [str(a) for a in args]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_die_with_parent)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("%r still running after %ss (did not refuse); stdout=%r stderr=%r"
                      % (args, timeout, out[:300], err[-500:]))
        dt = time.monotonic() - t0
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), dt

    def assertRefused(self, args, must_contain):
        rc, out, err, dt = self.run_cli(args)
        what = "serve %s" % " ".join(str(a) for a in args)
        self.assertNotEqual(rc, 0, "%s: exit 0 (stdout=%r stderr=%r)" % (what, out, err))
        self.assertNotIn("listening", out, "%s: it listened: %r" % (what, out))
        self.assertLess(dt, REFUSAL_S, "%s: took %.1fs to refuse" % (what, dt))
        self.assertNotRegex(err, r"(AddressSanitizer|LeakSanitizer|runtime error:)", what)
        for s in must_contain:
            self.assertIn(s, err, "%s: stderr lacks %r: %r" % (what, s, err))
        return err


# ----------------------------------------------------------------------------
# 1. A restart keeps every job as it was
# ----------------------------------------------------------------------------

class Restart(StoreCase):

    def test_finished_jobs_survive_a_restart(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "2")
        subs = [("fibonacci", {"n": 20}, 6765), ("primes", {"max": 1000}, 168), ("spin", {"ms": 50}, None)]
        ids = []
        for task, params, _ in subs:
            ids.append(self.submit(srv, task, params)["id"])
            time.sleep(0.005)  # distinct createdAt (ms), so "newest first" is unambiguous
        before = {}
        for (task, params, result), jid in zip(subs, ids):
            j = self.wait_final(srv, jid, timeout=30)
            self.checkJob(j, expect_status="complete", task=task, params=params, job_id=jid)
            self.assertEqual(j["result"], result, repr(j))
            self.assertEqual(j["attempts"], 1, repr(j))
            before[jid] = j
        list_before = self.listing(srv)
        self.assertEqual([j["id"] for j in list_before], ids[::-1], "not newest first: %r" % list_before)
        self.term(srv)
        self.assertTrue(os.path.isfile(os.path.join(d, "offload.db")), os.listdir(d))

        srv2 = self.sqlite_server(d, "--workers", "2")
        for (task, params, result), jid in zip(subs, ids):
            j = self.job(srv2, jid)
            self.checkJob(j, expect_status="complete", task=task, params=params, job_id=jid)
            self.assertEqual(j["result"], result, repr(j))
            self.assertEqual(j["attempts"], 1, repr(j))
            for k in ("createdAt", "startedAt", "finishedAt"):
                self.assertEqual(j[k], before[jid][k], "%s changed over the restart: %r -> %r" % (k, before[jid], j))
            self.assertEqual(j, before[jid], "the job changed over the restart")
        list_after = self.listing(srv2)
        self.assertEqual([j["id"] for j in list_after], ids[::-1], "not newest first after restart: %r" % list_after)
        self.assertEqual(list_after, list_before)
        # the restored server still takes new jobs, newest first ahead of the old ones
        n = self.submit(srv2, "fibonacci", {"n": 10})
        self.assertEqual(self.wait_final(srv2, n["id"])["result"], 55)
        self.assertEqual([j["id"] for j in self.listing(srv2)], [n["id"]] + ids[::-1])
        self.term(srv2)


# ----------------------------------------------------------------------------
# 2. SIGTERM: the running job drains, queued jobs stay queued (sqlite) or are
#    canceled (memory)
# ----------------------------------------------------------------------------

class DrainKeepsQueued(StoreCase):

    def submit_three(self, srv):
        jobs = [self.submit(srv, "spin", {"ms": 1000}) for _ in range(3)]
        # the first is the one the single worker runs (it has taken it within ms)
        self.wait_status(srv, jobs[0]["id"], "processing", 10)
        for j in jobs[1:]:
            self.assertEqual(self.job(srv, j["id"])["status"], "queued")
        return [j["id"] for j in jobs]

    def test_sqlite_queued_jobs_wait_for_the_next_start(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "1", "--drain-timeout-s", "5")
        run, q1, q2 = self.submit_three(srv)
        t0 = time.monotonic()
        self.term(srv)
        dt = time.monotonic() - t0
        # the running spin (<= 1 s left) finished; the two queued ones (1 s each) did not run
        self.assertLess(dt, 2.8 if not is_asan() else 4.0, "exit took %.1fs: the queued jobs ran?" % dt)
        rows = self.rows(d)
        self.assertEqual(rows.get(run), ("complete", 1), "the running job on disk: %r" % rows)
        self.assertEqual(rows.get(q1), ("queued", 0), "queued job on disk after the drain: %r" % rows)
        self.assertEqual(rows.get(q2), ("queued", 0), "queued job on disk after the drain: %r" % rows)

        t_restart = time.time() * 1000
        srv2 = self.sqlite_server(d, "--workers", "1")
        j = self.job(srv2, run)
        self.checkJob(j, expect_status="complete", task="spin", job_id=run)
        self.assertEqual(j["attempts"], 1, repr(j))
        for jid in (q1, q2):
            j = self.wait_final(srv2, jid, timeout=20)
            self.checkJob(j, expect_status="complete", task="spin", params={"ms": 1000}, job_id=jid)
            self.assertEqual(j["attempts"], 1, repr(j))
            self.assertIsNone(j["error"], repr(j))
            self.assertGreaterEqual(j["startedAt"], t_restart - 5, "ran before the restart? %r" % j)
        self.term(srv2)

    def test_memory_queued_jobs_are_canceled(self):
        srv = self.start_server("--store", "memory", "--workers", "1", "--drain-timeout-s", "5")
        run, q1, q2 = self.submit_three(srv)
        # held waits, sent before the signal: they answer with each job's final state
        waiters = {}
        for jid in (run, q1, q2):
            c = self.raw(srv, timeout=30)
            c.send(build_request("GET", "/jobs/%s?wait=30" % jid))
            waiters[jid] = c
        time.sleep(0.2)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        for jid in (q1, q2):
            r = waiters[jid].read_response(timeout=20)
            self.assertEqual(r.status, 200, repr(r))
            j = self.checkJob(r.json(), expect_status="canceled", job_id=jid)
            self.assertEqual(j["error"]["code"], "canceled", repr(j))
            self.assertEqual(j["attempts"], 0, repr(j))
        r = waiters[run].read_response(timeout=20)
        self.assertEqual(r.status, 200, repr(r))
        self.checkJob(r.json(), expect_status="complete", job_id=run)
        rc = srv.wait_exit(20)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        self.assertLess(dt, 2.8 if not is_asan() else 4.0, "exit took %.1fs: the queued jobs ran?" % dt)


# ----------------------------------------------------------------------------
# 3. SIGKILL mid-run: the running job is interrupted (or retried), the queued
#    ones run after the restart
# ----------------------------------------------------------------------------

class KillMidRun(StoreCase):

    def kill_while_running(self, d, retries):
        srv = self.sqlite_server(d, "--workers", "1")
        spin = self.post_job(srv, {"task": "spin", "params": {"ms": 3000}, "retries": retries})
        shorts = [self.submit(srv, "fibonacci", {"n": 20})["id"], self.submit(srv, "spin", {"ms": 1})["id"]]
        self.wait_status(srv, spin["id"], "processing", 10)
        self.wait_on_disk(d, spin["id"], "processing")  # the start is written
        for jid in shorts:
            self.assertEqual(self.job(srv, jid)["status"], "queued")
        srv.kill()
        self.assertFalse(srv.alive())
        return spin["id"], shorts

    def check_shorts_complete(self, srv, shorts):
        f = self.wait_final(srv, shorts[0], timeout=20)
        self.checkJob(f, expect_status="complete", task="fibonacci", params={"n": 20})
        self.assertEqual(f["result"], 6765)
        self.assertEqual(f["attempts"], 1, repr(f))
        s = self.wait_final(srv, shorts[1], timeout=20)
        self.checkJob(s, expect_status="complete", task="spin", params={"ms": 1})
        self.assertEqual(s["attempts"], 1, repr(s))

    def test_interrupted_without_retries_fails(self):
        d = self.data_dir()
        spin, shorts = self.kill_while_running(d, 0)
        srv2 = self.sqlite_server(d, "--workers", "1")
        j = self.wait_final(srv2, spin, timeout=10)
        self.checkJob(j, expect_status="failed", task="spin", params={"ms": 3000}, job_id=spin)
        self.assertEqual(j["error"]["code"], "interrupted", repr(j))
        self.assertEqual(j["attempts"], 1, repr(j))
        self.check_shorts_complete(srv2, shorts)
        # the verdict is on disk too: a second restart says the same
        self.term(srv2)
        srv3 = self.sqlite_server(d, "--workers", "1")
        j3 = self.job(srv3, spin)
        self.assertEqual(j3, j)
        self.term(srv3)

    def test_interrupted_with_a_retry_runs_again(self):
        d = self.data_dir()
        spin, shorts = self.kill_while_running(d, 1)
        srv2 = self.sqlite_server(d, "--workers", "1")
        j = self.wait_final(srv2, spin, timeout=30)
        self.checkJob(j, expect_status="complete", task="spin", params={"ms": 3000}, job_id=spin)
        self.assertEqual(j["attempts"], 2, repr(j))
        self.assertEqual(j.get("retries"), 1, repr(j))
        self.assertGreaterEqual(j["finishedAt"] - j["startedAt"], 2900, "a full second run: %r" % j)
        self.check_shorts_complete(srv2, shorts)
        self.term(srv2)


# ----------------------------------------------------------------------------
# 4. A 202 is a promise: a SIGKILL right after it loses nothing
# ----------------------------------------------------------------------------

class KillAfterAccept(StoreCase):

    def accept_20_then_kill(self, srv):
        """20 spins of 1 ms submitted as fast as one keep-alive connection
        goes; SIGKILL right after the last 202. Their ids."""
        ids = []
        c = self.raw(srv, timeout=15)
        for _ in range(20):
            r = c.request("POST", "/jobs", {"task": "spin", "params": {"ms": 1}})
            self.assertEqual(r.status, 202, repr(r))
            ids.append(r.json()["id"])
        srv.kill()  # right after the last 202
        self.assertEqual(len(set(ids)), 20)
        return ids

    def assertAllExist(self, srv, ids, what):
        missing = [jid for jid in ids if srv.get("/jobs/%s" % jid).status != 200]
        self.assertEqual(missing, [], "%s: %d of %d accepted jobs lost after SIGKILL" % (what, len(missing), len(ids)))

    def test_accepted_jobs_survive_sigkill_while_queued(self):
        # One worker, held by a long spin: all 20 are still queued at the kill,
        # so each of them must come back and complete.
        for durability in ("strict", "relaxed"):
            with self.subTest(durability=durability):
                d = self.data_dir()
                srv = self.sqlite_server(d, "--durability", durability, "--workers", "1")
                blocker = self.submit(srv, "spin", {"ms": 3000})["id"]
                self.wait_status(srv, blocker, "processing", 10)
                self.wait_on_disk(d, blocker, "processing")
                ids = self.accept_20_then_kill(srv)
                srv2 = self.sqlite_server(d, "--durability", durability, "--workers", "1")
                self.assertAllExist(srv2, ids, durability)
                b = self.wait_final(srv2, blocker, timeout=10)
                self.assertEqual((b["status"], b["error"] and b["error"]["code"]), ("failed", "interrupted"), repr(b))
                for jid in ids:
                    j = self.wait_final(srv2, jid, timeout=20)
                    self.checkJob(j, expect_status="complete", task="spin", params={"ms": 1}, job_id=jid)
                    self.assertEqual(j["attempts"], 1, repr(j))
                self.term(srv2)

    def test_accepted_jobs_survive_sigkill_mid_run(self):
        # Two idle workers: at the kill, the 20 are a mix of complete, running
        # and queued. Every one comes back. Each ends as the store's rules
        # say for the state the killed server left on disk: complete stays
        # complete, queued runs and completes, one that was processing (no
        # retries) ends failed with `interrupted` (see KillMidRun).
        for durability in ("strict", "relaxed"):
            with self.subTest(durability=durability):
                d = self.data_dir()
                srv = self.sqlite_server(d, "--durability", durability, "--workers", "2")
                ids = self.accept_20_then_kill(srv)
                on_disk = self.rows(d)  # what the killed server left (read-only)
                self.assertEqual(sorted(jid for jid in ids if jid not in on_disk), [],
                                 "%s: accepted jobs not on disk after SIGKILL" % durability)
                srv2 = self.sqlite_server(d, "--durability", durability, "--workers", "2")
                self.assertAllExist(srv2, ids, durability)
                for jid in ids:
                    j = self.wait_final(srv2, jid, timeout=20)
                    status, attempts = on_disk[jid]
                    self.assertIn(status, ("queued", "processing", "complete"), "%s on disk: %r" % (jid, on_disk[jid]))
                    if status == "processing":
                        self.checkJob(j, expect_status="failed", task="spin", params={"ms": 1}, job_id=jid)
                        self.assertEqual(j["error"]["code"], "interrupted", repr(j))
                    else:
                        self.checkJob(j, expect_status="complete", task="spin", params={"ms": 1}, job_id=jid)
                    self.assertEqual(j["attempts"], 1, repr(j))
                self.term(srv2)


# ----------------------------------------------------------------------------
# 5. Refusals at start
# ----------------------------------------------------------------------------

class Refusals(StoreCase):

    def test_not_a_database(self):
        for name, content in (("short", b"hello, I am a text file\n"),
                              ("long", b"".join(b"line %d: not SQLite at all\n" % i for i in range(400)))):
            with self.subTest(file=name):
                d = self.data_dir()
                os.makedirs(d)
                db = os.path.join(d, "offload.db")
                with open(db, "wb") as f:
                    f.write(content)
                self.assertRefused(["--store", "sqlite", "--data-dir", d], [db, "not an offload database"])
                with open(db, "rb") as f:
                    self.assertEqual(f.read(), content, "offload.db was changed")
                self.assertFalse(os.path.exists(db + "-wal") and os.path.getsize(db + "-wal") > 0,
                                 "a WAL was written next to a file that is not ours")

    def test_newer_schema(self):
        d = self.data_dir()
        os.makedirs(d)
        db = os.path.join(d, "offload.db")
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE future (x INTEGER)")
        con.execute("INSERT INTO future VALUES (42)")
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
        self.assertRefused(["--store", "sqlite", "--data-dir", d], [db, "newer"])
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            self.assertEqual(con.execute("PRAGMA user_version").fetchone()[0], 99)
            self.assertEqual(con.execute("SELECT x FROM future").fetchall(), [(42,)])
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.assertEqual(tables, {"future"}, "tables were added to a newer database")
        finally:
            con.close()

    def test_data_dir_in_use(self):
        d = self.data_dir()
        first = self.sqlite_server(d, "--workers", "1")
        j = self.submit(first, "fibonacci", {"n": 20})
        self.assertEqual(self.wait_final(first, j["id"])["result"], 6765)
        lock = os.path.join(d, "offload.lock")
        lock_before = read_bytes(lock) if os.path.exists(lock) else None

        err = self.assertRefused(["--store", "sqlite", "--data-dir", d],
                                 ["in use by another running offload", str(first.pid), d])
        if lock_before is not None:
            self.assertEqual(read_bytes(lock), lock_before, "the refused server rewrote the lock file")
        # the first server keeps working, and its store still takes writes
        self.assertTrue(first.alive())
        self.health(first)  # 200
        k = self.submit(first, "primes", {"max": 1000})
        self.assertEqual(self.wait_final(first, k["id"])["result"], 168)
        self.term(first)
        srv2 = self.sqlite_server(d, "--workers", "1")
        self.assertEqual(self.job(srv2, j["id"])["result"], 6765)
        self.assertEqual(self.job(srv2, k["id"])["result"], 168)
        self.term(srv2)

    def test_data_dir_cannot_be_created(self):
        path = "/proc/offload-nope"
        self.assertRefused(["--store", "sqlite", "--data-dir", path], [path, "--data-dir"])
        self.assertFalse(os.path.exists(path))


# ----------------------------------------------------------------------------
# 6. Flag validation
# ----------------------------------------------------------------------------

class Flags(StoreCase):

    def test_bad_values_exit_2(self):
        d = self.data_dir()
        for args, flag in ((["--store", "disk"], "--store"),
                           (["--store", "sqlite", "--data-dir", d, "--durability", "maybe"], "--durability"),
                           (["--durability", "maybe"], "--durability")):
            with self.subTest(args=args):
                rc, out, err, dt = self.run_cli(args)
                self.assertEqual(rc, 2, "%r: exit %r, stderr %r" % (args, rc, err))
                self.assertNotIn("listening", out)
                self.assertIn(flag, err, "%r: the message does not name the flag: %r" % (args, err))
        self.assertFalse(os.path.exists(d), "a refused command line created the data dir")

    def test_help_lists_the_store_flags(self):
        rc, out, err, dt = self.run_cli(["--help"])
        self.assertEqual(rc, 0, err)
        for f in ("--store", "--data-dir", "--durability"):
            self.assertIn(f, out)


# ----------------------------------------------------------------------------
# 7. The API is unchanged with --store sqlite
# ----------------------------------------------------------------------------

class ApiWithSqlite(StoreCase):

    def test_replies(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "1")
        # a POST's 202 is the job object, not yet started
        for body in ({"task": "spin", "params": {"ms": 400}}, {"task": "spin", "params": {"ms": 1}},
                     {"task": "primes", "params": {"max": 1000}}):
            r = srv.req("POST", "/jobs", body)
            self.assertEqual(r.status, 202, repr(r))
            self.assertJsonType(r)
            j = self.checkJob(r.json(), task=body["task"], params=body["params"])
            self.assertIn(j["status"], ("queued", "processing"), repr(j))
            # the 202 follows the row's commit: a worker may have taken the job by then
            self.assertEqual(j["attempts"], 0 if j["status"] == "queued" else 1, repr(j))
            self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"])
        # the seeds' report API
        r = srv.get("/tasks/reports/start?heavyIterations=1000")
        report_id = self.checkReportAccepted(r)
        # the held fibonacci request
        r = srv.get("/fibonacci/20", timeout=30)
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        self.assertEqual(r.json(), {"n": 20, "result": 6765})
        rep = self.wait_final(srv, report_id)
        self.assertEqual(rep["status"], "complete")
        self.assertTrue(rel_close(rep["result"], sqrt_sum(1000), 1e-9), repr(rep))
        self.term(srv)


if __name__ == "__main__":
    main()
