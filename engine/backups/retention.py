"""Deleting backups and pruning them by age, never below the last valid backup of a kind."""

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
    default_kind,
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


def prune_backups(settings: Any, db: Database, keep_days: dict[str, float], *, by: str = "type",
                  keep_min: int = 0) -> list[str]:
    """Delete finished backups older than ``keep_days[type]`` days (types not named are kept).

    ``by="kind"`` reads the keys as backup kinds (database, caltables, config, full, ...). With
    ``keep_min``, the newest ``keep_min`` backups of each named type or kind that *validate* (files
    re-hashed now) are kept whatever their age, so pruning never removes the last good copy. A
    backup another kept backup builds on is kept too. Returns the deleted ids.
    """
    from engine.backups.validate import validate_backup

    cutoff = {t: _now() - timedelta(days=float(d)) for t, d in keep_days.items()}
    with db.session() as s:
        rows = [(b.id, (b.kind or default_kind(b.backup_type, b.scope)) if by == "kind" else b.backup_type,
                 b.status, b.created_at, b.parent_backup_id) for b in s.scalars(select(m.BackupRecord))]
    doomed = {bid for bid, typ, status, created, _ in rows
              if typ in cutoff and status in ("completed", "failed", "cancelled") and created < cutoff[typ]}
    if keep_min > 0:
        for typ in cutoff:
            if not any(r[0] in doomed and r[1] == typ and r[2] == "completed" for r in rows):
                continue  # nothing valid of this kind would go: no need to re-hash anything
            kept = 0
            for bid, _t, _st, _c, _p in sorted((r for r in rows if r[1] == typ and r[2] == "completed"),
                                               key=lambda r: r[3], reverse=True):
                if kept >= keep_min:
                    break
                if validate_backup(settings, db, bid)["is_valid"]:
                    doomed.discard(bid)
                    kept += 1
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


def prune_by_settings(settings: Any, db: Database) -> list[str]:
    """The roadmap's retention from ``[backups]``: database 7 d, caltables 90 d, config 30 d, full 28 d
    by default, the newest ``keep_min`` valid backups of each kind always kept."""
    b = settings.backups
    keep = {"database": b.database_keep_days, "caltables": b.caltables_keep_days,
            "config": b.config_keep_days, "full": b.full_keep_days}
    return prune_backups(settings, db, keep, by="kind", keep_min=b.keep_min)
