"""Retention policies and one-off cleanups: which data go when they get old, big or many.

An *inventory* lists the items of one data type — a Measurement Set, a calibration
table, an image with its sidecars, an exported catalogue, a rotated log file or a
finished job's captured log, a temporary file — with size, age and whether it is
*protected*. Policies (rules: age, size, count, manual) and cleanup filters select
candidates from it; an action then deletes, archives (moves under
``<data_dir>/archive/``, keeping the relative path), compresses (gzip a file, tar.gz
a directory) or only notifies (an alert).

What is never touched, whatever a rule says: an MS or image whose group is still
being processed (queued/running jobs or a non-terminal state), the source MS and
tables of a calibration set the registry may still hand out (active and within the
fallback horizon), the live log file, temporary files modified in the last hour.
The database keeps its science records: image and MS rows stay (with their
photometry and provenance), and their paths follow an archive or compression; a
deleted file's row says so in the execution's action list. Calibration sets whose
tables are removed are retired with the reason, so the registry never applies them.

Every action is per item and idempotent (a missing file is already gone), so an
interrupted run can simply be run again.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.logs import get_logger
from engine.units import human_bytes

log = get_logger("retention")

DATA_TYPES = ("measurement_set", "calibration", "image", "source_catalog", "job_log", "temporary")
TRIGGERS = ("age", "size", "count", "manual")
ACTIONS = ("delete", "archive", "compress", "notify")
PRIORITIES = ("low", "medium", "high", "critical")
STATUSES = ("active", "paused", "disabled", "expired")
UNITS = {"age": ("days", "hours"), "size": ("GB", "TB"), "count": ("count",), "manual": ()}
UNIT_FACTOR = {"days": 86400.0, "hours": 3600.0, "GB": 1e9, "TB": 1e12, "count": 1.0}
TERMINAL_GROUP_STATES = ("complete", "failed")
TEMP_MIN_AGE_S = 3600.0
# cleanup wizard data types -> inventory data types ("cache": regenerable PNG quick-looks)
CLEANUP_TYPES = {"ms": "measurement_set", "image": "image", "log": "job_log", "temp": "temporary", "cache": "cache"}


class RetentionError(ValueError):
    """A policy, rule or filter that cannot be applied; the message names the field."""


@dataclass
class Item:
    id: str
    data_type: str
    path: Path
    size_bytes: int
    created_at: datetime
    paths: list[Path] = field(default_factory=list)  # every file or dir the item owns (path first)
    last_accessed_at: datetime | None = None
    protected: bool = False
    reason: str | None = None
    ref: tuple[str, Any] | None = None  # the database row it belongs to

    @property
    def name(self) -> str:
        return self.path.name

    def age_days(self, now: datetime) -> float:
        return max(0.0, (now - self.created_at).total_seconds() / 86400.0)


@dataclass
class Candidate:
    item: Item
    rule: str
    action: str


# ---- inventory --------------------------------------------------------------------------------------------
def _size(path: Path) -> int:
    try:
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.lstat().st_mtime, UTC)


def _atime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.lstat().st_atime, UTC)
    except OSError:
        return None


def _busy_groups(s: Any) -> dict[str, str]:
    busy = {g: "its group has a queued or running job" for g in s.scalars(
        select(m.Job.group_id).where(m.Job.state.in_(("queued", "running")), m.Job.group_id.is_not(None)))}
    for gid, state in s.execute(select(m.ObservationGroup.id, m.ObservationGroup.state)
                                .where(m.ObservationGroup.state.not_in(TERMINAL_GROUP_STATES))):
        busy.setdefault(gid, f"its group is still being processed ({state})")
    return busy


def _usable_sets(s: Any, fallback_h: float) -> dict[int, str]:
    """Calibration sets the registry may still hand out: active and not past the fallback horizon."""
    from astropy.time import Time

    now_mjd = Time(datetime.now(UTC)).mjd
    out = {}
    for cs in s.scalars(select(m.CalibrationSet).where(m.CalibrationSet.status == "active")):
        if cs.valid_end_mjd + fallback_h / 24.0 >= now_mjd:
            out[cs.id] = f"calibration set {cs.name} is active and may still be applied"
    return out


def inventory(settings: Any, db: Database, data_type: str) -> list[Item]:
    """Every item of ``data_type`` that exists on disk, with its protection."""
    if data_type not in (*DATA_TYPES, "cache"):
        raise RetentionError(f"dataType {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    return list(_INVENTORIES[data_type](settings, db))


def _on_disk(kind: str, data_type: str,
             rows: Iterable[tuple[Any, str, datetime, str | None, int | None]]) -> Iterable[Item]:
    """Items of one-directory products (an MS, a calibration table) that still exist: (key, path, created,
    protection reason or None, size recorded when it was written or None to measure it)."""
    for key, path, created, reason, size in rows:
        p = Path(path)
        if p.exists():
            yield Item(f"{kind}:{key}", data_type, p, size if size else _size(p), created, [p], _atime(p),
                       reason is not None, reason, (kind, key))


def _ms_items(settings: Any, db: Database) -> Iterable[Item]:
    with db.session() as s:
        busy = _busy_groups(s)
        usable = _usable_sets(s, settings.calibration.fallback_h)
        cal_ms = {cs.source_ms_path: usable[cs.id] for cs in s.scalars(select(m.CalibrationSet))
                  if cs.id in usable}
        rows = s.execute(select(m.MeasurementSet.id, m.MeasurementSet.path, m.MeasurementSet.group_id,
                                m.MeasurementSet.created_at, m.MeasurementSet.size_bytes)).all()
    # the size recorded at conversion spares walking thousands of MS directories (calibration only
    # rewrites columns the converter already wrote)
    return _on_disk("ms", "measurement_set", [(i, path, created, busy.get(gid) or cal_ms.get(path), size)
                                              for i, path, gid, created, size in rows])


def _cal_items(settings: Any, db: Database) -> Iterable[Item]:
    with db.session() as s:
        usable = _usable_sets(s, settings.calibration.fallback_h)
        rows = s.execute(select(m.CalibrationTable.id, m.CalibrationTable.path, m.CalibrationTable.set_id,
                                m.CalibrationTable.created_at)).all()
    return _on_disk("caltable", "calibration", [(i, path, created, usable.get(set_id), None)
                                                for i, path, set_id, created in rows])


def image_files(path: str, png_path: str | None) -> list[Path]:
    stem = path.removesuffix(".gz").removesuffix("-image.fits")
    files = [Path(path)] + ([Path(png_path)] if png_path else [])
    files += [Path(f"{stem}-{kind}.fits") for kind in ("model", "residual", "psf")]
    return [f for f in files if f.exists()]


def _image_items(settings: Any, db: Database) -> Iterable[Item]:
    with db.session() as s:
        busy = _busy_groups(s)
        rows = s.execute(select(m.Image.id, m.Image.path, m.Image.png_path, m.Image.group_id,
                                m.Image.created_at)).all()
    for iid, path, png, gid, created in rows:
        files = image_files(path, png)
        if not files or files[0] != Path(path):
            continue  # the image itself is gone
        reason = busy.get(gid) if gid else None
        yield Item(f"image:{iid}", "image", Path(path), sum(_size(f) for f in files), created, files,
                   _atime(Path(path)), reason is not None, reason, ("image", iid))


def _cache_items(settings: Any, db: Database) -> Iterable[Item]:
    """PNG quick-looks: regenerated from the FITS on demand, so always safe to drop."""
    with db.session() as s:
        rows = s.execute(select(m.Image.id, m.Image.png_path, m.Image.created_at)
                         .where(m.Image.png_path.is_not(None))).all()
    for iid, png, created in rows:
        p = Path(png)
        if p.exists():
            yield Item(f"png:{iid}", "cache", p, _size(p), created, [p], _atime(p), ref=("png", iid))


def _files_under(root: Path, kind: str, skip: set[Path] | None = None) -> Iterable[Item]:
    if not root.exists():
        return
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            p = Path(dirpath) / f
            if skip and p in skip:
                continue
            try:
                st = p.lstat()
            except OSError:
                continue
            yield Item(f"file:{p}", kind, p, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), [p],
                       datetime.fromtimestamp(st.st_atime, UTC))


def _catalog_items(settings: Any, db: Database) -> Iterable[Item]:
    for item in _files_under(settings.exports_dir, "source_catalog"):
        if item.name.endswith((".tmp", ".part")):
            item.protected, item.reason = True, "an export is still being written"
        yield item


def _log_items(settings: Any, db: Database) -> Iterable[Item]:
    live = {settings.logs_dir / "contimg.log"}
    for item in _files_under(settings.logs_dir, "job_log"):
        if item.path in live:
            item.protected, item.reason = True, "the live log file"
        yield item
    with db.session() as s:
        rows = s.execute(select(m.Job.id, m.Job.finished_at, m.Job.state, func.count(m.JobLog.id),
                                func.total(func.length(m.JobLog.message)))
                         .join(m.JobLog, m.JobLog.job_id == m.Job.id).group_by(m.Job.id)).all()
    for job_id, finished, state, n, size in rows:
        item = Item(f"joblog:{job_id}", "job_log", Path(f"job-logs/{job_id}"), int(size or 0) + 40 * n,
                    finished or datetime.now(UTC), [], ref=("joblog", job_id))
        if state in ("queued", "running"):
            item.protected, item.reason = True, "the job has not finished"
        yield item


def _temp_items(settings: Any, db: Database) -> Iterable[Item]:
    now = time.time()
    roots = [settings.data_dir / "tmp", settings.data_dir / "demo-staging"]
    stray = []
    for sub in ("ms", "caltables", "images", "exports", "backups"):
        d = settings.data_dir / sub
        if d.exists():
            stray += [p for p in d.iterdir() if p.name.endswith((".tmp", ".partial")) or ".tmp-" in p.name]
    items = [it for root in roots for it in _files_under(root, "temporary")]
    for p in stray:
        items.append(Item(f"file:{p}", "temporary", p, _size(p), _mtime(p), [p], _atime(p)))
    for it in items:
        if now - it.created_at.timestamp() < TEMP_MIN_AGE_S:
            it.protected, it.reason = True, "modified within the last hour (may be in use)"
    return items


_INVENTORIES = {"measurement_set": _ms_items, "calibration": _cal_items, "image": _image_items,
                "source_catalog": _catalog_items, "job_log": _log_items, "temporary": _temp_items,
                "cache": _cache_items}


# ---- selection ---------------------------------------------------------------------------------------------
def validate_rules(rules: list[dict[str, Any]]) -> None:
    if not rules:
        raise RetentionError("rules: a policy needs at least one rule")
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if r.get("triggerType") not in TRIGGERS:
            raise RetentionError(f"{where}.triggerType must be one of {', '.join(TRIGGERS)}")
        if r.get("action") not in ACTIONS:
            raise RetentionError(f"{where}.action must be one of {', '.join(ACTIONS)}")
        units = UNITS[r["triggerType"]]
        if units and r.get("thresholdUnit") not in units:
            raise RetentionError(f"{where}.thresholdUnit must be {' or '.join(units)} for a "
                                 f"{r['triggerType']} rule, not {r.get('thresholdUnit')!r}")
        threshold = r.get("threshold")
        if r["triggerType"] != "manual" and (not isinstance(threshold, (int, float)) or threshold < 0):
            raise RetentionError(f"{where}.threshold must be a number >= 0")


def _matches(item: Item, pattern: str | None, excludes: Iterable[str], min_size: int | None,
             max_size: int | None) -> bool:
    text = str(item.path)
    if pattern and not (fnmatch.fnmatch(item.name, pattern) or fnmatch.fnmatch(text, pattern)):
        return False
    if any(fnmatch.fnmatch(item.name, x) or fnmatch.fnmatch(text, x) for x in excludes if x):
        return False
    if min_size is not None and item.size_bytes < min_size:
        return False
    return not (max_size is not None and item.size_bytes > max_size)


def select_candidates(policy: dict[str, Any], items: list[Item], now: datetime, *,
                      scheduled: bool = False) -> list[Candidate]:
    """Apply the policy's enabled rules to ``items`` (first matching rule wins for an item)."""
    pool = [it for it in items if _matches(it, policy.get("filePattern"), policy.get("excludePatterns") or [],
                                          policy.get("minFileSize"), policy.get("maxFileSize"))]
    pool.sort(key=lambda it: it.created_at)  # oldest first
    chosen: dict[str, Candidate] = {}
    for rule in policy.get("rules") or []:
        if not rule.get("enabled", True):
            continue
        kind = rule["triggerType"]
        label = rule.get("name") or rule.get("id") or kind
        if kind == "manual":
            hits = [] if scheduled else pool
        elif kind == "age":
            limit = timedelta(seconds=float(rule["threshold"]) * UNIT_FACTOR[rule["thresholdUnit"]])
            hits = [it for it in pool if now - it.created_at > limit]
        elif kind == "count":
            keep = int(rule["threshold"])
            hits = pool[:max(0, len(pool) - keep)]
        else:  # size: oldest first until what stays fits under the threshold
            limit_b = float(rule["threshold"]) * UNIT_FACTOR[rule["thresholdUnit"]]
            total = sum(it.size_bytes for it in pool)
            hits = []
            for it in pool:
                if total <= limit_b:
                    break
                hits.append(it)
                total -= it.size_bytes
        for it in hits:
            chosen.setdefault(it.id, Candidate(it, label, rule["action"]))
    return sorted(chosen.values(), key=lambda c: c.item.created_at)


