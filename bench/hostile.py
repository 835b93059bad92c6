#!/usr/bin/env python3
"""Hostile clients against a running offload server (Python 3 standard library
only). Used by tests/e2e/test_hostile.py and by bench/run.py ("hostile
clients"); runnable by hand against a server you started:

    bench/hostile.py --port 3000 --pid $(pgrep -n offload) a   # or b, or prefill

Issue 6, item 9 ("fair and bounded under hostile clients"):

  case A  C connections each pipeline R x `GET /jobs?limit=1000` (about 240 KB
          per reply with 1000 finished jobs retained) and never read a byte.
          They stay open while fresh connections probe `/health`; then they
          leave. Measured: every probe's latency (connect to last byte), and
          the server's VmRSS before, at peak, and after they left.
  case B  4 connections pipeline the same listing and read the replies
          continuously (a fixed number in flight per connection, refilled as
          replies arrive) for a few seconds, while a paced series of probes,
          each on a fresh connection, measures `/health`: p50 / p99 / max.

The readers of case B run in a child process (this file, `_readers`), so that
the probe's timing does not queue behind the readers for Python's GIL.

Every socket operation has a deadline, every load is bounded in count and in
time and stops by itself, and all traffic goes to 127.0.0.1.
"""
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
LISTING = "/jobs?limit=1000"
_HEAD_END = b"\r\n\r\n"
_CL_RE = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)
_STATUS_RE = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def req_bytes(method, path, body=None):
    head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, HOST)
    if body is not None:
        body = json.dumps(body).encode()
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return (head + "\r\n").encode("latin-1") + (body or b"")


# ---------------------------------------------------------------- a small HTTP reader

class ReplyCounter:
    """Counts complete Content-Length replies in a byte stream without keeping
    the bodies (a listing is ~240 KB: bodies are skipped, not copied)."""

    def __init__(self, keep_last_body=False, ok_status=200):
        self.ok_status = ok_status
        self.n_bad = 0
        self.buf = bytearray()
        self.skip = 0              # body bytes still to discard
        self.replies = 0
        self.bad = []              # (index, status) of non-200 replies, first few
        self.keep = keep_last_body
        self.body = bytearray()
        self.last_body = None
        self.bytes = 0
        self.first_status = None

    def feed(self, data):
        self.bytes += len(data)
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                if self.keep:
                    self.body += data[i:i + k]
                self.skip -= k
                i += k
                if self.skip == 0:
                    self._done()
                continue
            if self.buf:  # a head split across reads (rare): join it once
                data = bytes(self.buf) + data[i:]
                self.buf = bytearray()
                i, n = 0, len(data)
            end = data.find(_HEAD_END, i)
            if end < 0:
                self.buf += data[i:]
                break
            head = data[i:end]
            m = _STATUS_RE.match(head)
            status = int(m.group(1)) if m else -1
            c = _CL_RE.search(head)
            size = int(c.group(1)) if c else 0
            if status != self.ok_status:
                self.n_bad += 1
                if len(self.bad) < 5:
                    self.bad.append((self.replies, status))
            if self.first_status is None:
                self.first_status = status
            i = end + 4
            self.body = bytearray()
            self.skip = size
            if size == 0:
                self._done()

    def _done(self):
        self.replies += 1
        if self.keep:
            self.last_body = bytes(self.body)
            self.body = bytearray()


