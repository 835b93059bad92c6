"""Fair and bounded under hostile clients (issue 6, item 9).

With 1000 finished jobs retained, `GET /jobs?limit=1000` is a ~240 KB reply.

  A  100 connections each pipeline 100 listings and never read a byte. While
     they stay open, every fresh-connection /health is answered quickly, and
     the server's memory stays bounded (it must not build 100 x 100 replies
     nobody reads). Contract: /health within 250 ms, RSS growth under 200 MiB.
  B  4 connections pipeline the same listing (16 in flight each) and read
     every reply. Contract: fresh-connection /health p99 under 50 ms, while the
     4 clients keep being served.

Afterwards the server answers a normal /health and listing correctly.

The load is bench/hostile.py, shared with bench/run.py ("hostile clients").
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench"))
from harness import *  # noqa: E402,F401,F403
import hostile  # noqa: E402

JOBS = 1000          # finished jobs retained: the setting
A_CONNS, A_REQS = 100, 100
B_CONNS, B_DEPTH = 4, 16

# The contract (docs: issue 6 item 9) and the bounds asserted here. Plain
# build: twice the contract, for this shared 2-core machine where ctest runs
# other servers beside this one. ASan+UBSan (-O0): 4x that again, as measured
# on this machine for this path: 100 connections asking one listing each held
# a /health for 629 ms plain and 2255 ms under ASan (3.6x); a lone listing
# took 5 ms against 22 ms end to end.
A_HEALTH_TARGET_MS = 250.0
A_RSS_TARGET_MIB = 200.0
B_P99_TARGET_MS = 50.0
NOISE = 2.0
ASAN_SLOWDOWN = 4.0
# ASan's shadow adds 1/8 of what the heap touches, and its quarantine (kept
# at 16 MiB for this server, below) holds freed blocks resident.
ASAN_RSS_EXTRA_MIB = A_RSS_TARGET_MIB / 8 + 16
ASAN_OPTIONS_EXTRA = "quarantine_size_mb=16"


def _slow():
    return ASAN_SLOWDOWN if is_asan() else 1.0


def _fmt_ms(xs):
    return "[" + ", ".join("—" if x is None else "%.1f" % x for x in xs) + "]"


class HostileClients(OffloadTestCase):

    def start_prefilled(self):
        # The harness passes our environment to the server: a small ASan
        # quarantine, so that freed reply buffers do not count as growth.
        old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = ((old + ":") if old else "") + ASAN_OPTIONS_EXTRA
        try:
            srv = self.start_server("--workers", "2")
        finally:
            if old is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = old
        listed = hostile.prefill(srv.port, JOBS, timeout=60 * _slow())
        self.assertEqual(listed, JOBS)
        size = hostile.listing_size(srv.port)
        self.assertGreater(size, 150000, "a 1000-job listing should be ~240 KB, got %r bytes" % size)
        return srv

    def report(self, name, r):
        r = dict(r)
        r.pop("rss_series", None)
        sys.stderr.write("\n%s: %s\n" % (name, json.dumps(r)))

    def test_a_non_reading_pipeliners_do_not_stall_or_bloat_the_server(self):
        srv = self.start_prefilled()
        health_bound = A_HEALTH_TARGET_MS * NOISE * _slow()
        rss_bound = A_RSS_TARGET_MIB + (ASAN_RSS_EXTRA_MIB if is_asan() else 0)
        # A server that bounds its work goes quiet within a second or two
        # (ASan included); today's takes ~10 s plain and over 30 s under ASan.
        hold_max = 20.0
        r = hostile.case_a(srv.port, srv.pid, conns=A_CONNS, reqs=A_REQS, probe_gap=0.25, min_probes=8,
                           probe_timeout=hold_max, hold_min_s=2.0, hold_max_s=hold_max, quiet_s=0.5,
                           expect_jobs=JOBS)
        self.report("case A", r)
        what = ("%d connections x %d pipelined GET /jobs?limit=1000, never read; /health probes (ms) at %r s: %s; "
                "RSS before %.0f MiB, peak %.0f MiB, after they left %.0f MiB; server CPU %.1f s, quiet %s after "
                "%.1f s" % (A_CONNS, A_REQS, r["probe_at_s"], _fmt_ms(r["probe_ms"]), r["rss_before_kib"] / 1024.0,
                            r["rss_peak_kib"] / 1024.0, r["rss_after_kib"] / 1024.0, r["server_cpu_s"],
                            r["server_quiet"], r["held_s"]))
        self.assertEqual(r["unsent_bytes"], 0, "the hostile requests could not all be sent: " + what)
        # Every failed check is reported at once: latency and memory are two
        # halves of the same contract.
        problems = []
        if r["probes"] < 8:
            problems.append("only %d probes while the clients were connected" % r["probes"])
        if r["probes_ok"] != r["probes"]:
            problems.append("%d of %d /health probes got no 200 (%s)"
                            % (r["probes"] - r["probes_ok"], r["probes"], "; ".join(r["probe_errors"])))
        if r["health_max_ms"] is not None and r["health_max_ms"] >= health_bound:
            problems.append("/health took %.0f ms (bound %.0f ms, contract %.0f ms)"
                            % (r["health_max_ms"], health_bound, A_HEALTH_TARGET_MS))
        # The RSS peak is only conclusive once the server has stopped working
        # for these clients: bounded work, not only bounded latency.
        if not r["server_quiet"]:
            problems.append("the server was still busy %.0f s into serving clients that read nothing" % hold_max)
        if r["rss_growth_mib"] >= rss_bound:
            problems.append("RSS grew %.0f MiB (bound %.0f MiB, contract %.0f MiB)"
                            % (r["rss_growth_mib"], rss_bound, A_RSS_TARGET_MIB))
        problems += ["after the clients left: " + p for p in r["after_problems"]]
        if r["connections_after"] is None or r["connections_after"] > 1:
            problems.append("10 s after the clients left, offload_http_connections is still %r (1 is the "
                            "probe's own)" % r["connections_after"])
        if problems:
            self.fail("%s\n%s" % ("; ".join(problems), what))

    def test_b_reading_pipeliners_do_not_starve_health(self):
        srv = self.start_prefilled()
        bound = B_P99_TARGET_MS * NOISE * _slow()
        r = hostile.case_b(srv.port, srv.pid, conns=B_CONNS, depth=B_DEPTH, seconds=5.0, probe_interval=0.02,
                           probe_timeout=10.0 * _slow(), expect_jobs=JOBS)
        self.report("case B", r)
        rd = r["readers"]
        what = ("%d connections keeping %d GET /jobs?limit=1000 in flight, reading: %s listings in %.1f s; "
                "%d fresh /health probes: p50 %s ms, p99 %s ms, max %s ms; RSS before %.0f MiB, peak %.0f MiB; "
                "connections %r %.1f s after the readers left"
                % (B_CONNS, B_DEPTH, rd.get("replies"), rd.get("seconds", 0), r["probes"],
                   _fmt_ms([r["health_p50_ms"]])[1:-1], _fmt_ms([r["health_p99_ms"]])[1:-1],
                   _fmt_ms([r["health_max_ms"]])[1:-1], r["rss_before_kib"] / 1024.0, r["rss_peak_kib"] / 1024.0,
                   r["connections_after"], r["leave_s"]))
        self.assertIn("replies", rd, "the reading clients failed: %r" % rd)
        problems = []
        if r["probe_errors"]:
            problems.append("%d /health probes got no 200 (%s)" % (len(r["probe_errors"]), r["probe_errors"][:3]))
        if r["health_p99_ms"] is None or r["health_p99_ms"] >= bound:
            problems.append("/health p99 %s ms (bound %.0f ms, contract %.0f ms)"
                            % (_fmt_ms([r["health_p99_ms"]])[1:-1], bound, B_P99_TARGET_MS))
        if r["probes"] < 50:
            problems.append("only %d probes in the run (a p99 needs a series)" % r["probes"])
        # Fair, not rude: the pipelining clients are still served, completely.
        if rd["non_200"]:
            problems.append("%d listing replies other than 200: %r" % (rd["non_200"], rd["bad"]))
        if rd["closed"]:
            problems.append("the server closed %d reading clients" % rd["closed"])
        if rd["replies"] < 20:
            problems.append("the reading clients were starved (%d listings)" % rd["replies"])
        problems += ["after the clients left: " + p for p in r["after_problems"]]
        if problems:
            self.fail("%s\n%s" % ("; ".join(problems), what))


if __name__ == "__main__":
    main()
