"""A table that holds only the rows near the screen: 100,000 jobs or sources stay instant.

A line-API ``ScrollView`` (toolong's way): its virtual height is the row count, and
``render_line`` draws a row from a page cache. Missing pages are read in a thread
worker by a ``fetch`` function the screen gives it; a page next to one already held
is read by keyset (``after``/``before`` = the neighbouring row's sort key), a jump
by offset. ``reload`` (the screen's refresh tick) re-reads the pages on screen by
offset and drops the rest, so new rows at the top shift everything correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

PAGE = 100


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # cells; the last column takes what is left
    hide_below: int = 0  # table widths under this hide the column (80 columns keep what matters)


@dataclass(frozen=True)
class PagedRow:
    key: str
    sort: Any  # the keyset position (e.g. (group_time, id)); passed back as after/before
    cells: tuple[str, ...]
    style: str = ""  # an extra component class: "error", "active"
    data: Any = None  # the service's row behind the cells (actions read it, not the rendered text)


@dataclass(frozen=True)
class Page:
    offset: int
    rows: list[PagedRow]
    total: int


#: fetch(offset, limit, after, before) -> Page, run in a worker thread. With ``after`` or
#: ``before`` (a keyset continuation) the page's ``total`` may be -1: "unchanged".
Fetch = Callable[[int, int, Any, Any], Page]


class PagedTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"paged-table--header", "paged-table--cursor", "paged-table--odd",
                         "paged-table--pending", "paged-table--error", "paged-table--active"}
    DEFAULT_CSS = """
    PagedTable { height: 1fr; background: $surface; }
    PagedTable > .paged-table--header { background: $panel; color: $text; text-style: bold; }
    PagedTable > .paged-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                        text-style: $block-cursor-text-style; }
    PagedTable:blur > .paged-table--cursor { background: $block-cursor-blurred-background; }
    PagedTable > .paged-table--odd { background: $surface-lighten-1; }
    PagedTable > .paged-table--pending { color: $text-muted; }
    PagedTable > .paged-table--error { color: $text-error; }
    PagedTable > .paged-table--active { color: $text-accent; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.pageup"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.pagedown"),
        Binding("home", "edge(0)", "First row", show=False, id="table.first"),
        Binding("end", "edge(1)", "Last row", show=False, id="table.last"),
        Binding("enter", "select", "Open", show=False, id="table.open"),
    ]

    class RowSelected(Message):
        def __init__(self, table: PagedTable, row: PagedRow) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> PagedTable:
            return self.table

    class Loaded(Message):
        """A page arrived (the screen may update counts or an empty-state text)."""

        def __init__(self, table: PagedTable, total: int) -> None:
            super().__init__()
            self.table = table
            self.total = total

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(self, columns: list[Column], fetch: Fetch, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = columns
        self.fetch = fetch
        self.total = 0
        self.cursor = 0
        self.loaded_once = False
        self._rows: dict[int, PagedRow] = {}
        self._wanted: set[int] = set()
        self._generation = 0
        self.error: str | None = None

    # ---- data ---------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Whether rows on screen are still being read (a prefetch beyond the screen does not count)."""
        return not self.loaded_once or any(self._row(i) is None for i in self._visible_range())

    def _row(self, index: int) -> PagedRow | None:
        return self._rows.get(index)

    def cursor_row(self) -> PagedRow | None:
        return self._row(self.cursor)

    def reload(self) -> None:
        """Re-read the rows on screen by offset (new rows may have arrived at the top)."""
        self._generation += 1
        visible = self._visible_range()
        first = visible.start // PAGE
        last = max(first, (visible.stop - 1) // PAGE)
        self._wanted = set(range(first, last + 1))
        self._start(reset=True)

    def _request(self, page: int) -> None:
        if page < 0 or (self.loaded_once and page * PAGE >= max(self.total, 1)):
            return
        if page not in self._wanted:
            self._wanted.add(page)
            self._start(reset=False)

    def _start(self, reset: bool) -> None:
        """Plan on the loop (the cache is only touched here), read in a thread."""
        pages = sorted(self._wanted, key=lambda p: abs(p * PAGE - self.cursor))
        anchors = {} if reset else {i: r.sort for i, r in self._rows.items()
                                    if i % PAGE in (0, PAGE - 1)}
        self._load(self._generation, reset, pages, anchors)

    @work(thread=True, exclusive=True, group="paged-table", description="read table rows")
    def _load(self, generation: int, reset: bool, pages: list[int], anchors: dict[int, Any]) -> None:
        fetched: list[Page] = []
        for page in pages:
            offset = page * PAGE
            after = anchors.get(offset - 1)
            before = anchors.get(offset + PAGE) if after is None else None
            try:
                result = self.fetch(offset, PAGE, after, before)
            except Exception as exc:  # noqa: BLE001 - shown in the table, retried on the next reload
                self.app.call_from_thread(self._failed, generation, f"{type(exc).__name__}: {exc}")
                return
            fetched.append(result)
            if result.rows:
                anchors[result.offset] = result.rows[0].sort
                anchors[result.offset + len(result.rows) - 1] = result.rows[-1].sort
        self.app.call_from_thread(self._store, generation, reset, fetched)

    def _failed(self, generation: int, error: str) -> None:
        if generation == self._generation:
            self.error = error
            self._wanted.clear()
            self.refresh()

    def _store(self, generation: int, reset: bool, pages: list[Page]) -> None:
        if generation != self._generation:
            return
        if reset:
            self._rows.clear()
        for page in pages:
            self._wanted.discard(page.offset // PAGE)
            for i, row in enumerate(page.rows):
                self._rows[page.offset + i] = row
            if page.total >= 0:  # a keyset continuation does not count again
                self.total = page.total
        self.error = None
        self.loaded_once = True
        self.virtual_size = Size(self.size.width, self.total + 1)
        if self.total and self.cursor >= self.total:
            self.cursor = self.total - 1
        self._trim()
        self.refresh()
        self.post_message(self.Loaded(self, self.total))
        if self._wanted:
            self._start(reset=False)

    def _trim(self) -> None:
        """Keep the pages near the screen and the cursor only (memory stays flat)."""
        keep = {self.cursor // PAGE, *(i // PAGE for i in self._visible_range())}
        keep |= {p + d for p in keep for d in (-1, 1)}
        for index in [i for i in self._rows if i // PAGE not in keep]:
            del self._rows[index]

    # ---- geometry -----------------------------------------------------------------
    @property
    def body_height(self) -> int:
        return max(1, self.size.height - 1)

    def _visible_range(self) -> range:
        top = int(self.scroll_offset.y)
        return range(top, min(max(self.total, 1), top + self.body_height))

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total + 1)

    # ---- drawing ------------------------------------------------------------------
    def _widths(self, width: int) -> list[int]:
        """Cell width per column, 0 for a column hidden at this width."""
        fixed = [c.width if width >= c.hide_below else 0 for c in self.columns[:-1]]
        shown = sum(1 for w in fixed if w)
        return fixed + [max(4, width - sum(fixed) - shown)]

    def _strip(self, cells: tuple[str, ...], style: Style, width: int) -> Strip:
        widths = self._widths(width)
        if len(cells) < len(widths):  # a message row (pending, error): one cell across the table
            text = " ".join(str(c) for c in cells)
        else:
            text = " ".join(set_cell_size(str(cell), w) for cell, w in zip(cells, widths, strict=False) if w)
        return Strip([Segment(set_cell_size(text, width), style)], width)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            return self._strip(tuple(c.label for c in self.columns), base + self.get_component_rich_style(
                "paged-table--header"), width)
        index = int(self.scroll_offset.y) + y - 1
        if index >= self.total:
            if index == 0 and self.error:
                return self._strip((f"could not read rows: {self.error}",), base + self.get_component_rich_style(
                    "paged-table--error"), width)
            return Strip.blank(width, base)
        row = self._row(index)
        if row is None:
            self._request(index // PAGE)
            return self._strip(("…",), base + self.get_component_rich_style("paged-table--pending"), width)
        style = base
        if index % 2:
            style += self.get_component_rich_style("paged-table--odd")
        if row.style:
            style += self.get_component_rich_style(f"paged-table--{row.style}")
        if index == self.cursor:
            style += self.get_component_rich_style("paged-table--cursor")
        return self._strip(row.cells, style, width)

    # ---- navigation ---------------------------------------------------------------
    def move_cursor(self, index: int) -> None:
        if not self.total:
            return
        self.cursor = max(0, min(self.total - 1, index))
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self.body_height:
            self.scroll_to(y=self.cursor - self.body_height + 1, animate=False, immediate=True)
        page = self.cursor // PAGE
        for p in (page, page + 1 if self.cursor % PAGE > PAGE // 2 else page - 1):
            if not all(i in self._rows for i in range(p * PAGE, min(self.total, (p + 1) * PAGE))):
                self._request(p)  # prefetch the neighbouring page before the cursor gets there
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.scroll_to(y=int(self.scroll_offset.y) + direction * self.body_height, animate=False, immediate=True)
        self.move_cursor(self.cursor + direction * self.body_height)

    def action_edge(self, end: int) -> None:
        self.move_cursor(self.total - 1 if end else 0)

    def action_select(self) -> None:
        row = self.cursor_row()
        if row is not None:
            self.post_message(self.RowSelected(self, row))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            index = int(self.scroll_offset.y) + event.y - 1
            if index < self.total:
                if index == self.cursor and event.chain > 1:
                    self.action_select()
                self.move_cursor(index)
