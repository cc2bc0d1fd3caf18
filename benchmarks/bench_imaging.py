"""Imaging benchmark: built-in imager vs WSClean, and the full-size default run.

    .venv/bin/python benchmarks/bench_imaging.py            # both parts
    .venv/bin/python benchmarks/bench_imaging.py --part full
    .venv/bin/python benchmarks/bench_imaging.py --part compare --cmp-nant 48 --cmp-nchan 192

Part "compare": one synthetic MS imaged by both backends with the same image
size, cell, weighting, niter and restoring beam (built-in with
chan_average=1, i.e. the same visibilities WSClean grids); prints both wall
times, the ratio, flux/position agreement of the simulated sources and where
the time goes.  Skipped when wsclean is not on PATH.

Part "full": a full-size DSA-110-like group (96 antennas, 768 channels,
24 x 12.88 s) imaged with the defaults (3.5 deg, beam-based cell, Briggs 0,
automatic channel averaging); target <= 45 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from astropy.utils import iers  # noqa: E402

iers.conf.auto_max_age = None
iers.conf.auto_download = False

import numpy as np  # noqa: E402

from engine.imaging.pipeline import image_ms  # noqa: E402
from engine.imaging.synth import make_synthetic_ms  # noqa: E402
from engine.sources.finder import find_sources_fits  # noqa: E402

RA0, DEC0 = 180.0, 37.2


def sky(rng, n, radius_deg, fmin=0.02, fmax=1.0):
    """Random point sources within radius_deg of the phase centre (plus one at the centre)."""
    r = radius_deg * np.sqrt(rng.uniform(0, 1, n))
    th = rng.uniform(0, 2 * np.pi, n)
    ra = RA0 + r * np.sin(th) / np.cos(np.radians(DEC0))
    dec = DEC0 + r * np.cos(th)
    flux = np.exp(rng.uniform(np.log(fmin), np.log(fmax), n))
    return [(RA0, DEC0, 1.0)] + list(zip(ra, dec, flux))


def show_timings(label, r):
    t = r["timings"]
    keys = [k for k in ("reading", "cell_choice", "weighting", "gridding", "psf", "degridding", "deconvolution",
                        "restoring", "writing", "wsclean_total", "wall") if k in t]
    print(f"  {label:9s} " + "  ".join(f"{k}={t[k]:.2f}s" for k in keys))
    print(f"  {'':9s} npix={r['npix']} cell={r['cell_arcsec']:.3f}\" beam={r['beam']['bmaj_arcsec']:.1f}\"x"
          f"{r['beam']['bmin_arcsec']:.1f}\" pa={r['beam']['bpa_deg']:.1f} noise={r['noise_jy'] * 1e3:.3f} mJy "
          f"niter={r['n_iter']} majors={r['n_major']} stop={r['stop_reason']} "
          f"chan_avg={r['extra'].get('chan_average', '-')}")


def match(found, sources):
    out = []
    for ra, dec, flux in sources:
        d = [np.hypot((s["ra_deg"] - ra) * np.cos(np.radians(dec)), s["dec_deg"] - dec) for s in found]
        if not d:
            out.append(None)
            continue
        out.append((found[int(np.argmin(d))], min(d) * 3600))
    return out


def part_compare(work, a):
    if shutil.which("wsclean") is None:
        print("compare: wsclean not on PATH, skipped")
        return
    ms = os.path.join(work, "cmp.ms")
    rng = np.random.default_rng(1)
    srcs = sky(rng, 8, a.cmp_fov * 0.4, 0.05, 0.5)
    t0 = time.perf_counter()
    if not os.path.exists(ms):  # a kept --workdir reuses its MS (same seed => same sky)
        make_synthetic_ms(ms, srcs, ra0_deg=RA0, dec0_deg=DEC0, nant=a.cmp_nant, nchan=a.cmp_nchan, ntime=24,
                          noise_jy=0.5, columns=("DATA", "CORRECTED_DATA"), layout="dsa")
    print(f"compare: MS {a.cmp_nant} ant x {a.cmp_nchan} ch x 24 t ready in {time.perf_counter() - t0:.1f}s")
    p = dict(fov_deg=a.cmp_fov, niter=a.niter, chan_average=1, nthreads=a.threads)
    first = image_ms(ms, os.path.join(work, "b0"), dict(p, niter=0))  # fixes cell/size/beam for both
    p.update(cell_arcsec=first["cell_arcsec"], imsize=first["npix"],
             restoring_beam=(first["beam"]["bmaj_arcsec"], first["beam"]["bmin_arcsec"], first["beam"]["bpa_deg"]))
    rb = image_ms(ms, os.path.join(work, "b"), p)
    rw = image_ms(ms, os.path.join(work, "w"), p, backend="wsclean")
    print(f"  built-in {rb['timings']['wall']:.2f}s   wsclean {rw['timings']['wall']:.2f}s   "
          f"ratio built-in/wsclean = {rb['timings']['wall'] / rw['timings']['wall']:.2f}")
    show_timings("built-in", rb)
    show_timings("wsclean", rw)
    fb = find_sources_fits(rb["products"]["image"])
    fw = find_sources_fits(rw["products"]["image"])
    beam = rb["beam"]["bmin_arcsec"]
    print("  source  true_Jy  builtin_Jy  wsclean_Jy  ratio   sep_b/beam  sep_w/beam  b-w/beam")
    for (ra, dec, f), mb, mw in zip(srcs, match(fb, srcs), match(fw, srcs)):
        if mb is None or mw is None:
            continue
        sb, db = mb
        sw, dw = mw
        dbw = np.hypot(sb["x"] - sw["x"], sb["y"] - sw["y"]) * rb["cell_arcsec"] / beam
        print(f"  {ra:8.3f} {f:8.4f} {sb['peak_jy']:10.4f} {sw['peak_jy']:11.4f} {sb['peak_jy'] / sw['peak_jy']:7.4f}"
              f" {db / beam:10.3f} {dw / beam:11.3f} {dbw:9.3f}")


def part_full(work, a):
    ms = a.ms or os.path.join(work, "full.ms")
    rng = np.random.default_rng(2)
    srcs = sky(rng, 12, 1.5, 0.01, 1.0)
    if not a.ms and not os.path.exists(ms):
        t0 = time.perf_counter()
        make_synthetic_ms(ms, srcs, ra0_deg=RA0, dec0_deg=DEC0, nant=96, nchan=768, ntime=24, noise_jy=1.0,
                          columns=("DATA", "CORRECTED_DATA"), layout="dsa")
        print(f"full: synthetic MS 96 ant x 768 ch x 24 t written in {time.perf_counter() - t0:.1f}s")
    p = dict(niter=a.niter, nthreads=a.threads)
    r = image_ms(ms, os.path.join(work, "full"), p)
    print(f"full: built-in default imaging wall time {r['timings']['wall']:.1f}s (target <= 45 s on 2 cores)")
    show_timings("built-in", r)
    if not a.ms:
        found = find_sources_fits(r["products"]["image"])
        ok = [(m, s) for m, s in zip(match(found, srcs), srcs) if m and m[1] < 0.2 * r["beam"]["bmin_arcsec"]]
        strong = [s for s in srcs if s[2] > 10 * r["noise_jy"]]
        print(f"  recovered {len(ok)}/{len(srcs)} simulated sources ({len(strong)} above 10 sigma); "
              f"median |flux error| {np.median([abs(m[0]['int_flux_jy'] / s[2] - 1) for m, s in ok]) * 100:.2f}%"
              if ok else "  no sources recovered")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("all", "compare", "full"), default="all")
    ap.add_argument("--cmp-nant", type=int, default=48)
    ap.add_argument("--cmp-nchan", type=int, default=96)
    ap.add_argument("--cmp-fov", type=float, default=1.0)
    ap.add_argument("--niter", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ms", help="image this MS in the full part instead of a synthetic one")
    ap.add_argument("--workdir", help="keep products here (default: a temporary directory)")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="bench-imaging-")
    os.makedirs(work, exist_ok=True)
    try:
        if a.part in ("all", "compare"):
            part_compare(work, a)
        if a.part in ("all", "full"):
            part_full(work, a)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
