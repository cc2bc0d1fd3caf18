"""Triggers: what fires each trigger (event or cron), what it runs, and when it last and next runs.

Everything an operator does to a trigger goes through ``services.triggers`` (the engine
functions the REST routes call): create and edit in a form, enable/disable, run now
(confirmed, naming the trigger), test against sample event data, delete (confirmed),
and the execution history with its errors. The line under the table spells out the
highlighted trigger in full: the cron's meaning, absolute times, the whole last error.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.markup import escape
from textual.widgets import DataTable, Footer, Static

from engine.services.triggers import TriggerListRow
from screens.messages import RowsFetched
from screens.table_screen import TableScreen
from screens.trigger_detail import TriggerDetailScreen
from screens.trigger_editor import TriggerEditorScreen
from screens.trigger_runs import TriggerRuns, q
from screens.trigger_test import TriggerTestScreen

STATUS = {"enabled": "on", "disabled": "off", "error": "error"}
#: Event names short enough for the table at 80 columns (the line under it says them in full).
EVENT_SHORT = {"new_measurement_set": "new MS", "calibration_complete": "calibrated", "data_quality_alert": "QA alert",
               "storage_threshold": "storage", "manual": "manual", "schedule": "schedule"}
#: From this terminal width the table also has a "Last error" column.
WIDE = 110


def relative(t: datetime | None, now: datetime) -> str:
    """'9h ago' / 'in 15h' at a glance; the info line carries the absolute UTC time."""
    if t is None:
        return "—"
    delta = t - now
    s = abs(delta.total_seconds())
    text = ("<1m" if s < 60 else f"{s // 60:.0f}m" if s < 3600 else f"{s // 3600:.0f}h" if s < 172800
            else f"{s // 86400:.0f}d")
    return f"in {text}" if delta > timedelta(0) else f"{text} ago"


def cut(text: str | None, width: int) -> str:
    """One line of at most ``width`` characters (an ellipsis says it was cut)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _utc(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "never"


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in p.items()) or "defaults"


def _conditions(conditions: list[dict[str, Any]]) -> str:
    return " and ".join(f"{c['field']} {c['operator']} {c['value']!r}" for c in conditions) or "none"


