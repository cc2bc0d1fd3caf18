"""One group in detail: why it is where it is, what it made, and what calibrated it.

Opened from the Queue (enter or ``d``). Stages are the group's jobs in order, each with
its attempts, duration and the error kind and reason; the state history is the audit
trail; products carry paths and sizes. ``l`` tails the latest job's log from here too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.units import human_bytes
from screens.job_log import show_latest_job_log


def _t(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M:%S") if value else "—"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _bytes(n: int | None) -> str:
    return "missing" if n is None else human_bytes(n)


class GroupDetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="detail.close"),
        Binding("l", "job_log", "Job log", tooltip="Tail the log of this group's latest job", id="detail.joblog"),
    ]
    DEFAULT_CSS = """
    GroupDetailScreen { align: center middle; }
    GroupDetailScreen > VerticalScroll { width: 96%; height: 94%; border: round $primary; background: $panel; }
    GroupDetailScreen .section { color: $accent; text-style: bold; margin-top: 1; padding: 0 1; }
    GroupDetailScreen .body { padding: 0 1; }
    GroupDetailScreen .error { color: $error; padding: 0 1; }
    GroupDetailScreen DataTable { height: auto; max-height: 12; }
    """

    def __init__(self, group_id: str) -> None:
        super().__init__()
        self.group_id = group_id

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"[b]{self.group_id}[/b]  loading…  (escape to close)", id="title", classes="body")
            yield Static("", id="error", classes="error")
            yield Static("Stages", classes="section")
            stages: DataTable[Any] = DataTable(id="stages", cursor_type="row", show_cursor=False)
            for label in ("Stage", "State", "Attempts", "Started", "Took", "Error"):
                stages.add_column(label)
            yield stages
            yield Static("", id="stage-errors", classes="error")
            yield Static("Products", classes="section")
            yield Static("", id="products", classes="body")
            yield Static("Calibration", classes="section")
            yield Static("", id="calibration", classes="body")
            yield Static("State history", classes="section")
            yield Static("", id="history", classes="body")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="group-detail", description="read group detail")
    def _load(self) -> None:
        detail = self.app.services.group_detail(self.group_id)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._show, detail)

    def _show(self, d: Any) -> None:
        title = self.query_one("#title", Static)
        if d is None:
            title.update(f"[b]{self.group_id}[/b]: no such group (removed?)")
            return
        kind = f"calibrator {d.calibrator_name}" if d.is_calibrator else "target"
        dec = "—" if d.dec_deg is None else f"{d.dec_deg:+.2f}°"
        missing = f", missing {d.missing_subbands}" if d.missing_subbands else ""
        title.update(f"[b]{d.id}[/b] · {d.state} since {_t(d.state_changed_at)} · {kind} · Dec {dec} · "
                     f"{d.n_subbands} subbands{missing}")
        err = self.query_one("#error", Static)
        lines = [f"error: {d.error}"] if d.error else []
        lines += [f"warning: {w}" for w in d.warnings]
        err.update("\n".join(lines))
        err.display = bool(lines)
        table = self.query_one("#stages", DataTable)
        table.clear()
        for st in d.stages:
            table.add_row(st.type, st.state, f"{st.attempts}/{st.max_attempts}", _t(st.started_at),
                          _dur(st.duration_s), (st.error_kind or "error") if st.error else "", key=st.job_id)
        errors = self.query_one("#stage-errors", Static)
        errors.update("\n".join(f"{st.type} (attempt {st.attempts}/{st.max_attempts}, {st.error_kind or 'error'}): "
                                f"{st.error}" for st in d.stages if st.error))
        errors.display = any(st.error for st in d.stages)
        self.query_one("#products", Static).update(
            "\n".join(f"{p.kind:<10} {_bytes(p.size_bytes):>9}  {p.path}" + (f"  ({p.note})" if p.note else "")
                      for p in d.products) or "none yet")
        self.query_one("#calibration", Static).update("\n".join(d.calibration) or "none applied")
        self.query_one("#history", Static).update(
            "\n".join(f"{_t(t.at)}  {t.from_state} → {t.to_state}" + (f" (attempt {t.attempt})" if t.attempt else "")
                      + (f": {t.reason}" if t.reason else "") for t in d.transitions) or "no transitions")

    def action_job_log(self) -> None:
        self._open_log()

    @work(thread=True, exclusive=True, group="joblog-open", description="find the latest job")
    def _open_log(self) -> None:
        show_latest_job_log(self.app, self.group_id)
