"""Backups: history with live progress, and the actions an operator needs at 3 a.m.

n makes a backup (form, then it runs in a worker while the list shows pending →
running with the bytes written so far → completed or failed); v validates and shows
the verdict with the engine's reasons; R restores with the preview first and a
confirmation that names the backup; D deletes (confirmed); d / enter opens the detail.
Below the list: the restores and their outcome, or (s) the backup schedules — triggers
whose pipeline is ``backup`` — with their next run and last outcome. A database restore
is staged and applied at the service's next start; while one waits, a banner says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Footer, Static

from engine.services.backups import BackupView, Overview, RestoreView, Validation, scope_text
from engine.units import human_bytes
from screens.actions import OperatorActions
from screens.backup_detail import BackupDetailScreen, restore_outcome
from screens.backup_dialogs import CreateBackupScreen, CreateRequest, ValidationScreen, when
from screens.backup_restore import RestoreChoice, RestorePreviewScreen
from screens.messages import RowsFetched
from screens.table_screen import TableScreen


def _short(value: Any) -> str:
    return f"{value:%m-%d %H:%M}" if value else "—"


def _size(b: BackupView) -> str:
    if b.status == "running":
        return f"{human_bytes(b.written_bytes or 0)}…"
    return human_bytes(b.size_bytes) if b.status == "completed" else ""


TYPE_SHORT = {"full": "full", "incremental": "incr", "differential": "diff"}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class BackupsScreen(OperatorActions, TableScreen):
    TITLE = "Backups"
    # Sized for 80 columns; the line under the table names the selected backup in full. The base
    # orders rows by the first column: two backups created in the same minute may swap places.
    COLUMNS = (("created", "Created UTC"), ("name", "Backup"), ("type", "Type"), ("status", "Status"),
               ("size", "Size"), ("by", "By"), ("valid", "Valid"))
    EMPTY = ("No backups yet. n makes one now; backups made by a schedule (s shows them) are listed here "
             "as they run.")
    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset({"create", "validate", "restore", "delete"})
    BINDINGS = [
        Binding("n", "create", "New", tooltip="Make a backup now: type, files besides the database, name",
                id="backups.create"),
        Binding("v", "validate", "Validate", tooltip="Re-hash every file of the selected backup against its "
                "manifest and check its database copy", id="backups.validate"),
        Binding("R", "restore", "Restore", tooltip="Restore from the selected backup: preview first, then "
                "confirm", id="backups.restore"),
        Binding("D", "delete", "Delete", tooltip="Delete the selected backup and its files (asks first)",
                id="backups.delete"),
        Binding("d", "detail", "Detail", tooltip="Contents, chain, error and restores of the selected backup "
                "(also enter)", id="backups.detail"),
        Binding("s", "toggle_lower", "Schedules", tooltip="Below the list: the backup schedules, or the restores",
                id="backups.schedules"),
    ]
    DEFAULT_CSS = """
    BackupsScreen #table { scrollbar-size-vertical: 1; }
    BackupsScreen #selected { height: 2; padding: 0 1; color: $text-muted; }
    BackupsScreen #selected.failed { color: $error; }
    BackupsScreen #staged { height: auto; padding: 0 1; background: $warning 20%; color: $text; }
    BackupsScreen #lower-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    BackupsScreen #lower { height: 7; }
    BackupsScreen #lower DataTable { height: 7; }
    BackupsScreen #lower-empty { height: 7; padding: 1 2; color: $text-muted; }
    BackupsScreen #empty { height: 1fr; }
    """

    @dataclass
    class OverviewFetched(Message):
        """The refresh worker read restores, schedules and staged restores along with the rows."""

        overview: Overview

    def __init__(self) -> None:
        super().__init__()
        self.overview: Overview | None = None
        self.lower = "restores"

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield Static("", id="selected")
                yield Static("", id="staged")
                yield Static("", id="lower-title")
                with ContentSwitcher(id="lower", initial="restores"):
                    restores: DataTable[Any] = DataTable(id="restores", cursor_type="row", zebra_stripes=True)
                    for key, label in (("started", "Started UTC"), ("backup", "From backup"), ("by", "By"),
                                       ("outcome", "Outcome")):
                        restores.add_column(label, key=key)
                    yield restores
                    schedules: DataTable[Any] = DataTable(id="schedules", cursor_type="row", zebra_stripes=True)
                    for key, label in (("name", "Schedule, when"), ("cron", "Cron, next run"),
                                       ("last", "Last run, outcome")):
                        schedules.add_column(label, key=key)
                    yield schedules
                yield Static("", id="lower-empty")
            yield widget

    def on_mount(self) -> None:
        self.query_one("#staged", Static).display = False
        super().on_mount()

    # ---- reading -------------------------------------------------------------------------
    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        overview = self.app.services.backups.overview()  # type: ignore[attr-defined]
        self.post_message(self.OverviewFetched(overview))
        return [(b.id, (_short(b.created_at), _clip(b.name, 18), TYPE_SHORT.get(b.type, b.type), b.status,
                        _size(b), _clip(b.created_by or "—", 7), b.validation_status or "—"))
                for b in overview.backups]

    @on(OverviewFetched)
    def _overview(self, message: OverviewFetched) -> None:
        self.overview = message.overview
        self._show_lower()
        self._show_staged()
        self._show_selected()

    def _show_staged(self) -> None:
        banner = self.query_one("#staged", Static)
        staged = self.overview.staged if self.overview else []
        if staged:
            s = staged[0]
            source = f"backup '{s.backup_name}'" if s.backup_name else f"restore {s.restore_id}"
            text = (f"Database restored from {source} is staged: it replaces the live database at the next "
                    "start of the service (the current one is kept).")
            if len(staged) > 1:
                text += f" {len(staged) - 1} older staged copy(ies) will be set aside, not applied."
            banner.update(escape(text))
        banner.display = bool(staged)

    def _show_lower(self) -> None:
        ov = self.overview
        if ov is None:
            return
        switcher = self.query_one("#lower", ContentSwitcher)
        switcher.current = self.lower
        title = self.query_one("#lower-title", Static)
        empty = self.query_one("#lower-empty", Static)
        if self.lower == "restores":
            title.update("Restores  [dim](s: schedules)[/dim]")
            rows = [(r.id, (_short(r.started_at), _clip(r.backup_name or r.backup_id[:8], 14),
                            _clip(r.started_by or "—", 7), _clip(restore_outcome(r), 38))) for r in ov.restores]
            none = "No restores yet. R on a backup previews a restore, then asks before writing anything."
        else:
            title.update("Backup schedules  [dim](s: restores)[/dim]")
            rows = [(t.id, (f"{_clip(t.name, 22)}\n{_clip(t.description, 22)}",
                            f"{_clip(t.cron or 'event: ' + t.event, 17)}\n"
                            + (f"next {_short(t.next_run)}" if t.next_run else t.status),
                            f"{_short(t.last_run) if t.last_run else 'never run'}\n{_clip(t.last_outcome, 32)}"))
                    for t in ov.schedules]
            none = ("No backup schedules. A trigger whose pipeline is 'backup' (Triggers screen or REST) "
                    "appears here with its next run and last outcome.")
        table = self.query_one(f"#{self.lower}", DataTable)
        _diff_rows(table, rows, height=2 if self.lower == "schedules" else 1)
        empty.update(none)
        empty.display = not rows
        switcher.display = bool(rows)

    @on(RowsFetched)
    def _rows_fetched(self) -> None:
        # Runs before the base class applies the rows; describe the selection once they are in.
        self.call_later(self._show_selected)

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        info = self.query_one("#selected", Static)
        b = self.selected_backup()
        info.set_class(bool(b and b.status == "failed"), "failed")
        if b is None:
            info.update("")
            return
        parent = ""
        if b.parent_backup_id and self.overview:
            p = next((x for x in self.overview.backups if x.id == b.parent_backup_id), None)
            parent = f" on '{p.name}'" if p else " on a missing parent"
        files = f" · {b.item_count} file(s)" if b.status == "completed" else ""
        first = f"{b.name} · {b.type}{parent} · {scope_text(b.scope)}{files} · by {b.created_by or '—'}"
        if b.status == "failed":
            second = f"failed: {b.error or 'no reason recorded'}"
        elif b.status == "running":
            second = f"running: {human_bytes(b.written_bytes or 0)} written so far"
        elif b.status == "pending":
            second = "pending: waiting to start"
        elif b.validation_status:
            second = f"{b.validation_status} when validated {when(b.validated_at)} UTC · v checks again and says why"
        else:
            second = "not validated yet · v checks every file and the database copy"
        info.update(escape(f"{_clip(first, 200)}\n{_clip(second, 200)}"))

    def selected_backup(self) -> BackupView | None:
        table = self.query_one("#table", DataTable)
        if not table.row_count or self.overview is None:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((b for b in self.overview.backups if b.id == key), None)

    def _target(self, *, completed: bool = False, what: str = "") -> BackupView | None:
        b = self.selected_backup()
        if b is None:
            self.notify("no backup selected", severity="warning")
            return None
        if completed and b.status != "completed":
            self.notify(f"only a completed backup can be {what}: {b.label} is {b.status}", severity="warning")
            return None
        return b

    # ---- detail and lower pane -----------------------------------------------------------
    def action_detail(self) -> None:
        b = self._target()
        if b is not None:
            self.app.push_screen(BackupDetailScreen(b.id))

    @on(DataTable.RowSelected, "#table")
    def _row_selected(self) -> None:
        self.action_detail()

    def action_toggle_lower(self) -> None:
        self.lower = "schedules" if self.lower == "restores" else "restores"
        self._show_lower()

    # ---- create --------------------------------------------------------------------------
    def action_create(self) -> None:
        now = self.app.services.clock()  # type: ignore[attr-defined]
        self.app.push_screen(CreateBackupScreen(default_name=f"Backup {now:%Y-%m-%d %H:%M}"), self._create)

    def _create(self, request: CreateRequest | None) -> None:
        if request is None:
            return
        svc = self.app.services.backups  # type: ignore[attr-defined]
        self.run_service("backup", svc.create, name=request.name, backup_type=request.backup_type,
                         files=request.files, done=self._created)

    def _created(self, b: BackupView) -> str:
        svc = self.app.services.backups  # type: ignore[attr-defined]
        self.run_service(f"backup '{b.name}'", svc.run, b.id, done=self._finished)
        return f"backup '{b.name}' ({b.type}, {scope_text(b.scope)}) started"

    def _finished(self, b: BackupView) -> str | None:
        if b.status == "completed":
            return f"backup '{b.name}' completed: {b.item_count} file(s), {human_bytes(b.size_bytes)}"
        self.notify(f"backup '{b.name}' {b.status}: {b.error or 'no reason recorded'}", severity="error",
                    timeout=12)
        return None

    # ---- validate ------------------------------------------------------------------------
    def action_validate(self) -> None:
        b = self._target(completed=True, what="validated")
        if b is None:
            return
        self.notify(f"validating {b.label}…")
        self.run_service(f"validate {b.label}", self.app.services.backups.validate, b.id,  # type: ignore[attr-defined]
                         done=self._validated)

    def _validated(self, result: Validation) -> None:
        self.app.push_screen(ValidationScreen(result))

    # ---- restore -------------------------------------------------------------------------
    def action_restore(self) -> None:
        b = self._target(completed=True, what="restored")
        if b is not None:
            self.app.push_screen(RestorePreviewScreen(b), lambda choice: self._confirm_restore(b, choice))

    def _confirm_restore(self, b: BackupView, choice: RestoreChoice | None) -> None:
        if choice is None:
            return
        plan = choice.plan
        files = [f"{n} {what}" for n, what in ((plan.count("add"), "added"), (plan.count("overwrite"), "overwritten"),
                                                (plan.count("keep"), "kept as they are")) if n]
        question = f"Restore from backup {b.label}?\nFiles: {', '.join(files) or 'none written'}."
        if plan.stages_database:
            question += ("\nDatabase: the copy is staged; it replaces the live database at the next start of the "
                         "service (the current one is kept).")
        svc = self.app.services.backups  # type: ignore[attr-defined]
        self.confirm(question, lambda: self.run_service(f"restore from {b.label}", svc.restore, b.id,
                                                        choice.scope, choice.overwrite, done=self._restored))

    def _restored(self, r: RestoreView) -> str | None:
        if r.status == "failed":
            self.notify(f"restore from '{r.backup_name}' failed: "
                        f"{r.hard_errors[0] if r.hard_errors else 'no reason recorded'}", severity="error",
                        timeout=15)
            return None
        text = f"restore from '{r.backup_name}' {r.status}: {r.items_restored} of {r.items_total} item(s)"
        if r.skipped:
            text += f", {len(r.skipped)} kept (they differ)"
        if r.database == "staged":
            text += "; the database is staged and replaces the live one at the next start"
        return text

    # ---- delete --------------------------------------------------------------------------
    def action_delete(self) -> None:
        b = self._target()
        if b is None:
            return
        if b.status == "running":
            self.notify(f"backup {b.label} is running; it can be deleted once it ends", severity="warning")
            return
        size = f", {human_bytes(b.size_bytes)}" if b.status == "completed" else ""
        svc = self.app.services.backups  # type: ignore[attr-defined]
        self.confirm(f"Delete backup {b.label} ({b.type}, {b.status}{size}) and all its files?",
                     lambda: self.run_service(f"delete {b.label}", svc.delete, b.id,
                                              done=lambda _r: f"backup {b.label} deleted"))


def _diff_rows(table: DataTable[Any], rows: list[tuple[str, tuple[Any, ...]]], height: int = 1) -> None:
    """Update a small keyed table in place; rebuild only when the order changed."""
    wanted = dict(rows)
    current = [rk.value for rk in table.rows]
    if current != [k for k, _ in rows]:
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key, height=height)
        return
    columns = list(table.columns)
    for key, cells in wanted.items():
        for col, value in zip(columns, cells, strict=True):
            if table.get_cell(key, col) != value:
                table.update_cell(key, col, value, update_width=True)
