"""Helpers for the scale-out tests (test_cluster.py, test_cluster_chaos.py):
offload nodes sharing one throwaway PostgreSQL (scripts/pgtmp.py).

    from cluster_harness import *      # also brings harness's names

A ClusterCase class starts its own PostgreSQL in setUpClass (a temp dir,
unix socket only) and removes it in tearDownClass, after every node the
class started has stopped. Nodes are ordinary harness servers
(`offload serve --store postgres --pg-url URL --node-id ID ...`), stopped
by their pid; each listens on a port picked free just before it starts, so
that it can name itself with --advertise-url and be restarted on the same
port after a SIGKILL ("the same args and node id").

Leases are short here so that a dead node is noticed quickly:
--heartbeat-ms 250 --lease-timeout-ms 1500, and each node has 2 workers.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))
from harness import *  # noqa: E402,F401,F403
from harness import _die_with_parent  # noqa: E402
from pgtmp import PgTmp  # noqa: E402

HEARTBEAT_MS = 250
LEASE_MS = 1500
WORKERS = 2
JSON_CT = {"Content-Type": "application/json"}
# Node ids are prefixed with this run's tag ("e2e<pid>-n1"), so that nothing
# else on the machine that names nodes n1, n2... is mistaken for ours (or
# ours for its).
RUN_TAG = "e2e%d-" % os.getpid()


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def now_ms():
    return int(time.time() * 1000)


def parse_metrics(text):
    """{series: value} of a Prometheus text body; series is the name plus
    its label set as printed (`name{a="b"}`)."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", ln)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


class Node(Server):
    """A cluster node: a harness Server that remembers its name and flags
    (restart() starts the same node again, on the same port)."""

    def __init__(self, name, args, port, env=None):
        self.name = name
        self.node_args = list(args)
        self.env = env
        super().__init__(list(args), env=env, port=port)

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)


