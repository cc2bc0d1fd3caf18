"""Offline restore of the database, from the shell, with nothing running (``contimg backup restore``).

It must work when ``pipeline.sqlite3`` is damaged, so nothing here opens the live database
through the ORM before the swap: the backup is found and verified from its own directory
(manifest, hashes, the copy's integrity check), the data dir's lock is taken exclusively (refused
while a console or server holds it, unless forced), the live database is copied aside as a
safety backup, the verified copy replaces it in one rename (the old file and its ``-wal``/``-shm``
kept as ``pipeline.sqlite3.pre-restore-<time>``), the result is migrated to head, and backups
made after the restored point (present on disk, unknown to the older database) are re-registered.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.backups.common import (
    require_sqlite,
    DB_ENTRY,
    MANIFEST,
    TMP_PREFIX,
    BackupError,
    _iso,
    _load_manifest,
    _now,
    _overall_checksum,
    _sha256,
    copy_database,
    default_kind,
    sqlite_integrity,
)
from engine.backups.lock import DataDirBusy, DataDirLock
from engine.backups.swap import apply_database_restore, pending_restores
from engine.backups.validate import _verify_files
from engine.processing.recovery import pid_alive

log = logging.getLogger("engine.backups")


def backup_dir(settings: Any, backup_id: str) -> Path:
    """The directory of a backup, by id, from the backups dir alone (no database needed)."""
    if not backup_id or "/" in backup_id or backup_id.startswith(".") or "\x00" in backup_id:
        raise BackupError(f"{backup_id!r} is not a backup id")
    path = Path(settings.backups_dir) / backup_id
    if not (path / MANIFEST).is_file():
        raise BackupError(f"no backup {backup_id} in {settings.backups_dir} (no {MANIFEST} there)")
    return path


def verify_offline(settings: Any, backup_id: str) -> dict[str, Any]:
    """Validate a backup from its files alone: {"is_valid", "reasons", "corrupted_files", "manifest"}."""
    path = backup_dir(settings, backup_id)
    reasons: list[str] = []
    corrupted: list[str] = []
    manifest: dict[str, Any] = {}
    try:
        manifest = _load_manifest(path)  # refuses ../, absolute and symlinked entries, naming them
        _verified, corrupted = _verify_files(path, manifest)
        if corrupted:
            reasons.append(f"{len(corrupted)} file(s) missing or corrupted: {', '.join(corrupted[:5])}")
        if _overall_checksum(manifest["files"]) != manifest.get("checksum"):
            reasons.append("manifest checksum does not match its file list")
        if DB_ENTRY not in [e["path"] for e in manifest["files"]]:
            reasons.append("the manifest lists no database copy")
        elif DB_ENTRY not in corrupted:
            verdict = sqlite_integrity(path / DB_ENTRY)
            if verdict != "ok":
                reasons.append(f"database copy integrity check: {verdict}")
            else:
                check_revision(path / DB_ENTRY)
    except BackupError as exc:
        reasons.append(str(exc))
    return {"backup_id": backup_id, "is_valid": not reasons, "reasons": reasons, "corrupted_files": corrupted,
            "manifest": manifest, "path": str(path)}


def check_revision(copy: Path) -> str | None:
    """The schema revision of a database copy; refused when this contimg cannot migrate from it
    (a copy made by a newer version), so the live database is never swapped for one it cannot open."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from engine.db.database import alembic_config

    try:
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None  # no alembic_version: an unversioned database, migrated from scratch
    rev = row[0] if row else None
    if rev is None:
        return None
    try:
        ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(rev)
    except CommandError:
        raise BackupError(f"the backup's database is at schema revision {rev}, which this contimg does not "
                          "know (a newer version wrote it); install that version to restore it") from None
    return rev


