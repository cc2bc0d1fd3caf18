"""The solve stage on one MS: flag -> model -> bandpass -> gains -> QA -> tables [-> apply].

Returns plain values (picklable; safe to run in a process pool, one MS per process:
python-casacore is not thread-safe).  The calibrator's primary-beam geometry (tracked or
drift, dish diameter) is read from the MS (:mod:`engine.calibration.geometry`) and logged.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from engine.errors import PermanentStageError
from engine.processing import progress

from .apply import apply_calibration, read_ms_for_solve, store_flags
from .caltable import write_bandpass_table, write_gain_table
from .catalogue import Calibrator, find_calibrator, merged_catalogue
from .flagging import flag_rfi, flagged_per_baseline
from .geometry import read_beam_geometry
from .qa import QAThresholds, evaluate_qa
from .qa_data import corrected_checks
from .solver import calibrator_model, solve_calibration

__all__ = ["solve_ms"]

_log = logging.getLogger("contimg.calibration")


def solve_ms(ms_path: str | os.PathLike, calibrator: str | Calibrator, out_dir: str | os.PathLike, *,
             refant: int | None = None, solint_s: float | None = None, qa_thresholds: dict | QAThresholds | None = None,
             catalogue_paths=None, flag: bool = True, flag_kwargs: dict | None = None,
             write_flags: bool = True, model_sign: float = +1.0, table_prefix: str | None = None,
             apply: bool = False) -> dict:
    """Flag -> model -> bandpass -> gains -> QA -> write B and G tables [-> apply].

    calibrator: a catalogue name/alias (built-in catalogue merged with
    ``catalogue_paths``) or a Calibrator.  solint_s: gain interval (None = one
    per integration, math.inf = one for the whole MS).  Tables are written to
    ``out_dir/<prefix>.B`` and ``.G`` (prefix defaults to the MS name) even when
    QA fails; ``qa_passed``/``qa_reasons`` tell.  With write_flags the RFI and
    outlier flags of the cross-correlations are stored in the MS FLAG
    column (autocorrelation flags are left as they were).  With ``apply`` and a
    passing QA the solutions are applied to the MS (CORRECTED_DATA, and FLAG
    with the flagged solutions) from the data already in memory, in the same pass
    that stores the flags; ``applied`` in the result has the counts (None when
    not applied).  Returns plain values only.
    """
    t_start = time.perf_counter()
    timings = {}
    ms_path = str(ms_path)
    cal = calibrator if isinstance(calibrator, Calibrator) else \
        find_calibrator(calibrator, merged_catalogue(catalogue_paths))
    t0 = time.perf_counter()
    progress.report("calibration", 0, 6, "steps (read)")
    d = read_ms_for_solve(ms_path)
    timings["read"] = time.perf_counter() - t0
    flags = d.flags
    rfi_fraction = None
    # what QA and the stored flags need of the input flags, kept small: flagged samples per
    # baseline and the autocorrelations' flags (the cube itself is flagged and solved in place)
    input_flagged = flagged_per_baseline(d.flags)
    auto = d.ant1 == d.ant2
    auto_flags = d.flags[:, auto].copy() if auto.any() else None
    progress.report("calibration", 1, 6, "steps (flag)")
    if flag:
        t0 = time.perf_counter()
        fr = flag_rfi(d.vis, d.flags, d.ant1, d.ant2, nant=d.nant, in_place=True, **(flag_kwargs or {}))
        flags = fr.flags
        rfi_fraction = fr.new_fraction
        timings["flag"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    progress.report("calibration", 2, 6, "steps (model)")
    # evaluated block by block inside the solve passes: the 0.7 GB cube is never stored
    geometry = read_beam_geometry(ms_path, d.times, d.phase_centre)
    _log.info("%s: %s", ms_path, geometry.describe())
    model = calibrator_model(cal, d.uvw, d.times, d.freqs, d.phase_centre, sign=model_sign, lazy=True,
                             geometry=geometry)
    timings["model"] = time.perf_counter() - t0
    peak = model.amplitude_max()
    expected = float(np.max(cal.flux_at(d.freqs)))
    if not peak > 0.05 * expected:   # beam power < 5 %: beyond the main lobe of the primary beam
        raise PermanentStageError(f"{ms_path}: calibrator {cal.name} is outside the primary beam main lobe "
                                  f"(model peak {peak:.3g} Jy of {expected:.3g} Jy)")
    t0 = time.perf_counter()
    progress.report("calibration", 3, 6, "steps (solve)")
    res = solve_calibration(d.vis, model, flags, d.ant1, d.ant2, d.times, d.freqs, nant=d.nant,
                            refant=refant, solint_s=solint_s, copy_flags=not write_flags)
    timings["solve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    progress.report("calibration", 4, 6, "steps (qa)")
    checks = corrected_checks(d.vis, res.flags, model, res, d.ant1, d.ant2, d.times)
    timings["qa"] = time.perf_counter() - t0
    del model
    qa = evaluate_qa(res, qa_thresholds, d.ant1, d.ant2, data_checks=checks, antenna_names=list(d.antenna_names),
                     input_flags=input_flagged)
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = table_prefix or Path(ms_path.rstrip("/")).name.removesuffix(".ms")
    progress.report("calibration", 5, 6, "steps (write tables)")
    btab = write_bandpass_table(out / f"{prefix}.B", res, ms_path,
                                history=f"bandpass on {cal.name}, refant {res.refant}")
    gtab = write_gain_table(out / f"{prefix}.G", res, ms_path,
                            history=f"gains on {cal.name}, refant {res.refant}, solint {solint_s}")
    timings["write_tables"] = time.perf_counter() - t0
    wf = None
    if write_flags:
        wf = res.flags
        if auto_flags is not None:   # autocorrelations are excluded from the solve, not bad: keep their flags
            wf[:, auto] = auto_flags
    applied = None
    rows = d.as_rows(wf) if apply and qa.passed else None
    if rows is not None:
        # one pass: CORRECTED_DATA from the data in memory, FLAG = stored flags | flagged solutions
        t0 = time.perf_counter()
        applied = apply_calibration(ms_path, res, None, data=rows[0], data_flags=rows[1])
        timings["apply"] = time.perf_counter() - t0
    else:
        if write_flags:
            t0 = time.perf_counter()
            store_flags(ms_path, d, wf)
            timings["write_flags"] = time.perf_counter() - t0
        if apply and qa.passed:
            t0 = time.perf_counter()
            applied = apply_calibration(ms_path, btab, gtab)
            timings["apply"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return {
        "ms": ms_path,
        "calibrator": cal.name,
        "bandpass_table": btab,
        "gain_table": gtab,
        "refant": int(res.refant),
        "refant_name": d.antenna_names[res.refant] if res.refant < len(d.antenna_names) else str(res.refant),
        "qa_passed": bool(qa.passed),
        "qa_reasons": list(qa.reasons),
        "metrics": {k: v for k, v in qa.metrics.items()},
        "rfi_flagged_fraction": None if rfi_fraction is None else float(rfi_fraction),
        "beam_geometry": geometry.as_dict(),
        "timings_s": {k: float(v) for k, v in timings.items()},
        "solver_timings_s": {k.removesuffix("_s"): float(res.iterations[k])
                             for k in ("prepare_s", "bandpass_s", "gains_s", "residual_s")},
        "applied": applied,
    }
