"""The Backups screen: real backups on disk, real validation, restores and deletes through the console."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from textual.widgets import DataTable, Static

from engine import backups as bk
from engine import triggers as tg
from engine.db import Database
from engine.db import models as m
from engine.settings import Settings
from screens.backup_dialogs import CreateBackupScreen, ValidationScreen
from screens.backup_detail import BackupDetailScreen
from screens.backup_restore import RestorePreviewScreen
from screens.confirm import ConfirmScreen
from screens.keymap import action_entries
from tui_helpers import FIXED_NOW, make_app, settle

FILES = {"catalogs": True, "pipeline_configs": False, "images": True, "measurement_sets": False}
SCOPE = {**FILES, "job_history": True, "qa_ratings": True}
GROUP = "2026-11-29T01:00:00"


def seed_files(settings: Settings, db: Database) -> None:
    """A calibration table, an image, a measurement set and one observation group."""
    (settings.caltables_dir / "cal_0834").mkdir(parents=True, exist_ok=True)
    (settings.caltables_dir / "cal_0834" / "bandpass.npz").write_bytes(b"bandpass" * 200)
    (settings.images_dir / "g1.fits").write_bytes(b"SIMPLE  =" + b"\0" * 2871)
    (settings.ms_dir / "g1.ms").mkdir(parents=True, exist_ok=True)
    (settings.ms_dir / "g1.ms" / "table.f0").write_bytes(b"ms data")
    with db.session() as s:
        s.add(m.ObservationGroup(id=GROUP, group_time=FIXED_NOW - timedelta(hours=11), state="converted",
                                 n_subbands=16))


def real_backup(settings: Settings, db: Database, name: str = "nightly", *, hours_ago: float = 2) -> str:
    """A backup made by the engine, its times pinned relative to the console's fixed clock."""
    bid = bk.create_backup(settings, db, name=name, scope=SCOPE, created_by="ann")
    bk.run_backup(settings, db, bid)
    with db.session() as s:
        rec = s.get_one(m.BackupRecord, bid)
        assert rec.status == "completed", rec.error_message
        rec.created_at = FIXED_NOW - timedelta(hours=hours_ago)
        rec.completed_at = rec.created_at + timedelta(seconds=4)
    return bid


def rows(table: DataTable) -> list[list[object]]:  # type: ignore[type-arg]
    return [list(table.get_row_at(i)) for i in range(table.row_count)]


def text(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one(selector, Static).render())


