"""An operator's hand on the registry: retire a set, reinstate it, ask for a re-solve.

The registry only ever uses ``active`` sets that passed QA (``Registry.usable``), so
retiring is the way to stop a bad solution being applied, and reinstating undoes it.
Every change is kept in ``calibration_set_events`` with who, when and why (the row's
``status_reason`` holds the latest reason for everything that lists sets). Functions
run in the caller's session, so the change and its record commit together.

A re-solve runs the ``solve`` stage of the set's calibrator group again. That stage
starts from ``converted``, so the group is sent back there by the state machine's one
way back (an operator's reprocess, audited like every transition) — never while a job
holds it — and goes on through imaging again after the solve. :func:`resolve_plan`
says whether that can happen now and what exactly it will do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.errors import ContimgError
from engine.processing import states

RETIRED = "retired"
REINSTATED = "reinstated"
RESOLVE_REQUESTED = "resolve_requested"

#: The job type of the stage that solves a calibrator group (``engine.processing.stage_calibrate.SOLVE``).
SOLVE_JOB = "solve"


class LifecycleError(ContimgError):
    """The set cannot make this change (wrong status, tables gone, group not re-solvable)."""


@dataclass(frozen=True)
class ResolvePlan:
    """Whether a set can be re-solved through the queue, and what exactly would happen."""

    possible: bool
    group_id: str | None
    group_state: str | None
    explanation: str


def get_set(s: Session, set_id: int) -> m.CalibrationSet:
    cs = s.get(m.CalibrationSet, set_id)
    if cs is None:
        raise LifecycleError(f"calibration set {set_id} is no longer registered (re-solved or removed?)")
    return cs


def _record(s: Session, cs: m.CalibrationSet, action: str, old: str | None, new: str | None, reason: str,
            by: str, at: datetime, job_id: str | None = None) -> m.CalibrationSetEvent:
    ev = m.CalibrationSetEvent(set_name=cs.name, action=action, from_status=old, to_status=new, reason=reason,
                               by=by[:64], at=at, job_id=job_id)
    s.add(ev)
    return ev


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise LifecycleError("a reason is required (it is kept with the set for whoever looks next)")
    return text


def retire(s: Session, set_id: int, reason: str, by: str, at: datetime) -> m.CalibrationSet:
    """Stop the registry choosing an active set; the reason, who and when are kept."""
    cs = get_set(s, set_id)
    text = _reason(reason)
    if cs.status != "active":
        raise LifecycleError(f"{cs.name} is {cs.status}, not active: nothing to retire")
    _record(s, cs, RETIRED, cs.status, RETIRED, text, by, at)
    cs.status, cs.status_reason = RETIRED, f"retired by {by} at {at:%Y-%m-%d %H:%M} UTC: {text}"
    return cs


def missing_tables(cs: m.CalibrationSet) -> list[str]:
    """What keeps a set from being applied: a bandpass or gain table unrecorded or gone from disk."""
    paths = {t.table_type: t.path for t in cs.tables}
    out = [f"no {kind} table recorded" for kind in ("bandpass", "gain") if kind not in paths]
    out += [f"{kind} table missing on disk: {p}" for kind, p in sorted(paths.items())
            if kind in ("bandpass", "gain") and not os.path.isdir(p)]
    return out


def reinstate(s: Session, set_id: int, reason: str, by: str, at: datetime) -> m.CalibrationSet:
    """Make a retired set active again, if it passed QA and its tables are still on disk."""
    cs = get_set(s, set_id)
    text = _reason(reason)
    if cs.status != RETIRED:
        raise LifecycleError(f"{cs.name} is {cs.status}; only a retired set can be reinstated"
                             + (" (it failed QA: re-solve it instead)" if cs.status == "rejected" else ""))
    if not cs.qa_passed:
        raise LifecycleError(f"{cs.name} failed QA; the registry never uses it, so it cannot be reinstated")
    gone = missing_tables(cs)
    if gone:
        raise LifecycleError(f"{cs.name} cannot be applied again: " + "; ".join(gone))
    _record(s, cs, REINSTATED, cs.status, "active", text, by, at)
    cs.status, cs.status_reason = "active", f"reinstated by {by} at {at:%Y-%m-%d %H:%M} UTC: {text}"
    return cs


def overlapping_active(s: Session, cs: m.CalibrationSet, cfg: Any) -> list[str]:
    """Other active sets of the same calibrator and transit (the registry's overlap rule)."""
    v = cfg.validity_h / 24.0
    tol = cfg.dec_tolerance_deg
    rows = s.scalars(select(m.CalibrationSet.name).where(
        m.CalibrationSet.id != cs.id, m.CalibrationSet.status == "active",
        m.CalibrationSet.calibrator_name == cs.calibrator_name,
        m.CalibrationSet.mid_mjd > cs.mid_mjd - v, m.CalibrationSet.mid_mjd < cs.mid_mjd + v,
        m.CalibrationSet.dec_deg >= cs.dec_deg - tol, m.CalibrationSet.dec_deg <= cs.dec_deg + tol))
    return list(rows)


def events(s: Session, name: str) -> list[m.CalibrationSetEvent]:
    return list(s.scalars(select(m.CalibrationSetEvent).where(m.CalibrationSetEvent.set_name == name)
                          .order_by(m.CalibrationSetEvent.at, m.CalibrationSetEvent.id)))


def _busy(s: Session, group_id: str) -> m.Job | None:
    return s.scalar(select(m.Job).where(m.Job.group_id == group_id, m.Job.state.in_(("queued", "running")))
                    .order_by(m.Job.created_at).limit(1))


def resolve_plan(s: Session, cs: m.CalibrationSet) -> ResolvePlan:
    """Can this set's calibrator group be solved again through the queue, and what would that do?"""
    from engine.processing.transitions import furthest_resting

    if cs.group_id is None:
        return ResolvePlan(False, None, None,
                           f"{cs.name} was not solved by the pipeline from a group (registered by hand from "
                           f"{cs.source_ms_path}); solve it again with `contimg calibrate --register "
                           f"{cs.source_ms_path}`")
    g = s.get(m.ObservationGroup, cs.group_id)
    if g is None:
        return ResolvePlan(False, cs.group_id, None, f"group {cs.group_id} is no longer registered")
    if not g.is_calibrator:
        return ResolvePlan(False, g.id, g.state, f"group {g.id} is not marked as a calibrator transit")
    job = _busy(s, g.id)
    if job is not None:
        return ResolvePlan(False, g.id, g.state, f"group {g.id} has its {job.type} job {job.state} ({job.id[:8]}); "
                                                 "wait for it, or cancel it from the Queue, then re-solve")
    if not states.reprocess_allowed(g.state, states.CONVERTED, furthest_resting(s, g.id)):
        return ResolvePlan(False, g.id, g.state, f"group {g.id} is {g.state} and has never been converted: "
                                                 "there is no MS to solve yet")
    replaces = ("the new solve replaces this set's tables and record (same name); if it fails QA the set "
                "becomes rejected and the registry uses other sets; targets already calibrated keep what "
                "was applied to them")
    if g.state == states.CONVERTED:
        what = f"group {g.id} is converted: a solve job is queued"
    elif g.state in (states.FAILED, states.CANCELLED):
        what = f"group {g.id} is {g.state}; it returns to converted and a solve job is queued"
    else:
        what = (f"group {g.id} is {g.state}; it goes back to converted and is solved again, then imaged "
                "and measured again like a new transit")
    return ResolvePlan(True, g.id, g.state, f"{what}; {replaces}")


def request_resolve(db: Any, s: Session, set_id: int, by: str, at: datetime, *, priority: int,
                    max_attempts: int) -> str:
    """Queue the solve stage for the set's calibrator group (see :func:`resolve_plan`); returns the job id.

    Runs in the caller's session ``s`` of ``db``: the group's return to ``converted`` (the
    state machine's operator reprocess), the job and the event commit together or not at all."""
    from engine.processing.queue import JobQueue
    from engine.processing.transitions import reprocess

    cs = get_set(s, set_id)
    plan = resolve_plan(s, cs)
    if not plan.possible:
        raise LifecycleError(plan.explanation)
    assert plan.group_id is not None
    if plan.group_state != states.CONVERTED:
        reprocess(s, plan.group_id, states.CONVERTED, by=f"{by} (re-solve of {cs.name})")
    job_id = JobQueue(db).enqueue(SOLVE_JOB, group_id=plan.group_id, priority=priority, max_attempts=max_attempts,
                                  created_by=by[:64], session=s)
    _record(s, cs, RESOLVE_REQUESTED, cs.status, None, plan.explanation, by, at, job_id=job_id)
    return job_id
