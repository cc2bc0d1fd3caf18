"""One source in detail: where it is, how often it was seen, how variable it is, and its light curve.

Opened from the Data screen's sources (enter or ``d``). The light curve is the
source's photometry as the REST API serves it (``Products.get_source``): detections
and forced measurements (the flux at the known position in an image where the source
finder did not find it) are drawn in different colours and markers, each with its
error bar. ``t`` switches to the measurements as a table; enter there opens the image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from astropy import units as u
from astropy.coordinates import Angle
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ContentSwitcher, DataTable, Footer, Static
from textual_plotext import PlotextPlot

from screens.image_detail import ImageDetailScreen, num


def sexagesimal(ra_deg: float, dec_deg: float) -> str:
    ra = Angle(ra_deg * u.deg).to_string(unit=u.hourangle, sep="hms", precision=1, pad=True)
    dec = Angle(dec_deg * u.deg).to_string(unit=u.deg, sep="dms", precision=0, alwayssign=True, pad=True)
    return f"{ra} {dec}"


def mjy(jy: float | None, fmt: str = ".2f") -> str:
    return "—" if jy is None else format(jy * 1e3, fmt)


def curve_origin(mjds: list[float]) -> int:
    """The whole MJD the plot's x axis counts days from (days since it read better than 61008.0417)."""
    return math.floor(min(mjds)) if mjds else 0


class SourceDetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="source.close"),
        Binding("t", "toggle_view", "Plot/table", tooltip="Switch between the light curve and its measurements",
                id="source.toggle"),
        Binding("i", "latest_image", "Latest image", tooltip="Open the newest image that measured this source",
                id="source.image"),
    ]
    DEFAULT_CSS = """
    SourceDetailScreen { background: $background 60%; }
    SourceDetailScreen > Vertical { background: $panel; }
    SourceDetailScreen #title { height: auto; padding: 0 1; background: $primary-background; }
    SourceDetailScreen #facts { height: auto; padding: 0 1; }
    SourceDetailScreen ContentSwitcher { height: 1fr; }
    SourceDetailScreen PlotextPlot { height: 1fr; }
    SourceDetailScreen #points { height: 1fr; }
    SourceDetailScreen #legend { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, source_id: str) -> None:
        super().__init__()
        self.source_id = source_id
        self.detail: Any = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"source {self.source_id}: loading…  (escape to close)", id="title")
            yield Static("", id="facts")
            with ContentSwitcher(initial="curve"):
                with Vertical(id="curve"):
                    yield PlotextPlot(id="plot")
                    yield Static("", id="legend")
                points: DataTable[Any] = DataTable(id="points", cursor_type="row", zebra_stripes=True)
                for label in ("MJD", "Flux mJy", "± mJy", "Kind", "SNR", "QA", "Image"):
                    points.add_column(label)
                yield points
            yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="source-detail", description="read source and light curve")
    def _load(self) -> None:
        try:
            detail = self.app.services.data.source_detail(self.source_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._title, f"source {self.source_id}: cannot read it: {exc}")
            return
        self.app.call_from_thread(self._show, detail)

    def _title(self, text: str) -> None:
        self.query_one("#title", Static).update(escape(text))

    def _show(self, d: Any) -> None:
        self.detail = d
        if d is None:
            self._title(f"source {self.source_id}: no longer in the catalogue")
            return
        self.query_one("#title", Static).update(
            f"[b]{escape(d.name or d.id)}[/b] · {sexagesimal(d.ra_deg, d.dec_deg)} · "
            f"RA {d.ra_deg:.5f}° Dec {d.dec_deg:+.5f}°")
        forced = sum(1 for p in d.light_curve if p.forced)
        seen = ("never detected" if not d.first_detected_at else
                f"detected {d.first_detected_at:%Y-%m-%d} → {d.last_detected_at:%Y-%m-%d}")
        self.query_one("#facts", Static).update(
            f"{d.n_detections} detections in {d.n_images} images ({forced} forced) · {seen}\n"
            f"mean {mjy(d.mean_flux_jy)} mJy, peak {mjy(d.peak_flux_jy)} mJy · η {num(d.eta, '.2f')} · "
            f"V {num(d.v, '.3f')} · χ²ν {num(d.chi2_nu, '.2f')} · m {num(d.modulation_index, '.3f')}")
        self._plot(d)
        table = self.query_one("#points", DataTable)
        table.clear()
        for i, p in enumerate(reversed(d.light_curve)):
            table.add_row(f"{p.mjd:.5f}", mjy(p.flux_jy, ".3f"), mjy(p.flux_error_jy, ".3f"),
                          "forced" if p.forced else "detected", num(p.snr, ".1f"), p.qa_grade or "—",
                          Path(p.image_path).name.removesuffix("-image.fits"), key=f"{i}:{p.image_id}")

    def _theme_rgb(self, name: str) -> tuple[int, int, int]:
        return Color.parse(self.app.theme_variables[name]).rgb

    def _plot(self, d: Any) -> None:
        plot = self.query_one("#plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        points = [p for p in d.light_curve if p.flux_jy is not None]
        legend = self.query_one("#legend", Static)
        if not points:
            plt.title("no flux measurements yet")
            legend.update("")
            plot.refresh()
            return
        origin = curve_origin([p.mjd for p in points])
        plt.xlabel(f"MJD − {origin}")
        plt.ylabel("mJy")
        shown = []
        for forced, colour, marker, label in ((False, "primary", "●", "detected"),
                                              (True, "warning", "○", "forced")):
            sel = [p for p in points if p.forced is forced]
            if not sel:
                continue
            x = [p.mjd - origin for p in sel]
            y = [p.flux_jy * 1e3 for p in sel]
            # plotext draws y ± yerr/2: twice the 1σ error gives a bar of ±1σ
            bars = [2 * (p.flux_error_jy or 0.0) * 1e3 for p in sel]
            rgb = self._theme_rgb(colour)
            plt.error(x, y, yerr=bars, color=rgb)
            plt.scatter(x, y, marker=marker, color=rgb)
            shown.append(f"[${colour}]{marker}[/] {label} ({len(sel)})")
        legend.update("  ".join(shown) + " · bars ±1σ · newest at the right")
        plot.refresh()

    # ---- actions ------------------------------------------------------------------------
    def action_toggle_view(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        switcher.current = "points" if switcher.current == "curve" else "curve"
        if switcher.current == "points":
            self.query_one("#points", DataTable).focus()

    def action_latest_image(self) -> None:
        if self.detail is None:
            return
        image_id = self.detail.latest_image_id or (self.detail.light_curve[-1].image_id
                                                   if self.detail.light_curve else None)
        if image_id:
            self.app.push_screen(ImageDetailScreen(image_id))
        else:
            self.notify("no image has measured this source", severity="warning")

    @on(DataTable.RowSelected, "#points")
    def _open_image(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        self.app.push_screen(ImageDetailScreen(key.split(":", 1)[1]))
