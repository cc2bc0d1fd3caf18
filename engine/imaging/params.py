"""Imaging parameters of one run (plain dataclass, picklable)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

WEIGHTINGS = ("natural", "uniform", "briggs")
CELL_RULES = ("beam", "legacy")
DATA_COLUMNS = ("CORRECTED_DATA", "DATA", "MODEL_DATA")


@dataclass
class ImagingParams:
    """Every setting of an imaging run.

    fov_deg          field of view (side of the square image) in degrees.
    weighting        "natural", "uniform" or "briggs" (uses ``robust``).
    robust           Briggs robustness (-2 ~ uniform, +2 ~ natural).
    auto_threshold   final CLEAN stop, in units of the residual's robust
                     (MAD) noise; WSClean ``-auto-threshold``.
    auto_mask        CLEAN first to this many sigma without a mask, then
                     continue inside the mask of found components down to
                     ``auto_threshold``; WSClean ``-auto-mask``. 0 = off.
    mgain            major-cycle gain: a minor cycle stops once the peak
                     has dropped by this fraction (WSClean ``-mgain``).
    gain             CLEAN loop gain (WSClean ``-gain``).
    niter            cap on the total number of CLEAN components.
    cell_arcsec      pixel size; None = derived by ``cell_rule``.
    cell_rule        "beam": 1/``pixels_per_beam`` of the expected restoring
                     beam's minor axis (PSF fitted on the weighted uv
                     coverage); "legacy": old pipeline's theta/5 with
                     theta = 0.5 lambda_min / u_max (≈2.3" cells, 5452^2 px
                     at 3.5 deg: kept for comparison only).
    pixels_per_beam  used by the "beam" rule (default 5).
    imsize           image side in pixels; None = fov / cell rounded up to
                     an even FFT-friendly size.
    data_column      column to image; if missing, falls back to DATA when
                     ``fallback_to_data`` (the column used is recorded).
    epsilon          wgridder accuracy (w-correction is always on).
    nthreads         threads for ducc0 (0 = all cores).
    max_major        cap on the number of major cycles.
    chan_average     average this many adjacent channels while reading
                     (must divide nchan); 0 = automatic: the largest factor
                     keeping bandwidth smearing at the field edge below a
                     quarter of the expected beam's minor axis (see
                     ``msread.auto_chan_average``, ``imager.plan_chan_average``);
                     1 = none.  DSA-110 defaults give 6 (768 -> 128 channels).
    chunk_rows       rows read from the MS per casacore call.
    restoring_beam   (bmaj_arcsec, bmin_arcsec, bpa_deg) to restore with instead
                     of the Gaussian fitted to the PSF main lobe (None = fit).
                     Useful for a common beam across epochs/backends; note
                     WSClean's own PSF fit (box fit incl. near sidelobes) gives
                     a ~10% narrower beam than our main-lobe fit.
    """

    fov_deg: float = 3.5
    weighting: str = "briggs"
    robust: float = 0.0
    auto_threshold: float = 0.5
    auto_mask: float = 3.0
    mgain: float = 0.8
    gain: float = 0.1
    niter: int = 1000
    cell_arcsec: float | None = None
    cell_rule: str = "beam"
    pixels_per_beam: float = 5.0
    imsize: int | None = None
    data_column: str = "CORRECTED_DATA"
    fallback_to_data: bool = True
    epsilon: float = 1e-4
    nthreads: int = 0
    max_major: int = 20
    chan_average: int = 0
    restoring_beam: tuple | None = None
    chunk_rows: int = 20000
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weighting = str(self.weighting).lower()
        self.cell_rule = str(self.cell_rule).lower()
        self.data_column = str(self.data_column).upper()
        problems = []
        if self.weighting not in WEIGHTINGS:
            problems.append(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.cell_rule not in CELL_RULES:
            problems.append(f"cell_rule must be one of {CELL_RULES}, got {self.cell_rule!r}")
        if self.data_column not in DATA_COLUMNS:
            problems.append(f"data_column must be one of {DATA_COLUMNS}, got {self.data_column!r}")
        if not self.fov_deg > 0:
            problems.append("fov_deg must be > 0")
        if not -5.0 <= self.robust <= 5.0:
            problems.append("robust must be within [-5, 5]")
        if not 0 < self.gain <= 1:
            problems.append("gain must be in (0, 1]")
        if not 0 < self.mgain <= 1:
            problems.append("mgain must be in (0, 1]")
        if self.niter < 0:
            problems.append("niter must be >= 0")
        if self.auto_threshold < 0 or self.auto_mask < 0:
            problems.append("auto_threshold and auto_mask must be >= 0")
        if self.cell_arcsec is not None and not self.cell_arcsec > 0:
            problems.append("cell_arcsec must be > 0 or None")
        if self.imsize is not None and (self.imsize < 32 or self.imsize % 2):
            problems.append("imsize must be even and >= 32")
        if not 1e-7 <= self.epsilon < 0.1:
            problems.append("epsilon must be in [1e-7, 0.1)")
        if self.restoring_beam is not None:
            try:
                rb = tuple(float(x) for x in self.restoring_beam)
            except (TypeError, ValueError):
                rb = ()
            if len(rb) != 3 or not (rb[0] >= rb[1] > 0):
                problems.append("restoring_beam must be (bmaj_arcsec >= bmin_arcsec > 0, bpa_deg)")
            else:
                self.restoring_beam = rb
        if self.chan_average < 0:
            problems.append("chan_average must be >= 0")
        if self.pixels_per_beam < 2:
            problems.append("pixels_per_beam must be >= 2")
        if problems:
            raise ValueError("invalid imaging parameters: " + "; ".join(problems))

    @property
    def threads(self) -> int:
        return self.nthreads if self.nthreads > 0 else (os.cpu_count() or 1)

    @classmethod
    def from_any(cls, params: "ImagingParams | dict | None") -> "ImagingParams":
        """Accept an ImagingParams, a dict (unknown keys rejected) or None."""
        if params is None:
            return cls()
        if isinstance(params, cls):
            return params
        if isinstance(params, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(params) - names)
            if unknown:
                raise ValueError(f"unknown imaging parameters: {unknown}")
            return cls(**params)
        raise TypeError(f"params must be ImagingParams or dict, not {type(params).__name__}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def history_lines(self) -> list[str]:
        """Short ``key=value`` lines for FITS HISTORY cards."""
        d = self.to_dict()
        d.pop("extra", None)
        return [f"contimg imaging {k}={v}" for k, v in d.items()]
