"""Per-job log capture inside worker processes, written straight to ``job_logs``.

A stage running in the process pool logs through the ordinary ``contimg`` logger;
this handler copies each record into the database so the TUI and REST can tail a
job while it runs (SQLite in WAL mode lets the worker write beside the engine).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from collections.abc import Iterator

from engine.processing import progress


class JobLogHandler(logging.Handler):
    def __init__(self, db_path: str, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.conn = sqlite3.connect(db_path, timeout=10)
        self.conn.execute("PRAGMA busy_timeout=10000")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(record.levelname, record.getMessage(), record.created)
        except Exception:  # pragma: no cover - a log line must never fail a stage
            self.handleError(record)

    def write(self, level: str, message: str, created: float | None = None) -> None:
        at = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
        with self.conn:
            self.conn.execute("INSERT INTO job_logs (job_id, at, level, message) VALUES (?, ?, ?, ?)",
                              (self.job_id, at.replace(tzinfo=None).isoformat(sep=" "), level, message))

    def close(self) -> None:
        self.conn.close()
        super().close()


WORKER_LEVEL = "WORKER"  # a job-log line whose message is the pid of the pool process running the job
_handler: JobLogHandler | None = None


def mark_worker() -> None:
    """Record this process's pid in the current job's log (no-op outside a job)."""
    if _handler is not None:
        _handler.write(WORKER_LEVEL, str(os.getpid()))


@contextmanager
def capture(db_path: str | None, job_id: str | None) -> Iterator[logging.Logger]:
    logger = logging.getLogger("contimg.stage")
    logger.setLevel(logging.INFO)
    if not db_path or not job_id:
        yield logger
        return
    handler = JobLogHandler(db_path, job_id)
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
