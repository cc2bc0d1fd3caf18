"""Retention policies and the cleanup wizard over HTTP, on a copy of a data dir the real pipeline produced."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits
from conftest import make_settings
from http_helpers import call as http_call

from engine.retention import Item, RetentionError, select_candidates, validate_rules

RELOCATED_COLUMNS = [("measurement_sets", "path"), ("images", "path"), ("images", "png_path"),
                     ("images", "ms_path"), ("calibration_tables", "path"), ("calibration_sets", "source_ms_path")]


def relocate(src_root: Path, dst_root: Path) -> None:
    """Copy a whole data dir and rewrite the absolute paths its database holds."""
    shutil.copytree(src_root / "data", dst_root / "data", ignore=shutil.ignore_patterns("*.sqlite3-wal",
                                                                                     "*.sqlite3-shm"))
    with sqlite3.connect(src_root / "data" / "pipeline.sqlite3") as src, \
            sqlite3.connect(dst_root / "data" / "pipeline.sqlite3") as dst:
        src.backup(dst)
        for table, col in RELOCATED_COLUMNS:
            dst.execute(f"UPDATE {table} SET {col} = replace({col}, ?, ?)", (str(src_root), str(dst_root)))


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.name.startswith("pipeline.sqlite3") or p.suffix == ".log":
                continue
            out[str(p.relative_to(root))] = hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
    return out


@pytest.fixture
async def rrt(flow_data_root: Path, flow_runtime_factory: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A runtime on a private copy of the pipeline data: these tests delete and move products."""
    relocate(flow_data_root, tmp_path)
    async with flow_runtime_factory(tmp_path) as rt:
        yield rt


async def call(rt: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    return await http_call(rt, method, path, rt.token, **kw)


def policy(data_type: str, action: str, **extra: Any) -> dict[str, Any]:
    rule = {"name": f"{action} at once", "triggerType": "age", "action": action, "threshold": 0,
            "thresholdUnit": "days", "enabled": True}
    return {"name": f"{action} {data_type}", "dataType": data_type, "priority": "medium", "status": "active",
            "rules": [rule], "requireConfirmation": True, "createBackupBeforeDelete": False, **extra}


async def test_policy_crud_merge_retry_and_bad_rules(rrt: Any) -> None:
    status, created = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("image", "archive"))
    assert status == 200 and created["rules"][0]["id"] and created["createdBy"] == "op"
    assert created["nextScheduledAt"] is not None  # the daily run
    _, again = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("image", "archive"))
    assert again["id"] == created["id"]  # a retried POST does not make a second policy
    status, paused = await call(rrt, "PUT", f"/api/v1/retention/policies/{created['id']}", json={"status": "paused"})
    assert status == 200 and paused["status"] == "paused" and paused["name"] == created["name"]
    assert paused["rules"] == created["rules"] and paused["nextScheduledAt"] is None
    bad = policy("image", "delete")
    bad["rules"][0]["thresholdUnit"] = "GB"
    status, err = await call(rrt, "POST", "/api/v1/retention/policies", json=bad)
    assert status == 422 and "rules[0].thresholdUnit" in err["detail"]
    status, err = await call(rrt, "POST", "/api/v1/retention/policies", json={**policy("image", "delete"),
                                                                           "dataType": "everything"})
    assert status == 422 and err["details"]["errors"][0]["field"] == "dataType"
    status, _ = await call(rrt, "PUT", "/api/v1/retention/policies/nope", json={"status": "active"})
    assert status == 404
    status, _ = await call(rrt, "DELETE", f"/api/v1/retention/policies/{created['id']}")
    assert status == 200
    _, listed = await call(rrt, "GET", "/api/v1/retention/policies")
    assert listed == []


