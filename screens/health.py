"""Health: alerts firing (acknowledge, silence), trends of the last day, and one line per service.

Alerts come first, unacknowledged on top; ``a`` acknowledges the selected one and
``s`` silences the policy that raised it, both confirmed with the alert named and
recorded with the operator's name. Three sparklines show disk use, queue depth and
jobs finished per hour (``t`` opens them with axes). The lines below are the
runtime's services (from ``app.status()``) and the health service's checks.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from engine.services.health import AlertList, AlertRow, HealthLine, Trends
from engine.units import human_bytes
from screens.actions import OperatorActions
from screens.messages import RowsFetched
from screens.health_trends import TrendsScreen
from screens.silence import SilenceScreen
from screens.table_screen import TableScreen
from screens.widgets.status_line import StatusLine
from screens.widgets.trend import TrendLine

#: Trends change by the hour: read them at most this often.
TRENDS_EVERY_S = 30.0
#: Columns the alert table needs besides the message (cells, padding, scrollbar).
FIXED_COLUMNS = 58
SEVERITY = {"critical": "[b]CRIT[/b]", "warning": "warn", "info": "info"}


def operator_name() -> str:
    """Who acknowledges or silences from this console: the login running it."""
    try:
        return f"console:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without USER)
        return "console"


def _t(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M") if value else "—"


def _state(a: AlertRow) -> str:
    if a.silenced_until is not None and not a.acknowledged:
        return "silenced"
    return "acked" if a.acknowledged else "[b]NEW[/b]"


def _severity(severity: str) -> str:
    return SEVERITY.get(severity, escape(severity[:4]))


def _what(a: AlertRow) -> str:
    return a.policy_name or a.alert_type


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class HealthFetched(Message):
    """The refresh worker read alerts, status lines and (when due) trends."""

    alerts: AlertList
    lines: list[HealthLine]
    trends: Trends | None


class HealthScreen(OperatorActions, TableScreen):
    TITLE = "Health"
    COLUMNS = (("id", "#"), ("sev", "Sev"), ("when", "Fired UTC"), ("what", "What"), ("state", "State"),
               ("message", "Message"))
    EMPTY = "No alerts: nothing has fired in the last 24 h and nothing is unacknowledged."
    WRITE_ACTIONS = frozenset({"acknowledge", "silence"})
    BINDINGS = [
        Binding("a", "acknowledge", "Acknowledge", id="health.acknowledge",
                tooltip="Acknowledge the selected alert (recorded with your name and the time)"),
        Binding("s", "silence", "Silence", id="health.silence",
                tooltip="Silence the policy of the selected alert for a while, with a reason"),
        Binding("t", "trends", "Trends", id="health.trends",
                tooltip="Disk, queue depth and throughput of the last 24 h as plots with axes"),
    ]
    DEFAULT_CSS = """
    HealthScreen .section { height: 1; padding: 0 1; color: $accent; text-style: bold; }
    HealthScreen #table { height: auto; max-height: 7; }
    HealthScreen .empty { padding: 0 1; height: auto; }
    HealthScreen #alert-detail { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    HealthScreen #lines { height: 1fr; min-height: 3; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._alerts: dict[int, AlertRow] = {}
        self.trends: Trends | None = None
        self._trends_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static("Alerts", id="alerts-title", classes="section")
        table: DataTable[Any] = DataTable(id="table", cursor_type="row", zebra_stripes=True)
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("Loading…", id="empty", classes="empty")
        yield Static("", id="alert-detail")
        yield Static("", id="error", classes="error")
        yield Static("Trends, last 24 h", id="trends-title", classes="section")
        yield TrendLine("disk", id="trend-disk")
        yield TrendLine("queued", id="trend-queue")
        yield TrendLine("done/h", id="trend-done")
        lines: DataTable[Any] = DataTable(id="lines", cursor_type="none", show_header=False, zebra_stripes=True)
        for key in ("what", "status", "detail"):
            lines.add_column(key, key=key)
        yield lines
        yield Footer()

    # ---- refresh: one worker reads everything; the base class diffs the alert rows ---------------
    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        health = self.app.services.health  # type: ignore[attr-defined]
        alerts = health.alerts()
        lines = self._service_lines() + health.status_lines()
        trends = None
        if time.monotonic() - self._trends_at >= TRENDS_EVERY_S:
            trends = health.trends(24)
            self._trends_at = time.monotonic()
        self.post_message(HealthFetched(alerts, lines, trends))
        room = max(12, self.size.width - FIXED_COLUMNS)  # the full message is under the table
        return [(str(a.id), (f"#{a.id}", _severity(a.severity), _t(a.triggered_at), escape(_cut(_what(a), 16)),
                             _state(a), escape(_cut(a.message, room)))) for a in alerts.alerts]

    def _service_lines(self) -> list[HealthLine]:
        status = self.app.status()  # type: ignore[attr-defined]
        rest = str(status.get("rest", "?"))
        return [HealthLine("engine", "engine", str(status.get("engine", "?")), ""),
                HealthLine("scheduler", "scheduler", str(status.get("scheduler", "?")), ""),
                HealthLine("rest", "REST API", "running" if rest.startswith("http") else rest,
                           rest if rest.startswith("http") else ""),
                HealthLine("jupyter", "Jupyter", "running" if status.get("jupyter_ok") else "unavailable",
                           str(status.get("jupyter", "")))]

    @on(HealthFetched)
    def _health_fetched(self, message: HealthFetched) -> None:
        a = message.alerts
        self._alerts = {r.id: r for r in a.alerts}
        counts = [f"{a.unacknowledged} unacknowledged"]
        if a.silenced:
            counts.append(f"{a.silenced} silenced")
        acked = sum(1 for r in a.alerts if r.acknowledged)
        if acked:
            counts.append(f"{acked} acknowledged in 24 h")
        self.query_one("#alerts-title", Static).update("Alerts · " + " · ".join(counts))
        self._diff_lines(message.lines)
        if message.trends is not None:
            self.trends = message.trends
            self._show_trends(message.trends)

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    @on(RowsFetched)
    def _rows_fetched(self, message: RowsFetched) -> None:
        self.call_later(self._show_detail)  # after the base class applied the rows

    def _diff_lines(self, lines: list[HealthLine]) -> None:
        table = self.query_one("#lines", DataTable)
        wanted = {ln.key: ln for ln in lines}
        existing = [rk.value for rk in table.rows]
        if existing != [ln.key for ln in lines]:
            table.clear()
            for ln in lines:
                table.add_row(*self._cells(ln), key=ln.key)
            return
        for ln in wanted.values():
            for col, value in zip(("what", "status", "detail"), self._cells(ln), strict=True):
                if table.get_cell(ln.key, col) != value:
                    table.update_cell(ln.key, col, value)

    @staticmethod
    def _cells(ln: HealthLine) -> tuple[str, str, str]:
        ok = ln.status in ("ok", "running", "active") or ln.status.startswith("running")
        status = escape(ln.status) if ok else f"[b]{escape(ln.status)}[/b]"
        return escape(ln.what), status, escape(ln.detail)

    def _show_trends(self, t: Trends) -> None:
        disk = self.query_one("#trend-disk", TrendLine)
        if len(t.disk_percent) >= 2:
            lo, hi = min(t.disk_percent), max(t.disk_percent)
            full = f", full in {t.disk_days_until_full:.0f} d" if t.disk_days_until_full else ""
            disk.show(t.disk_percent, f"{lo:.1f}–{hi:.1f}%, now {t.disk_percent[-1]:.1f}%{full}")
        else:
            disk.show([], f"now {t.disk_percent[-1]:.1f}% used, {human_bytes(t.disk_free_bytes)} free; "
                          "no hourly samples yet" if t.disk_percent else "no samples yet")
        q = t.queue_depth
        self.query_one("#trend-queue", TrendLine).show(q, f"now {q[-1]} waiting, peak {max(q)}")
        done = t.finished
        failed = f", {sum(t.failed)} failed" if sum(t.failed) else ""
        self.query_one("#trend-done", TrendLine).show(done, f"{sum(done)} done{failed} in 24 h; last h {done[-1]}")

    def _show_detail(self) -> None:
        detail = self.query_one("#alert-detail", Static)
        a = self.selected_alert()
        if a is None:
            detail.update("")
            detail.display = False
            return
        parts = [escape(" ".join(a.message.split()))]
        if a.acknowledged:
            parts.append(f"acknowledged by {escape(a.acknowledged_by or '?')} at {_t(a.acknowledged_at)} UTC")
        if a.silenced_until is not None:
            parts.append(f"policy silenced until {_t(a.silenced_until)} UTC by {escape(a.silenced_by or '?')}: "
                         f"{escape(a.silence_reason or '')}")
        elif not a.silenceable:
            parts.append(f"from {escape(a.source or a.alert_type)} (no policy: acknowledge only)")
        detail.update(" · ".join(parts))
        detail.display = True

    # ---- actions ---------------------------------------------------------------------------------
    def selected_alert(self) -> AlertRow | None:
        table = self.query_one("#table", DataTable)
        if not table.row_count or not table.display:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self._alerts.get(int(key)) if key is not None else None

    def action_acknowledge(self) -> None:
        a = self.selected_alert()
        if a is None:
            self.notify("no alert selected", severity="warning")
            return
        if a.acknowledged:
            self.notify(f"alert #{a.id} was already acknowledged by {a.acknowledged_by} at "
                        f"{_t(a.acknowledged_at)} UTC")
            return
        who = operator_name()
        health = self.app.services.health  # type: ignore[attr-defined]

        def done(row: AlertRow) -> str:
            return f"alert #{row.id} acknowledged by {row.acknowledged_by} at {_t(row.acknowledged_at)} UTC"

        self.confirm(f"Acknowledge alert #{a.id} ({a.severity}, {escape(_what(a))}, fired {_t(a.triggered_at)} UTC)?\n"
                     f"{escape(_cut(a.message, 160))}\n\nRecorded as acknowledged by {escape(who)}, now.",
                     lambda: self.run_service(f"acknowledge alert #{a.id}", health.acknowledge, a.id, who,
                                              done=done))

    def action_silence(self) -> None:
        a = self.selected_alert()
        if a is None:
            self.notify("no alert selected", severity="warning")
            return
        if not a.silenceable:
            self.notify(f"alert #{a.id} comes from {a.source or a.alert_type}, not from an alert policy: "
                        "there is nothing to silence; acknowledge it instead", severity="warning", timeout=8)
            return
        self.app.push_screen(SilenceScreen(a), lambda answer: self._confirm_silence(a, answer))

    def _confirm_silence(self, a: AlertRow, answer: tuple[timedelta, str] | None) -> None:
        if answer is None:
            return
        duration, reason = answer
        health = self.app.services.health  # type: ignore[attr-defined]
        until = health.now() + duration
        who = operator_name()

        def done(x: dict[str, Any]) -> str:
            return f"policy {x['policy_name']} silenced until {_t(x['ends_at'])} UTC"

        self.confirm(f"Silence policy {escape(a.policy_name or '')} (alert #{a.id}) for {_span(duration)}, "
                     f"until {until:%m-%d %H:%M} UTC?\nReason: {escape(reason)}\n\nRecorded as {escape(who)}.",
                     lambda: self.run_service(f"silence alert #{a.id}", health.silence, a.id, duration, reason, who,
                                              done=done))

    def action_trends(self) -> None:
        if self.trends is None:
            self.notify("trends are still loading", severity="warning")
            return
        self.app.push_screen(TrendsScreen(self.trends))


def _span(d: timedelta) -> str:
    minutes = round(d.total_seconds() / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return " ".join(p for p in (f"{days} d" if days else "", f"{hours} h" if hours else "",
                                f"{mins} min" if mins else "") if p) or "0 min"
