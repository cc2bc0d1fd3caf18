"""Logs: the live log of this process, followed or frozen, filtered, searched, and one key from a job.

Records come from the in-memory ring buffer (``app.log_records``), polled on a one-shot
timer re-armed after each poll and paused while the screen is hidden. ``f`` follows new
lines or freezes the view; ``l`` raises the minimum level, ``c`` keeps one component
(a part of the logger name); ``/`` searches, ``n``/``N`` jump between matches; enter on
a line marked ▸ (logged while the engine worked on a job) opens that job's own log.
"""

from __future__ import annotations

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from screens.job_log import JobLogScreen
from screens.prompt import PromptScreen
from screens.widgets.log_view import LEVELS, ROOT, LogView
from screens.widgets.status_line import StatusLine

#: ``l`` steps through these minimum levels.
LEVEL_STEPS = ("DEBUG", "INFO", "WARNING", "ERROR")


class LogsScreen(Screen[None]):
    TITLE = "Logs"
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="logs.follow",
                tooltip="Follow new lines (auto-scroll) or freeze the view where it is"),
        Binding("l", "cycle_level", "Level", id="logs.level",
                tooltip="Minimum level shown: DEBUG → INFO → WARNING → ERROR → DEBUG"),
        Binding("c", "component", "Component", id="logs.component",
                tooltip="Show only one component (a part of the logger name, e.g. engine, api, ingest)"),
        Binding("slash", "search", "Search", id="logs.search", tooltip="Highlight a text and jump to it"),
        Binding("n", "next_match", "Next", id="logs.next", tooltip="Next match of the search"),
        Binding("N", "previous_match", "Prev", id="logs.previous", show=False,
                tooltip="Previous match of the search"),
        Binding("enter", "open_job", "Job log", id="logs.job",
                tooltip="Open the log of the job this line belongs to (lines marked ▸)"),
        Binding("escape", "clear", "Clear", id="logs.clear", show=False,
                tooltip="Clear the search, the level and the component filter"),
    ]
    DEFAULT_CSS = """
    LogsScreen #logbar { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    LogsScreen #line-detail { height: 2; padding: 0 1; background: $panel; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._seq = 0
        self._timer: Timer | None = None
        self._active = True

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static("", id="logbar")
        yield LogView(id="log")
        yield Static("", id="line-detail")
        yield Footer()

    @property
    def view(self) -> LogView:
        return self.query_one("#log", LogView)

    # ---- polling ----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.view.focus()
        self.refresh_data()

    def on_screen_suspend(self) -> None:
        self._active = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def on_screen_resume(self) -> None:
        self._active = True
        self.refresh_data()

    def refresh_data(self) -> None:
        """Take the records after the last one seen (memory only: cheap enough for the loop)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        records = self.app.log_records(self._seq, LogView.MAX_LINES)  # type: ignore[attr-defined]
        if records:
            self._seq = records[-1]["seq"]
            self.view.append(records)
        self._show_bar()
        self.query_one(StatusLine).show_status(self.app.status(), self.TITLE)  # type: ignore[attr-defined]
        interval = self.app.refresh_interval  # type: ignore[attr-defined]
        if self._active and interval:
            self._timer = self.set_timer(interval, self.refresh_data)

    # ---- the bar: what the view shows and why -------------------------------------------------------
    def _show_bar(self) -> None:
        v = self.view
        parts = ["[b]FOLLOWING[/b]" if v.follow else "[b]FROZEN[/b] (f follows)"]
        level = next((name for name in LEVEL_STEPS if LEVELS[name] == v.min_level), None)
        if level and level != "DEBUG":
            parts.append(f"level ≥ {level}")
        if v.component:
            parts.append(f"component ~ {v.component}")
        if v.search:
            rank = v.match_rank()
            where = f"{rank + 1}/{len(v.matches)}" if rank is not None else f"{len(v.matches)} matches"
            parts.append(f"/{v.search}: {where}" if v.matches else f"/{v.search}: no match")
        shown = len(v.shown)
        parts.append(f"{shown:,} lines" if shown == len(v.entries) else f"{shown:,} of {len(v.entries):,} lines")
        self.query_one("#logbar", Static).update(" · ".join(parts))
        v.empty_text = ("No log records yet." if not v.entries else
                        "No line passes the filter (escape clears it).")
        self._show_line_detail()

    def _show_line_detail(self) -> None:
        """The whole cursor line, wrapped: at 80 columns most messages run past the edge."""
        line = self.view.current_line
        detail = self.query_one("#line-detail", Static)
        if line is None:
            detail.update("")
            return
        job = f"[b]job {escape(line.job_id)}[/b] (enter: its log) · " if line.job_id else ""
        detail.update(job + escape(line.text))

    @on(LogView.CursorMoved)
    def _cursor_moved(self) -> None:
        self._show_bar()

    # ---- actions -----------------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.view.set_follow(not self.view.follow)
        self._show_bar()

    def action_cycle_level(self) -> None:
        names = list(LEVEL_STEPS)
        current = next((n for n in names if LEVELS[n] == self.view.min_level), "DEBUG")
        nxt = names[(names.index(current) + 1) % len(names)]
        self.view.set_filter(min_level=LEVELS[nxt])
        self._show_bar()

    def action_component(self) -> None:
        seen = sorted({ln.logger.removeprefix(ROOT).split(".")[0] for ln in self.view.entries})
        hint = f" (seen: {', '.join(seen[:12])})" if seen else ""
        self.app.push_screen(PromptScreen(f"Show only loggers containing (empty for all){hint}",
                                          value=self.view.component, required=False), self._component_chosen)

    def _component_chosen(self, text: str | None) -> None:
        if text is None:
            return
        self.view.set_filter(component=text)
        self._show_bar()

    def action_search(self) -> None:
        self.app.push_screen(PromptScreen("Search the log for (case-insensitive; n next, N previous)",
                                          value=self.view.search, required=False), self._search_chosen)

    def _search_chosen(self, text: str | None) -> None:
        if text is None:
            return
        view = self.view
        view.set_search(text)
        if view.search and view.matches:
            view.follow = False  # a jump must stay where it landed
            if view.match_rank() is None:
                view.next_match(forward=True)
        elif view.search:
            self.notify(f"no line contains {view.search!r}", severity="warning")
        self._show_bar()

    def action_next_match(self) -> None:
        self._jump(forward=True)

    def action_previous_match(self) -> None:
        self._jump(forward=False)

    def _jump(self, *, forward: bool) -> None:
        view = self.view
        if not view.search:
            self.notify("no search yet: / to search", severity="warning")
            return
        if view.next_match(forward=forward) is None:
            self.notify(f"no line contains {view.search!r}", severity="warning")
        self._show_bar()

    def action_clear(self) -> None:
        self.view.set_search("")
        self.view.set_filter(min_level=0, component="")
        self._show_bar()

    def action_open_job(self) -> None:
        line = self.view.current_line
        if line is None:
            self.notify("no line selected", severity="warning")
            return
        if line.job_id is None:
            self.notify("this line belongs to no job: lines logged while the engine works on a job are marked ▸",
                        severity="warning")
            return
        self._open_job(line.job_id)

    @work(thread=True, exclusive=True, group="logs-job", description="find the job of a log line")
    def _open_job(self, job_id: str) -> None:
        job = self.app.services.control.get_job(job_id)  # type: ignore[attr-defined]
        if job is None:
            self.app.call_from_thread(self.notify, f"job {job_id} no longer exists (purged?)", severity="warning")
            return
        self.app.call_from_thread(self.app.push_screen, JobLogScreen(job))
