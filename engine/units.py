"""Small shared formatting, retry and task helpers used across the core."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

T = TypeVar("T")


def human_bytes(n: float | None) -> str:
    """Sizes as the dashboard shows them ("1.2 GB"), powers of 1024."""
    size = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(size) < 1024 or unit == "PB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PB"  # pragma: no cover


def retry_busy(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a short write transaction again when SQLite reports busy or a stale snapshot."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError:
            if i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel a background task and wait until it has stopped (its cancellation is not an error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
