"""Backups of the pipeline's state: create, validate, restore, prune.

A backup is a directory ``<backups_dir>/<id>/`` holding the backed-up files under
logical prefixes and a ``manifest.json`` listing every file with its size and
SHA-256::

    database/pipeline.sqlite3     always: a consistent copy made with SQLite's online backup API
    caltables/...                 scope catalogs or pipeline_configs (calibration tables)
    catalogs/<name>               scope catalogs: calibrator catalogue files named in the settings
    config/<name>                 scope pipeline_configs, when a config file is in use
    images/...                    scope images (FITS and PNG)
    ms/...                        scope measurement_sets (only when asked: can be huge)

Job history and QA ratings live inside the database copy (the manifest says so).
A backup is written into ``<backups_dir>/.tmp-<id>/`` and renamed into place only
when complete, so a crash never leaves a completed half backup (``recover_interrupted``
marks such rows failed and removes the temporary directory at start-up).

Incremental backups hold the files changed since their parent, differential ones the
files changed since the last full backup; the database copy is always whole. Each
manifest keeps an ``index`` of every source file seen (path, size, mtime, hash) so the
next backup can tell what changed without reading the older backups.

Restoring files writes only inside the data dir. Restoring the database cannot
happen under a running process: ``run_restore`` stages the verified copy next to the
live database as ``pipeline.sqlite3.restore-<restore id>``, and the service applies it
with ``apply_pending_restore(settings)`` at its next start, before it opens the
database; the previous database is kept as ``pipeline.sqlite3.pre-restore-<timestamp>``.

Everything here is synchronous; callers run it in threads (``run_backup`` and
``run_restore`` do the slow work and are meant for a worker thread or job).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select, text, update

from engine.units import human_bytes, retry_busy
from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError

log = logging.getLogger(__name__)

SCOPE_KEYS = ("measurement_sets", "images", "catalogs", "pipeline_configs", "job_history", "qa_ratings")
BACKUP_TYPES = ("full", "incremental", "differential")
BACKUP_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
DB_ENTRY = "database/pipeline.sqlite3"
PREFIXES = ("database", "caltables", "catalogs", "config", "images", "ms")
IMAGE_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".png")
IDEMPOTENCE_WINDOW = timedelta(minutes=10)
TMP_PREFIX = ".tmp-"
CHUNK = 1 << 20
SQLITE_FULL = 13
# Rough throughput used by restore_preview's time estimate.
RESTORE_BYTES_PER_S = 200e6


class BackupError(ContimgError):
    """A backup or restore cannot be done; the message says why (and names the entry)."""


class UnsafeEntryError(BackupError):
    """A manifest entry would write outside the data dir (traversal, absolute path, symlink)."""


# --------------------------------------------------------------------------- small helpers
def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def format_size(n: int | None) -> str:
    return human_bytes(n)


def _normalise_scope(scope: dict[str, Any] | None, *, subset: bool = False) -> dict[str, bool]:
    scope = dict(scope or {})
    unknown = sorted(set(scope) - set(SCOPE_KEYS))
    if unknown:
        raise BackupError(f"unknown scope key(s): {', '.join(unknown)} (expected {', '.join(SCOPE_KEYS)})")
    if subset:
        return {k: bool(v) for k, v in scope.items()}
    return {k: bool(scope.get(k, False)) for k in SCOPE_KEYS}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _overall_checksum(files: list[dict[str, Any]]) -> str:
    """One checksum over every (path, size, sha256) of the manifest, in path order."""
    h = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e["path"]):
        h.update(f"{entry['path']}\0{entry['size']}\0{entry['sha256']}\n".encode())
    return h.hexdigest()


def check_entry(rel: Any) -> PurePosixPath:
    """A manifest path, refused unless it is a plain relative path under a known prefix."""
    if not isinstance(rel, str) or not rel:
        raise UnsafeEntryError(f"manifest entry {rel!r}: not a non-empty path string")
    if "\x00" in rel or "\\" in rel:
        raise UnsafeEntryError(f"manifest entry {rel!r}: illegal character")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("/"):
        raise UnsafeEntryError(f"manifest entry {rel!r}: absolute path refused")
    if any(part in ("..", ".", "") for part in rel.split("/")):
        raise UnsafeEntryError(f"manifest entry {rel!r}: path traversal refused")
    if p.parts[0] not in PREFIXES or len(p.parts) < 2:
        raise UnsafeEntryError(f"manifest entry {rel!r}: not under one of {', '.join(PREFIXES)}")
    return p


def _inside(base: Path, rel: PurePosixPath) -> Path:
    target = base.joinpath(*rel.parts)
    base_abs = os.path.abspath(base)
    if os.path.commonpath([base_abs, os.path.abspath(target)]) != base_abs:
        raise UnsafeEntryError(f"manifest entry {str(rel)!r}: resolves outside {base}")
    return target


def _backup_file(backup_dir: Path, rel: PurePosixPath) -> Path:
    """The stored copy of an entry; a symlink anywhere on its path inside the backup is refused."""
    path = _inside(backup_dir, rel)
    probe = backup_dir
    for part in rel.parts:
        probe = probe / part
        if probe.is_symlink():
            raise UnsafeEntryError(f"manifest entry {str(rel)!r}: symlink in the backup refused")
    return path


def _restore_target(settings: Any, rel: PurePosixPath, restore_id: str) -> Path:
    """Where an entry is restored: always inside the data dir."""
    data_dir = Path(settings.data_dir)
    top = rel.parts[0]
    if top in ("config", "catalogs"):
        # The live config and catalogue files are outside the data dir: restored beside the data,
        # for the operator to move into place.
        return _inside(data_dir / f"{top}.restore-{restore_id}", PurePosixPath(*rel.parts[1:]))
    if top == "database":
        return data_dir / f"{Path(settings.db_path).name}.restore-{restore_id}"
    base = {"caltables": settings.caltables_dir, "images": settings.images_dir, "ms": settings.ms_dir}[top]
    return _inside(Path(base), PurePosixPath(*rel.parts[1:]))


def _walk_files(root: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Regular files under ``root`` (symlinks are not followed nor backed up)."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            if suffixes is not None and not name.lower().endswith(suffixes):
                continue
            yield path


def _sources(settings: Any, scope: dict[str, bool]) -> list[tuple[str, Path]]:
    """(manifest path, source file) for every file the scope selects, the database excluded."""
    out: list[tuple[str, Path]] = []
    if scope.get("catalogs") or scope.get("pipeline_configs"):
        base = Path(settings.caltables_dir)
        out += [(f"caltables/{p.relative_to(base).as_posix()}", p) for p in _walk_files(base)]
    if scope.get("catalogs"):
        seen: set[str] = set()
        for i, cat in enumerate(getattr(getattr(settings, "calibration", None), "catalogue_files", None) or []):
            cat = Path(cat)
            if cat.is_file() and not cat.is_symlink():
                name = cat.name if cat.name not in seen else f"{i}-{cat.name}"
                seen.add(name)
                out.append((f"catalogs/{name}", cat))
    if scope.get("pipeline_configs"):
        cfg = settings.config_file
        if cfg is not None and Path(cfg).is_file():
            out.append((f"config/{Path(cfg).name}", Path(cfg)))
    if scope.get("images"):
        base = Path(settings.images_dir)
        out += [(f"images/{p.relative_to(base).as_posix()}", p) for p in _walk_files(base, IMAGE_SUFFIXES)]
    if scope.get("measurement_sets"):
        base = Path(settings.ms_dir)
        out += [(f"ms/{p.relative_to(base).as_posix()}", p) for p in _walk_files(base)]
    return out


def copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a live (WAL) database with SQLite's online backup API, as one file."""
    source = sqlite3.connect(str(src), timeout=30)
    try:
        target = sqlite3.connect(str(dst))
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
            target.commit()
        finally:
            target.close()
    finally:
        source.close()


