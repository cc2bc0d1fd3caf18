"""One trigger's execution history: every run, why it was skipped or failed, and what it queued.

Opened from the Triggers list (``d`` or enter). The table holds the runs newest first;
the lines under it spell out the highlighted run in full (its whole error, the event
data it fired on), since errors rarely fit a cell at 80 columns.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


EVENT_SHORT = {"new_measurement_set": "new MS", "calibration_complete": "calibrated", "data_quality_alert": "QA alert",
               "storage_threshold": "storage"}


def _t(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%m-%d %H:%M") if iso else "—"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _why(ex: dict[str, Any]) -> str:
    return ex.get("error_message") or ex.get("skip_reason") or ""


class TriggerDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="trigger_detail.close")]
    DEFAULT_CSS = """
    TriggerDetailScreen { align: center middle; }
    TriggerDetailScreen #frame { width: 100%; max-width: 120; height: 1fr; border: round $primary;
                                 background: $panel; }
    TriggerDetailScreen .body { height: auto; padding: 0 1; }
    TriggerDetailScreen .section { color: $accent; text-style: bold; padding: 0 1; }
    TriggerDetailScreen DataTable { height: 1fr; min-height: 4; }
    TriggerDetailScreen #run { height: auto; max-height: 6; padding: 0 1; background: $boost; }
    """

    def __init__(self, trigger_id: str) -> None:
        super().__init__()
        self.trigger_id = trigger_id
        self._runs: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="frame"):
            yield Static("loading…", id="summary", classes="body")
            yield Static("Runs (newest first)", classes="section")
            runs: DataTable[str] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            for key, label in (("started", "Started UTC"), ("status", "Status"), ("event", "Event"),
                               ("took", "Took"), ("job", "Job"), ("why", "Error / skip reason")):
                runs.add_column(label, key=key)
            yield runs
            yield Static("", id="run", classes="body")

    def on_mount(self) -> None:
        self.query_one("#frame").border_subtitle = "escape close"
        self.query_one("#run").display = False
        self._load()

    @work(thread=True, exclusive=True, group="trigger-detail", description="read trigger history")
    def _load(self) -> None:
        svc = self.app.services.triggers  # type: ignore[attr-defined]
        try:
            trigger = svc.get(self.trigger_id)
            runs = svc.executions(self.trigger_id) if trigger else []
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, trigger, runs)

    def _failed(self, message: str) -> None:
        self.query_one("#summary", Static).update(f"[$error]cannot read this trigger: {escape(message)}[/]")

    def _show(self, t: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
        summary = self.query_one("#summary", Static)
        if t is None:
            summary.update("no such trigger (deleted?)")
            return
        self.query_one("#frame").border_title = escape(f"Trigger {t['name']}")
        sched = t.get("schedule")
        when = (f"cron {sched['cron']} ({sched['timezone']}): {sched['description']}" if sched
                else f"on {t['event']}")
        lines = [escape(f"{t['status']} · {when} · runs {t['pipeline_id']} ({t['pipeline_name']})"),
                 escape(f"{t['total_executions']} runs: {t['successful_executions']} succeeded, "
                        f"{t['failed_executions']} failed (skips not counted) · created by "
                        f"{t['created_by'] or '?'}, last edited by {t['updated_by'] or '?'}")]
        if t.get("last_error"):
            lines.append(f"[$error]last error: {escape(t['last_error'])}[/]")
        summary.update("\n".join(lines))
        table = self.query_one("#runs", DataTable)
        table.clear()
        self._runs = {ex["id"]: ex for ex in runs}
        width = max(20, self.app.size.width - 60)  # the rest of the line; the full text is under the table
        for ex in runs:
            why = " ".join(_why(ex).split())
            table.add_row(_t(ex["started_at"]), ex["status"], EVENT_SHORT.get(ex["event_type"], ex["event_type"]),
                          _took(ex["duration_seconds"]), (ex["job_id"] or "")[:8],
                          why if len(why) <= width else why[: width - 1] + "…", key=ex["id"])
        if not runs:
            run = self.query_one("#run", Static)
            run.update("never ran yet")
            run.display = True

    @on(DataTable.RowHighlighted, "#runs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        ex = self._runs.get(str(event.row_key.value))
        run = self.query_one("#run", Static)
        if ex is None:
            run.display = False
            return
        lines = [escape(f"{ex['status']} at {_t(ex['started_at'])} UTC on {ex['event_type']}"
                        + (f", took {_took(ex['duration_seconds'])}" if ex["duration_seconds"] is not None else "")
                        + (f" · job/backup {ex['job_id']}" if ex["job_id"] else ""))]
        if ex.get("error_message"):
            lines.append(f"[$error]error: {escape(ex['error_message'])}[/]")
        if ex.get("skip_reason"):
            lines.append(f"[$warning]skipped: {escape(ex['skip_reason'])}[/]")
        lines.append(escape("event data: " + json.dumps(ex.get("event_data") or {}, default=str)))
        run.update("\n".join(lines))
        run.display = True
