"""Creating backups: record a pending row, write it into a temporary directory, rename when complete."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from engine.backups.common import (
    require_sqlite,
    BACKUP_TYPES,
    DB_ENTRY,
    IDEMPOTENCE_WINDOW,
    KINDS,
    MANIFEST,
    MANIFEST_FORMAT,
    SQLITE_FULL,
    TMP_PREFIX,
    BackupError,
    _annotate_copy,
    _baseline_index,
    _iso,
    _normalise_scope,
    _now,
    _os_error_message,
    _overall_checksum,
    _sha256,
    _sources,
    _write_lock,
    copy_database,
    default_kind,
    format_size,
    sqlite_integrity,
)
from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError
from engine.units import retry_busy

log = logging.getLogger("engine.backups")


# --------------------------------------------------------------------------- creating
def derive_request_key(name: str, backup_type: str, scope: dict[str, Any], parent_backup_id: str | None,
                       created_by: str | None) -> str:
    """A request key from the request's content (for callers whose clients send none)."""
    payload = json.dumps([name, backup_type, _normalise_scope(scope), parent_backup_id, created_by],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:64]



def create_backup(settings: Any, db: Database, *, name: str, backup_type: str = "full",
                  scope: dict[str, Any], created_by: str | None, notes: str | None = None,
                  parent_backup_id: str | None = None, request_key: str | None = None,
                  kind: str | None = None) -> str:
    """Record a pending backup and return its id quickly; ``run_backup`` does the work.

    ``kind`` (one of ``KINDS``) defaults to what type and scope say (``default_kind``).

    With ``request_key``: a backup with that key pending, running or completed in the
    last 10 minutes is returned instead of a new one (clients retry their POSTs).
    """
    require_sqlite(settings, "contimg backup")
    if backup_type not in BACKUP_TYPES:
        raise BackupError(f"backup type {backup_type!r} is not one of {', '.join(BACKUP_TYPES)}")
    norm = _normalise_scope(scope)
    kind = kind or default_kind(backup_type, norm)
    if kind not in KINDS:
        raise BackupError(f"backup kind {kind!r} is not one of {', '.join(KINDS)}")
    if (kind in ("incremental", "differential")) != (backup_type in ("incremental", "differential")):
        raise BackupError(f"a {backup_type} backup cannot be of kind {kind}")
    if backup_type == "full" and parent_backup_id:
        raise BackupError("a full backup has no parent backup")
    if backup_type == "incremental" and not parent_backup_id:
        raise BackupError("an incremental backup needs parent_backup_id")

    def _do() -> str:
        with db.session() as s:
            _write_lock(s)  # serialise with concurrent retries of the same request before looking
            if request_key:
                existing = s.scalar(
                    select(m.BackupRecord.id)
                    .where(m.BackupRecord.request_key == request_key,
                           m.BackupRecord.status.in_(("pending", "running", "completed")),
                           m.BackupRecord.created_at >= _now() - IDEMPOTENCE_WINDOW)
                    .order_by(m.BackupRecord.created_at.desc()).limit(1))
                if existing:
                    return existing
            parent = parent_backup_id
            if backup_type == "differential" and parent is None:
                parent = s.scalar(select(m.BackupRecord.id)
                                  .where(m.BackupRecord.backup_type == "full",
                                         m.BackupRecord.status == "completed")
                                  .order_by(m.BackupRecord.created_at.desc()).limit(1))
                if parent is None:
                    raise BackupError("a differential backup needs a completed full backup")
            if parent is not None:
                p = s.get(m.BackupRecord, parent)
                if p is None:
                    raise BackupError(f"parent backup {parent} does not exist")
                if p.status != "completed":
                    raise BackupError(f"parent backup {parent} is {p.status}, not completed")
                if backup_type == "differential":  # a differential builds on the full under its parent
                    while p is not None and p.backup_type != "full":
                        p = s.get(m.BackupRecord, p.parent_backup_id) if p.parent_backup_id else None
                    if p is None:
                        raise BackupError(f"no full backup under parent {parent}")
                    parent = p.id
            rec = m.BackupRecord(name=name or f"Backup {_now():%Y-%m-%d}", backup_type=backup_type, scope=norm,
                                 created_by=created_by, notes=notes, parent_backup_id=parent,
                                 request_key=request_key, status="pending", backup_path="", kind=kind)
            s.add(rec)
            s.flush()
            rec.backup_path = str(Path(settings.backups_dir) / rec.id)
            return rec.id

    return retry_busy(_do)



