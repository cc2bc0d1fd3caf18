"""Shared pieces of the backup service: constants, errors, manifest entries, hashing, the database copy."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import text

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError
from engine.units import human_bytes

log = logging.getLogger("engine.backups")

SCOPE_KEYS = ("measurement_sets", "images", "catalogs", "pipeline_configs", "job_history", "qa_ratings")
BACKUP_TYPES = ("full", "incremental", "differential")
BACKUP_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
#: What a backup is for: the roadmap's four schedules (database, caltables, config, full) and the
#: chained types. Retention, the schedules and the metrics' ``type`` label go by it.
KINDS = ("database", "caltables", "config", "full", "incremental", "differential")
FILE_SCOPE_KEYS = ("measurement_sets", "images", "catalogs", "pipeline_configs")
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


def require_sqlite(settings: Any, what: str) -> None:
    """Backups copy the SQLite file: on a PostgreSQL database ``what`` is refused, saying what to use."""
    if getattr(settings, "database_is_sqlite", True):
        return
    raise BackupError(f"{what} works on the SQLite database file only, and this data dir's database is "
                      f"{settings.database_label}: backups of a PostgreSQL database are pg_dump's job "
                      "(pg_dump -Fc, restored with pg_restore; or the server's base backups and WAL archive), "
                      "and the data dir's products are copied by your file backups (docs/scaling.md)")


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


def default_kind(backup_type: str, scope: dict[str, Any] | None) -> str:
    """The kind of a backup made without one named: chained types are their own kind; a full
    without any file is a database backup; anything else a full one."""
    if backup_type in ("incremental", "differential"):
        return backup_type
    return "full" if any((scope or {}).get(k) for k in FILE_SCOPE_KEYS) else "database"


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


def _sources(settings: Any, scope: dict[str, bool], kind: str | None = None) -> list[tuple[str, Path]]:
    """(manifest path, source file) for every file the scope selects, the database excluded.

    A ``config`` backup holds the config file only (not the calibration tables its scope implies)."""
    out: list[tuple[str, Path]] = []
    if kind == "config":
        cfg = settings.config_file
        return [(f"config/{Path(cfg).name}", Path(cfg))] if cfg is not None and Path(cfg).is_file() else []
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


def copy_file_paced(src: Path, dst: Path, chunk: int = 16 << 20) -> None:
    """Copy a file in chunks (``copy_file_range``), starting the write-back of each chunk as it is
    written. Without it a 1 GB copy leaves 1 GB dirty in the page cache, and on ext4 the next
    ``fsync`` of anyone — the live database's checkpoint — waits for all of it (a writer stall)."""
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        fd_in, fd_out = fin.fileno(), fout.fileno()
        offset = 0
        while True:
            try:
                n = os.copy_file_range(fd_in, fd_out, chunk)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                data = fin.read(chunk)
                n = len(data)
                if n:
                    view = memoryview(data)
                    while view:
                        view = view[fout.write(view):]
            if n == 0:
                break
            os.posix_fadvise(fd_out, offset, n, os.POSIX_FADV_DONTNEED)  # write-back starts, no wait
            offset += n
    shutil.copystat(src, dst)


#: The child's whole program: copy_file_paced without importing anything of ours (it starts in ~30 ms).
_COPIER = """
import errno, os, shutil, sys
args = sys.argv[1:]
for src, dst in zip(args[0::2], args[1::2]):
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        offset = 0
        while True:
            try:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), 16 << 20)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                data = fin.read(16 << 20)
                n = len(data)
                view = memoryview(data)
                while view:
                    view = view[fout.write(view):]
            if n == 0:
                break
            os.posix_fadvise(fout.fileno(), offset, n, os.POSIX_FADV_DONTNEED)
            offset += n
    shutil.copystat(src, dst)
"""


def copy_files_elsewhere(pairs: list[tuple[Path, Path]]) -> None:
    """Copy a live database's files from a child process, never from this one.

    POSIX advisory locks belong to a process, and closing *any* descriptor of a file drops all of
    that process's locks on it: an ``open()``/``close()`` of ``pipeline.sqlite3`` here would
    silently release the locks our SQLite connections hold, and another process (a stage worker
    writing its job log) could then write under them — SQLite's "how to corrupt a database" §2.2,
    and what SIGKILL tests found as "database disk image is malformed". A child process holds no
    locks to lose. It is ``python -I -S -c`` (paced like ``copy_file_paced``), or ``cp`` in the
    one-file binary; its error (disk full, …) comes back as an OSError naming the file.
    """
    import sys

    if getattr(sys, "frozen", False):  # the one-file binary has no ``python -c``
        for src, dst in pairs:
            _run_copier(["cp", "--", str(src), str(dst)], src)
        return
    _run_copier([sys.executable, "-I", "-S", "-c", _COPIER, *(str(x) for pair in pairs for x in pair)], pairs[0][0])


def _run_copier(cmd: list[str], what: Path) -> None:
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        code = re.search(r"\[Errno (\d+)\]", last)  # keep the errno: disk full must read as disk full
        if code:
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(what))
        raise OSError(f"copying {what} failed: {last}")


def copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a live database as one self-contained file, without stopping its writers.

    WAL databases (ours): inside a read transaction on the source, the database file and then its
    WAL are copied as files (``copy_file_range``, several times faster than page by page). The open
    read transaction is what makes this safe: while it lasts, a checkpoint can only write pages
    into the database file that are also in the WAL (up to this reader's snapshot), and the WAL
    cannot be restarted over them, so replaying the copied WAL over the copied file yields a
    committed state — this snapshot or a later commit; a frame torn by a concurrent append fails
    its checksum and is dropped with everything after it. The copy is then checkpointed into a
    single file (journal mode DELETE). Other journal modes use SQLite's online backup API.
    """
    src, dst = Path(src), Path(dst)
    source = sqlite3.connect(str(src), timeout=30, isolation_level=None)
    try:
        if str(source.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            target = sqlite3.connect(str(dst))
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
                target.commit()
            finally:
                target.close()
            return
        wal, dst_wal = Path(f"{src}-wal"), Path(f"{dst}-wal")
        for stale in (dst_wal, Path(f"{dst}-shm")):
            stale.unlink(missing_ok=True)
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read snapshot pins the WAL
        try:
            pairs = [(src, dst)] + ([(wal, dst_wal)] if wal.exists() else [])
            copy_files_elsewhere(pairs)
        finally:
            source.execute("COMMIT")
    finally:
        source.close()
    target = sqlite3.connect(str(dst))  # no -shm beside the copy: SQLite recovers the copied WAL
    try:
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if str(target.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower() != "delete":
            raise sqlite3.OperationalError(f"{dst}: could not fold the copied WAL into the database copy")
    finally:
        target.close()
    dst_wal.unlink(missing_ok=True)


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

