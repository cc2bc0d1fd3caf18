"""The unified database: created at head, upgraded in place, WAL and foreign keys on.

Runs on SQLite and on PostgreSQL (``both_backends``); the tests about the SQLite file itself are
``sqlite_only``.
"""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from conftest import contimg_cmd
from engine.db import Database
from engine.db import models as m
from engine.db.listing_triggers import LISTING_TRIGGERS

pytestmark = pytest.mark.both_backends


@pytest.fixture
def empty_database(tmp_path: Path, backend: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A database with no schema at all (not the migrated template): every migration runs on it."""
    if backend == "sqlite":
        db = Database(tmp_path / "p.sqlite3")
        yield db
        db.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = f"empty_{tmp_path.name}"[:60]
    db = Database(server.create_database(name))
    yield db
    db.dispose()
    server.drop_database(name)


def test_fresh_database_is_at_head(empty_database: Database) -> None:
    db = empty_database
    db.upgrade()
    assert db.current_revision() == db.head_revision() != "none"
    tables = set(inspect(db.engine).get_table_names())
    for name in ("hdf5_files", "observation_groups", "measurement_sets", "state_transitions", "jobs",
                 "calibration_sets", "calibration_tables", "calibrators", "images", "sources", "photometry",
                 "saved_queries", "backup_history", "pipeline_triggers", "trigger_executions", "export_jobs",
                 "comments", "ratings", "alert_policies", "alert_silences", "api_tokens", "users"):
        assert name in tables, name


def test_roadmap_columns_exist(db: Database) -> None:
    cols = {t: {c["name"] for c in inspect(db.engine).get_columns(t)}
            for t in ("saved_queries", "backup_history", "pipeline_triggers")}
    assert {"id", "name", "description", "filters", "target_type", "visibility", "created_by", "created_at",
            "updated_at"} <= cols["saved_queries"]
    assert {"id", "backup_path", "backup_type", "size_bytes", "created_at", "created_by", "status",
            "validation_status", "validated_at"} <= cols["backup_history"]
    assert {"id", "name", "description", "trigger_type", "schedule", "event_pattern", "action", "action_params",
            "enabled", "created_at", "last_triggered_at"} <= cols["pipeline_triggers"]


def test_migrated_schema_is_the_models_schema(db: Database) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations build exactly what models.py describes."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), m.Base.metadata)
    assert diff == []


def test_integrity_check_passes(db: Database) -> None:
    assert db.integrity_check() == "ok"


@pytest.mark.sqlite_only
def test_pragmas(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(Exception, match="(?i)FOREIGN KEY"):
        with db.session() as s:
            s.add(m.JobLog(job_id="no-such-job", message="x"))


def test_old_revision_is_upgraded_in_place(empty_database: Database) -> None:
    old = empty_database
    old.upgrade("0001")
    assert old.current_revision() == "0001"
    with old.engine.begin() as conn:  # raw SQL: the ORM describes the newest schema, not 0001's
        conn.execute(text("INSERT INTO observation_groups (id, group_time, n_subbands, missing_subbands, "
                          "is_calibrator, state, state_changed_at, priority, warnings, created_at, updated_at) "
                          "VALUES ('2026-01-01T00:00:00', '2026-01-01 00:00:00', 16, '[]', :no, 'converted', "
                          "'2026-01-01 00:00:00', 100, '[]', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                     {"no": False})
    assert "saved_queries" not in inspect(old.engine).get_table_names()
    old.dispose()

    new = Database(old.url)
    new.upgrade()
    assert new.current_revision() == new.head_revision()
    with new.session() as s:
        group = s.get_one(m.ObservationGroup, "2026-01-01T00:00:00")
        assert group.state == "converted" and group.ingest_status == "ready"  # server default filled in
    assert "saved_queries" in inspect(new.engine).get_table_names()
    new.dispose()


def test_listing_triggers_count_only_watched_columns_and_go_with_a_downgrade(db: Database) -> None:
    """Migration 0006's triggers, on either dialect: a row change bumps its listing's counter once, a change
    of a column no listing shows (a lease heartbeat) does not; downgrading past 0006 drops them, and the
    upgrade puts them back."""
    def versions() -> dict[str, int]:
        with db.engine.connect() as c:
            return dict(c.execute(text("SELECT kind, version FROM listing_versions")).all())

    assert set(versions()) == set(LISTING_TRIGGERS)
    t0 = datetime(2026, 11, 29, tzinfo=UTC)
    with db.session() as s:
        s.add(m.Job(id="j1", type="external", params={}, run_after=t0))
    start = versions()
    with db.session() as s:
        job = s.get_one(m.Job, "j1")
        job.heartbeat_at, job.lease_until = t0, t0
    assert versions() == start
    with db.session() as s:
        s.get_one(m.Job, "j1").state = "running"
    assert versions()["jobs"] == start["jobs"] + 1
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO sources (id, ra_deg, dec_deg, n_detections, n_images) "
                       "VALUES ('a', 1, 2, 0, 0), ('b', 3, 4, 0, 0)"))
        c.execute(text("UPDATE sources SET n_detections = 5"))  # not shown: no bump
        c.execute(text("DELETE FROM sources"))
    after = versions()
    assert after["sources"] == start["sources"] + 4 and after["images"] == start["images"]

    db.downgrade("0005")
    assert "listing_versions" not in inspect(db.engine).get_table_names()
    with db.engine.begin() as c:  # no trigger is left to fail on a missing listing_versions
        c.execute(text("UPDATE jobs SET state = 'queued' WHERE id = 'j1'"))
    db.upgrade()
    assert set(versions()) == set(LISTING_TRIGGERS)
    with db.session() as s:
        s.get_one(m.Job, "j1").state = "running"
    assert versions()["jobs"] == 1


def test_cli_db_upgrade_and_current(tmp_path: Path, backend: str) -> None:
    data = tmp_path / "d"
    up = subprocess.run(contimg_cmd("--data-dir", str(data), "db", "upgrade"), capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert "(head)" in up.stdout
    # the CLI opened the backend's database (CONTIMG_DATABASE__URL), never a SQLite file beside it
    assert ("postgresql+psycopg://" in up.stdout) == (backend == "postgresql")
    assert (data / "pipeline.sqlite3").exists() == (backend == "sqlite")
    cur = subprocess.run(contimg_cmd("--data-dir", str(data), "db", "current"), capture_output=True, text=True)
    assert cur.returncode == 0 and f"revision {Database.head_revision()} (head)" in cur.stdout


@pytest.mark.sqlite_only
def test_deleted_database_is_recreated(tmp_path: Path) -> None:
    data = tmp_path / "d"
    for _ in range(2):
        proc = subprocess.run(contimg_cmd("--data-dir", str(data), "db", "upgrade"), capture_output=True, text=True)
        assert proc.returncode == 0
        con = sqlite3.connect(data / "pipeline.sqlite3")
        assert con.execute("select version_num from alembic_version").fetchone()[0] == Database.head_revision()
        con.close()
        for suffix in ("", "-wal", "-shm"):
            (data / f"pipeline.sqlite3{suffix}").unlink(missing_ok=True)


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"):
        with db.session() as s:
            s.add(m.ObservationGroup(id="x", group_time=datetime(2026, 1, 1)))


def test_cli_engine_pause_shows_in_status(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    assert subprocess.run(contimg_cmd("--data-dir", data, "engine", "pause"), capture_output=True).returncode == 0
    out = subprocess.run(contimg_cmd("--data-dir", data, "status", "--json"), capture_output=True, text=True)
    assert '"paused": true' in out.stdout
    subprocess.run(contimg_cmd("--data-dir", data, "engine", "resume"), capture_output=True)
    out = subprocess.run(contimg_cmd("--data-dir", data, "status"), capture_output=True, text=True)
    assert "engine: not paused" in out.stdout
