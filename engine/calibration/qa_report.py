"""A set's QA metrics gate by gate: value, threshold, pass or fail.

:func:`engine.calibration.qa.evaluate_qa` gives the verdict and its reasons; an operator
also needs to see how close each metric came to its gate, including the ones that
passed. :func:`qa_gates` lists the same gates in the same order with the same
comparisons (tests hold the two to the same verdict), plus the reported, ungated
metrics so nothing the solve measured is hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .qa import QAThresholds, evaluate_qa


@dataclass(frozen=True)
class QAGate:
    """One line of the QA table; ``passed`` is None when the metric is not gated or was not measured."""

    label: str
    value: float | None
    op: str             # ">=" or "<=" ("" when not gated)
    threshold: float | None
    passed: bool | None
    fmt: str = ".2f"
    note: str = ""

    def text_value(self) -> str:
        return "—" if self.value is None else format(self.value, self.fmt)

    def text_threshold(self) -> str:
        return "not gated" if self.threshold is None else f"{self.op} {format(self.threshold, self.fmt)}"


def _num(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if isinstance(v, float) and math.isnan(v) else float(v)


def _gate(label: str, value: float | None, op: str, threshold: float | None, fmt: str, *,
          absent_fails: bool = True, note: str = "") -> QAGate:
    if threshold is None:
        return QAGate(label, value, "", None, None, fmt, note)
    if value is None:
        return QAGate(label, None, op, threshold, False if absent_fails else None, fmt, note or "not measured")
    ok = value >= threshold if op == ">=" else value <= threshold
    return QAGate(label, value, op, threshold, ok, fmt, note)


def qa_gates(metrics: dict[str, Any], th: QAThresholds) -> list[QAGate]:
    """The gates of ``evaluate_qa`` applied to a stored metrics dict, one line each."""
    m = metrics or {}
    out = [
        _gate("median gain SNR", _num(m, "snr_median") if "snr_median" in m else _num(m, "snr"), ">=", th.min_snr,
              ".1f"),
        _gate("median bandpass SNR", _num(m, "bandpass_snr_median"), ">=", th.min_bandpass_snr, ".1f"),
        _gate("data flagged", _num(m, "data_flagged_fraction"), "<=", th.max_flagged_fraction, ".3f"),
        _gate("bandpass flagged", _num(m, "bandpass_flagged_fraction"), "<=", th.max_flagged_fraction,
              ".3f"),
        _gate("gain flagged", _num(m, "gain_flagged_fraction"), "<=", th.max_flagged_fraction, ".3f"),
    ]
    n_ant = _num(m, "n_antennas")
    need: float | None = th.min_antennas
    if need is None and n_ant is not None:
        need = math.ceil(th.min_antenna_fraction * n_ant)
    with_sol = _num(m, "n_antennas_with_solutions")
    out.append(_gate("antennas solved", with_sol, ">=", need, ".0f",
                     note="" if n_ant is None else f"of {n_ant:.0f} in the data"))
    bad = m.get("bad_antennas")
    bad_list = list(bad) if isinstance(bad, list) else None
    out.append(_gate("bad antennas", None if bad_list is None else float(len(bad_list)),
                     "<=", float(th.max_bad_antennas), ".0f", absent_fails=False,
                     note=(", ".join(str(a) for a in bad_list[:6]) if bad_list else "with data, no good solutions")))
    out.append(_gate("phase scatter (deg)", _num(m, "phase_scatter_deg"), "<=", th.max_phase_scatter_deg, ".2f",
                     absent_fails=False, note="" if th.max_phase_scatter_deg is not None else "the atmosphere, reported"))
    out.append(_gate("amp scatter", _num(m, "amp_scatter"), "<=", th.max_amp_scatter, ".3f",
                     absent_fails=False))
    if "residual_ratio" in m:   # the data checks exist when the solve had the data and the model
        out.append(_gate("residual / thermal", _num(m, "residual_ratio"), "<=", th.max_residual_ratio, ".2f"))
        closure = _num(m, "closure_phase_rms_deg")
        expected = _num(m, "closure_phase_expected_deg")
        out.append(_gate("closure phase (deg)", closure, "<=", th.max_closure_phase_deg, ".2f",
                         absent_fails=False, note="" if expected is None else f"noise predicts {expected:.2f}"))
        out.append(_gate("amp off model (max)", _num(m, "model_amp_deviation_max"), "<=",
                         th.max_model_amp_deviation, ".3f"))
    return out


def verdict(metrics: dict[str, Any], th: QAThresholds) -> tuple[bool, list[str]] | None:
    """``evaluate_qa``'s verdict on stored metrics under ``th``; None when the metrics are incomplete."""
    try:
        r = evaluate_qa(dict(metrics or {}), th)
    except (KeyError, TypeError, ValueError):
        return None
    return r.passed, list(r.reasons)
