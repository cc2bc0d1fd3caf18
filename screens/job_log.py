"""The log of one job, tailed while it runs (lines come from the job_logs table)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Log, Static


class JobLogScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="joblog.close")]
    DEFAULT_CSS = """
    JobLogScreen { align: center middle; }
    JobLogScreen > Vertical { width: 90%; height: 80%; border: round $primary; background: $panel; }
    JobLogScreen Log { height: 1fr; }
    """

    def __init__(self, job: Any) -> None:
        super().__init__()
        self.job = job
        self._after = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]{self.job.type}[/b] job {self.job.id} · group {self.job.group_id} · "
                         f"{self.job.state}, attempt {self.job.attempts}  (escape to close)", id="title")
            yield Log(id="joblog", max_lines=10000, highlight=False)

    def on_mount(self) -> None:
        self._tail()

    @work(thread=True, exclusive=True, group="joblog", description="tail job log")
    def _tail(self) -> None:
        lines = self.app.services.control.job_log(self.job.id, self._after)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._show, lines)

    def _show(self, lines: list[dict[str, Any]]) -> None:
        log = self.query_one("#joblog", Log)
        if lines:
            self._after = lines[-1]["id"]
            log.write_lines(f"{ln['at']:%H:%M:%S} {ln['level']:<7} {ln['message']}" for ln in lines)
        elif not log.line_count:
            log.write_line("(no log lines yet)")
        self._timer = self.set_timer(1.0, self._tail)


def show_latest_job_log(app: Any, group_id: str) -> None:
    """From a worker thread: push the log of the group's latest job, or say there is none."""
    job = app.services.latest_job(group_id)
    if job is None:
        app.call_from_thread(app.notify, f"group {group_id} has no job yet", severity="warning")
        return
    app.call_from_thread(app.push_screen, JobLogScreen(job))
