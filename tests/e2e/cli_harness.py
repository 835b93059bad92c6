"""Shared helpers of the command-line client's end-to-end tests
(test_cli.py, test_cli_fake.py): run the built client (OFFLOAD_BIN) in a pipe
or on a pseudo-terminal, and check its output's shape."""
import json
import os
import pty
import re
import select
import socket
import subprocess
import time

from harness import HOST, _die_with_parent

BAR_RE = re.compile(rb"\[[#.]{5,}\]\s+\d+%")


def dead_port(test):
    """A port where nothing listens, for as long as the test runs: a socket
    bound to it but not listening (connections are refused), so no server
    started meanwhile (ctest -j) can be given it."""
    s = socket.socket()
    s.bind((HOST, 0))
    test.addCleanup(s.close)
    return s.getsockname()[1]


class CliMixin:
    url = None

    def cli(self, *args, env=None, timeout=60, url=True, cwd=None):
        """Runs the client with stdin closed; returns (rc, stdout, stderr) as text."""
        e = dict(os.environ)
        e.pop("OFFLOAD_TOKEN", None)
        e.pop("OFFLOAD_URL", None)
        if url and self.url:
            e["OFFLOAD_URL"] = self.url
        e.update(env or {})
        p = subprocess.Popen([os.environ["OFFLOAD_BIN"]] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=cwd,
                             preexec_fn=_die_with_parent)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("offload %r still running after %ss: %r %r" % (args, timeout, out[-300:], err[-300:]))
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def ok(self, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        self.assertEqual(rc, 0, "offload %r: rc=%d stderr=%r" % (args, rc, err))
        return out, err

    def one_json(self, out):
        """stdout holds exactly one JSON document (and its newline)."""
        self.assertTrue(out.endswith("\n"), repr(out[-100:]))
        return json.loads(out)  # raises on a second document or any stray text

    def one_line(self, err):
        self.assertTrue(err.endswith("\n"), repr(err))
        self.assertEqual(err.count("\n"), 1, "want one line on stderr, got %r" % err)
        self.assertTrue(err.startswith("offload: "), repr(err))
        return err

    def run_pty(self, args, stdin_pty=False, timeout=60, send=None, send_after=None, env=None):
        """Runs the client with stderr (and with stdin_pty also stdin and
        stdout) on a pseudo-terminal. Returns (rc, pty bytes, stdout bytes)."""
        master, slave = pty.openpty()
        e = dict(os.environ)
        e.pop("OFFLOAD_TOKEN", None)
        e["OFFLOAD_URL"] = self.url
        e.update(env or {})
        p = subprocess.Popen([os.environ["OFFLOAD_BIN"]] + [str(a) for a in args],
                             stdin=slave if stdin_pty else subprocess.DEVNULL,
                             stdout=slave if stdin_pty else subprocess.PIPE, stderr=slave, env=e,
                             preexec_fn=_die_with_parent, start_new_session=stdin_pty)
        os.close(slave)
        got = b""
        deadline = time.monotonic() + timeout
        sent = False
        try:
            while True:
                if send is not None and not sent and send_after(got):
                    send(p, master)
                    sent = True
                r, _, _ = select.select([master], [], [], 0.05)
                if r:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        chunk = b""
                    if not chunk and p.poll() is not None:
                        break
                    got += chunk
                elif p.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    p.kill()
                    self.fail("offload %r on a pty still running after %ss; screen: %r" % (args, timeout, got[-500:]))
            out = p.stdout.read() if p.stdout else b""
            rc = p.wait(10)
        finally:
            os.close(master)
            if p.stdout:
                p.stdout.close()
        return rc, got, out
