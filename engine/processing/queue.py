"""The job queue in the database (SQLite or PostgreSQL): claims with leases, attempts, backoff and outcomes.

The ``jobs`` table is the system of record. A claim is one ``UPDATE … RETURNING``
on the best ready row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so hosts claiming at
once take different rows), so two workers can never hold the same job; a lease expires
by itself when a worker dies, and ``recover_expired`` puts such jobs back (or fails
them once their attempts are spent). Group state changes ride in the same
transaction as the job change they belong to (see ``engine.processing.transitions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from engine.db import Database
from engine.db import models as m
from engine.errors import StateError

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobView:
    """A job as plain data (for the TUI, REST and the engine)."""

    id: str
    type: str
    queue: str
    group_id: str | None
    params: dict[str, Any]
    priority: int
    state: str
    run_after: datetime
    attempts: int
    max_attempts: int
    claimed_by: str | None
    lease_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: dict[str, Any] | None
    error: str | None
    error_kind: str | None
    created_by: str | None

    @classmethod
    def of(cls, j: m.Job) -> JobView:
        return cls(j.id, j.type, j.queue, j.group_id, dict(j.params or {}), j.priority, j.state, j.run_after,
                   j.attempts, j.max_attempts, j.claimed_by, j.lease_until, j.created_at, j.started_at,
                   j.finished_at, j.outcome, j.error, j.error_kind, j.created_by)


class JobQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- producing ------------------------------------------------------
    def enqueue(self, type_: str, *, group_id: str | None = None, params: dict[str, Any] | None = None,
                priority: int = 100, run_after: datetime | None = None, max_attempts: int = 3,
                created_by: str | None = None, dedupe: bool = True, session: Session | None = None) -> str:
        """Add a job; with ``dedupe`` an identical queued/running job for the group is returned instead."""
        def _do(s: Session) -> str:
            if dedupe and group_id is not None:
                existing = s.scalar(select(m.Job.id).where(
                    m.Job.type == type_, m.Job.group_id == group_id, m.Job.state.in_((QUEUED, RUNNING))))
                if existing:
                    return existing
            job = m.Job(type=type_, group_id=group_id, params=params or {}, priority=priority,
                        run_after=run_after or now(), max_attempts=max_attempts, created_by=created_by)
            s.add(job)
            s.flush()
            return job.id
        if session is not None:
            return _do(session)
        with self.db.session() as s:
            return _do(s)

    # ---- consuming ------------------------------------------------------
    def claim(self, worker: str, types: list[str], lease_s: float) -> JobView | None:
        """Atomically take the best ready job of one of ``types`` (lowest priority value first)."""
        if not types:
            return None
        t = now()
        with self.db.session() as s:
            best = (select(m.Job.id)
                    .where(m.Job.state == QUEUED, m.Job.run_after <= t, m.Job.type.in_(types))
                    .order_by(m.Job.priority, m.Job.run_after, m.Job.created_at)
                    .limit(1)
                    # PostgreSQL: a row another host is claiming right now is skipped, not waited for
                    # (under READ COMMITTED the loser would re-check the row and claim nothing);
                    # SQLite, one writer at a time, renders no FOR UPDATE at all.
                    .with_for_update(skip_locked=True)
                    .scalar_subquery())
            row = s.execute(
                update(m.Job)
                .where(m.Job.id == best, m.Job.state == QUEUED)
                .values(state=RUNNING, claimed_by=worker, lease_until=t + timedelta(seconds=lease_s),
                        heartbeat_at=t, attempts=m.Job.attempts + 1, started_at=t, error=None, error_kind=None)
                .returning(m.Job.id)
            ).first()
            if row is None:
                return None
            return JobView.of(s.get_one(m.Job, row[0]))

    def heartbeat(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend the lease; False means the lease is gone (recovered, cancelled) and work must stop."""
        t = now()
        with self.db.session() as s:
            res = s.execute(update(m.Job).where(m.Job.id == job_id, m.Job.claimed_by == worker,
                                                m.Job.state == RUNNING)
                            .values(lease_until=t + timedelta(seconds=lease_s), heartbeat_at=t))
            return res.rowcount == 1

    def finish(self, s: Session, job_id: str, worker: str, state: str, *, outcome: dict[str, Any] | None = None,
               error: str | None = None, error_kind: str | None = None, retry_at: datetime | None = None) -> None:
        """Close a running job inside the caller's transaction (CAS on the lease holder)."""
        values: dict[str, Any] = {"claimed_by": None, "lease_until": None, "outcome": outcome, "error": error,
                                  "error_kind": error_kind}
        if retry_at is not None:
            values.update(state=QUEUED, run_after=retry_at)
        else:
            values.update(state=state, finished_at=now())
        res = s.execute(update(m.Job).where(m.Job.id == job_id, m.Job.claimed_by == worker, m.Job.state == RUNNING)
                        .values(**values))
        if res.rowcount != 1:
            raise StateError(f"job {job_id} is no longer held by {worker}")

    def release(self, job_id: str, worker: str, reason: str) -> bool:
        """Give a running job back without spending an attempt (graceful shutdown)."""
        with self.db.session() as s:
            res = s.execute(update(m.Job).where(m.Job.id == job_id, m.Job.claimed_by == worker,
                                                m.Job.state == RUNNING)
                            .values(state=QUEUED, claimed_by=None, lease_until=None,
                                    attempts=case((m.Job.attempts > 0, m.Job.attempts - 1), else_=0),
                                    error=reason, error_kind="released"))
            return res.rowcount == 1

    def expired(self, s: Session) -> list[m.Job]:
        return list(s.scalars(select(m.Job).where(m.Job.state == RUNNING, m.Job.lease_until < now())))

    # ---- operator actions ----------------------------------------------
    def cancel(self, job_id: str) -> JobView:
        with self.db.session() as s:
            job = s.get(m.Job, job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state not in (QUEUED, RUNNING):
                raise StateError(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
            job.state, job.finished_at, job.claimed_by, job.lease_until = CANCELLED, now(), None, None
            job.error = job.error or "cancelled by operator"
            return JobView.of(job)

    # ---- reading ----------------------------------------------------------
    def get(self, job_id: str) -> JobView | None:
        with self.db.session() as s:
            job = s.get(m.Job, job_id)
            return JobView.of(job) if job else None

    def list(self, *, state: str | None = None, type_: str | None = None, group_id: str | None = None,
             limit: int = 100, before: tuple[datetime, str] | None = None) -> list[JobView]:
        """Newest first, keyset-paginated by (created_at, id) so deep pages stay fast."""
        with self.db.session() as s:
            q = select(m.Job).order_by(m.Job.created_at.desc(), m.Job.id.desc()).limit(limit)
            if state:
                q = q.where(m.Job.state == state)
            if type_:
                q = q.where(m.Job.type == type_)
            if group_id:
                q = q.where(m.Job.group_id == group_id)
            if before is not None:
                ts, last_id = before
                q = q.where(or_(m.Job.created_at < ts, and_(m.Job.created_at == ts, m.Job.id < last_id)))
            return [JobView.of(j) for j in s.scalars(q)]

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            return {st: n for st, n in s.execute(select(m.Job.state, func.count()).group_by(m.Job.state))}

    def leases_held(self) -> list[JobView]:
        with self.db.session() as s:
            return [JobView.of(j) for j in s.scalars(select(m.Job).where(m.Job.state == RUNNING))]

    # ---- logs -------------------------------------------------------------
    def append_log(self, job_id: str, message: str, level: str = "INFO") -> None:
        with self.db.session() as s:
            s.add(m.JobLog(job_id=job_id, message=message, level=level))

    def log_tail(self, job_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = (select(m.JobLog).where(m.JobLog.job_id == job_id, m.JobLog.id > after_id)
                 .order_by(m.JobLog.id).limit(limit))
            return [{"id": r.id, "at": r.at, "level": r.level, "message": r.message} for r in s.scalars(q)]


def new_id_bulk(n: int) -> list[str]:
    """Job ids for bulk inserts (same form as the ORM default)."""
    return [m.new_id() for _ in range(n)]
