"""Backups and restore jobs as plain dicts (the REST and console shapes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.backups.common import (
    _iso,
    _normalise_scope,
    default_kind,
    format_size,
)
from engine.db import Database
from engine.db import models as m


# --------------------------------------------------------------------------- reading
def _backup_dict(b: m.BackupRecord) -> dict[str, Any]:
    return {"id": b.id, "name": b.name, "type": b.backup_type, "status": b.status,
            "scope": _normalise_scope(b.scope), "size_bytes": b.size_bytes or 0,
            "size_formatted": format_size(b.size_bytes), "item_count": b.item_count or 0,
            "created_at": _iso(b.created_at), "completed_at": _iso(b.completed_at),
            "created_by": b.created_by or "", "storage_location": b.backup_path, "checksum": b.checksum,
            "parent_backup_id": b.parent_backup_id, "notes": b.notes, "error_message": b.error_message,
            "validation_status": b.validation_status, "validated_at": _iso(b.validated_at),
            "kind": b.kind or default_kind(b.backup_type, b.scope), "started_at": _iso(b.started_at)}


def list_backups(db: Database, limit: int = 20, type: str | None = None,  # noqa: A002 - the API's name
                 status: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(m.BackupRecord).order_by(m.BackupRecord.created_at.desc()).limit(limit)
        if kind:
            q = q.where(m.BackupRecord.kind == kind)
        if type:
            q = q.where(m.BackupRecord.backup_type == type)
        if status:
            q = q.where(m.BackupRecord.status == status)
        return [_backup_dict(b) for b in s.scalars(q)]


def get_backup(db: Database, backup_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        b = s.get(m.BackupRecord, backup_id)
        return _backup_dict(b) if b else None


def _restore_dict(j: m.RestoreJob, backup_name: str | None) -> dict[str, Any]:
    scope = {k: v for k, v in (j.scope or {}).items() if not k.startswith("_")}
    return {"id": j.id, "backup_id": j.backup_id, "backup_name": backup_name or "", "status": j.status,
            "scope": scope, "overwrite_existing": bool((j.scope or {}).get("_overwrite_existing")),
            "items_restored": j.items_restored, "items_total": j.items_total, "errors": list(j.errors or []),
            "started_at": _iso(j.started_at), "completed_at": _iso(j.completed_at), "started_by": j.started_by,
            "notes": j.notes}


def list_restores(db: Database, limit: int = 10) -> list[dict[str, Any]]:
    with db.session() as s:
        q = (select(m.RestoreJob, m.BackupRecord.name)
             .join(m.BackupRecord, m.BackupRecord.id == m.RestoreJob.backup_id, isouter=True)
             .order_by(m.RestoreJob.started_at.desc()).limit(limit))
        return [_restore_dict(j, name) for j, name in s.execute(q)]


def get_restore(db: Database, restore_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        j = s.get(m.RestoreJob, restore_id)
        if j is None:
            return None
        b = s.get(m.BackupRecord, j.backup_id)
        return _restore_dict(j, b.name if b else None)


#: The kinds the metrics always report (a never-made kind reads 0, so a staleness alert fires).
METRIC_KINDS = ("database", "caltables", "config", "full")


def backup_metrics(db: Database) -> dict[str, dict[str, float]]:
    """Per kind, the newest completed backup: Unix time it completed, its size and how long it ran."""
    out: dict[str, dict[str, float]] = {k: {"last_success": 0.0} for k in METRIC_KINDS}
    with db.session() as s:
        rows = s.execute(select(m.BackupRecord.kind, m.BackupRecord.backup_type, m.BackupRecord.scope,
                                m.BackupRecord.completed_at, m.BackupRecord.started_at, m.BackupRecord.created_at,
                                m.BackupRecord.size_bytes)
                         .where(m.BackupRecord.status == "completed")
                         .order_by(m.BackupRecord.completed_at.desc()))
        for kind, btype, scope, completed, started, created, size in rows:
            kind = kind or default_kind(btype, scope)
            if completed is None or out.get(kind, {}).get("last_success"):
                continue
            out[kind] = {"last_success": completed.timestamp(), "size_bytes": float(size or 0),
                         "duration_seconds": max(0.0, (completed - (started or created)).total_seconds())}
    return out
