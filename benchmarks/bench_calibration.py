"""Full-size calibration benchmark: the solve stage's own function on a synthetic DSA-110 group.

96 antennas with autocorrelations (4656 baselines), 768 channels, 2 pols, 24
integrations, a 5 Jy calibrator at the phase centre with sigma = 2.3 Jy per
visibility component, RFI injected.  The MS is written the way the converter
writes it (DATA, FLAG and the imaging columns MODEL_DATA = 0, CORRECTED_DATA =
DATA; ``--no-imaging-columns`` leaves them out, so the apply has to create
CORRECTED_DATA).  Then, each in a fresh child process (so its peak RSS is the
stage's own, as in a pool worker):

* the solve stage: ``pristine_flags`` + ``solve_ms(apply=True)`` -- read, RFI
  flagging, model, solve (pass 1, bandpass, gains, pass 2), the QA on the
  corrected calibrator, tables, and the apply of its own solutions from the data
  in memory; goal <= 10 s and <= 2 GB peak;
* the target-group path: ``pristine_flags`` + ``apply_calibration`` reading DATA
  and FLAG from the MS; goal <= 3 s.

Prints each step, its ratio to the MS read time (disk and CPU speed), the goals,
the old CASA chain's 774 s and the accuracy against the known truth (read back
from the tables written).

    .venv/bin/python benchmarks/bench_calibration.py [--nant 96] [--keep DIR] [--no-imaging-columns]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from engine.calibration.caltable import read_caltable  # noqa: E402
from engine.calibration.solver import normalise_bandpass  # noqa: E402
from engine.calibration.synthetic import inject_rfi, synthesize, write_ms  # noqa: E402

OLD_CASA_CHAIN_S = 774.0
GOAL_SOLVE_S = 10.0
GOAL_SOLVE_GB = 2.0
GOAL_APPLY_S = 3.0


def _peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def _solve_child(ms: str, calibrator, out_dir: str) -> dict:
    from engine.calibration.flagstore import pristine_flags
    from engine.calibration.solve_ms import solve_ms

    t, c = time.perf_counter(), time.process_time()
    pristine_flags(ms)
    flags_s = time.perf_counter() - t
    res = solve_ms(ms, calibrator, out_dir, apply=True)
    return {"result": res, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
            "pristine_flags_s": flags_s, "peak_gb": _peak_rss_gb()}


def _apply_child(ms: str, btab: str, gtab: str) -> dict:
    from engine.calibration.apply import apply_calibration
    from engine.calibration.flagstore import pristine_flags

    t, c = time.perf_counter(), time.process_time()
    pristine_flags(ms)
    applied = apply_calibration(ms, btab, gtab)
    return {"applied": applied, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
            "peak_gb": _peak_rss_gb()}


def _read_child(ms: str) -> float:
    from engine.calibration.apply import read_ms_for_solve

    t = time.perf_counter()
    read_ms_for_solve(ms)
    return time.perf_counter() - t


def _in_child(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nant", type=int, default=96)
    ap.add_argument("--nchan", type=int, default=768)
    ap.add_argument("--ntime", type=int, default=24)
    ap.add_argument("--sigma", type=float, default=2.3, help="noise per real/imag component (Jy)")
    ap.add_argument("--keep", default=None, help="directory to keep the MS and tables in")
    ap.add_argument("--no-imaging-columns", action="store_true",
                    help="write the MS without MODEL_DATA/CORRECTED_DATA (the apply then adds CORRECTED_DATA)")
    args = ap.parse_args(argv)

    work = args.keep or tempfile.mkdtemp(prefix="bench_cal_")
    os.makedirs(work, exist_ok=True)
    try:
        t0 = time.perf_counter()
        obs = synthesize(nant=args.nant, nchan=args.nchan, ntime=args.ntime, sigma=args.sigma, flux_jy=5.0, seed=1)
        rng = np.random.default_rng(2)
        length = np.linalg.norm(obs.uvw[args.ntime // 2], axis=1)
        inject_rfi(obs.vis, obs.ant1, obs.ant2, rng, args.sigma, n_channels=12, n_bursts=2, bl_length=length)
        imaging_columns = not args.no_imaging_columns
        ms = write_ms(os.path.join(work, "bench.ms"), obs, imaging_columns=imaging_columns)
        size_gb = obs.vis.nbytes / 1e9
        print(f"setup (synthesize + write MS, not timed): {time.perf_counter() - t0:.1f} s; "
              f"vis {obs.vis.shape}, {size_gb:.2f} GB; MS "
              + ("with MODEL_DATA/CORRECTED_DATA as the converter writes them (apply overwrites CORRECTED_DATA)"
                 if imaging_columns else "without imaging columns (apply creates CORRECTED_DATA)"))
        del obs.vis, obs.model
        os.system("sync")

        read_s = _in_child(_read_child, ms)
        solve = _in_child(_solve_child, ms, obs.calibrator, os.path.join(work, "tables"))
        res = solve["result"]
        apply = _in_child(_apply_child, ms, res["bandpass_table"], res["gain_table"])

        tm, st = res["timings_s"], res["solver_timings_s"]
        steps = [("pristine flags (FLAG_CONVERTED copy)", solve["pristine_flags_s"]),
                 ("read MS (DATA, FLAG, UVW, ...)", tm["read"]), ("RFI flag (in place)", tm.get("flag", 0.0)),
                 ("model (lazy: evaluated inside the solve)", tm["model"]),
                 ("solve: pass 1 (time sums, coarse spectra)", st["prepare"]),
                 ("solve: bandpass StEFCal (B1, B2)", st["bandpass"]),
                 ("solve: gains StEFCal (G1, final G)", st["gains"]),
                 ("solve: pass 2 (outliers, B2 sums) + noise", st["residual"]),
                 ("solve: other", tm["solve"] - sum(st.values())),
                 ("QA on the corrected calibrator", tm["qa"]),
                 ("write tables", tm["write_tables"]),
                 ("apply (CORRECTED_DATA + FLAG, data in memory)", tm.get("apply", 0.0))]
        other = solve["wall_s"] - sum(v for _, v in steps)
        steps.append(("other (QA gates, flags for the MS, ...)", other))
        print(f"\nreference: reading the MS for the solve in a fresh process = {read_s:.2f} s")
        print(f"\n{'solve stage step':47s} {'seconds':>8s} {'x read':>8s}")
        for k, v in steps:
            print(f"{k:47s} {v:8.2f} {v / read_s:8.2f}")
        total = solve["wall_s"]
        print(f"{'TOTAL solve stage':47s} {total:8.2f} {total / read_s:8.2f}   ({solve['cpu_s']:.1f} CPU s)")
        no_flag = total - tm.get("flag", 0.0)
        print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other processes inflate wall times)")

        print("\ngoal, figure, ratio")
        print(f"  solve stage <= {GOAL_SOLVE_S:.0f} s: {'met' if total <= GOAL_SOLVE_S else 'NOT met'} ({total:.2f} s, "
              f"x{total / GOAL_SOLVE_S:.2f} of the goal; without RFI flagging {no_flag:.2f} s); "
              f"old CASA chain {OLD_CASA_CHAIN_S:.0f} s -> speed-up x{OLD_CASA_CHAIN_S / total:.0f}")
        print(f"  solve peak RSS <= {GOAL_SOLVE_GB:.0f} GB: {'met' if solve['peak_gb'] <= GOAL_SOLVE_GB else 'NOT met'} "
              f"({solve['peak_gb']:.2f} GB = {solve['peak_gb'] / size_gb:.2f} x the visibilities' {size_gb:.2f} GB)")
        print(f"  target apply (pristine flags + apply from the MS) <= {GOAL_APPLY_S:.0f} s: "
              f"{'met' if apply['wall_s'] <= GOAL_APPLY_S else 'NOT met'} ({apply['wall_s']:.2f} s = "
              f"{apply['wall_s'] / read_s:.2f} x read, {apply['cpu_s']:.1f} CPU s, peak {apply['peak_gb']:.2f} GB; "
              f"{apply['applied']['newly_flagged']} samples flagged by flagged solutions)")

        # accuracy against the truth (solver convention: refant phase 0, B mean amplitude 1)
        bt, gt = read_caltable(res["bandpass_table"]), read_caltable(res["gain_table"])
        Bs, Bf = bt.cparam[0], bt.flags[0]                     # (nant, C, P)
        Gs, Gf = gt.cparam[:, :, 0], gt.flags[:, :, 0]         # (T, nant, P)
        ref = res["refant"]
        B = obs.bandpass * np.conj(obs.bandpass[ref:ref + 1]) / np.abs(obs.bandpass[ref:ref + 1])
        Bn, _ = normalise_bandpass(B)
        J = obs.gains[:, :, None, :] * obs.bandpass[None]
        J = J * np.conj(J[:, ref:ref + 1]) / np.abs(J[:, ref:ref + 1])
        Gn = (J / Bn[None]).mean(axis=2)
        rb = Bs[~Bf] / Bn[~Bf]
        rg = Gs[~Gf] / Gn[~Gf]
        print(f"\ngain error:     amp {100 * np.sqrt(np.mean((np.abs(rg) - 1) ** 2)):.3f} % rms, "
              f"phase {np.degrees(np.sqrt(np.mean(np.angle(rg) ** 2))):.3f} deg rms")
        print(f"bandpass error: amp {100 * np.sqrt(np.mean((np.abs(rb) - 1) ** 2)):.3f} % rms, "
              f"phase {np.degrees(np.sqrt(np.mean(np.angle(rb) ** 2))):.3f} deg rms")
        m = res["metrics"]
        print(f"RFI flagged: {res['rfi_flagged_fraction']:.4f} of the cross-correlation samples")
        print(f"QA passed: {res['qa_passed']} {res['qa_reasons']}; median SNR G {m['snr_median']:.0f}, "
              f"B {m['bandpass_snr_median']:.0f}; residual {m['residual_ratio']:.3f} x thermal, "
              f"closure phase {m['closure_phase_rms_deg']:.2f} deg (noise {m['closure_phase_expected_deg']:.2f})")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
