"""A throw-away PostgreSQL server in a temp dir, for the tests and bench_queue.

Debian's binaries (``pg_config --bindir``, else ``/usr/lib/postgresql/*/bin``) run
``initdb`` and ``pg_ctl`` on a fresh cluster listening on 127.0.0.1 at a free port,
trust authentication, no password. PostgreSQL refuses to run as root, so as root the
cluster belongs to the ``postgres`` system user (its dir is chown'ed to it) and the
commands run through ``runuser``. ``durable=False`` (the tests) turns fsync off:
a crash of the test machine loses nothing anyone keeps.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

TEMPLATE = "contimg_template"


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the reason is the message)."""


def find_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
                         if p.split("/")[-2].isdigit() else 0, reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))  # type: ignore[arg-type]
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bindir = find_bindir()
        if self.bindir is None:
            raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise Unavailable("psycopg is not installed: pip install 'psycopg[binary]'") from None
        # as root the server runs as postgres, which must reach its dir: /tmp is open to all (TMPDIR may not be)
        base = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="contimg-pg-", dir=base))
        self.data = self.root / "data"
        self.port = _free_port()
        self._prefix: list[str] = []
        self._user = "postgres"
        if os.geteuid() == 0:  # PostgreSQL will not run as root: the cluster is the postgres user's
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' system user to run the server") \
                    from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                raise Unavailable("running as root and runuser is missing (util-linux)")
            self._prefix = [runuser, "-u", "postgres", "--"]
        else:
            self._user = pwd.getpwuid(os.geteuid()).pw_name
        self._lock = threading.Lock()
        self._n = 0
        self.started = False
        self.version = 0

    # ---- lifecycle -------------------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self._prefix, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if res.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise Unavailable(f"{Path(args[0]).name} failed ({res.returncode}): {res.stderr.strip()[-1500:]} {tail}")

    def start(self) -> PgServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}",
                "-c max_connections=200", "-c shared_buffers=128MB",
                # the telescope's own zone, not UTC: a timestamp converted by the session's zone anywhere shows
                "-c timezone=America/Los_Angeles"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", " ".join(opts), "-w", "-t", "60", "start")
        self.started = True
        with self.admin() as conn:
            self.version = int(conn.execute("SHOW server_version_num").fetchone()[0])
        return self

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=60)
            except (Unavailable, subprocess.SubprocessError):
                pass
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- databases -------------------------------------------------------
    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=True, connect_timeout=10)

    def create_database(self, name: str, template: str | None = None) -> str:
        # WAL_LOG (15's default) copies a small template without FILE_COPY's two checkpoints: ~50 ms
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        force = " WITH (FORCE)" if self.version >= 130000 else ""
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')

    def migrated_template(self) -> str:
        """The database every test copies: migrated to head once per session."""
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone()
        if not exists:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from engine.db import Database

            self.create_database(TEMPLATE)
            db = Database(self.url(TEMPLATE))
            try:
                db.upgrade()
            finally:
                db.dispose()
        return TEMPLATE

    def fresh_database(self, prefix: str = "t") -> str:
        """A new database at the schema's head (a copy of the migrated template); returns its name."""
        template = self.migrated_template()
        with self._lock:
            self._n += 1
            name = f"{prefix}_{os.getpid()}_{self._n}"
        self.create_database(name, template)
        return name
