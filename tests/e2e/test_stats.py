"""The stats task and uploads (POST /jobs/<task>), end to end.

- stats over JSON `values`, one column of a CSV body or a raw
  little-endian float64 body equals Python's
  statistics / math.fsum on the same numbers (population variance and
  stddev, sample variance, NumPy-linear percentiles), also on hostile data
  (huge offsets, mixed magnitudes); an empty, non-numeric, NaN or infinite
  field fails the job `invalid_data` naming the row.
- POST /jobs/<task>: the body is the input (its Content-Type the input's
  type), the params are in the query string; 202 with the job like POST
  /jobs. Unknown task 400, a task without input 400, a type the task does
  not take 415, bad params 400 before the body is read, over --max-upload
  413. A chunked body works. With the SQLite store the input is on disk
  before the 202: a SIGKILL right after loses nothing, and the stored input
  goes once the job is final.
"""
import math
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

JSON_CT = {"Content-Type": "application/json"}


def linear_percentile(xs, q):
    s = sorted(xs)
    h = (len(s) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


def expected(xs):
    return {
        "count": len(xs), "sum": math.fsum(xs), "mean": statistics.fmean(xs), "min": min(xs), "max": max(xs),
        "variance": statistics.pvariance(xs), "sampleVariance": statistics.variance(xs) if len(xs) > 1 else None,
        "stddev": statistics.pstdev(xs), "p50": linear_percentile(xs, 0.5), "p90": linear_percentile(xs, 0.9),
        "p99": linear_percentile(xs, 0.99),
    }


def csv_of(xs, name="price"):
    lines = ['id,"%s",note' % name]
    for i, x in enumerate(xs):
        lines.append('%d,%r,"a, ""quoted"" note"' % (i, x))
    return ("\n".join(lines) + "\n").encode()


class StatsCase(OffloadTestCase):

    def assertStats(self, got, xs, rel=1e-9):
        want = expected(xs)
        self.assertEqual(set(got), set(want), repr(got))
        for k, w in want.items():
            g = got[k]
            if w is None or k == "count":
                self.assertEqual(g, w, k)
            else:
                self.assertTrue(math.isclose(g, w, rel_tol=rel, abs_tol=1e-12 * max(1.0, abs(w))),
                                "%s: got %r want %r" % (k, g, w))

    def upload(self, srv, query, body, ctype="text/csv", headers=None):
        h = {"Content-Type": ctype}
        h.update(headers or {})
        return srv.req("POST", "/jobs/stats" + query, body, h)

    def final(self, srv, r):
        self.assertEqual(r.status, 202, repr(r))
        self.assertEqual(r.header("Location"), "/jobs/%s" % r.json()["id"])
        return self.wait_final(srv, r.json()["id"], timeout=30)


class Stats(StatsCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2", "--store", "memory", "--max-upload", "200000"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_json_values(self):
        for xs in ([1, 2, 3, 4], [5.5], [1e9 + 0.1 * i for i in range(1000)],
                   [1e-300, 1e150, -1e150, 3.0, 1e-10] * 10, [(-1) ** i * i * 1.5 for i in range(501)],
                   [1e15 + (i % 3) for i in range(3000)]):
            with self.subTest(n=len(xs)):
                r = self.srv.req("POST", "/jobs", {"task": "stats", "params": {"values": xs}}, JSON_CT)
                j = self.final(self.srv, r)
                self.assertEqual(j["status"], "complete", repr(j))
                self.assertStats(j["result"], [float(x) for x in xs])

    def test_csv_column_by_name_and_index(self):
        xs = [float(i * 7 % 101) - 50.25 for i in range(3000)]
        j = self.final(self.srv, self.upload(self.srv, "?column=price", csv_of(xs)))
        self.assertEqual(j["status"], "complete", repr(j))
        self.assertStats(j["result"], xs)
        self.assertEqual(j["params"], {"column": "price"})
        j = self.final(self.srv, self.upload(self.srv, "?column=1", csv_of(xs)))
        self.assertStats(j["result"], xs)
        body = "\n".join("%r,x" % x for x in xs).encode()  # no header row
        j = self.final(self.srv, self.upload(self.srv, "?column=0&header=false", body, "text/plain"))
        self.assertStats(j["result"], xs)

    def test_chunked_upload(self):
        xs = [float(i) for i in range(2000)]
        c = self.raw(self.srv, timeout=30)
        data = csv_of(xs)
        pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        c.send(b"POST /jobs/stats?column=price HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + body)
        r = c.read_response(timeout=30)
        j = self.final(self.srv, r)
        self.assertStats(j["result"], xs)

    def test_raw_float64_body(self):
        import random
        import struct
        rnd = random.Random(7)
        xs = [rnd.uniform(-1e6, 1e6) for _ in range(20000)] + [1e150, -2.5e-300, 0.0, -0.0]
        body = struct.pack("<%dd" % len(xs), *xs)
        j = self.final(self.srv, self.upload(self.srv, "", body, "application/octet-stream"))
        self.assertEqual(j["status"], "complete", repr(j))
        self.assertStats(j["result"], xs)
        # A value that is not finite fails the job naming its index; a length
        # that is not whole 8-byte values fails it saying so.
        for bad in (float("nan"), float("inf"), float("-inf")):
            with self.subTest(bad=bad):
                ys = list(xs)
                ys[12345] = bad
                j = self.final(self.srv, self.upload(self.srv, "", struct.pack("<%dd" % len(ys), *ys),
                                                     "application/octet-stream"))
                self.assertEqual((j["status"], j["error"]["code"]), ("failed", "invalid_data"), repr(j))
                self.assertIn("Value 12345 ", j["error"]["message"])
        j = self.final(self.srv, self.upload(self.srv, "", body[:-3], "application/octet-stream"))
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "invalid_data"), repr(j))
        self.assertIn("multiple of 8", j["error"]["message"])

    def test_bad_data_names_the_row(self):
        for cell, words in (("", "empty"), ("abc", "not a finite number"), ("nan", "not a finite number"),
                            ("inf", "not a finite number"), ("1e999", "not a finite number")):
            with self.subTest(cell=cell):
                body = b"price,x\n1,a\n2,b\n" + cell.encode() + b",c\n4,d\n"
                j = self.final(self.srv, self.upload(self.srv, "?column=price", body))
                self.assertEqual((j["status"], j["error"]["code"]), ("failed", "invalid_data"), repr(j))
                self.assertIn("Row 3", j["error"]["message"])
                self.assertIn(words, j["error"]["message"])
        j = self.final(self.srv, self.upload(self.srv, "?column=nope", b"price\n1\n"))
        self.assertEqual(j["error"]["code"], "invalid_param", repr(j))
        j = self.final(self.srv, self.upload(self.srv, "?column=price", b"price\n"))
        self.assertEqual(j["error"]["code"], "invalid_data", repr(j))
        r = self.srv.req("POST", "/jobs", {"task": "stats", "params": {"values": [1, float("nan")]}}, JSON_CT)
        self.assertEqual(r.status, 400, repr(r))  # NaN is not JSON: the body is refused
        # a variance beyond a double fails clearly
        r = self.srv.req("POST", "/jobs", {"task": "stats", "params": {"values": [1e300, -1e300]}}, JSON_CT)
        j = self.final(self.srv, r)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "invalid_data"), repr(j))

    def test_upload_errors(self):
        self.assertError(self.srv.req("POST", "/jobs/nope", b"x", {"Content-Type": "text/csv"}), 400, "unknown_task",
                         param="task")
        self.assertError(self.srv.req("POST", "/jobs/fibonacci?n=3", b"x", {"Content-Type": "text/csv"}), 400,
                         "invalid_param", param="task")
        self.assertError(self.upload(self.srv, "", b"1\n", "image/png"), 415, "unsupported_media_type")
        self.assertError(self.upload(self.srv, "?header=maybe", b"1\n"), 400, "invalid_param", param="params.header")
        self.assertError(self.upload(self.srv, "?colour=1", b"1\n"), 400, "unknown_param", param="colour")
        self.assertError(self.upload(self.srv, "", b"x" * 200001), 413, "payload_too_large")
        r = self.srv.req("POST", "/jobs", {"task": "stats", "params": {}}, JSON_CT)
        j = self.final(self.srv, r)
        self.assertEqual(j["error"]["code"], "invalid_data", repr(j))
        # the catalog says which tasks take a body
        t = [t for t in self.srv.get("/tasks").json()["tasks"] if t["name"] == "stats"][0]
        self.assertEqual(t["input"], {"required": False, "contentTypes": ["text/csv", "text/plain", "application/octet-stream"]})


