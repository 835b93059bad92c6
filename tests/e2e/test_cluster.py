"""Scale-out (issue 12): several offload nodes share one PostgreSQL
(`--store postgres --pg-url URL --node-id ID`).

Three nodes, each with 2 workers, on one throwaway PostgreSQL (scripts/pgtmp.py):

1. Any node accepts and any node answers: spin jobs submitted round-robin
   to the three nodes each run exactly once (complete, attempts 1) and read
   the same on every node (GET /jobs/<id>), and GET /jobs on every node
   lists them.
2. Idle nodes take work, never more than their free workers: six 4 s jobs
   submitted to one node run at once on the six workers of the cluster,
   two on each node.
3. A DELETE on one node cancels a job running on another within 1 s: the
   job reads `canceled` on every node and the runner's worker is free.
4. `?wait` on a node that does not run the job returns when it completes.
5. One Idempotency-Key sent to the three nodes at once creates one job
   (one 202, two 200, one id); another request with that key on another
   node is 409 idempotency_conflict; the same request again is that job.
6. GET /nodes on every node shows the three nodes alive (their ids, the
   --advertise-url, workers.total as each node's /health counts them);
   /health shows "store":{"kind":
   "postgres","ok":true}; /metrics has the cluster counters and the
   store's round-trip histogram.
7. /events on any node carries every node's job events, with the running
   job's progress at least once a second; a running job's progress, read
   on another node, moves and changes at most twice a second.

Then, each on its own PostgreSQL:

8. The schema: a first node creates offload_meta with schema_version 1; a
   database whose schema_version is newer (99) is refused by a new node,
   which exits non-zero with a message naming the version.
9. Secrets: passwords given in a --pg-url (URL or key=value form), in
   PGPASSWORD or through PGPASSFILE are used (the role needs one) and never
   appear in a node's output or replies, through a PostgreSQL restart too,
   nor in the output of a node that cannot reach its database.

Time bounds are generous (a noisy 2-core machine, ASan builds 2-3x slower),
and every node is stopped by its pid (the harness).
"""
import json
import os
import random
import socket
import string
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import *  # noqa: E402,F401,F403
from test_events import SSE  # noqa: E402

# A DELETE on one node reaches the job on another within 200 ms (the
# contract); the job must read canceled on every node within this many
# seconds of the DELETE's reply.
CANCEL_S = 1.0
# ?wait on a node that does not run the job: the reply comes at most this
# many ms after the job's finishedAt (NOTIFY, or the 1 s poll fallback).
WAIT_LAG_MS = 2000
# Six jobs on six idle workers: each starts within this many ms of the last
# submission (NOTIFY wakes the nodes, or their 1 s poll).
START_LAG_MS = 2500


def token(n=10):
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(n))


class TimedSSE(SSE):
    """An event stream that notes when (time.monotonic()) each event was parsed."""

    def _parse(self):
        n = len(self.events)
        super()._parse()
        t = time.monotonic()
        for e in self.events[n:]:
            e["t"] = t


