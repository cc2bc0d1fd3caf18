"""Who holds the data dir: a lock file every running console or server holds, so an offline restore
can tell it must not swap the database under them.

Runtimes take a *shared* ``flock`` on ``<data_dir>/.contimg.lock`` for as long as they run (a
read-only console may watch beside ``contimg serve``); an offline restore takes it *exclusively*,
which fails while any runtime holds it and keeps a runtime from starting mid-restore. The kernel
drops the lock when the process dies (even by SIGKILL), so a stale file never blocks anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".contimg.lock"


class DataDirBusy(Exception):
    """The data dir's lock is held in a conflicting mode; ``holders`` says by whom (as far as known)."""

    def __init__(self, message: str, holders: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.holders = holders


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / LOCK_NAME


def _holders(path: Path) -> list[dict[str, Any]]:
    """The processes that said they hold the lock (one JSON line each), the dead ones left out."""
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            info = json.loads(line)
            os.kill(int(info["pid"]), 0)
        except (ValueError, KeyError, TypeError, ProcessLookupError):
            continue
        except PermissionError:  # alive, another user's process
            pass
        out.append(info)
    return out


class DataDirLock:
    """``flock`` on the data dir's lock file, shared (runtimes) or exclusive (offline restore)."""

    def __init__(self, data_dir: Path, *, exclusive: bool, purpose: str) -> None:
        self.path = lock_path(data_dir)
        self.exclusive = exclusive
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holders = _holders(self.path)
            who = ", ".join(f"pid {h['pid']} ({h.get('purpose', '?')} on {h.get('host', '?')})" for h in holders)
            raise DataDirBusy(f"{self.path.parent} is in use by {who or 'another process'}", holders) from None
        self._fd = fd
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                         "since": time.time()})
        live = [json.dumps(h) for h in _holders(self.path) if h.get("pid") != os.getpid()]
        # Only the live holders are kept; under a shared lock another holder may rewrite at once,
        # which at worst drops a name from the message, never the lock itself.
        with open(self.path, "w") as fh:
            fh.write("\n".join([*live, me]) + "\n")
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            live = [json.dumps(h) for h in _holders(self.path) if h.get("pid") != os.getpid()]
            with open(self.path, "w") as fh:
                fh.write("".join(line + "\n" for line in live))
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holders(data_dir: Path) -> list[dict[str, Any]]:
    """Who holds the data dir now (empty when nobody does): probes the lock without keeping it."""
    path = lock_path(data_dir)
    if not path.exists():
        return []
    try:
        with DataDirLock(data_dir, exclusive=True, purpose="probe"):
            return []
    except DataDirBusy as busy:
        return busy.holders or [{"pid": None, "purpose": "unknown"}]
