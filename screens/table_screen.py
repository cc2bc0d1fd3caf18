"""Base of the table screens: non-overlapping refresh and diffed rows.

The refresh is a one-shot timer re-armed when a fetch finishes (never
``set_interval``), so a slow database cannot pile up fetches; it pauses while the
screen is suspended. Fetches run in a thread worker and post ``RowsFetched``;
one handler diffs the table by row key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from screens.messages import FetchFailed, RowsFetched
from screens.refresh import RearmedRefresh
from screens.widgets.status_line import StatusLine


class TableScreen(RearmedRefresh, Screen[None]):
    TITLE: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()
    EMPTY: ClassVar[str] = "Nothing here yet."

    DEFAULT_CSS = """
    TableScreen DataTable { height: 1fr; }
    TableScreen .empty { height: auto; padding: 1 2; color: $text-muted; }
    TableScreen .error { height: auto; padding: 0 1; color: $error; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        table: DataTable[Any] = DataTable(id="table", cursor_type="row", zebra_stripes=True)
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("Loading…", id="empty", classes="empty")
        yield Static("", id="error", classes="error")
        yield Footer()

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Rows as (key, cells); runs in a worker thread through ``app.services``."""
        raise NotImplementedError

    # ---- refresh cycle -----------------------------------------------------
    def on_mount(self) -> None:
        self.query_one("#error", Static).display = False
        self.refresh_data()

    def reload(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="refresh", description="fetch table rows")
    def _fetch(self) -> None:
        try:
            rows = self.fetch()
        except Exception as exc:  # noqa: BLE001 - surfaced in the screen
            self.post_message(FetchFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(RowsFetched(rows))

    def _rearm(self) -> None:
        self.status_line.show_status(self.app.status(), self.TITLE)  # type: ignore[attr-defined]
        self.rearm()

    @property
    def status_line(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @on(RowsFetched)
    def _apply(self, message: RowsFetched) -> None:
        table = self.query_one("#table", DataTable)
        keys = [k for k, _ in self.COLUMNS]
        wanted = dict(message.rows)
        existing = {rk.value for rk in table.rows}
        with self.app.batch_update():
            for stale in existing - wanted.keys():
                table.remove_row(stale)
            for key, cells in message.rows:
                if key in existing:
                    for col, value in zip(keys, cells, strict=True):
                        if table.get_cell(key, col) != value:
                            table.update_cell(key, col, value, update_width=True)
                else:
                    table.add_row(*cells, key=key)
            current = [table.get_row_at(i)[0] for i in range(table.row_count)]
            ordered = [cells[0] for _, cells in message.rows]
            if current != ordered:
                # The first column is unique per row (an id), so it can carry the fetch order.
                rank = {value: i for i, value in enumerate(ordered)}
                table.sort(keys[0], key=lambda value: rank.get(value, len(rank)))
        empty = self.query_one("#empty", Static)
        empty.update(self.EMPTY)
        empty.display = not wanted
        table.display = bool(wanted)
        self.query_one("#error", Static).display = False
        self._loaded = True
        self._rearm()

    @on(FetchFailed)
    def _failed(self, message: FetchFailed) -> None:
        err = self.query_one("#error", Static)
        err.update(f"refresh failed: {message.error}")
        err.display = True
        self._rearm()