async def test_simulate_changes_nothing_and_protects_a_busy_group(rrt: Any) -> None:
    data_dir = rrt.settings.data_dir
    with rrt.db.engine.begin() as c:
        busy_group, = c.exec_driver_sql("SELECT group_id FROM images ORDER BY created_at LIMIT 1").one()
        # a measure job of that group running on another worker (lease far ahead)
        c.exec_driver_sql("INSERT INTO jobs (id, type, queue, group_id, params, priority, state, run_after, attempts, "
                          "max_attempts, created_at, claimed_by, lease_until) VALUES ('busy', 'measure', 'q', ?, "
                          "'{}', 100, 'running', '2026-01-01 00:00:00', 1, 3, '2026-01-01 00:00:00', 'other-host', "
                          "'2099-01-01 00:00:00')", (busy_group,))
    before = tree_digest(data_dir)
    _, p = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("image", "delete"))
    status, sim = await call(rrt, "POST", f"/api/v1/retention/policies/{p['id']}/simulate")
    assert status == 200 and sim["success"] and tree_digest(data_dir) == before
    protected = [c for c in sim["candidates"] if c["isProtected"]]
    assert protected and all("queued or running job" in c["protectionReason"] for c in protected)
    assert sim["totalItems"] == len(sim["candidates"]) - len(protected) >= 1
    assert sim["totalSizeBytes"] > 0 and sim["byAction"] == {"delete": sim["totalItems"]}


async def test_archive_moves_an_ms_and_the_database_follows(rrt: Any) -> None:
    from casacore.tables import table

    with rrt.db.engine.begin() as c:
        paths = [r[0] for r in c.exec_driver_sql("SELECT path FROM measurement_sets")]
    _, p = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("measurement_set", "archive"))
    status, ex = await call(rrt, "POST", f"/api/v1/retention/policies/{p['id']}/execute")
    assert status == 200 and ex["status"] == "completed", ex
    archived = [r[0] for r in rrt.db.engine.connect().exec_driver_sql("SELECT path FROM measurement_sets")]
    moved = [a for a in archived if "/archive/" in a]
    assert moved and ex["itemsAffected"] == len(moved) and ex["sizeFreedBytes"] > 0
    for old, new in zip(paths, archived, strict=True):
        assert Path(old).exists() != Path(new).exists() or old == new
    with table(moved[0], ack=False) as t:  # still a readable Measurement Set at its new place
        assert t.nrows() > 0
    _, history = await call(rrt, "GET", f"/api/v1/retention/executions?policy_id={p['id']}")
    assert [h["id"] for h in history] == [ex["id"]] and history[0]["triggeredByUser"] == "op"
    _, listed = await call(rrt, "GET", "/api/v1/retention/policies")
    assert listed[0]["lastExecutedAt"] == ex["completedAt"]


async def test_compressed_images_stay_readable_and_deleting_a_calibration_retires_its_set(rrt: Any) -> None:
    _, p = await call(rrt, "POST", "/api/v1/retention/policies",
                      json=policy("image", "compress", filePattern="*-image.fits"))
    _, ex = await call(rrt, "POST", f"/api/v1/retention/policies/{p['id']}/execute")
    assert ex["status"] == "completed" and ex["itemsAffected"] >= 1
    with rrt.db.engine.connect() as c:
        path, = c.exec_driver_sql("SELECT path FROM images WHERE path LIKE '%.gz' LIMIT 1").one()
    with fits.open(path) as hdul:
        assert hdul[0].data.ndim >= 2
    with gzip.open(path) as fh:
        assert fh.read(6) == b"SIMPLE"

    # an active set the registry may still hand out is protected; once past the fallback horizon it is not
    from astropy.time import Time

    now_mjd = Time(datetime.now(UTC)).mjd
    with rrt.db.engine.begin() as c:
        active_id, = c.exec_driver_sql("SELECT id FROM calibration_sets WHERE status = 'active'").one()
        c.exec_driver_sql("UPDATE calibration_sets SET valid_end_mjd = ? WHERE id = ?", (now_mjd + 0.2, active_id))
    _, cal = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("calibration", "delete"))
    _, sim = await call(rrt, "POST", f"/api/v1/retention/policies/{cal['id']}/simulate")
    protected = {c["path"] for c in sim["candidates"] if c["isProtected"]}
    assert protected and all("may still be applied" in c["protectionReason"] for c in sim["candidates"]
                             if c["isProtected"])
    with rrt.db.engine.begin() as c:
        c.exec_driver_sql("UPDATE calibration_sets SET valid_end_mjd = ? WHERE id = ?", (now_mjd - 3, active_id))
    _, ex = await call(rrt, "POST", f"/api/v1/retention/policies/{cal['id']}/execute")
    assert ex["status"] == "completed" and ex["itemsAffected"] >= len(protected)
    assert not any(Path(p).exists() for p in protected)
    with rrt.db.engine.connect() as c:
        status, reason = c.exec_driver_sql("SELECT status, status_reason FROM calibration_sets WHERE id = ?",
                                           (active_id,)).one()
    assert status == "retired" and "retention policy" in reason