# --------------------------------------------------------------------------- a populated history
def seed_history(settings: Settings, db: Database) -> dict[str, str]:
    """A week of backups in every state, two restores and a nightly schedule that ran at 02:00."""
    t = FIXED_NOW
    files = {"catalogs": True, "pipeline_configs": True, "images": True, "measurement_sets": False}
    scope = {**files, "job_history": True, "qa_ratings": True}
    ids = {"weekly": "a" * 32, "nightly": "b" * 32, "upgrade": "c" * 32, "hourly": "d" * 32, "now": "e" * 32}
    with db.session() as s:
        s.add(m.BackupRecord(id=ids["weekly"], name="weekly full", backup_type="full", scope=scope,
                             status="completed", size_bytes=1_284_000_000, item_count=1542, created_by="ops",
                             created_at=t - timedelta(days=2), completed_at=t - timedelta(days=2) + timedelta(minutes=6),
                             backup_path=str(settings.backups_dir / ids["weekly"]), checksum="f" * 64,
                             validation_status="valid", validated_at=t - timedelta(days=1)))
        s.add(m.BackupRecord(id=ids["nightly"], name="nightly 2026-11-29", backup_type="differential",
                             scope=scope, status="completed", size_bytes=48 * 1024**2 + 200 * 1024, item_count=61,
                             created_by="trigger", parent_backup_id=ids["weekly"],
                             created_at=t - timedelta(hours=10), completed_at=t - timedelta(hours=10) + timedelta(minutes=1),
                             backup_path=str(settings.backups_dir / ids["nightly"]), checksum="e" * 64))
        s.add(m.BackupRecord(id=ids["upgrade"], name="before upgrade", backup_type="full", scope=scope,
                             status="completed", size_bytes=1_301_000_000, item_count=1560, created_by="console",
                             created_at=t - timedelta(hours=3), completed_at=t - timedelta(hours=3) + timedelta(minutes=7),
                             backup_path=str(settings.backups_dir / ids["upgrade"]), checksum="d" * 64,
                             validation_status="invalid", validated_at=t - timedelta(hours=2)))
        s.add(m.BackupRecord(id=ids["hourly"], name="hourly db", backup_type="full",
                             scope={k: k in ("job_history", "qa_ratings") for k in scope}, status="failed",
                             size_bytes=None, created_by="trigger", created_at=t - timedelta(hours=1),
                             completed_at=t - timedelta(hours=1) + timedelta(seconds=3),
                             backup_path=str(settings.backups_dir / ids["hourly"]),
                             error_message="no space left on device while writing the backup under "
                                           "/data/backups"))
        s.add(m.BackupRecord(id=ids["now"], name="Backup 2026-11-29 11:58", backup_type="full", scope=scope,
                             status="running", created_by="console", created_at=t - timedelta(minutes=2),
                             backup_path=str(settings.backups_dir / ids["now"])))
        s.flush()
        s.add(m.RestoreJob(backup_id=ids["weekly"], status="completed", scope={"images": True,
                           "_overwrite_existing": False}, items_restored=40, items_total=42,
                           errors=["skipped images/a.fits: exists and differs", "skipped images/b.fits: differs"],
                           started_by="ops", started_at=t - timedelta(hours=20),
                           completed_at=t - timedelta(hours=20) + timedelta(minutes=2)))
        s.add(m.RestoreJob(backup_id=ids["upgrade"], status="failed", scope={"images": True},
                           items_restored=0, items_total=1560, started_by="console",
                           errors=["backup cccc (before upgrade) failed validation, refusing to restore: 1 file(s) "
                                   "missing or corrupted: images/x.fits"],
                           started_at=t - timedelta(hours=2), completed_at=t - timedelta(hours=2)))
    # The running backup has written part of its temporary directory.
    tmp = settings.backups_dir / f"{bk.TMP_PREFIX}{ids['now']}" / "database"
    tmp.mkdir(parents=True)
    (tmp / "pipeline.sqlite3").write_bytes(b"\0" * (3_584 * 1024))
    trig = tg.create_trigger(db, {"name": "nightly backup", "event": "schedule", "pipeline_id": "backup",
                                  "schedule": {"cron": "0 2 * * *"},
                                  "parameters": {"backup_type": "differential"}}, "ops")
    with db.session() as s:
        s.add(m.TriggerExecution(trigger_id=trig["id"], status="success", event_type="schedule",
                                 job_id=ids["nightly"], started_at=t - timedelta(hours=10),
                                 completed_at=t - timedelta(hours=10)))
    ids["trigger"] = trig["id"]
    return ids