class TriggersScreen(TriggerRuns, TableScreen):
    TITLE = "Triggers"
    COLUMNS = (("name", "Trigger"), ("when", "Event/cron"), ("action", "Pipeline"), ("status", "State"),
               ("last", "Last"), ("next", "Next"))
    ERROR_COLUMN = ("error", "Last error")
    EMPTY = "No triggers defined. Press n to create one (the dashboard and REST API can too)."
    WRITE_ACTIONS = frozenset({"new", "edit", "toggle", "run_now", "delete"})
    BINDINGS = [
        Binding("n", "new", "New", tooltip="Create a trigger (event or cron, pipeline, conditions)", id="triggers.new"),
        Binding("e", "edit", "Edit", tooltip="Edit the selected trigger", id="triggers.edit"),
        Binding("o", "toggle", "On/off", tooltip="Enable or disable the selected trigger", id="triggers.toggle"),
        Binding("x", "run_now", "Run", tooltip="Run the selected trigger's pipeline now (asks first)",
                id="triggers.run"),
        Binding("t", "test", "Test", tooltip="Would sample event data fire the selected trigger? (records nothing)",
                id="triggers.test"),
        Binding("D,delete", "delete", "Delete", tooltip="Delete the selected trigger and its history (asks first)",
                id="triggers.delete"),
        Binding("d", "detail", "History", tooltip="Execution history of the selected trigger with errors (also "
                "enter)", id="triggers.detail"),
    ]
    DEFAULT_CSS = """
    TriggersScreen #info { height: auto; max-height: 6; padding: 0 1; background: $panel; color: $text; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, TriggerListRow] = {}
        self._wide = False

    def compose(self) -> ComposeResult:
        self._wide = self.app.size.width >= WIDE
        if self._wide:
            self.COLUMNS = (*type(self).COLUMNS, self.ERROR_COLUMN)  # type: ignore[misc]
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield Static("", id="info")
            yield widget

    @property
    def _svc(self) -> Any:
        return self.app.services.triggers  # type: ignore[attr-defined]

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self._svc.list_rows()
        now = self.app.services.clock()  # type: ignore[attr-defined]
        self._rows = {t.id: t for t in rows}
        out = []
        for t in rows:
            cells: tuple[Any, ...] = (cut(t.name, 18), cut(t.cron or EVENT_SHORT.get(t.event, t.event), 14),
                                      t.pipeline_id, STATUS.get(t.status, t.status), relative(t.last_run, now),
                                      relative(t.next_run, now))
            if self._wide:
                cells += (cut(t.last_error, 50),)
            out.append((t.id, cells))
        return out

    # ---- the highlighted trigger in full ---------------------------------------------------------
    @on(RowsFetched)
    def _rows_arrived(self) -> None:
        self.call_next(self._show_info)

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self) -> None:
        self._show_info()

    def _show_info(self) -> None:
        info = self.query_one("#info", Static)
        t = self.selected()
        info.display = t is not None
        if t is None:
            return
        if t.cron:
            when = escape(f"cron {t.cron} ({t.timezone or 'UTC'}): {t.cron_description or ''}")
        else:
            when = escape(f"fires on {t.event}")
        lines = [f"[b]{escape(t.name)}[/b] · {t.status} · {when}",
                 escape(f"runs {t.pipeline_id} ({_params(t.parameters)}) if {_conditions(t.conditions)}"),
                 f"last run {_utc(t.last_run)} · next {_utc(t.next_run) if t.next_run else '—'} · "
                 f"{t.total_executions} runs, {t.failed_executions} failed"]
        if t.last_error:
            lines.append(f"[$error]last error: {escape(' '.join(t.last_error.split()))}[/]")
        info.update("\n".join(lines))

    def selected(self) -> TriggerListRow | None:
        table = self.query_one("#table", DataTable)
        if not table.row_count or not table.display:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return self._rows.get(str(key))

    # ---- actions ------------------------------------------------------------------------------------
    def action_new(self) -> None:
        self.app.push_screen(TriggerEditorScreen(), self._saved)

    def action_edit(self) -> None:
        t = self.selected()
        if t is None:
            return
        self.run_service(f"open {t.name}", self._svc.get, t.id, done=self._open_editor)

    def _open_editor(self, trigger: dict[str, Any] | None) -> str | None:
        if trigger is None:
            return "that trigger no longer exists"
        self.app.push_screen(TriggerEditorScreen(trigger), self._saved)
        return None

    def _saved(self, trigger: dict[str, Any] | None) -> None:
        if trigger is not None:
            self.notify(f"trigger {q(trigger['name'])} saved ({trigger['status']})")
            self.refresh_data()

    def action_toggle(self) -> None:
        t = self.selected()
        if t is None:
            return
        enable = t.status == "disabled"
        self.run_service(f"{'enable' if enable else 'disable'} {t.name}", self._svc.set_enabled, t.id, enable,
                         done=lambda row: f"trigger {q(row['name'])} {row['status']}")

    def action_run_now(self) -> None:
        t = self.selected()
        if t is None:
            return
        note = "" if t.enabled else " It is disabled; a manual run goes ahead anyway."
        what = escape(f"{t.pipeline_id} ({_params(t.parameters)})")
        self.confirm(f"Run trigger {q(t.name)} now? It runs {what}.{note}",
                     lambda: self.fire_trigger(t.id, t.name))

    def action_test(self) -> None:
        t = self.selected()
        if t is not None:
            self.app.push_screen(TriggerTestScreen(t.id, t.name, t.event, t.conditions))

    def action_delete(self) -> None:
        t = self.selected()
        if t is None:
            return
        history = f" and its {t.total_executions} recorded run(s)" if t.total_executions else ""
        self.confirm(f"Delete trigger {q(t.name)}{history}? This cannot be undone.",
                     lambda: self.run_service(f"delete {t.name}", self._svc.delete, t.id,
                                              done=lambda _: f"trigger {q(t.name)} deleted"))

    def action_detail(self) -> None:
        t = self.selected()
        if t is not None:
            self.app.push_screen(TriggerDetailScreen(t.id))

    @on(DataTable.RowSelected, "#table")
    def _row_selected(self) -> None:
        self.action_detail()
