"""The Queue's reads and actions beyond job control: filtered keyset pages, priority, reprocessing, progress.

Groups are ordered newest first by ``(group_time, id)``. A page that continues a page
already on screen is read by keyset (``WHERE (group_time, id) < last``), so paging
through 100,000 groups costs the same at the end as at the start; only a jump (the
scrollbar, End) reads by offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.errors import ContimgError, StateError
from engine.processing import progress, states
from engine.services.area import AreaService

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
GROUP_TYPES = ("calibrator", "target")
#: Archive reprocessing runs below live data (targets 100, calibrators 10): live groups keep real time.
REPROCESS_PRIORITY = 500
#: The stage to run again → the resting state the group goes back to.
REPROCESS_FROM = {"convert": states.PENDING, "calibrate": states.CONVERTED, "image": states.CALIBRATED,
                  "measure": states.IMAGED}


class FilterError(ContimgError):
    """A Queue filter the operator typed could not be read (the message names the term)."""


@dataclass(frozen=True)
class QueueFilter:
    """What ``/`` filters by: states, calibrator or target, a time window, a group id prefix."""

    states: tuple[str, ...] = ()
    group_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    id_prefix: str | None = None
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str, now: datetime) -> QueueFilter:
        """``failed calibrator 6h``, ``state=failed,cancelled since=2026-11-29T00:00 id=2026-11-29T0``."""
        out = cls(text=text.strip())
        for term in text.split():
            key, eq, value = term.partition("=")
            if not eq:
                key, value = _bare_key(term), term
            key = key.lower()
            if key == "state":
                wanted = tuple(v for v in value.lower().split(",") if v)
                bad = [v for v in wanted if v not in states.ALL_STATES]
                if bad or not wanted:
                    raise FilterError(f"unknown state {', '.join(bad) or '(empty)'}; states: "
                                      + ", ".join(states.ALL_STATES))
                out = replace(out, states=out.states + wanted)
            elif key == "type":
                if value.lower() not in GROUP_TYPES:
                    raise FilterError(f"type must be calibrator or target, not {value!r}")
                out = replace(out, group_type=value.lower())
            elif key in ("since", "until"):
                out = replace(out, **{key: _when(value, now, key)})
            elif key == "id":
                out = replace(out, id_prefix=value)
            else:
                raise FilterError(f"unknown filter term {term!r}: use a state, calibrator/target, a window like 6h, "
                                  "or state= type= since= until= id=")
        if out.since and out.until and out.since >= out.until:
            raise FilterError("since must be before until")
        return out

    def describe(self) -> str:
        return self.text or "all groups"

    def apply(self, q: Any) -> Any:
        g = m.ObservationGroup
        if self.states:
            q = q.where(g.state.in_(self.states))
        if self.group_type is not None:
            q = q.where(g.is_calibrator.is_(self.group_type == "calibrator"))
        if self.since is not None:
            q = q.where(g.group_time >= self.since)
        if self.until is not None:
            q = q.where(g.group_time < self.until)
        if self.id_prefix:
            q = q.where(g.id.startswith(self.id_prefix, autoescape=True))
        return q


def _bare_key(term: str) -> str:
    low = term.lower()
    if low in states.ALL_STATES:
        return "state"
    if low in GROUP_TYPES:
        return "type"
    if _RELATIVE.match(low):
        return "since"
    return term


def _when(value: str, now: datetime, key: str) -> datetime:
    rel = _RELATIVE.match(value.lower())
    if rel:
        return now - timedelta(seconds=float(rel[1]) * _UNIT_S[rel[2]])
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{key}={value!r}: give an ISO time (2026-11-29T06:00) or an age (30m, 6h, 2d)") from None
    return t if t.tzinfo else t.replace(tzinfo=now.tzinfo)


@dataclass(frozen=True)
class QueueRow:
    """One group as the Queue lists it, with its running stage's own progress report."""

    id: str
    group_time: datetime
    state: str
    n_subbands: int
    dec_deg: float | None
    is_calibrator: bool
    calibrator_name: str | None
    state_changed_at: datetime
    error: str | None
    priority: int | None = None
    running: str | None = None  # the type of the job running now
    progress: progress.Progress | None = None


