"""password-hash and password-verify, end to end through HTTP.

- pbkdf2-sha512 (the default, 210000 iterations, 64-byte keys, as the seeds)
  and pbkdf2-sha256 equal Python's hashlib.pbkdf2_hmac on the same inputs;
  argon2id equals the reference `argon2` command line tool.
- The result is {"algorithm","salt","hash","keyLength","iterations"} (pbkdf2)
  or {..., "memoryKiB","passes","parallelism"} (argon2id), hex in lower case;
  a salt given in hex is used as is, else 16 random bytes.
- verify answers {"match":true|false}.
- The password is a secret: "[redacted]" in every reply that shows the
  job's params and in offload.db, never in the server's output. A job that
  a restart finds not yet run cannot run (its password was never stored):
  it fails `secret_lost`.
- Bad params are 400 naming the field; a cancel and a timeout end a long
  hash at once.
"""
import hashlib
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

JSON_CT = {"Content-Type": "application/json"}
PW = "correct horse battery staple \u00e9"


class PasswordCase(OffloadTestCase):

    def post(self, srv, params, task="password-hash", headers=None, **extra):
        body = {"task": task, "params": params}
        body.update(extra)
        h = dict(JSON_CT)
        h.update(headers or {})
        return srv.req("POST", "/jobs", body, h)

    def run_job(self, srv, params, task="password-hash", timeout=30):
        r = self.post(srv, params, task)
        self.assertEqual(r.status, 202, repr(r))
        j = r.json()
        self.assertEqual(j["params"].get("password"), "[redacted]", "the 202 shows the password: %r" % j)
        f = self.wait_final(srv, j["id"], timeout=timeout)
        self.assertEqual(f["status"], "complete", repr(f))
        self.assertEqual(f["params"]["password"], "[redacted]", repr(f))
        return f["result"]


class Hashes(PasswordCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2", "--store", "memory"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_pbkdf2_sha512_default_equals_hashlib(self):
        res = self.run_job(self.srv, {"password": PW})
        self.assertEqual(set(res), {"algorithm", "salt", "hash", "keyLength", "iterations"}, repr(res))
        self.assertEqual((res["algorithm"], res["keyLength"], res["iterations"]), ("pbkdf2-sha512", 64, 210000))
        self.assertRegex(res["salt"], r"^[0-9a-f]{32}$")
        want = hashlib.pbkdf2_hmac("sha512", PW.encode(), bytes.fromhex(res["salt"]), 210000, 64).hex()
        self.assertEqual(res["hash"], want)

    def test_given_salt_sha256_and_key_lengths(self):
        for algo, md, klen in (("pbkdf2-sha256", "sha256", 32), ("pbkdf2-sha256", "sha256", 128),
                               ("pbkdf2-sha512", "sha512", 16)):
            with self.subTest(algo=algo, klen=klen):
                res = self.run_job(self.srv, {"password": PW, "algorithm": algo, "salt": "00FF10aa",
                                              "iterations": 1000, "keyLength": klen})
                self.assertEqual(res["salt"], "00ff10aa")
                self.assertEqual(res["hash"], hashlib.pbkdf2_hmac(md, PW.encode(), bytes.fromhex("00ff10aa"), 1000,
                                                                  klen).hex())
        res = self.run_job(self.srv, {"password": "x", "algorithm": "pbkdf2-sha256", "iterations": 1000})
        self.assertEqual(res["keyLength"], 32)

    def test_random_salts_differ(self):
        a = self.run_job(self.srv, {"password": PW, "iterations": 1000})
        b = self.run_job(self.srv, {"password": PW, "iterations": 1000})
        self.assertNotEqual(a["salt"], b["salt"])
        self.assertNotEqual(a["hash"], b["hash"])

    def test_argon2id_equals_the_reference_cli(self):
        cli = shutil.which("argon2")
        self.assertIsNotNone(cli, "the argon2 command (Debian package argon2) is missing: scripts/install-deps.sh test")
        salt = b"offload-salt-16b"
        res = self.run_job(self.srv, {"password": PW, "algorithm": "argon2id", "salt": salt.hex(),
                                      "memoryKiB": 4096, "passes": 3, "parallelism": 2, "keyLength": 40})
        self.assertEqual(set(res), {"algorithm", "salt", "hash", "keyLength", "memoryKiB", "passes", "parallelism"})
        out = subprocess.run([cli, salt.decode(), "-id", "-t", "3", "-k", "4096", "-p", "2", "-l", "40", "-r"],
                             input=PW.encode(), capture_output=True, timeout=30, check=True).stdout.decode().strip()
        self.assertEqual(res["hash"], out)
        # the OWASP defaults: 19 MiB, 2 passes, 1 lane, 32 bytes
        res = self.run_job(self.srv, {"password": PW, "algorithm": "argon2id"})
        self.assertEqual((res["memoryKiB"], res["passes"], res["parallelism"], res["keyLength"]), (19456, 2, 1, 32))

    def test_verify(self):
        for algo, extra in (("pbkdf2-sha512", {"iterations": 1000}), ("argon2id", {"memoryKiB": 1024, "passes": 1})):
            with self.subTest(algo=algo):
                h = self.run_job(self.srv, dict(password=PW, algorithm=algo, **extra))
                for pw, match in ((PW, True), (PW + " ", False), ("", False)):
                    res = self.run_job(self.srv, dict(password=pw, algorithm=algo, salt=h["salt"], hash=h["hash"],
                                                      **extra), task="password-verify")
                    self.assertEqual(res, {"match": match}, "%r" % pw)

    def test_bad_params_are_400(self):
        cases = [
            ({}, "params.password"),
            ({"password": PW, "algorithm": "md5"}, "params.algorithm"),
            ({"password": PW, "iterations": 999}, "params.iterations"),
            ({"password": PW, "iterations": 10000001}, "params.iterations"),
            ({"password": PW, "salt": "abc"}, "params.salt"),
            ({"password": PW, "salt": "zz"}, "params.salt"),
            ({"password": PW, "keyLength": 15}, "params.keyLength"),
            ({"password": 5}, "params.password"),
            ({"password": "x" * 1025}, "params.password"),
        ]
        for params, field in cases:
            with self.subTest(params=str(params)[:60]):
                self.assertError(self.post(self.srv, params), 400, ("invalid_param", "missing_param"), param=field)
        self.assertError(self.post(self.srv, {"password": PW, "salt": "00"}, task="password-verify"), 400,
                         "missing_param", param="params.hash")

    def test_cancel_and_timeout_end_a_long_hash(self):
        # 3 M iterations: about 2 s of PBKDF2 (more under a sanitizer or load)
        r = self.post(self.srv, {"password": PW, "iterations": 3000000})
        self.assertEqual(r.status, 202, repr(r))
        jid = r.json()["id"]
        self.wait_status(self.srv, jid, "processing", 10)
        t0 = time.monotonic()
        self.assertIn(self.srv.req("DELETE", "/jobs/%s" % jid).status, (200, 202))
        j = self.wait_final(self.srv, jid, timeout=10)
        self.assertEqual(j["status"], "canceled", repr(j))
        self.assertLess(time.monotonic() - t0, 3.0)
        r = self.post(self.srv, {"password": PW, "iterations": 3000000}, timeoutMs=300)
        self.assertEqual(r.status, 202, repr(r))
        t0 = time.monotonic()
        j = self.wait_final(self.srv, r.json()["id"], timeout=10)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "timeout"), repr(j))
        self.assertLess(time.monotonic() - t0, 3.0)
        # the worker threads come back (the calls end by themselves)
        self.wait_until(lambda: self.srv.get("/health").json()["workers"]["busy"] == 0, 90, what="workers idle")


