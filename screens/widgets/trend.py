"""One trend on one line: a label, a sparkline of the last hours and what the numbers are.

A sparkline scales from the series' minimum to its maximum, so the summary beside it
always states the range: a disk going from 62.0 to 62.3 % looks as steep as one
filling up, and only the numbers tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class TrendLine(Horizontal):
    DEFAULT_CSS = """
    TrendLine { height: 1; padding: 0 1; }
    TrendLine > .trend-label { width: 8; color: $text-muted; }
    TrendLine > Sparkline { width: 1fr; margin-right: 1; }
    TrendLine > .trend-summary { width: 38; }
    TrendLine.-empty > Sparkline { display: none; }
    TrendLine.-empty > .trend-summary { width: 1fr; color: $text-muted; }
    """

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="trend-label")
        yield Sparkline([], summary_function=max)
        yield Static("", classes="trend-summary")

    def show(self, values: Sequence[float], summary: str) -> None:
        """Draw ``values`` (oldest first); with fewer than two there is no trend, only the summary."""
        self.set_class(len(values) < 2, "-empty")
        self.query_one(Sparkline).data = list(values)
        self.query_one(".trend-summary", Static).update(summary)

    @property
    def summary(self) -> str:
        return str(self.query_one(".trend-summary", Static).render())

    @property
    def values(self) -> list[float]:
        return list(self.query_one(Sparkline).data or [])
