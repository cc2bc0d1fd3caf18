"""Issue 20: a job whose holder died is interrupted, not failed; a job that kills its worker is a poison pill."""

from __future__ import annotations

import socket
import subprocess
import sys

from sqlalchemy import select

import pytest

from conftest import contimg_cmd, database_of
from engine.db import Database
from engine.db import models as m
from engine.processing import states
from engine.processing.queue import JobQueue
from engine.processing.transitions import transition
from engine.services import PipelineControl
from engine_helpers import fast_settings, group_states, make_engine, run_until, seed_groups
from stagefuncs import registry_of

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _db(settings) -> Database:  # type: ignore[no-untyped-def]
    return database_of(settings)  # SQLite, or the test's PostgreSQL database (both_backends)


async def test_a_dead_holder_interrupts_the_job_without_spending_an_attempt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = fast_settings(tmp_path, lease_s=600)  # the lease is far from expired: the holder's death is enough
    db = _db(settings)
    (gid,) = seed_groups(db, 1)
    queue = JobQueue(db)
    job_id = queue.enqueue("convert", group_id=gid, max_attempts=1)
    holder = f"{socket.gethostname()}:{dead_pid()}:1"
    assert queue.claim(holder, ["convert"], lease_s=600).id == job_id
    with db.session() as s:
        transition(s, gid, states.PENDING, states.CONVERTING, worker=holder)
    engine, _ = make_engine(settings, db, registry_of("ok_stage"))
    await engine.start()
    try:
        assert engine.startup_recovery is not None and engine.startup_recovery.requeued == [job_id]
        assert engine.startup_recovery.short() == "reclaimed 1 lease: 1 requeued"
        await run_until(db, lambda: group_states(db)[gid] == states.COMPLETE)
    finally:
        await engine.stop()
    job = queue.get(job_id)
    with db.session() as s:
        row = s.get_one(m.Job, job_id)
        assert (row.state, row.attempts, row.interruptions) == ("succeeded", 1, 1)  # max_attempts 1 was enough
        reasons = [t.reason or "" for t in s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == gid))]
        logs = [x.message for x in s.scalars(select(m.JobLog).where(m.JobLog.job_id == job_id))]
    assert job.state == "succeeded"
    assert any(r.startswith("interrupted: lease holder gone: its process") and "no longer exists" in r for r in reasons)
    assert any(x.startswith("interrupted (1 of 5)") for x in logs)


async def test_a_stage_that_kills_its_worker_is_failed_as_a_poison_pill_and_the_rest_complete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = fast_settings(tmp_path, max_interruptions=3, interrupt_backoff_s=0.05, workers=2)
    db = _db(settings)
    ids = seed_groups(db, 4)
    poison = ids[1]
    engine, _ = make_engine(settings, db, registry_of("killer_stage", stages=2, poison=poison))
    await engine.start()
    try:
        await run_until(db, lambda: sorted(group_states(db).values())
                        == [states.CALIBRATED] * 3 + [states.FAILED], timeout=120)
    finally:
        await engine.stop()
    with db.session() as s:
        job = s.scalars(select(m.Job).where(m.Job.group_id == poison)).one()
        group = s.get_one(m.ObservationGroup, poison)
    assert (job.state, job.error_kind, job.interruptions, job.attempts) == ("failed", "poison", 3, 0)
    assert "interrupted 3 times while running" in job.error and "crashes its worker" in job.error
    assert "its worker process" in job.error and "died (exit code -9)" in job.error
    assert group.error == job.error
    # a bulk retry of interrupted failures picks it up (and leaves real errors alone)
    control = PipelineControl(db)
    assert control.failed_ids("interrupted") == [job.id]
    assert control.retry_failed("interrupted", by="test")["retried"] == [job.id]
    with db.session() as s:
        again = s.get_one(m.Job, job.id)
        assert (again.state, again.attempts, again.interruptions) == ("queued", 0, 0)
        assert s.get_one(m.ObservationGroup, poison).state == states.PENDING


def test_cli_retries_only_the_interrupted_failures(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    db = _db(settings)
    a, b = seed_groups(db, 2)
    queue = JobQueue(db)
    for gid, kind, error in ((a, "poison", "interrupted 5 times while running"),
                             (b, "permanent", "header checksum mismatch")):
        jid = queue.enqueue("convert", group_id=gid)
        queue.claim("w", ["convert"], 60)
        with db.session() as s:
            transition(s, gid, states.PENDING, states.CONVERTING)
            transition(s, gid, states.CONVERTING, states.FAILED, error=error)
            queue.finish(s, jid, "w", "failed", error=error, error_kind=kind)
    out = subprocess.run(contimg_cmd("--data-dir", str(settings.data_dir), "retry", "--failed", "--reason",
                                     "interrupted"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "retried 1 failed job(s) that failed only through interruptions" in out.stdout
    assert group_states(db) == {a: states.PENDING, b: states.FAILED}
    out = subprocess.run(contimg_cmd("--data-dir", str(settings.data_dir), "retry"), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "give job ids, or --failed" in out.stderr


async def test_the_status_line_says_what_start_up_reclaimed(db: Database) -> None:
    from textual.widgets import Static

    from tui_helpers import FIXED_STATUS, make_app, settle

    app = make_app(db)
    app._status = lambda: {**FIXED_STATUS, "startup_recovery": "reclaimed 2 leases: 2 requeued"}
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "start-up: reclaimed 2 leases: 2 requeued" in str(app.screen.query_one("#status", Static).render())
