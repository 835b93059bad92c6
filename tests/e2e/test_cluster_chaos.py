"""Scale-out under failure (issue 12): nodes killed, frozen, and the
database restarted, while clients keep submitting.

1. SIGKILL: 32 clients keep one spin job each in flight (with retries) on
   three nodes; ten times, at random moments, a node is SIGKILLed and
   started again with the same flags and node id (at once, or only after
   its jobs were taken over, so both the restart and the lease expiry give
   jobs back). Every job a killed node was running is run again within
   lease timeout + 2 s of the kill (its next startedAt); every job that got
   a 202 ends complete and reads the same on every node; no reply but
   202s to submissions and 200s to reads (a killed node only drops
   connections).
2. SIGSTOP: a node frozen past its lease is dead to the others, which run
   its job again (attempts 2); when it is resumed its late result is
   fenced off: the job stays with the retry, completes with the retry's
   run, the frozen node counts offload_cluster_fenced_writes_total, frees
   its worker and logs it.
3. Takeover: a node SIGKILLed and restarted at once with its id (and a
   20 s lease) gives its running job back at start (attempt 2 well before
   the lease could run out); a dead node's job without retries ends
   `failed` `interrupted` (attempts 1) within lease timeout + 2 s.
4. PostgreSQL stopped for 3 s under load and started again: submissions
   get 503 store_unavailable (Retry-After: 1) during the outage only and
   succeed again within a few seconds without restarting any node;
   /health says store ok false, then true again; a node keeps answering
   for the job it runs, which keeps running and completes (attempts 1);
   every job that got a 202 ends complete.

Each class has its own PostgreSQL (scripts/pgtmp.py). Nodes use
--heartbeat-ms 250 --lease-timeout-ms 1500 --workers 2.
"""
import http.client
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import *  # noqa: E402,F401,F403

# A job of a dead node runs again within the lease timeout plus this (ms).
RERUN_SLACK_MS = 2000
# After PostgreSQL is back, submissions succeed again within this many seconds.
RECOVER_S = 5.0
NET_ERRORS = (OSError, http.client.HTTPException)


