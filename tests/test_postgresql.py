"""The second database: what differs between SQLite and PostgreSQL, on a real server (conftest's pg_server).

Concurrent claims, the workers' job-log path, SQL that had a SQLite-only form, the clear errors of a bad or
unreachable database, and the SQLite-file features that refuse a PostgreSQL database and say what to use.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from conftest import contimg_cmd, free_port
from engine.db import Database
from engine.db import models as m
from engine.db.database import DatabaseError, SqliteOnlyError
from engine.processing import joblog, progress
from engine.processing.queue import JobQueue

T0 = datetime(2026, 11, 29, 8, tzinfo=UTC)


@pytest.mark.both_backends
def test_concurrent_claims_take_every_job_exactly_once(db: Database, backend: str) -> None:
    """Four claimers at once (threads, each its own connection): no job is claimed twice and none is left.
    On PostgreSQL the claim's FOR UPDATE SKIP LOCKED lets them take different rows in parallel."""
    assert db.dialect == backend
    queue = JobQueue(db)
    ids = {queue.enqueue("convert", params={"n": i}) for i in range(120)}
    claimed: dict[str, list[str]] = {f"w{k}": [] for k in range(4)}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(worker: str) -> None:
        try:
            start.wait()
            while (job := queue.claim(worker, ["convert"], 60)) is not None:
                claimed[worker].append(job.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(w,)) for w in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    every = [j for js in claimed.values() for j in js]
    assert len(every) == len(set(every)) == 120 and set(every) == ids
    with db.session() as s:  # each row says who holds it, and that one worker listed it
        for job in s.scalars(select(m.Job)):
            assert job.state == "running" and job.attempts == 1 and job.id in claimed[job.claimed_by]


@pytest.mark.both_backends
def test_release_gives_the_attempt_back_but_never_below_zero(db: Database) -> None:
    queue = JobQueue(db)
    jid = queue.enqueue("convert")
    job = queue.claim("w", ["convert"], 60)
    assert job is not None and job.attempts == 1
    assert queue.release(jid, "w", "shutdown")
    assert queue.get(jid).attempts == 0 and queue.get(jid).state == "queued"
    with db.session() as s:  # a row that somehow has 0 attempts while running stays at 0
        s.execute(text("UPDATE jobs SET state = 'running', claimed_by = 'w', attempts = 0 WHERE id = :i"), {"i": jid})
    assert queue.release(jid, "w", "shutdown") and queue.get(jid).attempts == 0


@pytest.mark.both_backends
def test_worker_job_log_lines_land_through_the_database_url(db: Database) -> None:
    """What a pool worker does: joblog.capture on the database's URL (psycopg on PostgreSQL, sqlite3 on
    SQLite); a level wider than the column is cut to fit, timestamps read back as UTC."""
    job_id = JobQueue(db).enqueue("convert")
    with joblog.capture(db.url, job_id) as logger:
        joblog.mark_worker()
        logger.info("hello from the worker")
        progress.report("write", 1000, 1000, "rows")
        joblog._handler.write("VERYLONGLEVEL", "wide level")  # type: ignore[union-attr]
    with db.session() as s:
        rows = list(s.scalars(select(m.JobLog).where(m.JobLog.job_id == job_id).order_by(m.JobLog.id)))
    assert [(r.level, r.message) for r in rows][1:] == [("INFO", "hello from the worker"),
                                                         (progress.LEVEL, "write: 1000/1000 rows"),
                                                         ("VERYLONG" if db.dialect == "postgresql" else
                                                          "VERYLONGLEVEL", "wide level")]
    assert rows[0].level == joblog.WORKER_LEVEL and rows[0].message.isdigit()
    assert all(r.at.tzinfo is not None and abs((r.at - datetime.now(UTC)).total_seconds()) < 60 for r in rows)


def test_worker_job_log_reconnects_after_the_server_dropped_it(pg_server) -> None:  # type: ignore[no-untyped-def]
    name = pg_server.fresh_database("joblog")
    db = Database(pg_server.url(name))
    try:
        job_id = JobQueue(db).enqueue("convert")
        with joblog.capture(db.url, job_id) as logger:
            logger.info("before")
            with db.engine.begin() as c:  # what a server restart or an idle-session timeout does to it
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = 'contimg-joblog'"))
            logger.info("after")
        with db.session() as s:
            assert [r.message for r in s.scalars(select(m.JobLog).where(m.JobLog.job_id == job_id)
                                                 .order_by(m.JobLog.id))] == ["before", "after"]
    finally:
        db.dispose()
        pg_server.drop_database(name)


@pytest.mark.both_backends
def test_calibration_set_detail_lists_the_groups_that_applied_it(db: Database, settings) -> None:  # type: ignore[no-untyped-def]
    """json_each is SQLite's: on PostgreSQL the same question goes through json_array_elements_text."""
    from engine.services import Services

    with db.session() as s:
        for gid, applied in (("g1", ["set-a"]), ("g2", ["set-b", "set-a"]), ("g3", ["set-b"]), ("g4", None)):
            s.add(m.ObservationGroup(id=gid, group_time=T0, state="imaged"))
            s.flush()
            s.add(m.MeasurementSet(group_id=gid, path=f"/ms/{gid}.ms", cal_sets_applied=applied))
        s.add(m.CalibrationSet(name="set-a", calibrator_name="J0834+5534", source_ms_path="/ms/g1.ms", dec_deg=55.6,
                               mid_mjd=61000.0, valid_start_mjd=60999.5, valid_end_mjd=61000.5, group_id="g1"))
    with db.session() as s:
        set_id = s.scalar(select(m.CalibrationSet.id))
    detail = Services(db, settings).calibrations.detail(set_id)
    assert [(u.group_id, u.state) for u in detail.used_by] == [("g1", "imaged"), ("g2", "imaged")]