def http_once(port, method, path, body=None, timeout=10.0):
    """One request on a fresh connection: (status, body bytes, seconds from
    connect to the last byte). Raises socket.timeout / OSError."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(req_bytes(method, path, body))
        rc = ReplyCounter(keep_last_body=True)
        while rc.replies == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply within %.1f s" % timeout)
            s.settimeout(left)
            d = s.recv(1 << 20)
            if not d:
                raise ConnectionError("closed before a full reply")
            rc.feed(d)
        status = rc.first_status
        return status, rc.last_body, time.monotonic() - t0
    finally:
        s.close()


def probe_health(port, timeout):
    """A /health probe on a fresh connection: (seconds or None on timeout/error, status or error text)."""
    t0 = time.monotonic()
    try:
        st, body, dt = http_once(port, "GET", "/health", timeout=timeout)
    except (OSError, ConnectionError) as e:
        return None, "%s after %.1f s: %s" % (type(e).__name__, time.monotonic() - t0, e)
    if st != 200 or b'"status":"ok"' not in body:
        return None, "status %s body %r" % (st, body[:100])
    return dt, 200


def probe_into(port, timeout, waited, lat, errs):
    """One probe_health, recorded: how long it waited (ms), its latency (ms,
    None when unanswered) and any error. Returns when the probe started."""
    t_probe = time.monotonic()
    dt, st = probe_health(port, timeout)
    waited.append((time.monotonic() - t_probe) * 1000.0)
    lat.append(None if dt is None else dt * 1000.0)
    if dt is None:
        errs.append(st)
    return t_probe


def metric(port, name, timeout=10.0):
    st, body, _ = http_once(port, "GET", "/metrics", timeout=timeout)
    if st != 200:
        raise RuntimeError("/metrics answered %s" % st)
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\d+(?:\.\d+)?)", body, re.M)
    return float(m.group(1)) if m else None


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    """User + system CPU time of pid (all its threads), in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return 0.0


