"""Quality gates for calibration solutions.

A failed gate is not an exception: :func:`evaluate_qa` returns a
:class:`QAResult` with ``passed``, the ``reasons`` (one per failed gate) and
every metric, and the caller decides what to do.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .flagging import flagged_per_baseline
from .solver import SolveResult

__all__ = ["QAThresholds", "QAResult", "compute_metrics", "evaluate_qa"]


@dataclass(frozen=True)
class QAThresholds:
    """Gates a calibration set must pass.

    They measure the solution, not the sky: per-integration gains exist to follow the
    atmosphere, so the spread of the gain phases in time is reported
    (``phase_scatter_deg``) but not gated unless ``max_phase_scatter_deg`` is set.
    What is gated is how well the corrected calibrator matches its model (residuals
    against the thermal noise measured from the data, closure phases, the amplitude
    per integration) and whether every antenna with data got usable solutions.
    """

    min_snr: float = 10.0                    # median gain SNR
    min_bandpass_snr: float = 3.0            # median bandpass SNR (per channel)
    max_flagged_fraction: float = 0.3        # data, bandpass and gain flag fractions each
    min_antennas: int | None = None          # absolute; None = min_antenna_fraction of the antennas in the data
    min_antenna_fraction: float = 0.8
    max_bad_antennas: int = 0                # antennas with data (>= half unflagged) but < half good solutions
    max_residual_ratio: float = 1.5          # robust rms(corrected - model) / thermal noise of the same samples
    max_closure_phase_deg: float = 5.0       # robust rms of closure phases of the corrected calibrator
    max_model_amp_deviation: float = 0.05    # worst |corrected / model - 1| over integrations
    max_phase_scatter_deg: float | None = None   # atmosphere, not solution quality: off unless set
    max_amp_scatter: float | None = None

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


def _per_baseline(flags_or_counts: np.ndarray) -> np.ndarray:
    """Flagged samples per baseline from a flag cube, or the counts themselves if given."""
    x = np.asarray(flags_or_counts)
    return x.astype(np.int64) if x.ndim == 1 else flagged_per_baseline(x)


def bad_antennas(result: SolveResult, ant1: np.ndarray, ant2: np.ndarray,
                 input_flags: np.ndarray | None = None, *, final_flagged: np.ndarray | None = None) -> list[int]:
    """Antennas the input called good but calibration had to discard: at least half of
    their cross-correlation samples unflagged on input (``input_flags``: the input flag
    cube or its flagged samples per baseline; the final flags when not given), and then
    either less than half of those kept by the RFI/outlier flagging or good gains
    (unflagged, above the solver's SNR floor) less than half the time.  A dead or
    disconnected antenna whose data were not flagged upstream.  ``final_flagged``: the
    final flags' counts per baseline, if already known."""
    a1, a2 = np.asarray(ant1), np.asarray(ant2)
    cross = np.nonzero(a1 != a2)[0]
    if cross.size == 0:
        return []
    nant = result.nant
    T, _, C, P = result.flags.shape
    per_bl = float(T * C * P)                                             # samples per baseline
    final = _per_baseline(result.flags if final_flagged is None else final_flagged)[cross]
    given = final if input_flags is None else _per_baseline(input_flags)[cross]
    inp = 1.0 - given / per_bl                                            # unflagged fraction per cross baseline
    kept = 1.0 - final / per_bl

    def per_antenna(x):
        num = np.bincount(a1[cross], x, nant) + np.bincount(a2[cross], x, nant)
        cnt = np.bincount(a1[cross], minlength=nant) + np.bincount(a2[cross], minlength=nant)
        return np.where(cnt > 0, num / np.maximum(cnt, 1), 0.0), cnt

    data_in, cnt = per_antenna(inp)
    data_kept, _ = per_antenna(kept)
    good = (~result.gain_flags).mean(axis=(0, 2))
    lost = (data_kept < 0.5 * data_in) | (good < 0.5)
    return [int(a) for a in np.nonzero((cnt > 0) & (data_in >= 0.5) & lost)[0]]


def compute_metrics(result: SolveResult, ant1: np.ndarray | None = None,
                    ant2: np.ndarray | None = None, antenna_names: list[str] | None = None,
                    input_flags: np.ndarray | None = None) -> dict:
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
    Bf = result.bandpass_flags[present]
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
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # antennas whose gains are all flagged
            ph_sc = np.sqrt(np.nanmean(ph ** 2, axis=0))
            amp = np.where(ok, np.abs(G), np.nan)
            amp_sc = np.nanstd(amp, axis=0) / np.nanmean(amp, axis=0)
        valid = n >= 2
        ph_sc = np.where(valid, ph_sc, np.nan)
        amp_sc = np.where(valid, amp_sc, np.nan)
    else:
        ph_sc = np.zeros(G.shape[1:])
        amp_sc = np.zeros(G.shape[1:])
    final_flagged = flagged_per_baseline(result.flags)                  # one popcount pass, no cube copy
    T, Nb, C, P = result.flags.shape
    if ant1 is not None and ant2 is not None:
        cross = np.asarray(ant1) != np.asarray(ant2)
        data_ff = float(final_flagged[cross].sum() / (cross.sum() * T * C * P)) if cross.any() else 1.0
    else:
        data_ff = float(final_flagged.sum() / max(1, result.flags.size))
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
        "bad_antennas": [] if ant1 is None or ant2 is None else [
            antenna_names[a] if antenna_names and a < len(antenna_names) else a
            for a in bad_antennas(result, ant1, ant2, input_flags, final_flagged=final_flagged)],
    }


