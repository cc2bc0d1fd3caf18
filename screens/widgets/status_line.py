"""The header line: engine, scheduler and REST status, refreshed by the app."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    def show_status(self, status: dict[str, Any], title: str) -> None:
        rest = str(status.get("rest", "?")).removeprefix("http://")
        parts = [f"[b]{title}[/b]",
                 f"engine {status.get('engine', '?')}",
                 f"sched {status.get('scheduler', '?')}",
                 f"REST {rest}"]
        if status.get("read_only"):
            parts.append("[b]READ-ONLY[/b]")
        if status.get("demo"):
            parts.append("[b]DEMO[/b]")
        self.update(" │ ".join(parts))