async def test_history_shows_every_state_with_progress_and_restores(settings: Settings, db: Database) -> None:
    seed_history(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        table = app.screen.query_one("#table", DataTable)
        got = rows(table)
        assert [r[1] for r in got] == ["Backup 2026-11-29…", "hourly db", "before upgrade",
                                       "nightly 2026-11-29", "weekly full"]   # newest first
        assert got[0][3] == "running" and got[0][4] == "3.5 MB…"             # bytes written so far
        assert got[1][3] == "failed" and got[2][6] == "invalid" and got[4][6] == "valid"
        assert "running: 3.5 MB written so far" in text(app, "#selected")
        await pilot.press("down")
        await pilot.pause()
        assert "failed: no space left on device" in text(app, "#selected")
        restores = rows(app.screen.query_one("#restores", DataTable))
        assert restores[0][1] == "before upgrade" and restores[0][3].startswith("failed: backup cccc")
        assert restores[1][3] == "completed 40/42, 2 kept"
        # The backup grows and completes: the next refresh shows it, same row.
        with db.session() as s:
            rec = s.get_one(m.BackupRecord, "e" * 32)
            rec.status, rec.size_bytes, rec.item_count = "completed", 1_400_000_000, 1561
        app.action_refresh_view()
        await settle(pilot)
        assert rows(table)[0][3:5] == ["completed", "1.3 GB"]


async def test_schedules_list_backup_triggers_with_next_and_last_run(settings: Settings, db: Database) -> None:
    ids = seed_history(settings, db)
    tg.create_trigger(db, {"name": "reprocess", "event": "manual", "pipeline_id": "retry-failed"}, "ops")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        sched = rows(app.screen.query_one("#schedules", DataTable))
        assert len(sched) == 1                                   # only triggers whose pipeline is a backup
        name, cron, last = sched[0]
        assert name == "nightly backup\nDaily at 02:00"
        assert cron == "0 2 * * *\nnext 11-30 02:00"            # by the console's clock (12:00 on 11-29)
        assert last == "11-29 02:00\nbackup completed, 48.2 MB"
        assert "Backup schedules" in text(app, "#lower-title")
        tg.set_status(db, ids["trigger"], "disabled", "ops")
        app.action_refresh_view()
        await settle(pilot)
        assert rows(app.screen.query_one("#schedules", DataTable))[0][1] == "0 2 * * *\ndisabled"


def test_snapshot_history(snap_compare, settings: Settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    seed_history(settings, db)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_schedules(snap_compare, settings: Settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    seed_history(settings, db)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --------------------------------------------------------------------------- create
async def test_create_makes_a_real_backup_that_validates(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CreateBackupScreen)
        assert "every chosen file, whole" in text(app, "#type-help")
        await pilot.press(*"before upgrade")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, CreateBackupScreen)
        table = app.screen.query_one("#table", DataTable)
        assert rows(table)[0][1:4] == ["before upgrade", "full", "completed"]
    [b] = bk.list_backups(db)
    assert (b["name"], b["type"], b["status"], b["created_by"]) == ("before upgrade", "full", "completed", "console")
    manifest = json.loads((Path(b["storage_location"]) / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == {"database/pipeline.sqlite3", "caltables/cal_0834/bandpass.npz",
                                                     "images/g1.fits"}   # the form's default: no MS
    v = bk.validate_backup(settings, db, b["id"])
    assert v["is_valid"] and v["files_verified"] == 3


async def test_create_form_refuses_an_incremental_with_nothing_to_build_on(settings: Settings, db: Database) -> None:
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#type-incremental").value = True
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, CreateBackupScreen)        # not dismissed
        assert "needs a completed backup to build on" in text(app, "#problem")
        await pilot.press("escape")
        await pilot.pause()
    assert bk.list_backups(db) == []


async def test_incremental_from_the_form_builds_on_the_newest_backup(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    parent = real_backup(settings, db, "weekly")
    (settings.images_dir / "g2.fits").write_bytes(b"SIMPLE  = new image")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#type-incremental").value = True
        await pilot.pause()
        assert "since the newest completed backup, 'weekly'" in text(app, "#type-help")
        await pilot.press("ctrl+s")
        await settle(pilot)
    newest = bk.list_backups(db)[0]
    assert newest["type"] == "incremental" and newest["parent_backup_id"] == parent
    assert newest["status"] == "completed", newest["error_message"]
    manifest = json.loads((Path(newest["storage_location"]) / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == {"database/pipeline.sqlite3", "images/g2.fits"}


def test_snapshot_create_form(snap_compare, settings: Settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    seed_history(settings, db)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        pilot.app.screen.query_one("#type-differential").value = True
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --------------------------------------------------------------------------- validate
def damage(settings: Settings, db: Database, bid: str) -> None:
    path = Path(bk.get_backup(db, bid)["storage_location"]) / "images" / "g1.fits"
    path.write_bytes(b"bit rot" + path.read_bytes()[7:])


async def test_validate_shows_a_damaged_backup_invalid_with_the_reason(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    bid = real_backup(settings, db)
    damage(settings, db, bid)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert isinstance(app.screen, ValidationScreen)
        assert "INVALID" in text(app, "#verdict")
        assert "1 file(s) missing or corrupted: images/g1.fits" in text(app, "#reason")
        assert "images/g1.fits" in text(app, "#corrupted")
        assert "3 file(s) checked against the manifest: 2 intact, 1 missing or damaged" in text(app, "#counts")
        await pilot.press("escape")
        await settle(pilot)
        assert rows(app.screen.query_one("#table", DataTable))[0][6] == "invalid"
    assert bk.get_backup(db, bid)["validation_status"] == "invalid"


async def test_validate_a_sound_backup(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    bid = real_backup(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert "VALID" in text(app, "#verdict") and "INVALID" not in text(app, "#verdict")
        assert not app.screen.query("#reason")
    assert bk.get_backup(db, bid)["validation_status"] == "valid"


def test_snapshot_invalid_backup(snap_compare, settings: Settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    seed_files(settings, db)
    bid = real_backup(settings, db)
    damage(settings, db, bid)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --------------------------------------------------------------------------- restore
def change_after_backup(settings: Settings, db: Database) -> None:
    """What goes wrong after the backup: an image overwritten, a calibration table lost, a new group."""
    (settings.images_dir / "g1.fits").write_bytes(b"overwritten by a bad imaging run")
    (settings.caltables_dir / "cal_0834" / "bandpass.npz").unlink()
    with db.session() as s:
        s.add(m.ObservationGroup(id="2026-11-29T11:00:00", group_time=FIXED_NOW - timedelta(hours=1),
                                 state="pending", n_subbands=16))


def planned(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {str(r[1]): str(r[0]) for r in rows(app.screen.query_one("#files", DataTable))}


async def test_restore_previews_then_restores_files_and_stages_the_database(settings: Settings,
                                                                            db: Database) -> None:
    seed_files(settings, db)
    original = (settings.images_dir / "g1.fits").read_bytes()
    bid = real_backup(settings, db)
    change_after_backup(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, RestorePreviewScreen)
        assert planned(app) == {"database/pipeline.sqlite3": "stage", "caltables/cal_0834/bandpass.npz": "add",
                                "images/g1.fits": "keep (differs)"}
        assert "observation_groups 1 → 2" in text(app, "#tables")      # rows: backup → live now
        assert "the database is staged and replaces the live one at the service's next start" in text(app, "#notes")
        assert "1 kept: differ, overwrite off" in text(app, "#summary")
        await pilot.press("o")                                           # overwrite what differs
        await settle(pilot)
        assert planned(app)["images/g1.fits"] == "overwrite"
        assert "1 added, 1 overwritten" in text(app, "#summary")
        await pilot.press("R")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.question.startswith("Restore from backup 'nightly' (created 2026-11-29 10:00 UTC)?")
        assert "Files: 1 added, 1 overwritten." in confirm.question
        assert "replaces the live database at the next start" in confirm.question
        await pilot.press("y")
        await settle(pilot)
        restores = rows(app.screen.query_one("#restores", DataTable))
        assert restores[0][1:] == ["nightly", "console", "completed 3/3, db staged: next start"]
        banner = app.screen.query_one("#staged", Static)
        assert banner.display and "restored from backup 'nightly' is staged" in str(banner.render())
    assert (settings.images_dir / "g1.fits").read_bytes() == original
    assert (settings.caltables_dir / "cal_0834" / "bandpass.npz").read_bytes() == b"bandpass" * 200
    with db.session() as s:      # the live database is untouched until the next start ...
        assert s.get(m.ObservationGroup, "2026-11-29T11:00:00") is not None
    db.dispose()
    applied = bk.apply_pending_restore(settings)                     # ... which the runtime does at start
    assert applied is not None and applied["backup_id"] == bid
    restored = Database(settings.db_path)
    try:
        with restored.session() as s:
            assert s.get(m.ObservationGroup, "2026-11-29T11:00:00") is None
            assert s.get(m.ObservationGroup, GROUP) is not None
    finally:
        restored.dispose()


async def test_restore_of_files_only_leaves_the_database_alone(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    real_backup(settings, db)
    change_after_backup(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        app.screen.query_one("#what").deselect("database")
        await settle(pilot)
        assert planned(app) == {"caltables/cal_0834/bandpass.npz": "add", "images/g1.fits": "keep (differs)"}
        assert not text(app, "#tables")
        await pilot.press("R")
        await pilot.pause()
        assert "Files: 1 added, 1 kept as they are." in app.screen.question
        assert "staged" not in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert rows(app.screen.query_one("#restores", DataTable))[0][3] == "completed 1/2, 1 kept"
        assert not app.screen.query_one("#staged", Static).display
    assert bk.pending_restores(settings) == []
    assert (settings.images_dir / "g1.fits").read_bytes() == b"overwritten by a bad imaging run"  # kept
    assert (settings.caltables_dir / "cal_0834" / "bandpass.npz").is_file()


async def test_restore_refuses_a_backup_that_is_not_completed(settings: Settings, db: Database) -> None:
    seed_history(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("R")                     # the running backup is selected
        await pilot.pause()
        assert not isinstance(app.screen, RestorePreviewScreen)
        assert any("only a completed backup can be restored: 'Backup 2026-11-29 11:58'" in n.message
                   for n in app._notifications)
    assert len(bk.list_restores(db, 10)) == 2                # the two seeded ones, no new one


def test_snapshot_restore_preview(snap_compare, settings: Settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    seed_files(settings, db)
    real_backup(settings, db)
    change_after_backup(settings, db)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --------------------------------------------------------------------------- delete, detail, read-only
async def test_delete_asks_naming_the_backup_then_removes_it_and_its_files(settings: Settings,
                                                                           db: Database) -> None:
    seed_files(settings, db)
    bid = real_backup(settings, db)
    path = Path(bk.get_backup(db, bid)["storage_location"])
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "'nightly' (created 2026-11-29 10:00 UTC)" in app.screen.question
        await pilot.press("n")                     # no: nothing happens
        await settle(pilot)
        assert path.is_dir() and bk.get_backup(db, bid) is not None
        await pilot.press("D")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert app.screen.query_one("#empty", Static).display
    assert not path.exists() and bk.get_backup(db, bid) is None


async def test_delete_of_a_parent_is_refused_with_the_engine_reason(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    parent = real_backup(settings, db, "weekly", hours_ago=5)
    child = bk.create_backup(settings, db, name="diff", backup_type="differential", scope=SCOPE, created_by="ann")
    bk.run_backup(settings, db, child)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("down")                  # the older one: weekly, the parent of diff
        await pilot.press("D")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert any(f"is the parent of {child}" in n.message for n in app._notifications)
    assert bk.get_backup(db, parent) is not None


async def test_detail_shows_contents_chain_and_restores(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    real_backup(settings, db, "weekly", hours_ago=5)
    (settings.images_dir / "g2.fits").write_bytes(b"SIMPLE  = new image")
    child = bk.create_backup(settings, db, name="diff", backup_type="differential", scope=SCOPE, created_by="ann")
    bk.run_backup(settings, db, child)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, BackupDetailScreen)
        assert "full" in text(app, "#chain") and "'weekly'" in text(app, "#chain")
        contents = text(app, "#contents")
        assert "images" in contents and "database" in contents and "caltables" not in contents  # unchanged
        assert text(app, "#restores") == "none"


async def test_read_only_console_shows_the_actions_disabled(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    bid = real_backup(settings, db)
    app = make_app(db, settings=settings, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        entries = {e.id: e for e in action_entries(app.screen)}
        for action in ("backups.create", "backups.validate", "backups.restore", "backups.delete"):
            assert entries[action].disabled and "read-only" in entries[action].disabled
        assert entries["backups.detail"].disabled is None and entries["backups.schedules"].disabled is None
        for key in ("n", "v", "R", "D"):
            await pilot.press(key)
            await settle(pilot)
            assert not isinstance(app.screen, (CreateBackupScreen, ValidationScreen, RestorePreviewScreen,
                                               ConfirmScreen))
        await pilot.press("d")                     # reading is allowed
        await settle(pilot)
        assert isinstance(app.screen, BackupDetailScreen)
    b = bk.get_backup(db, bid)
    assert b is not None and b["validation_status"] is None and bk.list_restores(db, 10) == []


async def test_a_backup_that_completes_while_listed_widens_its_cells(settings: Settings, db: Database) -> None:
    bid = bk.create_backup(settings, db, name="nightly", scope=SCOPE, created_by="ann")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        table = app.screen.query_one("#table", DataTable)
        assert rows(table)[0][3:5] == ["pending", ""]
        assert "pending: waiting to start" in text(app, "#selected")
        bk.run_backup(settings, db, bid)
        app.action_refresh_view()
        await settle(pilot)
        assert rows(table)[0][3] == "completed"
        assert table.columns["status"].content_width >= len("completed")   # shown whole, not "complete"
        assert "not validated yet" in text(app, "#selected")


async def test_restore_from_a_damaged_backup_fails_and_writes_nothing(settings: Settings, db: Database) -> None:
    seed_files(settings, db)
    bid = real_backup(settings, db)
    bk.validate_backup(settings, db, bid)
    damage(settings, db, bid)
    bk.validate_backup(settings, db, bid)                  # its last validation: invalid
    change_after_backup(settings, db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert "this backup FAILED its last validation" in text(app, "#notes")
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        outcome = rows(app.screen.query_one("#restores", DataTable))[0][3]
        assert outcome.startswith(f"failed: backup {bid[:8]} (nightly) fai")
        assert any("failed validation, refusing to restore: 1 file(s) missing or corrupted: images/g1.fits"
                   in n.message for n in app._notifications)
        assert not app.screen.query_one("#staged", Static).display
        await pilot.press("d")                                 # the detail has the engine's whole reason
        await settle(pilot)
        assert "refusing to restore: 1 file(s) missing or corrupted: images/g1.fits" in text(app, "#restores")
    assert bk.pending_restores(settings) == []
    assert not (settings.caltables_dir / "cal_0834" / "bandpass.npz").exists()    # nothing was written