def _annotate_copy(copy: Path, backup_id: str, final_path: str) -> None:
    """In the copy, this backup's own row says "running"; the copy only survives if the backup
    completes, so mark it completed there (a restored database then lists it correctly)."""
    conn = sqlite3.connect(str(copy))
    try:
        conn.execute("UPDATE backup_history SET status='completed', backup_path=?, completed_at=? WHERE id=?",
                     (final_path, _now().strftime("%Y-%m-%d %H:%M:%S.%f"), backup_id))
        conn.commit()
    except sqlite3.OperationalError as exc:  # an older schema without the table: nothing to annotate
        log.debug("cannot annotate the database copy: %s", exc)
    finally:
        conn.close()


def sqlite_integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database file opened read-only ("ok" when sound)."""
    if not path.is_file():
        return f"{path.name}: missing"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"{path.name}: {exc}"
    result = "; ".join(str(r[0]) for r in rows)
    return result or "no result"


def _os_error_message(exc: OSError, where: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on device while writing the backup under {where}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing the backup under {where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write the backup under {where}: {exc.strerror} ({exc.filename or where})"
    return f"cannot write the backup under {where}: {exc.strerror or exc} ({exc.filename or where})"


def _write_lock(s: Any) -> None:
    """Take SQLite's write lock now (a no-op UPDATE), so the reads that follow cannot go stale."""
    s.execute(text("UPDATE backup_history SET id = id WHERE id = ''"))




# --------------------------------------------------------------------------- creating
def derive_request_key(name: str, backup_type: str, scope: dict[str, Any], parent_backup_id: str | None,
                       created_by: str | None) -> str:
    """A request key from the request's content (for callers whose clients send none)."""
    payload = json.dumps([name, backup_type, _normalise_scope(scope), parent_backup_id, created_by],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:64]


