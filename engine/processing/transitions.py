"""Compare-and-set state changes of a group, audited in ``state_transitions``."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.errors import StateError
from engine.processing import states
from engine.processing.queue import now


def transition(s: Session, group_id: str, expected: str, new: str, *, reason: str | None = None,
               worker: str | None = None, attempt: int = 0, job_id: str | None = None,
               error: str | None = None) -> None:
    """Move ``group_id`` from ``expected`` to ``new`` or raise StateError; runs in the caller's transaction."""
    if not states.allowed(expected, new):
        raise StateError(f"transition {expected} → {new} is not allowed")
    if expected in (states.FAILED, states.CANCELLED):
        resume = last_resting(s, group_id)
        if new != resume:
            raise StateError(f"group {group_id} can only resume from {resume}, its last completed state")
    values: dict[str, object] = {"state": new, "state_changed_at": now(), "updated_at": now()}
    if new == states.FAILED:
        values["error"] = error or reason
    elif new in states.RESTING or new in states.WORKING:
        values["error"] = None
    res = s.execute(update(m.ObservationGroup)
                    .where(m.ObservationGroup.id == group_id, m.ObservationGroup.state == expected)
                    .values(**values))
    if res.rowcount != 1:
        current = s.get(m.ObservationGroup, group_id, populate_existing=True)
        actual = current.state if current else "missing"
        raise StateError(f"group {group_id}: expected state {expected}, found {actual}")
    s.add(m.StateTransition(group_id=group_id, from_state=expected, to_state=new, attempt=attempt, worker=worker,
                            job_id=job_id, reason=reason))


def last_resting(s: Session, group_id: str) -> str:
    """The last resting state the group reached (where a retry resumes)."""
    rows = s.execute(select(m.StateTransition.to_state).where(m.StateTransition.group_id == group_id)
                     .order_by(m.StateTransition.id.desc()))
    for (to_state,) in rows:
        if to_state in states.RESTING and to_state != states.COMPLETE:
            return to_state
    return states.PENDING
