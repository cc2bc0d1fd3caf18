"""Replacing the live database by a staged copy (only with no connection open: start-up or offline)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from engine.backups.common import (
    BackupError,
    _now,
    sqlite_integrity,
)

log = logging.getLogger("engine.backups")


# --------------------------------------------------------------------------- applying a database restore
def apply_database_restore(db_path: Path, staged_path: Path) -> Path | None:
    """Replace the live database with a staged copy; return where the previous one was kept.

    Call only when no connection to ``db_path`` is open (at start-up, before the
    service opens its database). The live file and its ``-wal``/``-shm`` files are
    moved to ``<name>.pre-restore-<timestamp>`` (same suffixes), so nothing is lost.
    """
    db_path, staged_path = Path(db_path), Path(staged_path)
    verdict = sqlite_integrity(staged_path)
    if verdict != "ok":
        raise BackupError(f"staged database {staged_path} fails its integrity check: {verdict}")
    kept: Path | None = None
    if db_path.exists():
        # Fold the WAL into the main file first so the kept copy is self-contained.
        try:
            conn = sqlite3.connect(str(db_path), timeout=5)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:  # a broken live DB is still kept, WAL and all
            log.warning("checkpoint of %s before restore failed: %s", db_path, exc)
        stamp = _now().strftime("%Y%m%dT%H%M%S%fZ")
        kept = db_path.with_name(f"{db_path.name}.pre-restore-{stamp}")
        os.replace(db_path, kept)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{db_path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{kept}{suffix}"))
    os.replace(staged_path, db_path)
    meta = Path(f"{staged_path}.json")
    if meta.exists():
        meta.unlink()
    log.warning("database %s replaced by restored copy %s (previous kept as %s)", db_path, staged_path, kept)
    return kept



def pending_restores(settings: Any) -> list[Path]:
    """Staged database restores waiting for the next start, newest first."""
    db_path = Path(settings.db_path)
    if not db_path.parent.is_dir():
        return []
    staged = [p for p in db_path.parent.glob(f"{db_path.name}.restore-*")
              if p.is_file() and not p.name.endswith((".json", ".superseded"))]
    return sorted(staged, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def apply_pending_restore(settings: Any) -> dict[str, Any] | None:
    """At start-up, before the database is opened: apply the newest staged database restore.

    Returns None when nothing is staged, else {"applied", "previous", "restore_id",
    "superseded"}. Older staged copies are renamed ``*.superseded`` (kept, not applied).
    """
    if not getattr(settings, "database_is_sqlite", True):
        if pending_restores(settings):  # left from the SQLite days: never applied to another database
            log.warning("staged SQLite database restores in %s are ignored: the database is %s",
                        settings.data_dir, settings.database_label)
        return None
    staged = pending_restores(settings)
    if not staged:
        return None
    newest, older = staged[0], staged[1:]
    info: dict[str, Any] = {}
    meta = Path(f"{newest}.json")
    if meta.exists():
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
    previous = apply_database_restore(Path(settings.db_path), newest)
    superseded = []
    for p in older:
        dst = p.with_name(p.name + ".superseded")
        os.replace(p, dst)
        superseded.append(str(dst))
    return {"applied": str(newest), "previous": str(previous) if previous else None,
            "restore_id": info.get("restore_id") or newest.name.rsplit("restore-", 1)[-1],
            "backup_id": info.get("backup_id"), "superseded": superseded}

