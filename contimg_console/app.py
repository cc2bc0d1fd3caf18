"""The Textual App: a thin shell holding services, status, keymap and the command palette.

Each screen holds its own layout and handlers (``screens/``); the App only knows
how to reach the pipeline (``services``), what the runtime is doing (``status``)
and which keys do what.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App
from textual.command import Hit, Hits, Provider

from engine.logs import ring_buffer
from engine.services import Services
from screens.backups import BackupsScreen
from screens.calibrations import CalibrationsScreen
from screens.data import DataScreen
from screens.health import HealthScreen
from screens.help import HelpScreen
from screens.keymap import APP_ACTIONS, bindings
from screens.logs import LogsScreen
from screens.queue import QueueScreen
from screens.table_screen import TableScreen
from screens.triggers import TriggersScreen

STYLES = Path(__file__).resolve().parent.parent / "styles" / "app.tcss"


class ActionsProvider(Provider):
    """Command palette entries from the action registry."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in APP_ACTIONS:
            text = f"{spec.description}: {spec.tooltip}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.app.run_action, spec.action), help=spec.id)


class ContimgApp(App[None]):
    TITLE = "contimg"
    CSS_PATH = str(STYLES)
    MODES = {
        "queue": QueueScreen,
        "calibrations": CalibrationsScreen,
        "triggers": TriggersScreen,
        "backups": BackupsScreen,
        "data": DataScreen,
        "health": HealthScreen,
        "logs": LogsScreen,
    }
    DEFAULT_MODE = "queue"
    BINDINGS = bindings()
    COMMANDS = App.COMMANDS | {ActionsProvider}

    def __init__(self, services: Services, *, status: Callable[[], dict[str, Any]], refresh_interval: float = 2.0,
                 read_only: bool = False, keymap: dict[str, str] | None = None, theme: str | None = None) -> None:
        super().__init__()
        self.services = services
        self._status = status
        self.refresh_interval = refresh_interval
        self.read_only = read_only
        self._keymap = dict(keymap or {})
        self._theme_name = theme

    def on_mount(self) -> None:
        if self._keymap:
            self.set_keymap(self._keymap)
        if self._theme_name and self._theme_name in self.available_themes:
            self.theme = self._theme_name
        if self.read_only:
            self.sub_title = "read-only"

    def status(self) -> dict[str, Any]:
        return {**self._status(), "read_only": self.read_only}

    def log_records(self, after_seq: int) -> list[dict[str, Any]]:
        return ring_buffer().since(after_seq)

    def action_help(self) -> None:
        rows = []
        for spec in APP_ACTIONS:
            key = self._keymap.get(spec.id, spec.key)
            rows.append((key.replace("question_mark", "?"), spec.description, spec.id))
        self.push_screen(HelpScreen(rows))

    def action_refresh_view(self) -> None:
        screen = self.screen
        if isinstance(screen, (TableScreen, LogsScreen)):
            screen.refresh_data()
