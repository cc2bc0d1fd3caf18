"""App-wide messages: every step of a flow is a named message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class RowsFetched(Message):
    """A table screen's worker fetched fresh rows (key → cells)."""

    rows: list[tuple[str, tuple[Any, ...]]]


@dataclass
class FetchFailed(Message):
    """A background fetch failed; shown in the status line, retried on the next tick."""

    error: str