class KillNodes(ClusterCase):

    def test_sigkill_nodes_under_load(self):
        seed = int(os.environ.get("OFFLOAD_CHAOS_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        ctx = "(seed %d: OFFLOAD_CHAOS_SEED=%d reproduces the kill schedule)" % (seed, seed)
        nodes = self.start_nodes(3, "--retry-backoff-ms", "100")
        ports = [n.port for n in nodes]
        accepted = {}          # job id -> port that answered 202
        problems = []
        lock = threading.Lock()
        stop = threading.Event()

        def note(*what):
            with lock:
                problems.append(what)

        def client(i):
            r_ = random.Random(seed + i)
            k = i
            while not stop.is_set():
                port = ports[k % 3]
                k += 1
                body = {"task": "spin", "params": {"ms": r_.randint(100, 600)}, "retries": 10}
                try:
                    r = request(port, "POST", "/jobs", body, timeout=20)
                except NET_ERRORS:
                    time.sleep(0.05)  # a node being killed or restarted
                    continue
                if r.status != 202:
                    note("POST /jobs", port, r.status, r.body[:300])
                    time.sleep(0.2)
                    continue
                jid = r.json()["id"]
                with lock:
                    accepted[jid] = port
                deadline = time.monotonic() + 120
                while True:
                    if time.monotonic() > deadline:
                        note("not final after 120 s", jid)
                        break
                    port = ports[k % 3]
                    k += 1
                    try:
                        g = request(port, "GET", "/jobs/%s?wait=5" % jid, timeout=20)
                    except NET_ERRORS:
                        time.sleep(0.05)
                        continue
                    if g.status != 200:
                        note("GET /jobs/%s" % jid, port, g.status, g.body[:300])
                        break
                    if g.json()["status"] in FINAL:
                        break

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(32)]
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        time.sleep(2.0)  # the load is on

        reruns = []  # (job id, ms from the kill to its next start)
        for i in range(10):
            time.sleep(rng.uniform(0.3, 1.5))
            v = rng.randrange(3)
            victim = nodes[v]
            running = self.busy_jobs(victim)
            t_kill = now_ms()
            victim.kill()
            live = [n for n in nodes if n is not victim]
            if i % 2 == 0:  # back at once: it gives its old jobs back itself
                nodes[v] = self.restart_node(victim)
            pending = set(running)
            last = {}
            deadline = t_kill + LEASE_MS + RERUN_SLACK_MS + 3000
            while pending:
                for jid in sorted(pending):
                    j = self.job(live[rng.randrange(2)], jid)
                    last[jid] = j
                    if j["startedAt"] is not None and j["startedAt"] > t_kill:
                        pending.discard(jid)
                        reruns.append((jid, j["startedAt"] - t_kill))
                        self.assertLessEqual(j["startedAt"] - t_kill, LEASE_MS + RERUN_SLACK_MS,
                                             "kill %d of %s: its job %s ran again %d ms after the kill %s: %r"
                                             % (i + 1, victim.name, jid, j["startedAt"] - t_kill, ctx, j))
                    elif j["status"] in FINAL:
                        # It ended on the victim just before the kill, or it is wrong.
                        self.assertLessEqual(j["finishedAt"], t_kill + 50,
                                             "kill %d of %s: job %s ended %d ms after the kill without a new run %s: %r"
                                             % (i + 1, victim.name, jid, j["finishedAt"] - t_kill, ctx, j))
                        pending.discard(jid)
                if pending and now_ms() > deadline:
                    self.fail("kill %d of %s at %d: jobs not run again within %d ms %s: %r"
                              % (i + 1, victim.name, t_kill, deadline - t_kill, ctx,
                                 {x: last.get(x) for x in pending}))
                time.sleep(0.02)
            if i % 2 == 1:  # back only after the others took its jobs over (lease expiry)
                nodes[v] = self.restart_node(victim)

        stop.set()
        for t in threads:
            t.join(150)
        self.assertFalse(any(t.is_alive() for t in threads), "a client still waits for its job %s" % ctx)
        self.assertEqual(problems, [], "unexpected replies under the kills %s" % ctx)
        self.assertGreaterEqual(len(reruns), 5, "the kills hit running jobs (else this test tested nothing): %r"
                                % reruns)
        self.assertGreater(len(accepted), 50, "the load ran")
        retried = 0
        for jid in accepted:
            j = self.same_everywhere(nodes, jid)
            self.assertEqual(j["status"], "complete", "job %s %s: %r" % (jid, ctx, j))
            retried += j["attempts"] > 1
        self.assertGreaterEqual(retried, 1, "jobs were run again")
        for n in nodes:
            v = self.nodes_view(n)
            self.assertTrue(all(v[m.name]["alive"] for m in nodes), "after the kills, from %s: %r" % (n.name, v))


class StopNode(ClusterCase):

    def test_sigstopped_node_is_fenced_off(self):
        ms = 5000
        a = self.start_node("n1", "--retry-backoff-ms", "100")
        j = self.submit_spin(a, ms, retries=2)
        jid = j["id"]
        first = self.wait_status(a, jid, "processing", 10)
        self.runner_of([a], jid)  # on a worker of n1, the only node
        b = self.start_node("n2", "--retry-backoff-ms", "100")
        c = self.start_node("n3", "--retry-backoff-ms", "100")
        self.wait_until(lambda: all(e["alive"] for e in self.nodes_view(b).values()) and len(self.nodes_view(b)) == 3,
                        5, interval=0.05, what="n2 sees three nodes alive")
        j = self.job(b, jid)
        self.assertEqual((j["status"], j["attempts"]), ("processing", 1), "still n1's first run: %r" % j)
        while now_ms() < first["startedAt"] + 1500:
            time.sleep(0.02)
        self.assertLess(now_ms(), first["startedAt"] + ms - 1500, "the test froze n1 before its run could end")
        t_stop = now_ms()
        a.signal(signal.SIGSTOP)

        # n1 is dead to the others, and its job runs again (attempt 2) on n2 or n3
        retry = self.wait_job(b, jid, lambda x: x["attempts"] == 2 and x["status"] == "processing",
                              (LEASE_MS + RERUN_SLACK_MS) / 1000.0 + 5, what="attempt 2 processing")
        self.assertLessEqual(retry["startedAt"] - t_stop, LEASE_MS + RERUN_SLACK_MS,
                             "n1 frozen at %d; the retry started at %d" % (t_stop, retry["startedAt"]))
        # n2's GET /nodes says so too (within the same bound as the re-run)
        last = [None]

        def n1_dead():
            v = last[0] = self.nodes_view(b)
            return not v[a.name]["alive"]

        while not n1_dead():
            self.assertLessEqual(now_ms() - t_stop, LEASE_MS + RERUN_SLACK_MS,
                                 "n2's GET /nodes at %d, n1 frozen since %d: n1, silent past its lease, is still "
                                 "alive: %r" % (now_ms(), t_stop, last[0]))
            time.sleep(0.05)
        runner = self.runner_of([b, c], jid)
        # n1's own run is over by its clock; resume it while the retry still runs
        while now_ms() < first["startedAt"] + ms + 200:
            time.sleep(0.05)
        self.assertLess(now_ms(), retry["startedAt"] + ms - 1500, "the retry still runs when n1 resumes")
        a.signal(signal.SIGCONT)
        t_cont = time.monotonic()
        # n1's late result does not land: the job stays with the retry
        while time.monotonic() < t_cont + 1.0:
            for n in (b, c):
                x = self.job(n, jid)
                self.assertEqual((x["status"], x["attempts"]), ("processing", 2),
                                 "after n1 resumed, on %s (the retry runs on %s): %r" % (n.name, runner.name, x))
            time.sleep(0.05)
        final = self.wait_final(b, jid, timeout=30)
        self.assertEqual(final["status"], "complete", repr(final))
        self.assertEqual(final["attempts"], 2, repr(final))
        self.assertGreater(final["startedAt"], t_stop, "the result is the retry's (n1's run started before "
                           "it was frozen at %d): %r" % (t_stop, final))
        self.assertGreaterEqual(final["finishedAt"] - final["startedAt"], ms - 5,
                                "the retry ran its whole %d ms: the result is not n1's late one: %r" % (ms, final))
        self.wait_until(lambda: self.job(a, jid) == final, 5, interval=0.05, what="n1 reads the final job too")
        self.assertEqual(self.job(c, jid), final)
        self.wait_until(lambda: self.metrics(a).get("offload_cluster_fenced_writes_total", 0) >= 1, 5,
                        interval=0.1, what="offload_cluster_fenced_writes_total >= 1 on n1")
        self.wait_until(lambda: jid not in self.busy_jobs(a), 5, interval=0.05, what="n1 cancels its copy")
        expired = sum(self.metrics(n).get("offload_cluster_lease_expiries_total", 0) for n in (b, c))
        self.assertGreaterEqual(expired, 1, "n2 or n3 counted n1's lease expiry")
        self.assertIn(jid, "\n".join(a.out_lines + a.err_lines), "n1 logs the job it lost")
        # n1 goes on working
        j2 = self.submit_spin(a, 50)
        self.assertEqual(self.wait_final(a, j2["id"], 20)["status"], "complete")
        # one run, one start time: the retry's startedAt as it read while it ran
        self.assertEqual(final["startedAt"], retry["startedAt"],
                         "startedAt of the retry changed between processing and complete: %r then %r" % (retry, final))


class Takeover(ClusterCase):

    def test_a_node_restarted_with_its_id_gives_its_old_jobs_back_at_once(self):
        # A long lease (20 s): only the restarted node itself can give the job back this soon.
        lease = 20000
        a = self.start_node("r1", lease_ms=lease)
        j = self.submit_spin(a, 3000, retries=1)
        jid = j["id"]
        self.wait_status(a, jid, "processing", 10)
        self.runner_of([a], jid)
        t_kill = now_ms()
        a.kill()
        a = self.restart_node(a)
        j = self.wait_job(a, jid, lambda x: x["attempts"] == 2 and x["startedAt"] is not None, 10,
                          what="attempt 2 started on the restarted node")
        self.assertLess(j["startedAt"] - t_kill, 5000, "the restarted node gave its job back at start, long before "
                        "its %d ms lease ran out: %r" % (lease, j))
        j = self.wait_final(a, jid, 30)
        self.assertEqual((j["status"], j["attempts"]), ("complete", 2), repr(j))

    def test_a_dead_nodes_job_without_retries_fails_interrupted(self):
        a = self.start_node("i1")
        j = self.submit_spin(a, 60000)
        jid = j["id"]
        self.wait_status(a, jid, "processing", 10)
        b = self.start_node("i2")
        t_kill = now_ms()
        a.kill()
        j = self.wait_final(b, jid, (LEASE_MS + RERUN_SLACK_MS) / 1000.0 + 5)
        self.assertEqual(j["status"], "failed", repr(j))
        self.assertEqual(j["error"]["code"], "interrupted", repr(j))
        self.assertEqual(j["attempts"], 1, repr(j))
        self.assertLessEqual(j["finishedAt"] - t_kill, LEASE_MS + RERUN_SLACK_MS, repr(j))
        # and b goes on with other work
        k = self.submit_spin(b, 50)
        self.assertEqual(self.wait_final(b, k["id"], 20)["status"], "complete")


class PgRestart(ClusterCase):

    def test_postgres_restarted_under_load(self):
        nodes = self.start_nodes(3)
        pids = [n.pid for n in nodes]
        long = self.submit_spin(nodes[0], 9000, retries=3)
        holder = self.runner_of(nodes, long["id"])
        ports = [n.port for n in nodes]
        log = []        # (port, t_send, t_recv, status, error code, Retry-After, job id)
        problems = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(i):
            r_ = random.Random(i)
            k = i
            while not stop.is_set():
                port = ports[k % 3]
                k += 1
                body = {"task": "spin", "params": {"ms": r_.randint(20, 100)}, "retries": 3}
                t0 = time.monotonic()
                try:
                    r = request(port, "POST", "/jobs", body, timeout=20)
                except NET_ERRORS as e:
                    with lock:
                        problems.append(("POST", port, repr(e)))
                    time.sleep(0.1)
                    continue
                t1 = time.monotonic()
                code = jid = None
                if r.status == 202:
                    jid = r.json()["id"]
                else:
                    try:
                        code = r.json()["error"]["code"]
                    except Exception:
                        code = r.body[:200]
                with lock:
                    log.append((port, t0, t1, r.status, code, r.header("Retry-After"), jid))
                time.sleep(0.1)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        time.sleep(2.0)

        t_down0 = time.monotonic()
        self.pg.stop()
        t_down1 = time.monotonic()
        seen_ok = {n.name: [] for n in nodes}
        held = []
        while time.monotonic() < t_down1 + 3.0:
            for n in nodes:
                h = self.health(n)  # 200, always
                seen_ok[n.name].append(h.get("store", {}).get("ok"))
            r = holder.get("/jobs/%s" % long["id"])
            held.append((r.status, r.json().get("status") if r.status == 200 else r.body[:200]))
            time.sleep(0.1)
        t_up0 = time.monotonic()
        self.pg.start()
        t_up1 = time.monotonic()
        time.sleep(RECOVER_S + 3.0)
        stop.set()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hangs")

        self.assertEqual(problems, [], "connections failed")
        when = lambda t: "%+.2f s from the stop" % (t - t_down0)  # noqa: E731
        for port, t0, t1, status, code, ra, jid in log:
            if status == 202:
                self.assertFalse(t0 >= t_down1 and t1 <= t_up0,
                                 "a 202 while PostgreSQL was down (sent %s, answered %s)" % (when(t0), when(t1)))
                continue
            self.assertEqual((status, code), (503, "store_unavailable"),
                             "a submission got %r %r (answered %s)" % (status, code, when(t1)))
            self.assertEqual(ra, "1", "503 store_unavailable has Retry-After: 1")
            self.assertGreaterEqual(t1, t_down0, "a 503 answered before PostgreSQL stopped (%s)" % when(t1))
            self.assertLessEqual(t1, t_up1 + RECOVER_S,
                                 "a 503 %.2f s after PostgreSQL was back (on port %d)" % (t1 - t_up1, port))
        inside = [e for e in log if e[1] >= t_down1 and e[2] <= t_up0]
        self.assertTrue(inside, "submissions were sent during the outage")
        for port in ports:
            after = [e for e in log if e[0] == port and e[1] >= t_up1 + RECOVER_S]
            self.assertTrue(after and all(e[3] == 202 for e in after),
                            "port %d: submissions %.0f s after PostgreSQL came back: %r"
                            % (port, RECOVER_S, [(e[3], e[4]) for e in after]))
        for n in nodes:
            self.assertIn(False, seen_ok[n.name], "/health of %s during the outage: store ok %r"
                          % (n.name, seen_ok[n.name]))
            self.assertEqual(self.health(n).get("store"), {"kind": "postgres", "ok": True}, n.name)
        self.assertEqual([n.pid for n in nodes], pids)
        self.assertTrue(all(n.alive() for n in nodes), "no node restarted or died")
        self.assertTrue(held, "the holder was asked during the outage")
        self.assertEqual(set(held), {(200, "processing")},
                         "GET of the job %s runs, during the outage: %r" % (holder.name, held))
        j = self.wait_final(nodes[1], long["id"], timeout=30)
        self.assertEqual((j["status"], j["attempts"]), ("complete", 1),
                         "the job that ran through the outage kept running and reported: %r" % j)
        accepted = [e[6] for e in log if e[3] == 202]
        self.assertGreater(len(accepted), 20, "the load ran")
        for jid in accepted:
            j = self.wait_final(nodes[2], jid, timeout=60)
            self.assertEqual(j["status"], "complete", repr(j))


if __name__ == "__main__":
    main()
