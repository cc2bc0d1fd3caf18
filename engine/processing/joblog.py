"""Per-job log capture inside worker processes, written straight to ``job_logs``.

A stage running in the process pool logs through the ordinary ``contimg`` logger;
this handler copies each record into the database so the TUI and REST can tail a
job while it runs. The worker is handed the database's URL (or, from older callers,
the SQLite file's path): on SQLite it writes with plain ``sqlite3`` (WAL mode lets the
worker write beside the engine); on PostgreSQL with one autocommitted psycopg
connection of its own, so a dask worker on another host writes its job's log too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from collections.abc import Iterator
from typing import Any

from engine.processing import progress


LEVEL_WIDTH = 8  # job_logs.level is String(8); PostgreSQL enforces it


def _sqlite_path(target: str) -> str | None:
    """The SQLite file of a path or a sqlite:/// URL; None for another database's URL."""
    if "://" not in target:
        return target
    if target.startswith("sqlite:///"):
        return target.removeprefix("sqlite:///").split("?", 1)[0]
    return None


def _libpq_uri(url: str) -> str:
    """postgresql+psycopg://… (SQLAlchemy) -> postgresql://… (libpq), credentials and options kept."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"job logs cannot be written to a {u.get_backend_name()} database")
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class JobLogHandler(logging.Handler):
    def __init__(self, db: str, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        path = _sqlite_path(db)
        self.sqlite = path is not None
        self.conn: Any = None
        if path is not None:
            self.conn = sqlite3.connect(path, timeout=10)
            self.conn.execute("PRAGMA busy_timeout=10000")
        else:
            self._uri = _libpq_uri(db)
            self._connect_pg()

    def _connect_pg(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self._uri, autocommit=True, connect_timeout=10,
                                    application_name="contimg-joblog")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(record.levelname, record.getMessage(), record.created)
        except Exception:  # pragma: no cover - a log line must never fail a stage
            self.handleError(record)

    def write(self, level: str, message: str, created: float | None = None) -> None:
        at = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
        if self.sqlite:
            with self.conn:
                self.conn.execute("INSERT INTO job_logs (job_id, at, level, message) VALUES (?, ?, ?, ?)",
                                  (self.job_id, at.replace(tzinfo=None).isoformat(sep=" "), level, message))
            return
        self._write_pg(at.replace(tzinfo=None), level[:LEVEL_WIDTH], message)

    def _write_pg(self, at: datetime, level: str, message: str) -> None:
        import psycopg

        sql = "INSERT INTO job_logs (job_id, at, level, message) VALUES (%s, %s, %s, %s)"
        try:
            self.conn.execute(sql, (self.job_id, at, level, message))
        except psycopg.OperationalError:  # the server restarted or dropped us: one new connection, once
            try:
                self.conn.close()
            finally:
                self._connect_pg()
            self.conn.execute(sql, (self.job_id, at, level, message))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        super().close()


WORKER_LEVEL = "WORKER"  # a job-log line whose message is the pid of the pool process running the job
_handler: JobLogHandler | None = None


def mark_worker() -> None:
    """Record this process's pid in the current job's log (no-op outside a job)."""
    if _handler is not None:
        _handler.write(WORKER_LEVEL, str(os.getpid()))


@contextmanager
def capture(db: str | None, job_id: str | None) -> Iterator[logging.Logger]:
    """Copy the job's log records into ``job_logs`` of ``db`` (a database URL or a SQLite path)."""
    logger = logging.getLogger("contimg.stage")
    logger.setLevel(logging.INFO)
    if not db or not job_id:
        yield logger
        return
    handler = JobLogHandler(db, job_id)
    root = logging.getLogger("contimg")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    global _handler
    _handler = handler
    progress.install(lambda message: handler.write(progress.LEVEL, message))
    try:
        yield logger
    finally:
        _handler = None
        progress.install(None)
        root.removeHandler(handler)
        handler.close()
