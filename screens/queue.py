"""Queue: every observation group, newest first, with its single processing state."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.binding import Binding
from textual.widgets import DataTable

from screens.confirm import ConfirmScreen
from screens.group_detail import GroupDetailScreen
from screens.job_log import show_latest_job_log
from screens.table_screen import TableScreen


def _dt(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


class QueueScreen(TableScreen):
    TITLE = "Queue"
    COLUMNS = (("id", "Group"), ("state", "State"), ("sb", "SB"), ("dec", "Dec°"), ("cal", "Calibrator"),
               ("changed", "Changed (UTC)"), ("error", "Error"))
    EMPTY = ("No observation groups yet. Files dropped into incoming/ (or registered with "
             "`contimg ingest`) appear here as they are grouped.")
    BINDINGS = [
        Binding("R", "retry", "Retry", tooltip="Retry the selected group's failed or cancelled job",
                id="queue.retry"),
        Binding("x", "cancel_job", "Cancel", tooltip="Cancel the selected group's queued or running job",
                id="queue.cancel"),
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause or resume the processing engine",
                id="engine.pause"),
        Binding("l", "job_log", "Job log", tooltip="Tail the log of the selected group's latest job",
                id="queue.joblog"),
        Binding("d", "detail", "Detail", tooltip="Stages, attempts, errors, products and calibration of the "
                "selected group (also enter)", id="queue.detail"),
    ]

    def action_job_log(self) -> None:
        gid = self._selected()
        if gid:
            self._open_log(gid)

    @work(thread=True, exclusive=True, group="joblog-open", description="find the latest job")
    def _open_log(self, gid: str) -> None:
        show_latest_job_log(self.app, gid)

    def action_detail(self) -> None:
        gid = self._selected()
        if gid:
            self.app.push_screen(GroupDetailScreen(gid))

    @on(DataTable.RowSelected, "#table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(GroupDetailScreen(str(event.data_table.get_row_at(event.cursor_row)[0])))

    def _selected(self) -> str | None:
        table = self.query_one("#table", DataTable)
        if not table.row_count:
            return None
        return str(table.get_row_at(table.cursor_row)[0])

    def _writable(self) -> bool:
        if self.app.read_only:  # type: ignore[attr-defined]
            self.notify("read-only console: no actions", severity="warning")
            return False
        return True

    def action_retry(self) -> None:
        gid = self._selected()
        if gid and self._writable():
            self.app.push_screen(ConfirmScreen(f"Retry the failed job of group {gid}?"),
                                 lambda ok: ok and self._act("retry", gid))

    def action_cancel_job(self) -> None:
        gid = self._selected()
        if gid and self._writable():
            self.app.push_screen(ConfirmScreen(f"Cancel the processing of group {gid}?"),
                                 lambda ok: ok and self._act("cancel", gid))

    def action_toggle_pause(self) -> None:
        if self._writable():
            self._act("pause", "")

    @work(thread=True, exclusive=True, group="actions", description="operator action")
    def _act(self, what: str, gid: str) -> None:
        services = self.app.services  # type: ignore[attr-defined]
        control = services.control
        try:
            if what == "pause":
                paused = not control.is_paused()
                control.set_paused(paused)
                message = "engine paused" if paused else "engine resumed"
            else:
                job = services.latest_job(gid)
                if job is None:
                    raise LookupError(f"group {gid} has no job")
                if what == "retry":
                    control.retry(job.id, by="console")
                    message = f"{job.type} of {gid} queued again"
                else:
                    control.cancel(job.id, by="console")
                    message = f"{job.type} of {gid} cancelled"
        except Exception as exc:  # noqa: BLE001 - shown to the operator
            self.app.call_from_thread(self.notify, f"{what} failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.refresh_data)

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_groups()  # type: ignore[attr-defined]
        return [(g.id, (g.id, g.state, str(g.n_subbands), "" if g.dec_deg is None else f"{g.dec_deg:.2f}",
                        g.calibrator_name or "", _dt(g.state_changed_at), (g.error or "")[:60])) for g in rows]
