"""Property tests of the group state machine against a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from conftest import BACKENDS
from engine.db import Database
from engine.db import models as m
from engine.errors import StateError
from engine.processing import states
from engine.processing.transitions import transition

ORDER = [states.PENDING, states.CONVERTED, states.CALIBRATED, states.IMAGED, states.COMPLETE]


@pytest.fixture(scope="module", params=BACKENDS)
def sm_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One database per backend for the whole property test (its examples use fresh group ids)."""
    if request.param == "sqlite":
        db = Database(Path(tmp_path_factory.mktemp("sm")) / "sm.sqlite3")
        db.upgrade()
        yield db
        db.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = server.fresh_database("sm")
    db = Database(server.url(name))
    yield db
    db.dispose()
    server.drop_database(name)


_counter = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(targets=st.lists(st.sampled_from(states.ALL_STATES + ("bogus",)), min_size=1, max_size=40))
def test_random_operations_never_reach_undefined_states_or_skip(sm_db: Database, targets: list[str]) -> None:
    gid = f"g{next(_counter)}"
    with sm_db.session() as s:
        s.add(m.ObservationGroup(id=gid, group_time=datetime(2026, 1, 1, tzinfo=UTC)))
    current = states.PENDING
    for target in targets:
        try:
            with sm_db.session() as s:
                transition(s, gid, current, target, reason="property test")
        except StateError:
            pass  # refused: the state must be unchanged (checked below)
        else:
            assert states.allowed(current, target)
            current = target
        with sm_db.session() as s:
            assert s.get_one(m.ObservationGroup, gid).state == current
    with sm_db.session() as s:
        trail = [(t.from_state, t.to_state) for t in s.scalars(
            select(m.StateTransition).where(m.StateTransition.group_id == gid).order_by(m.StateTransition.id))]
    # contiguous audit trail
    prev = states.PENDING
    for src, dst in trail:
        assert src == prev and dst in states.ALL_STATES
        prev = dst
    # no stage skipped: a resting state is reached only after the one before it
    reached: set[str] = {states.PENDING}
    for _, dst in trail:
        if dst in ORDER:
            assert ORDER[ORDER.index(dst) - 1] in reached or dst == states.PENDING, trail
            reached.add(dst)


@pytest.mark.both_backends
def test_cas_rejects_stale_expectation(db: Database) -> None:
    with db.session() as s:
        s.add(m.ObservationGroup(id="g", group_time=datetime(2026, 1, 1, tzinfo=UTC)))
    with db.session() as s:
        transition(s, "g", states.PENDING, states.CONVERTING)
    with pytest.raises(StateError, match="expected state pending, found converting"):
        with db.session() as s:
            transition(s, "g", states.PENDING, states.CONVERTING)
    with pytest.raises(StateError, match="not allowed"):
        with db.session() as s:
            transition(s, "g", states.CONVERTING, states.IMAGING)


def test_calibrator_path_and_waiting() -> None:
    assert states.allowed(states.CONVERTED, states.SOLVING)
    assert states.allowed(states.SOLVING, states.CALIBRATED)
    assert states.allowed(states.CONVERTED, states.WAITING)
    assert states.allowed(states.WAITING, states.CALIBRATING)
    assert not states.allowed(states.WAITING, states.CALIBRATED)
    assert not states.allowed(states.PENDING, states.CONVERTED)
    assert not states.allowed(states.COMPLETE, states.FAILED)
