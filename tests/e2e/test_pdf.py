"""The pdf task and output files, end to end.

- {"title","content","author"?} becomes document.pdf: pdftotext finds the
  title, the author and every paragraph; pdfinfo says A4, the page count
  the result gives, and the title and author in the metadata.
- The job lists its files ("files": [{"name","contentType","bytes","url"}],
  [] until complete) and GET /jobs/<id>/files/<name> serves each with
  Content-Length, Content-Type and an ETag (If-None-Match: 304; HEAD: no
  body). Unknown names, and jobs that did not complete, are 404.
- Files live and expire with their job: a restart keeps them (SQLite
  store), retention deletes them from disk, a canceled job keeps none.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

JSON_CT = {"Content-Type": "application/json"}
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def paragraphs(n, words=60):
    out = []
    for i in range(n):
        out.append("Paragraph%d " % i + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words)))
    return out


def tool(name):
    path = shutil.which(name)
    if not path:
        raise AssertionError("%s is missing (Debian package poppler-utils): scripts/install-deps.sh test" % name)
    return path


class PdfCase(OffloadTestCase):

    def submit(self, srv, params, **extra):
        body = {"task": "pdf", "params": params}
        body.update(extra)
        r = srv.req("POST", "/jobs", body, JSON_CT)
        self.assertEqual(r.status, 202, repr(r))
        j = r.json()
        # The 202 waits for the job's row to commit; a small PDF may be done
        # by then (a complete job lists its file; any other lists none).
        if j["status"] != "complete":
            self.assertEqual(j["files"], [], repr(j))
        else:
            self.assertEqual([f["name"] for f in j["files"]], ["document.pdf"], repr(j))
        return j["id"]

    def complete(self, srv, jid, timeout=60):
        j = self.wait_final(srv, jid, timeout=timeout)
        self.assertEqual(j["status"], "complete", repr(j))
        return j

    def download(self, srv, url, headers=None, method="GET"):
        return srv.req(method, url, headers=headers)

    def check_file(self, srv, j):
        self.assertEqual(len(j["files"]), 1, repr(j))
        f = j["files"][0]
        self.assertEqual(set(f), {"name", "contentType", "bytes", "url"})
        self.assertEqual((f["name"], f["contentType"]), ("document.pdf", "application/pdf"))
        self.assertEqual(f["url"], "/jobs/%s/files/document.pdf" % j["id"])
        r = self.download(srv, f["url"])
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("Content-Type"), "application/pdf")
        self.assertEqual(int(r.header("Content-Length")), f["bytes"])
        self.assertEqual(len(r.body), f["bytes"])
        self.assertTrue(r.body.startswith(b"%PDF-"), r.body[:20])
        self.assertTrue(r.header("ETag"))
        return r


class Documents(PdfCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "2", "--store", "memory"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_text_pages_and_metadata(self):
        paras = paragraphs(40)
        title, author = "Quarterly Report \u00e9t\u00e9", "Ada Lovelace"
        jid = self.submit(self.srv, {"title": title, "author": author, "content": "\n\n".join(paras)})
        j = self.complete(self.srv, jid)
        r = self.check_file(self.srv, j)
        with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
            f.write(r.body)
            f.flush()
            text = subprocess.run([tool("pdftotext"), "-enc", "UTF-8", f.name, "-"], capture_output=True,
                                  check=True, timeout=30).stdout.decode()
            info = subprocess.run([tool("pdfinfo"), f.name], capture_output=True, check=True,
                                  timeout=30).stdout.decode()
        flat = " ".join(text.split())
        self.assertIn(title, flat)
        self.assertIn(author, flat)
        # page numbers sit between the lines of a paragraph that spans pages
        words = " ".join(w for w in flat.split() if not w.isdigit())
        for p in paras:
            self.assertIn(p, words)
        meta = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        pages = int(meta["Pages"])
        self.assertGreaterEqual(pages, 3)
        self.assertEqual(j["result"], {"pages": pages})
        self.assertEqual(meta["Title"].strip(), title)
        self.assertEqual(meta["Author"].strip(), author)
        self.assertIn("595.276 x 841.89", meta["Page size"])
        # page numbers: the last page's number is on it
        self.assertIn("\n%d\n" % pages, "\n" + "\n".join(line.strip() for line in text.splitlines()) + "\n")

    def test_etag_head_and_404s(self):
        jid = self.submit(self.srv, {"title": "T", "content": "one\n\ntwo"})
        j = self.complete(self.srv, jid)
        r = self.check_file(self.srv, j)
        etag = r.header("ETag")
        r2 = self.download(self.srv, j["files"][0]["url"], headers={"If-None-Match": etag})
        self.assertEqual(r2.status, 304, repr(r2))
        self.assertEqual(r2.body, b"")
        h = self.download(self.srv, j["files"][0]["url"], method="HEAD")
        self.assertEqual((h.status, h.header("Content-Length")), (200, str(j["files"][0]["bytes"])))
        self.assertEqual(h.body, b"")
        self.assertError(self.download(self.srv, "/jobs/%s/files/other.pdf" % jid), 404, "not_found")
        self.assertError(self.download(self.srv, "/jobs/%s/files/..%%2Fx" % jid), 404, "not_found")
        self.assertError(self.download(self.srv, "/jobs/AAAAAAAAAAAAAAAAAAAAAA/files/document.pdf"), 404,
                         "not_found")
        # a job of a task without files has no "files"
        r = self.srv.req("POST", "/jobs", {"task": "fibonacci", "params": {"n": 3}}, JSON_CT)
        self.assertNotIn("files", r.json())

    def test_bad_params(self):
        for params, field in (({"content": "x"}, "params.title"), ({"title": "x"}, "params.content"),
                              ({"title": "x", "content": "y" * (512 * 1024 + 1)}, "params.content"),
                              ({"title": "x" * 1025, "content": "y"}, "params.title"),
                              ({"title": "x", "content": "y", "pages": 3}, "params.pages")):
            r = self.srv.req("POST", "/jobs", {"task": "pdf", "params": params}, JSON_CT)
            self.assertError(r, 400, ("missing_param", "invalid_param", "unknown_param"), param=field)

    def test_cancel_keeps_no_file(self):
        # 512 KiB of text: long enough to cancel in the middle
        content = "\n\n".join(paragraphs(1200, 70))[:512 * 1024]
        jid = self.submit(self.srv, {"title": "Big", "content": content})
        self.wait_status(self.srv, jid, "processing", 10)
        self.srv.req("DELETE", "/jobs/%s" % jid)
        j = self.wait_final(self.srv, jid, timeout=20)
        if j["status"] == "complete":
            self.skipTest("the 512 KiB document finished before the cancel on this machine")
        self.assertEqual(j["status"], "canceled", repr(j))
        self.assertEqual(j["files"], [])
        self.assertError(self.download(self.srv, "/jobs/%s/files/document.pdf" % jid), 404, "not_found")


class FilesOnDisk(PdfCase):

    def test_files_survive_a_restart_and_expire(self):
        base = tempfile.mkdtemp(prefix="offload-pdf-")
        self.addCleanup(shutil.rmtree, base, True)
        d = os.path.join(base, "data")
        srv = self.start_server("--workers", "1", "--data-dir", d, "--max-finished", "2")
        jid = self.submit(srv, {"title": "Kept", "content": "a\n\nb"})
        j = self.complete(srv, jid)
        body = self.check_file(srv, j).body
        on_disk = os.path.join(d, "files", jid, "document.pdf")
        self.assertTrue(os.path.exists(on_disk), on_disk)
        srv.stop()
        srv2 = self.start_server("--workers", "1", "--data-dir", d, "--max-finished", "2")
        j2 = self.complete(srv2, jid)
        self.assertEqual(j2["files"], j["files"])
        self.assertEqual(self.check_file(srv2, j2).body, body)
        # two newer jobs finish: --max-finished 2 evicts it, and its file goes
        for n in range(2):
            self.complete(srv2, self.submit(srv2, {"title": "n%d" % n, "content": "x"}))
        self.wait_until(lambda: srv2.get("/jobs/%s" % jid).status == 404, 10, what="evicted")
        self.wait_until(lambda: not os.path.exists(os.path.join(d, "files", jid)), 10, what="its files removed")
        srv2.stop()


if __name__ == "__main__":
    main()
