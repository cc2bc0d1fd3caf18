"""Data: the pipeline's products in three views — measurement sets, images and sources.

Each view is a virtualised table (``PagedTable``): only the rows near the screen are
read, by keyset page, so 100,000 sources open as fast as ten. ``m``/``i``/``s`` switch
views, ``/`` filters the one in front, ``o`` sorts the sources (by name, variability,
flux or detections) and enter opens a detail: an image with its preview drawn in the
terminal, a source with its light curve, an MS in short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from engine.services.data import SOURCE_ORDERS, DataWindow
from engine.units import human_bytes
from screens.actions import OperatorActions
from screens.choose import ChoiceScreen
from screens.image_detail import ImageDetailScreen
from screens.ms_detail import MsDetailScreen
from screens.prompt import PromptScreen
from screens.refresh import RearmedRefresh
from screens.source_detail import SourceDetailScreen
from screens.widgets.paged_table import Column, Page, PagedRow, PagedTable
from screens.widgets.status_line import StatusLine


def _n(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def ms_cells(r: Any, ms_dir: Path) -> tuple[str, ...]:
    path = Path(r.path)
    shown = str(path.relative_to(ms_dir)) if path.is_relative_to(ms_dir) else r.path
    flagged = "" if r.flagged_fraction is None else f"{100 * r.flagged_fraction:.1f}%"
    size = "" if r.size_bytes is None else human_bytes(r.size_bytes)
    return (r.group_id, _n(r.n_rows, "d"), _n(r.n_channels, "d"), _n(r.n_antennas, "d"), flagged,
            r.qa_grade or "", size, shown)


def image_cells(r: Any) -> tuple[str, ...]:
    beam = (f"{r.beam_major_arcsec:.1f}×{r.beam_minor_arcsec:.1f}"
            if r.beam_major_arcsec and r.beam_minor_arcsec else "")
    rms = None if r.noise_jy is None else r.noise_jy * 1e3
    return (r.name, r.qa_grade or "", _n(rms, ".2f"), _n(r.peak_flux_jy, ".3f"), _n(r.dynamic_range, ".0f"),
            beam, r.created_at.strftime("%m-%d %H:%M"))


def source_cells(r: Any) -> tuple[str, ...]:
    mean = None if r.mean_flux_jy is None else r.mean_flux_jy * 1e3
    return (r.name or r.id, f"{r.ra_deg:.4f}", f"{r.dec_deg:+.4f}", f"{r.n_detections}/{r.n_images}",
            _n(mean, ".2f"), _n(r.eta, ".2f"), _n(r.v, ".3f"))


@dataclass(frozen=True)
class View:
    key: str
    tab: str
    noun: str
    columns: list[Column]
    empty: str
    filter_help: str
    placeholder: str


VIEWS = {
    "ms": View("ms", "MS (m)", "measurement sets",
               [Column("group", "Group", 19), Column("rows", "Rows", 7), Column("chan", "Chan", 4),
                Column("ant", "Ant", 3), Column("flag", "Flag", 5), Column("qa", "QA", 4),
                Column("size", "Size", 8), Column("path", "MS", 0)],
               "No measurement sets yet. Each group is converted to an MS once its subbands have arrived; "
               "the MS appears here with its shape, flags and QA.",
               "Filter measurement sets: a QA grade (fail, warn, good, none), qa=a,b, an age (6h) or text "
               "in the path. Empty shows all.", "fail 24h"),
    "images": View("images", "Images (i)", "images",
                   [Column("name", "Image", 19), Column("qa", "QA", 4), Column("rms", "RMS mJy", 7),
                    Column("peak", "Peak Jy", 7), Column("dr", "DR", 6), Column("beam", "Beam ″", 11),
                    Column("created", "Created", 0)],
                   "No images yet. Each group is imaged after calibration; products appear here with their QA.",
                   "Filter images: a QA grade (fail, warn, good, none), qa=a,b, an age (6h) or text in the "
                   "name. Empty shows all.", "fail 6h"),
    "sources": View("sources", "Sources (s)", "sources",
                    [Column("name", "Source", 20), Column("ra", "RA °", 9), Column("dec", "Dec °", 9),
                     Column("det", "Det/img", 7), Column("mean", "Mean mJy", 8), Column("eta", "η", 6),
                     Column("v", "V", 0)],
                    "No sources yet. Sources are found in each image and matched into this catalogue; forced "
                    "photometry follows them when they fade.",
                    "Filter sources: text in the name, det>=N (detections), eta>=X, v>=X, flux>=mJy "
                    "(mean). Empty shows all.", "J0834 det>=3"),
}


class DataScreen(OperatorActions, RearmedRefresh, Screen[None]):
    TITLE = "Data"
    DEFAULT_CSS = """
    DataScreen TabbedContent { height: 1fr; }
    DataScreen TabPane { padding: 0; height: 1fr; }
    DataScreen .info { height: 1; padding: 0 1; color: $text-muted; }
    DataScreen .empty { height: auto; padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("m", "view('ms')", "MS", show=False, tooltip="Measurement sets: rows, channels, antennas, "
                "flags, QA, size", id="data.ms"),
        Binding("i", "view('images')", "Images", show=False, tooltip="Images: QA grade, noise, peak, dynamic "
                "range, beam", id="data.images"),
        Binding("s", "view('sources')", "Sources", show=False, tooltip="Sources: position, detections, mean flux, "
                "variability", id="data.sources"),
        Binding("d", "detail", "Detail", tooltip="Open the selected row: an image with its preview, a source "
                "with its light curve, an MS in short (also enter)", id="data.detail"),
        Binding("slash", "filter", "Filter", tooltip="Filter the view in front (QA, age, name; thresholds on "
                "sources)", id="data.filter"),
        Binding("o", "order", "Order", tooltip="Sort the sources by name, variability (η), mean flux or "
                "detections", id="data.order"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view = "images"
        self.filter_text = {key: "" for key in VIEWS}
        self._filters: dict[str, Any] = {key: None for key in VIEWS}
        self.source_order = "name"

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        fetchers: dict[str, Callable[[int, int, Any, Any], Page]] = {
            "ms": self._fetch_ms, "images": self._fetch_images, "sources": self._fetch_sources}
        with TabbedContent(id="views", initial=self.view):
            for key, view in VIEWS.items():
                with TabPane(view.tab, id=key):
                    yield Static("", id=f"info-{key}", classes="info")
                    yield PagedTable(view.columns, fetchers[key], id=f"table-{key}")
                    yield Static("Loading…", id=f"empty-{key}", classes="empty")
        yield Footer()

    def table(self, view: str | None = None) -> PagedTable:
        return self.query_one(f"#table-{view or self.view}", PagedTable)

    # ---- fetches (worker threads) -------------------------------------------------------
    @property
    def _data(self) -> Any:
        return self.app.services.data  # type: ignore[attr-defined]

    @staticmethod
    def _page(win: DataWindow, cells: Callable[[Any], tuple[str, ...]], key: Callable[[Any], str],
              style: Callable[[Any], str]) -> Page:
        return Page(win.offset, [PagedRow(key(r), k, cells(r), style(r)) for r, k in zip(win.rows, win.keys,
                                                                                          strict=True)], win.total)

    def _fetch_ms(self, offset: int, limit: int, after: Any, before: Any) -> Page:
        ms_dir = self.app.services.settings.ms_dir  # type: ignore[attr-defined]
        win = self._data.ms_window(offset, limit, self._filters["ms"], after=after, before=before)
        return self._page(win, lambda r: ms_cells(r, ms_dir), lambda r: r.path,
                          lambda r: "error" if r.qa_grade == "fail" else "")

    def _fetch_images(self, offset: int, limit: int, after: Any, before: Any) -> Page:
        win = self._data.image_window(offset, limit, self._filters["images"], after=after, before=before)
        return self._page(win, image_cells, lambda r: r.id, lambda r: "error" if r.qa_grade == "fail" else "")

    def _fetch_sources(self, offset: int, limit: int, after: Any, before: Any) -> Page:
        win = self._data.source_window(offset, limit, self._filters["sources"], order=self.source_order,
                                       after=after, before=before)
        return self._page(win, source_cells, lambda r: r.id, lambda r: "")

    # ---- refresh: the view in front only, re-armed after each load ------------------------
    def on_mount(self) -> None:
        for key in VIEWS:
            self.query_one(f"#info-{key}", Static).update("Loading…")
        self.table().focus()
        self.refresh_data()

    def reload(self) -> None:
        self.table().reload()

    def _describe(self, view: str, total: int) -> str:
        noun = VIEWS[view].noun
        order = {"ms": "newest group first", "images": "newest first",
                 "sources": SOURCE_ORDERS[self.source_order].label}[view]
        if self.filter_text[view]:
            return f"filter: {self.filter_text[view]} — {total:,} {noun}, {order} (/ to change)"
        keys = "/ filter, o order" if view == "sources" else "/ filter"
        return f"{total:,} {noun}, {order} ({keys}, enter opens)"

    @on(PagedTable.Loaded)
    def _loaded(self, event: PagedTable.Loaded) -> None:
        view = (event.table.id or "").removeprefix("table-")
        if view not in VIEWS:
            return
        empty = self.query_one(f"#empty-{view}", Static)
        empty.update(f"No {VIEWS[view].noun} match the filter “{self.filter_text[view]}”."
                     if self.filter_text[view] else VIEWS[view].empty)
        empty.display = event.total == 0
        event.table.display = event.total > 0
        info = self.query_one(f"#info-{view}", Static)
        info.update(self._describe(view, event.total))
        info.display = event.total > 0 or bool(self.filter_text[view])  # else the empty text says it all
        self.query_one("#status", StatusLine).show_status(self.app.status(), self.TITLE)  # type: ignore[attr-defined]
        if view == self.view:
            self.rearm()

    # ---- views ----------------------------------------------------------------------------
    def action_view(self, view: str) -> None:
        self.query_one("#views", TabbedContent).active = view

    @on(TabbedContent.TabActivated, "#views")
    def _view_changed(self, event: TabbedContent.TabActivated) -> None:
        view = event.pane.id or "images"
        if view == self.view and self.table(view).loaded_once:
            return
        self.view = view
        self.table().focus()
        self.refresh_bindings()
        self.refresh_data()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "order" and self.view != "sources":
            return None
        return super().check_action(action, parameters)

    def disabled_reason(self, action: str) -> str | None:
        if action == "order" and self.view != "sources":
            return "only the sources can be sorted another way (s shows them)"
        return super().disabled_reason(action)

    # ---- details ----------------------------------------------------------------------------
    def _open(self, view: str, key: str) -> None:
        if view == "images":
            self.app.push_screen(ImageDetailScreen(key))
        elif view == "sources":
            self.app.push_screen(SourceDetailScreen(key))
        else:
            self.app.push_screen(MsDetailScreen(key))

    @on(PagedTable.RowSelected)
    def _row_selected(self, event: PagedTable.RowSelected) -> None:
        self._open((event.table.id or "").removeprefix("table-"), event.row.key)

    def action_detail(self) -> None:
        row = self.table().cursor_row()
        if row is not None:
            self._open(self.view, row.key)

    # ---- filter and order ---------------------------------------------------------------------
    def _restart(self, view: str) -> None:
        table = self.table(view)
        table.cursor = 0
        table.scroll_to(y=0, animate=False, immediate=True)
        self.refresh_data()

    def action_filter(self) -> None:
        view = self.view
        data = self._data

        def problem(text: str) -> str | None:
            try:
                data.parse_filter(view, text)
            except Exception as exc:  # noqa: BLE001 - the parser's message names the term
                return str(exc)
            return None

        def apply(text: str | None) -> None:
            if text is None:
                return
            self.filter_text[view] = text
            self._filters[view] = data.parse_filter(view, text)
            self._restart(view)

        self.app.push_screen(PromptScreen(VIEWS[view].filter_help, value=self.filter_text[view], validate=problem,
                                          required=False, placeholder=VIEWS[view].placeholder), apply)

    def action_order(self) -> None:
        def chosen(order: str | None) -> None:
            if order is not None and order != self.source_order:
                self.source_order = order
                self._restart("sources")

        options = [(key, ("● " if key == self.source_order else "  ") + o.label) for key, o in SOURCE_ORDERS.items()]
        self.app.push_screen(ChoiceScreen("Sort the sources:", options), chosen)