def evaluate_qa(result: SolveResult | dict, thresholds: QAThresholds | dict | None = None,
                ant1: np.ndarray | None = None, ant2: np.ndarray | None = None, *,
                data_checks: dict | None = None, antenna_names: list[str] | None = None,
                input_flags: np.ndarray | None = None) -> QAResult:
    """Apply the gates to a SolveResult (or to a metrics dict from compute_metrics).

    ``data_checks``: the corrected-calibrator metrics of
    :func:`engine.calibration.qa_data.corrected_checks`, merged into the metrics and gated."""
    th = thresholds if isinstance(thresholds, QAThresholds) else QAThresholds.from_dict(thresholds)
    m = dict(result) if isinstance(result, dict) else compute_metrics(result, ant1, ant2, antenna_names, input_flags)
    if data_checks:
        m.update(data_checks)
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
    if th.max_phase_scatter_deg is not None and not bad(m["phase_scatter_deg"]) \
            and m["phase_scatter_deg"] > th.max_phase_scatter_deg:
        reasons.append(f"gain phase scatter {m['phase_scatter_deg']:.2f} deg > {th.max_phase_scatter_deg:g}")
    if th.max_amp_scatter is not None and not bad(m["amp_scatter"]) and m["amp_scatter"] > th.max_amp_scatter:
        reasons.append(f"gain amplitude scatter {m['amp_scatter']:.3f} > {th.max_amp_scatter:g}")
    bad_ants = m.get("bad_antennas") or []
    if len(bad_ants) > th.max_bad_antennas:
        names = ", ".join(str(a) for a in bad_ants[:10]) + (" ..." if len(bad_ants) > 10 else "")
        reasons.append(f"{len(bad_ants)} antenna(s) with data but without good solutions ({names}) > "
                       f"{th.max_bad_antennas}: flag them or raise max_bad_antennas")
    if "residual_ratio" in m:   # data checks (present when the solve had the data and model)
        if bad(m["residual_ratio"]):
            reasons.append("residuals of the corrected calibrator could not be measured")
        elif m["residual_ratio"] > th.max_residual_ratio:
            reasons.append(f"corrected calibrator residual {m['residual_ratio']:.2f} x the thermal noise > "
                           f"{th.max_residual_ratio:g} (the model does not fit the data)")
        if not bad(m.get("closure_phase_rms_deg")) and m["closure_phase_rms_deg"] > th.max_closure_phase_deg:
            reasons.append(f"closure phase rms {m['closure_phase_rms_deg']:.2f} deg > {th.max_closure_phase_deg:g} "
                           f"(expected {m.get('closure_phase_expected_deg') or float('nan'):.2f} from the noise)")
        dev = m.get("model_amp_deviation_max")
        if bad(dev):
            reasons.append("corrected calibrator amplitude could not be compared with its model")
        elif dev > th.max_model_amp_deviation:
            reasons.append(f"corrected calibrator amplitude off its model by up to {dev:.1%} in an integration "
                           f"> {th.max_model_amp_deviation:.0%}")
    m["min_antennas_required"] = need
    return QAResult(passed=not reasons, reasons=reasons, metrics=m)
