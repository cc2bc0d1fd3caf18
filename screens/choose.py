"""Pick one of a few options (a stage to reprocess from, a backup type), with the keyboard."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ChoiceScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choose.cancel")]
    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen > Vertical { width: 72; height: auto; max-height: 90%; border: round $primary;
                              background: $panel; padding: 1 2; }
    ChoiceScreen OptionList { height: auto; max-height: 12; margin-top: 1; }
    """

    def __init__(self, question: str, options: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield OptionList(*(Option(label, id=value) for value, label in self.options), id="choices")
            yield Static("enter to choose, escape to cancel", classes="hint")

    @on(OptionList.OptionSelected, "#choices")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
