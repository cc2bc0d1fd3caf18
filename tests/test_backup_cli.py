"""`contimg backup …` as an operator runs it: real subprocesses on a real data dir, real SQLite files,
offline restores with nothing running, a damaged live database, a server holding the data dir,
kill -9 in the middle of a backup, writers racing a backup, a full (tmpfs) disk."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import contimg_cmd, free_port, make_settings

from engine import backups as bk
from engine.backups import offline
from engine.db import Database
from engine.db import models as m


def run(data: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(contimg_cmd("--data-dir", str(data), "backup", *args), capture_output=True, text=True,
                          timeout=timeout)


def ids(data: Path) -> list[dict]:
    res = run(data, "list", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def seed(data: Path) -> None:
    """A live database with a few rows and some calibration tables and images on disk."""
    settings = make_settings(data.parent)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    with db.session() as s:
        for i in range(3):
            s.add(m.Rating(target_type="image", target_id=f"img{i}", username="ann", value=3))
    db.dispose()
    (settings.caltables_dir / "set1").mkdir(parents=True, exist_ok=True)
    (settings.caltables_dir / "set1" / "bandpass.npz").write_bytes(b"bandpass" * 500)
    (settings.images_dir / "g1.fits").write_bytes(b"SIMPLE  =" + b"\0" * 2871)


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    seed(d)
    return d


def test_cli_session_end_to_end(data: Path) -> None:
    """create each type, list, show, validate, preview, restore (offline), delete — on a fresh data dir."""
    for kind in ("full", "database_only", "caltables_only", "incremental"):
        res = run(data, "create", "--type", kind, "--name", f"n-{kind}")
        assert res.returncode == 0, res.stderr
        assert "completed" in res.stdout
    made = {b["name"][2:]: b for b in ids(data)}
    assert made["full"]["kind"] == "full" and made["database_only"]["kind"] == "database"
    assert made["caltables_only"]["kind"] == "caltables"
    assert made["incremental"]["type"] == "incremental"
    assert made["incremental"]["parent_backup_id"] == made["full"]["id"]
    cal = Path(made["caltables_only"]["storage_location"])
    assert (cal / "caltables/set1/bandpass.npz").is_file() and not (cal / "images").exists()
    assert not (Path(made["database_only"]["storage_location"]) / "caltables").exists()

    show = run(data, "show", made["full"]["id"])
    assert show.returncode == 0 and "images/g1.fits" in show.stdout and "database/pipeline.sqlite3" in show.stdout
    ok = run(data, "validate", made["full"]["id"])
    assert ok.returncode == 0 and "valid" in ok.stdout

    # a row added after the backup: the restore takes it away again, and says so per table
    db = Database(data / "pipeline.sqlite3")
    with db.session() as s:
        s.add(m.Rating(target_type="image", target_id="later", username="bob", value=1))
    db.dispose()
    preview = run(data, "restore", made["database_only"]["id"], "--preview")
    assert preview.returncode == 0 and "ratings" in preview.stdout
    assert count(data / "pipeline.sqlite3", "ratings") == 4  # the preview changed nothing
    refused = run(data, "restore", made["database_only"]["id"])  # no --yes and no terminal
    assert refused.returncode == 1 and "--yes" in refused.stderr
    res = run(data, "restore", made["database_only"]["id"], "--yes")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.strip().startswith("ratings"))
    assert line.split()[1:3] == ["4", "3"]
    assert count(data / "pipeline.sqlite3", "ratings") == 3
    assert list(data.glob("pipeline.sqlite3.pre-restore-*")), "the previous database is kept"
    after = {b["id"]: b for b in ids(data)}
    # the backups made after the restored point and the safety copy are known again
    assert {made[k]["id"] for k in made} <= set(after)
    safety = [b for b in after.values() if b["name"].startswith("safety copy before the restore")]
    assert len(safety) == 1 and safety[0]["status"] == "completed"
    assert run(data, "validate", safety[0]["id"]).returncode == 0
    assert run(data, "validate", made["database_only"]["id"]).returncode == 0  # its own row completed
    assert run(data, "restore", safety[0]["id"], "--yes").returncode == 0
    assert count(data / "pipeline.sqlite3", "ratings") == 4  # the safety copy brings the later row back

    gone = run(data, "delete", made["caltables_only"]["id"])
    assert gone.returncode == 0 and not cal.exists()
    assert run(data, "show", made["caltables_only"]["id"]).returncode == 1
    bad = run(data, "create", "--type", "nonsense")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_flipped_byte_fails_validation_naming_the_file_and_restore_is_refused(data: Path) -> None:
    assert run(data, "create", "--type", "full").returncode == 0
    b = ids(data)[0]
    image = Path(b["storage_location"]) / "images" / "g1.fits"
    raw = bytearray(image.read_bytes())
    raw[100] ^= 0x01
    image.write_bytes(bytes(raw))
    res = run(data, "validate", b["id"])
    assert res.returncode == 1 and "images/g1.fits" in res.stdout and "INVALID" in res.stdout
    before = (data / "pipeline.sqlite3").read_bytes()
    res = run(data, "restore", b["id"], "--yes")
    assert res.returncode == 1 and "not valid" in res.stderr and "images/g1.fits" in res.stderr
    assert (data / "pipeline.sqlite3").read_bytes() == before
    assert not list(data.glob("pipeline.sqlite3.pre-restore-*"))


def test_manifest_with_traversal_entries_is_refused(data: Path) -> None:
    assert run(data, "create", "--type", "database_only").returncode == 0
    b = ids(data)[0]
    mpath = Path(b["storage_location"]) / "manifest.json"
    man = json.loads(mpath.read_text())
    man["files"].append({"path": "images/../../../etc/evil", "size": 1, "sha256": "0" * 64})
    mpath.write_text(json.dumps(man))
    res = run(data, "validate", b["id"])
    assert res.returncode == 1 and "path traversal refused" in res.stdout
    res = run(data, "restore", b["id"], "--yes")
    assert res.returncode == 1 and "path traversal refused" in res.stderr
    assert not (data.parent / "etc").exists()
    assert run(data, "restore", "../../etc", "--yes").returncode == 1


def test_offline_restore_when_the_live_database_is_garbage(data: Path) -> None:
    assert run(data, "create", "--type", "database_only").returncode == 0
    bid = ids(data)[0]["id"]
    live = data / "pipeline.sqlite3"
    live.write_bytes(b"this is not a database" * 1000)
    status = subprocess.run(contimg_cmd("--data-dir", str(data), "status"), capture_output=True, text=True)
    assert status.returncode != 0  # the damaged database stops the other commands
    Path(f"{live}-wal").write_bytes(b"junk wal")
    res = run(data, "restore", bid, "--yes")
    assert res.returncode == 0, res.stderr
    assert "raw files are in" in res.stdout  # no clean safety copy of garbage: its bytes are kept as they were
    raw = next(data.glob("backups/safety-*"))
    assert (raw / "pipeline.sqlite3").read_bytes().startswith(b"this is not a database")
    assert (raw / "pipeline.sqlite3-wal").read_bytes() == b"junk wal"
    assert not Path(f"{live}-wal").exists() or Path(f"{live}-wal").read_bytes() != b"junk wal"
    assert count(live, "ratings") == 3 and offline.sqlite_integrity(live) == "ok"
    assert subprocess.run(contimg_cmd("--data-dir", str(data), "status"), capture_output=True).returncode == 0


def test_restore_of_an_older_schema_is_migrated_to_head(data: Path, tmp_path: Path) -> None:
    """A backup taken before the last migration: restored, then upgraded to head."""
    settings = make_settings(tmp_path)
    old = tmp_path / "old.sqlite3"
    db = Database(old)
    db.upgrade("0011")
    db.dispose()
    conn = sqlite3.connect(old)
    conn.execute("INSERT INTO ratings (id, target_type, target_id, username, category, value, created_at, "
                 "updated_at) VALUES ('r1', 'image', 'x', 'ann', 'overall', 5, '2026-01-01 00:00:00', "
                 "'2026-01-01 00:00:00')")
    conn.commit()
    conn.close()
    bdir = settings.backups_dir / "oldschema0000000000000000000001"
    (bdir / "database").mkdir(parents=True)
    bk.copy_database(old, bdir / "database" / "pipeline.sqlite3")
    copy = bdir / "database" / "pipeline.sqlite3"
    from engine.backups.common import _overall_checksum, _sha256

    files = [{"path": "database/pipeline.sqlite3", "size": copy.stat().st_size, "sha256": _sha256(copy)}]
    (bdir / "manifest.json").write_text(json.dumps({"format": 1, "backup_id": bdir.name, "name": "old", "type": "full",
                                                    "files": files, "checksum": _overall_checksum(files)}))
    res = run(data, "restore", bdir.name, "--yes")
    assert res.returncode == 0, res.stderr
    assert f"0011 → {Database.head_revision()} (head)" in res.stdout
    db = Database(data / "pipeline.sqlite3")
    assert db.current_revision() == Database.head_revision()
    db.dispose()
    assert count(data / "pipeline.sqlite3", "ratings") == 1


def test_restore_refused_while_serve_holds_the_data_dir(data: Path) -> None:
    assert run(data, "create", "--type", "database_only").returncode == 0
    bid = ids(data)[0]["id"]
    proc = subprocess.Popen(contimg_cmd("--data-dir", str(data), "serve", "--port", str(free_port())),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stderr:  # type: ignore[union-attr]
            if "serving REST" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None
        before = (data / "pipeline.sqlite3").stat().st_ino
        res = run(data, "restore", bid, "--yes")
        assert res.returncode == 1 and "in use by pid" in res.stdout + res.stderr and "refusing" in res.stderr
        assert str(proc.pid) in res.stdout
        assert (data / "pipeline.sqlite3").stat().st_ino == before
        assert run(data, "restore", bid, "--preview").returncode == 0  # a preview is harmless
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert run(data, "restore", bid, "--yes").returncode == 0  # once it stopped


def test_runtime_refuses_to_start_during_an_offline_restore(tmp_path: Path) -> None:
    import asyncio

    from contimg_console.runtime import Runtime, StartupError
    from engine.backups.lock import DataDirLock

    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    with DataDirLock(settings.data_dir, exclusive=True, purpose="contimg backup restore"):
        with pytest.raises(StartupError, match="contimg backup restore"):
            asyncio.run(Runtime(settings, with_api=False).start())


def test_kill_9_during_a_backup_leaves_a_failed_row_and_no_partial_files(data: Path, tmp_path: Path) -> None:
    import asyncio

    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path)
    big = settings.images_dir / "big"
    big.mkdir()
    for i in range(6):
        (big / f"p{i}.fits").write_bytes(os.urandom(1 << 20) * 40)  # 240 MB: long enough to be caught
    proc = subprocess.Popen(contimg_cmd("--data-dir", str(data), "backup", "create", "--type", "full"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    tmp = None
    while time.monotonic() < deadline and proc.poll() is None:
        tmps = list(settings.backups_dir.glob(".tmp-*"))
        if tmps and any(p.name.endswith(".fits") for p in tmps[0].rglob("*")):
            tmp = tmps[0]
            break
        time.sleep(0.01)
    assert tmp is not None, "the backup finished before it could be killed"
    proc.kill()
    proc.wait()
    bid = tmp.name[len(".tmp-"):]
    db = Database(settings.db_path)
    assert bk.get_backup(db, bid)["status"] == "running"
    db.dispose()

    async def restart() -> None:
        rt = Runtime(settings, with_api=False)
        await rt.start()
        await rt.stop()
    asyncio.run(restart())
    db = Database(settings.db_path)
    row = bk.get_backup(db, bid)
    db.dispose()
    assert row["status"] == "failed" and "interrupted" in row["error_message"]
    assert not tmp.exists() and not (settings.backups_dir / bid).exists()


def test_backup_during_heavy_writes_restores_row_for_row_to_the_backup_point(data: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    live = settings.db_path
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        conn = sqlite3.connect(live, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS soak (n INTEGER PRIMARY KEY, payload BLOB)")
        n = 0
        while not stop.is_set():
            n += 1
            conn.execute("INSERT INTO soak (n, payload) VALUES (?, ?)", (n, os.urandom(2000)))
            conn.commit()
            written.append(n)
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(written) < 500:
            time.sleep(0.01)
        db = Database(live)
        bid = bk.create_backup(settings, db, name="under load", scope={}, created_by="test", kind="database")
        bk.run_backup(settings, db, bid)
        assert bk.get_backup(db, bid)["status"] == "completed"
        db.dispose()
        mark = len(written)
        while len(written) < mark + 200:  # the writers went on after the backup point
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    copy = settings.backups_dir / bid / "database" / "pipeline.sqlite3"
    conn = sqlite3.connect(copy)
    at_backup = conn.execute("SELECT n, payload FROM soak ORDER BY n").fetchall()
    conn.close()
    k = len(at_backup)
    assert [r[0] for r in at_backup] == list(range(1, k + 1)), "the copy is a consistent prefix"
    assert 500 <= k < len(written)
    res = run(data, "restore", bid, "--yes")
    assert res.returncode == 0, res.stderr
    conn = sqlite3.connect(live)
    restored = conn.execute("SELECT n, payload FROM soak ORDER BY n").fetchall()
    conn.close()
    assert restored == at_backup


def test_full_disk_fails_with_a_clear_error(data: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (settings.images_dir / "big.fits").write_bytes(os.urandom(3 << 20))
    target = settings.backups_dir
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"no size-capped directory here (mounting a tmpfs needs root): {res.stderr.decode().strip()}")
    try:
        out = run(data, "create", "--type", "full")
        assert out.returncode == 1 and "no space left on device" in out.stderr
        assert list(target.iterdir()) == []
    finally:
        subprocess.run(["umount", str(target)], check=False)
    rows = ids(data)
    assert rows[0]["status"] == "failed" and "no space left" in rows[0]["error_message"]


def test_force_restores_despite_a_holder_and_says_so(data: Path) -> None:
    from engine.backups.lock import DataDirLock

    assert run(data, "create", "--type", "database_only").returncode == 0
    bid = ids(data)[0]["id"]
    with DataDirLock(data, exclusive=False, purpose="a console in another terminal"):
        refused = run(data, "restore", bid, "--yes")
        assert refused.returncode == 1 and "a console in another terminal" in refused.stdout
        forced = run(data, "restore", bid, "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force given" in forced.stdout and "database restored" in forced.stdout


def test_restore_of_a_copy_from_a_newer_schema_is_refused_before_the_swap(data: Path) -> None:
    from engine.backups.common import _overall_checksum, _sha256

    assert run(data, "create", "--type", "database_only").returncode == 0
    b = ids(data)[0]
    bdir = Path(b["storage_location"])
    copy = bdir / "database" / "pipeline.sqlite3"
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()
    man = json.loads((bdir / "manifest.json").read_text())
    man["files"][0].update(size=copy.stat().st_size, sha256=_sha256(copy))
    man["checksum"] = _overall_checksum(man["files"])
    (bdir / "manifest.json").write_text(json.dumps(man))
    before = (data / "pipeline.sqlite3").read_bytes()
    res = run(data, "restore", b["id"], "--yes")
    assert res.returncode == 1 and "9999_from_the_future" in res.stderr and "does not know" in res.stderr
    assert (data / "pipeline.sqlite3").read_bytes() == before