@dataclass(frozen=True)
class Window:
    """Rows ``offset … offset+len(rows)`` of the filtered, ordered groups, and how many there are."""

    offset: int
    rows: list[QueueRow]
    total: int


class QueueService(AreaService):
    """Reads for the virtualised Queue view, and the operator's priority and reprocess actions."""

    def parse_filter(self, text: str) -> QueueFilter:
        return QueueFilter.parse(text, self.now())

    def count(self, flt: QueueFilter | None = None) -> int:
        with self.db.session() as s:
            q = (flt or QueueFilter()).apply(select(func.count()).select_from(m.ObservationGroup))
            return int(s.scalar(q) or 0)

    def window(self, offset: int, limit: int, flt: QueueFilter | None = None, *,
               after: tuple[datetime, str] | None = None, before: tuple[datetime, str] | None = None,
               with_total: bool | None = None, total_hint: int = 0) -> Window:
        """``limit`` groups from ``offset``; ``after``/``before`` = the sort key of the row just above/below.

        A keyset continuation skips the count unless ``with_total``; a jump into the far half
        (``total_hint`` known) reads from the other end, so End costs what Home does.
        """
        flt = flt or QueueFilter()
        if with_total is None:
            with_total = after is None and before is None
        g = m.ObservationGroup
        with self.db.session() as s:
            q = flt.apply(select(g))
            if after is not None:
                t, gid = after
                q = q.where(or_(g.group_time < t, and_(g.group_time == t, g.id < gid)))
                q = q.order_by(g.group_time.desc(), g.id.desc()).limit(limit)
                groups = list(s.scalars(q))
            elif before is not None:
                t, gid = before
                q = q.where(or_(g.group_time > t, and_(g.group_time == t, g.id > gid)))
                q = q.order_by(g.group_time.asc(), g.id.asc()).limit(limit)
                groups = list(reversed(list(s.scalars(q))))
            elif total_hint and offset > total_hint // 2:
                from_end = max(0, total_hint - offset - limit)
                take = min(limit, max(0, total_hint - offset))
                q = q.order_by(g.group_time.asc(), g.id.asc()).offset(from_end).limit(take)
                groups = list(reversed(list(s.scalars(q))))
            else:
                q = q.order_by(g.group_time.desc(), g.id.desc()).offset(max(0, offset)).limit(limit)
                groups = list(s.scalars(q))
            active = self._active_jobs(s, [x.id for x in groups])
            rows = [QueueRow(x.id, x.group_time, x.state, x.n_subbands, x.dec_deg, x.is_calibrator,
                             x.calibrator_name, x.state_changed_at, x.error, *active.get(x.id, (None, None, None)))
                    for x in groups]
            total = int(s.scalar(flt.apply(select(func.count()).select_from(g))) or 0) if with_total else -1
        return Window(offset, rows, total)

    def _active_jobs(self, s: Session, group_ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """group → (priority of its queued/running job, type of a running one, its latest progress)."""
        if not group_ids:
            return {}
        jobs = list(s.scalars(select(m.Job).where(m.Job.group_id.in_(group_ids),
                                                  m.Job.state.in_(("queued", "running")))))
        out: dict[str, tuple[Any, ...]] = {}
        for j in jobs:
            if j.state == "running":
                out[j.group_id or ""] = (j.priority, j.type, self.job_progress(s, j.id))
            else:
                out.setdefault(j.group_id or "", (j.priority, None, None))
        return out

    def job_progress(self, s: Session, job_id: str, lines: int = 200) -> progress.Progress | None:
        rows = list(s.execute(select(m.JobLog.at, m.JobLog.message)
                              .where(m.JobLog.job_id == job_id, m.JobLog.level == progress.LEVEL)
                              .order_by(m.JobLog.id.desc()).limit(lines)))
        return progress.latest([(at, msg) for at, msg in reversed(rows)])

    # ---- actions ----------------------------------------------------------------
    def set_priority(self, group_id: str, priority: int, *, by: str) -> int:
        """Set the priority of the group's queued jobs (lower runs first); returns how many changed."""
        if not 0 <= priority <= 1000:
            raise ValueError(f"priority must be 0–1000 (lower runs first), not {priority}")
        with self.db.session() as s:
            jobs = list(s.scalars(select(m.Job).where(m.Job.group_id == group_id, m.Job.state == "queued")))
            if not jobs:
                raise StateError(f"group {group_id} has no queued job to reprioritise")
            for j in jobs:
                s.add(m.JobLog(job_id=j.id, message=f"priority {j.priority} → {priority} by {by}"))
                j.priority = priority
            return len(jobs)

    def reprocess_targets(self, group_id: str) -> list[tuple[str, str]]:
        """(resting state, the stage that runs from it) the group could be reprocessed from."""
        from engine.processing.pipeline import default_registry
        from engine.processing.transitions import furthest_resting

        registry = default_registry()
        with self.db.session() as s:
            group = s.get(m.ObservationGroup, group_id)
            if group is None:
                raise KeyError(group_id)
            furthest = furthest_resting(s, group_id)
            out = []
            for state in states.ORDER:
                if states.reprocess_allowed(group.state, state, furthest):
                    stage = registry.next_for(group, state)
                    if stage is not None:
                        out.append((state, stage.job_type))
            return out

    def reprocess(self, group_id: str, from_state: str, *, by: str, priority: int = 100) -> str:
        """Send the group back to ``from_state`` and queue the stage that runs from there; returns the job id."""
        from engine.processing.pipeline import default_registry
        from engine.processing.queue import JobQueue
        from engine.processing.transitions import reprocess

        registry = default_registry()
        with self.db.session() as s:
            busy = s.scalar(select(m.Job.id).where(m.Job.group_id == group_id,
                                                   m.Job.state.in_(("queued", "running"))))
            if busy:
                raise StateError(f"group {group_id} has job {busy} queued or running; cancel it first")
            left = reprocess(s, group_id, from_state, by=by)
            group = s.get_one(m.ObservationGroup, group_id)
            stage = registry.next_for(group, from_state)
            if stage is None:
                raise StateError(f"no installed stage runs from {from_state} for group {group_id}")
            job_id = JobQueue(self.db).enqueue(stage.job_type, group_id=group_id, priority=priority,
                                               max_attempts=self.settings.engine.max_attempts,
                                               created_by=by, session=s)
            s.add(m.JobLog(job_id=job_id, message=f"reprocess from {from_state} (was {left}) by {by}"))
            return job_id

    # ---- archive reprocessing (contimg reprocess, REST) -----------------------------
    def reprocess_range(self, since: datetime, until: datetime, stage: str, *, by: str,
                        priority: int = REPROCESS_PRIORITY, limit: int = 100_000) -> dict[str, Any]:
        """Send every group observed in [since, until) back to ``stage`` at a priority below live data.

        Groups a stage holds, groups with a queued job and groups that never reached the stage
        are skipped, each with its reason. Returns {"queued": {group: job}, "skipped": {group: why}}.
        """
        if stage not in REPROCESS_FROM:
            raise ValueError(f"stage must be one of {', '.join(REPROCESS_FROM)}, not {stage!r}")
        if since >= until:
            raise ValueError("--from must be before --to")
        g = m.ObservationGroup
        with self.db.session() as s:
            ids = list(s.scalars(select(g.id).where(g.group_time >= since, g.group_time < until)
                                 .order_by(g.group_time).limit(limit)))
        queued, skipped = {}, {}
        for gid in ids:
            try:
                queued[gid] = self.reprocess(gid, REPROCESS_FROM[stage], by=f"reprocess:{by}"[:64],
                                             priority=priority)
            except (ContimgError, KeyError) as exc:
                skipped[gid] = str(exc)
        return {"queued": queued, "skipped": skipped}

    def reprocess_progress(self) -> dict[str, int]:
        """Jobs queued by archive reprocessing, by state (what the console and REST show)."""
        with self.db.session() as s:
            rows = s.execute(select(m.Job.state, func.count()).where(m.Job.created_by.startswith("reprocess:"))
                             .group_by(m.Job.state))
            return {state: int(n) for state, n in rows}
