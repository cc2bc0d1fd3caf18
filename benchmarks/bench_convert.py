"""Benchmark: UVH5 subband group -> Measurement Set, engine.convert vs the pyuvdata path.

    python benchmarks/bench_convert.py [--preset full|small|tiny] [--workdir DIR] [--keep]

Simulates one group in a temporary directory, then times, each in a fresh
worker process (so peak memory is per path and the function is exercised
through a ProcessPoolExecutor as the engine runs it):

* ``convert_group`` (with and without the MODEL_DATA/CORRECTED_DATA columns),
  with its own breakdown (read / phase / reorder / write / validate);
* the pyuvdata path the old pipeline used: for each subband read with
  pyuvdata, phase to the same centre, ``write_ms``, then combine the 16
  per-subband MSs (``casacore.tables.msutil.msconcat``).

Prints times, ratios, where the time goes and peak RSS of each worker.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_convert(files, out, imaging_columns):
    from engine.convert import convert_group

    tracemalloc.start()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    res = convert_group(files, out, imaging_columns=imaging_columns)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"wall": wall, "cpu": cpu, "result": res, "rss_mb": _rss_mb(),
            "traced_peak_mb": traced_peak / 2**20}


def run_pyuvdata(files, workdir, ra_deg, dec_deg):
    import warnings

    import numpy as np
    from casacore.tables import msutil
    from pyuvdata import UVData

    warnings.simplefilter("ignore")
    t = {"read": 0.0, "phase": 0.0, "write_ms": 0.0, "combine": 0.0}
    parts = []
    c0 = _cpu_s()
    t_all = time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        uv = UVData.from_file(str(f), file_type="uvh5")
        t1 = time.perf_counter()
        uv.phase(lon=np.radians(ra_deg), lat=np.radians(dec_deg), epoch="J2000", cat_name="pc")
        t2 = time.perf_counter()
        ms = Path(workdir) / (Path(f).stem + ".ms")
        uv.write_ms(str(ms))
        t3 = time.perf_counter()
        t["read"] += t1 - t0
        t["phase"] += t2 - t1
        t["write_ms"] += t3 - t2
        parts.append(str(ms))
        del uv
    t0 = time.perf_counter()
    msutil.msconcat(sorted(parts), str(Path(workdir) / "combined.ms"), concatTime=False)
    t["combine"] = time.perf_counter() - t0
    return {"wall": time.perf_counter() - t_all, "cpu": _cpu_s() - c0, "timings": t, "rss_mb": _rss_mb()}


def _worker(fn, *args):
    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", choices=["tiny", "small", "full"])
    ap.add_argument("--workdir", default=None, help="where to put the files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    ap.add_argument("--skip-pyuvdata", action="store_true")
    args = ap.parse_args(argv)

    from engine.simulator import simulate

    root = Path(tempfile.mkdtemp(prefix="bench_convert_", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        (g,) = simulate(root / "sim", preset=args.preset)
        t_sim = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in g.files)
        print(f"simulate {args.preset}: {t_sim:.1f} s, {len(g.files)} files, {size / 1e9:.2f} GB")
        # flush the freshly written input files first: otherwise their write-back competes
        # with the MS writes (in operations the files arrive long before conversion)
        t0 = time.perf_counter()
        os.sync()
        print(f"sync: {time.perf_counter() - t0:.1f} s")

        runs = {}
        for label, ic in (("convert_group (MODEL/CORRECTED columns)", True),
                          ("convert_group (DATA only)", False)):
            out = root / f"conv_{int(ic)}.ms"
            r = _worker(run_convert, [str(p) for p in g.files], str(out), ic)
            runs[label] = r
            res = r["result"]
            vis_bytes = res.rows * res.channels * res.polarizations * 8
            print(f"\n{label}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU   peak RSS {r['rss_mb']:.0f} MB "
                  f"({r['rss_mb'] * 2**20 / vis_bytes:.2f} x the {vis_bytes / 2**20:.0f} MB of visibilities; "
                  f"tracemalloc peak {r['traced_peak_mb']:.0f} MB)")
            tm = res.timings
            order = ["headers", "geometry", "read", "phase", "reorder", "write_meta", "write_data",
                     "write_subtables", "write_close", "write", "validate", "total"]
            print("   " + "  ".join(f"{k} {tm[k]:.2f}" for k in order if k in tm))
            print(f"   rows {res.rows}, channels {res.channels}, antennas {res.antennas}, "
                  f"phase centre {res.phase_center_ra_deg:.4f} {res.phase_center_dec_deg:+.4f}")
            shutil.rmtree(out, ignore_errors=True)
            os.sync()

        if not args.skip_pyuvdata:
            res = runs["convert_group (MODEL/CORRECTED columns)"]["result"]
            pdir = root / "pyuvdata"
            pdir.mkdir()
            p = _worker(run_pyuvdata, [str(f) for f in g.files], str(pdir), res.phase_center_ra_deg,
                        res.phase_center_dec_deg)
            print(f"\npyuvdata path (read, phase, write_ms per subband, msconcat): {p['wall']:.2f} s wall, "
                  f"{p['cpu']:.2f} s CPU   "
                  f"peak RSS {p['rss_mb']:.0f} MB")
            print("   " + "  ".join(f"{k} {v:.2f}" for k, v in p["timings"].items()))
            print("\nspeed-up of convert_group over the pyuvdata path (which writes DATA only):")
            for label, r in runs.items():
                print(f"   {label}: {p['wall'] / r['wall']:.1f} x wall, {p['cpu'] / r['cpu']:.1f} x CPU")
            print(f"   (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; wall times on a "
                  "shared machine vary a lot)")
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
