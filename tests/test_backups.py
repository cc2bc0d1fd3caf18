"""Backups: real databases and files in tmp dirs, real SQLite copies, real restores."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import backups as bk
from engine.db import Database
from engine.db import models as m
from engine.settings import Settings

ALL = {k: True for k in bk.SCOPE_KEYS}
NO_MS = {**ALL, "measurement_sets": False}


def _seed(settings: Settings, db: Database) -> None:
    with db.session() as s:
        s.add(m.ObservationGroup(id="2026-01-01T00:00:00", group_time=datetime(2026, 1, 1, tzinfo=UTC),
                                 state="converted"))
        s.flush()
        s.add(m.Job(type="convert", group_id="2026-01-01T00:00:00", state="succeeded"))
        s.add(m.Rating(target_type="image", target_id="img1", username="ann", value=4))
    (settings.caltables_dir / "set1").mkdir(parents=True, exist_ok=True)
    (settings.caltables_dir / "set1" / "bandpass.npz").write_bytes(b"bandpass" * 100)
    (settings.images_dir / "g1.fits").write_bytes(b"SIMPLE  =" + b"\0" * 2871)
    (settings.images_dir / "g1.png").write_bytes(b"\x89PNG fake")
    (settings.images_dir / "scratch.tmp").write_bytes(b"not an image product")
    (settings.ms_dir / "g1.ms").mkdir(parents=True, exist_ok=True)
    (settings.ms_dir / "g1.ms" / "table.f0").write_bytes(b"ms data")


def _backup(settings: Settings, db: Database, **kw: object) -> str:
    kw.setdefault("name", "nightly")
    kw.setdefault("scope", NO_MS)
    kw.setdefault("created_by", "ann")
    bid = bk.create_backup(settings, db, **kw)  # type: ignore[arg-type]
    bk.run_backup(settings, db, bid)
    return bid


def test_full_backup_is_complete_consistent_and_valid(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = bk.create_backup(settings, db, name="nightly", scope=NO_MS, created_by="ann")
    assert bk.get_backup(db, bid)["status"] == "pending"
    bk.run_backup(settings, db, bid)
    b = bk.get_backup(db, bid)
    assert b["status"] == "completed", b["error_message"]
    path = Path(b["storage_location"])
    assert path == settings.backups_dir / bid and path.is_dir()
    assert not list(settings.backups_dir.glob(".tmp-*"))
    manifest = json.loads((path / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert paths == {"database/pipeline.sqlite3", "caltables/set1/bandpass.npz", "images/g1.fits", "images/g1.png"}
    assert "job_history" in manifest["contents"] and "qa_ratings" in manifest["contents"]
    assert b["item_count"] == 4 and b["size_bytes"] == sum(f["size"] for f in manifest["files"])
    assert b["checksum"] == manifest["checksum"] and b["size_formatted"].endswith(("KB", "MB", "B"))
    # The database copy is a real, self-contained database holding our rows.
    conn = sqlite3.connect(path / "database" / "pipeline.sqlite3")
    assert conn.execute("select count(*) from jobs").fetchone()[0] == 1
    assert conn.execute("select count(*) from ratings").fetchone()[0] == 1
    assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
    conn.close()
    v = bk.validate_backup(settings, db, bid)
    assert v["is_valid"] and v["checksum_verified"] and v["files_verified"] == 4 and v["files_corrupted"] == 0
    assert bk.get_backup(db, bid)["validation_status"] == "valid"
    assert [x["id"] for x in bk.list_backups(db, 20)] == [bid]
    assert bk.list_backups(db, 20, type="incremental") == [] and bk.list_backups(db, 20, status="failed") == []


def test_corrupted_file_is_reported(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    target = settings.backups_dir / bid / "images" / "g1.fits"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    (settings.backups_dir / bid / "images" / "g1.png").unlink()
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and not v["checksum_verified"]
    assert sorted(v["corrupted_files"]) == ["images/g1.fits", "images/g1.png"]
    assert v["files_corrupted"] == 2 and v["files_verified"] == 2
    assert bk.get_backup(db, bid)["validation_status"] == "invalid"
    # A restore of a corrupted backup is refused with a clear error and writes nothing.
    shutil.rmtree(settings.images_dir)
    rid = bk.start_restore(settings, db, bid, scope={"images": True}, started_by="ann")
    bk.run_restore(settings, db, rid)
    r = bk.get_restore(db, rid)
    assert r["status"] == "failed" and "failed validation" in r["errors"][0] and "g1.fits" in r["errors"][0]
    assert not settings.images_dir.exists()


def test_corrupt_database_copy_and_missing_manifest_are_invalid(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    copy = settings.backups_dir / bid / "database" / "pipeline.sqlite3"
    raw = bytearray(copy.read_bytes())
    raw[4096 + 200: 4096 + 400] = b"\xAB" * 200  # damage a b-tree page, keep the size
    copy.write_bytes(bytes(raw))
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and "database/pipeline.sqlite3" in v["corrupted_files"]
    (settings.backups_dir / bid / "manifest.json").write_text("{not json")
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and "manifest" in v["reason"] and "corrupt" in v["reason"]
    (settings.backups_dir / bid / "manifest.json").unlink()
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and "manifest missing" in v["reason"]


def test_preview_shows_conflicts_and_changes_nothing(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    fits = settings.images_dir / "g1.fits"
    fits.write_bytes(b"changed since the backup")
    (settings.images_dir / "g1.png").unlink()
    before = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file() and "backups" not in p.parts
              and not p.name.startswith("pipeline.sqlite3")}
    p = bk.restore_preview(settings, db, bid, {"images": True, "catalogs": True}, False)
    assert p["backup_id"] == bid and p["can_restore"] and p["items_to_restore"] == 3
    assert [c["path"] for c in p["conflicts"]] == [str(fits)]
    assert p["conflicts"][0]["existing_modified"] and p["conflicts"][0]["backup_modified"]
    assert p["missing_dependencies"] == [] and any("will be kept" in w for w in p["warnings"])
    after = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file() and "backups" not in p.parts
             and not p.name.startswith("pipeline.sqlite3")}
    assert before == after
    assert bk.list_restores(db) == []
    # The database counts as a conflict with the live one (and a warning says when it is applied).
    p = bk.restore_preview(settings, db, bid, {"job_history": True}, False)
    assert p["items_to_restore"] == 1 and p["conflicts"][0]["path"] == str(settings.db_path)
    assert any("next start" in w for w in p["warnings"])


def test_restore_files_respects_overwrite(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    original = (settings.images_dir / "g1.fits").read_bytes()
    (settings.images_dir / "g1.fits").write_bytes(b"locally edited")
    (settings.images_dir / "g1.png").unlink()
    shutil.rmtree(settings.caltables_dir / "set1")
    rid = bk.start_restore(settings, db, bid, scope={"images": True, "catalogs": True}, started_by="bob",
                           notes="after disk swap")
    assert bk.get_restore(db, rid)["status"] == "pending"
    bk.run_restore(settings, db, rid)
    r = bk.get_restore(db, rid)
    assert r["status"] == "completed", r["errors"]
    assert r["items_total"] == 3 and r["items_restored"] == 2 and r["backup_name"] == "nightly"
    assert r["scope"] == {"images": True, "catalogs": True} and r["started_by"] == "bob" and r["completed_at"]
    assert any("skipped images/g1.fits" in e for e in r["errors"])
    assert (settings.images_dir / "g1.fits").read_bytes() == b"locally edited"
    assert (settings.images_dir / "g1.png").exists()
    assert (settings.caltables_dir / "set1" / "bandpass.npz").read_bytes() == b"bandpass" * 100
    rid2 = bk.start_restore(settings, db, bid, scope={"images": True}, overwrite_existing=True, started_by="bob")
    bk.run_restore(settings, db, rid2)
    r2 = bk.get_restore(db, rid2)
    assert r2["status"] == "completed" and r2["items_restored"] == 2 and r2["errors"] == []
    assert (settings.images_dir / "g1.fits").read_bytes() == original
    assert [x["id"] for x in bk.list_restores(db, 10)] == [rid2, rid]


def test_incremental_chain_restores_parent_first(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    full = _backup(settings, db, name="full")
    (settings.images_dir / "g2.fits").write_bytes(b"new image")
    (settings.images_dir / "g1.png").write_bytes(b"\x89PNG v2")
    inc = _backup(settings, db, name="inc", backup_type="incremental", parent_backup_id=full)
    man = json.loads((settings.backups_dir / inc / "manifest.json").read_text())
    assert {f["path"] for f in man["files"]} == {"database/pipeline.sqlite3", "images/g2.fits", "images/g1.png"}
    (settings.images_dir / "g3.fits").write_bytes(b"third")
    diff = _backup(settings, db, name="diff", backup_type="differential")
    assert bk.get_backup(db, diff)["parent_backup_id"] == full
    man = json.loads((settings.backups_dir / diff / "manifest.json").read_text())
    assert {f["path"] for f in man["files"]} == {"database/pipeline.sqlite3", "images/g2.fits", "images/g1.png",
                                                 "images/g3.fits"}
    shutil.rmtree(settings.images_dir)
    rid = bk.start_restore(settings, db, inc, scope={"images": True}, started_by="ann")
    bk.run_restore(settings, db, rid)
    assert bk.get_restore(db, rid)["status"] == "completed"
    assert sorted(p.name for p in settings.images_dir.iterdir()) == ["g1.fits", "g1.png", "g2.fits"]
    assert (settings.images_dir / "g1.png").read_bytes() == b"\x89PNG v2"  # the child's version wins
    # A missing parent is a missing dependency, and the restore refuses.
    shutil.rmtree(settings.backups_dir / full)
    p = bk.restore_preview(settings, db, inc, {"images": True}, True)
    assert not p["can_restore"] and any(full in d for d in p["missing_dependencies"])
    with pytest.raises(bk.BackupError, match="parent"):
        bk.delete_backup(settings, db, full)


def test_database_restore_staged_and_applied_at_start(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    bid = _backup(settings, db, scope={k: False for k in bk.SCOPE_KEYS} | {"job_history": True})
    with db.session() as s:  # work done after the backup, which the restore rolls back
        s.add(m.Job(type="image", state="queued"))
    rid = bk.start_restore(settings, db, bid, scope={"job_history": True}, started_by="ann")
    bk.run_restore(settings, db, rid)
    assert bk.get_restore(db, rid)["status"] == "completed"
    staged = settings.data_dir / f"pipeline.sqlite3.restore-{rid}"
    assert staged.is_file() and bk.pending_restores(settings) == [staged]
    with db.session() as s:  # the live database is untouched until the next start
        assert s.query(m.Job).count() == 2
    db.dispose()
    info = bk.apply_pending_restore(settings)
    assert info is not None and info["restore_id"] == rid and info["backup_id"] == bid
    previous = Path(info["previous"])
    assert previous.name.startswith("pipeline.sqlite3.pre-restore-") and previous.is_file()
    assert not staged.exists() and bk.pending_restores(settings) == []
    old = sqlite3.connect(previous)
    assert old.execute("select count(*) from jobs").fetchone()[0] == 2  # nothing lost
    old.close()
    reopened = Database(settings.db_path)
    try:
        reopened.upgrade()
        assert reopened.integrity_check() == "ok"
        with reopened.session() as s:
            assert s.query(m.Job).count() == 1 and s.query(m.Rating).count() == 1
            own = s.get_one(m.BackupRecord, bid)  # the copy lists its own backup as completed, not running
            assert own.status == "completed" and own.completed_at is not None
    finally:
        reopened.dispose()
    assert bk.apply_pending_restore(settings) is None


def test_apply_refuses_a_corrupt_staged_database(settings: Settings, db: Database) -> None:
    staged = settings.data_dir / "pipeline.sqlite3.restore-x"
    staged.write_bytes(b"SQLite format 3\0" + b"\xff" * 5000)
    with pytest.raises(bk.BackupError, match="integrity"):
        bk.apply_database_restore(settings.db_path, staged)
    assert settings.db_path.exists() and staged.exists()


@pytest.mark.parametrize("entry", ["../../etc/passwd", "/etc/passwd", "images/../../../x", "images/./a"])
def test_path_traversal_in_manifest_is_refused(settings: Settings, db: Database, entry: str) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    mpath = settings.backups_dir / bid / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"].append({"path": entry, "size": 4, "sha256": "0" * 64, "mtime": 0})
    mpath.write_text(json.dumps(manifest))
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and repr(entry) in v["reason"]
    p = bk.restore_preview(settings, db, bid, ALL, True)
    assert not p["can_restore"] and any(repr(entry) in w for w in p["warnings"])
    rid = bk.start_restore(settings, db, bid, scope=ALL, overwrite_existing=True, started_by="ann")
    bk.run_restore(settings, db, rid)
    r = bk.get_restore(db, rid)
    assert r["status"] == "failed" and repr(entry) in r["errors"][0] and r["items_restored"] == 0


def test_symlink_in_backup_is_refused(settings: Settings, db: Database, tmp_path: Path) -> None:
    _seed(settings, db)
    bid = _backup(settings, db)
    outside = tmp_path / "secret"
    outside.write_text("secret")
    stored = settings.backups_dir / bid / "images" / "g1.png"
    stored.unlink()
    stored.symlink_to(outside)
    v = bk.validate_backup(settings, db, bid)
    assert not v["is_valid"] and "symlink" in v["reason"] and "images/g1.png" in v["reason"]


def test_request_key_is_idempotent(settings: Settings, db: Database) -> None:
    a = bk.create_backup(settings, db, name="x", scope=ALL, created_by="ann", request_key="k1")
    b = bk.create_backup(settings, db, name="x", scope=ALL, created_by="ann", request_key="k1")
    c = bk.create_backup(settings, db, name="x", scope=ALL, created_by="ann", request_key="k2")
    assert a == b != c
    with db.session() as s:
        s.get_one(m.BackupRecord, a).status = "failed"
    assert bk.create_backup(settings, db, name="x", scope=ALL, created_by="ann", request_key="k1") != a
    assert len(bk.list_backups(db)) == 3
    assert bk.derive_request_key("x", "full", ALL, None, "ann") == bk.derive_request_key("x", "full", ALL, None,
                                                                                           "ann")
    with pytest.raises(bk.BackupError, match="unknown scope"):
        bk.create_backup(settings, db, name="x", scope={"everything": True}, created_by="ann")
    with pytest.raises(bk.BackupError, match="parent"):
        bk.create_backup(settings, db, name="x", backup_type="incremental", scope=ALL, created_by="ann")


def test_unwritable_target_fails_cleanly(settings: Settings, db: Database) -> None:
    """The backups location is not a directory we can write into: failed with a message, nothing left."""
    _seed(settings, db)
    shutil.rmtree(settings.backups_dir)
    settings.backups_dir.write_text("a file where the backups dir should be")
    bid = _backup(settings, db)
    b = bk.get_backup(db, bid)
    assert b["status"] == "failed" and "cannot write the backup" in b["error_message"]
    assert str(settings.backups_dir) in b["error_message"] and b["completed_at"]
    assert bk.list_backups(db, status="completed") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_target_fails_cleanly(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    settings.backups_dir.chmod(0o500)
    try:
        bid = _backup(settings, db)
    finally:
        settings.backups_dir.chmod(0o700)
    b = bk.get_backup(db, bid)
    assert b["status"] == "failed" and "Permission denied" in b["error_message"]


def test_disk_full_fails_cleanly(settings: Settings, db: Database) -> None:
    """A real tiny filesystem (tmpfs) under the backups dir: ENOSPC → failed, temp removed."""
    _seed(settings, db)
    (settings.images_dir / "big.fits").write_bytes(os.urandom(600_000))
    target = settings.backups_dir
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        bid = _backup(settings, db)
        b = bk.get_backup(db, bid)
        assert b["status"] == "failed" and "no space left" in b["error_message"]
        assert list(target.iterdir()) == []
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_delete_prune_and_recover(settings: Settings, db: Database) -> None:
    _seed(settings, db)
    old = _backup(settings, db, name="old")
    new = _backup(settings, db, name="new")
    with db.session() as s:
        s.get_one(m.BackupRecord, old).created_at = datetime(2020, 1, 1, tzinfo=UTC)
    assert bk.prune_backups(settings, db, {"full": 30}) == [old]
    assert not (settings.backups_dir / old).exists() and bk.get_backup(db, old) is None
    running = bk.create_backup(settings, db, name="r", scope=ALL, created_by="ann")
    with db.session() as s:
        s.get_one(m.BackupRecord, running).status = "running"
    (settings.backups_dir / f".tmp-{running}").mkdir()
    with pytest.raises(bk.BackupError, match="running"):
        bk.delete_backup(settings, db, running)
    assert bk.recover_interrupted(settings, db) == [running]
    assert bk.get_backup(db, running)["status"] == "failed"
    assert not (settings.backups_dir / f".tmp-{running}").exists()
    bk.delete_backup(settings, db, new)
    assert bk.list_backups(db) == [bk.get_backup(db, running)]


def test_format_size() -> None:
    assert bk.format_size(0) == "0 B" and bk.format_size(1536) == "1.5 KB"
    assert bk.format_size(int(1.2 * 1024**3)) == "1.2 GB"


def test_concurrent_retries_create_one_backup(settings: Settings, db: Database) -> None:
    import threading

    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(bk.create_backup(
        settings, db, name="x", scope=ALL, created_by="ann", request_key="same"))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ids) == 8 and len(set(ids)) == 1 and len(bk.list_backups(db)) == 1


def test_concurrent_runs_of_one_backup_run_it_once(settings: Settings, db: Database) -> None:
    import threading

    _seed(settings, db)
    bid = bk.create_backup(settings, db, name="x", scope=NO_MS, created_by="ann")
    threads = [threading.Thread(target=bk.run_backup, args=(settings, db, bid)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    b = bk.get_backup(db, bid)
    assert b["status"] == "completed", b["error_message"]
    assert bk.validate_backup(settings, db, bid)["is_valid"]


def test_config_and_catalogues_restored_beside_the_data(tmp_path: Path) -> None:
    from engine.settings import load_settings

    cfg = tmp_path / "config.toml"
    cfg.write_text("[tui]\nrefresh_s = 3.0\n")
    cat = tmp_path / "cat" / "vla_calibrators.csv"
    cat.parent.mkdir()
    cat.write_text("name,ra,dec\n3C286,202.78,30.51\n")
    settings = load_settings(cfg, {"data_dir": tmp_path / "data", "calibration": {"catalogue_files": [cat]}})
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    try:
        bid = _backup(settings, db, scope={k: False for k in bk.SCOPE_KEYS} | {"pipeline_configs": True,
                                                                               "catalogs": True})
        man = json.loads((settings.backups_dir / bid / "manifest.json").read_text())
        assert {"config/config.toml", "catalogs/vla_calibrators.csv"} <= {f["path"] for f in man["files"]}
        p = bk.restore_preview(settings, db, bid, {"catalogs": True, "pipeline_configs": True}, False)
        assert sum("move them into place" in w for w in p["warnings"]) == 2
        rid = bk.start_restore(settings, db, bid, scope={"catalogs": True, "pipeline_configs": True},
                               started_by="ann")
        bk.run_restore(settings, db, rid)
        assert bk.get_restore(db, rid)["status"] == "completed"
        assert (settings.data_dir / f"config.restore-{rid}" / "config.toml").read_text() == cfg.read_text()
        assert (settings.data_dir / f"catalogs.restore-{rid}" / "vla_calibrators.csv").read_text() == cat.read_text()
    finally:
        db.dispose()
