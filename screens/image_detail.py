"""One image in detail: its QA and beam beside a preview drawn in the terminal.

Opened from the Data screen's images (enter or ``d``) or a source's measurement. The
preview is the image's PNG, or its FITS rendered as the PNG would be when there is no
PNG; when neither is on disk it says so and why. ``g`` records the operator's own QA
grade (with a reason, as the dashboard's rating does); ``l`` tails the group's job log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from screens.actions import OperatorActions
from screens.calibration_forms import operator_name
from screens.choose import ChoiceScreen
from screens.job_log import show_latest_job_log
from screens.prompt import PromptScreen
from screens.widgets.thumbnail import Thumbnail

GRADES = (("good", "good: usable for science"), ("warn", "warn: usable with care (say why)"),
          ("fail", "fail: artefacts, RFI or a bad calibration — keep out of science"))


def num(value: float | None, fmt: str, unit: str = "") -> str:
    return "—" if value is None else format(value, fmt) + unit


def shown_path(path: str | None, data_dir: Path) -> str:
    """A product path as the operator reads it: relative to the data dir when it lies inside it."""
    if not path:
        return "—"
    p = Path(path)
    return str(p.relative_to(data_dir)) if p.is_relative_to(data_dir) else path


def facts(rows: list[tuple[str, str]]) -> Table:
    """Label/value lines with the values aligned, wrapped lines staying in their column."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, Text(value))  # Text: a path with brackets is not markup
    return grid


def beam_text(major: float | None, minor: float | None, pa: float | None) -> str:
    if not major or not minor:
        return "—"
    return f"{major:.1f}″ × {minor:.1f}″" + ("" if pa is None else f", PA {pa:.1f}°")


