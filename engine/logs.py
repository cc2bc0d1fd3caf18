"""Structured logging: one line per record to ``logs/contimg.log`` and a ring buffer.

The file gets ``ts level logger message key=value...`` lines (rotating). The ring
buffer keeps recent records as plain dicts for the TUI log view and the REST log
search, so neither has to parse the file. A record logged while the engine works on a
job carries the job's id (``extra={"job_id": ...}`` or :func:`bind_job` for the job's
task), so the console can jump from a line to the job's own log.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import logging.handlers
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOGGER_NAME = "contimg"
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
#: The job the current task (and the threads it hands work to) is working on.
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("contimg_job_id", default=None)


def bind_job(job_id: str | None) -> None:
    """Tag every record logged from now on in this context (a job's own asyncio task) with ``job_id``.

    ``asyncio.to_thread`` copies the context, so lines logged by the threads the task starts
    carry the id as well; other tasks are not affected.
    """
    _job_id.set(job_id)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras = {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}
    job = _job_id.get()
    if job is not None:
        extras.setdefault("job_id", job)
    return extras


class StructuredFormatter(logging.Formatter):
    """``2026-11-29T17:00:00.123Z INFO contimg.engine message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [ts, record.levelname, record.name, record.getMessage()]
        extras = {} if record.name.endswith(".access") else _extras(record)
        for key, value in extras.items():
            parts.append(f"{key}={json.dumps(value, default=str)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RingBufferHandler(logging.Handler):
    """Keeps the last ``capacity`` records as dicts with a monotonically rising ``seq``."""

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__()
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._seq = 0
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {
                "timestamp": datetime.fromtimestamp(record.created, UTC),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "extra": _extras(record),
            }
            entry["job_id"] = entry["extra"].get("job_id")
            with self._lock2:
                self._seq += 1
                entry["seq"] = self._seq
                self._records.append(entry)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)

    def since(self, seq: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock2:
            items = [r for r in self._records if r["seq"] > seq]
        return items[-limit:]

    @property
    def last_seq(self) -> int:
        return self._seq


_ring: RingBufferHandler | None = None


def ring_buffer() -> RingBufferHandler:
    global _ring
    if _ring is None:
        _ring = RingBufferHandler()
    return _ring


def setup_logging(logs_dir: Path, level: str = "INFO", max_bytes: int = 10_000_000, backups: int = 5,
                  console: bool = False) -> RingBufferHandler:
    """Configure the ``contimg`` logger tree once per process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_contimg", False):
            logger.removeHandler(handler)
            handler.close()
    logs_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.handlers.RotatingFileHandler(logs_dir / "contimg.log", maxBytes=max_bytes, backupCount=backups)
    fh.setFormatter(StructuredFormatter())
    ring = ring_buffer()
    handlers: list[logging.Handler] = [fh, ring]
    if console:
        sh = logging.StreamHandler()
        sh.setFormatter(StructuredFormatter())
        handlers.append(sh)
    for handler in handlers:
        handler._contimg = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return ring


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
