"""The service API that the TUI and the REST server call: plain data in, plain data out.

Front ends never see ORM objects or SQL; every method here opens its own short
transaction and returns dataclasses or dicts. Methods are synchronous (SQLite);
async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m


@dataclass(frozen=True)
class GroupRow:
    id: str
    group_time: datetime
    state: str
    n_subbands: int
    dec_deg: float | None
    is_calibrator: bool
    calibrator_name: str | None
    state_changed_at: datetime
    error: str | None


@dataclass(frozen=True)
class CalibrationSetRow:
    id: int
    name: str
    calibrator_name: str
    status: str
    dec_deg: float
    valid_start_mjd: float
    valid_end_mjd: float
    qa_passed: bool
    snr: float | None
    created_at: datetime


@dataclass(frozen=True)
class TriggerRow:
    id: str
    name: str
    trigger_type: str
    event: str | None
    schedule: str | None
    action: str
    enabled: bool
    last_triggered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class BackupRow:
    id: str
    name: str
    backup_type: str
    status: str
    size_bytes: int | None
    created_at: datetime
    created_by: str | None
    validation_status: str | None


def as_dict(row: Any) -> dict[str, Any]:
    return asdict(row)


class Services:
    """Read and act on pipeline state through one small façade."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- groups / queue -------------------------------------------------
    def list_groups(self, limit: int = 500, state: str | None = None) -> list[GroupRow]:
        with self.db.session() as s:
            q = select(m.ObservationGroup).order_by(m.ObservationGroup.group_time.desc()).limit(limit)
            if state:
                q = q.where(m.ObservationGroup.state == state)
            return [
                GroupRow(g.id, g.group_time, g.state, g.n_subbands, g.dec_deg, g.is_calibrator,
                         g.calibrator_name, g.state_changed_at, g.error)
                for g in s.scalars(q)
            ]

    def counts_by_state(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(m.ObservationGroup.state, func.count()).group_by(m.ObservationGroup.state))
            return {state: n for state, n in rows}

    # ---- calibration ----------------------------------------------------
    def list_calibration_sets(self, limit: int = 500) -> list[CalibrationSetRow]:
        with self.db.session() as s:
            q = select(m.CalibrationSet).order_by(m.CalibrationSet.mid_mjd.desc()).limit(limit)
            return [
                CalibrationSetRow(c.id, c.name, c.calibrator_name, c.status, c.dec_deg, c.valid_start_mjd,
                                  c.valid_end_mjd, c.qa_passed, (c.qa_metrics or {}).get("snr"), c.created_at)
                for c in s.scalars(q)
            ]

    # ---- triggers -------------------------------------------------------
    def list_triggers(self) -> list[TriggerRow]:
        with self.db.session() as s:
            q = select(m.PipelineTrigger).order_by(m.PipelineTrigger.name)
            return [
                TriggerRow(t.id, t.name, t.trigger_type, t.event_pattern, t.schedule, t.action, t.enabled,
                           t.last_triggered_at, t.last_error)
                for t in s.scalars(q)
            ]

    # ---- backups --------------------------------------------------------
    def list_backups(self, limit: int = 200) -> list[BackupRow]:
        with self.db.session() as s:
            q = select(m.BackupRecord).order_by(m.BackupRecord.created_at.desc()).limit(limit)
            return [
                BackupRow(b.id, b.name, b.backup_type, b.status, b.size_bytes, b.created_at, b.created_by,
                          b.validation_status)
                for b in s.scalars(q)
            ]
