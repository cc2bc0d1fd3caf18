"""Deleting backups and pruning them by age."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.backups.common import (
    TMP_PREFIX,
    BackupError,
    _now,
)
from engine.db import Database
from engine.db import models as m


# --------------------------------------------------------------------------- deleting and pruning
def delete_backup(settings: Any, db: Database, backup_id: str) -> None:
    """Remove a backup's files and its row; refused while it runs or while another backup builds on it."""
    with db.session() as s:
        rec = s.get(m.BackupRecord, backup_id)
        if rec is None:
            raise KeyError(backup_id)
        if rec.status == "running":
            raise BackupError(f"backup {backup_id} is running; it cannot be deleted now")
        children = list(s.scalars(select(m.BackupRecord.id).where(m.BackupRecord.parent_backup_id == backup_id)))
        if children:
            raise BackupError(f"backup {backup_id} is the parent of {', '.join(children)}; delete those first")
        path = Path(rec.backup_path) if rec.backup_path else None
    backups_dir = Path(settings.backups_dir)
    for p in (path, backups_dir / backup_id, backups_dir / f"{TMP_PREFIX}{backup_id}"):
        if p is None:
            continue
        base = os.path.abspath(backups_dir)
        if os.path.commonpath([base, os.path.abspath(p)]) != base or os.path.abspath(p) == base:
            continue  # never remove anything outside the backups dir
        if p.is_symlink():
            p.unlink()
        elif p.exists():
            shutil.rmtree(p)
    with db.session() as s:
        rec = s.get(m.BackupRecord, backup_id)
        if rec is not None:
            s.delete(rec)


def prune_backups(settings: Any, db: Database, keep_days: dict[str, float]) -> list[str]:
    """Delete finished backups older than ``keep_days[type]`` days (types not named are kept).

    A backup another kept backup builds on is kept too. Returns the deleted ids.
    """
    cutoff = {t: _now() - timedelta(days=float(d)) for t, d in keep_days.items()}
    with db.session() as s:
        rows = [(b.id, b.backup_type, b.status, b.created_at, b.parent_backup_id)
                for b in s.scalars(select(m.BackupRecord))]
    doomed = {bid for bid, typ, status, created, _ in rows
              if typ in cutoff and status in ("completed", "failed", "cancelled") and created < cutoff[typ]}
    changed = True
    while changed:  # keep every ancestor of a kept backup
        changed = False
        for bid, _typ, _st, _c, parent in rows:
            if bid not in doomed and parent in doomed:
                doomed.discard(parent)
                changed = True
    deleted: list[str] = []
    remaining = {bid: parent for bid, *_rest, parent in rows}
    pending = set(doomed)
    while pending:  # children before parents
        leaves = [b for b in pending if not any(p == b for p in remaining.values())]
        if not leaves:
            break
        for bid in sorted(leaves):
            delete_backup(settings, db, bid)
            deleted.append(bid)
            pending.discard(bid)
            remaining.pop(bid, None)
    return deleted

