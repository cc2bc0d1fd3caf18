"""The async engine with real stages in a real process pool: success, retries, failures, recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import database_of

from engine import events
from engine.db import Database
from engine.db import models as m
from engine.processing import states
from engine.processing.engine import backoff_s, classify
from engine.processing.queue import JobQueue, now
from engine.errors import PermanentStageError, TransientStageError
from engine.services import PipelineControl
from engine_helpers import fast_settings, group_states, make_engine, run_until, seed_groups
from stagefuncs import product_ok, registry_of

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def _db(settings) -> Database:  # type: ignore[no-untyped-def]
    return database_of(settings)  # SQLite, or the test's PostgreSQL database (both_backends)


async def test_groups_flow_through_every_stage(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    db = _db(settings)
    ids = seed_groups(db, 4, calibrators=1)
    engine, bus = make_engine(settings, db, registry_of("ok_stage"))
    sub = bus.subscribe("job.*")
    await engine.start()
    try:
        await run_until(db, lambda: set(group_states(db).values()) == {states.COMPLETE})
    finally:
        await engine.stop()
    for gid in ids:
        for stage in ("convert", "calibrate", "image", "measure"):
            assert product_ok(settings.data_dir / "products" / f"{gid}.{stage}")
    with db.session() as s:
        for gid in ids:
            trail = [t.to_state for t in s.scalars(select(m.StateTransition).where(
                m.StateTransition.group_id == gid).order_by(m.StateTransition.id))]
            assert trail == ["converting", "converted", "calibrating", "calibrated", "imaging", "imaged",
                             "measuring", "complete"]
        assert s.scalar(select(func.count()).select_from(m.Job).where(m.Job.state != "succeeded")) == 0
        assert s.scalar(select(func.count()).select_from(m.JobLog)) >= 16 * 2  # started/finished per job
    seen = []
    while not sub.queue.empty():
        seen.append(sub.queue.get_nowait()["type"])
    assert seen.count(events.JOB_SUCCEEDED) == 16 and seen.count(events.JOB_STARTED) == 16


async def test_stage_workers_run_below_the_console_priority(tmp_path: Path) -> None:
    import os

    settings = fast_settings(tmp_path, worker_nice=7)
    db = _db(settings)
    seed_groups(db, 1)
    engine, _ = make_engine(settings, db, registry_of("nice_stage", stages=1))
    base = os.nice(0)
    await engine.start()
    try:
        await run_until(db, lambda: set(group_states(db).values()) == {states.CONVERTED})
    finally:
        await engine.stop()
    with db.session() as s:
        assert s.scalar(select(m.Job.outcome))["nice"] == min(19, base + 7)
    assert os.nice(0) == base  # the console's own process keeps its priority


async def test_pipeline_stops_at_last_installed_stage(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    db = _db(settings)
    seed_groups(db, 2)
    engine, _ = make_engine(settings, db, registry_of("ok_stage", stages=1))
    await engine.start()
    try:
        await run_until(db, lambda: set(group_states(db).values()) == {states.CONVERTED})
        await asyncio.sleep(0.5)
        assert set(group_states(db).values()) == {states.CONVERTED}  # no fake "complete"
    finally:
        await engine.stop()


async def test_transient_failures_are_retried_until_done(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_attempts=12)
    db = _db(settings)
    seed_groups(db, 6)
    engine, _ = make_engine(settings, db, registry_of("flaky_stage", p_fail=0.3))
    await engine.start()
    try:
        await run_until(db, lambda: set(group_states(db).values()) == {states.COMPLETE}, timeout=120)
    finally:
        await engine.stop()
    with db.session() as s:
        attempts = [j.attempts for j in s.scalars(select(m.Job))]
        assert all(j.state == "succeeded" for j in s.scalars(select(m.Job)))
        retried = [a for a in attempts if a > 1]
        assert retried, "with p_fail=0.3 over 24 jobs some must have been retried"
        back = s.scalars(select(m.StateTransition).where(m.StateTransition.reason.like("attempt % failed%"))).all()
        assert len(back) == sum(a - 1 for a in attempts)


async def test_permanent_failure_fails_at_once_with_reason(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    engine, bus = make_engine(settings, db, registry_of("permanent_stage"))
    sub = bus.subscribe(events.JOB_FAILED)
    await engine.start()
    try:
        await run_until(db, lambda: group_states(db)[gid] == states.FAILED)
    finally:
        await engine.stop()
    with db.session() as s:
        job = s.scalars(select(m.Job)).one()
        group = s.get_one(m.ObservationGroup, gid)
    assert job.state == "failed" and job.attempts == 1 and job.error_kind == "permanent"
    assert "header checksum mismatch" in job.error and "header checksum mismatch" in group.error
    event = await asyncio.wait_for(sub.get(), 1)
    assert event["job_id"] == job.id and event["kind"] == "permanent"

    # the operator retries it from the dead-letter view: the group resumes where it was
    control = PipelineControl(db)
    assert [j.id for j in control.failed_jobs()] == [job.id]
    control.retry(job.id, by="ana")
    with db.session() as s:
        assert s.get_one(m.ObservationGroup, gid).state == states.PENDING
        assert s.get_one(m.Job, job.id).state == "queued"


async def test_expired_lease_is_recovered(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    queue = JobQueue(db)
    from engine.processing.transitions import transition

    job_id = queue.enqueue("convert", group_id=gid)
    claimed = queue.claim("dead-worker", ["convert"], lease_s=0.01)
    assert claimed is not None and claimed.id == job_id
    with db.session() as s:
        transition(s, gid, states.PENDING, states.CONVERTING, worker="dead-worker")
    await asyncio.sleep(0.05)
    engine, _ = make_engine(settings, db, registry_of("ok_stage"))
    await engine.start()  # recovery at start-up
    try:
        await run_until(db, lambda: group_states(db)[gid] == states.COMPLETE)
    finally:
        await engine.stop()
    with db.session() as s:
        reasons = [t.reason for t in s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == gid))]
    assert any("lease held by dead-worker expired" in (r or "") for r in reasons)


async def test_pause_resume_and_cancel(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    db = _db(settings)
    a, b = seed_groups(db, 2)
    control = PipelineControl(db)
    control.set_paused(True)
    engine, _ = make_engine(settings, db, registry_of("ok_stage"))
    await engine.start()
    try:
        await asyncio.sleep(0.5)
        assert set(group_states(db).values()) == {states.PENDING}
        assert engine.paused
        queued = {j.group_id: j.id for j in control.list_jobs(state="queued")}
        control.cancel(queued[b], by="ana")
        control.set_paused(False)
        await run_until(db, lambda: group_states(db)[a] == states.COMPLETE)
        assert group_states(db)[b] == states.CANCELLED
    finally:
        await engine.stop()


async def test_graceful_shutdown_releases_running_jobs(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, shutdown_grace_s=0.3)
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    engine, _ = make_engine(settings, db, registry_of("sleepy_stage", sleep=30))
    await engine.start()
    await run_until(db, lambda: group_states(db)[gid] == states.CONVERTING)
    await engine.stop()
    with db.session() as s:
        job = s.scalars(select(m.Job)).one()
        assert job.state == "queued" and job.claimed_by is None and job.attempts == 0
        assert s.get_one(m.ObservationGroup, gid).state == states.PENDING


def test_error_classification_and_backoff() -> None:
    assert classify(PermanentStageError("x")) == "permanent"
    assert classify(TransientStageError("x")) == "transient"
    assert classify(OSError("disk")) == "transient"
    delays = [backoff_s(n, 30, 300) for n in range(1, 8)]
    assert 30 <= delays[0] <= 45 and all(d <= 300 for d in delays) and delays[4] >= 240


def test_claim_is_exclusive(db: Database) -> None:
    queue = JobQueue(db)
    seed_groups(db, 1)
    queue.enqueue("convert", params={"x": 1})
    first = queue.claim("w1", ["convert"], 60)
    assert first is not None and first.attempts == 1
    assert queue.claim("w2", ["convert"], 60) is None
    assert not queue.heartbeat(first.id, "w2", 60)
    assert queue.heartbeat(first.id, "w1", 60)
    later = queue.enqueue("convert", run_after=now() + timedelta(hours=1))
    assert queue.claim("w2", ["convert"], 60) is None and queue.get(later).state == "queued"


async def test_waiting_for_calibration_then_resumed(tmp_path: Path) -> None:
    from stagefuncs import gated_registry

    settings = fast_settings(tmp_path)
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    engine, bus = make_engine(settings, db, gated_registry())
    await engine.start()
    try:
        await run_until(db, lambda: group_states(db)[gid] == states.WAITING)
        await asyncio.sleep(0.5)
        assert group_states(db)[gid] == states.WAITING  # rechecks are an hour away: it stays parked
        with db.session() as s:
            job = s.scalar(select(m.Job).where(m.Job.type == "calibrate"))
            assert job.state == "queued" and job.attempts == 0 and job.error_kind == "waiting"
            s.add(m.KeyValue(key="test.calibrated", value={}))
        bus.publish(events.CALIBRATION_REGISTERED, set="x")  # a set registered: waiting targets resume now
        await run_until(db, lambda: group_states(db)[gid] == states.CALIBRATED, timeout=10)
    finally:
        await engine.stop()
    with db.session() as s:
        trail = [t.to_state for t in s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == gid)
                                               .order_by(m.StateTransition.id))]
    assert trail == ["converting", "converted", "waiting_for_calibration", "calibrating", "calibrated"]


async def test_waiting_past_deadline_fails_with_reason(tmp_path: Path) -> None:
    from stagefuncs import gated_registry

    settings = fast_settings(tmp_path)
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    engine, bus = make_engine(settings, db, gated_registry(deadline_s=0.5))
    await engine.start()
    try:
        await run_until(db, lambda: group_states(db)[gid] == states.WAITING)
        await asyncio.sleep(0.6)
        bus.publish(events.CALIBRATION_REGISTERED, set="unrelated")  # recheck now: still nothing, deadline passed
        await run_until(db, lambda: group_states(db)[gid] == states.FAILED, timeout=10)
    finally:
        await engine.stop()
    with db.session() as s:
        group = s.get_one(m.ObservationGroup, gid)
    assert "gave up waiting" in group.error and "no calibration set yet" in group.error
