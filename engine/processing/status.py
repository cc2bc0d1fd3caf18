"""``contimg status``: what the database says, whether or not a server is running."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.processing.pause import PAUSE_KEY
from engine.processing.queue import FAILED, RUNNING


def pipeline_status(db: Database, failed_limit: int = 50) -> dict[str, Any]:
    with db.session() as s:
        groups = {k: n for k, n in s.execute(select(m.ObservationGroup.state, func.count())
                                             .group_by(m.ObservationGroup.state))}
        jobs = {k: n for k, n in s.execute(select(m.Job.state, func.count()).group_by(m.Job.state))}
        leases = [{"id": j.id, "type": j.type, "group_id": j.group_id, "claimed_by": j.claimed_by,
                   "lease_until": j.lease_until} for j in s.scalars(select(m.Job).where(m.Job.state == RUNNING))]
        failed = [{"id": j.id, "type": j.type, "group_id": j.group_id, "attempts": j.attempts, "error": j.error,
                   "error_kind": j.error_kind, "interruptions": j.interruptions, "finished_at": j.finished_at}
                  for j in s.scalars(select(m.Job).where(m.Job.state == FAILED)
                                     .order_by(m.Job.finished_at.desc()).limit(failed_limit))]
        interrupted = s.scalar(select(func.count()).select_from(m.Job).where(m.Job.interruptions > 0,
                                                                             m.Job.state != FAILED)) or 0
        kv = s.get(m.KeyValue, PAUSE_KEY)
        paused = bool(kv and kv.value.get("paused"))
    return {"paused": paused, "groups": groups, "jobs": jobs, "leases": leases, "failed": failed,
            "interrupted_not_failed": interrupted}
