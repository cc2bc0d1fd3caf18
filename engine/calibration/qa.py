"""Quality gates for calibration solutions.

A failed gate is not an exception: :func:`evaluate_qa` returns a
:class:`QAResult` with ``passed``, the ``reasons`` (one per failed gate) and
every metric, and the caller decides what to do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .solver import SolveResult

__all__ = ["QAThresholds", "QAResult", "compute_metrics", "evaluate_qa"]


@dataclass(frozen=True)
class QAThresholds:
    min_snr: float = 10.0                    # median gain SNR
    min_bandpass_snr: float = 3.0            # median bandpass SNR (per channel)
    max_flagged_fraction: float = 0.3        # data, bandpass and gain flag fractions each
    min_antennas: int | None = None          # absolute; None = min_antenna_fraction of the antennas in the data
    min_antenna_fraction: float = 0.8
    max_phase_scatter_deg: float = 15.0      # median over antennas of the gain phase scatter in time
    max_amp_scatter: float = 0.1             # median over antennas of std(|G|)/mean(|G|)

    @classmethod
    def from_dict(cls, d: dict | None) -> "QAThresholds":
        if not d:
            return cls()
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown QA threshold(s): {sorted(unknown)}")
        return cls(**d)


@dataclass
class QAResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _finite_median(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def compute_metrics(result: SolveResult, ant1: np.ndarray | None = None,
                    ant2: np.ndarray | None = None) -> dict:
    """Plain-float metrics of a solve (see QAThresholds for the gated ones)."""
    # Only antennas that appear in the data count: an MS lists every station of the array
    # (117 for DSA-110) while ~96 take part; absent ones are not failed solutions.
    present = np.arange(result.nant) if result.antennas_present is None else np.nonzero(result.antennas_present)[0]
    if ant1 is not None and ant2 is not None:
        a1, a2 = np.asarray(ant1), np.asarray(ant2)
        cross = a1 != a2
        if cross.any():
            present = np.unique(np.concatenate([a1[cross], a2[cross]]))
    G, Gf = result.gains[:, present], result.gain_flags[:, present]
    B, Bf = result.bandpass[present], result.bandpass_flags[present]
    gs = result.gain_snr[:, present][~Gf]
    bs = result.bandpass_snr[present][~Bf]
    ants = np.intersect1d(result.antennas_with_solutions(), present)
    # per antenna/pol scatter of the gains over time, about their vector mean
    K = G.shape[0]
    if K > 1:
        ok = ~Gf
        n = ok.sum(axis=0)
        gm = np.where(ok, G, 0).sum(axis=0) / np.maximum(n, 1)
        rel = np.where(ok, G * np.conj(gm)[None] / np.maximum(np.abs(gm), 1e-30)[None], np.nan)
        ph = np.degrees(np.angle(rel))
        with np.errstate(invalid="ignore"):
            ph_sc = np.sqrt(np.nanmean(ph ** 2, axis=0))
            amp = np.where(ok, np.abs(G), np.nan)
            amp_sc = np.nanstd(amp, axis=0) / np.nanmean(amp, axis=0)
        valid = n >= 2
        ph_sc = np.where(valid, ph_sc, np.nan)
        amp_sc = np.where(valid, amp_sc, np.nan)
    else:
        ph_sc = np.zeros(G.shape[1:])
        amp_sc = np.zeros(G.shape[1:])
    if ant1 is not None and ant2 is not None:
        cross = np.asarray(ant1) != np.asarray(ant2)
        data_ff = float(result.flags[:, cross].mean()) if cross.any() else 1.0
    else:
        data_ff = float(result.flags.mean())
    return {
        "snr_median": _finite_median(gs),
        "bandpass_snr_median": _finite_median(bs),
        "data_flagged_fraction": data_ff,
        "bandpass_flagged_fraction": float(Bf.mean()),
        "gain_flagged_fraction": float(Gf.mean()),
        "n_antennas": int(present.size),
        "n_antennas_with_solutions": int(ants.size),
        "phase_scatter_deg": _finite_median(ph_sc),
        "phase_scatter_deg_p90": float(np.nanpercentile(ph_sc, 90)) if np.isfinite(ph_sc).any() else float("nan"),
        "amp_scatter": _finite_median(amp_sc),
        "refant": int(result.refant),
        "noise_sigma": [float(x) for x in result.noise_sigma],
        "outliers_flagged": int(result.outliers_flagged),
    }


def evaluate_qa(result: SolveResult | dict, thresholds: QAThresholds | dict | None = None,
                ant1: np.ndarray | None = None, ant2: np.ndarray | None = None) -> QAResult:
    """Apply the gates to a SolveResult (or to a metrics dict from compute_metrics)."""
    th = thresholds if isinstance(thresholds, QAThresholds) else QAThresholds.from_dict(thresholds)
    m = dict(result) if isinstance(result, dict) else compute_metrics(result, ant1, ant2)
    reasons = []

    def bad(x) -> bool:
        return x is None or (isinstance(x, float) and math.isnan(x))

    if bad(m["snr_median"]) or m["snr_median"] < th.min_snr:
        reasons.append(f"median gain SNR {m['snr_median']:.1f} < {th.min_snr:g}")
    if bad(m["bandpass_snr_median"]) or m["bandpass_snr_median"] < th.min_bandpass_snr:
        reasons.append(f"median bandpass SNR {m['bandpass_snr_median']:.1f} < {th.min_bandpass_snr:g}")
    for key, label in (("data_flagged_fraction", "data"), ("bandpass_flagged_fraction", "bandpass solutions"),
                       ("gain_flagged_fraction", "gain solutions")):
        if m[key] > th.max_flagged_fraction:
            reasons.append(f"{label} flagged fraction {m[key]:.3f} > {th.max_flagged_fraction:g}")
    need = th.min_antennas if th.min_antennas is not None else int(math.ceil(th.min_antenna_fraction * m["n_antennas"]))
    if m["n_antennas_with_solutions"] < need:
        reasons.append(f"{m['n_antennas_with_solutions']} antennas with solutions < {need}")
    if not bad(m["phase_scatter_deg"]) and m["phase_scatter_deg"] > th.max_phase_scatter_deg:
        reasons.append(f"gain phase scatter {m['phase_scatter_deg']:.2f} deg > {th.max_phase_scatter_deg:g}")
    if bad(m["phase_scatter_deg"]):
        reasons.append("gain phase scatter undefined (no antenna with >= 2 unflagged solutions)")
    if not bad(m["amp_scatter"]) and m["amp_scatter"] > th.max_amp_scatter:
        reasons.append(f"gain amplitude scatter {m['amp_scatter']:.3f} > {th.max_amp_scatter:g}")
    m["min_antennas_required"] = need
    return QAResult(passed=not reasons, reasons=reasons, metrics=m)
