"""Validating a backup: every file re-hashed against its manifest, the database copy integrity-checked."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any

from engine.backups.common import (
    DB_ENTRY,
    BackupError,
    _backup_file,
    _load_manifest,
    _now,
    _overall_checksum,
    _sha256,
    check_entry,
    sqlite_integrity,
)
from engine.db import Database
from engine.db import models as m
from engine.units import retry_busy


# --------------------------------------------------------------------------- validating
def _verify_files(backup_dir: Path, manifest: dict[str, Any]) -> tuple[int, list[str]]:
    verified, corrupted = 0, []
    for entry in manifest["files"]:
        rel = check_entry(entry["path"])
        path = _backup_file(backup_dir, rel)
        try:
            ok = path.is_file() and path.stat().st_size == entry["size"] and _sha256(path) == entry["sha256"]
        except OSError:
            ok = False
        if ok:
            verified += 1
        else:
            corrupted.append(entry["path"])
    return verified, corrupted


def validate_backup(settings: Any, db: Database, backup_id: str) -> dict[str, Any]:
    """Re-hash every file against the manifest and check the database copy; record the verdict."""
    t0 = time.perf_counter()
    with db.session() as s:
        rec = s.get(m.BackupRecord, backup_id)
        if rec is None:
            raise KeyError(backup_id)
        status, checksum, path = rec.status, rec.checksum, Path(rec.backup_path)
    result: dict[str, Any] = {"backup_id": backup_id, "is_valid": False, "checksum_verified": False,
                              "files_verified": 0, "files_corrupted": 0, "corrupted_files": [],
                              "validation_time_ms": 0.0, "reason": None}
    reasons: list[str] = []
    if status != "completed":
        reasons.append(f"backup is {status}, not completed")
    else:
        try:
            manifest = _load_manifest(path)
            verified, corrupted = _verify_files(path, manifest)
            result["files_verified"], result["corrupted_files"] = verified, corrupted
            result["files_corrupted"] = len(corrupted)
            overall = _overall_checksum(manifest["files"])
            result["checksum_verified"] = overall == checksum == manifest.get("checksum") and not corrupted
            if overall != checksum or manifest.get("checksum") != checksum:
                reasons.append("manifest checksum does not match the recorded checksum")
            if corrupted:
                reasons.append(f"{len(corrupted)} file(s) missing or corrupted: {', '.join(corrupted[:5])}")
            if DB_ENTRY not in [e["path"] for e in manifest["files"]]:
                reasons.append("the manifest lists no database copy")
            elif DB_ENTRY not in corrupted:
                verdict = sqlite_integrity(_backup_file(path, PurePosixPath(DB_ENTRY)))
                if verdict != "ok":
                    reasons.append(f"database copy integrity check: {verdict}")
        except BackupError as exc:
            reasons.append(str(exc))
    result["is_valid"] = not reasons
    result["reason"] = "; ".join(reasons) or None
    result["validation_time_ms"] = round((time.perf_counter() - t0) * 1000, 2)

    def _record() -> None:
        with db.session() as s:
            row = s.get(m.BackupRecord, backup_id)
            if row is not None:
                row.validation_status = "valid" if result["is_valid"] else "invalid"
                row.validated_at = _now()
    retry_busy(_record)
    return result

