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


def furthest_resting(s: Session, group_id: str) -> str:
    """The furthest resting state (in pipeline order) the group has ever reached."""
    reached = set(s.scalars(select(m.StateTransition.to_state).where(m.StateTransition.group_id == group_id)))
    group = s.get(m.ObservationGroup, group_id)
    if group is not None:
        reached.add(group.state)
    best = states.PENDING
    for state in states.ORDER:
        if state in reached:
            best = state
    return best


def reprocess(s: Session, group_id: str, to_state: str, *, by: str) -> str:
    """Send a group back to ``to_state`` (an operator's reprocess); returns the state it left."""
    group = s.get(m.ObservationGroup, group_id, populate_existing=True)
    if group is None:
        raise StateError(f"group {group_id} does not exist")
    old = group.state
    furthest = furthest_resting(s, group_id)
    if not states.reprocess_allowed(old, to_state, furthest):
        if group.state in states.WORKING:
            raise StateError(f"group {group_id} is {group.state}: a stage holds it; cancel it first")
        raise StateError(f"group {group_id} is {group.state} and has reached {furthest}; it can be reprocessed "
                         f"from {', '.join(x for x in states.ORDER[:states.ORDER.index(furthest) + 1] if x != states.COMPLETE)}"
                         f", not from {to_state}")
    res = s.execute(update(m.ObservationGroup)
                    .where(m.ObservationGroup.id == group_id, m.ObservationGroup.state == old)
                    .values(state=to_state, state_changed_at=now(), updated_at=now(), error=None))
    if res.rowcount != 1:
        raise StateError(f"group {group_id} changed state while being reprocessed; try again")
    s.add(m.StateTransition(group_id=group_id, from_state=old, to_state=to_state,
                            reason=f"reprocess from {to_state} by {by}"))
    return old
