"""Help: every action with a key in force on the screen it was opened from, and why any is disabled."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 100%; max-width: 110; height: auto; max-height: 90%; border: round $primary; background: $panel; }
    HelpScreen DataTable { height: auto; max-height: 18; }
    """

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Keys[/b]  (remap in config: [tui.keymap] \"id\" = \"key\")")
            table: DataTable[str] = DataTable(cursor_type="none")
            table.add_columns("Key", "Action", "Id", "Disabled because")
            table.add_rows(self.rows)
            yield table
            yield Static("escape to close", classes="hint")
