"""Reclaiming running jobs whose holder died: an interruption is not a failure.

A job is *interrupted* when the process that held it is gone: the runtime was killed
(found at the next start or by a peer's recovery loop), or its pool worker died under
it (``BrokenProcessPool``). The job did nothing wrong, so it goes back to the queue
with a short backoff and its attempt is given back; only its ``interruptions`` count
grows. The poison-pill guard: a job interrupted ``max_interruptions`` times while other
jobs went on finishing is the likely cause (it crashes its worker, exhausts memory),
and fails with a reason that says so. A lease that merely expired while its holder
still lives (a stuck worker) keeps the old rule and spends an attempt.

A holder is gone when its worker row says it stopped, when it ran on this host and
its pid no longer exists, or when it has not been seen for longer than a lease.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.db import writers_lock
from engine.processing import states
from engine.processing.queue import FAILED, QUEUED, RUNNING, now
from engine.processing.stages import StageRegistry
from engine.processing.transitions import transition

INTERRUPTED = "interrupted"  # error_kind of a job given back after an interruption
POISON = "poison"  # error_kind of a job failed by the poison-pill guard
LEASE = "lease"  # error_kind of a job whose lease expired under a live holder


@dataclass
class RecoveryReport:
    """What one recovery pass found: for the log, the status line and ``contimg status``."""

    requeued: list[str] = field(default_factory=list)  # interrupted, back in the queue, no attempt spent
    failed: list[str] = field(default_factory=list)  # poison pills, or leases expired with attempts spent
    expired: list[str] = field(default_factory=list)  # leases expired under a live holder, retried

    @property
    def reclaimed(self) -> int:
        return len(self.requeued) + len(self.failed) + len(self.expired)

    def short(self) -> str:
        """For the status line: ``reclaimed 3 leases: 2 requeued, 1 failed``."""
        bits = [f"{len(x)} {w}" for x, w in ((self.requeued, "requeued"), (self.expired, "retried"),
                                             (self.failed, "failed")) if x]
        return f"reclaimed {self.reclaimed} lease{'s' if self.reclaimed != 1 else ''}: " + ", ".join(bits)

    def describe(self) -> str:
        parts = [f"reclaimed {self.reclaimed} lease(s)"]
        if self.requeued:
            parts.append(f"{len(self.requeued)} interrupted job(s) requeued without spending an attempt")
        if self.expired:
            parts.append(f"{len(self.expired)} expired under a live holder, retried")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a pid of 0 or less never does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(s: Session, holder: str | None, me: str, lease_s: float, at: datetime) -> str | None:
    """Why the process holding a lease is known to be gone, or None if it may still be working."""
    if not holder:
        return "no holder recorded"
    if holder == me:
        return None
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    worker = s.get(m.Worker, holder)
    if worker is not None and worker.stopped_at is not None:
        return f"its worker {holder} stopped at {worker.stopped_at:%H:%M:%S}"
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid != os.getpid() and not pid_alive(pid):
            return f"its process {pid} on {host} no longer exists"
    if worker is not None and worker.last_seen is not None and worker.last_seen < at - timedelta(seconds=lease_s):
        return f"its worker {holder} has not been seen since {worker.last_seen:%H:%M:%S}"
    return None


def _others_finished_since(s: Session, job: m.Job, since: datetime) -> int:
    return int(s.scalar(select(func.count()).select_from(m.Job).where(
        m.Job.id != job.id, m.Job.finished_at.is_not(None), m.Job.finished_at >= since)) or 0)


def _first_interruption(s: Session, job_id: str) -> datetime | None:
    return s.scalar(select(func.min(m.JobLog.at)).where(m.JobLog.job_id == job_id,
                                                        m.JobLog.message.startswith("interrupted")))


def interrupt(s: Session, job: m.Job, registry: StageRegistry, settings: Any, reason: str,
              report: RecoveryReport, *, counts: bool = True) -> None:
    """Give an interrupted running job back (or fail it as a poison pill), inside the caller's transaction.

    ``counts=False``: the job is collateral (another job's worker died and took the pool
    with it), so it is requeued without moving towards the poison-pill limit.
    """
    cfg = settings.engine
    t = now()
    if counts:
        job.interruptions = (job.interruptions or 0) + 1
    job.attempts = max(0, job.attempts - 1)  # the claim counted an attempt the job never got to finish
    n, limit = job.interruptions, cfg.max_interruptions
    what = f"interrupted ({n} of {limit})" if counts else "interrupted (collateral, not counted)"
    s.add(m.JobLog(job_id=job.id, level="WARNING", message=f"{what}: {reason}"))
    s.flush()
    first = _first_interruption(s, job.id) or t
    group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
    stage = registry.get(job.type)
    working = group is not None and stage is not None and group.state == stage.working
    holder, job.claimed_by, job.lease_until = job.claimed_by, None, None
    if counts and n >= limit and _others_finished_since(s, job, first):
        message = (f"interrupted {n} times while running (last: {reason}) while other jobs finished: "
                   "it likely crashes its worker (memory? a crash in the stage?); see its log")
        job.state, job.finished_at, job.error, job.error_kind = FAILED, t, message, POISON
        if working:
            transition(s, group.id, stage.working, states.FAILED, reason=message, error=message,  # type: ignore[union-attr]
                       worker=holder, attempt=job.attempts, job_id=job.id)
        report.failed.append(job.id)
        return
    delay = min(cfg.retry_max_s, cfg.interrupt_backoff_s * 2 ** max(0, n - 1))
    job.state, job.run_after = QUEUED, t + timedelta(seconds=delay)
    job.error, job.error_kind = f"interrupted: {reason}", INTERRUPTED
    if working:
        transition(s, group.id, stage.working, stage.start, reason=f"interrupted: {reason}",  # type: ignore[union-attr]
                   worker=holder, attempt=job.attempts, job_id=job.id)
    report.requeued.append(job.id)


def recover(db: Any, registry: StageRegistry, settings: Any, me: str) -> RecoveryReport:
    """One pass over running jobs: interrupted ones back to the queue, expired leases by the old rule."""
    cfg = settings.engine
    report = RecoveryReport()
    t = now()
    with db.session() as s:
        writers_lock(s, "recover")  # hosts sharing a PostgreSQL job table recover one at a time
        for job in list(s.scalars(select(m.Job).where(m.Job.state == RUNNING, or_(
                m.Job.lease_until < t, m.Job.claimed_by != me, m.Job.claimed_by.is_(None))))):
            gone = holder_gone(s, job.claimed_by, me, cfg.lease_s, t)
            if gone is not None:
                interrupt(s, job, registry, settings, f"lease holder gone: {gone}", report)
            elif job.lease_until is not None and job.lease_until < t:
                _expire(s, job, registry, report)
    return report


def _expire(s: Session, job: m.Job, registry: StageRegistry, report: RecoveryReport) -> None:
    """A lease that ran out under a holder that may still live: the attempt is spent (it may be stuck)."""
    spent = job.attempts >= job.max_attempts
    reason = f"lease held by {job.claimed_by} expired"
    group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
    stage = registry.get(job.type)
    if group is not None and stage is not None and group.state == stage.working:
        target = states.FAILED if spent else stage.start
        transition(s, group.id, stage.working, target, reason=reason, worker=job.claimed_by,
                   attempt=job.attempts, job_id=job.id,
                   error=f"{reason} after {job.attempts} attempts" if spent else None)
    job.claimed_by, job.lease_until = None, None
    if spent:
        job.state, job.finished_at = FAILED, now()
        job.error, job.error_kind = f"{reason} after {job.attempts} attempts", LEASE
        report.failed.append(job.id)
    else:
        job.state, job.run_after, job.error, job.error_kind = QUEUED, now(), reason, LEASE
        report.expired.append(job.id)


def reconcile(db: Any, enqueue_next: Any) -> int:
    """Queue the next stage of every group resting without a job (crash between commits, new stage)."""
    count = 0
    with db.session() as s:
        writers_lock(s, "reconcile")  # one host at a time: the second sees the jobs the first queued
        busy = select(m.Job.group_id).where(m.Job.state.in_((QUEUED, RUNNING)), m.Job.group_id.is_not(None))
        resting = s.scalars(select(m.ObservationGroup).where(
            m.ObservationGroup.state.in_(states.RESTING), m.ObservationGroup.state != states.COMPLETE,
            m.ObservationGroup.ingest_status == "ready",
            m.ObservationGroup.id.not_in(busy)))
        for group in resting:
            if enqueue_next(s, group, group.state):
                count += 1
    return count


def worker_pid(s: Session, job_id: str) -> int | None:
    """The pid of the pool process that last ran the job (its WORKER job-log line)."""
    from engine.processing.joblog import WORKER_LEVEL

    text = s.scalar(select(m.JobLog.message).where(m.JobLog.job_id == job_id, m.JobLog.level == WORKER_LEVEL)
                    .order_by(m.JobLog.id.desc()).limit(1))
    return int(text) if text and text.isdigit() else None