class ThreeNodes(ClusterCase):
    """Each test starts nodes n1, n2, n3 afresh (the same ids each time) on
    the class's PostgreSQL, and leaves no job running."""

    def setUp(self):
        self.t_start = now_ms()
        self.nodes = self.start_nodes(3)
        # A test that failed half-way leaves no job running into the next one
        # (cleanups run last-in first-out: this one before the nodes stop).
        self.addCleanup(self.cancel_leftovers)

    def cancel_leftovers(self):
        live = [n for n in self.nodes if n.alive()]
        if not live:
            return
        try:
            for j in self.listing(live[0], status="processing") + self.listing(live[0], status="queued"):
                live[0].req("DELETE", "/jobs/%s" % j["id"])
        except Exception:  # the test's own failure says more
            pass

    def wait_all_final(self, job_ids, node=None, timeout=60):
        node = node or self.nodes[0]
        return {jid: self.wait_final(node, jid, timeout=timeout) for jid in job_ids}

    # -- 6. /nodes, /health, /metrics ------------------------------------------
    def test_nodes_health_metrics(self):
        names = {n.name: n for n in self.nodes}
        # workers.total as each node's /health counts them (threads and processes)
        totals = {n.name: self.health(n)["workers"]["total"] for n in self.nodes}
        for n in self.nodes:
            # The nodes of the class's earlier tests had the same ids (and
            # other ports): wait for these ones' own entries.
            last = [None]

            def all_alive():
                v = last[0] = self.nodes_view(n)
                ok = set(v) == set(names) and all(
                    e["alive"] and e["url"] == names[nid].url and self.t_start <= e["startedAt"]
                    for nid, e in v.items())
                return v if ok else None
            try:
                view = self.wait_until(all_alive, 5, interval=0.05, what="GET /nodes on %s showing n1, n2, n3 alive" % n.name)
            except AssertionError as e:
                self.fail("%s; expected ids %r, urls %r, started after %d; last GET /nodes: %r"
                          % (e, sorted(names), {k: v.url for k, v in names.items()}, self.t_start, last[0]))
            for nid, e in view.items():
                self.assertEqual(e["workers"]["total"], totals[nid],
                                 "workers.total of %s seen from %s: %r; its /health says %d" % (nid, n.name, e, totals[nid]))
                self.assertLessEqual(e["startedAt"], e["lastHeartbeatAt"], repr(e))
                self.assertLessEqual(now_ms() - e["lastHeartbeatAt"], LEASE_MS + 1000,
                                     "an alive node's last heartbeat is recent: %r" % e)
            h = self.health(n)
            self.assertEqual(h["status"], "ok", repr(h))
            self.assertEqual(h.get("store"), {"kind": "postgres", "ok": True}, "/health of %s: %r" % (n.name, h))
            r = n.get("/metrics")
            self.assertEqual(r.status, 200, repr(r))
            text = r.body.decode()
            m = parse_metrics(text)
            for name in ("offload_cluster_claims_total", "offload_cluster_lease_expiries_total",
                         "offload_cluster_fenced_writes_total"):
                self.assertIn(name, m, "/metrics of %s lacks %s" % (n.name, name))
                self.assertRegex(text, r"(?m)^# TYPE %s counter$" % name)
            self.assertRegex(text, r"(?m)^# TYPE offload_store_roundtrip_seconds histogram$")
            buckets = [(k, v) for k, v in m.items() if k.startswith("offload_store_roundtrip_seconds_bucket{")]
            self.assertTrue(buckets, "no offload_store_roundtrip_seconds_bucket series on %s" % n.name)
            inf = m.get('offload_store_roundtrip_seconds_bucket{le="+Inf"}')
            self.assertIsNotNone(inf, "no +Inf bucket: %r" % buckets)
            self.assertIn("offload_store_roundtrip_seconds_sum", m)
            self.assertEqual(m.get("offload_store_roundtrip_seconds_count"), inf)
            self.assertGreater(inf, 0, "a node that heartbeats has made round trips to the database")
            vals = [v for _, v in sorted(buckets, key=lambda kv: float(kv[0].split('"')[1].replace("+Inf", "inf")))]
            self.assertEqual(vals, sorted(vals), "histogram buckets are cumulative: %r" % buckets)

    # -- 1. any node accepts, any node answers ---------------------------------
    def test_round_robin_jobs_run_once_and_read_the_same_everywhere(self):
        ids = [self.submit_spin(self.nodes[i % 3], 300)["id"] for i in range(12)]
        self.assertEqual(len(set(ids)), 12)
        # every node answers for every job while they run, too
        for i, jid in enumerate(ids):
            self.job(self.nodes[(i + 1) % 3], jid)
        self.wait_all_final(ids, self.nodes[2], timeout=60)
        views = {}
        for jid in ids:
            j = self.same_everywhere(self.nodes, jid)
            self.assertEqual(j["status"], "complete", repr(j))
            self.assertEqual(j["attempts"], 1, "run exactly once: %r" % j)
            self.assertEqual(j["progress"], 1.0, repr(j))
            self.assertIsNone(j["result"], repr(j))
            views[jid] = j
        for n in self.nodes:
            listed = {j["id"]: j for j in self.listing(n)}
            for jid in ids:
                self.assertIn(jid, listed, "GET /jobs on %s does not list job %s" % (n.name, jid))
                self.assertEqual(listed[jid], views[jid], "GET /jobs on %s shows job %s otherwise" % (n.name, jid))
            done = {j["id"] for j in self.listing(n, status="complete")}
            self.assertTrue(set(ids) <= done, "GET /jobs?status=complete on %s misses %r" % (n.name, set(ids) - done))
            created = [listed[jid]["createdAt"] for jid in ids]
            order = [j["id"] for j in self.listing(n) if j["id"] in set(ids)]
            self.assertEqual([listed[x]["createdAt"] for x in order], sorted(created, reverse=True),
                             "GET /jobs on %s: newest first" % n.name)

    # -- 2. idle nodes take work ----------------------------------------------
    def test_idle_nodes_take_work_never_more_than_their_workers(self):
        ms = 4000
        jobs = [self.submit_spin(self.nodes[0], ms) for _ in range(6)]
        ids = {j["id"] for j in jobs}
        t_last = max(j["createdAt"] for j in jobs)
        t0 = time.monotonic()
        per_node = {}

        def spread():
            per_node.clear()
            for n in self.nodes:
                per_node[n.name] = self.busy_jobs(n) & ids
            return set().union(*per_node.values()) == ids

        self.wait_until(spread, START_LAG_MS / 1000.0 + 1.0, interval=0.05,
                        what="the six jobs running on the workers of the three nodes (GET /workers)")
        self.assertLess(time.monotonic() - t0, ms / 1000.0, "all six run at once, before any could finish")
        for name, got in per_node.items():
            self.assertEqual(len(got), WORKERS, "node %s runs %r" % (name, per_node))
        # every node sees every node busy (GET /nodes: workers.busy 2)
        for n in self.nodes:
            def busy_everywhere():
                v = self.nodes_view(n)
                return all(v.get(m.name, {}).get("workers", {}).get("busy") == WORKERS for m in self.nodes)
            self.wait_until(busy_everywhere, 2.5, interval=0.05,
                            what="GET /nodes on %s: workers.busy 2 on every node" % n.name)
        done = self.wait_all_final(ids, self.nodes[1], timeout=60)
        for jid, j in done.items():
            self.assertEqual(j["status"], "complete", repr(j))
            self.assertEqual(j["attempts"], 1, repr(j))
            self.assertLessEqual(j["startedAt"] - t_last, START_LAG_MS,
                                 "job %s started %d ms after the last submission" % (jid, j["startedAt"] - t_last))
            self.assertLess(j["finishedAt"] - j["startedAt"], ms + 1500,
                            "job %s ran on a worker from its start: %r" % (jid, j))

    # -- 3. DELETE on another node --------------------------------------------
    def test_delete_on_one_node_cancels_the_job_running_on_another(self):
        j = self.submit_spin(self.nodes[0], 60000)
        jid = j["id"]
        runner = self.runner_of(self.nodes, jid)
        others = [n for n in self.nodes if n is not runner]
        t_wall = now_ms()
        r = others[0].req("DELETE", "/jobs/%s" % jid)
        t_reply = time.monotonic()
        self.assertEqual(r.status, 202, "DELETE of a processing job on %s (it runs on %s): %r"
                         % (others[0].name, runner.name, r))
        self.checkJob(r.json(), job_id=jid, expect_status={"processing", "canceled"})

        def canceled_everywhere():
            sts = [self.job(n, jid)["status"] for n in self.nodes]
            return all(s == "canceled" for s in sts) and jid not in self.busy_jobs(runner)

        self.wait_until(canceled_everywhere, 15, interval=0.01,
                        what="job %s canceled on every node and off %s's worker" % (jid, runner.name))
        took = time.monotonic() - t_reply
        self.assertLessEqual(took, CANCEL_S, "DELETE on %s of a job running on %s: canceled everywhere after %.2f s"
                             % (others[0].name, runner.name, took))
        j = self.same_everywhere(self.nodes, jid)
        self.assertEqual(j["status"], "canceled", repr(j))
        self.assertEqual(j["error"]["code"], "canceled", repr(j))
        self.assertEqual(j["attempts"], 1, repr(j))
        self.assertLessEqual(j["finishedAt"] - t_wall, CANCEL_S * 1000, repr(j))
        self.assertError(others[1].req("DELETE", "/jobs/%s" % jid), 409, "already_finished")
        self.assertError(runner.req("DELETE", "/jobs/%s" % jid), 409, "already_finished")
        # the runner's worker is free for the next job
        j2 = self.submit_spin(runner, 50)
        self.assertEqual(self.wait_final(runner, j2["id"])["status"], "complete")

    # -- 4. ?wait on another node ----------------------------------------------
    def test_wait_on_a_node_that_does_not_run_the_job(self):
        j = self.submit_spin(self.nodes[0], 2000)
        jid = j["id"]
        runner = self.runner_of(self.nodes, jid)
        others = [n for n in self.nodes if n is not runner]
        replies = {}

        def held(n):
            try:
                r = n.req("GET", "/jobs/%s?wait=30" % jid, timeout=45)
                replies[n.name] = (r, now_ms())
            except Exception as e:  # reported below
                replies[n.name] = (e, now_ms())

        ts = [threading.Thread(target=held, args=(n,), daemon=True) for n in others]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for n in others:
            r, at = replies[n.name]
            self.assertIsInstance(r, Response, "GET ?wait=30 on %s: %r" % (n.name, r))
            self.assertEqual(r.status, 200, repr(r))
            got = self.checkJob(r.json(), job_id=jid)
            self.assertEqual(got["status"], "complete", "?wait=30 on %s (the job ran on %s) returned before "
                             "the job completed: %r" % (n.name, runner.name, got))
            self.assertEqual(got["attempts"], 1, repr(got))
            self.assertGreaterEqual(at, got["finishedAt"] - 5, repr(got))
            self.assertLessEqual(at - got["finishedAt"], WAIT_LAG_MS,
                                 "?wait on %s answered %d ms after the job finished on %s"
                                 % (n.name, at - got["finishedAt"], runner.name))
            self.assertEqual(got, self.job(runner, jid), "the held reply is the final job")

    def test_progress_read_from_another_node(self):
        # The runner writes progress to the database at most twice a second;
        # another node reads it from there.
        ms = 3000
        j = self.submit_spin(self.nodes[0], ms)
        jid = j["id"]
        runner = self.runner_of(self.nodes, jid)
        other = [n for n in self.nodes if n is not runner][0]
        seen = []  # (monotonic, progress) of each change seen on the other node
        t0 = time.monotonic()
        while True:
            x = self.job(other, jid)
            if x["status"] != "processing":
                break
            if not seen or seen[-1][1] != x["progress"]:
                seen.append((time.monotonic(), x["progress"]))
            self.assertLess(time.monotonic() - t0, 30, "still processing after 30 s: %r" % x)
            time.sleep(0.02)
        self.assertEqual(x["status"], "complete", repr(x))
        ps = [p for _, p in seen]
        self.assertEqual(ps, sorted(ps), "progress read on %s never goes back: %r" % (other.name, ps))
        moving = [p for p in ps if 0 < p < 1]
        self.assertGreaterEqual(len(moving), 3, "a %d ms job's progress, read on %s (it ran on %s), moves: %r"
                                % (ms, other.name, runner.name, seen))
        span = seen[-1][0] - seen[0][0]
        self.assertLessEqual(len(seen), 2 * span + 3, "progress written at most twice a second: %d values in "
                             "%.1f s on %s: %r" % (len(seen), span, other.name, ps))

    # -- 5. one Idempotency-Key, three nodes ------------------------------------
    def test_one_idempotency_key_on_three_nodes_at_once_makes_one_job(self):
        made = []
        for rnd in range(5):
            key = "cluster-%d-%s" % (rnd, token())
            body = {"task": "spin", "params": {"ms": 71 + rnd}}
            conns = [self.raw(n, timeout=30) for n in self.nodes]
            barrier = threading.Barrier(3)
            req = build_request("POST", "/jobs", body, {"Content-Type": "application/json", "Idempotency-Key": key})
            replies = [None] * 3

            def client(i):
                try:
                    barrier.wait(10)
                    conns[i].send(req)
                    replies[i] = conns[i].read_response(timeout=30)
                except Exception as e:
                    replies[i] = e

            ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            for i, r in enumerate(replies):
                self.assertIsInstance(r, Response, "POST to %s: %r" % (self.nodes[i].name, r))
            self.assertEqual(sorted(r.status for r in replies), [200, 200, 202],
                             "key %s on three nodes at once: %r" % (key, [(r.status, r.body) for r in replies]))
            ids = set()
            for i, r in enumerate(replies):
                j = self.checkJob(r.json(), task="spin", params=body["params"])
                self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"], repr(r))
                ids.add(j["id"])
            self.assertEqual(len(ids), 1, "one key, one job: the replies name %r" % ids)
            jid = ids.pop()
            made.append(jid)
            # the key is taken on every node: a different request with it is a conflict
            other = self.nodes[(rnd + 1) % 3]
            self.assertError(self.post(other, {"task": "spin", "params": {"ms": 1}}, key), 409,
                             "idempotency_conflict", param="Idempotency-Key")
            # and the same request again on any node is that job
            again = self.post(self.nodes[rnd % 3], body, key)
            self.assertEqual(again.status, 200, repr(again))
            self.assertEqual(again.json()["id"], jid, repr(again))
            for n in self.nodes:
                same = [j["id"] for j in self.listing(n) if j["task"] == "spin" and j["params"] == body["params"]]
                self.assertEqual(same, [jid], "GET /jobs on %s: jobs with params %r" % (n.name, body["params"]))
        self.wait_all_final(made)

    # -- 7. /events carries every node's jobs -----------------------------------
    def test_events_on_every_node_carry_every_nodes_jobs(self):
        streams = [self.track(TimedSSE(n.port, timeout=30)) for n in self.nodes]
        for s in streams:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.header("content-type"), "text/event-stream")
        j = self.submit_spin(self.nodes[0], 3000)
        jid = j["id"]
        runner = self.runner_of(self.nodes, jid)
        errors = {}

        def follow(i):
            try:
                streams[i].wait(lambda s: any(e["data"]["status"] in FINAL for e in s.job_events(jid)),
                                timeout=60, what="the job's final event on %s's stream" % self.nodes[i].name)
            except Exception as e:  # reported below
                errors[i] = e

        ts = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        self.assertEqual(errors, {})
        final = self.same_everywhere(self.nodes, jid)
        self.assertEqual(final["status"], "complete", repr(final))
        for n, s in zip(self.nodes, streams):
            evs = s.job_events(jid)
            for e in evs:
                try:
                    self.checkJob(e["data"], job_id=jid, task="spin")
                except AssertionError as x:
                    raise AssertionError("%s's stream (the job was submitted to %s and ran on %s): %s"
                                         % (n.name, self.nodes[0].name, runner.name, x)) from None
            sts = [e["data"]["status"] for e in evs]
            self.assertIn("processing", sts, "%s's stream: %r" % (n.name, sts))
            self.assertEqual(sts[-1], "complete", "%s's stream: %r" % (n.name, sts))
            self.assertEqual(evs[-1]["data"], final, "%s's stream: the final event is the job as GET shows it" % n.name)
            ps = [e["data"]["progress"] for e in evs]
            self.assertEqual(ps, sorted(ps), "%s's stream (the job ran on %s): progress never goes back: %r"
                             % (n.name, runner.name, [(e["data"]["status"], e["data"]["progress"]) for e in evs]))
            # while it ran (from its first processing event to its final one),
            # an event at least once a second
            run = [e for e in evs if e["data"]["status"] == "processing"] + [evs[-1]]
            gaps = [b["t"] - a["t"] for a, b in zip(run, run[1:])]
            self.assertTrue(gaps and max(gaps) <= 1.5,
                            "%s's stream: gaps between the running job's events %r (s)" % (n.name, gaps))
            self.assertGreater(len({e["data"]["progress"] for e in run}), 2,
                               "%s's stream: the progress of a 3 s job moves: %r" % (n.name, ps))


