"""Operator actions on jobs and groups, through the database the engine reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.db import Database
from engine.db import models as m


class PipelineControl:
    """Operator actions on jobs and groups: retry, cancel, requeue, pause/resume, job logs.

    Everything goes through the database, so the TUI, REST and CLI act the same way
    whether or not the engine runs in this process; the engine notices within one poll.
    """

    def __init__(self, db: Database) -> None:
        from engine.processing.queue import JobQueue

        self.db = db
        self.queue = JobQueue(db)

    def list_jobs(self, **filters: Any) -> list[Any]:
        return self.queue.list(**filters)

    def get_job(self, job_id: str) -> Any:
        return self.queue.get(job_id)

    def job_log(self, job_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        return self.queue.log_tail(job_id, after_id, limit)

    def failed_jobs(self, limit: int = 200) -> list[Any]:
        return self.queue.list(state="failed", limit=limit)

    def set_paused(self, paused: bool) -> None:
        from engine.processing.pause import write_paused

        write_paused(self.db, paused)

    def is_paused(self) -> bool:
        from engine.processing.pause import read_paused

        return read_paused(self.db)

    def retry(self, job_id: str, by: str = "operator") -> Any:
        """Put a failed or cancelled job back in the queue with fresh attempts; its group resumes."""
        from engine.errors import StateError
        from engine.processing import states
        from engine.processing.queue import JobView, now
        from engine.processing.transitions import last_resting, transition

        with self.db.session() as s:
            job = s.get(m.Job, job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state not in ("failed", "cancelled"):
                raise StateError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried")
            group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
            if group is not None and group.state in (states.FAILED, states.CANCELLED):
                resume = last_resting(s, group.id)
                transition(s, group.id, group.state, resume, reason=f"retried by {by}", job_id=job.id)
            job.state, job.attempts, job.interruptions, job.run_after = "queued", 0, 0, now()
            job.finished_at, job.error, job.error_kind = None, None, None
            s.add(m.JobLog(job_id=job.id, message=f"retried by {by}"))
            s.flush()
            return JobView.of(job)

    def failed_ids(self, reason: str = "interrupted", limit: int = 10_000) -> list[str]:
        """Failed jobs, oldest first; ``interrupted``: only those failed by crashes of their holder."""
        from engine.processing.recovery import LEASE, POISON

        if reason not in ("interrupted", "any"):
            raise ValueError(f"reason must be interrupted or any, not {reason!r}")
        with self.db.session() as s:
            q = select(m.Job.id).where(m.Job.state == "failed").order_by(m.Job.finished_at).limit(limit)
            if reason == "interrupted":
                q = q.where(m.Job.error_kind.in_((POISON, LEASE)))
            return list(s.scalars(q))

    def retry_failed(self, reason: str = "interrupted", by: str = "operator", limit: int = 10_000) -> dict[str, Any]:
        """Retry failed jobs in bulk: ``interrupted`` = those failed only by their holders dying
        (the poison-pill guard, or leases spent by crashes), not by an error of their own; ``any`` = all.
        Returns {"retried": [...], "skipped": {job_id: why}}."""
        retried, skipped = [], {}
        for job_id in self.failed_ids(reason, limit):
            try:
                self.retry(job_id, by=by)
                retried.append(job_id)
            except Exception as exc:  # noqa: BLE001 - each job says why it was not retried
                skipped[job_id] = str(exc)
        return {"retried": retried, "skipped": skipped}

    def cancel(self, job_id: str, by: str = "operator") -> Any:
        """Cancel a queued or running job and its group's processing."""
        from engine.processing import states
        from engine.processing.queue import JobView, now
        from engine.processing.transitions import transition
        from engine.errors import StateError

        with self.db.session() as s:
            job = s.get(m.Job, job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state not in ("queued", "running"):
                raise StateError(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
            group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
            if group is not None and group.state not in states.TERMINAL:
                transition(s, group.id, group.state, states.CANCELLED, reason=f"cancelled by {by}", job_id=job.id)
            job.state, job.finished_at, job.claimed_by, job.lease_until = "cancelled", now(), None, None
            job.error = f"cancelled by {by}"
            s.add(m.JobLog(job_id=job.id, message=f"cancelled by {by}"))
            s.flush()
            return JobView.of(job)
