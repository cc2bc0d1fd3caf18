"""The Queue's service: filters that name bad terms, keyset pages equal to offset pages, reprocess rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from engine.db import Database
from engine.db import models as m
from engine.errors import StateError
from engine.processing import states
from engine.services import Services
from engine.services.queue import FilterError, QueueFilter
from tui_helpers import FIXED_NOW, settings_for

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def services(db: Database) -> Services:
    return Services(db, settings_for(db), clock=lambda: FIXED_NOW)


def test_filter_terms_and_their_errors() -> None:
    f = QueueFilter.parse("failed cancelled calibrator 6h", FIXED_NOW)
    assert f.states == ("failed", "cancelled") and f.group_type == "calibrator"
    assert f.since == FIXED_NOW - timedelta(hours=6)
    f = QueueFilter.parse("state=imaging,imaged since=2026-11-29T06:00 until=2026-11-29T09:00 id=2026-11-29T0",
                          FIXED_NOW)
    assert f.states == ("imaging", "imaged") and f.since == datetime(2026, 11, 29, 6, tzinfo=UTC)
    assert f.id_prefix == "2026-11-29T0"
    for text, message in (("state=done", "unknown state done"), ("type=pulsar", "calibrator or target"),
                          ("since=yesterday", "ISO time"), ("fialed", "unknown filter term 'fialed'"),
                          ("since=2026-11-29T09:00 until=2026-11-29T08:00", "since must be before until")):
        with pytest.raises(FilterError, match=message):
            QueueFilter.parse(text, FIXED_NOW)


def test_keyset_pages_equal_offset_pages_and_filters_apply(db: Database) -> None:
    t0 = FIXED_NOW - timedelta(days=10)
    with db.session() as s:
        # equal times on purpose: the id breaks the tie in both directions
        s.execute(insert(m.ObservationGroup), [
            {"id": f"g{i:04d}", "group_time": t0 + timedelta(seconds=600 * (i // 2)), "n_subbands": 16,
             "state": "failed" if i % 7 == 0 else "complete", "is_calibrator": i % 5 == 0,
             "state_changed_at": t0, "created_at": t0, "updated_at": t0} for i in range(1000)])
    q = services(db).queue
    everything = [r.id for r in q.window(0, 1000).rows]
    assert everything == sorted(everything, reverse=True) and len(everything) == 1000
    first = q.window(0, 100)
    nxt = q.window(100, 100, after=(first.rows[-1].group_time, first.rows[-1].id))
    assert [r.id for r in nxt.rows] == everything[100:200]
    prev = q.window(0, 100, before=(nxt.rows[0].group_time, nxt.rows[0].id))
    assert [r.id for r in prev.rows] == everything[:100]
    assert nxt.total == -1 and prev.total == -1  # continuations skip the count
    # a jump into the far half reads from the other end: the same rows
    assert [r.id for r in q.window(900, 100, total_hint=1000).rows] == everything[900:]
    assert [r.id for r in q.window(950, 100, total_hint=1000).rows] == everything[950:]
    assert [r.id for r in q.window(601, 37, total_hint=1000).rows] == everything[601:638]
    flt = q.parse_filter("failed calibrator")
    win = q.window(0, 1000, flt)
    assert win.total == len([i for i in range(1000) if i % 35 == 0]) == len(win.rows)
    assert all(r.state == "failed" and r.is_calibrator for r in win.rows)


def test_reprocess_only_back_along_what_the_group_reached() -> None:
    assert states.reprocess_allowed("complete", "calibrated", "complete")
    assert states.reprocess_allowed("failed", "converted", "converted")
    assert not states.reprocess_allowed("failed", "calibrated", "converted")  # never past what was reached
    assert not states.reprocess_allowed("imaging", "pending", "calibrated")  # a stage holds it
    assert not states.reprocess_allowed("complete", "complete", "complete")


def test_reprocess_refuses_with_a_busy_group_and_names_the_job(db: Database) -> None:
    from engine.processing.queue import JobQueue

    with db.session() as s:
        s.add(m.ObservationGroup(id="g", group_time=FIXED_NOW, state="converted", n_subbands=16))
        s.add(m.StateTransition(group_id="g", from_state="converting", to_state="converted"))
    job = JobQueue(db).enqueue("calibrate", group_id="g")
    with pytest.raises(StateError, match=f"job {job} queued or running"):
        services(db).queue.reprocess("g", "pending", by="t")
    with pytest.raises(StateError, match="no queued job"):
        services(db).queue.set_priority("nope", 5, by="t")
    with pytest.raises(ValueError, match="0–1000"):
        services(db).queue.set_priority("g", 5000, by="t")


def test_reprocess_a_time_range_below_live_priority(db: Database) -> None:
    from engine.processing.queue import JobQueue
    from engine.processing.transitions import transition

    t0 = FIXED_NOW - timedelta(days=2)
    with db.session() as s:
        for i in range(4):
            s.add(m.ObservationGroup(id=f"g{i}", group_time=t0 + timedelta(hours=i), state="pending", n_subbands=16))
    for gid in ("g0", "g1", "g3"):
        with db.session() as s:
            for a, b in (("pending", "converting"), ("converting", "converted"), ("converted", "calibrating"),
                         ("calibrating", "calibrated"), ("calibrated", "imaging"), ("imaging", "imaged"),
                         ("imaged", "measuring"), ("measuring", "complete")):
                transition(s, gid, a, b)
    JobQueue(db).enqueue("measure", group_id="g1")  # busy: skipped with its reason
    q = services(db).queue
    res = q.reprocess_range(t0, t0 + timedelta(hours=3), "image", by="ops")
    assert list(res["queued"]) == ["g0"]
    assert "queued or running" in res["skipped"]["g1"] and "has reached pending" in res["skipped"]["g2"]
    with db.session() as s:
        job = s.get_one(m.Job, res["queued"]["g0"])
        assert (job.type, job.priority, job.created_by) == ("image", 500, "reprocess:ops")
        assert s.get_one(m.ObservationGroup, "g0").state == "calibrated"
        assert s.get_one(m.ObservationGroup, "g3").state == "complete"  # outside the window
    assert q.reprocess_progress() == {"queued": 1}
    assert services(db).console_summary()["reprocess"] == {"queued": 1}
    with pytest.raises(ValueError, match="stage must be one of"):
        q.reprocess_range(t0, t0 + timedelta(hours=1), "dance", by="ops")
