"""Backups for the console: create, validate, restore preview and restore, delete, schedules.

A thin layer over ``engine.backups`` (the REST routes call the same functions): it gives the
console datetimes instead of ISO strings, the bytes a running backup has written so far,
per-file and per-table restore plans, the database restores staged for the next start, and
the backup schedules (triggers whose pipeline is ``backup``) with their last outcome.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from engine import backups as bk
from engine import triggers as tg
from engine.services.area import AreaService

#: Who the console's own actions are recorded as.
CONSOLE_USER = "console"

#: The file scopes an operator chooses; the database copy (job history, QA ratings) is always made.
FILE_SCOPES: tuple[tuple[str, str], ...] = (
    ("catalogs", "calibration tables and calibrator catalogues"),
    ("pipeline_configs", "config file (and calibration tables)"),
    ("images", "images (FITS, PNG)"),
    ("measurement_sets", "measurement sets (can be very large)"),
)
DATABASE_SCOPES = ("job_history", "qa_ratings")
SHORT_SCOPE = {"catalogs": "cal", "pipeline_configs": "config", "images": "images", "measurement_sets": "MS"}


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def scope_text(scope: dict[str, bool]) -> str:
    """What a backup holds, shortly: the database always, then the chosen files."""
    return "+".join(["db", *(SHORT_SCOPE[k] for k, _ in FILE_SCOPES if scope.get(k))])


@dataclass(frozen=True)
class BackupView:
    id: str
    name: str
    type: str
    status: str
    scope: dict[str, bool]
    size_bytes: int
    item_count: int
    created_at: datetime | None
    completed_at: datetime | None
    created_by: str
    location: str
    checksum: str | None
    parent_backup_id: str | None
    notes: str | None
    error: str | None
    validation_status: str | None
    validated_at: datetime | None
    #: A running backup: bytes in its temporary directory so far (the row records the size at the end).
    written_bytes: int | None = None

    @property
    def label(self) -> str:
        """How a question names it: name and creation time."""
        when = f"{self.created_at:%Y-%m-%d %H:%M} UTC" if self.created_at else "unknown time"
        return f"'{self.name}' (created {when})"

    @classmethod
    def of(cls, row: dict[str, Any], written: int | None = None) -> BackupView:
        return cls(row["id"], row["name"], row["type"], row["status"], dict(row["scope"]), row["size_bytes"],
                   row["item_count"], _dt(row["created_at"]), _dt(row["completed_at"]), row["created_by"],
                   row["storage_location"], row["checksum"], row["parent_backup_id"], row["notes"],
                   row["error_message"], row["validation_status"], _dt(row["validated_at"]), written)


@dataclass(frozen=True)
class RestoreView:
    id: str
    backup_id: str
    backup_name: str
    status: str
    scope: dict[str, bool]
    overwrite: bool
    items_restored: int
    items_total: int
    errors: list[str]
    started_at: datetime | None
    completed_at: datetime | None
    started_by: str
    #: "staged" (its database copy waits for the next start), "superseded" (a newer one will win) or None.
    database: str | None = None

    @property
    def hard_errors(self) -> list[str]:
        return [e for e in self.errors if not e.startswith("skipped ")]

    @property
    def skipped(self) -> list[str]:
        return [e for e in self.errors if e.startswith("skipped ")]


@dataclass(frozen=True)
class StagedRestore:
    """A restored database waiting beside the live one; the service swaps it in at its next start."""

    path: str
    restore_id: str | None
    backup_id: str | None
    backup_name: str | None
    staged_at: datetime | None


@dataclass(frozen=True)
class ScheduleView:
    id: str
    name: str
    status: str
    event: str
    cron: str | None
    description: str
    timezone: str
    next_run: datetime | None
    last_run: datetime | None
    last_outcome: str
    backup_type: str
    scope: list[str]


@dataclass(frozen=True)
class Overview:
    backups: list[BackupView]
    restores: list[RestoreView]
    schedules: list[ScheduleView]
    staged: list[StagedRestore]


@dataclass(frozen=True)
class Validation:
    backup: BackupView
    is_valid: bool
    checksum_verified: bool
    files_verified: int
    corrupted_files: list[str]
    reason: str | None
    time_ms: float


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int
    action: str  # stage | add | overwrite | keep | same


@dataclass(frozen=True)
class TableCount:
    table: str
    in_backup: int | None
    live: int | None


@dataclass(frozen=True)
class RestorePlan:
    backup: BackupView
    scope: dict[str, bool]
    overwrite: bool
    can_restore: bool
    files: list[PlannedFile]
    missing: list[str]
    warnings: list[str]
    estimated_s: float
    tables: list[TableCount] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for f in self.files if f.action == action)

    @property
    def stages_database(self) -> bool:
        return any(f.action == "stage" for f in self.files)

    @property
    def writes(self) -> int:
        """Files a restore writes now (the staged database included)."""
        return sum(1 for f in self.files if f.action in ("stage", "add", "overwrite"))


@dataclass(frozen=True)
class BackupDetail:
    backup: BackupView
    chain: list[BackupView]
    restores: list[RestoreView]
    #: prefix of the manifest (database, caltables, images, ...) → (files, bytes) in this backup itself
    contents: dict[str, tuple[int, int]]
    manifest_problem: str | None


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # renamed or removed while we looked
    return total


def _default_trigger_scope() -> list[str]:
    """The scope a backup trigger uses when its parameters name none (the pipeline's declared default)."""
    params = tg.PIPELINES["backup"]["parameters"]
    return list(next((p.get("default") for p in params if p["name"] == "scope"), None) or [])


def _table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'alembic_version' ORDER BY name")]
    return {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}


class BackupService(AreaService):
    """Backups for the console: everything the Backups screen reads and does."""

    # ---- reading ---------------------------------------------------------------------------
    def list_backups(self, limit: int = 200) -> list[BackupView]:
        out = []
        for row in bk.list_backups(self.db, limit):
            written = None
            if row["status"] == "running":
                tmp = Path(self.settings.backups_dir) / f"{bk.TMP_PREFIX}{row['id']}"
                written = _dir_bytes(tmp) if tmp.is_dir() else 0
            out.append(BackupView.of(row, written))
        return out

    def get(self, backup_id: str) -> BackupView:
        row = bk.get_backup(self.db, backup_id)
        if row is None:
            raise KeyError(f"no backup {backup_id}")
        return BackupView.of(row)

    def staged_restores(self) -> list[StagedRestore]:
        """Database restores waiting for the next start, newest first (the first is the one applied)."""
        out = []
        names = {}
        for path in bk.pending_restores(self.settings):
            meta: dict[str, Any] = {}
            try:
                meta = json.loads(Path(f"{path}.json").read_text())
            except (OSError, ValueError):
                pass
            bid = meta.get("backup_id")
            if bid and bid not in names:
                row = bk.get_backup(self.db, bid)
                names[bid] = row["name"] if row else None
            out.append(StagedRestore(str(path), meta.get("restore_id") or path.name.rsplit("restore-", 1)[-1],
                                     bid, names.get(bid), _dt(meta.get("staged_at"))))
        return out

    def list_restores(self, limit: int = 20) -> list[RestoreView]:
        return [self._restore_view(r) for r in bk.list_restores(self.db, limit)]

    def _restore_view(self, r: dict[str, Any]) -> RestoreView:
        live = Path(self.settings.db_path)
        staged = live.with_name(f"{live.name}.restore-{r['id']}")
        database = ("staged" if staged.is_file() else
                    "superseded" if staged.with_name(staged.name + ".superseded").is_file() else None)
        return RestoreView(r["id"], r["backup_id"], r["backup_name"], r["status"], dict(r["scope"]),
                           r["overwrite_existing"], r["items_restored"], r["items_total"], list(r["errors"]),
                           _dt(r["started_at"]), _dt(r["completed_at"]), r["started_by"] or "", database)

    def schedules(self) -> list[ScheduleView]:
        """Triggers whose action is a backup, with the next run (by this service's clock) and the last outcome."""
        out = []
        for t in tg.list_triggers(self.db):
            if t["pipeline_id"] != "backup":
                continue
            sched = t.get("schedule") or {}
            cron = sched.get("cron")
            nxt = None
            if cron and t["status"] != "disabled":
                try:
                    nxt = tg.next_run(cron, sched.get("timezone"), after=self.now())
                except tg.TriggerError:
                    nxt = None
            last = tg.list_executions(self.db, t["id"], 1)
            params = t.get("parameters") or {}
            out.append(ScheduleView(
                t["id"], t["name"], t["status"], t["event"], cron,
                sched.get("description") or (f"on {t['event']}" if not cron else tg.describe_cron(cron)),
                sched.get("timezone") or "UTC", nxt, _dt(last[0]["started_at"]) if last else None,
                self._outcome(last[0]) if last else "never run", params.get("backup_type") or "full",
                list(params.get("scope") or _default_trigger_scope())))
        return out

    def _outcome(self, execution: dict[str, Any]) -> str:
        if execution["status"] == "skipped":
            return f"skipped: {execution.get('skip_reason') or ''}".rstrip(": ")
        if execution["status"] == "failed":
            return f"failed: {execution.get('error_message') or 'no reason recorded'}"
        bid = execution.get("job_id")
        row = bk.get_backup(self.db, bid) if bid else None
        if row is None:
            return "backup recorded (since deleted)" if bid else execution["status"]
        if row["status"] == "failed":
            return f"backup failed: {row['error_message'] or 'no reason recorded'}"
        if row["status"] == "completed":
            return f"backup completed, {row['size_formatted']}"
        return f"backup {row['status']}"

    def overview(self) -> Overview:
        """Everything the screen shows, in one call from its refresh worker."""
        return Overview(self.list_backups(), self.list_restores(), self.schedules(), self.staged_restores())

    def detail(self, backup_id: str) -> BackupDetail:
        b = self.get(backup_id)
        chain: list[BackupView] = []
        parent = b.parent_backup_id
        seen = {b.id}
        while parent and parent not in seen:
            seen.add(parent)
            row = bk.get_backup(self.db, parent)
            if row is None:
                break
            chain.append(BackupView.of(row))
            parent = row["parent_backup_id"]
        restores = [r for r in self.list_restores(200) if r.backup_id == backup_id]
        contents: dict[str, tuple[int, int]] = {}
        problem = None
        if b.status == "completed":
            try:
                manifest = json.loads((Path(b.location) / bk.MANIFEST).read_text())
                for entry in manifest.get("files", []):
                    top = str(entry.get("path", "?")).split("/", 1)[0]
                    n, size = contents.get(top, (0, 0))
                    contents[top] = (n + 1, size + int(entry.get("size") or 0))
            except (OSError, ValueError, AttributeError) as exc:
                problem = f"manifest unreadable: {exc}"
        return BackupDetail(b, chain, restores, contents, problem)

    def last_completed(self, backup_type: str | None = None) -> BackupView | None:
        """The newest completed backup (of a type): what an incremental or differential builds on."""
        rows = bk.list_backups(self.db, 1, backup_type, "completed")
        return BackupView.of(rows[0]) if rows else None

    # ---- acting ----------------------------------------------------------------------------
    def create(self, *, name: str, backup_type: str, files: dict[str, bool], notes: str | None = None,
               by: str = CONSOLE_USER) -> BackupView:
        """Record a pending backup (fast); ``run`` does the work. The database copy is always made.

        An incremental builds on the newest completed backup; a differential on the newest
        completed full one (the engine finds it).
        """
        unknown = set(files) - {k for k, _ in FILE_SCOPES}
        if unknown:
            raise ValueError(f"unknown file scope(s): {', '.join(sorted(unknown))}")
        scope = {**{k: bool(files.get(k)) for k, _ in FILE_SCOPES}, **dict.fromkeys(DATABASE_SCOPES, True)}
        parent = None
        if backup_type == "incremental":
            last = self.last_completed()
            if last is None:
                raise bk.BackupError("an incremental backup needs a completed backup to build on")
            parent = last.id
        name = name.strip() or f"Backup {self.now():%Y-%m-%d %H:%M}"
        bid = bk.create_backup(self.settings, self.db, name=name, backup_type=backup_type, scope=scope,
                               created_by=by, notes=notes, parent_backup_id=parent)
        return self.get(bid)

    def run(self, backup_id: str) -> BackupView:
        """Do a pending backup's work (slow: call it in a worker thread); the row says how it ended."""
        bk.run_backup(self.settings, self.db, backup_id)
        return self.get(backup_id)

    def validate(self, backup_id: str) -> Validation:
        """Re-hash every file against the manifest and check the database copy; the verdict is recorded."""
        current = self.get(backup_id)
        if current.status != "completed":
            raise bk.BackupError(f"backup {current.label} is {current.status}; only a completed backup can be "
                                 "validated")
        v = bk.validate_backup(self.settings, self.db, backup_id)
        return Validation(self.get(backup_id), v["is_valid"], v["checksum_verified"], v["files_verified"],
                          list(v["corrupted_files"]), v["reason"], v["validation_time_ms"])

    def restore_plan(self, backup_id: str, scope: dict[str, bool], overwrite: bool) -> RestorePlan:
        """What a restore of this scope would do, per file and (for the database) per table."""
        b = self.get(backup_id)
        preview = bk.restore_preview(self.settings, self.db, backup_id, scope, overwrite)
        files = []
        source_db = None
        try:
            for e in bk.restore_plan(self.settings, self.db, backup_id, scope, overwrite):
                files.append(PlannedFile(e["path"], e["size"], e["action"]))
                if e["action"] == "stage":
                    source_db = Path(e["source"])
        except bk.BackupError:
            files = []  # the preview's warnings say why (an unsafe manifest entry)
        tables = self._compare_tables(source_db) if source_db is not None else []
        return RestorePlan(b, dict(scope), overwrite, bool(preview["can_restore"]), files,
                           list(preview["missing_dependencies"]), list(preview["warnings"]),
                           float(preview["estimated_time_seconds"]), tables)

    def _compare_tables(self, copy: Path) -> list[TableCount]:
        """Rows per table in the backup's database copy against the live database."""
        try:
            conn = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
            try:
                backup = _table_counts(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            backup = {}
        names = [n for n in inspect(self.db.engine).get_table_names() if n != "alembic_version"]
        with self.db.session() as s:
            live = {n: int(s.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one()) for n in names}
        return [TableCount(n, backup.get(n), live.get(n)) for n in sorted(set(backup) | set(live))]

    def restore(self, backup_id: str, scope: dict[str, bool], overwrite: bool, *,
                by: str = CONSOLE_USER) -> RestoreView:
        """Start and run a restore (slow: a worker thread); files are written, the database staged."""
        rid = bk.start_restore(self.settings, self.db, backup_id, scope=scope, overwrite_existing=overwrite,
                               started_by=by)
        bk.run_restore(self.settings, self.db, rid)
        return self.get_restore(rid)

    def get_restore(self, restore_id: str) -> RestoreView:
        row = bk.get_restore(self.db, restore_id)
        if row is None:
            raise KeyError(f"no restore {restore_id}")
        return self._restore_view(row)

    def delete(self, backup_id: str) -> None:
        """Remove a backup's files and its row (refused while it runs or while another builds on it)."""
        bk.delete_backup(self.settings, self.db, backup_id)