def test_rules_select_by_age_count_and_size() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    items = [Item(f"f{i}", "temporary", Path(f"/d/f{i}.tmp"), 10 * (i + 1), now - timedelta(days=10 - i))
             for i in range(10)]  # f0 oldest (10 d) ... f9 newest (1 d); sizes 10..100
    rule = {"triggerType": "age", "action": "delete", "threshold": 5, "thresholdUnit": "days", "name": "old"}
    assert [c.item.id for c in select_candidates({"rules": [rule]}, items, now)] == [f"f{i}" for i in range(5)]
    rule = {"triggerType": "count", "action": "archive", "threshold": 3, "thresholdUnit": "count", "name": "n"}
    assert len(select_candidates({"rules": [rule]}, items, now)) == 7
    rule = {"triggerType": "size", "action": "delete", "threshold": 300e-9, "thresholdUnit": "GB", "name": "s"}
    chosen = select_candidates({"rules": [rule]}, items, now)
    assert sum(it.size_bytes for it in items) - sum(c.item.size_bytes for c in chosen) <= 300
    assert [c.item.id for c in chosen] == [f"f{i}" for i in range(7)]  # 550 - 210 = 340 > 300; - 70 = 270
    manual = {"triggerType": "manual", "action": "delete", "name": "m"}
    assert select_candidates({"rules": [manual]}, items, now, scheduled=True) == []
    assert len(select_candidates({"rules": [manual], "excludePatterns": ["f1*"]}, items, now)) == 9
    with pytest.raises(RetentionError, match="rules\\[0\\].action"):
        validate_rules([{"triggerType": "age", "action": "shred", "threshold": 1, "thresholdUnit": "days"}])


async def test_cleanup_dry_run_submit_and_job_page(rrt: Any) -> None:
    tmp = rrt.settings.data_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    old = time.time() - 40 * 86400
    for i in range(3):
        f = tmp / f"scratch{i}.bin"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (old, old))
    (tmp / "fresh.bin").write_bytes(b"y")  # in use: modified just now
    status, dry = await call(rrt, "POST", "/api/v1/cleanup/dry-run", json={"min_age_days": 30, "data_type": ["temp"]})
    assert status == 200 and dry["affected_count"] == 3 and dry["bytes_to_free"] == 3000 and dry["can_execute"]
    assert (tmp / "scratch0.bin").exists()
    body = {"filters": {"min_age_days": 30, "data_type": ["temp"]}, "action": "delete", "audit_note": "disk at 91%"}
    status, job = await call(rrt, "POST", "/api/v1/cleanup/submit", json=body)
    assert status == 200 and job["submitted_by"] == "op"
    for _ in range(100):
        _, job = await call(rrt, "GET", f"/api/v1/cleanup/jobs/{job['id']}")
        if job["status"] in ("completed", "failed"):
            break
        await _sleep()
    assert job["status"] == "completed" and job["items_processed"] == 3 and job["bytes_freed"] == 3000
    assert sorted(p.name for p in tmp.iterdir()) == ["fresh.bin"]
    _, detail = await call(rrt, "GET", f"/api/v1/jobs/{job['run_id']}")
    assert detail["status"] == "completed"
    _, logs = await call(rrt, "GET", f"/api/v1/jobs/{job['run_id']}/logs")
    assert any("scratch0.bin" in line["message"] for line in logs["lines"]), logs
    _, history = await call(rrt, "GET", "/api/v1/cleanup/history?limit=10")
    assert [h["id"] for h in history] == [job["id"]]
    status, err = await call(rrt, "POST", "/api/v1/cleanup/dry-run", json={"min_age_days": 5, "max_age_days": 1})
    assert status == 422 and "min_age_days" in err["detail"]


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.1)