class RssSampler:
    """VmRSS (and CPU time) of pid every `interval` s in a thread: the peak,
    a coarse series for the record, and whether the server has gone quiet."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.t0 = time.monotonic()
        self.peak = vm_rss_kib(pid)
        self.series = [(0.0, self.peak)]  # (s since start, KiB), one point per 250 ms
        self.cpu = [(0.0, cpu_s(pid))]    # (s since start, CPU s), one point per 50 ms
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            v = vm_rss_kib(self.pid)
            self.peak = max(self.peak, v)
            t = time.monotonic() - self.t0
            if t - self.series[-1][0] >= 0.25:
                self.series.append((round(t, 2), v))
            if t - self.cpu[-1][0] >= 0.05:
                self.cpu.append((t, cpu_s(self.pid)))

    def quiet_for(self, window, max_share=0.1):
        """True if the server used under max_share of one core over the last
        `window` seconds: it has done all it is going to do for the clients."""
        cpu = self.cpu[:]
        t_now, c_now = cpu[-1]
        if t_now < window:
            return False
        for t, c in reversed(cpu):
            if t_now - t >= window:
                return (c_now - c) / (t_now - t) < max_share
        return False

    def cpu_used(self):
        return self.cpu[-1][1] - self.cpu[0][1]

    def stop(self):
        self._stop.set()
        self._t.join(5)
        self.peak = max(self.peak, vm_rss_kib(self.pid))
        return self.peak


def pct(xs, p):
    """Nearest-rank percentile of a sorted copy of xs (None for an empty list)."""
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]


# ---------------------------------------------------------------- setup

def prefill(port, n, timeout=60.0, batch=100):
    """n finished jobs: tiny report jobs (heavyIterations=1, the cheapest
    task), pipelined POST /jobs on one connection; returns when the server has
    no job queued or running. Raises RuntimeError on any other reply."""
    deadline = time.monotonic() + timeout
    one = req_bytes("POST", "/jobs", {"task": "report", "params": {"heavyIterations": 1}})
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        left = n
        while left:
            k = min(batch, left)
            s.sendall(one * k)
            rc = ReplyCounter(ok_status=202)
            while rc.replies < k:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                d = s.recv(1 << 16)
                if not d:
                    raise RuntimeError("prefill: connection closed")
                rc.feed(d)
            if rc.n_bad:
                raise RuntimeError("prefill: %d POST /jobs replies were not 202, e.g. %r" % (rc.n_bad, rc.bad))
            left -= k
    finally:
        s.close()
    while True:
        st, body, _ = http_once(port, "GET", "/health", timeout=10)
        h = json.loads(body)
        if h["workers"]["busy"] == 0 and h["queue"]["depth"] == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("prefill: %d jobs not finished within %.0f s: %r" % (n, timeout, h))
        time.sleep(0.05)
    st, body, _ = http_once(port, "GET", "/jobs?status=complete&limit=1000", timeout=30)
    got = len(json.loads(body)["jobs"]) if st == 200 else -1
    if got < min(n, 1000):
        raise RuntimeError("prefill: %d complete jobs listed, expected %d" % (got, min(n, 1000)))
    return got


def listing_size(port):
    st, body, _ = http_once(port, "GET", LISTING, timeout=30)
    return len(body) if st == 200 else None


def wait_connections(port, at_most, timeout):
    """Waits until offload_http_connections <= at_most (the probe's own
    connection counts); returns the last value read, or None."""
    deadline = time.monotonic() + timeout
    v = None
    while time.monotonic() < deadline:
        try:
            v = metric(port, "offload_http_connections", timeout=max(0.5, deadline - time.monotonic()))
        except (OSError, ConnectionError, RuntimeError):
            v = None
        if v is not None and v <= at_most:
            return v
        time.sleep(0.05)
    return v


def check_after(port, expect_jobs):
    """After the hostile clients left: /health and a full listing, answered
    correctly. Returns a list of problems (empty when fine)."""
    problems = []
    lat, st = probe_health(port, 10.0)
    if lat is None:
        problems.append("/health after: %s" % st)
    try:
        st, body, _ = http_once(port, "GET", LISTING, timeout=30)
        if st != 200:
            problems.append("%s after: status %s" % (LISTING, st))
        else:
            jobs = json.loads(body)["jobs"]
            if len(jobs) != expect_jobs:
                problems.append("%s after: %d jobs, expected %d" % (LISTING, len(jobs), expect_jobs))
            elif any(j.get("status") != "complete" for j in jobs):
                problems.append("%s after: a job is not complete" % LISTING)
    except (OSError, ConnectionError, ValueError) as e:
        problems.append("%s after: %s: %s" % (LISTING, type(e).__name__, e))
    return problems


# ---------------------------------------------------------------- case A

def case_a(port, pid, conns=100, reqs=100, probe_gap=0.25, min_probes=6, probe_timeout=30.0, hold_min_s=2.0,
           hold_max_s=30.0, quiet_s=0.5, leave_timeout=10.0, expect_jobs=None):
    """C connections pipeline R listings each and never read, and stay open
    while fresh-connection /health probes run one after another (every
    probe_gap s; each waits for the last). They stay open at least hold_min_s
    and min_probes probes, and then until the server has gone quiet (under
    10 % of a core for quiet_s: it has done all it will do for them, so its
    RSS has peaked), at most hold_max_s. Then they close.

    Returns a dict: probe latencies (ms; None = no 200 within probe_timeout),
    RSS before / peak / after they left (KiB), and, with expect_jobs, the
    problems seen on a normal /health and listing afterwards."""
    out = {"conns": conns, "reqs": reqs, "listing": LISTING, "probe_timeout_s": probe_timeout}
    time.sleep(0.2)
    base_conns = wait_connections(port, 1, 10) or 1
    out["rss_before_kib"] = vm_rss_kib(pid)
    sampler = RssSampler(pid)
    socks = []
    msg = req_bytes("GET", LISTING) * reqs
    lat, errs, at, waited = [], [], [], []
    t_open = time.monotonic()
    try:
        for _ in range(conns):
            s = socket.create_connection((HOST, port), timeout=10)
            s.setblocking(False)
            socks.append(s)
        # send every pipeline without ever reading; what cannot be sent within
        # 10 s stays unsent (counted)
        sel = selectors.DefaultSelector()
        pending = {}
        for s in socks:
            try:
                n = s.send(msg)
            except BlockingIOError:
                n = 0
            if n < len(msg):
                pending[s] = memoryview(msg)[n:]
                sel.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                s = key.fileobj
                try:
                    n = s.send(pending[s])
                except BlockingIOError:
                    continue
                except OSError:
                    n = len(pending[s])  # closed by the server: nothing more to send
                pending[s] = pending[s][n:]
                if not len(pending[s]):
                    del pending[s]
                    sel.unregister(s)
        out["unsent_bytes"] = sum(len(v) for v in pending.values())
        sel.close()
        t0 = time.monotonic()
        out["send_s"] = t0 - t_open
        quiet = False
        while True:
            el = time.monotonic() - t0
            if el >= hold_max_s:
                break
            if len(lat) >= min_probes and el >= hold_min_s:
                quiet = sampler.quiet_for(quiet_s)
                if quiet:
                    break
            at.append(round(el, 3))
            t_probe = probe_into(port, probe_timeout, waited, lat, errs)
            nxt = t_probe + probe_gap - time.monotonic()  # no catching up after a slow probe
            if nxt > 0:
                time.sleep(nxt)
        out["held_s"] = time.monotonic() - t0
        out["server_quiet"] = quiet
        out["server_cpu_s"] = sampler.cpu_used()
        out["rss_held_kib"] = vm_rss_kib(pid)
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        t_close = time.monotonic()
    out["probe_at_s"] = at
    out["probe_ms"] = lat
    out["probe_errors"] = errs
    ok = [x for x in lat if x is not None]
    out["probes"] = len(lat)
    out["probes_ok"] = len(ok)
    # Over every probe: an unanswered one counts with how long it waited (a
    # lower bound of its latency); probes_ok < probes says some were.
    out["probe_waited_ms"] = waited
    out["health_max_ms"] = max(waited) if waited else None
    out["health_p50_ms"] = pct(waited, 0.5)
    out["health_p99_ms"] = pct(waited, 0.99)
    out["connections_after"] = wait_connections(port, base_conns, leave_timeout)
    out["leave_s"] = time.monotonic() - t_close
    out["rss_peak_kib"] = sampler.stop()
    out["rss_series"] = sampler.series
    time.sleep(0.5)
    out["rss_after_kib"] = vm_rss_kib(pid)
    out["rss_growth_mib"] = (out["rss_peak_kib"] - out["rss_before_kib"]) / 1024.0
    out["rss_kept_mib"] = (out["rss_after_kib"] - out["rss_before_kib"]) / 1024.0
    if expect_jobs is not None:
        out["after_problems"] = check_after(port, expect_jobs)
    return out


# ---------------------------------------------------------------- case B

def _readers_main(argv):
    """Child process: `conns` connections, each keeping `depth` listings in
    flight and reading every reply, for `seconds` s (or until `max_req`
    replies per connection). Prints one JSON line."""
    port, conns, depth, seconds, max_req = (int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3]),
                                            int(argv[4]))
    one = req_bytes("GET", LISTING)
    sel = selectors.DefaultSelector()
    st = {}
    for _ in range(conns):
        s = socket.create_connection((HOST, port), timeout=10)
        s.setblocking(False)
        st[s] = {"rc": ReplyCounter(), "sent": 0, "out": b""}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    print("ready", flush=True)
    t0 = time.monotonic()
    end = t0 + seconds
    closed = 0
    while time.monotonic() < end:
        for key, ev in sel.select(0.05):
            s, c = key.fileobj, st[key.fileobj]
            if ev & selectors.EVENT_READ:
                try:
                    d = s.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    d = None
                except OSError:
                    d = b""
                if d == b"":
                    sel.unregister(s)
                    closed += 1
                    continue
                if d:
                    c["rc"].feed(d)
            want = min(c["rc"].replies + depth, max_req) - c["sent"]
            if want > 0:
                c["out"] += one * want
                c["sent"] += want
            if c["out"]:
                try:
                    n = s.send(c["out"])
                    c["out"] = c["out"][n:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    sel.unregister(s)
                    closed += 1
                    continue
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if c["out"] else 0)
            if key.events != mask:
                sel.modify(s, mask)
        if all(c["rc"].replies >= max_req for c in st.values()):
            break
    dur = time.monotonic() - t0
    for s in st:
        s.close()
    res = {"seconds": dur, "replies": sum(c["rc"].replies for c in st.values()),
           "bytes": sum(c["rc"].bytes for c in st.values()),
           "non_200": sum(c["rc"].n_bad for c in st.values()),
           "bad": [b for c in st.values() for b in c["rc"].bad][:5], "closed": closed}
    print(json.dumps(res), flush=True)
    return 0


def case_b(port, pid, conns=4, depth=16, seconds=5.0, probe_interval=0.02, probe_timeout=10.0,
           max_req=1000000, leave_timeout=10.0, expect_jobs=None):
    """4 reading pipeliners (a child process) for `seconds`; meanwhile a paced
    series of fresh-connection /health probes. Returns a dict of ms figures."""
    out = {"conns": conns, "depth": depth, "seconds": seconds}
    time.sleep(0.2)
    base_conns = wait_connections(port, 1, 10) or 1
    out["rss_before_kib"] = vm_rss_kib(pid)
    sampler = RssSampler(pid)
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_readers", str(port), str(conns),
                              str(depth), str(seconds), str(max_req)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lat, errs, waited = [], [], []
    try:
        line = child.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("case B readers did not start: %r %s" % (line, child.stderr.read()[-500:]))
        time.sleep(min(0.3, seconds / 10))  # let the pipelines fill
        t0 = time.monotonic()
        end = t0 + seconds - 0.5
        i = 0
        while time.monotonic() < end:
            probe_into(port, probe_timeout, waited, lat, errs)
            i += 1
            wait = t0 + i * probe_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        try:
            so, se = child.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            child.kill()
            so, se = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    lines = [l for l in so.splitlines() if l.startswith("{")]
    out["readers"] = json.loads(lines[-1]) if lines else {"error": se[-500:]}
    r = out["readers"]
    if "replies" in r:
        out["listings_per_s"] = r["replies"] / max(r["seconds"], 1e-9)
        out["mb_per_s"] = r["bytes"] / max(r["seconds"], 1e-9) / 1e6
    out["probes"] = len(lat)
    out["probes_ok"] = len([x for x in lat if x is not None])
    out["probe_errors"] = errs
    # over every probe; an unanswered one counts with how long it waited
    out["health_p50_ms"] = pct(waited, 0.5)
    out["health_p99_ms"] = pct(waited, 0.99)
    out["health_max_ms"] = max(waited) if waited else None
    t_left = time.monotonic()
    # (today's server can keep a reader's connection up to its keep-alive
    # timeout after the reader closed: it takes the close for a half-close)
    out["connections_after"] = wait_connections(port, base_conns, leave_timeout)
    out["leave_s"] = time.monotonic() - t_left
    out["rss_peak_kib"] = sampler.stop()
    time.sleep(0.3)
    out["rss_after_kib"] = vm_rss_kib(pid)
    out["rss_growth_mib"] = (out["rss_peak_kib"] - out["rss_before_kib"]) / 1024.0
    if expect_jobs is not None:
        out["after_problems"] = check_after(port, expect_jobs)
    return out


# ---------------------------------------------------------------- by hand

def main(argv):
    if argv and argv[0] == "_readers":
        return _readers_main(argv[1:])
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=["a", "b", "prefill"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's pid (for VmRSS)")
    ap.add_argument("--jobs", type=int, default=1000, help="finished jobs to prefill first (0: none)")
    ap.add_argument("--conns", type=int)
    ap.add_argument("--reqs", type=int, default=100, help="case A: listings per connection")
    ap.add_argument("--depth", type=int, default=16, help="case B: listings in flight per connection")
    ap.add_argument("--seconds", type=float, default=5.0, help="case B: duration")
    a = ap.parse_args(argv)
    if a.jobs:
        prefill(a.port, a.jobs)
    if a.case == "a":
        r = case_a(a.port, a.pid, conns=a.conns or 100, reqs=a.reqs, expect_jobs=a.jobs or None)
    elif a.case == "b":
        r = case_b(a.port, a.pid, conns=a.conns or 4, depth=a.depth, seconds=a.seconds,
                   expect_jobs=a.jobs or None)
    else:
        r = {"listing_bytes": listing_size(a.port)}
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
