"""The roadmap's backup schedule (§4.2) as built-in triggers, and what a scheduled backup does after.

Four rows in the triggers table, created at start-up when missing (``seed_schedules``): database
hourly, calibration tables daily, the config file on change (its content hash checked every few
minutes and at start-up) and a full backup weekly, copied to ``[backups] offsite_dir``. Which
built-ins were seeded is recorded in the ``kv`` table, so a trigger the operator deleted or edited
is never recreated nor reset. After every backup a trigger runs (``run_scheduled_backup``): the
off-site copy of a full one, then the retention of ``[backups]`` (``prune_by_settings``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.backups.common import (
    MANIFEST,
    BackupError,
    _iso,
    _load_manifest,
    _now,
    _sha256,
)
from engine.backups.create import create_backup, run_backup
from engine.backups.records import get_backup
from engine.backups.retention import prune_by_settings
from engine.backups.validate import _verify_files
from engine.db import Database
from engine.db import models as m
from engine.units import retry_busy

log = logging.getLogger("engine.backups")

SEEDED_KEY = "backups.builtin_schedules"
OFFSITE_KEY = "backups.offsite"
FILE_SCOPES_OF_FULL = ["images", "catalogs", "pipeline_configs", "job_history", "qa_ratings"]


def builtin_schedules(settings: Any) -> list[dict[str, Any]]:
    """The four built-in triggers as trigger bodies (``engine.triggers.create_trigger``), keyed."""
    b = settings.backups
    full_scope = [*FILE_SCOPES_OF_FULL, *(["measurement_sets"] if b.full_includes_ms else [])]
    rows = [
        ("database", "Backup: database hourly", b.database_cron,
         {"backup_type": "full", "kind": "database", "scope": ["job_history", "qa_ratings"]},
         f"The pipeline database (jobs, history, QA); kept {b.database_keep_days:g} days."),
        ("caltables", "Backup: calibration tables daily", b.caltables_cron,
         {"backup_type": "full", "kind": "caltables", "scope": ["catalogs", "job_history", "qa_ratings"]},
         f"Calibration tables and calibrator catalogues; kept {b.caltables_keep_days:g} days."),
        ("config", "Backup: configuration on change", b.config_check_cron,
         {"backup_type": "full", "kind": "config", "scope": ["pipeline_configs"], "only_if_changed": True},
         f"The config file, whenever its content changes (checked on this schedule and at start-up); "
         f"kept {b.config_keep_days:g} days."),
        ("full", "Backup: full weekly", b.full_cron,
         {"backup_type": "full", "kind": "full", "scope": full_scope},
         f"Everything but measurement sets{' (these too)' if b.full_includes_ms else ''}; kept "
         f"{b.full_keep_days:g} days; copied to the off-site dir ({b.offsite_dir or 'not configured'})."),
    ]
    return [{"key": key, "body": {"name": name, "description": desc, "event": "schedule", "pipeline_id": "backup",
                                  "parameters": params, "schedule": {"cron": cron, "timezone": "UTC"}}}
            for key, name, cron, params, desc in rows]


def seed_schedules(settings: Any, db: Database) -> list[str]:
    """Create the built-in backup triggers not seeded before; returns the keys created now.

    Idempotent: the kv record says which were seeded (and as which trigger), so a second start,
    an operator's edit or an operator's deletion leaves the triggers table alone."""
    from engine import triggers as tg

    if not settings.backups.schedules:
        return []
    if not getattr(settings, "database_is_sqlite", True):  # they would copy a SQLite file there is not
        log.info("built-in backup schedules not seeded: the database is PostgreSQL (%s); back it up with "
                 "pg_dump", settings.database_label)
        return []
    with db.session() as s:
        row = s.get(m.KeyValue, SEEDED_KEY)
        seeded = dict(row.value) if row is not None else {}
    created = []
    for item in builtin_schedules(settings):
        if item["key"] in seeded:
            continue
        trig = tg.create_trigger(db, item["body"], "contimg (built-in backup schedule)")
        seeded[item["key"]] = {"trigger_id": trig["id"], "seeded_at": _iso(_now())}
        created.append(item["key"])

        def _record(value: dict[str, Any] = dict(seeded)) -> None:
            with db.session() as s:
                kv = s.get(m.KeyValue, SEEDED_KEY)
                if kv is None:
                    s.add(m.KeyValue(key=SEEDED_KEY, value=value))
                else:
                    kv.value = value
        retry_busy(_record)  # after each, so a crash between two never seeds one twice
    if created:
        log.info("seeded the built-in backup schedules: %s", ", ".join(created))
    return created


def seeded_schedules(db: Database) -> dict[str, Any]:
    with db.session() as s:
        row = s.get(m.KeyValue, SEEDED_KEY)
        return dict(row.value) if row is not None else {}


# --------------------------------------------------------------------------- configuration on change
def config_hash(settings: Any) -> str | None:
    cfg = settings.config_file
    return _sha256(Path(cfg)) if cfg is not None and Path(cfg).is_file() else None


def config_changed(settings: Any, db: Database) -> bool:
    """Whether the config file's content differs from the newest completed config backup's copy
    (no config file: nothing to back up; no config backup yet: changed)."""
    digest = config_hash(settings)
    if digest is None:
        return False
    with db.session() as s:
        path = s.scalar(select(m.BackupRecord.backup_path)
                        .where(m.BackupRecord.kind == "config", m.BackupRecord.status == "completed")
                        .order_by(m.BackupRecord.created_at.desc()).limit(1))
    if not path:
        return True
    try:
        manifest = _load_manifest(Path(path))
    except BackupError:
        return True  # the last copy is unreadable: make a new one
    return not any(e["path"].startswith("config/") and e["sha256"] == digest for e in manifest["files"])


def backup_config_if_changed(settings: Any, db: Database, *,
                             created_by: str = "contimg (config changed)") -> str | None:
    """At start-up: a config backup when the file changed since the last one; returns its id.
    Never raises (it runs as a background task): a failure is logged and on the backup's row."""
    try:
        if not config_changed(settings, db):
            return None
    except Exception:  # noqa: BLE001 - the scheduled check tries again
        log.exception("checking the config file for a change failed")
        return None
    bid = create_backup(settings, db, name=f"config {Path(settings.config_file).name} {_now():%Y-%m-%d %H:%M}",
                        scope={"pipeline_configs": True}, kind="config", created_by=created_by,
                        notes="the config file's content hash changed")
    try:
        run_scheduled_backup(settings, db, bid)
    except Exception:  # noqa: BLE001 - run_backup records its own failures; this is the unexpected rest
        log.exception("config backup %s failed", bid)
    return bid


