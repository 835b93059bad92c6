"""Durability beyond a restart: Idempotency-Key, a full disk, retention on
disk, and the queue's order across a crash (`--store sqlite`; `--store
memory` where the contract is the same for both).

1. `Idempotency-Key` on `POST /jobs` and `GET /tasks/reports/start`: the same
   key with the same request returns the original job (200, same id, its
   Location); with another task or params it is `409 idempotency_conflict`
   (`param` `Idempotency-Key`); a bad key (empty, over 255 characters, not
   visible ASCII) is `400 invalid_param`. 50 clients sending one key at once
   create exactly one job (one 202, 49 x 200). A key lives as long as its
   job: across a restart with `--store sqlite`, and no longer than
   retention keeps the job.
2. A full disk (a 4 MiB tmpfs, needs root): submissions get `503
   store_unavailable` while reads keep working and nothing accepted is lost;
   once space is free again submissions succeed without a restart.
3. Retention on disk: `--retention-s` and `--max-finished` delete the rows of
   offload.db too, and an expired job does not come back after a restart.
4. Jobs queued when the server is SIGKILLed run after the restart in the
   order they were submitted.

Servers are stopped by their pid (the harness); data dirs are temporary
and removed (a tmpfs unmounted) after the servers using them stopped.
"""
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from test_store import StoreCase  # noqa: E402

KEY = "Idempotency-Key"
JSON_CT = {"Content-Type": "application/json"}


def keyed(key, extra=None):
    h = dict(JSON_CT)
    h[KEY] = key
    h.update(extra or {})
    return h


class DurabilityCase(StoreCase):

    # -- replies ---------------------------------------------------------------
    def post(self, srv, body, key=None, timeout=HTTP_TIMEOUT):
        return srv.req("POST", "/jobs", body, keyed(key) if key is not None else dict(JSON_CT), timeout=timeout)

    def seed_start(self, srv, n, key=None):
        return srv.req("GET", "/tasks/reports/start?heavyIterations=%d" % n,
                       headers={KEY: key} if key is not None else None)

    def checkCreated(self, r, task, params):
        """A 202 of POST /jobs: the new job (checked) and its Location."""
        self.assertEqual(r.status, 202, repr(r))
        self.assertJsonType(r)
        j = self.checkJob(r.json(), expect_status={"queued", "processing", "complete"}, task=task, params=params)
        self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"], repr(r))
        return j

    def checkReplayed(self, r, job_id, task, params):
        """A 200 of POST /jobs for a key already held: the original job, with
        its Location."""
        self.assertEqual(r.status, 200, "same key, same request: expected 200 with job %s, got %r" % (job_id, r))
        self.assertJsonType(r)
        j = self.checkJob(r.json(), task=task, params=params, job_id=job_id)
        self.assertEqual(r.header("Location"), "/jobs/%s" % job_id, repr(r))
        return j

    def checkSeedReplayed(self, r, job_id):
        """A 200 of /tasks/reports/start for a key already held: the seed's
        body for the original job, with its Location."""
        self.assertEqual(r.status, 200, "same key, same start URL: expected 200 with job %s, got %r" % (job_id, r))
        self.assertJsonType(r)
        b = r.json()
        self.assertEqual(set(b.keys()), {"jobId", "status", "statusUrl"}, repr(b))
        self.assertEqual(b["jobId"], job_id, repr(b))
        self.assertIn(b["status"], STATUSES, repr(b))
        self.assertEqual(b["statusUrl"], "/tasks/reports/%s" % job_id, repr(b))
        self.assertEqual(r.header("Location"), "/tasks/reports/%s" % job_id, repr(r))

    def checkConflict(self, r):
        return self.assertError(r, 409, "idempotency_conflict", param=KEY)

    def jobs_with(self, srv, task, params):
        return [j for j in self.listing(srv) if j["task"] == task and j["params"] == params]

    def key_rows(self, d, key):
        """Ids of the rows of D/offload.db holding this idempotency key (read-only)."""
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "offload.db"), uri=True, timeout=5)
        try:
            return [r[0] for r in con.execute("SELECT id FROM jobs WHERE idempotency_key = ?", (key,))]
        finally:
            con.close()

    def param_rows(self, d, task, params):
        """Ids of the rows of D/offload.db of this task and params (read-only)."""
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "offload.db"), uri=True, timeout=5)
        try:
            return [r[0] for r in con.execute("SELECT id, params FROM jobs WHERE task = ?", (task,))
                    if json.loads(r[1]) == params]
        finally:
            con.close()

    def parallel_posts(self, srv, n, body, key):
        """n clients, each on its own connection (all connected first), POST
        the same body and key at once (a barrier releases them); the replies."""
        conns = [self.raw(srv, timeout=30) for _ in range(n)]
        barrier = threading.Barrier(n)
        replies = [None] * n
        req = build_request("POST", "/jobs", body, keyed(key))

        def client(i):
            try:
                barrier.wait(10)
                conns[i].send(req)
                replies[i] = conns[i].read_response(timeout=30)
            except Exception as e:  # reported below, with the rest
                replies[i] = e

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client got no reply within 60 s")
        errors = [r for r in replies if not isinstance(r, Response)]
        self.assertEqual(errors, [], "clients failed")
        return replies

    def restart(self, srv, d, *args):
        self.term(srv)
        return self.sqlite_server(d, *args)


