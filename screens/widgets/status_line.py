"""The header line: engine, leases, calibration age, scheduler and REST, refreshed by the app."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static


def _age(hours: float | None) -> str:
    if hours is None:
        return "cal none"
    return f"cal {hours * 60:.0f} min" if hours < 1 else f"cal {hours:.1f} h"


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine {
        height: auto;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    title: str = ""
    parts: tuple[str, ...] = ()

    def show_status(self, status: dict[str, Any], title: str | None = None) -> None:
        if title is not None:
            self.title = title
        rest = str(status.get("rest", "?")).removeprefix("http://")
        engine = str(status.get("engine", "?"))
        if status.get("paused") and not engine.startswith("paused"):
            engine = "paused"
        parts = [f"[b]{self.title}[/b]", f"engine {engine}"]
        if "leases" in status:
            leases = f"leases {status['leases']}"
            if status.get("stale_leases"):
                leases += f" ({status['stale_leases']} expired)"
            parts += [leases, f"queued {status.get('queued_jobs', 0)}", _age(status.get("cal_age_h"))]
        rep = status.get("reprocess") or {}
        if rep.get("queued") or rep.get("running"):  # the archive drains below live data
            parts.append(f"reprocess {rep.get('running', 0)} running, {rep.get('queued', 0)} queued, "
                         f"{rep.get('succeeded', 0)} done")
        parts += [f"sched {status.get('scheduler', '?')}", f"REST {rest}"]
        if status.get("startup_recovery"):  # the start-up after a crash says what it found
            parts.append(f"[b]start-up: {status['startup_recovery']}[/b]")
        if status.get("read_only"):
            parts.append("[b]READ-ONLY[/b]")
        if status.get("demo"):
            parts.append("[b]DEMO[/b]")
        self.parts = tuple(parts)
        self._render_parts()

    def on_resize(self) -> None:
        self._render_parts()

    def _render_parts(self) -> None:
        """Parts packed into as few lines as the width allows, broken only between parts (80 columns: two)."""
        from rich.text import Text

        width = max(20, self.size.width - 2) if self.size.width else 10_000
        lines: list[str] = []
        for part in self.parts:
            if lines and Text.from_markup(lines[-1] + " │ " + part).cell_len <= width:
                lines[-1] += " │ " + part
            else:
                lines.append(part)
        self.update("\n".join(lines))