async def test_runs_cut_short_by_a_crash_are_failed_at_start(tmp_path: Path) -> None:
    from contimg_console.runtime import Runtime
    from engine.db import Database

    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    with db.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO jobs (id, type, queue, params, priority, state, run_after, attempts, "
                          "max_attempts, created_at, started_at) VALUES ('cj', 'cleanup', 'maintenance', '{}', 100, "
                          "'running', '2026-01-01 00:00:00', 1, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        c.exec_driver_sql("INSERT INTO cleanup_jobs (id, job_id, request_key, status, filters, action, audit_note, "
                          "submitted_by, submitted_at) VALUES ('c1', 'cj', 'k', 'running', '{}', 'delete', 'n', 'op', "
                          "'2026-01-01 00:00:00')")
        c.exec_driver_sql("INSERT INTO retention_executions (id, policy_id, started_at, status, items_processed, "
                          "items_affected, size_freed_bytes, errors, actions, triggered_by) VALUES ('x1', 'p', "
                          "'2026-01-01 00:00:00', 'running', 0, 0, 0, '[]', '[]', 'schedule')")
    db.dispose()
    rt = Runtime(settings)
    await rt.start()
    try:
        with rt.db.engine.connect() as c:
            assert c.exec_driver_sql("SELECT state, error_kind FROM jobs WHERE id = 'cj'").one() == ("failed",
                                                                                                    "interrupted")
            assert c.exec_driver_sql("SELECT status FROM cleanup_jobs").scalar() == "failed"
            assert c.exec_driver_sql("SELECT status FROM retention_executions").scalar() == "failed"
    finally:
        await rt.stop()


async def test_scheduled_run_acts_only_without_confirmation(rrt: Any) -> None:
    tmp = rrt.settings.data_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    old = time.time() - 3 * 86400
    f = tmp / "old.bin"
    f.write_bytes(b"z" * 10)
    os.utime(f, (old, old))
    _, p = await call(rrt, "POST", "/api/v1/retention/policies", json=policy("temporary", "delete"))
    import asyncio

    assert await asyncio.to_thread(rrt.retention.scheduled_run) == []
    assert f.exists()
    with rrt.db.engine.connect() as c:
        msg = c.exec_driver_sql("SELECT message FROM alerts WHERE alert_type = 'retention'").scalar()
    assert "await confirmation" in msg
    await call(rrt, "PUT", f"/api/v1/retention/policies/{p['id']}", json={"requireConfirmation": False})
    assert await asyncio.to_thread(rrt.retention.scheduled_run) == [p["id"]]
    assert not f.exists()
    _, history = await call(rrt, "GET", "/api/v1/retention/executions")
    assert history[0]["triggeredBy"] == "schedule" and history[0]["itemsAffected"] == 1


async def test_a_crash_between_moving_and_recording_is_reconciled(rrt: Any) -> None:
    """kill -9 after an MS was moved to the archive but before its row changed: the next start finds it."""
    import asyncio

    from engine.retention import archive_path, recover_interrupted

    with rrt.db.engine.begin() as c:
        ms_id, path = c.exec_driver_sql("SELECT id, path FROM measurement_sets LIMIT 1").one()
        c.exec_driver_sql("INSERT INTO retention_executions (id, policy_id, started_at, status, items_processed, "
                          "items_affected, size_freed_bytes, errors, actions, triggered_by) VALUES ('x1', 'p', "
                          "'2026-01-01 00:00:00', 'running', 1, 0, 0, '[]', '[]', 'manual')")
    dst = archive_path(rrt.settings, Path(path))
    dst.parent.mkdir(parents=True)
    shutil.move(path, dst)  # what the action did before the crash
    (dst.parent / (dst.name + ".partial")).mkdir()  # and debris of a second, cut-short move
    assert await asyncio.to_thread(recover_interrupted, rrt.db, rrt.settings) == 1
    with rrt.db.engine.connect() as c:
        assert c.exec_driver_sql("SELECT path FROM measurement_sets WHERE id = ?", (ms_id,)).scalar() == str(dst)
