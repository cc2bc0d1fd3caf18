"""Image quality assessment: robust noise, peak, dynamic range, beam sanity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .imager import robust_std


@dataclass
class QAThresholds:
    """Limits for a passing image; every limit is configurable (None = not checked).

    The residual noise is judged against what the data allow, not an absolute number (which
    fails any snapshot of a 14 Jy calibrator): it passes when it is within
    ``max_thermal_ratio`` of the thermal noise measured from the visibilities
    (:mod:`engine.imaging.noise`), or when it is below ``peak / dynamic_range_limit``: a
    snapshot of a bright source is limited by its own sidelobes and calibration errors.
    """

    max_noise_jy: float | None = None  # absolute limit, off by default
    max_thermal_ratio: float | None = 3.0  # noise / expected thermal noise
    dynamic_range_limit: float | None = 1000.0  # noise up to peak / this is accepted
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
                  bpa_deg: float, thermal_noise_jy: float | None = None) -> dict:
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
        "thermal_noise_jy": None if thermal_noise_jy is None or not math.isfinite(thermal_noise_jy)
        else float(thermal_noise_jy),
        "thermal_ratio": noise / thermal_noise_jy if thermal_noise_jy and math.isfinite(thermal_noise_jy)
        and thermal_noise_jy > 0 else None,
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
    else:
        if t.max_noise_jy is not None and m["noise_jy"] > t.max_noise_jy:
            reasons.append(f"noise {m['noise_jy']:.3g} Jy/beam > {t.max_noise_jy:.3g}")
        ratio = m.get("thermal_ratio")
        if t.max_thermal_ratio is not None and ratio is not None and ratio > t.max_thermal_ratio:
            dr_ok = t.dynamic_range_limit is not None and m["peak_jy"] > 0 and \
                m["noise_jy"] <= m["peak_jy"] / t.dynamic_range_limit
            if not dr_ok:
                reasons.append(
                    f"noise {m['noise_jy']:.3g} Jy/beam is {ratio:.1f} x the thermal noise "
                    f"{m['thermal_noise_jy']:.3g} (> {t.max_thermal_ratio:g}) and above peak/"
                    f"{t.dynamic_range_limit:g} = {m['peak_jy'] / (t.dynamic_range_limit or 1):.3g}")
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
    m = image_metrics(res.image, res.residual, res.beam.bmaj_arcsec, res.beam.bmin_arcsec, res.beam.bpa_deg,
                      res.extra.get("thermal_noise_jy"))
    return assess(m, thresholds)
