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

from textual import work
from textual.app import App
from textual.command import Hit, Hits, Provider
from textual.timer import Timer

from engine.logs import ring_buffer
from engine.services import Services
from screens.backups import BackupsScreen
from screens.calibrations import CalibrationsScreen
from screens.data import DataScreen
from screens.health import HealthScreen
from screens.help import HelpScreen
from screens.keymap import action_entries, bindings
from screens.logs import LogsScreen
from screens.queue import QueueScreen
from screens.triggers import TriggersScreen
from screens.widgets.status_line import StatusLine

STYLES = Path(__file__).resolve().parent.parent / "styles" / "app.tcss"


class ActionsProvider(Provider):
    """Command palette entries: every enabled action of the screen it was opened on, and the app's."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in action_entries(self.screen):
            if entry.disabled:
                continue
            text = f"{entry.description}: {entry.tooltip}" if entry.tooltip else entry.description
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(entry.node.run_action, entry.action),
                          help=f"{entry.id} ({entry.key})")


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
        self._summary: dict[str, Any] = {}
        self._summary_timer: Timer | None = None

    def on_mount(self) -> None:
        self._poll_summary()
        if self._keymap:
            self.set_keymap(self._keymap)
        if self._theme_name and self._theme_name in self.available_themes:
            self.theme = self._theme_name
        if self.read_only:
            self.sub_title = "read-only"

    def status(self) -> dict[str, Any]:
        return {**self._summary, **self._status(), "read_only": self.read_only}

    # ---- the status line's database half, polled off the loop, never overlapping --------
    @work(thread=True, exclusive=True, group="summary", description="status line summary")
    def _poll_summary(self) -> None:
        try:
            summary = self.services.console_summary()
        except Exception as exc:  # noqa: BLE001 - a status line must not take the console down
            summary = {"summary_error": str(exc)}
        self.call_from_thread(self._summary_arrived, summary)

    def _summary_arrived(self, summary: dict[str, Any]) -> None:
        self._summary = summary
        for line in self.screen.query(StatusLine):
            line.show_status(self.status())
        if self.refresh_interval:
            self._summary_timer = self.set_timer(self.refresh_interval, self._poll_summary)

    def log_records(self, after_seq: int, limit: int = 500) -> list[dict[str, Any]]:
        return ring_buffer().since(after_seq, limit)

    def action_help(self) -> None:
        rows = [(e.key, e.description, e.id, e.disabled or "") for e in action_entries(self.screen)]
        self.push_screen(HelpScreen(rows))

    def action_refresh_view(self) -> None:
        if self._summary_timer is not None:
            self._summary_timer.stop()
        self._poll_summary()
        refresh = getattr(self.screen, "refresh_data", None)
        if callable(refresh):
            refresh()
