"""POST /jobs: submission, body parsing and validation; GET /jobs listing."""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403


def post_raw(srv, body, ctype="application/json", timeout=HTTP_TIMEOUT):
    headers = {}
    if ctype is not None:
        headers["Content-Type"] = ctype
    return srv.req("POST", "/jobs", body if isinstance(body, bytes) else body.encode(), headers, timeout)


class Submit(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_submit_each_task(self):
        cases = [("report", {"heavyIterations": 1000}, sqrt_sum(1000)),
                 ("fibonacci", {"n": 20}, 6765),
                 ("primes", {"max": 100}, 25),
                 ("primes", {"max": 1000000}, 78498),
                 ("primes", {"max": 10000000}, 664579),
                 ("primes", {"max": 1}, 0),
                 ("primes", {"max": 2}, 1),
                 ("spin", {"ms": 50}, None)]
        jobs = [(self.submit(self.srv, t, p), t, p, want) for t, p, want in cases]
        ids = [j["id"] for j, _, _, _ in jobs]
        self.assertEqual(len(set(ids)), len(ids), "ids not distinct")
        for j, t, p, want in jobs:
            with self.subTest(task=t, params=p):
                f = self.wait_final(self.srv, j["id"], 60)
                self.checkJob(f, expect_status="complete", task=t, params=p)
                if t == "report":
                    self.assertTrue(rel_close(f["result"], want, 1e-9), repr(f))
                elif want is None:
                    self.assertIsNone(f["result"])
                else:
                    self.assertEqual(f["result"], want)
                    self.assertIsInstance(f["result"], int)
                self.assertEqual(f["progress"], 1)

    def test_submit_reply_shape(self):
        r = self.srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}, "timeoutMs": 5000})
        self.assertEqual(r.status, 202, repr(r))
        self.assertJsonType(r)
        j = self.checkJob(r.json(), task="spin", params={"ms": 1})
        self.assertEqual(r.header("Location"), "/jobs/" + j["id"])
        self.assertEqual(self.job(self.srv, j["id"])["id"], j["id"])

    def test_charset_parameter_ok(self):
        r = post_raw(self.srv, '{"task":"spin","params":{"ms":1}}', "application/json; charset=utf-8")
        self.assertEqual(r.status, 202, repr(r))
        r = post_raw(self.srv, '{"task":"spin","params":{"ms":1}}', "Application/JSON")
        self.assertEqual(r.status, 202, "media type is case-insensitive: %r" % r)

    def test_unsupported_media_type(self):
        for ct in (None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
            with self.subTest(ctype=ct):
                r = post_raw(self.srv, '{"task":"spin","params":{"ms":1}}', ct)
                self.assertError(r, 415, "unsupported_media_type")

    def test_unknown_task(self):
        r = self.srv.req("POST", "/jobs", {"task": "nope", "params": {}})
        err = self.assertError(r, 400, "unknown_task")
        for t in TASKS:
            self.assertIn(t, err["message"], "message must name the known tasks: %r" % err)

    def test_missing_and_bad_task(self):
        self.assertError(self.srv.req("POST", "/jobs", {"params": {"ms": 1}}), 400, "missing_param", "task")
        self.assertError(self.srv.req("POST", "/jobs", {"task": 5, "params": {"ms": 1}}), 400, "invalid_param", "task")
        self.assertError(self.srv.req("POST", "/jobs", {"task": "", "params": {"ms": 1}}), 400, ("unknown_task", "invalid_param"))

    def test_bad_params(self):
        cases = [
            ("fibonacci", {"n": 93}, "invalid_param", "params.n"),
            ("fibonacci", {"n": -1}, "invalid_param", "params.n"),
            ("fibonacci", {"n": "5"}, "invalid_param", "params.n"),
            ("fibonacci", {"n": 1.5}, "invalid_param", "params.n"),
            ("fibonacci", {"n": True}, "invalid_param", "params.n"),
            ("fibonacci", {"n": None}, "invalid_param", "params.n"),
            ("fibonacci", {}, "missing_param", "params.n"),
            ("fibonacci", {"n": 5, "x": 1}, "unknown_param", "params.x"),
            ("spin", {"ms": 0}, "invalid_param", "params.ms"),
            ("spin", {"ms": 600001}, "invalid_param", "params.ms"),
            ("spin", {}, "missing_param", "params.ms"),
            ("primes", {"max": 0}, "invalid_param", "params.max"),
            ("primes", {"max": 10 ** 12 + 1}, "invalid_param", "params.max"),
            ("primes", {"max": 10 ** 30}, "invalid_param", "params.max"),
            ("report", {"heavyIterations": 0}, "invalid_param", "params.heavyIterations"),
            ("report", {"heavyIterations": 100000000001}, "invalid_param", "params.heavyIterations"),
            ("report", {"heavyIterations": "10"}, "invalid_param", "params.heavyIterations"),
        ]
        for task, params, code, param in cases:
            with self.subTest(task=task, params=params):
                r = self.srv.req("POST", "/jobs", {"task": task, "params": params})
                self.assertError(r, 400, code, param)

    def test_params_missing_or_not_object(self):
        r = self.srv.req("POST", "/jobs", {"task": "spin"})
        err = self.assertError(r, 400, "missing_param")
        self.assertIn(err.get("param"), ("params", "params.ms"), repr(err))
        for bad in (5, "x", [1], None):
            with self.subTest(params=bad):
                r = self.srv.req("POST", "/jobs", {"task": "spin", "params": bad})
                self.assertError(r, 400, "invalid_param", "params")

    def test_bad_timeout(self):
        for bad in (0, -1, "5", 1.5, True, None):
            with self.subTest(timeoutMs=bad):
                r = self.srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}, "timeoutMs": bad})
                self.assertError(r, 400, "invalid_param", "timeoutMs")

    def test_unknown_field(self):
        r = self.srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}, "foo": 1})
        self.assertError(r, 400, "unknown_param", "foo")

    def test_unknown_query_param(self):
        r = self.srv.req("POST", "/jobs?x=1", {"task": "spin", "params": {"ms": 1}})
        self.assertError(r, 400, "unknown_param", "x")

    def test_invalid_json(self):
        body = '{\n  "task": "spin",\n  "params": {"ms": 1,}\n}\n'
        err = self.assertError(post_raw(self.srv, body), 400, "invalid_json")
        self.assertIn("line", err["message"].lower())
        self.assertRegex(err["message"], r"(?i)line\D{0,3}3\b", "message must give line 3: %r" % err)
        self.assertIn("column", err["message"].lower())
        for bad in ("", "{", "{\"task\":", "nul", "{'task':'spin'}", "\x00\x01", '{"task":"spin"} x'):
            with self.subTest(body=bad):
                self.assertError(post_raw(self.srv, bad), 400, "invalid_json")

    def test_invalid_json_first_line(self):
        err = self.assertError(post_raw(self.srv, '{"task" "spin"}'), 400, "invalid_json")
        self.assertRegex(err["message"], r"(?i)line\D{0,3}1\b", repr(err))

    def test_invalid_body(self):
        for bad in ("[1,2]", '"x"', "5", "null", "true", "[]"):
            with self.subTest(body=bad):
                self.assertError(post_raw(self.srv, bad), 400, "invalid_body")

    def test_duplicate_json_key(self):
        # Not pinned down by the contract beyond "no crash": any 202 or 400 JSON reply.
        r = post_raw(self.srv, '{"task":"spin","task":"spin","params":{"ms":1}}')
        self.assertIn(r.status, (202, 400), repr(r))
        self.assertJsonType(r)


