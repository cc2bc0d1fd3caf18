"""The service API that the TUI and the REST server call: plain data in, plain data out.

Front ends never see ORM objects or SQL; every method here opens its own short
transaction and returns dataclasses or dicts. Methods are synchronous (SQLite);
async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.services.backups import BackupService
from engine.services.calibrations import CalibrationService
from engine.services.control import PipelineControl
from engine.services.data import DataService
from engine.services.health import HealthService
from engine.services.queue import QueueService
from engine.services.triggers import TriggerService
from engine.settings import Settings

__all__ = ["Services", "PipelineControl"]


class Services:
    """Read and act on pipeline state through one small façade.

    Each area of operations has its own service object (``calibrations``, ``triggers``,
    ``backups``, ``data``, ``health``, ``queue``), built on the same database, settings
    and clock; ``control`` holds the job actions the engine and REST share.
    """

    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.flux_alert_fraction = settings.calibration.flux_alert_fraction
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        #: Called after a trigger is created, edited, enabled or deleted (the runtime resyncs
        #: its scheduler); a plain function so the engine never learns who listens.
        self.on_triggers_changed: Callable[[], None] = lambda: None

    @property
    def control(self) -> PipelineControl:
        """Operator actions (retry, cancel, pause) through the same database the engine reads."""
        return PipelineControl(self.db)

    @property
    def queue(self) -> QueueService:
        return QueueService(self)

    @property
    def calibrations(self) -> CalibrationService:
        return CalibrationService(self)

    @property
    def triggers(self) -> TriggerService:
        return TriggerService(self)

    @property
    def backups(self) -> BackupService:
        return BackupService(self)

    @property
    def data(self) -> DataService:
        return DataService(self)

    @property
    def health(self) -> HealthService:
        return HealthService(self)

    def latest_job(self, group_id: str) -> Any:
        from engine.processing.queue import JobView

        with self.db.session() as s:
            job = s.scalar(select(m.Job).where(m.Job.group_id == group_id)
                           .order_by(m.Job.created_at.desc()).limit(1))
            return JobView.of(job) if job else None

    # ---- the status line ------------------------------------------------
    def console_summary(self) -> dict[str, Any]:
        """What the status line shows beyond the runtime's own view: leases, queue, calibration age."""
        from engine.processing.pause import read_paused

        now = self.clock()
        with self.db.session() as s:
            leases = s.scalar(select(func.count()).select_from(m.Job).where(
                m.Job.state == "running", m.Job.lease_until.is_not(None), m.Job.lease_until > now)) or 0
            stale = s.scalar(select(func.count()).select_from(m.Job).where(
                m.Job.state == "running", m.Job.lease_until.is_not(None), m.Job.lease_until <= now)) or 0
            queued = s.scalar(select(func.count()).select_from(m.Job).where(m.Job.state == "queued")) or 0
            last_cal = s.scalar(select(func.max(m.CalibrationSet.created_at))
                                .where(m.CalibrationSet.status == "active"))
        age_h = None if last_cal is None else max(0.0, (now - last_cal).total_seconds() / 3600)
        return {"leases": leases, "stale_leases": stale, "queued_jobs": queued, "cal_age_h": age_h,
                "paused": read_paused(self.db), "reprocess": self.queue.reprocess_progress()}

    # ---- jobs and provenance ------------------------------------------------
    def jobs_page(self, *, state: str | None = None, queue: str | None = None, limit: int = 50,
                            offset: int = 0, retrying: bool | None = None) -> tuple[list[Any], int]:
        """A page of jobs (newest first) and the total count matching the filter."""
        from engine.processing.queue import JobView

        with self.db.session() as s:
            q = select(m.Job)
            if state:
                q = q.where(m.Job.state == state)
            if queue:
                q = q.where(m.Job.queue == queue)
            if retrying is not None:
                q = q.where(m.Job.attempts > 0) if retrying else q.where(m.Job.attempts == 0)
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(m.Job.created_at.desc(), m.Job.id.desc()).limit(limit).offset(offset))
            return [JobView.of(j) for j in rows], total


    def group_detail(self, group_id: str) -> Any:
        """Stages with attempts and errors, state history, products and calibration of one group."""
        from engine.processing.group_detail import group_detail

        return group_detail(self.db, group_id)

    def group_provenance(self, group_id: str) -> dict[str, Any]:
        """What a job's provenance strip shows: MS, calibration, pointing, latest image and QA."""
        with self.db.session() as s:
            g = s.get(m.ObservationGroup, group_id)
            if g is None:
                return {}
            ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group_id))
            img = s.scalar(select(m.Image).where(m.Image.group_id == group_id).order_by(m.Image.created_at.desc()))
            cal_sets = list(ms.cal_sets_applied) if ms and ms.cal_sets_applied else []
            cal_table = None
            if cal_sets:
                t = s.scalar(select(m.CalibrationTable).join(m.CalibrationSet)
                             .where(m.CalibrationSet.name == str(cal_sets[0])).limit(1))
                cal_table = t.path if t else None
            return {"ms_path": ms.path if ms else None, "ra_deg": ms.phase_ra_deg if ms else None,
                    "dec_deg": ms.phase_dec_deg if ms else g.dec_deg, "cal_table": cal_table,
                    "image_id": img.id if img else None, "qa_grade": img.qa_grade if img else (ms.qa_grade if ms else None),
                    "qa_summary": img.qa_summary if img else (ms.qa_summary if ms else None)}


    def spawn_stage(self, group_id: str, job_type: str, priority: int | None, by: str) -> str:
        """Queue a stage for a group by hand; the stage's own start state is checked when it runs."""
        from engine.processing.queue import JobQueue

        with self.db.session() as s:
            if s.get(m.ObservationGroup, group_id) is None:
                raise KeyError(group_id)
            return JobQueue(self.db).enqueue(job_type, group_id=group_id, priority=priority or 100, created_by=by,
                                             session=s)


    def purge_jobs(self, states_: tuple[str, ...], before: datetime | None) -> int:
        from sqlalchemy import delete

        with self.db.session() as s:
            q = delete(m.Job).where(m.Job.state.in_(states_))
            if before is not None:
                q = q.where(m.Job.finished_at < before)
            return s.execute(q).rowcount or 0
