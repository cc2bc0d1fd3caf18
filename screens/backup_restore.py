"""Restore, preview first: what a restore from one backup would change, before anything is written.

The plan is the engine's (``restore_preview`` + ``restore_plan``): per file whether it is
added, overwritten, kept (it differs and overwrite is off) or already the same; the
database copy is never written over the live one but staged for the next start, and the
rows per table in the copy are set against the live database. The plan is recomputed in a
worker whenever the choice changes; only a plan for the current choice can be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, SelectionList, Static
from textual.widgets.selection_list import Selection

from engine.services.backups import DATABASE_SCOPES, FILE_SCOPES, BackupView, RestorePlan
from engine.units import human_bytes
from screens.backup_dialogs import when

#: What can be restored: "database" stands for the scope keys held in the database copy.
CHOICES: tuple[tuple[str, str], ...] = (
    ("database", "database (jobs, history, QA)"),
    ("catalogs", "cal tables, catalogues"),
    ("pipeline_configs", "config file (+ cal tables)"),
    ("images", "images (FITS, PNG)"),
    ("measurement_sets", "measurement sets"),
)
SHORT = {"catalogs": "cal tables", "pipeline_configs": "config", "images": "images", "measurement_sets": "MS"}
ACTION_TEXT = {"stage": "stage", "add": "add", "overwrite": "overwrite", "keep": "keep (differs)",
               "same": "same"}


@dataclass(frozen=True)
class RestoreChoice:
    """What the operator accepted: the scope, the overwrite flag and the plan they saw."""

    scope: dict[str, bool]
    overwrite: bool
    plan: RestorePlan


def scope_of(selected: set[str]) -> dict[str, bool]:
    scope = {key: key in selected for key, _ in FILE_SCOPES}
    scope.update(dict.fromkeys(DATABASE_SCOPES, "database" in selected))
    return scope


def plan_summary(plan: RestorePlan) -> list[str]:
    """The plan in a few lines: what is written now, what is staged, what is left alone."""
    lines = [f"{len(plan.files)} file(s) in the plan:"]
    if plan.stages_database:
        lines.append(" database staged (next start)")
    adds, over, keep, same = (plan.count(a) for a in ("add", "overwrite", "keep", "same"))
    if adds or over:
        lines.append(f" {adds} added, {over} overwritten")
    if keep:
        lines.append(f" {keep} kept: differ, overwrite off")
    if same:
        lines.append(f" {same} already the same")
    size = sum(f.size for f in plan.files if f.action in ("stage", "add", "overwrite"))
    lines.append(f"writes {human_bytes(size)}, about {plan.estimated_s:.0f} s")
    absent = [SHORT[k] for k, _ in FILE_SCOPES if not plan.backup.scope.get(k)]
    if absent:
        lines.append(f"not in this backup: {', '.join(absent)}")
    return lines


def table_changes(plan: RestorePlan, limit: int = 6) -> str:
    """Rows per table, backup → live, for the tables that differ."""
    if not plan.tables:
        return ""
    differ = [t for t in plan.tables if t.in_backup != t.live]
    same = len(plan.tables) - len(differ)
    parts = [f"{t.table} {'—' if t.in_backup is None else t.in_backup} → {'—' if t.live is None else t.live}"
             for t in differ[:limit]]
    if len(differ) > limit:
        parts.append(f"{len(differ) - limit} more differ")
    parts.append(f"{same} table(s) the same")
    return "Rows per table, backup → live now: " + " · ".join(parts)


class RestorePreviewScreen(ModalScreen[RestoreChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="restore_preview.cancel"),
        Binding("R", "accept", "Restore", tooltip="Restore this plan (asks once more)", id="restore_preview.accept"),
        Binding("o", "toggle_overwrite", "Overwrite", tooltip="Overwrite files that differ from the backup",
                id="restore_preview.overwrite"),
    ]
    DEFAULT_CSS = """
    RestorePreviewScreen { align: center middle; }
    RestorePreviewScreen > Vertical { width: 100%; height: 100%; border: round $warning; background: $panel;
                                      padding: 0 1; }
    RestorePreviewScreen #top { height: auto; }
    RestorePreviewScreen #choose { width: 36; height: auto; }
    RestorePreviewScreen #what { height: auto; }
    RestorePreviewScreen #summary { width: 1fr; height: auto; padding-left: 2; }
    RestorePreviewScreen #notes { height: auto; color: $warning; }
    RestorePreviewScreen #missing { height: auto; color: $error; }
    RestorePreviewScreen #tables { height: auto; color: $text-muted; }
    RestorePreviewScreen #files { height: 1fr; min-height: 3; }
    RestorePreviewScreen .buttons { height: 1; }
    RestorePreviewScreen .buttons Button { margin-right: 2; }
    """

    def __init__(self, backup: BackupView) -> None:
        super().__init__()
        self.backup = backup
        self.plan: RestorePlan | None = None
        self._gen = 0

    def compose(self) -> ComposeResult:
        b = self.backup
        with Vertical() as box:
            box.border_title = escape(f"Restore from '{b.name}' ({when(b.created_at)} UTC)")
            box.border_subtitle = escape(f"{b.type} · {human_bytes(b.size_bytes)} · {b.item_count} files")
            with Horizontal(id="top"):
                with Vertical(id="choose"):
                    options = []
                    for key, label in CHOICES:
                        present = key == "database" or bool(b.scope.get(key))
                        options.append(Selection(label, key, present, disabled=not present))
                    yield SelectionList[str](*options, id="what", compact=True)
                    yield Checkbox("overwrite files that differ (o)", id="overwrite", compact=True)
                yield Static("computing the plan…", id="summary")
            yield Static("", id="missing")
            yield Static("", id="notes")
            yield Static("", id="tables")
            files: DataTable[Any] = DataTable(id="files", cursor_type="row", zebra_stripes=True)
            for key, label in (("action", "Action"), ("path", "File (in the backup)"), ("size", "Size")):
                files.add_column(label, key=key)
            yield files
            with Horizontal(classes="buttons"):
                yield Button("Restore… (R)", id="accept", variant="warning", compact=True, disabled=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Static("space toggles a line", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#what", SelectionList).focus()
        self._replan()

    # ---- the plan for the current choice -------------------------------------------------
    def choice(self) -> tuple[dict[str, bool], bool]:
        selected = set(self.query_one("#what", SelectionList).selected)
        return scope_of(selected), self.query_one("#overwrite", Checkbox).value

    def _replan(self) -> None:
        self._gen += 1
        self.plan = None
        self.query_one("#accept", Button).disabled = True
        scope, overwrite = self.choice()
        self._compute(self._gen, scope, overwrite)

    @work(thread=True, exclusive=True, group="restore-preview", description="plan the restore")
    def _compute(self, gen: int, scope: dict[str, bool], overwrite: bool) -> None:
        try:
            plan = self.app.services.backups.restore_plan(self.backup.id, scope, overwrite)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the dialog
            self.app.call_from_thread(self._failed, gen, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, gen, plan)

    def _set(self, selector: str, value: str) -> None:
        widget = self.query_one(selector, Static)
        widget.update(escape(value))
        widget.display = bool(value)

    def _failed(self, gen: int, error: str) -> None:
        if gen == self._gen:
            self._set("#missing", f"cannot plan the restore: {error}")

    def _show(self, gen: int, plan: RestorePlan) -> None:
        if gen != self._gen:
            return  # the choice changed while this plan was computed
        self.plan = plan
        self.query_one("#summary", Static).update(escape("\n".join(plan_summary(plan))))
        self._set("#missing", "\n".join(f"cannot restore: {m}" for m in plan.missing))
        notes = [f"! {w}" for w in plan.warnings]
        if plan.backup.validation_status == "invalid":
            notes.insert(0, f"! this backup FAILED its last validation ({when(plan.backup.validated_at)} UTC): the "
                            "restore checks it again and refuses if it is still damaged")
        self._set("#notes", "\n".join(notes))
        self._set("#tables", table_changes(plan))
        table = self.query_one("#files", DataTable)
        table.clear()
        for f in plan.files:
            table.add_row(ACTION_TEXT.get(f.action, f.action), f.path, human_bytes(f.size), key=f.path)
        self.query_one("#accept", Button).disabled = not plan.can_restore

    @on(SelectionList.SelectedChanged, "#what")
    @on(Checkbox.Changed, "#overwrite")
    def _choice_changed(self) -> None:
        self._replan()

    # ---- answers -------------------------------------------------------------------------
    def action_toggle_overwrite(self) -> None:
        box = self.query_one("#overwrite", Checkbox)
        box.value = not box.value

    def action_accept(self) -> None:
        if self.plan is None:
            self.notify("the plan is still being computed", severity="warning")
            return
        if not self.plan.can_restore:
            self.notify("this restore cannot be done: " + ("; ".join(self.plan.missing) or
                                                         "nothing in the backup matches the choice"),
                        severity="error")
            return
        scope, overwrite = self.choice()
        self.dismiss(RestoreChoice(scope, overwrite, self.plan))

    @on(Button.Pressed, "#accept")
    def _accept_pressed(self) -> None:
        self.action_accept()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
