"""Calibrations: registered sets, their validity windows, QA and status, and the operator's hand on them.

The table keeps to what fits 80 columns (name, status, QA, SNR, age, Dec first); the
line under it spells out the highlighted set in full — calibrator, solve time and
validity window in UTC and MJD, and why it has the status it has.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from screens.calibration_detail import CalibrationDetailScreen
from screens.calibration_forms import CalibrationActions, SetRef, WhichSetScreen
from screens.messages import RowsFetched
from screens.table_screen import TableScreen


def age(hours: float) -> str:
    if hours < 0:
        return f"in {-hours:.1f} h" if hours > -48 else f"in {-hours / 24:.1f} d"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def _t(t: Any) -> str:
    return t.strftime("%m-%d %H:%M")


class CalibrationsScreen(CalibrationActions, TableScreen):
    TITLE = "Calibrations"
    COLUMNS = (("name", "Set"), ("status", "Status"), ("qa", "QA"), ("snr", "SNR"), ("age", "Age"),
               ("dec", "Dec°"), ("cal", "Calibrator"), ("window", "Valid (UTC)"))
    EMPTY = "No calibration sets registered yet. A calibrator transit is solved and registered here."
    BINDINGS = [
        Binding("d", "detail", "Detail", tooltip="Gains, bandpass, QA against thresholds, validity and use of the "
                "selected set (also enter)", id="calibrations.detail"),
        Binding("w", "which_set", "Which set?", tooltip="Ask the registry which set a target at a time and Dec "
                "would use, and why", id="calibrations.which"),
        *CalibrationActions.ACTION_BINDINGS,
    ]
    DEFAULT_CSS = """
    CalibrationsScreen #row-info { height: auto; max-height: 4; padding: 0 1; background: $panel;
                                   color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, Any] = {}
        self._fetched: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Static("", id="row-info")

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.calibrations.list_sets()  # type: ignore[attr-defined]
        self._fetched = {str(r.id): r for r in rows}   # one assignment: read on the loop with its message
        return [(str(r.id), (r.name, r.status, "pass" if r.qa_passed else "FAIL",
                             "—" if r.snr is None else f"{r.snr:.0f}", age(r.age_h), f"{r.dec_deg:+.2f}",
                             r.calibrator, f"{_t(r.valid_start_utc)}→{_t(r.valid_end_utc)}")) for r in rows]

    @on(RowsFetched)
    def _rows_arrived(self, message: RowsFetched) -> None:
        self._rows = self._fetched
        self.call_after_refresh(self._show_row_info)   # after the base class has applied the rows

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self) -> None:
        self._show_row_info()

    def _current(self) -> Any:
        table = self.query_one("#table", DataTable)
        if not table.row_count or not table.display:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self._rows.get(str(key))

    def _show_row_info(self) -> None:
        info = self.query_one("#row-info", Static)
        r = self._current()
        info.display = r is not None
        if r is None:
            return
        lines = [f"[b]{escape(r.name)}[/b] · solved {r.mid_utc:%Y-%m-%d %H:%M} UTC, MJD {r.mid_mjd:.4f}",
                 f"valid {_t(r.valid_start_utc)} → {_t(r.valid_end_utc)} UTC (MJD {r.valid_start_mjd:.3f}–"
                 f"{r.valid_end_mjd:.3f}), {r.window}"]
        if r.status_reason:
            why = r.status_reason if r.status_reason.startswith(r.status) else f"{r.status}: {r.status_reason}"
            lines.append(escape(why))
        info.update("\n".join(lines))

    def selected_set(self) -> SetRef | None:
        r = self._current()
        return None if r is None else SetRef(r.id, r.name, r.status, r.calibrator, r.dec_deg)

    def action_detail(self) -> None:
        ref = self.selected_set()
        if ref is not None:
            self.app.push_screen(CalibrationDetailScreen(ref.id))

    @on(DataTable.RowSelected, "#table")
    def _row_selected(self) -> None:
        self.action_detail()

    def action_which_set(self) -> None:
        now = self.app.services.clock()  # type: ignore[attr-defined]
        ref = self.selected_set()
        self.app.push_screen(WhichSetScreen(now.strftime("%Y-%m-%d %H:%M"), "" if ref is None else f"{ref.dec_deg:.2f}"))
