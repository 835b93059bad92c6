#!/usr/bin/env python3
"""A throwaway PostgreSQL 15 (Debian's postgresql-15) for offload's tests,
benchmarks and `make run-cluster`: its own data dir in a temp dir, a unix
socket only (listen_addresses=''), trust auth, run as an unprivileged user
(initdb refuses root: as root it runs everything as `postgres` through
runuser).

    from pgtmp import PgTmp          # with scripts/ on sys.path
    pg = PgTmp()                     # nothing runs yet
    pg.start()                       # initdb the first time, then pg_ctl start -w
    pg.url                           # libpq connection string for --pg-url
    pg.psql("select 1")              # runs SQL, returns stdout
    pg.stop(); pg.start()            # a restart keeps the data
    pg.cleanup()                     # stops it and removes the dir

Command line (make run-cluster):
    scripts/pgtmp.py start DIR       # prints the connection string
    scripts/pgtmp.py stop DIR
"""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

DB = "offload"


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    raise RuntimeError("PostgreSQL server binaries not found: install postgresql-15 "
                       "(scripts/install-deps.sh test)")


class PgTmp:
    def __init__(self, base=None, port=5432, settings=None):
        self.bindir = _bindir()
        self.owned = base is None
        self.base = base or tempfile.mkdtemp(prefix="offload-pg-")
        self.data = os.path.join(self.base, "data")
        self.sock = self.base
        self.port = port
        self.settings = dict(settings or {})
        self.user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o755)
        self.url = "host=%s port=%d dbname=%s user=%s" % (self.sock, self.port, DB, self.user)

    def _run(self, argv, check=True, **kw):
        if os.getuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, **kw)

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def running(self):
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def start(self):
        fresh = not os.path.exists(os.path.join(self.data, "PG_VERSION"))
        if fresh:
            self._run([self._bin("initdb"), "-D", self.data, "-A", "trust", "-E", "UTF8",
                       "--no-locale", "-U", self.user])
            opts = {"listen_addresses": "''", "unix_socket_directories": "'%s'" % self.sock,
                    "port": str(self.port), "max_connections": "200", "fsync": "on",
                    "shared_buffers": "128MB", "log_min_messages": "warning"}
            opts.update(self.settings)
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                for k, v in opts.items():
                    f.write("%s = %s\n" % (k, v))
        self._run([self._bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.base, "log"),
                   "-w", "-t", "60", "start"])
        if fresh:
            self._run([self._bin("createdb"), "-h", self.sock, "-p", str(self.port), "-U", self.user, DB])

    def stop(self, mode="fast"):
        if self.running():
            self._run([self._bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"],
                      check=False)

    def restart(self):
        self.stop()
        self.start()

    def psql(self, sql, db=DB):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                            "-p", str(self.port), "-U", self.user, "-d", db, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return r.stdout

    def log(self):
        try:
            with open(os.path.join(self.base, "log")) as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.stderr.write("usage: pgtmp.py start|stop DIR\n")
        return 2
    os.makedirs(argv[2], exist_ok=True)
    pg = PgTmp(os.path.abspath(argv[2]))
    if argv[1] == "start":
        pg.start()
        print(pg.url)
    else:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
