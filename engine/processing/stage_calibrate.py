"""Calibration stages: solving calibrator transits and applying the registry's choice to targets.

``solve`` (calibrator groups, converted → solving → calibrated): RFI flagging,
bandpass and gain solve on the transiting calibrator, QA; a set that passes is
registered and applied to the calibrator's own MS; one that fails QA is stored as
``rejected`` with its metrics and the group fails with the QA reasons.

``calibrate`` (targets, converted → calibrating → calibrated): the registry picks
the set(s) (nearest, interpolated, fallback calibrator, 48 h with a warning) or
holds the group in ``waiting_for_calibration``; the chosen solutions are applied
to CORRECTED_DATA and the sets used are recorded on the MS row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from engine import events
from engine.db import models as m
from engine.errors import PermanentStageError
from engine.processing import states
from engine.processing.stages import Stage, Wait

GROUP_SECONDS = 309.0


class CalibrationQAError(PermanentStageError):
    """The solve finished but its solutions failed QA; carries the outcome for the registry."""

    def __init__(self, message: str, outcome: dict[str, Any]) -> None:
        super().__init__(message)
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, ...]:
        return (CalibrationQAError, (str(self), self.outcome))


def registry(settings: Any) -> Any:
    from engine.calibration.registry import Registry

    return Registry(settings.calibration)


def _ms(s: Any, group: m.ObservationGroup) -> m.MeasurementSet:
    ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group.id))
    if ms is None:
        raise PermanentStageError(f"group {group.id} has no Measurement Set recorded")
    return ms


def mid_mjd(group: m.ObservationGroup) -> float:
    if group.start_mjd is not None and group.end_mjd is not None:
        return 0.5 * (group.start_mjd + group.end_mjd)
    from engine.calibration.registry import MJD_UNIX

    return group.group_time.timestamp() / 86400.0 + MJD_UNIX + GROUP_SECONDS / 2 / 86400.0


def classify_group(group: m.ObservationGroup, settings: Any) -> None:
    """Decide from the sky whether a calibrator transits through the beam during the group."""
    from engine.calibration.catalogue import merged_catalogue
    from engine.calibration.transit import best_calibrator

    if group.dec_deg is None:
        return
    t0 = mid_mjd(group) - GROUP_SECONDS / 2 / 86400.0
    cal = best_calibrator(t0, t0 + GROUP_SECONDS / 86400.0, group.dec_deg,
                          threshold_jy=settings.calibration.calibrator_threshold_jy,
                          catalogue=merged_catalogue(settings.calibration.catalogue_files or None))
    group.is_calibrator = cal is not None
    group.calibrator_name = cal.calibrator.name if cal else None
    if cal is not None:
        group.priority = 10


def _clean(value: Any) -> Any:
    """JSON-safe metrics: NaN/inf become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ---- solve (calibrator groups) ---------------------------------------------------------
