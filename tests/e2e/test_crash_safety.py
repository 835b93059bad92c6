"""Crash safety of `--store sqlite`: a 202 means the job survives a crash.

Clients keep 32 submissions in flight while the server is SIGKILLed at a
random moment, 20 times over, and restarted on the same data dir each time.
At the end every job that ever got a 202 exists and is final: `complete`
with the right result, or `failed` with `interrupted` when it was running at
a kill and had no retry left. No job ran twice unless it was running at a
kill (delivery is at-least-once only for jobs interrupted mid-run): a job
whose row never read `processing` right after any kill has attempts 1.
"""
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

KILLS = 20
INFLIGHT = 32


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class CrashSafety(OffloadTestCase):

    def test_sigkill_twenty_times_under_load(self):
        base = tempfile.mkdtemp(prefix="offload-crash-")
        self.addCleanup(shutil.rmtree, base, True)
        d = os.path.join(base, "data")
        rnd = random.Random(7)
        args = ("--store", "sqlite", "--data-dir", d, "--workers", "2", "--max-queue", "100000")

        lock = threading.Lock()
        state = {"srv": self.start_server(*args), "stop": False}
        accepted = {}  # id -> (n, retries)
        errors = []

        def client(k):
            r = random.Random(k)
            while True:
                with lock:
                    if state["stop"]:
                        return
                    srv = state["srv"]
                n = r.randint(5, 24)
                retries = r.choice((0, 1))
                try:
                    resp = srv.req("POST", "/jobs", {"task": "fibonacci", "params": {"n": n}, "retries": retries},
                                   timeout=10)
                except Exception:
                    time.sleep(0.01)  # the server is being killed or restarted
                    continue
                if resp.status == 202:
                    with lock:
                        accepted[resp.json()["id"]] = (n, retries)
                elif resp.status not in (503,):
                    errors.append((resp.status, resp.body[:200]))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(INFLIGHT)]
        for t in threads:
            t.start()

        interrupted_candidates = set()  # rows that read `processing` right after a kill
        for _ in range(KILLS):
            time.sleep(rnd.uniform(0.05, 0.3))
            with lock:
                srv = state["srv"]
            srv.kill()
            srv.wait_exit(10)
            con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "offload.db"), uri=True, timeout=5)
            try:
                interrupted_candidates |= {r[0] for r in con.execute("SELECT id FROM jobs WHERE status='processing'")}
            finally:
                con.close()
            new = self.start_server(*args)
            with lock:
                state["srv"] = new
        with lock:
            state["stop"] = True
        for t in threads:
            t.join(30)
        srv = state["srv"]
        self.assertEqual(errors, [], "unexpected replies")
        self.assertGreater(len(accepted), 200, "too few jobs accepted to mean anything")

        reran = []
        for jid, (n, retries) in accepted.items():
            j = self.wait_final(srv, jid, timeout=60)
            self.checkJob(j, job_id=jid, task="fibonacci", params={"n": n})
            if j["status"] == "complete":
                self.assertEqual(j["result"], fib(n), repr(j))
            else:
                self.assertEqual(j["status"], "failed", repr(j))
                self.assertEqual(j["error"]["code"], "interrupted", repr(j))
                self.assertIn(jid, interrupted_candidates, "interrupted, but never running at a kill: %r" % j)
                self.assertGreater(j["attempts"], retries, "interrupted although a retry was left: %r" % j)
            if j["attempts"] > 1:
                reran.append(jid)
                self.assertIn(jid, interrupted_candidates, "ran twice without being interrupted: %r" % j)
                self.assertLessEqual(j["attempts"], retries + 1, repr(j))
            else:
                self.assertEqual(j["attempts"], 1, repr(j))
        print("\n%d jobs accepted across %d kills; %d running at a kill; %d ran again" %
              (len(accepted), KILLS, len(interrupted_candidates), len(reran)), file=sys.stderr)
        self.term(srv)

    def term(self, srv):
        import signal as _signal
        srv.signal(_signal.SIGTERM)
        rc = srv.wait_exit(20)
        self.assertEqual(rc, 0, "SIGTERM: exit code %r\nstderr:\n%s" % (rc, srv.stderr()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