class CancelAndTimeout(StatsCase):

    def test_timeout_and_cancel_mid_parse(self):
        srv = self.start_server("--workers", "1", "--store", "memory", "--max-upload", str(64 << 20))
        body = b"v\n" + b"".join(b"%d.25\n" % i for i in range(3000000))  # ~30 MB: a second or more to parse
        r = self.upload(srv, "?column=v&timeoutMs=20", body)
        j = self.final(srv, r)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "timeout"), repr(j))
        r = self.upload(srv, "?column=v", body)
        jid = r.json()["id"]
        self.wait_status(srv, jid, "processing", 10)
        srv.req("DELETE", "/jobs/%s" % jid)
        j = self.wait_final(srv, jid, timeout=30)
        if j["status"] == "complete":
            self.skipTest("the job finished before the cancel on this machine")
        self.assertEqual(j["status"], "canceled", repr(j))


class DurableUploads(StatsCase):

    def test_input_survives_sigkill_and_goes_when_final(self):
        base = tempfile.mkdtemp(prefix="offload-up-")
        self.addCleanup(shutil.rmtree, base, True)
        d = os.path.join(base, "data")
        srv = self.start_server("--workers", "1", "--data-dir", d)
        block = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 600000}}, JSON_CT).json()["id"]
        self.wait_status(srv, block, "processing", 10)
        xs = [float(i % 97) * 1.5 for i in range(5000)]
        r = self.upload(srv, "?column=price", csv_of(xs), headers={"Idempotency-Key": "up-1"})
        self.assertEqual(r.status, 202, repr(r))
        jid = r.json()["id"]
        stored = os.path.join(d, "files", jid, ".input")
        self.assertTrue(os.path.exists(stored), "the input is on disk before the 202")
        self.assertEqual(open(stored, "rb").read(), csv_of(xs))
        srv.kill()
        srv2 = self.start_server("--workers", "2", "--data-dir", d)
        j = self.wait_final(srv2, jid, timeout=30)
        self.assertEqual(j["status"], "complete", repr(j))
        self.assertStats(j["result"], xs)
        self.wait_until(lambda: not os.path.exists(stored), 10, what="the stored input removed")
        r = self.upload(srv2, "?column=price", csv_of(xs), headers={"Idempotency-Key": "up-1"})
        self.assertEqual((r.status, r.json()["id"]), (200, jid))


if __name__ == "__main__":
    main()