class Schema(ClusterCase):

    def meta_version(self):
        return self.pg.psql("SELECT value FROM offload_meta WHERE key = 'schema_version'").strip()

    def test_newer_schema_is_refused(self):
        n = self.start_node("s1")
        self.assertEqual(self.health(n).get("store"), {"kind": "postgres", "ok": True})
        self.assertEqual(self.meta_version(), "1", "offload_meta(schema_version) after the first start")
        n.stop()
        self.pg.psql("UPDATE offload_meta SET value = '99' WHERE key = 'schema_version'")
        self.addCleanup(self.pg.psql, "UPDATE offload_meta SET value = '1' WHERE key = 'schema_version'")
        rc, out, err = self.run_node_cli(self.node_flags("s2", free_port()), timeout=20)
        self.assertIsNotNone(rc, "a node on a database with schema_version 99 still ran after 20 s:\n%s\n%s" % (out, err))
        self.assertNotEqual(rc, 0, "exit status: %r\n%s\n%s" % (rc, out, err))
        self.assertNotIn("listening", out)
        self.assertIn("99", out + err, "the refusal names the database's schema version: %r %r" % (out, err))
        self.assertIn("schema", (out + err).lower(), "the refusal says what is wrong: %r %r" % (out, err))
        self.assertEqual(self.meta_version(), "99", "a refused node changes nothing")


