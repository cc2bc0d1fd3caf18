"""The Health screen's trends with axes: disk use, queue depth and jobs finished per hour by stage.

Opened with ``t`` from Health, on the data the Health screen already fetched (no
second read). The x axis is hours before now (UTC at the top), so "when did the
disk jump?" has an answer; the notes under each plot say where the numbers come from.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from engine.services.health import Trends
from engine.units import human_bytes


class TrendsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="trends.close", tooltip="Back to Health")]
    DEFAULT_CSS = """
    TrendsScreen { align: center middle; }
    TrendsScreen > Vertical { width: 100%; height: 100%; border: round $primary; background: $panel; }
    TrendsScreen #trends-title { height: 1; padding: 0 1; }
    TrendsScreen TabbedContent { height: 1fr; }
    TrendsScreen TabPane { padding: 0; }
    TrendsScreen PlotextPlot { height: 1fr; }
    TrendsScreen .note { height: auto; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, trends: Trends) -> None:
        super().__init__()
        self.trends = trends

    def compose(self) -> ComposeResult:
        t = self.trends
        with Vertical():
            yield Static(f"[b]Trends[/b], {t.hours} h to {t.bucket_ends[-1]:%m-%d %H:%M} UTC · ←/→ tabs · "
                         "escape closes", id="trends-title")
            with TabbedContent(initial="tab-disk"):
                with TabPane("Disk", id="tab-disk"):
                    yield PlotextPlot(id="plot-disk")
                    yield Static(self._disk_note(), classes="note", id="note-disk")
                with TabPane("Queue", id="tab-queue"):
                    yield PlotextPlot(id="plot-queue")
                    yield Static("Jobs waiting at each hour, reconstructed from job creation and start times "
                                 "(a retried job counts as waiting until its last start); the last point is the "
                                 "live count.", classes="note")
                with TabPane("Throughput", id="tab-throughput"):
                    yield PlotextPlot(id="plot-throughput")
                    yield Static(self._throughput_note(), classes="note", id="note-throughput")

    def _hours_ago(self, times: list) -> list[float]:
        end = self.trends.bucket_ends[-1]
        return [(x - end).total_seconds() / 3600 for x in times]

    def _disk_note(self) -> str:
        t = self.trends
        if len(t.disk_percent) < 2:
            return ("No disk history yet: the running console samples disk use every hour "
                    "(a read-only console does not).")
        full = f", full in {t.disk_days_until_full:.0f} days at this rate" if t.disk_days_until_full else ""
        return (f"{len(t.disk_percent) - 1} hourly samples and the reading now: {t.disk_percent[-1]:.1f}% used, "
                f"{human_bytes(t.disk_free_bytes)} free; growth {human_bytes(t.disk_growth_bytes_per_day)}/day{full}.")

    def _throughput_note(self) -> str:
        t = self.trends
        total = ", ".join(f"{stage} {sum(v)}" for stage, v in t.finished_by_stage.items()) or "none"
        last = ", ".join(f"{stage} {v[-1]}" for stage, v in t.finished_by_stage.items() if v[-1]) or "none"
        return (f"Jobs that succeeded per hour. By stage in {t.hours} h: {total}; in the last hour: {last}. "
                f"{sum(t.failed)} failed in {t.hours} h.")

    def on_mount(self) -> None:
        t = self.trends
        hours = self._hours_ago(t.bucket_ends)
        disk = self.query_one("#plot-disk", PlotextPlot).plt
        disk.title("Data disk, % used")
        disk.xlabel("hours before now")
        if len(t.disk_percent) >= 2:
            disk.plot(self._hours_ago(t.disk_times), t.disk_percent, marker="braille")
        queue = self.query_one("#plot-queue", PlotextPlot).plt
        queue.title("Queue depth (jobs waiting)")
        queue.xlabel("hours before now")
        queue.bar(hours, t.queue_depth, width=0.6)
        _integer_ticks(queue, max(t.queue_depth))
        through = self.query_one("#plot-throughput", PlotextPlot).plt
        through.title("Jobs succeeded per hour (all stages)")
        through.xlabel("hours before now")
        # one bar per hour (plotext's stacked bars draw stray blocks at zero); the stages are in the note
        through.bar(hours, t.finished, width=0.6)
        _integer_ticks(through, max(t.finished, default=0))
        for plot in (disk, queue, through):
            plot.xticks([-24, -18, -12, -6, 0], ["-24", "-18", "-12", "-6", "now"])


def _integer_ticks(plt: object, top: float) -> None:
    """Counts get whole-number ticks (plotext would label a 0-3 axis 0.00, 0.50, ...)."""
    step = max(1, math.ceil(top / 5))
    ticks = list(range(0, int(top) + step + 1, step))
    plt.yticks(ticks, [str(x) for x in ticks])  # type: ignore[attr-defined]
