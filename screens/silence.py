"""Ask how long to silence an alert's policy and why; both checked as the operator types.

The dialog names the alert and the policy it silences (silences belong to policies,
so every alert of that policy goes quiet). It answers ``(duration, reason)``; the
Health screen then confirms with the end time spelled out before anything is written.
"""

from __future__ import annotations

from datetime import timedelta

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from engine.services.health import AlertRow, parse_duration


class SilenceScreen(ModalScreen[tuple[timedelta, str] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="silence.cancel", tooltip="Close without silencing")]
    DEFAULT_CSS = """
    SilenceScreen { align: center middle; }
    SilenceScreen > Vertical { width: 74; height: auto; max-height: 22; border: round $warning;
                               background: $panel; padding: 0 1; }
    SilenceScreen .label { color: $text-muted; margin-top: 1; }
    SilenceScreen #problem { color: $error; height: auto; }
    """

    def __init__(self, alert: AlertRow, *, duration: str = "2h") -> None:
        super().__init__()
        self.alert = alert
        self.duration = duration

    def compose(self) -> ComposeResult:
        a = self.alert
        with Vertical():
            yield Static(f"[b]Silence policy {escape(a.policy_name or a.policy_id or '')}[/b]\n"
                         f"alert #{a.id} ({a.severity}): {escape(a.message[:140])}\n"
                         "Every alert of this policy stays quiet until the silence ends.", id="question")
            yield Static("For how long (2h, 90m, 1d, 1h30m; at most 7 days)", classes="label")
            yield Input(self.duration, id="duration")
            yield Static("Why (the next shift reads this)", classes="label")
            yield Input("", placeholder="e.g. disk cleanup in progress", id="reason")
            yield Static("", id="problem")
            yield Static("enter to continue, escape to cancel", classes="hint")

    def problem(self) -> str | None:
        try:
            parse_duration(self.query_one("#duration", Input).value)
        except ValueError as exc:
            return str(exc)
        if not self.query_one("#reason", Input).value.strip():
            return "a reason is required"
        return None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        issue = self.problem()
        # the empty reason is only a problem once the operator has moved on to it
        if issue == "a reason is required" and event.input.id == "duration":
            issue = None
        self.query_one("#problem", Static).update(issue or "")

    @on(Input.Submitted, "#duration")
    def _duration_done(self) -> None:
        try:
            parse_duration(self.query_one("#duration", Input).value)
        except ValueError as exc:
            self.query_one("#problem", Static).update(str(exc))
            return
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    def _submitted(self) -> None:
        issue = self.problem()
        if issue:
            self.query_one("#problem", Static).update(issue)
            return
        self.dismiss((parse_duration(self.query_one("#duration", Input).value),
                      self.query_one("#reason", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)