# ----------------------------------------------------------------------------
# 1. Idempotency-Key
# ----------------------------------------------------------------------------

class IdempotencyKey(DurabilityCase):

    def servers(self):
        """(name, server, data dir or None): one of each store."""
        d = self.data_dir()
        return [("memory", self.start_server("--store", "memory", "--workers", "2"), None),
                ("sqlite", self.sqlite_server(d, "--workers", "2"), d)]

    def test_same_key_returns_the_original_job(self):
        for store, srv, d in self.servers():
            with self.subTest(store=store):
                body = {"task": "fibonacci", "params": {"n": 21}}
                first = self.checkCreated(self.post(srv, body, "order-1"), "fibonacci", {"n": 21})
                # the same request again, while it may still run and once final
                again = self.checkReplayed(self.post(srv, body, "order-1"), first["id"], "fibonacci", {"n": 21})
                self.assertEqual(again["createdAt"], first["createdAt"], repr(again))
                done = self.wait_final(srv, first["id"])
                self.assertEqual(done["result"], 10946, repr(done))
                again = self.checkReplayed(self.post(srv, body, "order-1"), first["id"], "fibonacci", {"n": 21})
                self.assertEqual(again, done, "the 200 is the job as GET /jobs/<id> shows it")
                # another key, the same request: a new job
                other = self.checkCreated(self.post(srv, body, "order-2"), "fibonacci", {"n": 21})
                self.assertNotEqual(other["id"], first["id"])
                # the key with other params or another task: 409, nothing created
                self.checkConflict(self.post(srv, {"task": "fibonacci", "params": {"n": 22}}, "order-1"))
                self.checkConflict(self.post(srv, {"task": "primes", "params": {"max": 21}}, "order-1"))
                self.checkConflict(self.post(srv, {"task": "spin", "params": {"ms": 21}}, "order-1"))
                self.assertEqual(sorted(j["id"] for j in self.jobs_with(srv, "fibonacci", {"n": 21})),
                                 sorted([first["id"], other["id"]]))
                self.assertEqual(self.jobs_with(srv, "fibonacci", {"n": 22}), [])
                self.assertEqual(self.jobs_with(srv, "primes", {"max": 21}), [])
                self.assertEqual(self.jobs_with(srv, "spin", {"ms": 21}), [])
                # a key is case-sensitive: "ORDER-1" is another key
                upper = self.checkCreated(self.post(srv, {"task": "fibonacci", "params": {"n": 22}}, "ORDER-1"),
                                          "fibonacci", {"n": 22})
                self.assertNotEqual(upper["id"], first["id"])
                # without a key, each request is a new job
                a = self.checkCreated(self.post(srv, body), "fibonacci", {"n": 21})
                b = self.checkCreated(self.post(srv, body), "fibonacci", {"n": 21})
                self.assertNotEqual(a["id"], b["id"])
                if d is not None:
                    self.assertEqual(self.key_rows(d, "order-1"), [first["id"]])

    def test_seed_start_url(self):
        for store, srv, d in self.servers():
            with self.subTest(store=store):
                jid = self.checkReportAccepted(self.seed_start(srv, 1000, "report-7"))
                self.checkSeedReplayed(self.seed_start(srv, 1000, "report-7"), jid)
                rep = self.wait_final(srv, jid)
                self.assertEqual(rep["status"], "complete", repr(rep))
                r = self.seed_start(srv, 1000, "report-7")
                self.checkSeedReplayed(r, jid)
                self.assertEqual(r.json()["status"], "complete", repr(r))
                # other params: 409; another key: a new job
                self.checkConflict(self.seed_start(srv, 1001, "report-7"))
                other = self.checkReportAccepted(self.seed_start(srv, 1000, "report-8"))
                self.assertNotEqual(other, jid)
                # the seed's key used by POST /jobs for another task: 409
                self.checkConflict(self.post(srv, {"task": "spin", "params": {"ms": 1}}, "report-7"))
                reports = self.jobs_with(srv, "report", {"heavyIterations": 1000})
                self.assertEqual(sorted(j["id"] for j in reports), sorted([jid, other]))
                self.assertEqual(self.jobs_with(srv, "report", {"heavyIterations": 1001}), [])
                self.assertEqual(self.jobs_with(srv, "spin", {"ms": 1}), [])
                # a POST /jobs key used by the start URL for another task: 409
                post = self.checkCreated(self.post(srv, {"task": "spin", "params": {"ms": 1}}, "post-1"),
                                         "spin", {"ms": 1})
                self.checkConflict(self.seed_start(srv, 1000, "post-1"))
                self.assertEqual(sorted(j["id"] for j in self.jobs_with(srv, "report", {"heavyIterations": 1000})),
                                 sorted([jid, other]))
                self.wait_final(srv, post["id"])

    def test_bad_keys_are_400(self):
        srv = self.start_server("--workers", "1")
        # (A control character or DEL makes the header itself invalid HTTP,
        # RFC 9110 field-value: that is the HTTP layer's 400 bad_request.)
        bad = [("empty", b""), ("256 characters", b"k" * 256), ("a space inside", b"a b"),
               ("a tab inside", b"a\tb"), ("a byte over 0x7f", b"cl\xe9"),
               ("UTF-8", "cl\u00e9".encode("utf-8"))]
        body = {"task": "spin", "params": {"ms": 1}}
        for what, key in bad:
            with self.subTest(key=what):
                c = self.raw(srv)
                head = build_request("POST", "/jobs", body, {"Content-Type": "application/json", KEY: "@"})
                head = head.replace(b"%s: @\r\n" % KEY.encode(), b"%s: %s\r\n" % (KEY.encode(), key))
                self.assertIn(b"\r\n" + KEY.encode() + b": " + key + b"\r\n", head)
                c.send(head)
                self.assertError(c.read_response(), 400, "invalid_param", param=KEY)
                c.close()
                c = self.raw(srv)
                head = build_request("GET", "/tasks/reports/start?heavyIterations=5", None, {KEY: "@"})
                head = head.replace(b"%s: @\r\n" % KEY.encode(), b"%s: %s\r\n" % (KEY.encode(), key))
                c.send(head)
                self.assertError(c.read_response(), 400, "invalid_param", param=KEY)
                c.close()
        self.assertEqual(self.listing(srv), [], "a request with a bad key created a job")
        # the limits themselves are fine: 1 and 255 visible characters, all of them
        visible = "".join(chr(c) for c in range(0x21, 0x7f))
        for key in ("x", "k" * 255, visible):
            with self.subTest(key=key[:20]):
                j = self.checkCreated(self.post(srv, body, key), "spin", {"ms": 1})
                self.checkReplayed(self.post(srv, body, key), j["id"], "spin", {"ms": 1})
        self.assertEqual(len(self.listing(srv)), 3)

    def test_fifty_parallel_submissions_create_one_job(self):
        for store, srv, d in self.servers():
            with self.subTest(store=store):
                self.parallel_same_key(srv, d, store)

    def parallel_same_key(self, srv, d, store):
        n = 50
        key = "parallel-%s" % store
        body = {"task": "spin", "params": {"ms": 37}}
        replies = self.parallel_posts(srv, n, body, key)
        statuses = sorted(r.status for r in replies)
        self.assertEqual(statuses.count(202), 1, "%s: exactly one 202 expected: %r" % (store, statuses))
        self.assertEqual(statuses.count(200), n - 1, "%s: 49 x 200 expected: %r" % (store, statuses))
        ids = sorted({r.json().get("id") for r in replies})
        created = [r for r in replies if r.status == 202][0]
        jid = created.json()["id"]
        self.assertEqual(ids, [jid], "%s: every reply must name the one job" % store)
        self.assertEqual([j["id"] for j in self.jobs_with(srv, "spin", {"ms": 37})], [jid],
                         "%s: GET /jobs must show exactly one job" % store)
        if d is not None:
            self.assertEqual(self.key_rows(d, key), [jid])
            self.assertEqual(self.param_rows(d, "spin", {"ms": 37}), [jid], "%s: one row on disk" % store)
        # each reply is the job object: the 202 with its Location, the 200s too
        self.checkCreated(created, "spin", {"ms": 37})
        for r in replies:
            if r.status == 200:
                self.checkReplayed(r, jid, "spin", {"ms": 37})
        j = self.wait_final(srv, jid)
        self.assertEqual((j["status"], j["attempts"]), ("complete", 1), repr(j))

    def test_keys_survive_a_restart(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "1")
        fib = self.checkCreated(self.post(srv, {"task": "fibonacci", "params": {"n": 20}}, "keep-fib"),
                                "fibonacci", {"n": 20})
        rep = self.checkReportAccepted(self.seed_start(srv, 2000, "keep-report"))
        fib = self.wait_final(srv, fib["id"])
        self.wait_final(srv, rep)
        # one still queued at the stop (behind a running spin): its key is kept too
        blocker = self.checkCreated(self.post(srv, {"task": "spin", "params": {"ms": 800}}), "spin", {"ms": 800})
        self.wait_status(srv, blocker["id"], "processing", 10)
        queued = self.checkCreated(self.post(srv, {"task": "spin", "params": {"ms": 2}}, "keep-queued"),
                                   "spin", {"ms": 2})
        self.assertEqual(self.job(srv, queued["id"])["status"], "queued")
        srv = self.restart(srv, d, "--workers", "1")
        for _ in range(2):  # a second restart keeps them as well
            r = self.post(srv, {"task": "fibonacci", "params": {"n": 20}}, "keep-fib")
            self.assertEqual(self.checkReplayed(r, fib["id"], "fibonacci", {"n": 20}), fib)
            self.checkSeedReplayed(self.seed_start(srv, 2000, "keep-report"), rep)
            self.checkReplayed(self.post(srv, {"task": "spin", "params": {"ms": 2}}, "keep-queued"),
                               queued["id"], "spin", {"ms": 2})
            self.checkConflict(self.post(srv, {"task": "fibonacci", "params": {"n": 19}}, "keep-fib"))
            self.checkConflict(self.seed_start(srv, 2001, "keep-report"))
            self.checkConflict(self.post(srv, {"task": "spin", "params": {"ms": 3}}, "keep-queued"))
            self.assertEqual([j["id"] for j in self.jobs_with(srv, "fibonacci", {"n": 20})], [fib["id"]])
            self.assertEqual([j["id"] for j in self.jobs_with(srv, "report", {"heavyIterations": 2000})], [rep])
            self.assertEqual([j["id"] for j in self.jobs_with(srv, "spin", {"ms": 2})], [queued["id"]])
            self.wait_final(srv, queued["id"])
            srv = self.restart(srv, d, "--workers", "1")
        self.assertEqual(self.key_rows(d, "keep-fib"), [fib["id"]])

    def test_key_is_free_once_retention_expired_the_job(self):
        d = self.data_dir()
        servers = [("memory", self.start_server("--store", "memory", "--workers", "2", "--retention-s", "1")),
                   ("sqlite", self.sqlite_server(d, "--workers", "2", "--retention-s", "1"))]
        body = {"task": "fibonacci", "params": {"n": 15}}
        firsts = {}
        for store, srv in servers:
            firsts[store] = self.checkCreated(self.post(srv, body, "short-lived"), "fibonacci", {"n": 15})
            seed = self.checkReportAccepted(self.seed_start(srv, 10, "short-lived-seed"))
            firsts[store + "-seed"] = seed
        for store, srv in servers:
            self.assertEqual(self.wait_final(srv, firsts[store]["id"])["result"], 610)
            self.wait_final(srv, firsts[store + "-seed"])
        time.sleep(3)  # retention 1 s, a sweep every second: gone by now
        for store, srv in servers:
            with self.subTest(store=store):
                self.assertError(srv.get("/jobs/%s" % firsts[store]["id"]), 404, "not_found")
                r = self.post(srv, body, "short-lived")
                new = self.checkCreated(r, "fibonacci", {"n": 15})
                self.assertNotEqual(new["id"], firsts[store]["id"])
                self.checkReplayed(self.post(srv, body, "short-lived"), new["id"], "fibonacci", {"n": 15})
                seed = self.checkReportAccepted(self.seed_start(srv, 10, "short-lived-seed"))
                self.assertNotEqual(seed, firsts[store + "-seed"])
                self.checkSeedReplayed(self.seed_start(srv, 10, "short-lived-seed"), seed)
                self.assertEqual(self.wait_final(srv, new["id"])["result"], 610)
        self.assertEqual(self.key_rows(d, "short-lived"), [new["id"]])


    def test_key_is_free_once_max_finished_evicted_the_job(self):
        # A key lives as long as its job: once --max-finished evicted the
        # job (GET says 404), the key makes a new job at once.
        d = self.data_dir()
        servers = [("memory", self.start_server("--store", "memory", "--workers", "1", "--max-finished", "1"), None),
                   ("sqlite", self.sqlite_server(d, "--workers", "1", "--max-finished", "1"), d)]
        body = {"task": "spin", "params": {"ms": 1}}
        for store, srv, dd in servers:
            with self.subTest(store=store):
                first = self.checkCreated(self.post(srv, body, "evicted-key"), "spin", {"ms": 1})
                self.wait_status(srv, first["id"], "complete", 10)
                other = self.submit(srv, "spin", {"ms": 2})
                self.wait_status(srv, other["id"], "complete", 10)
                self.wait_until(lambda: srv.get("/jobs/%s" % first["id"]).status == 404, 5,
                                what="the first job evicted by --max-finished 1")
                r = self.post(srv, body, "evicted-key")
                new = self.checkCreated(r, "spin", {"ms": 1})
                self.assertNotEqual(new["id"], first["id"])
                self.checkReplayed(self.post(srv, body, "evicted-key"), new["id"], "spin", {"ms": 1})
                self.assertEqual(self.wait_final(srv, new["id"])["status"], "complete")