def run_backup(settings: Any, db: Database, backup_id: str) -> None:
    """Do the work of a pending backup: pending → running → completed or failed (error_message)."""
    def _claim() -> m.BackupRecord | None:
        with db.session() as s:
            res = s.execute(update(m.BackupRecord).where(m.BackupRecord.id == backup_id,
                                                          m.BackupRecord.status == "pending")
                            .values(status="running", started_at=_now()))
            rec = s.get(m.BackupRecord, backup_id)
            if rec is None:
                raise BackupError(f"backup {backup_id} does not exist")
            return rec if res.rowcount == 1 else None

    rec = retry_busy(_claim)
    if rec is None:
        log.info("backup %s is not pending; nothing to do", backup_id)
        return
    backups_dir = Path(settings.backups_dir)
    final = backups_dir / backup_id
    tmp = backups_dir / f"{TMP_PREFIX}{backup_id}"
    try:
        summary = _write_backup(settings, db, rec, tmp)
        if final.exists():
            raise BackupError(f"{final} already exists")
        os.replace(tmp, final)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            message = _os_error_message(exc, backups_dir)
        elif isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
            message = _os_error_message(OSError(errno.ENOSPC, str(exc)), backups_dir)
        elif isinstance(exc, ContimgError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        log.error("backup %s failed: %s", backup_id, message)

        def _fail() -> None:
            with db.session() as s:
                row = s.get_one(m.BackupRecord, backup_id)
                row.status, row.error_message, row.completed_at = "failed", message, _now()
        retry_busy(_fail)
        return

    def _done() -> None:
        with db.session() as s:
            row = s.get_one(m.BackupRecord, backup_id)
            row.status, row.completed_at, row.error_message = "completed", _now(), None
            row.checksum, row.size_bytes, row.item_count = summary["checksum"], summary["size"], summary["count"]
            row.backup_path = str(final)
    retry_busy(_done)
    log.info("backup %s completed: %d files, %s", backup_id, summary["count"], format_size(summary["size"]))


def _write_backup(settings: Any, db: Database, rec: m.BackupRecord, tmp: Path) -> dict[str, Any]:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scope = _normalise_scope(rec.scope)
    baseline = _baseline_index(db, rec)
    files: list[dict[str, Any]] = []

    db_copy = tmp / DB_ENTRY
    db_copy.parent.mkdir(parents=True)
    copy_database(db.require_sqlite("a backup", "back it up with pg_dump"), db_copy)
    _annotate_copy(db_copy, rec.id, str(Path(settings.backups_dir) / rec.id))
    verdict = sqlite_integrity(db_copy)
    if verdict != "ok":
        raise BackupError(f"the database copy fails its integrity check: {verdict}")
    st = db_copy.stat()
    files.append({"path": DB_ENTRY, "size": st.st_size, "sha256": _sha256(db_copy), "mtime": time.time()})

    index: list[dict[str, Any]] = []
    for rel, src in _sources(settings, scope, rec.kind):
        try:
            st = src.stat()
        except FileNotFoundError:  # removed while we walked
            continue
        prev = baseline.get(rel)
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            digest = prev["sha256"]
        else:
            digest = _sha256(src)
        index.append({"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
        if prev and prev.get("sha256") == digest and prev.get("size") == st.st_size:
            continue  # unchanged since the baseline
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        copied = _sha256(dst)
        if copied != digest:  # the file changed while we copied: keep what we actually stored
            digest = copied
            index[-1]["sha256"] = copied
        files.append({"path": rel, "size": dst.stat().st_size, "sha256": digest, "mtime": st.st_mtime})

    checksum = _overall_checksum(files)
    manifest = {
        "format": MANIFEST_FORMAT,
        "backup_id": rec.id,
        "name": rec.name,
        "type": rec.backup_type,
        "kind": rec.kind,
        "parent_backup_id": rec.parent_backup_id,
        "created_at": _iso(rec.created_at),
        "written_at": _iso(_now()),
        "scope": scope,
        "contents": {
            "database": DB_ENTRY,
            "job_history": f"inside {DB_ENTRY} (jobs, job_logs, state_transitions)",
            "qa_ratings": f"inside {DB_ENTRY} (ratings, comments, QA grades)",
        },
        "checksum": checksum,
        "files": files,
        "index": index,
    }
    body = json.dumps(manifest, indent=1, sort_keys=True)
    with (tmp / MANIFEST).open("w") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return {"checksum": checksum, "size": sum(f["size"] for f in files), "count": len(files)}


def recover_interrupted(settings: Any, db: Database) -> list[str]:
    """At start-up: running/pending backups of a dead process are marked failed; temporaries removed."""
    failed: list[str] = []
    with db.session() as s:
        for rec in s.scalars(select(m.BackupRecord).where(m.BackupRecord.status == "running")):
            rec.status, rec.completed_at = "failed", _now()
            rec.error_message = "interrupted: the service stopped while the backup was running"
            failed.append(rec.id)
        for job in s.scalars(select(m.RestoreJob).where(m.RestoreJob.status == "running")):
            job.status, job.completed_at = "failed", _now()
            job.errors = [*(job.errors or []), "interrupted: the service stopped while the restore was running"]
    backups_dir = Path(settings.backups_dir)
    if backups_dir.is_dir():
        for tmp in backups_dir.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True)
    return failed