class ClusterCase(OffloadTestCase):
    """One PostgreSQL for the class; nodes started by start_node()."""

    PG_SETTINGS = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgTmp(settings=cls.PG_SETTINGS)
        try:
            cls.pg.start()
        except Exception:
            cls.pg.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    # -- nodes -----------------------------------------------------------------
    def node_flags(self, name, port, *extra, pg_url=None, lease_ms=LEASE_MS):
        """Flags of node `name` (its id is RUN_TAG + name)."""
        return ["--store", "postgres", "--pg-url", pg_url or self.pg.url, "--node-id", RUN_TAG + name,
                "--advertise-url", "http://%s:%d" % (HOST, port),
                "--heartbeat-ms", str(HEARTBEAT_MS), "--lease-timeout-ms", str(lease_ms),
                "--workers", str(WORKERS)] + [str(a) for a in extra]

    def start_node(self, name, *extra, pg_url=None, env=None, cleanup=True, lease_ms=LEASE_MS):
        """Starts node `name` (id RUN_TAG + name, its .name) on a free port
        (another one if that port was taken in the meantime by someone else)."""
        last = None
        for _ in range(3):
            port = free_port()
            try:
                n = Node(RUN_TAG + name, self.node_flags(name, port, *extra, pg_url=pg_url, lease_ms=lease_ms), port,
                         env=env)
            except AssertionError as e:
                last = e
                if "in use" in str(e).lower():
                    continue
                raise
            if cleanup:
                self.addCleanup(n.stop)
            return n
        raise last

    def restart_node(self, old, cleanup=True):
        """The same node (name, flags, port) again, once the old process is gone."""
        self.assertIsNotNone(old.wait_exit(20), "node %s (pid %d) did not exit" % (old.name, old.pid))
        last = None
        for _ in range(20):
            try:
                n = Node(old.name, old.node_args, old.port, env=old.env)
            except AssertionError as e:  # the port may be busy for a moment
                last = e
                if "in use" in str(e).lower():
                    time.sleep(0.25)
                    continue
                raise
            if cleanup:
                self.addCleanup(n.stop)
            return n
        raise last

    def start_nodes(self, n, *extra):
        return [self.start_node("n%d" % (i + 1), *extra) for i in range(n)]

    def run_node_cli(self, args, timeout, env=None):
        """`offload serve --host 127.0.0.1 --port 0 ARGS` that may refuse to
        start: (exit code or None if it still ran after `timeout` s and was
        killed, stdout, stderr)."""
        cmd = [os.environ["OFFLOAD_BIN"], "serve", "--host", HOST, "--port", "0", "--access-log", "off"] + \
            [str(a) for a in args]
        penv = None
        if env is not None:
            penv = dict(os.environ)
            penv.update(env)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_die_with_parent, env=penv)
        rc = None
        try:
            out, err = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    # -- requests --------------------------------------------------------------
    def post(self, node, body, key=None, timeout=HTTP_TIMEOUT):
        h = dict(JSON_CT)
        if key is not None:
            h["Idempotency-Key"] = key
        return node.req("POST", "/jobs", body, h, timeout=timeout)

    def submit_spin(self, node, ms, retries=None, key=None):
        """POST /jobs spin {ms} (with retries): the 202's job, checked."""
        body = {"task": "spin", "params": {"ms": ms}}
        if retries is not None:
            body["retries"] = retries
        r = self.post(node, body, key)
        self.assertEqual(r.status, 202, "POST /jobs %r to %s: %r" % (body, node.name, r))
        self.assertJsonType(r)
        j = self.checkJob(r.json(), expect_status={"queued", "processing", "complete"}, task="spin",
                          params={"ms": ms})
        self.assertEqual(r.header("Location"), "/jobs/%s" % j["id"], repr(r))
        return j

    def listing(self, node, status=None):
        r = node.get("/jobs?limit=1000" + ("&status=%s" % status if status else ""))
        self.assertEqual(r.status, 200, "GET /jobs on %s: %r" % (node.name, r))
        self.assertJsonType(r)
        b = r.json()
        self.assertEqual(set(b.keys()), {"jobs"}, repr(b))
        for j in b["jobs"]:
            self.checkJob(j)
        return b["jobs"]

    def nodes_view(self, node):
        """GET /nodes on `node`: {id: entry}, each entry's shape checked."""
        r = node.get("/nodes")
        self.assertEqual(r.status, 200, "GET /nodes on %s: %r" % (node.name, r))
        self.assertJsonType(r)
        b = r.json()
        self.assertEqual(set(b.keys()), {"nodes"}, repr(b))
        self.assertIsInstance(b["nodes"], list, repr(b))
        out = {}
        for e in b["nodes"]:
            self.assertEqual(set(e.keys()), {"id", "url", "startedAt", "lastHeartbeatAt", "alive", "workers"},
                             "GET /nodes entry: %r" % e)
            self.assertIsInstance(e["id"], str, repr(e))
            self.assertIsInstance(e["url"], str, repr(e))
            self.assertIsInstance(e["alive"], bool, repr(e))
            self.assertMs(e["startedAt"], "startedAt of node %r" % e["id"])
            self.assertMs(e["lastHeartbeatAt"], "lastHeartbeatAt of node %r" % e["id"])
            self.assertIsInstance(e["workers"], dict, repr(e))
            self.assertEqual(set(e["workers"].keys()), {"total", "busy"}, repr(e))
            for k in ("total", "busy"):
                v = e["workers"][k]
                self.assertTrue(isinstance(v, int) and not isinstance(v, bool) and v >= 0, repr(e))
            self.assertLessEqual(e["workers"]["busy"], e["workers"]["total"], repr(e))
            self.assertNotIn(e["id"], out, "node %r listed twice: %r" % (e["id"], b))
            out[e["id"]] = e
        return out

    def metrics(self, node):
        r = node.get("/metrics")
        self.assertEqual(r.status, 200, "GET /metrics on %s: %r" % (node.name, r))
        return parse_metrics(r.body.decode("utf-8", "replace"))

    def busy_jobs(self, node):
        """Ids of the jobs node's workers run now (GET /workers)."""
        r = node.get("/workers")
        self.assertEqual(r.status, 200, "GET /workers on %s: %r" % (node.name, r))
        return {w["jobId"] for w in r.json()["workers"] if w["jobId"] is not None}

    def runner_of(self, nodes, job_id, timeout=5.0):
        """The node whose worker runs job_id (GET /workers on each)."""
        def find():
            for n in nodes:
                if n.alive() and job_id in self.busy_jobs(n):
                    return n
            return None
        return self.wait_until(find, timeout, interval=0.02, what="a worker of some node running job %s" % job_id)

    def same_everywhere(self, nodes, job_id):
        """GET /jobs/<id> on every node: the replies, which must be equal."""
        views = [self.job(n, job_id) for n in nodes]
        for n, v in zip(nodes[1:], views[1:]):
            self.assertEqual(v, views[0], "job %s reads differently on %s than on %s" % (job_id, n.name, nodes[0].name))
        return views[0]
