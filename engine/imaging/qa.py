"""Image quality assessment: robust noise, peak, dynamic range, beam sanity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .imager import robust_std


@dataclass
class QAThresholds:
    """Limits for a passing image; every limit is configurable (None = not checked)."""

    max_noise_jy: float | None = 0.05  # robust rms of the residual
    min_dynamic_range: float | None = 5.0  # peak / noise
    min_bmaj_arcsec: float | None = 5.0
    max_bmaj_arcsec: float | None = 600.0
    max_axis_ratio: float | None = 5.0  # bmaj / bmin
    max_residual_sigma: float | None = 50.0  # max|residual| / noise (deconvolution failure)
    max_nonfinite_fraction: float | None = 0.0

    @classmethod
    def from_any(cls, t: "QAThresholds | dict | None") -> "QAThresholds":
        if t is None:
            return cls()
        if isinstance(t, cls):
            return t
        return cls(**t)


def image_metrics(image: np.ndarray, residual: np.ndarray, bmaj_arcsec: float, bmin_arcsec: float,
                  bpa_deg: float) -> dict:
    finite = np.isfinite(image)
    noise = robust_std(residual)
    peak = float(np.nanmax(image)) if finite.any() else float("nan")
    res_abs = float(np.nanmax(np.abs(residual))) if np.isfinite(residual).any() else float("nan")
    return {
        "noise_jy": noise,
        "peak_jy": peak,
        "dynamic_range": peak / noise if noise > 0 else float("inf"),
        "residual_max_sigma": res_abs / noise if noise > 0 else float("inf"),
        "bmaj_arcsec": float(bmaj_arcsec),
        "bmin_arcsec": float(bmin_arcsec),
        "bpa_deg": float(bpa_deg),
        "axis_ratio": float(bmaj_arcsec / bmin_arcsec) if bmin_arcsec > 0 else float("inf"),
        "nonfinite_fraction": float(1.0 - finite.mean()),
    }


def assess(metrics: dict, thresholds: QAThresholds | dict | None = None) -> dict:
    """Return ``{"passed": bool, "reasons": [...], "metrics": metrics, "thresholds": {...}}``."""
    t = QAThresholds.from_any(thresholds)
    reasons = []

    def bad(x):
        return x is None or (isinstance(x, float) and math.isnan(x))

    m = metrics
    if t.max_nonfinite_fraction is not None and m["nonfinite_fraction"] > t.max_nonfinite_fraction:
        reasons.append(f"{m['nonfinite_fraction']:.2%} of pixels are not finite")
    if bad(m["noise_jy"]) or m["noise_jy"] <= 0:
        reasons.append("noise could not be measured (empty or constant residual)")
    elif t.max_noise_jy is not None and m["noise_jy"] > t.max_noise_jy:
        reasons.append(f"noise {m['noise_jy']:.3g} Jy/beam > {t.max_noise_jy:.3g}")
    if t.min_dynamic_range is not None and not (m["dynamic_range"] >= t.min_dynamic_range):
        reasons.append(f"dynamic range {m['dynamic_range']:.3g} < {t.min_dynamic_range:.3g}")
    if t.max_residual_sigma is not None and not (m["residual_max_sigma"] <= t.max_residual_sigma):
        reasons.append(f"residual peak {m['residual_max_sigma']:.3g} sigma > {t.max_residual_sigma:.3g}")
    if t.min_bmaj_arcsec is not None and not (m["bmaj_arcsec"] >= t.min_bmaj_arcsec):
        reasons.append(f"beam major axis {m['bmaj_arcsec']:.3g}\" < {t.min_bmaj_arcsec:.3g}\"")
    if t.max_bmaj_arcsec is not None and not (m["bmaj_arcsec"] <= t.max_bmaj_arcsec):
        reasons.append(f"beam major axis {m['bmaj_arcsec']:.3g}\" > {t.max_bmaj_arcsec:.3g}\"")
    if t.max_axis_ratio is not None and not (m["axis_ratio"] <= t.max_axis_ratio):
        reasons.append(f"beam axis ratio {m['axis_ratio']:.3g} > {t.max_axis_ratio:.3g}")
    return {"passed": not reasons, "reasons": reasons, "metrics": dict(m), "thresholds": asdict(t)}


def assess_result(res, thresholds=None) -> dict:
    """QA of an ``ImageResult``."""
    m = image_metrics(res.image, res.residual, res.beam.bmaj_arcsec, res.beam.bmin_arcsec, res.beam.bpa_deg)
    return assess(m, thresholds)
