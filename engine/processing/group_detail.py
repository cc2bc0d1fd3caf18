"""Everything an operator asks about one group, in one read: why it failed, what it made.

The console's group detail view and any other front end read this through
``Services.group_detail``; plain dataclasses, no ORM objects leave the session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.db import models as m


@dataclass(frozen=True)
class StageRun:
    """One job of the group: a stage's run with its attempts and outcome."""

    job_id: str
    type: str
    state: str
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_kind: str | None
    error: str | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Transition:
    at: datetime
    from_state: str
    to_state: str
    attempt: int
    reason: str | None


@dataclass(frozen=True)
class Product:
    kind: str
    path: str
    size_bytes: int | None
    note: str = ""


@dataclass(frozen=True)
class GroupDetail:
    id: str
    state: str
    state_changed_at: datetime
    dec_deg: float | None
    n_subbands: int
    missing_subbands: list[Any]
    is_calibrator: bool
    calibrator_name: str | None
    error: str | None
    warnings: list[Any]
    stages: list[StageRun] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)   # sets used and why


def _size(path: str) -> int | None:
    """Size on disk (a directory's total for an MS or cal table); None when it is gone."""
    try:
        if not os.path.isdir(path):
            return os.path.getsize(path)
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    except OSError:
        return None


def group_detail(db: Any, group_id: str) -> GroupDetail | None:
    found: list[tuple[str, str, int | None, str]] = []     # (kind, path, recorded size, note)
    with db.session() as s:
        g = s.get(m.ObservationGroup, group_id)
        if g is None:
            return None
        jobs = s.scalars(select(m.Job).where(m.Job.group_id == group_id).order_by(m.Job.created_at, m.Job.id))
        stages = [StageRun(j.id, j.type, j.state, j.attempts, j.max_attempts, j.created_at, j.started_at,
                           j.finished_at, j.error_kind, j.error) for j in jobs]
        trans = [Transition(t.at, t.from_state, t.to_state, t.attempt, t.reason) for t in s.scalars(
            select(m.StateTransition).where(m.StateTransition.group_id == group_id).order_by(m.StateTransition.id))]
        calibration: list[str] = []
        ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group_id))
        if ms is not None:
            found.append(("MS", ms.path, ms.size_bytes, f"{ms.n_rows or 0} rows, {ms.n_channels or 0} ch"))
            for name in ms.cal_sets_applied or []:
                cs = s.scalar(select(m.CalibrationSet).where(m.CalibrationSet.name == str(name)))
                calibration.append(f"{name}: {cs.calibrator_name}, {cs.status}" if cs else f"{name} (no longer registered)")
            if ms.cal_sets_applied and ms.qa_summary:
                calibration.append(f"why: {ms.qa_summary}")   # the registry's reason (record_calibrate)
        for cs in s.scalars(select(m.CalibrationSet).where(m.CalibrationSet.group_id == group_id)):
            calibration.append(f"solved here: {cs.name} ({cs.status}, QA {'passed' if cs.qa_passed else 'failed'})")
            found.extend((f"cal {t.table_type}", t.path, None, "") for t in cs.tables)
        for img in s.scalars(select(m.Image).where(m.Image.group_id == group_id).order_by(m.Image.created_at)):
            noise = f", noise {img.noise_jy:.3g} Jy/beam" if img.noise_jy else ""
            found.append(("image", img.path, None, f"QA {img.qa_grade or '?'}{noise}"))
        detail = GroupDetail(g.id, g.state, g.state_changed_at, g.dec_deg, g.n_subbands, list(g.missing_subbands or []),
                             g.is_calibrator, g.calibrator_name, g.error, list(g.warnings or []), stages, trans, [],
                             calibration)
    # sizes off the session: walking an MS directory must not hold the database's read transaction
    detail.products.extend(Product(kind, path, size if size is not None else _size(path), note)
                           for kind, path, size, note in found)
    return detail
