"""Test a trigger: would this event data fire it, and which conditions fail? Testing records nothing.

The JSON is prefilled with the latest event of the trigger's type it saw (else an example
shaped like the engine's events), so the operator edits a realistic case. The verdict is
the engine's own (``engine.triggers.test_trigger``). ``ctrl+g`` then really runs the
trigger with that data (asks first), as if the event had happened: conditions apply, and
required parameters such as ``group_id`` come from the data.
"""

from __future__ import annotations

import json
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, TextArea

from screens.trigger_runs import TriggerRuns, q


def parse_event_data(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(data, problem): the text must be one JSON object."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    if not isinstance(data, dict):
        return None, f"event data must be a JSON object ({{...}}), not {type(data).__name__}"
    return data, None


class TriggerTestScreen(TriggerRuns, ModalScreen[None]):
    WRITE_ACTIONS = frozenset({"fire"})
    BINDINGS = [
        Binding("ctrl+t", "run_test", "Test", tooltip="Evaluate the conditions against the JSON above",
                id="trigger_test.run", priority=True),
        Binding("ctrl+g", "fire", "Run with this data", tooltip="Really run the trigger as if this event happened "
                "(asks first)", id="trigger_test.fire", priority=True),
        Binding("escape", "dismiss", "Close", id="trigger_test.close", priority=True),
    ]
    DEFAULT_CSS = """
    TriggerTestScreen { align: center middle; }
    TriggerTestScreen #frame { width: 100%; max-width: 110; height: 1fr; border: round $primary;
                               background: $panel; padding: 0 1; }
    TriggerTestScreen #conditions { height: auto; color: $text-muted; }
    TriggerTestScreen TextArea { height: 1fr; min-height: 5; }
    TriggerTestScreen #result { height: auto; max-height: 8; }
    """

    def __init__(self, trigger_id: str, name: str, event: str, conditions: list[dict[str, Any]]) -> None:
        super().__init__()
        self.trigger_id = trigger_id
        self.trigger_name = name
        self.event = event
        self.conditions = conditions

    def compose(self) -> ComposeResult:
        with Vertical(id="frame"):
            rules = "\n".join(f"  {c['field']} {c['operator']} {c['value']!r}" for c in self.conditions)
            yield Static(escape(f"conditions (all must match):\n{rules}" if rules else
                                f"no conditions: every {self.event} event fires it"), id="conditions")
            yield TextArea("", language="json", id="data", soft_wrap=True)
            yield Static("loading sample event data…", id="result")
        yield Footer()

    def on_mount(self) -> None:
        frame = self.query_one("#frame")
        frame.border_title = escape(f"Test {self.trigger_name!r} with {self.event} event data")
        frame.border_subtitle = "ctrl+t test (records nothing) · ctrl+g run with it · escape close"
        self._load_sample()

    @property
    def _svc(self) -> Any:
        return self.app.services.triggers  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="trigger-test", description="sample event data")
    def _load_sample(self) -> None:
        try:
            text, note = json.dumps(self._svc.sample_event_data(self.trigger_id), indent=2, default=str), None
        except KeyError:
            text, note = "{}", "this trigger no longer exists"
        except Exception as exc:  # noqa: BLE001 - the operator can still type data by hand
            text, note = "{}", f"no sample event data: {type(exc).__name__}: {exc}"
        self.app.call_from_thread(self._sample_loaded, text, note)

    def _sample_loaded(self, text: str, note: str | None) -> None:
        area = self.query_one("#data", TextArea)
        area.load_text(text)
        area.focus()
        self._show(f"[$error]{escape(note)}[/]" if note else "edit the event data, then ctrl+t")

    def action_run_test(self) -> None:
        data, problem = parse_event_data(self.query_one("#data", TextArea).text)
        if problem:
            self._show(f"[$error]{escape(problem)}[/]")
            return
        self._test(data)

    def action_fire(self) -> None:
        data, problem = parse_event_data(self.query_one("#data", TextArea).text)
        if problem:
            self._show(f"[$error]{escape(problem)}[/]")
            return
        self.confirm(f"Run trigger {q(self.trigger_name)} now with this {escape(self.event)} event data? Its "
                     "conditions apply; its pipeline really runs.",
                     lambda: self.fire_trigger(self.trigger_id, self.trigger_name, data))

    def trigger_ran(self, ex: dict[str, Any]) -> None:
        why = ex.get("error_message") or ex.get("skip_reason")
        colour = {"success": "$success", "skipped": "$warning"}.get(ex["status"], "$error")
        text = f"ran: {ex['status']}" + (f", job/backup {ex['job_id']}" if ex.get("job_id") else "")
        self._show(f"[{colour}]{escape(text)}[/]" + (f"\n{escape(why)}" if why else ""))

    @work(thread=True, exclusive=True, group="trigger-test", description="test the trigger")
    def _test(self, data: dict[str, Any]) -> None:
        try:
            verdict = self._svc.test(self.trigger_id, data)
        except KeyError:
            self.app.call_from_thread(self._show, "[$error]this trigger no longer exists[/]")
            return
        except Exception as exc:  # noqa: BLE001 - shown where the operator looks
            self.app.call_from_thread(self._show, f"[$error]test failed: {escape(str(exc))}[/]")
            return
        self.app.call_from_thread(self._verdict, verdict)

    def _verdict(self, v: dict[str, Any]) -> None:
        head = ("[$success][b]✓ would fire[/b][/]" if v["would_trigger"]
                else "[$error][b]✗ would not fire[/b][/]")
        lines = [head + " (conditions only: disabled, cooldown and max running are checked when it fires)"]
        lines += [f"[$success]✓[/] {escape(c)}" for c in v["matched_conditions"]]
        lines += [f"[$error]✗ {escape(c)}[/]" for c in v["failed_conditions"]]
        self._show("\n".join(lines))

    def _show(self, markup: str) -> None:
        self.query_one("#result", Static).update(markup)