# --------------------------------------------------------------------------- after a scheduled backup
def run_scheduled_backup(settings: Any, db: Database, backup_id: str) -> dict[str, Any]:
    """Run a recorded backup; when it completed, copy a full one off-site, then prune by ``[backups]``."""
    run_backup(settings, db, backup_id)
    row = get_backup(db, backup_id)
    out: dict[str, Any] = {"backup_id": backup_id, "status": row["status"] if row else "missing",
                           "offsite": None, "pruned": []}
    if row is None or row["status"] != "completed":
        return out
    if row["kind"] == "full" and settings.backups.offsite_dir is not None:
        try:
            out["offsite"] = str(copy_offsite(settings, db, backup_id))
        except (BackupError, OSError) as exc:
            out["offsite_error"] = str(exc)
            log.error("off-site copy of backup %s failed: %s", backup_id, exc)
            _record_offsite(db, {"backup_id": backup_id, "at": _iso(_now()), "error": str(exc)})
    try:
        out["pruned"] = prune_by_settings(settings, db)
    except (BackupError, OSError) as exc:
        log.error("pruning backups after %s failed: %s", backup_id, exc)
        out["prune_error"] = str(exc)
    if out["pruned"]:
        log.info("pruned %d backup(s): %s", len(out["pruned"]), ", ".join(out["pruned"]))
    return out


def _record_offsite(db: Database, value: dict[str, Any]) -> None:
    def _do() -> None:
        with db.session() as s:
            kv = s.get(m.KeyValue, OFFSITE_KEY)
            if kv is None:
                s.add(m.KeyValue(key=OFFSITE_KEY, value=value))
            else:
                kv.value = value
    retry_busy(_do)


def offsite_status(db: Database) -> dict[str, Any]:
    with db.session() as s:
        kv = s.get(m.KeyValue, OFFSITE_KEY)
        return dict(kv.value) if kv is not None else {}


def copy_offsite(settings: Any, db: Database, backup_id: str) -> Path:
    """Copy a completed backup's directory to ``offsite_dir/<id>`` (via ``.tmp-<id>``, re-hashed there
    before the rename), then keep only the newest ``offsite_keep`` copies there."""
    row = get_backup(db, backup_id)
    if row is None or row["status"] != "completed":
        raise BackupError(f"backup {backup_id} is not a completed backup")
    offsite = Path(settings.backups.offsite_dir)
    if not offsite.is_dir():
        raise BackupError(f"off-site dir {offsite} does not exist or is not a directory (is the NAS mounted?)")
    src = Path(row["storage_location"])
    manifest = _load_manifest(src)
    final, tmp = offsite / backup_id, offsite / f".tmp-{backup_id}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, symlinks=False)
        _verified, corrupted = _verify_files(tmp, manifest)
        if corrupted:
            raise BackupError(f"off-site copy differs from the backup: {', '.join(corrupted[:5])}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _record_offsite(db, {"backup_id": backup_id, "at": _iso(_now()), "path": str(final), "error": None})
    copies = sorted((p for p in offsite.iterdir() if p.is_dir() and (p / MANIFEST).is_file()
                     and not p.name.startswith(".")), key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
    for old in copies[settings.backups.offsite_keep:]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed off-site copy %s (offsite_keep=%d)", old, settings.backups.offsite_keep)
    return final