def create_backup(settings: Any, db: Database, *, name: str, backup_type: str = "full",
                  scope: dict[str, Any], created_by: str | None, notes: str | None = None,
                  parent_backup_id: str | None = None, request_key: str | None = None) -> str:
    """Record a pending backup and return its id quickly; ``run_backup`` does the work.

    With ``request_key``: a backup with that key pending, running or completed in the
    last 10 minutes is returned instead of a new one (clients retry their POSTs).
    """
    if backup_type not in BACKUP_TYPES:
        raise BackupError(f"backup type {backup_type!r} is not one of {', '.join(BACKUP_TYPES)}")
    norm = _normalise_scope(scope)
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
                                 request_key=request_key, status="pending", backup_path="")
            s.add(rec)
            s.flush()
            rec.backup_path = str(Path(settings.backups_dir) / rec.id)
            return rec.id

    return retry_busy(_do)


def _load_manifest(backup_dir: Path) -> dict[str, Any]:
    path = backup_dir / MANIFEST
    if path.is_symlink():
        raise BackupError(f"{path}: manifest is a symlink")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path}: manifest missing") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: manifest unreadable or corrupt: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise BackupError(f"{path}: manifest corrupt: no 'files' list")
    for entry in data["files"]:
        if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= set(entry):
            raise BackupError(f"{path}: manifest corrupt: bad file entry {entry!r}")
        check_entry(entry["path"])
    return data


def _chain(db: Database, backup_id: str) -> list[m.BackupRecord]:
    """The backup and its ancestors, oldest (the full) first; a missing link raises."""
    chain: list[m.BackupRecord] = []
    seen: set[str] = set()
    with db.session() as s:
        current: str | None = backup_id
        while current is not None:
            if current in seen:
                raise BackupError(f"backup chain of {backup_id} loops at {current}")
            seen.add(current)
            rec = s.get(m.BackupRecord, current)
            if rec is None:
                raise BackupError(f"parent backup {current} of {backup_id} is missing")
            chain.append(rec)
            current = rec.parent_backup_id
    chain.reverse()
    return chain


def _baseline_index(db: Database, rec: m.BackupRecord) -> dict[str, dict[str, Any]]:
    """What the parent (incremental) or the last full (differential) saw: path → {size, mtime_ns, sha256}."""
    if rec.backup_type == "full" or not rec.parent_backup_id:
        return {}
    chain = _chain(db, rec.parent_backup_id)
    if rec.backup_type == "differential":
        fulls = [b for b in chain if b.backup_type == "full"]
        if not fulls:
            raise BackupError(f"no full backup found under parent {rec.parent_backup_id}")
        base = fulls[-1]
    else:
        base = chain[-1]
    manifest = _load_manifest(Path(base.backup_path))
    return {e["path"]: e for e in manifest.get("index", [])}


def run_backup(settings: Any, db: Database, backup_id: str) -> None:
    """Do the work of a pending backup: pending → running → completed or failed (error_message)."""
    def _claim() -> m.BackupRecord | None:
        with db.session() as s:
            res = s.execute(update(m.BackupRecord).where(m.BackupRecord.id == backup_id,
                                                          m.BackupRecord.status == "pending")
                            .values(status="running"))
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
    copy_database(Path(db.path), db_copy)
    _annotate_copy(db_copy, rec.id, str(Path(settings.backups_dir) / rec.id))
    verdict = sqlite_integrity(db_copy)
    if verdict != "ok":
        raise BackupError(f"the database copy fails its integrity check: {verdict}")
    st = db_copy.stat()
    files.append({"path": DB_ENTRY, "size": st.st_size, "sha256": _sha256(db_copy), "mtime": time.time()})

    index: list[dict[str, Any]] = []
    for rel, src in _sources(settings, scope):
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


# --------------------------------------------------------------------------- reading
def _backup_dict(b: m.BackupRecord) -> dict[str, Any]:
    return {"id": b.id, "name": b.name, "type": b.backup_type, "status": b.status,
            "scope": _normalise_scope(b.scope), "size_bytes": b.size_bytes or 0,
            "size_formatted": format_size(b.size_bytes), "item_count": b.item_count or 0,
            "created_at": _iso(b.created_at), "completed_at": _iso(b.completed_at),
            "created_by": b.created_by or "", "storage_location": b.backup_path, "checksum": b.checksum,
            "parent_backup_id": b.parent_backup_id, "notes": b.notes, "error_message": b.error_message,
            "validation_status": b.validation_status, "validated_at": _iso(b.validated_at)}


def list_backups(db: Database, limit: int = 20, type: str | None = None,  # noqa: A002 - the API's name
                 status: str | None = None) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(m.BackupRecord).order_by(m.BackupRecord.created_at.desc()).limit(limit)
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
