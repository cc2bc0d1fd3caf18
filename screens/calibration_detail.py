"""One calibration set in detail: its solutions as plots, its QA gate by gate, its window and its use.

Opened from the Calibrations list (enter or ``d``). The gain (amplitude, phase over
time) and bandpass (over frequency) plots are read from the set's own caltables by
the engine's reader, one antenna at a time (``n``/``p``; ``o`` overlays four); a
flagged antenna says so rather than showing an empty plot. The database part loads
first; the tables are read in their own worker, since a large bandpass takes a moment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from screens.calibration_forms import CalibrationActions, SetRef, utc

OVERLAY = 4   # antennas drawn together in overlay mode


def _clip(text: str, n: int = 140) -> str:
    """At most two lines of a long reason in the title; the Use & history tab has all of it."""
    return text if len(text) <= n else text[: n - 12].rstrip() + "… (h: all)"


def _series(x: np.ndarray, y: np.ndarray, flags: np.ndarray) -> tuple[list[float], list[float]]:
    """Unflagged points only: a flagged solution is no value at all, not a zero."""
    ok = ~flags & np.isfinite(y)
    return [float(v) for v in x[ok]], [float(v) for v in y[ok]]


def _draw(plot: PlotextPlot, title: str, xlabel: str, lines: list[tuple[str, list[float], list[float]]],
          ylim: tuple[float, float] | None = None, empty: str = "no unflagged solutions") -> None:
    plt = plot.plt
    plt.clear_data()
    plt.clear_figure()
    plt.title(title)
    plt.xlabel(xlabel)
    drawn = False
    for label, x, y in lines:
        if x:
            plt.plot(x, y, label=label, marker="braille")
            drawn = True
    if ylim is not None:
        plt.ylim(*ylim)
    if not drawn:
        plt.title(f"{title}: {empty}")
    plot.refresh()


class CalibrationDetailScreen(CalibrationActions, ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", tooltip="Back to the list of sets", id="calibrations.close"),
        Binding("n", "antenna(1)", "Next ant", tooltip="Plot the next antenna", id="calibrations.next_antenna"),
        Binding("p", "antenna(-1)", "Prev ant", tooltip="Plot the previous antenna", id="calibrations.prev_antenna"),
        Binding("o", "overlay", "Overlay", tooltip=f"Toggle {OVERLAY} antennas overlaid (first polarisation) or "
                "one antenna, both polarisations", id="calibrations.overlay"),
        Binding("g", "tab('gains')", "Gains", show=False, tooltip="Gain amplitude and phase over time",
                id="calibrations.gains_tab"),
        Binding("b", "tab('bandpass')", "Bandpass", show=False, tooltip="Bandpass amplitude and phase over "
                "frequency", id="calibrations.bandpass_tab"),
        Binding("a", "tab('qa')", "QA", show=False, tooltip="QA metrics against their thresholds",
                id="calibrations.qa_tab"),
        Binding("h", "tab('use')", "Use & history", show=False, tooltip="Validity window, tables, groups that "
                "used the set, who changed it and why", id="calibrations.use_tab"),
        *CalibrationActions.ACTION_BINDINGS,
    ]
    DEFAULT_CSS = """
    CalibrationDetailScreen { align: center middle; }
    CalibrationDetailScreen > Vertical { width: 100%; height: 100%; background: $panel; }
    CalibrationDetailScreen #title { height: auto; padding: 0 1; }
    CalibrationDetailScreen TabbedContent { height: 1fr; }
    CalibrationDetailScreen TabPane { padding: 0; height: 1fr; }
    CalibrationDetailScreen .antenna { height: auto; padding: 0 1; }
    CalibrationDetailScreen .antenna.flagged { color: $warning; }
    CalibrationDetailScreen .plots { height: 1fr; }
    CalibrationDetailScreen .error { color: $error; padding: 0 1; height: auto; }
    CalibrationDetailScreen #verdict { height: auto; padding: 0 1; }
    CalibrationDetailScreen #verdict.failed { color: $error; }
    CalibrationDetailScreen #gates { height: 1fr; }
    CalibrationDetailScreen #use-body { padding: 0 1; height: auto; }
    """

    def __init__(self, set_id: int) -> None:
        super().__init__()
        self.set_id = set_id
        self.detail: Any = None
        self.solutions: Any = None
        self.antenna = 0
        self.overlay = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"calibration set {self.set_id}: loading…  (escape to close)", id="title")
            with TabbedContent(id="tabs", initial="gains"):
                with TabPane("Gains (g)", id="gains"):
                    yield Static("reading the gain table…", id="gain-ant", classes="antenna")
                    with Horizontal(classes="plots"):
                        yield PlotextPlot(id="gain-amp")
                        yield PlotextPlot(id="gain-phase")
                with TabPane("Bandpass (b)", id="bandpass"):
                    yield Static("reading the bandpass table…", id="bp-ant", classes="antenna")
                    with Horizontal(classes="plots"):
                        yield PlotextPlot(id="bp-amp")
                        yield PlotextPlot(id="bp-phase")
                with TabPane("QA (a)", id="qa"):
                    yield Static("", id="verdict")
                    gates: DataTable[Any] = DataTable(id="gates", cursor_type="row", show_cursor=False)
                    for label in ("Metric", "Value", "Threshold", "Result", "Note"):
                        gates.add_column(label)
                    yield gates
                with TabPane("Use & history (h)", id="use"):
                    with VerticalScroll():
                        yield Static("", id="use-body")
            yield Footer()

    # ---- loading -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.refresh_data()
        self._load_solutions()

    def refresh_data(self) -> None:
        """Re-read the set from the database (after an action); the tables do not change."""
        self._load_detail()

    @work(thread=True, exclusive=True, group="cal-detail", description="read calibration set")
    def _load_detail(self) -> None:
        try:
            detail = self.app.services.calibrations.detail(self.set_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._title_error, f"cannot read set {self.set_id}: {exc}")
            return
        self.app.call_from_thread(self._show_detail, detail)

    @work(thread=True, exclusive=True, group="cal-solutions", description="read caltables")
    def _load_solutions(self) -> None:
        try:
            sol = self.app.services.calibrations.solutions(self.set_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._solutions_error, str(exc))
            return
        self.app.call_from_thread(self._show_solutions, sol)

    def _title_error(self, text: str) -> None:
        self.query_one("#title", Static).update(escape(text))

    def _solutions_error(self, text: str) -> None:
        for wid in ("#gain-ant", "#bp-ant"):
            w = self.query_one(wid, Static)
            w.update(escape(text))
            w.set_class(True, "flagged")

    # ---- the database part ---------------------------------------------------------------
    def _show_detail(self, d: Any) -> None:
        self.detail = d
        title = self.query_one("#title", Static)
        if d is None:
            title.update(f"calibration set {self.set_id}: no longer registered (re-solved or removed)")
            return
        r = d.row
        qa = "QA pass" if r.qa_passed else "[b]QA FAIL[/b]"
        snr = "" if r.snr is None else f", SNR {r.snr:.0f}"
        title.update(f"[b]{escape(r.name)}[/b] · {escape(r.calibrator)} · [b]{r.status}[/b] · {qa}{snr}\n"
                     f"Dec {r.dec_deg:+.2f}° · valid {r.valid_start_utc:%m-%d %H:%M} → "
                     f"{r.valid_end_utc:%m-%d %H:%M} UTC, {r.window}"
                     + (f"\n{escape(_clip(r.status_reason))}" if r.status_reason and r.status != "active" else ""))
        self._show_qa(d)
        self._show_use(d)

    def _show_qa(self, d: Any) -> None:
        verdict = self.query_one("#verdict", Static)
        if d.verdict is None:
            text = (f"recorded at the solve: {'passed' if d.row.qa_passed else 'failed'}"
                    " (the stored metrics are incomplete, so today's gates cannot re-judge them)")
            failed = not d.row.qa_passed
        else:
            ok, reasons = d.verdict
            failed = not ok
            text = "passes today's thresholds" if ok else "fails today's thresholds: " + "; ".join(reasons)
            if ok != d.row.qa_passed:
                text += f" (at the solve it {'passed' if d.row.qa_passed else 'failed'})"
        if d.thresholds_note:
            text += f"\n{d.thresholds_note}"
        verdict.update(escape(text))
        verdict.set_class(failed, "failed")
        table = self.query_one("#gates", DataTable)
        table.clear()
        for i, g in enumerate(d.gates):
            result = {True: "pass", False: "FAIL", None: "—"}[g.passed]
            table.add_row(g.label, g.text_value(), g.text_threshold(), result, g.note, key=str(i))

    def _show_use(self, d: Any) -> None:
        r = d.row
        lines = [f"[b]Validity[/b]  {utc(r.valid_start_utc)} → {utc(r.valid_end_utc)}",
                 f"  MJD {r.valid_start_mjd:.4f} – {r.valid_end_mjd:.4f}, solved {utc(r.mid_utc)} "
                 f"(MJD {r.mid_mjd:.4f}), {r.window}",
                 f"  registered {utc(d.created_at)} from {escape(d.source_ms_path)}"
                 + (f", group {d.group_id}" if d.group_id else "") + (f", refant {escape(d.refant)}" if d.refant else "")]
        if r.status_reason:
            lines.append(f"  {r.status}: {escape(r.status_reason)}")
        if d.overlaps:
            lines.append(f"  also active for this transit: {', '.join(map(escape, d.overlaps))}")
        if d.not_applicable:
            lines.append(f"  the registry cannot apply it: {escape('; '.join(d.not_applicable))}")
        lines.append("[b]Tables[/b]")
        lines += [f"  {kind:<8} {escape(path)}" + ("" if ok else "  [b]MISSING[/b]") for kind, path, ok in d.tables]
        lines.append(f"[b]Used by[/b] ({len(d.used_by)} group{'s' if len(d.used_by) != 1 else ''})")
        lines += [f"  {u.group_id}  {u.state}" + ("  (solved here)" if u.solved_here else "") for u in d.used_by]
        if not d.used_by:
            lines.append("  no Measurement Set has been calibrated with it")
        lines.append("[b]History[/b]")
        for e in d.events:
            change = f"{e.from_status} → {e.to_status}" if e.to_status else f"while {e.from_status}"
            job = f" (job {e.job_id})" if e.job_id else ""
            lines.append(f"  {utc(e.at)}  {e.action.replace('_', ' ')} by {escape(e.by)}, {change}{job}: "
                         f"{escape(e.reason)}")
        if not d.events:
            lines.append("  no operator changes")
        lines.append("[b]Re-solve[/b] " + ("(s) " if d.resolve.possible else "not from here: ") + escape(d.resolve.explanation))
        self.query_one("#use-body", Static).update("\n".join(lines))

    # ---- the solutions -------------------------------------------------------------------
    def _show_solutions(self, sol: Any) -> None:
        self.solutions = sol
        skip = set(sol.fully_flagged()) | {sol.refant}
        if self.antenna in skip:   # start on an antenna with something to show (the refant's phase is zero)
            self.antenna = next((a for a in range(sol.n_antennas) if a not in skip), 0)
        self._draw()

    def _antennas(self) -> list[int]:
        n = self.solutions.n_antennas
        if not self.overlay:
            return [self.antenna]
        return [(self.antenna + k) % n for k in range(min(OVERLAY, n))]

    def _label(self, ant: int) -> str:
        sol = self.solutions
        return sol.antenna_name(ant) + (" (refant)" if ant == sol.refant else "")

    def _antenna_line(self, kind: str) -> tuple[str, bool]:
        sol = self.solutions
        ants = self._antennas()
        errors = [e for e in sol.errors if kind in e]
        head = (f"antenna {self._label(ants[0])} ({ants[0] + 1}/{sol.n_antennas})" if not self.overlay else
                "antennas " + ", ".join(self._label(a) for a in ants) + f", pol {sol.pols[0]}")
        notes = []
        for a in ants:
            note = sol.flag_note(a)
            if note and kind in note:
                notes.append(f"{sol.antenna_name(a)} {next(p for p in note.split('; ') if p.startswith(kind))}")
        flagged = sol.fully_flagged()
        text = head + (" · " + "; ".join(notes) if notes else "")
        if flagged and not self.overlay:
            shown = ", ".join(sol.antenna_name(a) for a in flagged[:6]) + (" …" if len(flagged) > 6 else "")
            text += f" · fully flagged: {shown}"
        if errors:
            text = "; ".join(errors)
        return text, bool(notes or errors)

    def _draw(self) -> None:
        sol = self.solutions
        if sol is None:
            return
        if not sol.n_antennas:
            self._solutions_error("; ".join(sol.errors) or "the tables hold no antennas")
            return
        ants = self._antennas()
        pols = [0] if self.overlay else list(range(len(sol.pols)))

        def label(a: int, p: int) -> str:
            return sol.antenna_name(a) if self.overlay else sol.pols[p]

        t0 = f"min after {sol.gain_t0:%H:%M:%S} UTC" if sol.gain_t0 is not None else "min"
        for kind, amp, phase, flags, x, xlabel, amp_id, ph_id, line_id in (
                ("gain", sol.gain_amp, sol.gain_phase_deg, sol.gain_flags, sol.gain_minutes, t0,
                 "#gain-amp", "#gain-phase", "#gain-ant"),
                ("bandpass", sol.bp_amp, sol.bp_phase_deg, sol.bp_flags, sol.bp_freq_mhz, "MHz",
                 "#bp-amp", "#bp-phase", "#bp-ant")):
            text, warn = self._antenna_line(kind)
            line = self.query_one(line_id, Static)
            line.update(escape(text))
            line.set_class(warn, "flagged")
            have = amp.ndim == 3 and amp.size > 0
            amp_lines, ph_lines = [], []
            for a in ants:
                for p in pols:
                    if not have or a >= (amp.shape[1] if kind == "gain" else amp.shape[0]):
                        continue
                    sel = (slice(None), a, p) if kind == "gain" else (a, slice(None), p)
                    amp_lines.append((label(a, p), *_series(x, amp[sel], flags[sel])))
                    ph_lines.append((label(a, p), *_series(x, phase[sel], flags[sel])))
            name = "Gain" if kind == "gain" else "Bandpass"
            empty = "table unreadable" if not have else "all solutions flagged"
            _draw(self.query_one(amp_id, PlotextPlot), f"{name} amplitude", xlabel, amp_lines, empty=empty)
            _draw(self.query_one(ph_id, PlotextPlot), f"{name} phase (deg)", xlabel, ph_lines, (-180, 180),
                  empty=empty)

    # ---- keys ----------------------------------------------------------------------------
    def action_antenna(self, step: int) -> None:
        if self.solutions is None or not self.solutions.n_antennas:
            return
        self.antenna = (self.antenna + step) % self.solutions.n_antennas
        self._draw()

    def action_overlay(self) -> None:
        self.overlay = not self.overlay
        self._draw()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def selected_set(self) -> SetRef | None:
        d = self.detail
        if d is None:
            return None
        return SetRef(d.row.id, d.row.name, d.row.status, d.row.calibrator, d.row.dec_deg)
