"""Restoring from a backup: plan and preview, then restore files; the database copy is staged."""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update

from engine.backups.common import (
    require_sqlite,
    DB_ENTRY,
    RESTORE_BYTES_PER_S,
    BackupError,
    UnsafeEntryError,
    _backup_file,
    _chain,
    _iso,
    _load_manifest,
    _normalise_scope,
    _now,
    _restore_target,
    _sha256,
    check_entry,
    sqlite_integrity,
)
from engine.backups.validate import validate_backup
from engine.db import Database
from engine.db import models as m
from engine.units import retry_busy

log = logging.getLogger("engine.backups")


# --------------------------------------------------------------------------- restoring
def _entry_scope_key(rel: str) -> tuple[str, ...]:
    """Which scope keys select a manifest entry (any one of them suffices)."""
    top = rel.split("/", 1)[0]
    return {"database": ("job_history", "qa_ratings"), "caltables": ("catalogs", "pipeline_configs"),
            "catalogs": ("catalogs",),
            "config": ("pipeline_configs",), "images": ("images",), "ms": ("measurement_sets",)}[top]



def _plan(settings: Any, db: Database, backup_id: str, scope: dict[str, Any],
          restore_id: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The entries to restore (later backups of the chain win), missing dependencies, warnings."""
    missing: list[str] = []
    warnings: list[str] = []
    try:
        chain = _chain(db, backup_id)
    except BackupError as exc:
        return [], [str(exc)], warnings
    chosen = {k for k, v in _normalise_scope(scope, subset=True).items() if v}
    entries: dict[str, dict[str, Any]] = {}
    for rec in chain:
        if rec.status != "completed":
            missing.append(f"backup {rec.id} ({rec.name}) is {rec.status}")
            continue
        try:
            manifest = _load_manifest(Path(rec.backup_path))
        except UnsafeEntryError:
            raise
        except BackupError as exc:
            missing.append(f"backup {rec.id} ({rec.name}): {exc}")
            continue
        for entry in manifest["files"]:
            rel = entry["path"]
            if not chosen.intersection(_entry_scope_key(rel)):
                continue
            target = _restore_target(settings, check_entry(rel), restore_id)
            entries[rel] = {**entry, "backup_id": rec.id, "backup_dir": rec.backup_path, "target": target}
    if chain and chain[-1].backup_type != "full" and chain[0].backup_type != "full":
        missing.append(f"the chain of {backup_id} does not start at a full backup")
    for top, what in (("config", "the config file"), ("catalogs", "calibrator catalogue files")):
        if any(rel.startswith(f"{top}/") for rel in entries):
            warnings.append(f"{what} are restored to {Path(settings.data_dir)}/{top}.restore-<restore id>/; "
                            "move them into place by hand")
    if DB_ENTRY in entries:
        warnings.append("the database is staged and replaces the live one at the service's next start "
                        "(the current one is kept as pipeline.sqlite3.pre-restore-<timestamp>)")
    return sorted(entries.values(), key=lambda e: e["path"]), missing, warnings


def restore_preview(settings: Any, db: Database, backup_id: str, scope: dict[str, Any],
                    overwrite_existing: bool) -> dict[str, Any]:
    """What a restore would do (RestorePreview); changes nothing."""
    with db.session() as s:
        if s.get(m.BackupRecord, backup_id) is None:
            raise KeyError(backup_id)
    try:
        entries, missing, warnings = _plan(settings, db, backup_id, scope, "<id>")
    except UnsafeEntryError as exc:
        return {"backup_id": backup_id, "items_to_restore": 0, "conflicts": [], "missing_dependencies": [],
                "estimated_time_seconds": 0, "warnings": [str(exc)], "can_restore": False}
    conflicts: list[dict[str, Any]] = []
    total = 0
    for e in entries:
        target: Path = e["target"]
        total += int(e["size"])
        if e["path"] == DB_ENTRY:
            live = Path(settings.db_path)
            if live.exists():
                conflicts.append({"path": str(live), "existing_modified": _mtime_iso(live),
                                  "backup_modified": _iso(datetime.fromtimestamp(e.get("mtime") or 0, UTC))})
            continue
        if target.exists() and not _same(target, e):
            conflicts.append({"path": str(target), "existing_modified": _mtime_iso(target),
                              "backup_modified": _iso(datetime.fromtimestamp(e.get("mtime") or 0, UTC))})
    file_conflicts = [c for c in conflicts if c["path"] != str(Path(settings.db_path))]
    if file_conflicts and not overwrite_existing:
        warnings.append(f"{len(file_conflicts)} existing file(s) differ and will be kept "
                        "(overwrite_existing is false)")
    if not entries:
        warnings.append("nothing in the backup matches the chosen scope")
    return {"backup_id": backup_id, "items_to_restore": len(entries), "conflicts": conflicts,
            "missing_dependencies": missing, "estimated_time_seconds": round(1 + total / RESTORE_BYTES_PER_S, 1),
            "warnings": warnings, "can_restore": not missing and bool(entries)}


def restore_plan(settings: Any, db: Database, backup_id: str, scope: dict[str, Any],
                 overwrite_existing: bool) -> list[dict[str, Any]]:
    """Per file, what a restore would do (changes nothing): path, size, the stored copy, and
    ``action`` — stage (the database), add, overwrite, keep (differs, overwrite off) or same."""
    entries, _missing, _warnings = _plan(settings, db, backup_id, scope, "<id>")
    out: list[dict[str, Any]] = []
    for e in entries:
        target: Path = e["target"]
        if e["path"] == DB_ENTRY:
            action = "stage"
        elif not target.exists():
            action = "add"
        elif _same(target, e):
            action = "same"
        else:
            action = "overwrite" if overwrite_existing else "keep"
        out.append({"path": e["path"], "size": int(e["size"]), "action": action, "backup_id": e["backup_id"],
                    "source": str(Path(e["backup_dir"]) / e["path"]), "target": str(target)})
    return out


def _mtime_iso(path: Path) -> str | None:
    try:
        return _iso(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    except OSError:
        return None


def _same(target: Path, entry: dict[str, Any]) -> bool:
    try:
        return target.is_file() and target.stat().st_size == entry["size"] and _sha256(target) == entry["sha256"]
    except OSError:
        return False


def start_restore(settings: Any, db: Database, backup_id: str, *, scope: dict[str, Any],
                  overwrite_existing: bool = False, started_by: str, notes: str | None = None) -> str:
    """Record a pending restore job and return its id; ``run_restore`` does the work."""
    require_sqlite(settings, "restoring a backup")
    norm = _normalise_scope(scope, subset=True)

    def _do() -> str:
        with db.session() as s:
            rec = s.get(m.BackupRecord, backup_id)
            if rec is None:
                raise KeyError(backup_id)
            if rec.status != "completed":
                raise BackupError(f"backup {backup_id} is {rec.status}; only completed backups can be restored")
            # The table has no column for the overwrite flag: it rides in the scope map (hidden by get_restore).
            job = m.RestoreJob(backup_id=backup_id, status="pending",
                               scope={**norm, "_overwrite_existing": bool(overwrite_existing)},
                               started_by=started_by, notes=notes)
            s.add(job)
            s.flush()
            return job.id
    return retry_busy(_do)


def run_restore(settings: Any, db: Database, restore_id: str) -> None:
    """Validate the backup (and its chain), then restore the chosen files; the database is staged."""
    def _claim() -> tuple[str, dict[str, Any]] | None:
        with db.session() as s:
            res = s.execute(update(m.RestoreJob).where(m.RestoreJob.id == restore_id,
                                                        m.RestoreJob.status == "pending")
                            .values(status="running"))
            job = s.get(m.RestoreJob, restore_id)
            if job is None:
                raise KeyError(restore_id)
            if res.rowcount != 1:
                return None
            return job.backup_id, dict(job.scope or {})
    claimed = retry_busy(_claim)
    if claimed is None:
        return
    backup_id, stored = claimed
    overwrite = bool(stored.pop("_overwrite_existing", False))
    errors: list[str] = []
    restored = 0
    total = 0
    fatal: str | None = None
    try:
        entries, missing, _warnings = _plan(settings, db, backup_id, stored, restore_id)
        total = len(entries)
        if missing:
            raise BackupError("cannot restore: " + "; ".join(missing))
        for rec in _chain(db, backup_id):
            v = validate_backup(settings, db, rec.id)
            if not v["is_valid"]:
                raise BackupError(f"backup {rec.id} ({rec.name}) failed validation, refusing to restore: "
                                  f"{v['reason']}")
        for e in entries:
            try:
                if _restore_entry(settings, e, overwrite, restore_id, errors):
                    restored += 1
            except UnsafeEntryError:
                raise
            except (OSError, BackupError) as exc:
                errors.append(f"{e['path']}: {exc}")
    except (BackupError, KeyError, OSError) as exc:
        fatal = str(exc) if not isinstance(exc, KeyError) else f"missing: {exc}"
    hard = [x for x in errors if not x.startswith("skipped ")]
    status = "failed" if fatal or hard else "completed"
    if fatal:
        errors.insert(0, fatal)

    def _finish() -> None:
        with db.session() as s:
            job = s.get_one(m.RestoreJob, restore_id)
            job.status, job.items_restored, job.items_total = status, restored, total
            job.errors, job.completed_at = errors, _now()
    retry_busy(_finish)
    log.log(logging.INFO if status == "completed" else logging.ERROR, "restore %s %s: %d of %d items",
            restore_id, status, restored, total)


def _restore_entry(settings: Any, e: dict[str, Any], overwrite: bool, restore_id: str,
                   errors: list[str]) -> bool:
    rel = check_entry(e["path"])
    src = _backup_file(Path(e["backup_dir"]), rel)
    target: Path = e["target"]
    if e["path"] == DB_ENTRY:
        verdict = sqlite_integrity(src)
        if verdict != "ok":
            raise BackupError(f"database copy integrity check: {verdict}")
        _atomic_copy(src, target, e["sha256"])
        Path(f"{target}.json").write_text(json.dumps({"restore_id": restore_id, "backup_id": e["backup_id"],
                                                      "staged_at": _iso(_now())}))
        return True
    if target.is_symlink():
        raise UnsafeEntryError(f"restore target {target} is a symlink; refused")
    if target.exists():
        if _same(target, e):
            return True
        if not overwrite:
            errors.append(f"skipped {e['path']}: {target} exists and differs (overwrite_existing is false)")
            return False
    _atomic_copy(src, target, e["sha256"])
    return True


def _atomic_copy(src: Path, target: Path, sha256: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restoring")
    try:
        shutil.copy2(src, tmp)
        if _sha256(tmp) != sha256:
            raise BackupError(f"{src}: content changed during the restore (checksum mismatch)")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()

