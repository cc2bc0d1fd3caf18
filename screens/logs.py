"""Logs: the live log of this process, fed from the in-memory ring buffer (line API widget)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Log

from screens.widgets.status_line import StatusLine


class LogsScreen(Screen[None]):
    TITLE = "Logs"

    def __init__(self) -> None:
        super().__init__()
        self._seq = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Log(id="log", max_lines=5000, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        records = self.app.log_records(self._seq)  # type: ignore[attr-defined]
        log = self.query_one(Log)
        if records:
            self._seq = records[-1]["seq"]
            log.write_lines(f"{r['timestamp']:%H:%M:%S} {r['level']:<7} {r['logger']}: {r['message']}"
                            for r in records)
        elif not log.line_count:
            log.write_line("(no log records yet)")
        self.query_one(StatusLine).show_status(self.app.status(), self.TITLE)  # type: ignore[attr-defined]
        self._timer = self.set_timer(self.app.refresh_interval, self.refresh_data)  # type: ignore[attr-defined]