class Secrets(ClusterCase):
    ROLE = "offload_pw"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            # A role that must give its password (scram), whatever the other lines say.
            cls.secret = "pw-%s-Secret" % token(16)
            cls.pg.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (cls.ROLE, cls.secret))
            cls.pg.psql("GRANT ALL ON DATABASE offload TO %s" % cls.ROLE)
            cls.pg.psql("GRANT ALL ON SCHEMA public TO %s" % cls.ROLE)
            hba = os.path.join(cls.pg.data, "pg_hba.conf")
            with open(hba) as f:
                text = f.read()
            with open(hba, "w") as f:
                f.write("local all %s scram-sha-256\n" % cls.ROLE + text)
            cls.pg.psql("SELECT pg_reload_conf()")
        except Exception:
            cls.pg.cleanup()
            raise

    def kv_url(self, password=None):
        url = "host=%s port=%d dbname=offload user=%s" % (self.pg.sock, self.pg.port, self.ROLE)
        return url + (" password=%s" % password if password else "")

    def uri(self, password):
        return "postgresql://%s:%s@/offload?host=%s&port=%d" % (self.ROLE, password, self.pg.sock, self.pg.port)

    def test_the_role_needs_its_password(self):
        # Checks the fixture: without its password the role cannot log in, so
        # a node of test_passwords_never_printed that works used the password.
        env = dict(os.environ, PGPASSWORD="", PGPASSFILE="/nonexistent")
        r = subprocess.run(["psql", "-XAt", self.kv_url(), "-c", "SELECT 1"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "the role logged in without a password: %r" % r.stdout)
        r = subprocess.run(["psql", "-XAt", self.kv_url(self.secret), "-c", "SELECT 1"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "1"), r.stderr)

    def test_passwords_never_printed(self):
        secret = self.secret
        passfile = os.path.join(self.pg.base, "pgpass")
        with open(passfile, "w") as f:
            f.write("*:*:*:%s:%s\n" % (self.ROLE, secret))
        os.chmod(passfile, 0o600)
        nodes = [
            self.start_node("uri", pg_url=self.uri(secret)),                            # in the URL
            self.start_node("kv", pg_url=self.kv_url(secret)),                          # key=value
            self.start_node("env", pg_url=self.kv_url(), env={"PGPASSWORD": secret}),   # PGPASSWORD
            self.start_node("file", pg_url=self.kv_url(), env={"PGPASSFILE": passfile}),  # PGPASSFILE
        ]
        bodies = []

        def get(n, path):
            r = n.get(path)
            bodies.append(r.body)
            return r

        for n in nodes:
            self.assertEqual(get(n, "/health").json().get("store"), {"kind": "postgres", "ok": True}, n.name)
            get(n, "/nodes")
            get(n, "/metrics")
            j = self.submit_spin(n, 20)
            self.assertEqual(self.wait_final(n, j["id"])["status"], "complete")
        # The database goes away and comes back: the nodes log and reconnect.
        self.pg.stop()
        time.sleep(2.0)
        for n in nodes:
            bodies.append(get(n, "/health").body)
        self.pg.start()
        for n in nodes:
            self.wait_until(lambda: get(n, "/health").json().get("store", {}).get("ok") is True, 20, interval=0.2,
                            what="%s's store ok again after PostgreSQL came back" % n.name)
            j = self.submit_spin(n, 20)
            self.assertEqual(self.wait_final(n, j["id"])["status"], "complete")
        for n in nodes:
            n.stop()
            text = "\n".join(n.out_lines + n.err_lines)
            self.assertNotIn(secret, text, "node %s printed the password" % n.name)
        for b in bodies:
            self.assertNotIn(secret.encode(), b, "a reply shows the password")
        # A node that cannot reach its database says so without the password.
        gone = "postgresql://%s:%s@/offload?host=/nonexistent-%s&port=5432" % (self.ROLE, secret, token())
        rc, out, err = self.run_node_cli(self.node_flags("lost", free_port(), pg_url=gone), timeout=6,
                                         env={"PGPASSWORD": secret})
        self.assertNotIn(secret, out + err, "a node that cannot connect printed the password")


if __name__ == "__main__":
    main()
