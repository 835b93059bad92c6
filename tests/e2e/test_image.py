"""The image task (libvips), end to end: POST /jobs/image and the seeds'
synchronous POST /api/images/process.

- One output per width, w<width>.<ext>, decoded back with vipsheader:
  `inside` keeps the aspect within the box, `cover` fills width x height
  exactly, `contain` letterboxes to exactly width x height; webp (default),
  jpeg, png, avif; grayscale gives one band.
- Hostile input is normal input: a decompression bomb (a PNG whose header
  claims 2.5 G pixels) fails `image_too_large` before any pixel is decoded,
  a truncated JPEG and non-image bytes fail `invalid_image`, while the other
  jobs complete; 50 concurrent jobs all complete, correct.
- The synchronous route answers 200 with the first file's bytes and type,
  400 with the error for a bad image; its job is an ordinary one.
- A cancel ends a job in the middle; it keeps no file.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

TMP = tempfile.mkdtemp(prefix="offload-img-")


def tool(name):
    path = shutil.which(name)
    if not path:
        raise AssertionError("%s is missing (Debian package libvips-tools): scripts/install-deps.sh test" % name)
    return path


def make_jpeg(w, h, name):
    """A w x h colour JPEG of noise (libvips' own command line)."""
    path = os.path.join(TMP, name)
    if not os.path.exists(path):
        v = os.path.join(TMP, name + ".v")
        subprocess.run([tool("vips"), "gaussnoise", v, str(w), str(h)], check=True, timeout=60)
        subprocess.run([tool("vips"), "bandjoin", "%s %s %s" % (v, v, v), v + "3.v"], check=True, timeout=60)
        subprocess.run([tool("vips"), "copy", v + "3.v", path + "[Q=85]"], check=True, timeout=60)
    with open(path, "rb") as f:
        return f.read()


def header(data, suffix):
    """(width, height, bands) of an image's bytes, by vipsheader."""
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=TMP) as f:
        f.write(data)
        f.flush()
        out = subprocess.run([tool("vipsheader"), "-f", "width", f.name], capture_output=True, check=True,
                             timeout=30).stdout
        w = int(out)
        h = int(subprocess.run([tool("vipsheader"), "-f", "height", f.name], capture_output=True, check=True,
                               timeout=30).stdout)
        b = int(subprocess.run([tool("vipsheader"), "-f", "bands", f.name], capture_output=True, check=True,
                               timeout=30).stdout)
    return w, h, b


def png_bomb(w=50000, h=50000):
    """A PNG header claiming w x h pixels, with almost no data after it."""
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


