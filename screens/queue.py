"""Queue: every observation group, newest first, with its state and its running stage's progress.

A virtualised view (``PagedTable``): only the rows near the screen are read, by keyset
page, so 100,000 groups open as fast as ten. ``/`` filters by state, type and time;
the row actions reach the engine through ``services.control`` and ``services.queue``.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from screens.actions import OperatorActions
from screens.choose import ChoiceScreen
from screens.group_detail import GroupDetailScreen
from screens.job_log import show_latest_job_log
from screens.prompt import PromptScreen
from screens.refresh import RearmedRefresh
from screens.widgets.paged_table import Column, Page, PagedRow, PagedTable
from screens.widgets.status_line import StatusLine

COLUMNS = [Column("id", "Group", 19), Column("state", "State", 11), Column("sb", "SB", 2, hide_below=110),
           Column("dec", "Dec°", 6, hide_below=100), Column("kind", "Calibrator", 10),
           Column("changed", "Changed", 11), Column("note", "Progress / error", 0)]
FILTER_HELP = ("Filter groups: a state (failed), calibrator or target, an age (6h), or "
               "state=a,b type= since= until= id=prefix. Empty shows all.")


def progress_cell(row: Any) -> str:
    """``image CLEAN 34% ≤12s`` for a running stage; else the error; else the queued priority."""
    if row.running:
        p = row.progress
        if p is None:
            return f"{row.running} started"
        eta = p.eta_s() if p.unit in ("rows", "channels", "iterations") else None
        bound = "≤" if p.unit == "iterations" else "~"
        return f"{row.running} {p.phase} {100 * p.fraction:.0f}%" + (f" {bound}{eta:.0f}s" if eta is not None else "")
    if row.error:
        return row.error
    if row.priority is not None:
        return f"queued, priority {row.priority}"
    return ""


def to_paged(row: Any) -> PagedRow:
    cells = (row.id, row.state, str(row.n_subbands), "" if row.dec_deg is None else f"{row.dec_deg:.2f}",
             row.calibrator_name or ("calibrator" if row.is_calibrator else ""),
             row.state_changed_at.strftime("%m-%d %H:%M") if row.state_changed_at else "", progress_cell(row))
    style = "error" if row.state == "failed" else ("active" if row.running else "")
    return PagedRow(row.id, (row.group_time, row.id), cells, style, row)


class QueueScreen(OperatorActions, RearmedRefresh, Screen[None]):
    TITLE = "Queue"
    EMPTY = ("No observation groups yet. Files dropped into incoming/ (or registered with "
             "`contimg ingest`) appear here as they are grouped.")
    WRITE_ACTIONS = frozenset({"retry", "cancel_job", "toggle_pause", "priority", "reprocess", "retry_interrupted"})
    DEFAULT_CSS = """
    QueueScreen #filter { height: 1; padding: 0 1; color: $text-muted; }
    QueueScreen .empty { height: auto; padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("d", "detail", "Detail", tooltip="Stages, attempts, errors, products and calibration of the "
                "selected group (also enter)", id="queue.detail"),
        Binding("slash", "filter", "Filter", tooltip="Filter by state, calibrator/target and time", id="queue.filter"),
        Binding("R", "retry", "Retry", tooltip="Retry the selected group's failed or cancelled job",
                id="queue.retry"),
        Binding("x", "cancel_job", "Cancel", tooltip="Cancel the selected group's queued or running job",
                id="queue.cancel"),
        Binding("plus", "priority", "Priority", tooltip="Set the priority of the group's queued job "
                "(lower runs first)", id="queue.priority"),
        Binding("F", "reprocess", "Reprocess", tooltip="Send the group back to a stage it has passed and run "
                "it again", id="queue.reprocess"),
        Binding("I", "retry_interrupted", "Retry interrupted", tooltip="Retry every job that failed only "
                "because its holder crashed (not by an error of its own)", id="queue.retry_interrupted"),
        Binding("l", "job_log", "Job log", tooltip="Tail the log of the selected group's latest job",
                id="queue.joblog"),
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause or resume the processing engine",
                id="engine.pause"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._filter: Any = None

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static("", id="filter")
        yield PagedTable(COLUMNS, self._fetch, id="table")
        yield Static("Loading…", id="empty", classes="empty")
        yield Footer()

    @property
    def table(self) -> PagedTable:
        return self.query_one("#table", PagedTable)

    def _fetch(self, offset: int, limit: int, after: Any, before: Any) -> Page:
        win = self.app.services.queue.window(offset, limit, self._filter, after=after,  # type: ignore[attr-defined]
                                             before=before, total_hint=self.table.total)
        return Page(win.offset, [to_paged(r) for r in win.rows], win.total)

    # ---- refresh: re-armed after each load, never overlapping ----------------------
    def on_mount(self) -> None:
        self.refresh_data()  # the table is the first focusable widget: it gets focus by itself

    def reload(self) -> None:
        self.table.reload()

    @on(PagedTable.Loaded, "#table")
    def _loaded(self, event: PagedTable.Loaded) -> None:
        empty = self.query_one("#empty", Static)
        filtered = bool(self.filter_text)
        empty.update(f"No groups match the filter “{self.filter_text}”." if filtered else self.EMPTY)
        empty.display = event.total == 0
        self.table.display = event.total > 0
        self.query_one("#filter", Static).update(
            f"filter: {self.filter_text} — {event.total:,} groups (/ to change)" if filtered
            else f"{event.total:,} groups, newest first (/ to filter)")
        self.query_one("#status", StatusLine).show_status(self.app.status(), self.TITLE)  # type: ignore[attr-defined]
        self.rearm()

    # ---- reading ----------------------------------------------------------------
    def _selected(self) -> str | None:
        row = self.table.cursor_row()
        return row.key if row else None

    @on(PagedTable.RowSelected, "#table")
    def _row_selected(self, event: PagedTable.RowSelected) -> None:
        self.app.push_screen(GroupDetailScreen(event.row.key))

    def action_detail(self) -> None:
        if gid := self._selected():
            self.app.push_screen(GroupDetailScreen(gid))

    def action_job_log(self) -> None:
        if gid := self._selected():
            self._open_log(gid)

    @work(thread=True, exclusive=True, group="joblog-open", description="find the latest job")
    def _open_log(self, gid: str) -> None:
        show_latest_job_log(self.app, gid)

    def action_filter(self) -> None:
        queue = self.app.services.queue  # type: ignore[attr-defined]

        def problem(text: str) -> str | None:
            try:
                queue.parse_filter(text)
            except Exception as exc:  # noqa: BLE001 - the parser's message names the term
                return str(exc)
            return None

        def apply(text: str | None) -> None:
            if text is None:
                return
            self.filter_text = text
            self._filter = queue.parse_filter(text) if text else None
            self.table.cursor = 0
            self.table.scroll_to(y=0, animate=False, immediate=True)
            self.refresh_data()

        self.app.push_screen(PromptScreen(FILTER_HELP, value=self.filter_text, validate=problem, required=False,
                                          placeholder="failed 6h"), apply)

    # ---- actions ----------------------------------------------------------------
    def _latest_job_then(self, gid: str, what: str, act: Any) -> None:
        services = self.app.services  # type: ignore[attr-defined]

        def job_action() -> str:
            job = services.latest_job(gid)
            if job is None:
                raise LookupError(f"group {gid} has no job")
            act(services.control, job.id)
            return f"{job.type} of {gid} {what}"

        self.run_service(f"{what} {gid}", job_action, done=lambda message: message)

    def action_retry(self) -> None:
        if gid := self._selected():
            self.confirm(f"Retry the failed or cancelled job of group {gid}?",
                         lambda: self._latest_job_then(gid, "queued again", lambda c, j: c.retry(j, by="console")))

    def action_cancel_job(self) -> None:
        if gid := self._selected():
            self.confirm(f"Cancel the processing of group {gid}?",
                         lambda: self._latest_job_then(gid, "cancelled", lambda c, j: c.cancel(j, by="console")))

    def action_toggle_pause(self) -> None:
        control = self.app.services.control  # type: ignore[attr-defined]

        def flip() -> bool:
            paused = not control.is_paused()
            control.set_paused(paused)
            return paused

        self.run_service("pause/resume", flip, done=lambda paused: "engine paused" if paused else "engine resumed")

    def action_retry_interrupted(self) -> None:
        control = self.app.services.control  # type: ignore[attr-defined]

        def ask(ids: list[str]) -> str | None:
            if not ids:
                return "no job failed only through interruptions"
            self.confirm(f"Retry the {len(ids)} job(s) that failed only because their holder crashed "
                         "(host crash or killed worker, not an error of their own)?",
                         lambda: self.run_service("retry interrupted", control.retry_failed, "interrupted", "console",
                                                  done=lambda r: f"{len(r['retried'])} interrupted job(s) queued again"
                                                  + (f", {len(r['skipped'])} not: see the log" if r["skipped"] else "")))
            return None

        self.run_service("retry interrupted", control.failed_ids, "interrupted", done=ask)

    def action_priority(self) -> None:
        gid = self._selected()
        if not gid:
            return
        row = self.table.cursor_row()
        queued = row.data.priority if row is not None and row.data is not None else None
        current = "10" if queued is None else str(queued)

        def problem(text: str) -> str | None:
            return None if text.isdigit() and 0 <= int(text) <= 1000 else "a whole number 0–1000 (lower runs first)"

        def apply(text: str | None) -> None:
            if text is not None:
                self.run_service(f"priority of {gid}", self.app.services.queue.set_priority,  # type: ignore[attr-defined]
                                 gid, int(text), by="console",
                                 done=lambda n: f"{gid}: {n} queued job(s) now at priority {text}")

        self.app.push_screen(PromptScreen(f"Priority for the queued job of group {gid} (0–1000, lower runs first; "
                                          "live data runs at 100):", value=current, validate=problem), apply)

    def action_reprocess(self) -> None:
        if gid := self._selected():
            self.run_service(f"reprocess {gid}", self.app.services.queue.reprocess_targets, gid,  # type: ignore[attr-defined]
                             done=lambda targets: self._choose_reprocess(gid, targets))

    def _choose_reprocess(self, gid: str, targets: list[tuple[str, str]]) -> str | None:
        if not targets:
            return f"{gid} cannot be reprocessed now (a stage holds it, or it has not passed a stage yet)"
        options = [(state, f"from {state}: run {stage} again, then the stages after it") for state, stage in targets]

        def chosen(state: str | None) -> None:
            if state is None:
                return
            stage = dict(targets)[state]
            self.confirm(f"Reprocess group {gid} from {state}? Its {stage} stage and every later stage run again; "
                         "products are replaced.",
                         lambda: self.run_service(f"reprocess {gid}", self.app.services.queue.reprocess,  # type: ignore[attr-defined]
                                                  gid, state, by="console",
                                                  done=lambda job: f"{gid}: back to {state}, {stage} queued ({job})"))

        self.app.push_screen(ChoiceScreen(f"Reprocess group {gid} from which stage?", options), chosen)
        return None