class BodyLimit(OffloadTestCase):

    def test_payload_too_large(self):
        srv = self.start_server("--max-body", "1024")
        big = json.dumps({"task": "spin", "params": {"ms": 1}, "pad": "x" * 2000})
        self.assertError(post_raw(srv, big), 413, "payload_too_large")
        # a body at the limit is parsed (and then refused for its unknown field, not its size)
        prefix, suffix = '{"task":"spin","params":{"ms":1},"pad":"', '"}'
        body = prefix + "y" * (1024 - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(body), 1024)
        self.assertError(post_raw(srv, body), 400, "unknown_param", "pad")
        # announced but never sent: refused from the header alone
        c = self.raw(srv)
        c.send(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
        r = c.read_response(timeout=10)
        self.assertError(r, 413, "payload_too_large")
        self.assertEqual(srv.get("/health").status, 200)


class QueueFull(OffloadTestCase):

    def test_queue_full(self):
        srv = self.start_server("--workers", "1", "--max-queue", "2")
        a = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, a["id"], "processing", 10)
        b = self.submit(srv, "spin", {"ms": 600000})
        c = self.submit(srv, "spin", {"ms": 600000})
        self.assertEqual(self.job(srv, b["id"])["queuePosition"], 1)
        self.assertEqual(self.job(srv, c["id"])["queuePosition"], 2)
        for attempt in ("post", "report", "fibonacci"):
            with self.subTest(via=attempt):
                if attempt == "post":
                    r = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 1}})
                elif attempt == "report":
                    r = srv.get("/tasks/reports/start?heavyIterations=10")
                else:
                    r = srv.get("/fibonacci/3")
                self.assertError(r, 429, "queue_full")
                ra = r.header("Retry-After")
                self.assertIsNotNone(ra, "429 without Retry-After")
                self.assertRegex(ra, r"^\d+$")
        h = self.health(srv)
        self.assertEqual(h["queue"], {"depth": 2, "capacity": 2 + 2})  # the process pool's own --max-queue
        # a slot frees up: submissions are accepted again
        r = srv.req("DELETE", "/jobs/%s" % c["id"])
        self.assertEqual(r.status, 200, repr(r))
        self.submit(srv, "spin", {"ms": 1})


