"""One Measurement Set in short: its shape, time range, flags, QA, calibration and the images made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from engine.units import human_bytes
from screens.image_detail import facts, num, shown_path
from screens.job_log import show_latest_job_log


class MsDetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="ms.close"),
        Binding("l", "job_log", "Job log", tooltip="Tail the log of the latest job of this MS's group",
                id="ms.joblog"),
    ]
    DEFAULT_CSS = """
    MsDetailScreen { align: center middle; background: $background 60%; }
    MsDetailScreen > Vertical { width: 96%; height: 90%; border: round $primary; background: $panel; }
    MsDetailScreen #title { height: auto; padding: 0 1; }
    MsDetailScreen #body { padding: 0 1; }
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{escape(Path(self.path).name)}: loading…  (escape to close)", id="title")
            with VerticalScroll():
                yield Static("", id="body")
            yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="ms-detail", description="read measurement set")
    def _load(self) -> None:
        try:
            detail = self.app.services.data.ms_detail(self.path)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._show_error, f"cannot read {self.path}: {exc}")
            return
        self.app.call_from_thread(self._show, detail)

    def _show_error(self, text: str) -> None:
        self.query_one("#title", Static).update(escape(text))

    def _show(self, d: dict[str, Any] | None) -> None:
        self.detail = d
        title = self.query_one("#title", Static)
        if d is None:
            title.update(f"{escape(self.path)}: no longer registered")
            return
        title.update(f"[b]{escape(Path(d['path']).name)}[/b] · group {escape(d['group_id'])} "
                     f"({escape(d.get('group_state') or '?')}) · QA [b]{escape(d.get('qa_grade') or 'none')}[/b]")
        flagged = d.get("flagged_fraction")
        start, end = d.get("start_mjd"), d.get("end_mjd")
        span = "—" if start is None or end is None else f"{start:.5f} – {end:.5f} ({(end - start) * 1440:.1f} min)"
        ra, dec = d.get("pointing_ra_deg"), d.get("pointing_dec_deg")
        data_dir = self.app.services.settings.data_dir  # type: ignore[attr-defined]
        tables = [f"{c['type']}: {shown_path(c['cal_table'], data_dir)}" for c in d.get("calibrator_matches") or []]
        images = [f"{Path(p).name} ({g or 'no QA'})" for _, p, g in d["images"]]
        rows = [
            ("Path", shown_path(d["path"], data_dir) + ("" if d["on_disk"] else "  (not on disk)")),
            ("Shape", (f"{num(d.get('n_rows'), ',d')} rows, {num(d.get('num_channels'), 'd')} channels, "
                       f"{num(d.get('n_antennas'), 'd')} antennas, "
                       f"{num(d.get('integration_time_s'), '.2f', ' s')} integrations")),
            ("MJD", span),
            ("Phase centre", "—" if ra is None or dec is None else f"RA {ra:.4f}° Dec {dec:+.4f}°"),
            ("Flagged", "—" if flagged is None else f"{100 * flagged:.1f}%"),
            ("Size", "—" if d.get("size_bytes") is None else human_bytes(d["size_bytes"])),
            ("QA", (d.get("qa_grade") or "none") + (f": {d['qa_summary']}" if d.get("qa_summary") else "")),
            ("Calibration", "\n".join([", ".join(map(str, d["cal_sets_applied"])) or "none applied", *tables])),
            (f"Images ({len(images)})", "\n".join(images) or "none yet"),
        ]
        self.query_one("#body", Static).update(facts(rows))

    def action_job_log(self) -> None:
        if self.detail:
            self._open_log(self.detail["group_id"])

    @work(thread=True, exclusive=True, group="joblog-open", description="find the latest job")
    def _open_log(self, group_id: str) -> None:
        show_latest_job_log(self.app, group_id)
