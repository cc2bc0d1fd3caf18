"""The roadmap's backup schedules: built-in triggers seeded once, firing on their own (a real APScheduler
on a fast clock), retention that never removes the last valid backup of a kind, the config file
backed up when its content changes, the weekly full copied off-site, and the per-kind metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from conftest import contimg_cmd, make_settings
from http_helpers import call

from engine import backups as bk
from engine import triggers as tg
from engine.backups import schedule
from engine.db import Database
from engine.db import models as m


def _db(settings) -> Database:  # type: ignore[no-untyped-def]
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    return db


def _age(db: Database, backup_id: str, days: float) -> None:
    with db.session() as s:
        rec = s.get_one(m.BackupRecord, backup_id)
        rec.created_at = datetime.now(UTC) - timedelta(days=days)


def test_builtin_schedules_are_seeded_once_and_never_recreated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, backups={"schedules": True})
    db = _db(settings)
    assert schedule.seed_schedules(settings, db) == ["database", "caltables", "config", "full"]
    rows = {t["name"]: t for t in tg.list_triggers(db)}
    assert set(rows) == {"Backup: database hourly", "Backup: calibration tables daily",
                         "Backup: configuration on change", "Backup: full weekly"}
    hourly = rows["Backup: database hourly"]
    assert hourly["schedule"]["cron"] == "0 * * * *" and hourly["pipeline_id"] == "backup"
    assert hourly["parameters"]["kind"] == "database"
    assert rows["Backup: configuration on change"]["parameters"]["only_if_changed"] is True
    seeded = schedule.seeded_schedules(db)
    assert seeded["database"]["trigger_id"] == hourly["id"] and seeded["full"]["seeded_at"]
    # the operator edits one and deletes another: a restart changes neither
    tg.update_trigger(db, hourly["id"], {"schedule": {"cron": "30 */2 * * *"}}, "ann")
    tg.delete_trigger(db, rows["Backup: full weekly"]["id"])
    assert schedule.seed_schedules(settings, db) == []
    after = {t["name"]: t for t in tg.list_triggers(db)}
    assert "Backup: full weekly" not in after and after["Backup: database hourly"]["schedule"]["cron"] == "30 */2 * * *"
    assert schedule.seed_schedules(make_settings(tmp_path, backups={"schedules": False}), db) == []
    db.dispose()


async def test_runtime_seeds_them_visible_through_rest(tmp_path: Path) -> None:
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, backups={"schedules": True})
    rt = Runtime(settings)
    await rt.start()
    try:
        status, body = await call(rt, "GET", "/api/v1/triggers")
        assert status == 200
        names = {t["name"] for t in (body["triggers"] if isinstance(body, dict) else body)}
        assert {"Backup: database hourly", "Backup: full weekly"} <= names
        assert set(schedule.seeded_schedules(rt.db)) == {"database", "caltables", "config", "full"}
        seeded = schedule.seeded_schedules(rt.db)
        assert sorted(rt.triggers.job_ids()) == sorted(v["trigger_id"] for v in seeded.values())
    finally:
        await rt.stop()


async def test_schedules_fire_on_their_own_and_prune(tmp_path: Path) -> None:
    """The seeded triggers driven by a real AsyncIOScheduler on a fast clock (every 0.4 s instead of
    their crons): backups are made, run, and pruned to the retention, the newest valid kept."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[tui]\nrefresh_s = 2.0\n')
    from engine.settings import load_settings

    offsite = tmp_path / "nas"
    offsite.mkdir()
    settings = load_settings(cfg, {"data_dir": tmp_path / "data", "jupyter": {"mode": "off"},
                                   "backups": {"database_keep_days": 1.5 / 86400, "full_keep_days": 1.5 / 86400,
                                               "offsite_dir": str(offsite), "offsite_keep": 2}})
    db = _db(settings)
    (settings.caltables_dir / "s1").mkdir(parents=True)
    (settings.caltables_dir / "s1" / "gains.npz").write_bytes(b"g" * 1000)
    schedule.seed_schedules(settings, db)
    seeded = schedule.seeded_schedules(db)
    scheduler = AsyncIOScheduler(timezone="UTC")
    ts = tg.TriggerScheduler(settings, db, scheduler)
    scheduler.start()
    try:
        for key in ("database", "config", "full"):
            scheduler.add_job(ts.run_trigger, IntervalTrigger(seconds=0.4), args=[seeded[key]["trigger_id"]],
                              id=key, coalesce=True, max_instances=1, misfire_grace_time=5)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            execs = tg.list_executions(db, seeded["database"]["trigger_id"], 100)
            if len([e for e in execs if e["status"] == "success"]) >= 8:
                break
    finally:
        scheduler.shutdown(wait=False)
    await asyncio.sleep(0.5)  # let the last backup thread finish its record
    db_execs = [e for e in tg.list_executions(db, seeded["database"]["trigger_id"], 100) if e["status"] == "success"]
    assert len(db_execs) >= 8
    kept = bk.list_backups(db, 500, kind="database")
    assert kept and len(kept) < len(db_execs), "old database backups were pruned"
    assert all(b["status"] == "completed" for b in kept)
    # the config file has not changed: one config backup, later firings skipped as unchanged
    configs = bk.list_backups(db, 100, kind="config")
    assert len(configs) == 1 and configs[0]["status"] == "completed"
    cfg_execs = tg.list_executions(db, seeded["config"]["trigger_id"], 100)
    assert len(cfg_execs) >= 2 and sum(1 for e in cfg_execs if e["job_id"]) == 1
    # every full copied off-site, only offsite_keep copies kept there
    fulls = bk.list_backups(db, 100, kind="full")
    assert fulls
    copies = [p for p in offsite.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(copies) <= 2 and fulls[0]["id"] in {p.name for p in copies}
    assert (offsite / fulls[0]["id"] / "caltables" / "s1" / "gains.npz").read_bytes() == b"g" * 1000
    assert schedule.offsite_status(db)["backup_id"] in {p.name for p in copies}
    db.dispose()


def test_retention_never_deletes_the_last_valid_backup_of_a_kind(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = _db(settings)

    def make(kind: str, days: float) -> str:
        bid = bk.create_backup(settings, db, name=f"{kind} {days}", scope={}, created_by="t", kind=kind)
        bk.run_backup(settings, db, bid)
        _age(db, bid, days)
        return bid

    oldest, older, newest = make("database", 30), make("database", 20), make("database", 10)
    # the newest (still too old) backup is damaged: the older valid one is what must survive
    (settings.backups_dir / newest / "database" / "pipeline.sqlite3").write_bytes(b"broken")
    deleted = bk.prune_backups(settings, db, {"database": 7}, by="kind", keep_min=1)
    assert set(deleted) == {oldest, newest}
    assert [b["id"] for b in bk.list_backups(db, kind="database")] == [older]
    assert bk.prune_by_settings(settings, db) == []  # the last valid one stays, however old
    fresh = make("database", 0)
    assert bk.prune_by_settings(settings, db) == [older]
    assert [b["id"] for b in bk.list_backups(db, kind="database")] == [fresh]
    # a failed one is never "the last valid": it goes once too old
    bad = bk.create_backup(settings, db, name="failed", scope={}, created_by="t", kind="database")
    with db.session() as s:
        s.get_one(m.BackupRecord, bad).status = "failed"
    _age(db, bad, 30)
    assert bk.prune_by_settings(settings, db) == [bad]
    db.dispose()


def test_config_backed_up_when_its_content_hash_changes(tmp_path: Path) -> None:
    from engine.settings import load_settings

    cfg = tmp_path / "config.toml"
    cfg.write_text('[tui]\nrefresh_s = 2.0\n')
    settings = load_settings(cfg, {"data_dir": tmp_path / "data"})
    db = _db(settings)
    first = schedule.backup_config_if_changed(settings, db)
    assert first is not None
    row = bk.get_backup(db, first)
    assert row["kind"] == "config" and row["status"] == "completed"
    stored = Path(row["storage_location"])
    assert (stored / "config" / "config.toml").read_text() == cfg.read_text()
    assert not (stored / "caltables").exists()  # the config file only
    assert schedule.backup_config_if_changed(settings, db) is None
    cfg.write_text('[tui]\nrefresh_s = 3.0\n')
    second = schedule.backup_config_if_changed(settings, db)
    assert second not in (None, first)
    assert schedule.config_changed(settings, db) is False
    db.dispose()


async def test_backup_metrics_per_kind(runtime) -> None:  # type: ignore[no-untyped-def]
    status, text = await call(runtime, "GET", "/metrics")
    assert status == 200
    assert 'contimg_backup_last_success_timestamp{type="database"} 0.0' in text
    bid = await asyncio.to_thread(bk.create_backup, runtime.settings, runtime.db, name="m", scope={},
                                  created_by="t", kind="database")
    await asyncio.to_thread(bk.run_backup, runtime.settings, runtime.db, bid)
    row = bk.get_backup(runtime.db, bid)
    status, text = await call(runtime, "GET", "/metrics")
    lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines() if ln.startswith("contimg_backup")}
    done = datetime.fromisoformat(row["completed_at"]).timestamp()
    assert lines['contimg_backup_last_success_timestamp{type="database"}'] == pytest.approx(done, abs=1e-3)
    assert lines['contimg_backup_size_bytes{type="database"}'] == row["size_bytes"] > 0
    assert 0 <= lines['contimg_backup_duration_seconds{type="database"}'] < 30
    assert lines['contimg_backup_last_success_timestamp{type="full"}'] == 0.0
    assert 'contimg_backup_size_bytes{type="full"}' not in lines


def test_bad_backup_settings_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[backups]\nfull_cron = "every sunday"\n')
    res = subprocess.run(contimg_cmd("--config", str(cfg), "--data-dir", str(tmp_path / "d"), "backup", "list"),
                         capture_output=True, text=True)
    assert res.returncode == 2 and "backups.full_cron" in res.stderr
    cfg.write_text('[backups]\nkeep_min = 0\n')
    res = subprocess.run(contimg_cmd("--config", str(cfg), "--data-dir", str(tmp_path / "d"), "backup", "list"),
                         capture_output=True, text=True)
    assert res.returncode == 2 and "backups.keep_min" in res.stderr


def test_offsite_dir_missing_keeps_the_backup_and_records_why(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, backups={"offsite_dir": str(tmp_path / "nas-not-mounted")})
    db = _db(settings)
    bid = bk.create_backup(settings, db, name="weekly", scope={"images": True}, created_by="t", kind="full")
    out = schedule.run_scheduled_backup(settings, db, bid)
    assert out["status"] == "completed" and "is the NAS mounted" in out["offsite_error"]
    assert bk.get_backup(db, bid)["status"] == "completed"
    assert schedule.offsite_status(db)["error"] == out["offsite_error"]
    res = subprocess.run(contimg_cmd("--data-dir", str(settings.data_dir), "backup", "create", "--type", "full"),
                         capture_output=True, text=True,
                         env={**os.environ, "CONTIMG_BACKUPS__OFFSITE_DIR": str(tmp_path / "nas-not-mounted")})
    assert res.returncode == 0 and "off-site copy failed" in res.stderr
    db.dispose()