# ----------------------------------------------------------------------------
# 2. A full disk
# ----------------------------------------------------------------------------

def fill(path):
    """Writes `path` until the filesystem is full (ENOSPC); its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    total = 0
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            buf = b"\xa5" * chunk
            while True:
                try:
                    n = os.write(fd, buf)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                total += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return total


class DiskFull(DurabilityCase):

    def small_tmpfs(self):
        base = tempfile.mkdtemp(prefix="offload-full-")
        self.addCleanup(shutil.rmtree, base, True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", base],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs here (needs root): %s"
                          % (p.stderr.decode("utf-8", "replace").strip() or "mount exited %d" % p.returncode))
        self.addCleanup(self.unmount, base)  # runs after the servers started later stopped
        return base

    def unmount(self, base):
        if subprocess.run(["umount", base], stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "-l", base], stderr=subprocess.DEVNULL)

    def test_submissions_get_503_while_the_disk_is_full_and_recover(self):
        base = self.small_tmpfs()
        d = os.path.join(base, "data")
        srv = self.sqlite_server(d, "--workers", "2")
        body = {"task": "spin", "params": {"ms": 1}}
        accepted = []
        for i in range(5):
            accepted.append(self.checkCreated(self.post(srv, body, "before-%d" % i), "spin", {"ms": 1})["id"])
        for jid in accepted:
            self.assertEqual(self.wait_final(srv, jid)["status"], "complete")
            self.wait_on_disk(d, jid, "complete")
        filler = os.path.join(base, "filler")
        size = fill(filler)
        self.assertGreater(size, 0)

        # SQLite may still have room in its WAL: a few may be accepted, then 503
        refused = None
        for i in range(400):
            r = self.post(srv, body, "full-%d" % i)
            if r.status == 202:
                accepted.append(self.checkCreated(r, "spin", {"ms": 1})["id"])
                continue
            refused = (r, "full-%d" % i)
            break
        self.assertIsNotNone(refused, "400 submissions on a full disk all got 202 (%d accepted)" % len(accepted))
        r, refused_key = refused
        self.assertError(r, 503, "store_unavailable")
        self.assertEqual(r.header("Retry-After"), "1", repr(r))
        print("\n%d submissions accepted on the full disk before the first 503" % (len(accepted) - 5),
              file=sys.stderr)

        # reads keep working, and nothing accepted is lost
        for jid in accepted:
            self.job(srv, jid)
        self.checkJob(self.job(srv, accepted[0]), expect_status="complete", job_id=accepted[0])
        listed = {j["id"] for j in self.listing(srv)}
        self.assertEqual(sorted(set(accepted) - listed), [], "accepted jobs missing from GET /jobs")
        self.assertEqual(self.health(srv)["status"], "ok")
        self.assertTrue(srv.alive())

        # free the space: submissions succeed again, without a restart
        os.unlink(filler)
        t0 = time.monotonic()
        while True:
            r = self.post(srv, body, refused_key)
            if r.status != 503 or time.monotonic() - t0 > 5:
                break
            self.assertError(r, 503, "store_unavailable")
            time.sleep(0.1)
        # the refused key was never accepted: it makes a new job now
        again = self.checkCreated(r, "spin", {"ms": 1})
        accepted.append(again["id"])
        for i in range(5):
            accepted.append(self.checkCreated(self.post(srv, body, "after-%d" % i), "spin", {"ms": 1})["id"])
        final = {}
        for jid in accepted:
            j = self.wait_final(srv, jid)
            self.checkJob(j, expect_status="complete", task="spin", params={"ms": 1}, job_id=jid)
            final[jid] = j

        srv = self.restart(srv, d, "--workers", "2")
        missing = [jid for jid in accepted if srv.get("/jobs/%s" % jid).status != 200]
        self.assertEqual(missing, [], "%d of %d accepted jobs lost over the restart" % (len(missing), len(accepted)))
        for jid in accepted:
            j = self.wait_final(srv, jid)
            self.checkJob(j, task="spin", params={"ms": 1}, job_id=jid)
        self.checkReplayed(self.post(srv, body, refused_key), again["id"], "spin", {"ms": 1})


    def test_one_key_at_once_on_a_full_disk(self):
        # 50 clients send one key while the disk is full. A 503 means nothing
        # was accepted; a 200 means "here is the job this key made": so every
        # 200 or 202 names a job that exists, at most one 202 is sent, and no
        # 200 is sent unless the job was accepted. Once space is free, the
        # key makes its job (or gives back the one that was accepted).
        base = self.small_tmpfs()
        d = os.path.join(base, "data")
        srv = self.sqlite_server(d, "--workers", "2")
        warm = self.submit(srv, "spin", {"ms": 1})
        self.wait_final(srv, warm["id"])
        filler = os.path.join(base, "filler")
        fill(filler)
        for i in range(400):  # until the store refuses (a few may still fit in the WAL)
            r = self.post(srv, {"task": "spin", "params": {"ms": 1}})
            if r.status != 202:
                break
        self.assertError(r, 503, "store_unavailable")

        body = {"task": "spin", "params": {"ms": 41}}
        replies = self.parallel_posts(srv, 50, body, "full-at-once")
        statuses = sorted(r.status for r in replies)
        print("\nreplies to one key on a full disk: %s" % {s: statuses.count(s) for s in set(statuses)},
              file=sys.stderr)
        self.assertTrue(set(statuses) <= {200, 202, 503}, statuses)
        self.assertLessEqual(statuses.count(202), 1, statuses)
        for r in replies:
            if r.status == 503:
                self.assertError(r, 503, "store_unavailable")
        named = {}
        for r in replies:
            if r.status in (200, 202):
                named.setdefault(r.json()["id"], []).append(r.status)
        ghosts = {jid: "%d x %s" % (len(st), sorted(set(st))) for jid, st in named.items()
                  if srv.get("/jobs/%s" % jid).status != 200}
        self.assertEqual(ghosts, {}, "replies naming a job that does not exist (GET /jobs/<id> is 404; "
                         "its insert failed and its creator got 503): %r" % ghosts)
        self.assertLessEqual(len(named), 1, "one key, several jobs: %r" % named)
        named = set(named)
        if statuses.count(200):
            self.assertEqual(statuses.count(202), 1, "a 200 replays an accepted job, but none was: %r" % statuses)

        os.unlink(filler)
        t0 = time.monotonic()
        while True:
            r = self.post(srv, body, "full-at-once")
            if r.status != 503 or time.monotonic() - t0 > 5:
                break
            time.sleep(0.1)
        if named:
            self.checkReplayed(r, named.pop(), "spin", {"ms": 41})
        else:
            jid = self.checkCreated(r, "spin", {"ms": 41})["id"]
            self.checkReplayed(self.post(srv, body, "full-at-once"), jid, "spin", {"ms": 41})
        self.assertEqual(len(self.jobs_with(srv, "spin", {"ms": 41})), 1)

# ----------------------------------------------------------------------------
# 3. Retention on disk
# ----------------------------------------------------------------------------

class RetentionOnDisk(DurabilityCase):

    def test_retention_seconds_deletes_the_rows(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "2", "--retention-s", "1")
        ids = [self.submit(srv, "fibonacci", {"n": 10 + k})["id"] for k in range(3)]
        for jid in ids:
            self.assertEqual(self.wait_final(srv, jid)["status"], "complete")
        # a job that is not final is never expired
        long = self.submit(srv, "spin", {"ms": 5000})["id"]
        self.wait_status(srv, long, "processing", 10)
        for jid in ids:
            self.wait_on_disk(d, jid, "complete")
        self.wait_until(lambda: all(srv.get("/jobs/%s" % jid).status == 404 for jid in ids), 6, interval=0.1,
                        what="finished jobs gone from GET after --retention-s 1")
        self.wait_until(lambda: not set(ids) & set(self.rows(d)), 6, interval=0.1,
                        what="finished jobs' rows gone from offload.db after --retention-s 1")
        for jid in ids:
            self.assertError(srv.get("/jobs/%s" % jid), 404, "not_found")
        self.assertEqual(self.rows(d).get(long), ("processing", 1))
        self.assertEqual([j["id"] for j in self.listing(srv)], [long])

        srv = self.restart(srv, d, "--workers", "2", "--retention-s", "1", "--drain-timeout-s", "10")
        for jid in ids:
            self.assertError(srv.get("/jobs/%s" % jid), 404, "not_found")
        self.assertFalse(set(ids) & set(self.rows(d)), "expired rows came back: %r" % self.rows(d))
        self.assertEqual([j["id"] for j in self.listing(srv)], [long])

    def test_max_finished_on_disk(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "2", "--max-finished", "5")
        ids = [self.submit(srv, "spin", {"ms": 2})["id"] for _ in range(20)]
        self.wait_until(lambda: self.health(srv)["queue"]["depth"] == 0 and self.health(srv)["workers"]["busy"] == 0,
                        30, what="20 jobs done")
        time.sleep(0.05)

        def finished_on_disk():
            return {i: s for i, (s, _) in self.rows(d).items() if s in FINAL}

        self.wait_until(lambda: len(finished_on_disk()) <= 5, 6, interval=0.1,
                        what="at most 5 finished rows in offload.db (--max-finished 5)")
        on_disk = finished_on_disk()
        self.assertLessEqual(len(on_disk), 5, on_disk)
        self.assertTrue(set(on_disk) <= set(ids), on_disk)
        listed = self.listing(srv)
        self.assertLessEqual(len([j for j in listed if j["status"] in FINAL]), 5, listed)
        self.assertEqual(len(listed), 5, "the 5 newest finished jobs are kept: %r" % listed)
        for j in listed:
            self.assertEqual(j["status"], "complete", repr(j))
        srv = self.restart(srv, d, "--workers", "2", "--max-finished", "5")
        listed = self.listing(srv)
        self.assertLessEqual(len([j for j in listed if j["status"] in FINAL]), 5, listed)
        self.assertLessEqual(len(finished_on_disk()), 5)
        gone = [jid for jid in ids if srv.get("/jobs/%s" % jid).status == 404]
        self.assertGreaterEqual(len(gone), 15, "evicted jobs came back after a restart")


# ----------------------------------------------------------------------------
# 4. The queue's order across a crash
# ----------------------------------------------------------------------------

class QueueOrderAfterKill(DurabilityCase):

    def test_queued_jobs_run_in_submission_order_after_sigkill(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--workers", "1")
        long = self.submit(srv, "spin", {"ms": 1500})["id"]
        self.wait_status(srv, long, "processing", 10)
        # distinct params, so a run in any other order (by id, say) shows
        shorts = [self.submit(srv, "spin", {"ms": 20 + k})["id"] for k in range(5)]
        for jid in shorts:
            self.assertEqual(self.job(srv, jid)["status"], "queued")
        self.wait_on_disk(d, long, "processing")
        self.assertEqual(self.job(srv, long)["status"], "processing")
        srv.kill()
        self.assertFalse(srv.alive())
        rows = self.rows(d)
        for jid in shorts:
            self.assertEqual(rows.get(jid), ("queued", 0), "on disk at the kill: %r" % rows)

        srv2 = self.sqlite_server(d, "--workers", "1")
        done = [self.wait_final(srv2, jid, timeout=20) for jid in shorts]
        for k, j in enumerate(done):
            self.checkJob(j, expect_status="complete", task="spin", params={"ms": 20 + k}, job_id=shorts[k])
            self.assertEqual(j["attempts"], 1, repr(j))
        starts = [j["startedAt"] for j in done]
        self.assertEqual(starts, sorted(starts), "not run in submission order: %r" % done)
        self.assertTrue(all(a < b for a, b in zip(starts, starts[1:])),
                        "startedAt not strictly increasing in submission order: %r" % starts)
        j = self.wait_final(srv2, long, timeout=10)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "interrupted"), repr(j))
        self.term(srv2)



# ----------------------------------------------------------------------------
# 5. Old finished jobs read back from disk (--cache-finished)
# ----------------------------------------------------------------------------

class ColdJobs(DurabilityCase):
    """With `--cache-finished 2`, finished jobs beyond the two most recent
    keep only their status and times in memory; every read of them (GET,
    the listing, the seed's status URL, an Idempotency-Key replay) reads the
    row back and answers exactly as before, across a restart too."""

    def metric(self, srv, name):
        r = srv.get("/metrics")
        self.assertEqual(r.status, 200, repr(r))
        for line in r.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no %s in /metrics" % name)

    def test_reads_of_cold_jobs(self):
        d = self.data_dir()
        srv = self.sqlite_server(d, "--cache-finished", 2, "--workers", 1)
        ids, bodies = [], {}
        for n in range(10, 16):
            r = self.post(srv, {"task": "fibonacci", "params": {"n": n}}, key="cold-%d" % n)
            j = self.checkCreated(r, "fibonacci", {"n": n})
            ids.append(j["id"])
            f = self.wait_final(srv, j["id"], timeout=10)
            self.assertEqual(f["status"], "complete", repr(f))
            bodies[j["id"]] = srv.get("/jobs/%s" % j["id"]).body
        rep = self.checkReportAccepted(self.seed_start(srv, 1000, key="cold-seed"))
        self.wait_final(srv, rep, timeout=10)
        seed_body = srv.get("/tasks/reports/%s" % rep).body
        for n in range(2):  # two more, so the report is cold too
            j = self.checkCreated(self.post(srv, {"task": "fibonacci", "params": {"n": n}}), "fibonacci", {"n": n})
            self.wait_final(srv, j["id"], timeout=10)
        self.wait_until(lambda: self.metric(srv, "offload_jobs_cold") == 7, 5, what="7 cold jobs")

        for _ in range(2):  # before and after a restart
            reads = self.metric(srv, "offload_store_reads_total")
            for jid in ids:
                r = srv.get("/jobs/%s" % jid)
                self.assertEqual((r.status, r.body), (200, bodies[jid]), jid)
            r = srv.get("/tasks/reports/%s" % rep)
            self.assertEqual((r.status, r.body), (200, seed_body))
            self.assertGreaterEqual(self.metric(srv, "offload_store_reads_total"), reads + 7)
            listed = self.listing(srv)
            self.assertEqual(len(listed), 9, repr(listed))
            for j in listed:
                if j["id"] in bodies:
                    self.assertEqual(j, json.loads(bodies[j["id"]]))
            self.assertEqual([j["id"] for j in listed if j["id"] in bodies], list(reversed(ids)))
            # keys of cold jobs: the same request is a replay, another a conflict
            r = self.post(srv, {"task": "fibonacci", "params": {"n": 10}}, key="cold-10")
            self.checkReplayed(r, ids[0], "fibonacci", {"n": 10})
            self.assertEqual(r.body, bodies[ids[0]])
            self.checkConflict(self.post(srv, {"task": "fibonacci", "params": {"n": 50}}, key="cold-11"))
            self.checkSeedReplayed(self.seed_start(srv, 1000, key="cold-seed"), rep)
            srv = self.restart(srv, d, "--cache-finished", 2, "--workers", 1)
            self.assertEqual(self.metric(srv, "offload_jobs_cold"), 7)
        self.term(srv)


if __name__ == "__main__":
    main()