class Listing(OffloadTestCase):

    def test_list_order_filter_limit(self):
        srv = self.start_server("--workers", "1")
        blocker = self.submit(srv, "spin", {"ms": 600000})
        self.wait_status(srv, blocker["id"], "processing", 10)
        ids = [self.submit(srv, "spin", {"ms": 1})["id"] for _ in range(4)]
        r = srv.get("/jobs")
        self.assertEqual(r.status, 200, repr(r))
        self.assertJsonType(r)
        body = r.json()
        self.assertEqual(set(body.keys()), {"jobs"})
        got = [j["id"] for j in body["jobs"]]
        self.assertEqual(got, list(reversed(ids)) + [blocker["id"]], "newest created first")
        for j in body["jobs"]:
            self.checkJob(j)
        created = [j["createdAt"] for j in body["jobs"]]
        self.assertEqual(created, sorted(created, reverse=True))

        r = srv.get("/jobs?limit=2")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], list(reversed(ids))[:2])
        r = srv.get("/jobs?status=queued")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], list(reversed(ids)))
        r = srv.get("/jobs?status=processing&limit=1000")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], [blocker["id"]])
        r = srv.get("/jobs?status=queued&limit=1")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], [ids[-1]])
        for st in ("complete", "failed", "canceled"):
            r = srv.get("/jobs?status=" + st)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"jobs": []})
        srv.req("DELETE", "/jobs/%s" % ids[0])
        r = srv.get("/jobs?status=canceled")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], [ids[0]])
        srv.req("DELETE", "/jobs/%s" % blocker["id"])
        for jid in ids[1:]:
            self.wait_status(srv, jid, "complete", 20)
        r = srv.get("/jobs?status=complete")
        self.assertEqual([j["id"] for j in r.json()["jobs"]], list(reversed(ids[1:])))

    def test_default_limit_100(self):
        srv = self.start_server("--workers", "2")
        ids = [self.submit(srv, "fibonacci", {"n": 1})["id"] for _ in range(103)]
        r = srv.get("/jobs")
        jobs = r.json()["jobs"]
        self.assertEqual(len(jobs), 100)
        self.assertEqual([j["id"] for j in jobs], list(reversed(ids))[:100])
        self.assertEqual(len(srv.get("/jobs?limit=1000").json()["jobs"]), 103)

    def test_list_validation(self):
        srv = self.start_server()
        for q, param in (("status=foo", "status"), ("status=", "status"), ("status=QUEUED", "status"),
                         ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"),
                         ("limit=-1", "limit"), ("limit=1.5", "limit"), ("limit=", "limit"),
                         ("limit=5&limit=6", "limit"), ("status=queued&status=complete", "status")):
            with self.subTest(query=q):
                r = srv.get("/jobs?" + q)
                empty = q.endswith("=")
                self.assertError(r, 400, ("invalid_param", "missing_param") if empty else "invalid_param", param)
        self.assertError(srv.get("/jobs?bogus=1"), 400, "unknown_param", "bogus")
        self.assertEqual(srv.get("/jobs?limit=1000").status, 200)
        self.assertEqual(srv.get("/jobs?limit=1").status, 200)


if __name__ == "__main__":
    main()