class Secrets(PasswordCase):

    def test_never_shown_stored_or_logged(self):
        d = tempfile.mkdtemp(prefix="offload-pw-")
        self.addCleanup(shutil.rmtree, d, True)
        secret = "Tr0ub4dor&3-unique-marker"
        srv = self.start_server("--workers", "1", "--data-dir", d, "--log-level", "debug")
        res = self.run_job(srv, {"password": secret, "iterations": 1000})
        listed = srv.get("/jobs").json()["jobs"]
        self.assertTrue(listed and all(j["params"].get("password") == "[redacted]" for j in listed), repr(listed))
        # the same key and password: 200; another password: 409
        h = {"Idempotency-Key": "pw-1"}
        a = self.post(srv, {"password": secret, "iterations": 1000}, headers=h)
        self.assertEqual(a.status, 202, repr(a))
        self.assertEqual(self.post(srv, {"password": secret, "iterations": 1000}, headers=h).status, 200)
        self.assertError(self.post(srv, {"password": secret + "!", "iterations": 1000}, headers=h), 409,
                         "idempotency_conflict")
        self.wait_final(srv, a.json()["id"], timeout=10)
        srv.stop()
        self.assertNotIn(secret, srv.stdout() + srv.stderr())
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                self.assertNotIn(secret.encode(), f.read(), "the password is in %s" % name)
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "offload.db"), uri=True)
        try:
            rows = [r[0] for r in con.execute("SELECT params FROM jobs")]
        finally:
            con.close()
        self.assertTrue(rows and all('"[redacted]"' in p for p in rows), repr(rows))
        self.assertTrue(res["hash"])

    def test_a_restart_fails_jobs_that_had_not_run(self):
        d = tempfile.mkdtemp(prefix="offload-pw-")
        self.addCleanup(shutil.rmtree, d, True)
        srv = self.start_server("--workers", "1", "--data-dir", d)
        block = srv.req("POST", "/jobs", {"task": "spin", "params": {"ms": 600000}}, JSON_CT).json()["id"]
        self.wait_status(srv, block, "processing", 10)
        r = self.post(srv, {"password": PW, "iterations": 1000})
        self.assertEqual(r.status, 202, repr(r))
        jid = r.json()["id"]
        srv.kill()
        srv2 = self.start_server("--workers", "1", "--data-dir", d)
        j = self.wait_final(srv2, jid, timeout=10)
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "secret_lost"), repr(j))
        self.assertEqual(j["params"]["password"], "[redacted]")


if __name__ == "__main__":
    main()
