"""Full-size calibration benchmark on a synthetic DSA-110 group.

96 antennas with autocorrelations (4656 baselines), 768 channels, 2 pols,
24 integrations, a 5 Jy calibrator at the phase centre with sigma = 2.3 Jy per
visibility component, RFI injected.  Writes a temporary MS the way the
converter does (DATA, FLAG, and the imaging columns MODEL_DATA = 0 and
CORRECTED_DATA = DATA; ``--no-imaging-columns`` leaves them out, so that the
apply has to create CORRECTED_DATA), then times: reading the MS once, RFI
flagging, the model (a lazily evaluated point source: its cost is inside the
solve passes), the solve (pass 1, bandpass, gains, pass 2 with the outlier
flagging), writing the tables and applying the solutions (CORRECTED_DATA and
FLAG written in row chunks from the data already in memory, as the solve stage
does; the apply that reads the MS, as for target groups, is timed as well and
printed as a reference).  Prints each time, its ratio to the MS read time, the
totals with and without flagging against the 10 s goal, the old CASA chain's
774 s, and the accuracy against the known truth.

    .venv/bin/python benchmarks/bench_calibration.py [--nant 96] [--keep DIR] [--no-imaging-columns]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from engine.calibration.apply import apply_calibration, read_ms_for_solve  # noqa: E402
from engine.calibration.caltable import write_bandpass_table, write_gain_table  # noqa: E402
from engine.calibration.flagging import flag_rfi  # noqa: E402
from engine.calibration.qa import evaluate_qa  # noqa: E402
from engine.calibration.solver import calibrator_model, normalise_bandpass, solve_calibration  # noqa: E402
from engine.calibration.synthetic import inject_rfi, synthesize, write_ms  # noqa: E402

OLD_CASA_CHAIN_S = 774.0


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
        rfi, _ = inject_rfi(obs.vis, obs.ant1, obs.ant2, rng, args.sigma, n_channels=12, n_bursts=2,
                            bl_length=length)
        imaging_columns = not args.no_imaging_columns
        ms = write_ms(os.path.join(work, "bench.ms"), obs, imaging_columns=imaging_columns)
        print(f"setup (synthesize + write MS, not timed): {time.perf_counter() - t0:.1f} s; "
              f"vis {obs.vis.shape}, {obs.vis.nbytes / 1e9:.2f} GB; MS "
              + ("with MODEL_DATA/CORRECTED_DATA as the converter writes them (apply overwrites CORRECTED_DATA)"
                 if imaging_columns else "without imaging columns (apply creates CORRECTED_DATA)"))
        del obs.vis, obs.model
        os.system("sync")

        timings = {}
        cpu = {}
        t, c = time.perf_counter(), time.process_time()
        d = read_ms_for_solve(ms)
        timings["read MS (DATA, FLAG, UVW, ...)"] = time.perf_counter() - t
        cpu["read MS (DATA, FLAG, UVW, ...)"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        fr = flag_rfi(d.vis, d.flags, d.ant1, d.ant2, nant=d.nant)
        timings["RFI flag"] = time.perf_counter() - t
        cpu["RFI flag"] = time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        model = calibrator_model(obs.calibrator, d.uvw, d.times, d.freqs, d.phase_centre, lazy=True)
        timings["model (lazy: evaluated inside the solve)"] = time.perf_counter() - t
        cpu["model"] = time.process_time() - c

        # RFI detection statistics now (not timed): the solve adds its outlier flags in place
        cross = d.ant1 != d.ant2
        f = fr.flags[:, cross]
        m = rfi[:, cross]
        rfi_hit, rfi_false = f[m].mean(), f[~m].mean()
        del f, m

        t, c = time.perf_counter(), time.process_time()
        res = solve_calibration(d.vis, model, fr.flags, d.ant1, d.ant2, d.times, d.freqs, nant=d.nant,
                                copy_flags=False)
        solve_total = time.perf_counter() - t
        cpu["solve (all steps)"] = time.process_time() - c
        it = res.iterations
        timings["solve: pass 1 (time sums, coarse spectra)"] = it["prepare_s"]
        timings["solve: bandpass StEFCal (B1, B2)"] = it["bandpass_s"]
        timings["solve: gains StEFCal (G1, final G)"] = it["gains_s"]
        timings["solve: pass 2 (outliers, B2 sums) + noise"] = it["residual_s"]
        other = solve_total - it["prepare_s"] - it["bandpass_s"] - it["gains_s"] - it["residual_s"]
        timings["solve: other"] = other

        t, c = time.perf_counter(), time.process_time()
        bt = write_bandpass_table(os.path.join(work, "bench.B"), res, ms)
        gt = write_gain_table(os.path.join(work, "bench.G"), res, ms)
        timings["write tables"] = time.perf_counter() - t
        cpu["write tables"] = time.process_time() - c

        del model
        # as solve_ms(apply=True) in the pipeline: one pass writes CORRECTED_DATA from the data
        # already in memory and FLAG = RFI + outlier flags (autocorrelations as read) | flagged solutions
        t, c = time.perf_counter(), time.process_time()
        wf = res.flags
        wf[:, d.ant1 == d.ant2] = d.flags[:, d.ant1 == d.ant2]
        rows = d.as_rows(wf)
        applied = apply_calibration(ms, res, None, data=rows[0], data_flags=rows[1])
        timings["apply (CORRECTED_DATA + FLAG, data in memory)"] = time.perf_counter() - t
        cpu["apply (CORRECTED_DATA + FLAG, data in memory)"] = time.process_time() - c
        # reference, not in the totals: the target-group path, reading DATA and FLAG from the MS
        t, c = time.perf_counter(), time.process_time()
        apply_calibration(ms, bt, gt, update_flags=True)
        apply_disk_s, apply_disk_cpu = time.perf_counter() - t, time.process_time() - c

        read_s = timings["read MS (DATA, FLAG, UVW, ...)"]
        total = sum(timings.values())
        no_flag = total - timings["RFI flag"]
        print(f"\n{'step':45s} {'seconds':>8s} {'x read':>8s}")
        for k, v in timings.items():
            print(f"{k:45s} {v:8.2f} {v / read_s:8.2f}")
        print(f"{'TOTAL (read + flag + solve + tables + apply)':45s} {total:8.2f} {total / read_s:8.2f}")
        print(f"{'TOTAL without RFI flagging':45s} {no_flag:8.2f} {no_flag / read_s:8.2f}")
        print(f"(reference, not in the totals: apply reading DATA/FLAG from the MS, as for target groups: "
              f"{apply_disk_s:.2f} s = {apply_disk_s / read_s:.2f} x read, {apply_disk_cpu:.1f} CPU s; "
              f"{applied['newly_flagged']} samples flagged by flagged solutions)")
        print("\nCPU seconds (all threads) per stage: " + ", ".join(f"{k.split(' (')[0]} {v:.1f}" for k, v in cpu.items())
              + f"; total {sum(cpu.values()):.1f}")
        print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other processes inflate wall times)")
        for label, x in (("with RFI flagging", total), ("without RFI flagging", no_flag)):
            print(f"goal <= 10 s {label}: {'met' if x <= 10 else 'NOT met'} ({x:.2f} s); "
                  f"old CASA chain {OLD_CASA_CHAIN_S:.0f} s -> speed-up x{OLD_CASA_CHAIN_S / x:.0f}")
        print(f"StEFCal iterations: bandpass {it['bandpass']}, gains {it['gains']}")

        # accuracy against the truth (solver convention: refant phase 0, B mean amplitude 1)
        ref = res.refant
        B = obs.bandpass * np.conj(obs.bandpass[ref:ref + 1]) / np.abs(obs.bandpass[ref:ref + 1])
        Bn, _ = normalise_bandpass(B)
        J = obs.gains[:, :, None, :] * obs.bandpass[None]
        J = J * np.conj(J[:, ref:ref + 1]) / np.abs(J[:, ref:ref + 1])
        Gn = (J / Bn[None]).mean(axis=2)
        ok_b = ~res.bandpass_flags
        ok_g = ~res.gain_flags
        rb = res.bandpass[ok_b] / Bn[ok_b]
        rg = res.gains[ok_g] / Gn[ok_g]
        q = evaluate_qa(res, None, d.ant1, d.ant2)
        print(f"gain error:     amp {100 * np.sqrt(np.mean((np.abs(rg) - 1) ** 2)):.3f} % rms, "
              f"phase {np.degrees(np.sqrt(np.mean(np.angle(rg) ** 2))):.3f} deg rms")
        print(f"bandpass error: amp {100 * np.sqrt(np.mean((np.abs(rb) - 1) ** 2)):.3f} % rms, "
              f"phase {np.degrees(np.sqrt(np.mean(np.angle(rb) ** 2))):.3f} deg rms")
        print(f"RFI: {rfi_hit:.4f} of injected samples flagged, {rfi_false:.5f} of clean samples flagged "
              "(RFI flagger; the solve's outlier flags come on top)")
        print(f"QA passed: {q.passed} {q.reasons}; median SNR G {q.metrics['snr_median']:.0f}, "
              f"B {q.metrics['bandpass_snr_median']:.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
