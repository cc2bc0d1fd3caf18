"""A running stage's own progress reports (channels gridded, CLEAN iterations, rows written).

Stage code calls :func:`report` wherever it counts work; inside a job (the pool process,
under ``joblog.capture``) each report becomes a ``PROGRESS`` line in ``job_logs``, the
channel the TUI and REST already tail, so no schema and no cross-process plumbing is
needed and the lines go when the job is purged. Outside a job (CLI, tests) a report is
a no-op. Reports are rate-limited per phase (at most one a second, plus the last one),
so a tight loop can call it freely.

The message is ``<phase>: <done>/<total> <unit>``; :func:`parse` reads it back and
:func:`eta_s` turns the reports of one phase into a remaining-time estimate.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

LEVEL = "PROGRESS"
_MIN_INTERVAL_S = 1.0
_RATE_UNITS = ("rows", "channels", "iterations")  # units of equal work: a rate means something
_PATTERN = re.compile(r"^(?P<phase>[^:]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>.+)$")

#: Set by ``joblog.capture`` in a worker process: writes one PROGRESS line.
_sink: Callable[[str], None] | None = None
_last: dict[str, float] = {}


@dataclass(frozen=True)
class Progress:
    phase: str
    done: int
    total: int
    unit: str
    at: datetime | None = None
    phase_started_at: datetime | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at this phase's average rate so far (None until there is a rate)."""
        if self.at is None or self.phase_started_at is None or self.done <= 0:
            return None
        elapsed = (self.at - self.phase_started_at).total_seconds()
        if elapsed <= 0:
            return None
        return max(0.0, elapsed * (self.total - self.done) / self.done)

    def describe(self) -> str:
        """``CLEAN 340/1000 iterations (34%, ≤12 s left)``: CLEAN may stop early, so its ETA is a bound;
        unequal steps get no ETA at all."""
        eta = self.eta_s() if self.unit in _RATE_UNITS else None
        tail = "" if eta is None else f", ≤{eta:.0f} s left" if self.unit == "iterations" else f", ~{eta:.0f} s left"
        return f"{self.phase} {self.done}/{self.total} {self.unit} ({100 * self.fraction:.0f}%{tail})"


def install(sink: Callable[[str], None] | None) -> None:
    """Route reports to ``sink`` (a job's log) or, with None, back to nowhere."""
    global _sink
    _sink = sink
    _last.clear()


def report(phase: str, done: int, total: int, unit: str) -> None:
    """Count ``done`` of ``total`` ``unit`` in ``phase``; cheap and safe to call in loops."""
    sink = _sink
    if sink is None:
        return
    now = time.monotonic()
    key = f"{phase}\0{unit}"
    if key in _last and 0 < done < total and now - _last[key] < _MIN_INTERVAL_S:
        return
    _last[key] = now
    try:
        sink(f"{phase}: {int(done)}/{int(total)} {unit}")
    except Exception:  # noqa: BLE001 - progress must never fail a stage
        pass


def parse(message: str, at: datetime | None = None) -> Progress | None:
    match = _PATTERN.match(message)
    if match is None:
        return None
    return Progress(match["phase"], int(match["done"]), int(match["total"]), match["unit"], at)


def latest(lines: list[tuple[datetime, str]]) -> Progress | None:
    """The newest report of ``lines`` (oldest first), with the time its phase began."""
    parsed = [(at, p) for at, msg in lines if (p := parse(msg, at)) is not None]
    if not parsed:
        return None
    at, last = parsed[-1]
    started = at
    for when, p in reversed(parsed):
        if p.phase != last.phase or p.done > last.done:
            break
        started = when
    return Progress(last.phase, last.done, last.total, last.unit, at, started)