class ImageDetailScreen(OperatorActions, ModalScreen[None]):
    WRITE_ACTIONS = frozenset({"rate"})
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="image.close"),
        Binding("g", "rate", "QA grade", tooltip="Record your own QA grade for this image, with the reason",
                id="image.rate"),
        Binding("l", "job_log", "Job log", tooltip="Tail the log of the latest job of this image's group",
                id="image.joblog"),
    ]
    DEFAULT_CSS = """
    ImageDetailScreen { background: $background 60%; }
    ImageDetailScreen > Vertical { background: $panel; }
    ImageDetailScreen #title { height: auto; padding: 0 1; background: $primary-background; }
    ImageDetailScreen #body { height: 1fr; }
    ImageDetailScreen #preview-box { width: 42; height: 1fr; }
    ImageDetailScreen Thumbnail { height: 1fr; }
    ImageDetailScreen #caption { height: auto; color: $text-muted; padding: 0 1; }
    ImageDetailScreen #metrics, ImageDetailScreen #grade { width: 1fr; padding: 0 1; }
    ImageDetailScreen #grade { text-style: bold; color: $success; }
    ImageDetailScreen #grade.fail { color: $error; }
    ImageDetailScreen #grade.warn { color: $warning; }
    ImageDetailScreen #grade.none { color: $text-muted; }
    """

    def __init__(self, image_id: str) -> None:
        super().__init__()
        self.image_id = image_id
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"image {self.image_id}: loading…  (escape to close)", id="title")
            with Horizontal(id="body"):
                with Vertical(id="preview-box"):
                    yield Thumbnail(id="thumb")
                    yield Static("", id="caption")
                with VerticalScroll(id="metrics-box"):
                    yield Static("", id="grade")
                    yield Static("", id="metrics")
            yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()
        self._load_preview()

    def refresh_data(self) -> None:
        self._load_detail()

    @work(thread=True, exclusive=True, group="image-detail", description="read image detail")
    def _load_detail(self) -> None:
        try:
            detail = self.app.services.data.image_detail(self.image_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self.app.call_from_thread(self._title, f"image {self.image_id}: cannot read it: {exc}")
            return
        self.app.call_from_thread(self._show, detail)

    @work(thread=True, exclusive=True, group="image-preview", description="read image preview")
    def _load_preview(self) -> None:
        try:
            preview = self.app.services.data.image_preview(self.image_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a preview must not take the detail down
            self.app.call_from_thread(self._show_preview, None, "", f"cannot read the preview: {exc}")
            return
        self.app.call_from_thread(self._show_preview, preview.pixels, preview.origin, preview.reason)

    def _title(self, text: str) -> None:
        self.query_one("#title", Static).update(escape(text))

    def _show_preview(self, pixels: Any, origin: str, reason: str | None) -> None:
        thumb = self.query_one("#thumb", Thumbnail)
        caption = self.query_one("#caption", Static)
        if pixels is None:
            thumb.show(None, f"no preview: {reason}")
            caption.update("")
            return
        thumb.show(pixels)
        h, w = pixels.shape
        caption.update(f"PNG preview, {w}×{h} px" if origin == "png"
                       else f"rendered from the FITS (no PNG), {w}×{h} px")

    def _show(self, d: dict[str, Any] | None) -> None:
        self.detail = d
        if d is None:
            self._title(f"image {self.image_id}: no longer registered (deleted or moved by retention)")
            self.query_one("#metrics", Static).update("")
            return
        name = Path(d["path"]).name
        grade = d.get("qa_grade") or "not graded"
        self.query_one("#title", Static).update(
            f"[b]{escape(name)}[/b] · made {d['created_at']:%Y-%m-%d %H:%M} UTC")
        grade_line = self.query_one("#grade", Static)
        for kind in ("fail", "warn", "none"):
            grade_line.set_class((d.get("qa_grade") or "none") == kind, kind)
        ra, dec = d.get("pointing_ra_deg"), d.get("pointing_dec_deg")
        data_dir = self.app.services.settings.data_dir  # type: ignore[attr-defined]
        summary = [part.strip() for part in (d.get("qa_summary") or "").split(";") if part.strip()]
        rms = None if d["noise_jy"] is None else d["noise_jy"] * 1e3
        grade_line.update(escape(f"QA {grade}" + (": " + "; ".join(summary) if summary else "")))
        rows = [
            ("RMS", num(rms, ".3f", " mJy/beam")),
            ("Peak", num(d["peak_flux_jy"], ".4f", " Jy/beam")),
            ("DR", num(d["dynamic_range"], ".0f")),
            ("Beam", beam_text(d["beam_major_arcsec"], d["beam_minor_arcsec"], d["beam_pa_deg"])),
            ("Pointing", "—" if ra is None or dec is None else f"RA {ra:.4f}° Dec {dec:+.4f}°"),
            ("MJD", num(d.get("mid_mjd"), ".5f")),
            ("Sources", f"{d['n_detected']} detected, {d['n_forced']} forced"),
            ("Imager", (d.get("backend") or "—") + (f", {d['data_column']}" if d.get("data_column") else "")),
            ("Group", d.get("group_id") or "—"),
            ("FITS", shown_path(d["path"], data_dir)),
            ("PNG", shown_path(d.get("png_path"), data_dir)),
            ("MS", shown_path(d.get("ms_path"), data_dir)),
            ("Cal", shown_path(d.get("cal_table"), data_dir)),
        ]
        self.query_one("#metrics", Static).update(facts(rows))

    # ---- actions ----------------------------------------------------------------------
    def action_job_log(self) -> None:
        if self.detail and self.detail.get("group_id"):
            self._open_log(self.detail["group_id"])
        else:
            self.notify("this image has no group recorded, so no job log", severity="warning")

    @work(thread=True, exclusive=True, group="joblog-open", description="find the latest job")
    def _open_log(self, group_id: str) -> None:
        show_latest_job_log(self.app, group_id)

    def action_rate(self) -> None:
        if self.detail is None:
            return
        name = Path(self.detail["path"]).name

        def graded(grade: str | None) -> None:
            if grade is None:
                return
            self.app.push_screen(PromptScreen(f"Why is {name} {grade}? (kept in its QA summary)",
                                              placeholder="e.g. RFI stripes across the south"),
                                 lambda note: self._rate(grade, note) if note else None)

        self.app.push_screen(ChoiceScreen(f"QA grade for {name} (now {self.detail.get('qa_grade') or 'none'}):",
                                          list(GRADES)), graded)

    def _rate(self, grade: str, note: str) -> None:
        self.run_service(f"grade {self.image_id}", self.app.services.data.rate_image,  # type: ignore[attr-defined]
                         self.image_id, grade, note, by=operator_name(),
                         done=lambda _: f"{Path(self.detail['path']).name if self.detail else self.image_id} "
                                        f"graded {grade}")
