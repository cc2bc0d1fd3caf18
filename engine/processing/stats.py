"""Queue, worker and per-stage statistics for dashboards (plain data, computed in SQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from engine.db import Database
from engine.db import models as m

# Our job types under the names the dashboard's task-queue pages use.
STAGE_NAMES = {
    "convert": "convert-uvh5-to-ms",
    "solve": "calibration-solve",
    "calibrate": "calibration-apply",
    "image": "imaging",
    "measure": "photometry",
    "backup": "backup",
    "export": "export",
}
DASHBOARD_STAGES = ("convert-uvh5-to-ms", "calibration-solve", "calibration-apply", "imaging", "validation",
                    "crossmatch", "photometry", "catalog-setup", "organize-files")
WORKER_STALE_S = 120


def task_name(job_type: str) -> str:
    return STAGE_NAMES.get(job_type, job_type)


def job_type_of(task: str) -> str:
    for jt, name in STAGE_NAMES.items():
        if name == task:
            return jt
    return task


def queue_counts(db: Database, queue: str | None = None) -> dict[str, int]:
    with db.session() as s:
        q = select(m.Job.state, func.count()).group_by(m.Job.state)
        if queue:
            q = q.where(m.Job.queue == queue)
        return {state: n for state, n in s.execute(q)}


def queue_names(db: Database) -> list[str]:
    with db.session() as s:
        return sorted(s.scalars(select(m.Job.queue).distinct()))


def stage_counts(db: Database) -> dict[str, dict[str, int]]:
    """Per dashboard stage name: pending/running/completed/failed job counts."""
    out: dict[str, dict[str, int]] = {}
    with db.session() as s:
        for jtype, state, n in s.execute(select(m.Job.type, m.Job.state, func.count())
                                         .group_by(m.Job.type, m.Job.state)):
            key = {"queued": "pending", "running": "running", "succeeded": "completed"}.get(state, "failed")
            stage = out.setdefault(task_name(jtype), {"pending": 0, "running": 0, "completed": 0, "failed": 0})
            stage[key] += n
    return out


def workers(db: Database, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    with db.session() as s:
        rows = list(s.scalars(select(m.Worker).order_by(m.Worker.started_at.desc())))
        out = []
        for w in rows:
            age = (now - w.last_seen).total_seconds()
            if w.stopped_at is None and age > WORKER_STALE_S:
                # never said goodbye and stopped being seen: the process died
                state = "crashed" if w.current_job_id else "stale"
            elif w.stopped_at is not None:
                state = "idle"
            else:
                state = "active" if w.current_job_id else "idle"
            out.append({"worker_id": w.id, "state": state, "task_count": w.task_count,
                        "current_task_id": w.current_job_id, "first_seen": w.started_at, "last_seen": w.last_seen,
                        "uptime_seconds": max(0.0, ((w.stopped_at or now) - w.started_at).total_seconds()),
                        "stopped": w.stopped_at is not None})
        return out


def throughput(db: Database, now: datetime | None = None) -> dict[str, Any]:
    """Completions, failures and durations over recent windows."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {}
    with db.session() as s:
        for label, minutes in (("1min", 1), ("5min", 5), ("15min", 15), ("1h", 60)):
            since = now - timedelta(minutes=minutes)
            ok, bad = s.execute(select(
                func.coalesce(func.sum(case((m.Job.state == "succeeded", 1), else_=0)), 0),
                func.coalesce(func.sum(case((m.Job.state == "failed", 1), else_=0)), 0),
            ).where(m.Job.finished_at >= since)).one()
            out[label] = {"completed": int(ok), "failed": int(bad)}
        durations = [(f - st).total_seconds() for st, f in s.execute(
            select(m.Job.started_at, m.Job.finished_at).where(m.Job.state == "succeeded",
                                                               m.Job.finished_at >= now - timedelta(hours=24),
                                                               m.Job.started_at.is_not(None)))]
        waits = [(st - c).total_seconds() for c, st in s.execute(
            select(m.Job.created_at, m.Job.started_at).where(m.Job.started_at >= now - timedelta(hours=24)))]
    out["durations_s"] = sorted(durations)
    out["waits_s"] = sorted(waits)
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    idx = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return float(values[idx])
