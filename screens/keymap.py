"""One registry of console actions: stable ids feed the bindings, the help screen and the palette.

Operators remap keys in config (``[tui.keymap]`` ``"mode.queue" = "f2"``). Defaults avoid
keys that tmux, VS Code and macOS take (ctrl+a, ctrl+j, f1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.binding import Binding


@dataclass(frozen=True)
class ActionSpec:
    id: str
    key: str
    action: str
    description: str
    tooltip: str
    show: bool = True


APP_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("mode.queue", "1", "switch_mode('queue')", "Queue", "Observation groups and their processing state"),
    ActionSpec("mode.calibrations", "2", "switch_mode('calibrations')", "Calibrations",
               "Calibration sets, validity windows and QA"),
    ActionSpec("mode.triggers", "3", "switch_mode('triggers')", "Triggers", "Scheduled and event triggers"),
    ActionSpec("mode.backups", "4", "switch_mode('backups')", "Backups", "Backup history and validation"),
    ActionSpec("mode.data", "5", "switch_mode('data')", "Data", "Measurement sets, images and sources"),
    ActionSpec("mode.health", "6", "switch_mode('health')", "Health", "Services, disk, calibration age, alerts"),
    ActionSpec("mode.logs", "7", "switch_mode('logs')", "Logs", "Live log of this process"),
    ActionSpec("app.help", "question_mark", "help", "Help", "List every key binding"),
    ActionSpec("app.refresh", "r", "refresh_view", "Refresh", "Refresh the current view now"),
    ActionSpec("app.quit", "ctrl+q", "quit", "Quit", "Stop the console (and its services)"),
)


def bindings() -> list[Binding]:
    return [Binding(a.key, a.action, a.description, show=a.show, tooltip=a.tooltip, id=a.id) for a in APP_ACTIONS]


@dataclass(frozen=True)
class ActionEntry:
    """One action as help and the palette show it: the key in force, its id, and why it is disabled."""

    key: str
    description: str
    id: str
    tooltip: str
    action: str
    node: Any
    disabled: str | None


def action_entries(screen: Any) -> list[ActionEntry]:
    """Every binding with an id active on ``screen`` (its own first, then the app's), keys as remapped."""
    out: list[ActionEntry] = []
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        b = active.binding
        if not b.id or b.id in seen:
            continue
        seen.add(b.id)
        action = b.action.split("(", 1)[0]
        reason = None
        if not active.enabled:
            explain = getattr(active.node, "disabled_reason", None)
            reason = (explain(action) if callable(explain) else None) or "not available here"
        out.append(ActionEntry(_display_key(key), b.description, b.id, b.tooltip, b.action, active.node, reason))
    out.sort(key=lambda e: (e.node is screen.app, e.id))
    return out


def _display_key(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "⏎"}.get(key, key)