def test_bad_or_unreachable_database_url_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseError, match="only sqlite and postgresql"):
        Database("mysql+pymysql://u@h/db")
    with pytest.raises(DatabaseError, match="write postgresql\\+psycopg://"):
        Database("postgresql+psycopg2://u@h/db")
    url = f"postgresql+psycopg://contimg:secret@127.0.0.1:{free_port()}/contimg"  # nobody listens there
    proc = subprocess.run(contimg_cmd("--data-dir", str(tmp_path / "d"), "db", "upgrade"), capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "CONTIMG_DATABASE__URL": url})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot read postgresql+psycopg://contimg:***@127.0.0.1" in proc.stderr and "secret" not in proc.stderr
    assert "Connection refused" in proc.stderr or "connection" in proc.stderr.lower()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_sqlite_file_features_refuse_a_postgresql_database_and_say_what_to_use(tmp_path, settings, db) -> None:  # type: ignore[no-untyped-def]
    from engine import backups as bk
    from engine import notebooks
    from engine.backups.offline import restore_database_offline
    from engine.backups.schedule import seed_schedules
    from engine.vo import tap

    assert db.dialect == "postgresql" and not settings.database_is_sqlite
    with pytest.raises(bk.BackupError, match="backups of a PostgreSQL database are pg_dump's job"):
        bk.create_backup(settings, db, name="x", scope={}, created_by="t")
    with pytest.raises(bk.BackupError, match="the offline restore works on the SQLite database file only"):
        restore_database_offline(settings, "b1")
    with pytest.raises(SqliteOnlyError, match="pg_dump"):
        db.require_sqlite("a backup", "back it up with pg_dump")
    assert seed_schedules(settings.model_copy(update={"backups": settings.backups.model_copy(
        update={"schedules": True})}), db) == []  # no hourly backup that would fail every hour
    assert bk.apply_pending_restore(settings) is None
    assert "TAP on PostgreSQL is not supported" in tap.unavailable_on(settings)
    assert b"TAP on PostgreSQL is not supported" in tap.sync(settings.db_path, {"LANG": "ADQL",
                                                                               "QUERY": "SELECT TOP 1 * FROM sources"},
                                                              tap.unavailable_on(settings))
    with pytest.raises(notebooks.TemplateError, match="psycopg and a read-only PostgreSQL role"):
        notebooks.sqlite_only(settings)
    proc = subprocess.run(contimg_cmd("--data-dir", str(settings.data_dir), "backup", "create"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "pg_dump" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(contimg_cmd("--data-dir", str(settings.data_dir), "backup", "restore", "b1", "--yes"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "pg_restore" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.both_backends
async def test_two_engines_on_one_job_table_run_every_stage_once(tmp_path, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Two engines, each with its own connection pool and process pool, as two hosts would be: every group
    completes, every job runs once (no duplicate from two reconcile passes, no double claim), both engines
    take work, and each group's audit trail is contiguous."""
    from conftest import database_of
    from engine.processing import states
    from engine_helpers import fast_settings, group_states, make_engine, run_until, seed_groups
    from stagefuncs import product_ok, registry_of

    settings = fast_settings(tmp_path, workers=2, recover_interval_s=0.2)
    db_a, db_b = database_of(settings), Database.from_settings(settings)
    assert db_a.dialect == db_b.dialect == backend
    ids = seed_groups(db_a, 8, calibrators=1)
    a, _ = make_engine(settings, db_a, registry_of("ok_stage", delay=0.2))
    b, _ = make_engine(settings, db_b, registry_of("ok_stage", delay=0.2))
    assert a.worker_id != b.worker_id
    # started together: both reconcile passes look at the same 8 pending groups without a job at once
    await asyncio.gather(a.start(), b.start())
    try:
        await run_until(db_a, lambda: set(group_states(db_a).values()) == {states.COMPLETE}, timeout=120)
    finally:
        await a.stop()
        await b.stop()
    with db_a.session() as s:
        jobs = list(s.scalars(select(m.Job)))
        by_group = {gid: [t for t in s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == gid)
                                                .order_by(m.StateTransition.id))] for gid in ids}
    assert len(jobs) == 8 * 4 and {j.state for j in jobs} == {"succeeded"} and {j.attempts for j in jobs} == {1}
    assert sorted((j.group_id, j.type) for j in jobs) == sorted({(j.group_id, j.type) for j in jobs})
    workers = {t.worker for trail in by_group.values() for t in trail}
    assert workers == {a.worker_id, b.worker_id}  # both took work
    for gid, trail in by_group.items():
        prev = states.PENDING
        for t in trail:
            assert t.from_state == prev, (gid, [(x.from_state, x.to_state) for x in trail])
            prev = t.to_state
        assert prev == states.COMPLETE
        for stage in ("convert", "calibrate", "image", "measure"):
            assert product_ok(settings.data_dir / "products" / f"{gid}.{stage}")
    db_a.dispose()
    db_b.dispose()