def row_counts(path: Path) -> dict[str, int] | str:
    """Rows per table of a database file opened read-only, or why it cannot be read."""
    if not Path(path).is_file():
        return "missing"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            return {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"unreadable: {exc}"


def live_heartbeats(db_path: Path, within_s: float = 120.0) -> list[str]:
    """Workers of the live database seen in the last ``within_s`` seconds whose process lives (a second
    sign of a server running, for one on another host sharing the data dir, where only the beat's age
    tells); [] when the database cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2)
        try:
            rows = conn.execute("SELECT id, hostname, pid, last_seen FROM workers").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return []
    now = datetime.now(UTC)
    out = []
    here = socket.gethostname()
    for wid, host, pid, seen in rows:
        try:
            at = datetime.fromisoformat(str(seen))
        except ValueError:
            continue
        if host == here and not pid_alive(int(pid or 0)):
            continue  # on this host, a dead pid is a stopped service, however recent its last beat
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if (now - at).total_seconds() <= within_s:
            out.append(f"worker {wid} (pid {pid}) seen {(now - at).total_seconds():.0f} s ago")
    return out


def _safety_copy(settings: Any, stamp: str) -> dict[str, Any]:
    """Copy the live database aside before it is replaced. Its raw files (database, WAL, SHM) are
    copied first, before anything opens it (SQLite may rewrite a WAL it opens); from that copy a
    clean single-file backup is made and registered when it passes its integrity check, else the
    raw files stay under ``backups/safety-<time>/``. Returns what was kept, and the rows per table."""
    live = Path(settings.db_path)
    if not live.exists():
        return {"kind": "none", "path": None, "counts": "missing"}
    from engine.db.models import new_id

    raw = Path(settings.backups_dir) / f"safety-{stamp}"
    raw.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        side = Path(f"{live}{suffix}")
        if side.exists():
            shutil.copy2(side, raw / side.name)
    bid = new_id()
    tmp = Path(settings.backups_dir) / f"{TMP_PREFIX}{bid}"
    scratch = Path(settings.backups_dir) / f"{TMP_PREFIX}{bid}-scratch"
    try:
        shutil.copytree(raw, scratch)  # opened by SQLite (the WAL folded in) instead of the raw files
        counts = row_counts(scratch / live.name)
        (tmp / "database").mkdir(parents=True)
        copy_database(scratch / live.name, tmp / DB_ENTRY)
        verdict = sqlite_integrity(tmp / DB_ENTRY)
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the live database fails its integrity check: {verdict}")
        size = (tmp / DB_ENTRY).stat().st_size
        files = [{"path": DB_ENTRY, "size": size, "sha256": _sha256(tmp / DB_ENTRY), "mtime": _now().timestamp()}]
        manifest = {"format": 1, "backup_id": bid, "name": f"safety copy before the restore of {stamp}",
                    "type": "full", "kind": "database", "parent_backup_id": None, "created_at": _iso(_now()),
                    "written_at": _iso(_now()),
                    "scope": {"measurement_sets": False, "images": False, "catalogs": False,
                              "pipeline_configs": False, "job_history": True, "qa_ratings": True},
                    "contents": {"database": DB_ENTRY}, "checksum": _overall_checksum(files), "files": files,
                    "index": []}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        final = Path(settings.backups_dir) / bid
        os.replace(tmp, final)
        shutil.rmtree(raw, ignore_errors=True)
        return {"kind": "backup", "backup_id": bid, "path": str(final), "counts": counts}
    except (sqlite3.DatabaseError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"kind": "raw", "path": str(raw), "why": str(exc), "counts": f"unreadable: {exc}"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def adopt_backups(settings: Any, db: Any) -> list[str]:
    """Register completed backup directories the (restored) database does not know: the ones made
    after the restored point, and the safety copy. Returns their ids."""
    from sqlalchemy import select

    from engine.db import models as m

    root = Path(settings.backups_dir)
    if not root.is_dir():
        return []
    with db.session() as s:
        known = set(s.scalars(select(m.BackupRecord.id)))
    adopted = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or d.name in known or not (d / MANIFEST).is_file():
            continue
        try:
            man = _load_manifest(d)
        except BackupError as exc:
            log.warning("not registering %s: %s", d, exc)
            continue
        if man.get("backup_id") != d.name:
            continue
        created = man.get("created_at") or man.get("written_at")
        with db.session() as s:
            s.add(m.BackupRecord(
                id=d.name, name=str(man.get("name") or d.name)[:255], backup_path=str(d),
                backup_type=man.get("type") or "full", scope=man.get("scope") or {},
                kind=man.get("kind") or default_kind(man.get("type") or "full", man.get("scope")),
                size_bytes=sum(int(f["size"]) for f in man["files"]), item_count=len(man["files"]),
                created_at=datetime.fromisoformat(created) if created else _now(),
                completed_at=datetime.fromisoformat(man["written_at"]) if man.get("written_at") else _now(),
                status="completed", checksum=man.get("checksum"), parent_backup_id=man.get("parent_backup_id"),
                created_by="contimg backup restore", notes="registered again after an offline restore"))
        adopted.append(d.name)
    return adopted


def _complete_own_row(db: Any, backup_id: str, manifest: dict[str, Any]) -> None:
    """The copy was taken while its own backup ran: its row there lacks the checksum, size and count
    (written once the backup completed). Fill them from the manifest, so the backup validates."""
    from engine.db import models as m

    with db.session() as s:
        rec = s.get(m.BackupRecord, backup_id)
        if rec is not None and rec.checksum is None:
            rec.checksum = manifest.get("checksum")
            rec.size_bytes = sum(int(f["size"]) for f in manifest["files"])
            rec.item_count = len(manifest["files"])


def restore_database_offline(settings: Any, backup_id: str, *, force: bool = False) -> dict[str, Any]:
    """Replace the live database with a backup's copy; see the module docstring for the steps.

    Raises BackupError (invalid backup, data dir in use, a PostgreSQL database) before anything is changed."""
    from engine.db import Database

    require_sqlite(settings, "the offline restore")
    check = verify_offline(settings, backup_id)
    if not check["is_valid"]:
        raise BackupError(f"backup {backup_id} is not valid, refusing to restore: {'; '.join(check['reasons'])}")
    settings.ensure_dirs()
    live = Path(settings.db_path)
    lock = DataDirLock(settings.data_dir, exclusive=True, purpose="contimg backup restore")
    try:
        lock.acquire()
        locked = True
    except DataDirBusy as exc:
        if not force:
            raise BackupError(f"{exc}; stop it first (or --force, at your own risk)") from None
        locked = False
    try:
        beats = live_heartbeats(live)
        if beats and not force:
            raise BackupError("workers of this database are alive (" + "; ".join(beats[:3]) +
                              "); stop the service first (or --force)")
        stamp = _now().strftime("%Y%m%dT%H%M%SZ")
        source = Path(check["path"]) / DB_ENTRY
        backup_counts = row_counts(source)
        safety = _safety_copy(settings, stamp)  # before anything opens the live database
        before = safety.pop("counts")
        staged = live.with_name(f"{live.name}.offline-restore-{backup_id}")
        tmp = live.with_name(f".{staged.name}.copying")
        shutil.copy2(source, tmp)
        expected = next(e["sha256"] for e in check["manifest"]["files"] if e["path"] == DB_ENTRY)
        if _sha256(tmp) != expected:
            tmp.unlink()
            raise BackupError(f"{source} changed while it was copied (checksum mismatch); nothing was replaced")
        os.replace(tmp, staged)
        previous = apply_database_restore(live, staged)  # one rename; old DB + WAL/SHM kept aside
        superseded = []
        for p in pending_restores(settings):  # a restore staged for the next start must not undo this one
            dst = p.with_name(p.name + ".superseded")
            os.replace(p, dst)
            superseded.append(str(dst))
        db = Database(live)
        try:
            from_rev = db.current_revision()
            db.upgrade()
            to_rev = db.current_revision()
            adopted = adopt_backups(settings, db)
            _complete_own_row(db, backup_id, check["manifest"])
        finally:
            db.dispose()
        after = row_counts(live)
    finally:
        if locked:
            lock.release()
    return {"backup_id": backup_id, "before": before, "backup": backup_counts, "after": after,
            "previous": str(previous) if previous else None, "safety": safety, "superseded": superseded,
            "revision": {"from": from_rev, "to": to_rev}, "registered_again": adopted, "forced": not locked}