# ---- actions -----------------------------------------------------------------------------------------------
def archive_path(settings: Any, path: Path) -> Path:
    data_dir = settings.data_dir.resolve()
    try:
        rel = path.resolve().relative_to(data_dir)
    except ValueError:
        rel = Path("external") / path.resolve().relative_to(path.resolve().anchor)
    return data_dir / "archive" / rel


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _move(src: Path, dst: Path) -> None:
    """Move into the archive through a temporary name, so a move cut short (another filesystem: copy, then
    delete) never leaves a partial copy under the final name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        raise RetentionError(f"{dst} already exists in the archive")
    tmp = dst.with_name(dst.name + ".partial")
    _remove(tmp)  # debris of an earlier interrupted move
    shutil.move(str(src), str(tmp))
    os.replace(tmp, dst)


def _compress(p: Path) -> Path:
    """gzip a file or tar.gz a directory beside it, atomically; returns the compressed path."""
    out = p.with_name(p.name + (".tar.gz" if p.is_dir() else ".gz"))
    tmp = out.with_name(out.name + ".tmp")
    if p.is_dir():
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            tar.add(p, arcname=p.name)
    else:
        with open(p, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
    _remove(p)
    return out


def _job_log_dump(db: Database, job_id: str) -> list[dict[str, Any]]:
    with db.session() as s:
        return [{"seq": r.id, "at": r.at.isoformat(), "level": r.level, "message": r.message}
                for r in s.scalars(select(m.JobLog).where(m.JobLog.job_id == job_id).order_by(m.JobLog.id))]


def _drop_job_log(db: Database, job_id: str) -> None:
    with db.session() as s:
        s.execute(m.JobLog.__table__.delete().where(m.JobLog.job_id == job_id))


def apply_action(settings: Any, db: Database, item: Item, action: str, why: str) -> dict[str, Any]:
    """Carry out ``action`` on one item; returns the audit record (bytes freed from the item's place)."""
    record: dict[str, Any] = {"id": item.id, "path": str(item.path), "action": action, "bytes": item.size_bytes}
    kind, key = item.ref or ("file", None)
    if kind == "joblog":  # a finished job's captured log in the database
        if action in ("archive", "compress"):
            dst = settings.data_dir / "archive" / "job-logs" / f"{key}.jsonl.gz"
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            with gzip.open(tmp, "wt") as out:
                for row in _job_log_dump(db, key):
                    out.write(json.dumps(row) + "\n")
            os.replace(tmp, dst)
            record["new_path"] = str(dst)
        _drop_job_log(db, key)
        return record
    if action == "delete":
        for p in item.paths:
            _remove(p)
        new_paths = None
    elif action == "archive":
        new_paths = [archive_path(settings, p) for p in item.paths]
        for src, dst in zip(item.paths, new_paths, strict=True):
            _move(src, dst)
    else:
        before = item.size_bytes
        new_paths = [_compress(p) for p in item.paths]
        record["bytes"] = max(0, before - sum(_size(p) for p in new_paths))
    if new_paths:
        record["new_path"] = str(new_paths[0])
    _update_rows(db, kind, key, action, item, new_paths, why)
    return record


def _update_rows(db: Database, kind: str, key: Any, action: str, item: Item, new_paths: list[Path] | None,
                 why: str) -> None:
    with db.session() as s:
        if kind == "ms":
            ms = s.get(m.MeasurementSet, key)
            if ms is not None:
                if new_paths:
                    ms.path = str(new_paths[0])
                    ms.size_bytes = _size(new_paths[0])  # a tar.gz is smaller than the MS it holds
                ms.qa_summary = f"{(ms.qa_summary or '').strip('; ')}; {action}d by {why}".strip("; ")
        elif kind == "image":
            img = s.get(m.Image, key)
            if img is not None:
                moved = dict(zip(map(str, item.paths), map(str, new_paths or []), strict=False))
                if new_paths:
                    img.path = moved.get(img.path, img.path)
                    img.png_path = moved.get(img.png_path or "", img.png_path)
                elif img.png_path and Path(img.png_path) in item.paths:
                    img.png_path = None
                img.qa_summary = f"{(img.qa_summary or '').strip('; ')}; files {action}d by {why}".strip("; ")
        elif kind == "png":
            img = s.get(m.Image, key)
            if img is not None:
                img.png_path = str(new_paths[0]) if new_paths and action == "archive" else None
        elif kind == "caltable":
            table = s.get(m.CalibrationTable, key)
            if table is not None:
                if new_paths:
                    table.path = str(new_paths[0])
                cs = table.cal_set
                if cs.status == "active" and action in ("delete", "compress"):
                    cs.status, cs.status_reason = "retired", f"tables {action}d by {why}"


# ---- runs --------------------------------------------------------------------------------------------------
def run_candidates(settings: Any, db: Database, execution_id: str, candidates: list[Candidate],
                   why: str) -> dict[str, Any]:
    """Act on every unprotected candidate, recording each result on the execution row as it goes."""
    done = errors = 0
    freed = 0
    actions: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    notify: list[Candidate] = []
    for c in candidates:
        if c.item.protected:
            continue
        if c.action == "notify":
            notify.append(c)
            continue
        try:
            rec = apply_action(settings, db, c.item, c.action, why)
        except (OSError, RetentionError, tarfile.TarError) as exc:
            errors += 1
            failures.append({"item": str(c.item.path), "error": str(exc)})
            log.warning("retention: %s %s failed: %s", c.action, c.item.path, exc)
            continue
        done += 1
        freed += int(rec["bytes"]) if c.action != "notify" else 0
        actions.append(rec)
        if done % 50 == 0:
            _progress(db, execution_id, done, freed, actions, failures)
    if notify:
        size = sum(c.item.size_bytes for c in notify)
        from engine.monitoring import raise_alert

        raise_alert(db, "retention", "info", f"{why}: {len(notify)} item(s), {human_bytes(size)}, match its "
                    f"notify rules", "retention", paths=[str(c.item.path) for c in notify[:50]])
    _progress(db, execution_id, done, freed, actions, failures)
    return {"affected": done, "freed": freed, "errors": errors, "notified": len(notify)}


def _progress(db: Database, execution_id: str, done: int, freed: int, actions: list[dict[str, Any]],
              failures: list[dict[str, str]]) -> None:
    with db.session() as s:
        ex = s.get(m.RetentionExecution, execution_id)
        if ex is not None:
            ex.items_affected, ex.size_freed_bytes = done, freed
            ex.actions, ex.errors = list(actions), list(failures)


def reconcile_moved(settings: Any, db: Database) -> int:
    """After a crash between moving a product and recording its new path: point rows whose file is gone at
    the archived or compressed copy that exists. Returns how many rows were fixed."""
    fixed = 0
    with db.session() as s:
        tables = ((m.MeasurementSet, "path"), (m.Image, "path"), (m.Image, "png_path"), (m.CalibrationTable, "path"))
        for model, col in tables:
            for row in s.scalars(select(model).where(getattr(model, col).is_not(None))):
                p = Path(getattr(row, col))
                if p.exists():
                    continue
                for moved in (archive_path(settings, p), p.with_name(p.name + ".gz"),
                              p.with_name(p.name + ".tar.gz")):
                    if moved.exists():
                        setattr(row, col, str(moved))
                        fixed += 1
                        log.warning("retention: %s was moved to %s by an interrupted run; row updated", p, moved)
                        break
    return fixed


def recover_interrupted(db: Database, settings: Any = None) -> int:
    """Executions and cleanup jobs left running by a crash are failed with the reason (actions are idempotent:
    running the policy or resubmitting the cleanup finishes the work); with ``settings``, rows of products
    moved just before the crash follow them (``reconcile_moved``)."""
    now = datetime.now(UTC)
    reason = "interrupted: the console stopped while this ran; run it again to finish"
    with db.session() as s:
        n = 0
        for ex in s.scalars(select(m.RetentionExecution).where(m.RetentionExecution.status == "running")):
            ex.status, ex.completed_at = "failed", now
            ex.errors = [*(ex.errors or []), {"item": "", "error": reason}]
            n += 1
        for cj in s.scalars(select(m.CleanupJob).where(m.CleanupJob.status.in_(("pending", "running")))):
            cj.status, cj.completed_at, cj.error = "failed", now, reason
            job = s.get(m.Job, cj.job_id)
            if job is not None and job.state in ("queued", "running"):
                job.state, job.finished_at, job.error, job.error_kind = "failed", now, reason, "interrupted"
            n += 1
    if n and settings is not None:
        reconcile_moved(settings, db)
    return n
