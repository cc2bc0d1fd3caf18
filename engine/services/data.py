"""Data products for the console: measurement sets, images with previews, sources and light curves.

Each list is read a window at a time (the console holds only the rows near the
screen). A window that continues one already on screen is read by keyset on the
view's order plus the row id (``WHERE (value, id) beyond the neighbour``), so the
last page of 100,000 sources costs what the first does; only a jump reads by offset.
Details reuse :class:`engine.products.Products`, the same reads the REST API serves.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.errors import ContimgError
from engine.products import Products
from engine.services.area import AreaService

VIEWS = ("ms", "images", "sources")
QA_GRADES = ("good", "warn", "fail")
PREVIEW_MAX_PX = 512  # the pipeline's own PNG size; larger files are reduced on load
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_AGE_S = {"m": 60, "h": 3600, "d": 86400}
_THRESHOLD = re.compile(r"^(det|eta|v|flux)>=(-?\d+(?:\.\d+)?)$")


class DataFilterError(ContimgError):
    """A Data filter the operator typed could not be read (the message names the term)."""


# ---- orders -------------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    """One way a view is sorted: a column, its direction, and the row id breaking ties."""

    key: str
    label: str
    column: Any
    tiebreak: Any
    descending: bool


MS_ORDER = Order("newest", "newest group first", m.MeasurementSet.group_id, m.MeasurementSet.id, True)
IMAGE_ORDER = Order("newest", "newest first", m.Image.created_at, m.Image.id, True)
SOURCE_ORDERS = {
    "name": Order("name", "by name (RA)", m.Source.name, m.Source.id, False),
    "eta": Order("eta", "most variable (η) first", m.Source.eta, m.Source.id, True),
    "flux": Order("flux", "brightest (mean flux) first", m.Source.mean_flux_jy, m.Source.id, True),
    "detections": Order("detections", "most detections first", m.Source.n_detections, m.Source.id, True),
}


def _beyond(order: Order, key: tuple[Any, Any], descending: bool) -> Any:
    """Rows strictly after ``key`` in the order (SQLite: NULL sorts first ascending, last descending)."""
    col, tie = order.column, order.tiebreak
    value, rid = key
    further = (lambda a, b: a < b) if descending else (lambda a, b: a > b)
    if value is None:
        same = and_(col.is_(None), further(tie, rid))
        return same if descending else or_(same, col.is_not(None))
    # written as a range (col >= v AND ...) so SQLite can walk an index on the column
    edge = col <= value if descending else col >= value
    beyond = and_(edge, or_(further(col, value), further(tie, rid)))
    return or_(beyond, col.is_(None)) if descending else beyond


def _ordered(q: Any, order: Order, descending: bool) -> Any:
    if descending:
        return q.order_by(order.column.desc(), order.tiebreak.desc())
    return q.order_by(order.column.asc(), order.tiebreak.asc())


# ---- filters ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFilter:
    """What ``/`` narrows a view to: QA grades, an age, text in the name, thresholds on sources."""

    view: str
    qa: tuple[str, ...] = ()
    since: datetime | None = None
    text: str | None = None
    min_detections: int | None = None
    min_eta: float | None = None
    min_v: float | None = None
    min_flux_jy: float | None = None
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, view: str, text: str, now: datetime) -> DataFilter:
        """``fail 6h`` (MS, images); ``J0834 det>=3 eta>=2 flux>=10`` (sources; flux in mJy)."""
        if view not in VIEWS:
            raise DataFilterError(f"unknown view {view!r}")
        out = cls(view=view, source=text.strip())
        words: list[str] = []
        for term in text.split():
            low = term.lower()
            key, eq, value = low.partition("=")
            if view != "sources" and (low in QA_GRADES or low == "none"):
                out = replace(out, qa=out.qa + (low,))
            elif view != "sources" and eq and key == "qa":
                grades = tuple(g for g in value.split(",") if g)
                bad = [g for g in grades if g not in (*QA_GRADES, "none")]
                if bad or not grades:
                    raise DataFilterError(f"qa= takes {', '.join(QA_GRADES)} or none, not {value!r}")
                out = replace(out, qa=out.qa + grades)
            elif view != "sources" and (age := _AGE.match(low)):
                out = replace(out, since=now - timedelta(seconds=float(age[1]) * _AGE_S[age[2]]))
            elif view == "sources" and (th := _THRESHOLD.match(low)):
                what, number = th[1], float(th[2])
                if what == "det":
                    out = replace(out, min_detections=int(number))
                elif what == "eta":
                    out = replace(out, min_eta=number)
                elif what == "v":
                    out = replace(out, min_v=number)
                else:
                    out = replace(out, min_flux_jy=number / 1e3)
            elif eq or any(c in term for c in "<>"):
                hint = ("det>=N, eta>=X, v>=X, flux>=mJy or text in the name" if view == "sources"
                        else "good/warn/fail/none, qa=a,b, an age (6h) or text in the name")
                raise DataFilterError(f"unknown filter term {term!r}: use {hint}")
            else:
                words.append(term)
        if words:
            out = replace(out, text=" ".join(words))
        return out

    def describe(self) -> str:
        return self.source or "everything"

    def apply(self, q: Any) -> Any:
        if self.view == "sources":
            s = m.Source
            if self.text:
                q = q.where(s.name.contains(self.text, autoescape=True))
            if self.min_detections is not None:
                q = q.where(s.n_detections >= self.min_detections)
            if self.min_eta is not None:
                q = q.where(s.eta >= self.min_eta)
            if self.min_v is not None:
                q = q.where(s.v >= self.min_v)
            if self.min_flux_jy is not None:
                q = q.where(s.mean_flux_jy >= self.min_flux_jy)
            return q
        model = m.Image if self.view == "images" else m.MeasurementSet
        if self.qa:
            named = [g for g in self.qa if g != "none"]
            conds = [model.qa_grade.in_(named)] if named else []
            if "none" in self.qa:
                conds.append(model.qa_grade.is_(None))
            q = q.where(or_(*conds))
        if self.since is not None:
            q = q.where(model.created_at >= self.since)
        if self.text:
            q = q.where(model.path.contains(self.text, autoescape=True))
        return q


# ---- rows --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MsRow:
    id: int
    path: str
    group_id: str
    n_rows: int | None
    n_channels: int | None
    n_antennas: int | None
    flagged_fraction: float | None
    qa_grade: str | None
    size_bytes: int | None
    created_at: datetime


@dataclass(frozen=True)
class ImageRow:
    id: str
    path: str
    group_id: str | None
    qa_grade: str | None
    noise_jy: float | None
    peak_flux_jy: float | None
    dynamic_range: float | None
    beam_major_arcsec: float | None
    beam_minor_arcsec: float | None
    beam_pa_deg: float | None
    created_at: datetime

    @property
    def name(self) -> str:
        """The file name without the ``-image.fits`` every image has (the stem is the group)."""
        return Path(self.path).name.removesuffix("-image.fits")


@dataclass(frozen=True)
class SourceRow:
    id: str
    name: str | None
    ra_deg: float
    dec_deg: float
    n_detections: int
    n_images: int
    mean_flux_jy: float | None
    peak_flux_jy: float | None
    eta: float | None
    v: float | None


@dataclass(frozen=True)
class DataWindow:
    """Rows ``offset … offset+len(rows)`` of a filtered, ordered view; ``keys`` are their keyset positions."""

    offset: int
    rows: list[Any]
    keys: list[tuple[Any, Any]]
    total: int


@dataclass(frozen=True)
class ImagePreview:
    """Grey levels (uint8, row 0 = north) to draw, where they came from — or why there are none."""

    pixels: np.ndarray | None
    origin: str  # "png" | "fits" | ""
    reason: str | None = None


@dataclass(frozen=True)
class Measurement:
    mjd: float
    flux_jy: float | None
    flux_error_jy: float | None
    forced: bool
    snr: float | None
    image_id: str
    image_path: str
    qa_grade: str | None


@dataclass(frozen=True)
class SourceDetail:
    id: str
    name: str | None
    ra_deg: float
    dec_deg: float
    n_detections: int
    n_images: int
    first_detected_at: datetime | None
    last_detected_at: datetime | None
    mean_flux_jy: float | None
    peak_flux_jy: float | None
    eta: float | None
    v: float | None
    chi2_nu: float | None
    modulation_index: float | None
    latest_image_id: str | None
    light_curve: list[Measurement]


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class DataService(AreaService):
    """Windows of the three Data views and the details behind them."""

    @property
    def products(self) -> Products:
        return Products(self.db)

    def parse_filter(self, view: str, text: str) -> DataFilter | None:
        return DataFilter.parse(view, text, self.now()) if text.strip() else None

    # ---- windows ----------------------------------------------------------------------
    def _window(self, s: Session, model: Any, columns: tuple[Any, ...], order: Order, flt: DataFilter | None,
                offset: int, limit: int, after: tuple[Any, Any] | None,
                before: tuple[Any, Any] | None) -> tuple[list[Any], list[tuple[Any, Any]], int]:
        base = select(*columns, order.column, order.tiebreak)
        base = flt.apply(base) if flt else base
        count = select(func.count()).select_from(model)
        total = int(s.scalar(flt.apply(count) if flt else count) or 0)
        offset = max(0, offset)
        if after is not None:
            q = _ordered(base.where(_beyond(order, tuple(after), order.descending)), order, order.descending)
            rows = list(s.execute(q.limit(limit)))
        elif before is not None:
            q = _ordered(base.where(_beyond(order, tuple(before), not order.descending)), order,
                         not order.descending)
            rows = list(reversed(list(s.execute(q.limit(limit)))))
        elif offset > total // 2:
            # a jump into the back half (End) reads from the far end: OFFSET costs what it skips
            skip = max(0, total - offset - limit)
            q = _ordered(base, order, not order.descending).offset(skip).limit(max(0, min(limit, total - offset)))
            rows = list(reversed(list(s.execute(q))))
        else:
            rows = list(s.execute(_ordered(base, order, order.descending).offset(offset).limit(limit)))
        n = len(columns)
        return [r[:n] for r in rows], [(r[n], r[n + 1]) for r in rows], total

    def ms_window(self, offset: int, limit: int, flt: DataFilter | None = None, *,
                  after: tuple[Any, Any] | None = None, before: tuple[Any, Any] | None = None) -> DataWindow:
        """Measurement sets, newest group first."""
        ms = m.MeasurementSet
        cols = (ms.id, ms.path, ms.group_id, ms.n_rows, ms.n_channels, ms.n_antennas, ms.flagged_fraction,
                ms.qa_grade, ms.size_bytes, ms.created_at)
        with self.db.session() as s:
            rows, keys, total = self._window(s, ms, cols, MS_ORDER, flt, offset, limit, after, before)
        return DataWindow(offset, [MsRow(*r) for r in rows], keys, total)

    def image_window(self, offset: int, limit: int, flt: DataFilter | None = None, *,
                     after: tuple[Any, Any] | None = None, before: tuple[Any, Any] | None = None) -> DataWindow:
        """Images, newest first, with the QA the imaging stage measured."""
        i = m.Image
        cols = (i.id, i.path, i.group_id, i.qa_grade, i.noise_jy, i.peak_flux_jy, i.dynamic_range, i.beam_major_arcsec,
                i.beam_minor_arcsec, i.beam_pa_deg, i.created_at)
        with self.db.session() as s:
            rows, keys, total = self._window(s, i, cols, IMAGE_ORDER, flt, offset, limit, after, before)
        return DataWindow(offset, [ImageRow(*r) for r in rows], keys, total)

    def source_window(self, offset: int, limit: int, flt: DataFilter | None = None, *, order: str = "name",
                      after: tuple[Any, Any] | None = None, before: tuple[Any, Any] | None = None) -> DataWindow:
        """Sources in one of :data:`SOURCE_ORDERS`, with detections, mean flux and variability."""
        if order not in SOURCE_ORDERS:
            raise ValueError(f"unknown source order {order!r}; one of {', '.join(SOURCE_ORDERS)}")
        src = m.Source
        cols = (src.id, src.name, src.ra_deg, src.dec_deg, src.n_detections, src.n_images, src.mean_flux_jy,
                src.peak_flux_jy, src.eta, src.v)
        with self.db.session() as s:
            rows, keys, total = self._window(s, src, cols, SOURCE_ORDERS[order], flt, offset, limit, after, before)
        out = [SourceRow(r[0], r[1], r[2], r[3], r[4] or 0, r[5] or 0, *(_finite(x) for x in r[6:])) for r in rows]
        return DataWindow(offset, out, keys, total)

    # ---- details ----------------------------------------------------------------------
    def ms_detail(self, path: str) -> dict[str, Any] | None:
        """The REST metadata of one MS plus what the list leaves out: size, time range, images made from it."""
        record = self.products.ms_record(path)
        if record is None:
            return None
        with self.db.session() as s:
            ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.path == path))
            if ms is None:  # removed between the two reads
                return None
            images = [(iid, ipath, grade) for iid, ipath, grade in s.execute(
                select(m.Image.id, m.Image.path, m.Image.qa_grade).where(m.Image.ms_path == path)
                .order_by(m.Image.created_at.desc()))]
            record.update(group_id=ms.group_id, n_rows=ms.n_rows, n_antennas=ms.n_antennas,
                          start_mjd=ms.start_mjd, end_mjd=ms.end_mjd, size_bytes=ms.size_bytes,
                          cal_sets_applied=list(ms.cal_sets_applied or []), images=images,
                          on_disk=Path(path).exists())
        return record

    def image_detail(self, image_id: str) -> dict[str, Any] | None:
        """The REST image detail plus how many sources it measured (detected and forced)."""
        detail = self.products.get_image(image_id)
        if detail is None:
            return None
        with self.db.session() as s:
            counts = dict(s.execute(select(m.Photometry.forced, func.count()).where(m.Photometry.image_id == image_id)
                                    .group_by(m.Photometry.forced)).all())
        detail.update(n_detected=int(counts.get(False, 0)), n_forced=int(counts.get(True, 0)))
        return detail

    def image_preview(self, image_id: str) -> ImagePreview:
        """The image's PNG as grey levels; rendered from its FITS when there is no PNG; else why not."""
        detail = self.products.get_image(image_id)
        if detail is None:
            return ImagePreview(None, "", f"no image {image_id} (deleted?)")
        problems: list[str] = []
        png = detail.get("png_path")
        if png and Path(png).is_file():
            try:
                return ImagePreview(_read_png(png), "png")
            except OSError as exc:
                problems.append(f"PNG {png} unreadable ({exc})")
        else:
            problems.append(f"PNG {png} not on disk" if png else "no PNG recorded")
        fits_path = detail["path"]
        if Path(fits_path).is_file():
            try:
                return ImagePreview(_render_fits(fits_path), "fits")
            except (OSError, ValueError) as exc:
                problems.append(f"FITS {fits_path} unreadable ({exc})")
        else:
            problems.append(f"FITS {fits_path} not on disk")
        return ImagePreview(None, "", "; ".join(problems))

    def rate_image(self, image_id: str, grade: str, note: str, *, by: str) -> None:
        """An operator's QA grade for an image, kept with who and why (the dashboard's quick rating)."""
        if grade not in QA_GRADES:
            raise ValueError(f"grade must be one of {', '.join(QA_GRADES)}, not {grade!r}")
        if not note.strip():
            raise ValueError("say why: the note is kept in the image's QA summary")
        if not self.products.set_image_rating(image_id, grade, f"{by}: {grade}, {note.strip()}"):
            raise KeyError(f"no image {image_id} (deleted?)")

    def source_detail(self, source_id: str) -> SourceDetail | None:
        """Position, detection counts, variability and the light curve (detections and forced points)."""
        src = self.products.get_source(source_id)
        if src is None:
            return None
        curve = [Measurement(c["mjd"], c["flux_jy"], c["flux_error_jy"], bool(c["forced"]), c["snr"],
                             c["image_id"], c["path"], c["qa_grade"]) for c in src["contributing_images"]]
        return SourceDetail(src["id"], src["name"], src["ra_deg"], src["dec_deg"], src["n_detections"] or 0,
                            src["num_images"] or 0, src["first_detected_at"], src["last_detected_at"],
                            src["flux_jy"], src["peak_flux_jy"], src["eta"], src["v"], src["chi2_nu"],
                            src["modulation_index"], src["latest_image_id"], curve)


def _read_png(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        im.thumbnail((PREVIEW_MAX_PX, PREVIEW_MAX_PX))
        return np.asarray(im, dtype=np.uint8).copy()


def _render_fits(path: str) -> np.ndarray:
    """The first plane as the pipeline's PNG would show it: max-pooled, asinh stretch, north up."""
    from astropy.io import fits

    from engine.imaging.fits_io import stretch_asinh

    with fits.open(path, memmap=True) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.data.ndim >= 2), None)
        if hdu is None:
            raise ValueError("no image data in the file")
        plane = np.asarray(hdu.data)
        while plane.ndim > 2:
            plane = plane[0]
        plane = np.asarray(plane, dtype=np.float64)
    f = math.ceil(max(plane.shape) / PREVIEW_MAX_PX)
    if f > 1:  # max-pool, as the pipeline's PNG does, so point sources survive the reduction
        ny, nx = (plane.shape[0] // f) * f, (plane.shape[1] // f) * f
        with warnings.catch_warnings():  # a block of blanked (NaN) pixels stays blank, without a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            plane = np.nanmax(plane[:ny, :nx].reshape(ny // f, f, nx // f, f), axis=(1, 3))
    return (stretch_asinh(plane)[::-1] * 255).round().astype(np.uint8)