def prepare_solve(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
    cfg = settings.calibration
    if not group.calibrator_name:
        raise PermanentStageError(f"group {group.id} is not a calibrator transit")
    return {"ms": _ms(s, group).path, "calibrator": group.calibrator_name,
            "out_dir": str(settings.caltables_dir / group.id), "refant": cfg.refant, "solint_s": cfg.solint_s,
            "qa": cfg.qa_thresholds(), "catalogues": [str(p) for p in cfg.catalogue_files]}


def run_solve(params: dict[str, Any]) -> dict[str, Any]:
    import logging
    import shutil

    from engine.calibration.apply import apply_calibration
    from engine.calibration.flagstore import pristine_flags
    from engine.calibration.solve_ms import solve_ms

    log = logging.getLogger("contimg.stage.solve")
    out_dir = Path(params["out_dir"])
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # idempotent under interruption and re-solve: start from the flags conversion wrote
    log.info("flags: %s the converted flags", pristine_flags(params["ms"]))
    log.info("solving bandpass and gains on %s in %s", params["calibrator"], params["ms"])
    # apply=True: a passing solution is applied to this MS from the data already in memory
    result = solve_ms(params["ms"], params["calibrator"], tmp, refant=params["refant"], solint_s=params["solint_s"],
                      qa_thresholds=params["qa"], catalogue_paths=params["catalogues"] or None, apply=True)
    applied = result.pop("applied", None)
    metrics = result["metrics"]
    log.info("QA: SNR %.1f, flagged %.3f, %d/%d antennas, residual %.2f x thermal, closure phase %.2f deg",
             metrics.get("snr_median") or float("nan"), metrics.get("data_flagged_fraction") or float("nan"),
             metrics.get("n_antennas_with_solutions", 0), metrics.get("n_antennas", 0),
             metrics.get("residual_ratio") or float("nan"), metrics.get("closure_phase_rms_deg") or float("nan"))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # tables are complete: move them into place together
    for key in ("bandpass_table", "gain_table"):
        result[key] = str(out_dir / Path(result[key]).name)
    result["metrics"] = _clean(metrics)
    if not result["qa_passed"]:
        raise CalibrationQAError("calibration QA failed: " + "; ".join(result["qa_reasons"]), result)
    if applied is None:   # not applicable from memory (unusual MS layout): from the tables
        applied = apply_calibration(params["ms"], result["bandpass_table"], result["gain_table"])
    log.info("applied own solutions to %d rows", applied["rows"])
    return result


def _register(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any,
              passed: bool) -> tuple[Any, list[str]]:
    name = f"{group.id}_{outcome['calibrator']}".replace(" ", "")
    existing = s.scalar(select(m.CalibrationSet).where(m.CalibrationSet.name == name))
    if existing is not None:  # a re-solve of the same group replaces its earlier record
        s.delete(existing)
        s.flush()
    return registry(settings).register(
        s, name=name, calibrator=outcome["calibrator"], group_id=group.id, ms_path=outcome["ms"],
        refant=str(outcome.get("refant_name") or outcome.get("refant")),
        solver_params={"solint_s": settings.calibration.solint_s, "qa": settings.calibration.qa_thresholds()},
        dec_deg=group.dec_deg if group.dec_deg is not None else float("nan"), mid_mjd=mid_mjd(group),
        qa_metrics=_clean(outcome["metrics"]), qa_passed=passed, qa_reasons=list(outcome.get("qa_reasons", [])),
        bandpass=outcome["bandpass_table"], gain=outcome["gain_table"])


def record_solve(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> list[Any]:
    cs, retired = _register(s, group, outcome, settings, True)
    ms = _ms(s, group)
    ms.cal_sets_applied = [cs.name]
    ms.qa_summary = f"calibrator {outcome['calibrator']}, SNR {outcome['metrics'].get('snr_median') or 0:.0f}"
    return [(events.CALIBRATION_REGISTERED, {"set": cs.name, "calibrator": cs.calibrator_name,
                                             "dec_deg": cs.dec_deg, "mid_mjd": cs.mid_mjd, "retired": retired})]


def failed_solve(s: Any, group: m.ObservationGroup, exc: BaseException, settings: Any) -> None:
    if isinstance(exc, CalibrationQAError):
        _register(s, group, exc.outcome, settings, False)


# ---- calibrate (targets) --------------------------------------------------------------
def gate_calibrate(s: Any, group: m.ObservationGroup, settings: Any) -> Wait | None:
    if group.dec_deg is None:
        raise PermanentStageError(f"group {group.id}: pointing declination unknown; cannot choose calibration")
    decision = registry(settings).find_best_calibration(s, mid_mjd(group), group.dec_deg, group_id=group.id)
    if decision.action == "fail":
        raise PermanentStageError(decision.reason)
    if decision.action == "wait":
        return Wait(decision.reason, decision.wait_until, settings.calibration.wait_recheck_s)
    return None


def prepare_calibrate(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
    decision = registry(settings).find_best_calibration(s, mid_mjd(group), group.dec_deg, group_id=group.id)
    if decision.action != "use":  # the gate just said yes in this same transaction
        raise PermanentStageError(f"calibration choice changed: {decision.reason}")
    return {"ms": _ms(s, group).path, "target_mjd": mid_mjd(group), "decision": decision.as_dict(),
            "flag_rfi": settings.calibration.flag_targets}


def _mean_gain(g: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vector mean over time of unflagged gains: (nant, 1, npol) values and flags."""
    vals = np.where(g.flags, 0, g.cparam)  # (nsol, nant, 1, npol)
    n = (~g.flags).sum(axis=0)
    mean = vals.sum(axis=0) / np.maximum(n, 1)
    return mean, n == 0


def run_calibrate(params: dict[str, Any]) -> dict[str, Any]:
    import logging
    from dataclasses import replace

    from engine.calibration.apply import apply_calibration
    from engine.calibration.caltable import read_caltable
    from engine.calibration.flagstore import pristine_flags
    from engine.calibration.interpolate import interpolate_solutions
    from engine.calibration.target import flag_and_apply

    log = logging.getLogger("contimg.stage.calibrate")
    decision = params["decision"]
    sets = decision["sets"]
    t_target = params["target_mjd"] * 86400.0
    tabs = [(read_caltable(u["bandpass"]), read_caltable(u["gain"]), u) for u in sets]
    log.info("calibrating with %s (%s)", ", ".join(u["name"] for u in sets), decision["mode"])
    b0, g0, _ = tabs[0]
    gmean0, gflag0 = _mean_gain(g0)
    if len(tabs) == 1:
        B, Bf, G, Gf = b0.cparam[0], b0.flags[0], gmean0, gflag0
    else:
        b1, g1, _ = tabs[1]
        gmean1, gflag1 = _mean_gain(g1)
        ta, tb = sets[0]["mid_mjd"], sets[1]["mid_mjd"]
        t = params["target_mjd"]
        B = interpolate_solutions(b0.cparam[0], ta, b1.cparam[0], tb, t, b0.flags[0], b1.flags[0])
        G = interpolate_solutions(gmean0, ta, gmean1, tb, t, gflag0, gflag1)
        Bf, Gf = ~np.isfinite(B), ~np.isfinite(G)
        B, G = np.where(Bf, 1, B), np.where(Gf, 1, G)
    btab = replace(b0, cparam=B[None].astype(np.complex64), flags=np.asarray(Bf)[None],
                   times=np.array([t_target]), intervals=np.array([0.0]))
    gtab = replace(g0, cparam=np.asarray(G)[None].astype(np.complex64), flags=np.asarray(Gf)[None],
                   times=np.array([t_target]), intervals=np.array([0.0]), snr=g0.snr[:1], paramerr=g0.paramerr[:1])
    log.info("flags: %s the converted flags", pristine_flags(params["ms"]))  # a rerun starts where the first did
    if params.get("flag_rfi", True):
        applied = flag_and_apply(params["ms"], btab, gtab)
        log.info("RFI: %.2f%% of the cross-correlation samples flagged", 100 * applied["rfi_flagged_fraction"])
    else:
        applied = apply_calibration(params["ms"], btab, gtab)
    log.info("applied to %d rows (%d samples newly flagged)", applied["rows"], applied["newly_flagged"])
    return {"rows": applied["rows"], "newly_flagged": applied["newly_flagged"], "mode": decision["mode"],
            "rfi_flagged_fraction": applied.get("rfi_flagged_fraction"),
            "sets": [u["name"] for u in sets], "reason": decision["reason"], "warning": decision["warning"]}


def record_calibrate(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> None:
    ms = _ms(s, group)
    ms.cal_sets_applied = list(outcome["sets"])
    ms.qa_summary = f"calibrated ({outcome['mode']}): {outcome['reason']}"
    if outcome.get("warning"):
        group.warnings = [*group.warnings, outcome["warning"]]
    group.wait_deadline = None


SOLVE = Stage("solve", states.CONVERTED, states.SOLVING, states.CALIBRATED,
              "engine.processing.stage_calibrate:run_solve", prepare_solve, record_solve,
              max_attempts=2, applies=lambda g: bool(g.is_calibrator), on_failure=failed_solve)
CALIBRATE = Stage("calibrate", states.CONVERTED, states.CALIBRATING, states.CALIBRATED,
                  "engine.processing.stage_calibrate:run_calibrate", prepare_calibrate, record_calibrate,
                  applies=lambda g: not g.is_calibrator, also_from=(states.WAITING,), gate=gate_calibrate)

