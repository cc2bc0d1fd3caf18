"""Ask the operator for one line of text (a reason, a priority, a filter), validated as they type."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

#: Returns the problem with the text, or None when it is acceptable.
Validator = Callable[[str], str | None]


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 72; height: auto; border: round $primary; background: $panel; padding: 1 2; }
    PromptScreen #problem { color: $error; height: auto; }
    """

    def __init__(self, question: str, *, value: str = "", placeholder: str = "",
                 validate: Validator | None = None, required: bool = True) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder
        self.validate = validate
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield Input(self.value, placeholder=self.placeholder, id="answer")
            yield Static("", id="problem")
            yield Static("enter to accept, escape to cancel", classes="hint")

    def problem(self, text: str) -> str | None:
        if self.required and not text.strip():
            return "required"
        return self.validate(text) if self.validate else None

    @on(Input.Changed, "#answer")
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#problem", Static).update(self.problem(event.value) or "")

    @on(Input.Submitted, "#answer")
    def _submitted(self, event: Input.Submitted) -> None:
        issue = self.problem(event.value)
        if issue:
            self.query_one("#problem", Static).update(issue)
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
