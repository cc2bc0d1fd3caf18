"""The one processing state machine of an observation group (and its MS).

Targets:      pending → converting → converted → calibrating → calibrated → imaging → imaged → measuring → complete
Calibrators:  converted → solving → calibrated (then as targets)
A target observed before its calibrator transit waits in ``waiting_for_calibration``
and goes on to ``calibrating`` when a set registers. Any non-terminal state may go to
``failed`` or ``cancelled``; an operator retry returns a failed/cancelled group to the
resting state it last completed; a lost lease returns a working state to the resting
state it started from. Nothing else is allowed, so no stage can be skipped. The one
way back is an operator's *reprocess* (:func:`reprocess_allowed`): from a resting or
terminal state to an earlier resting state the group has already reached, audited
like any other transition.
"""

from __future__ import annotations

PENDING = "pending"
CONVERTING = "converting"
CONVERTED = "converted"
SOLVING = "solving"
CALIBRATING = "calibrating"
CALIBRATED = "calibrated"
IMAGING = "imaging"
IMAGED = "imaged"
MEASURING = "measuring"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"
WAITING = "waiting_for_calibration"

RESTING = (PENDING, CONVERTED, CALIBRATED, IMAGED, COMPLETE)
WORKING = {CONVERTING: PENDING, SOLVING: CONVERTED, CALIBRATING: CONVERTED, IMAGING: CALIBRATED, MEASURING: IMAGED}
TERMINAL = (COMPLETE, FAILED, CANCELLED)
ALL_STATES = (PENDING, CONVERTING, CONVERTED, SOLVING, CALIBRATING, CALIBRATED, IMAGING, IMAGED, MEASURING,
              COMPLETE, FAILED, CANCELLED, WAITING)

_FORWARD: dict[str, set[str]] = {
    PENDING: {CONVERTING},
    CONVERTING: {CONVERTED},
    CONVERTED: {CALIBRATING, SOLVING, WAITING},
    WAITING: {CALIBRATING},
    SOLVING: {CALIBRATED},
    CALIBRATING: {CALIBRATED},
    CALIBRATED: {IMAGING},
    IMAGING: {IMAGED},
    IMAGED: {MEASURING},
    MEASURING: {COMPLETE},
}


def allowed(src: str, dst: str) -> bool:
    """Whether ``src → dst`` is a legal transition (see module docstring)."""
    if src not in ALL_STATES or dst not in ALL_STATES:
        return False
    if dst in _FORWARD.get(src, set()):
        return True
    if dst in (FAILED, CANCELLED) and src not in TERMINAL:
        return True
    if WORKING.get(src) == dst:  # lease lost / released: back to where the stage started
        return True
    if src == WAITING and dst == CONVERTED:
        return True
    if src in (FAILED, CANCELLED) and dst in (PENDING, CONVERTED, CALIBRATED, IMAGED):
        return True  # operator retry from the last completed resting state
    return False


def resting_before(state: str) -> str:
    """The resting state from which the work in ``state`` started."""
    return WORKING.get(state, state)


#: Resting states in pipeline order: a reprocess may only go back along this line.
ORDER = (PENDING, CONVERTED, CALIBRATED, IMAGED, COMPLETE)


def reprocess_allowed(src: str, dst: str, furthest: str) -> bool:
    """Whether an operator may send a group in ``src`` back to ``dst``, having reached ``furthest``.

    Never from a working state (a stage holds the group), never forward, never past
    what the group has reached (a stage cannot be skipped), never to ``complete``.
    """
    if src in WORKING or src not in ALL_STATES or dst not in ORDER or dst == COMPLETE:
        return False
    return furthest in ORDER and ORDER.index(dst) <= ORDER.index(furthest)