class ImageCase(OffloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--workers", "1", "--process-workers", "2", "--store", "memory"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def submit(self, query, body, ctype="image/jpeg"):
        return self.srv.req("POST", "/jobs/image" + query, body, {"Content-Type": ctype})

    def run_image(self, query, body, timeout=60):
        r = self.submit(query, body)
        self.assertEqual(r.status, 202, repr(r))
        return self.wait_final(self.srv, r.json()["id"], timeout=timeout)

    def files(self, j):
        out = {}
        for f in j["files"]:
            r = self.srv.get(f["url"])
            self.assertEqual(r.status, 200, repr(r))
            self.assertEqual(r.header("Content-Type"), f["contentType"])
            self.assertEqual(len(r.body), f["bytes"])
            out[f["name"]] = r.body
        return out


class Outputs(ImageCase):

    def test_widths_inside_and_formats(self):
        src = make_jpeg(1600, 1200, "a.jpg")
        j = self.run_image("?widths=640,100,320", src)
        self.assertEqual(j["status"], "complete", repr(j))
        got = self.files(j)
        self.assertEqual(sorted(got), ["w100.webp", "w320.webp", "w640.webp"])
        for w in (640, 320, 100):
            self.assertEqual(header(got["w%d.webp" % w], ".webp"), (w, w * 3 // 4, 3))
        for fmt, ext, ctype in (("jpeg", "jpg", "image/jpeg"), ("png", "png", "image/png"),
                                ("avif", "avif", "image/avif"), ("webp", "webp", "image/webp")):
            with self.subTest(fmt=fmt):
                j = self.run_image("?widths=200&format=%s&quality=60" % fmt, src)
                self.assertEqual(j["status"], "complete", repr(j))
                self.assertEqual([(f["name"], f["contentType"]) for f in j["files"]], [("w200.%s" % ext, ctype)])
                self.assertEqual(header(self.files(j)["w200.%s" % ext], "." + ext)[:2], (200, 150))

    def test_fit_cover_contain_and_filters(self):
        src = make_jpeg(1600, 1200, "a.jpg")
        j = self.run_image("?widths=300&height=300&fit=cover&grayscale=true&format=png", src)
        self.assertEqual(header(self.files(j)["w300.png"], ".png"), (300, 300, 1))
        j = self.run_image("?widths=300&height=300&fit=contain&format=png&blur=1.5&sharpen=true", src)
        self.assertEqual(header(self.files(j)["w300.png"], ".png")[:2], (300, 300))
        j = self.run_image("?widths=300&height=100&fit=inside", src)
        w, h, _ = header(self.files(j)["w300.webp"], ".webp")
        self.assertTrue(w <= 300 and h <= 100 and (w == 300 or h == 100), (w, h))
        j = self.run_image("?widths=400&watermark=%C2%A9%20offload", src)
        self.assertEqual(j["status"], "complete", repr(j))
        self.assertEqual(header(self.files(j)["w400.webp"], ".webp")[:2], (400, 300))

    def test_bad_params_are_400(self):
        src = b"x"
        for q, field in (("", "params.widths"), ("?widths=0", "params.widths[0]"),
                         ("?widths=1,2,3,4,5,6,7,8,9", "params.widths"), ("?widths=10&fit=fill", "params.fit"),
                         ("?widths=10&format=gif", "params.format"), ("?widths=10&quality=0", "params.quality"),
                         ("?widths=10&blur=0.1", "params.blur")):
            with self.subTest(q=q):
                self.assertError(self.submit(q, src), 400, ("invalid_param", "missing_param"), param=field)
        self.assertError(self.submit("?widths=10", src, "text/plain"), 415, "unsupported_media_type")
        r = self.srv.req("POST", "/jobs", {"task": "image", "params": {"widths": [10]}},
                         {"Content-Type": "application/json"})
        self.assertError(r, 400, "invalid_param", param="task")


def with_orientation(jpeg, orientation):
    """The JPEG with an EXIF APP1 segment holding only an Orientation tag
    (0x0112, SHORT) right after its SOI: how a camera marks a photo taken
    sideways (6: the stored pixels must be turned 90 degrees clockwise)."""
    import struct
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


class Orientation(ImageCase):

    def test_exif_orientation_is_applied_and_stripped(self):
        # Stored 800x400, marked "rotate 90 CW": it is a 400x800 portrait.
        src = with_orientation(make_jpeg(800, 400, "landscape.jpg"), 6)
        j = self.run_image("?widths=200,100&format=jpeg", src)
        self.assertEqual(j["status"], "complete", repr(j))
        got = self.files(j)
        self.assertEqual(header(got["w200.jpg"], ".jpg")[:2], (200, 400))
        self.assertEqual(header(got["w100.jpg"], ".jpg")[:2], (100, 200))
        # Metadata is stripped: no EXIF segment in the output.
        self.assertNotIn(b"Exif\x00\x00", got["w200.jpg"])
        # Orientation 1 (as stored) keeps the landscape.
        j = self.run_image("?widths=200&format=jpeg", with_orientation(make_jpeg(800, 400, "landscape.jpg"), 1))
        self.assertEqual(header(self.files(j)["w200.jpg"], ".jpg")[:2], (200, 100))


class Hostile(ImageCase):

    def test_bomb_truncated_and_garbage_fail_cleanly(self):
        src = make_jpeg(1600, 1200, "a.jpg")
        good = [self.submit("?widths=200", src).json()["id"] for _ in range(3)]
        bomb = self.run_image("?widths=100", png_bomb())
        self.assertEqual((bomb["status"], bomb["error"]["code"]), ("failed", "image_too_large"), repr(bomb))
        self.assertIn("2500000000", bomb["error"]["message"])
        cut = self.run_image("?widths=100", src[:len(src) // 2])
        self.assertEqual((cut["status"], cut["error"]["code"]), ("failed", "invalid_image"), repr(cut))
        junk = self.run_image("?widths=100", b"this is not an image at all" * 100)
        self.assertEqual((junk["status"], junk["error"]["code"]), ("failed", "invalid_image"), repr(junk))
        for jid in good:
            self.assertEqual(self.wait_final(self.srv, jid, timeout=60)["status"], "complete")
        for j in (bomb, cut, junk):
            self.assertEqual(j["files"], [])

    def test_fifty_concurrent_jobs(self):
        src = make_jpeg(800, 600, "b.jpg")
        ids, errors = [], []

        def one():
            try:
                r = self.submit("?widths=160,80", src)
                ids.append(r.json()["id"])
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(ids), 50)
        for jid in ids:
            j = self.wait_final(self.srv, jid, timeout=120)
            self.assertEqual(j["status"], "complete", repr(j))
            self.assertEqual([f["name"] for f in j["files"]], ["w160.webp", "w80.webp"])
        self.assertEqual(header(self.files(j)["w160.webp"], ".webp")[:2], (160, 120))

    def test_cancel_mid_run(self):
        src = make_jpeg(4000, 3000, "big.jpg")
        r = self.submit("?widths=4000,3900,3800,3700,3600,3500,3400,3300&format=png", src)
        jid = r.json()["id"]
        self.wait_status(self.srv, jid, "processing", 30)
        self.srv.req("DELETE", "/jobs/%s" % jid)
        j = self.wait_final(self.srv, jid, timeout=30)
        if j["status"] == "complete":
            self.skipTest("the job finished before the cancel on this machine")
        self.assertEqual((j["status"], j["files"]), ("canceled", []), repr(j))


class Synchronous(ImageCase):

    def test_process_route(self):
        src = make_jpeg(1600, 1200, "a.jpg")
        r = self.srv.req("POST", "/api/images/process?widths=240,120", src, {"Content-Type": "image/jpeg"},
                         timeout=60)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("Content-Type"), "image/webp")
        self.assertEqual(header(r.body, ".webp")[:2], (240, 180))
        # its job is an ordinary one
        jobs = [j for j in self.srv.get("/jobs?limit=1000").json()["jobs"] if j["task"] == "image"]
        self.assertTrue(any(j["params"] == {"widths": [240, 120]} and j["status"] == "complete" for j in jobs))
        r = self.srv.req("POST", "/api/images/process?widths=240", b"not an image", {"Content-Type": "image/jpeg"},
                         timeout=60)
        self.assertError(r, 400, "invalid_image")
        self.assertError(self.srv.req("POST", "/api/images/process?widths=0", src, {"Content-Type": "image/jpeg"}),
                         400, "invalid_param", param="params.widths[0]")


def tearDownModule():
    shutil.rmtree(TMP, True)


if __name__ == "__main__":
    main()
