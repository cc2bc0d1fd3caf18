"""WSClean backend: the same imaging run done by an external ``wsclean``.

Parameters are translated to WSClean flags (``wsclean_command``); cell and
size come from the same rules as the built-in imager (the MS is read once
for that when no explicit cell/imsize is given).  WSClean runs in a
temporary directory with ``-no-update-model-required`` so the input MS is not
modified; its FITS outputs are read back into an ``ImageResult``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np

from engine.errors import PermanentStageError, TransientStageError

from .imager import Beam, ImageResult, robust_std
from .params import ImagingParams


def find_wsclean(path: str | None = None) -> str:
    """Absolute path of the wsclean binary (``path``, $CONTIMG_WSCLEAN or PATH)."""
    cand = path or os.environ.get("CONTIMG_WSCLEAN") or "wsclean"
    found = shutil.which(cand)
    if not found:
        raise PermanentStageError(f"wsclean not found ({cand!r} is not an executable on PATH)")
    return found


def wsclean_command(exe: str, ms_path: str, name: str, p: ImagingParams, npix: int, cell_arcsec: float,
                    data_column: str, temp_dir: str | None = None) -> list[str]:
    cmd = [exe, "-name", name, "-size", str(npix), str(npix), "-scale", f"{float(cell_arcsec):.10g}asec"]
    if p.weighting == "briggs":
        cmd += ["-weight", "briggs", f"{float(p.robust):g}"]
    else:
        cmd += ["-weight", p.weighting]
    cmd += ["-niter", str(p.niter), "-gain", f"{p.gain:g}", "-mgain", f"{p.mgain:g}"]
    if p.auto_threshold > 0:
        cmd += ["-auto-threshold", f"{p.auto_threshold:g}"]
    if p.auto_mask > 0 and p.auto_mask > p.auto_threshold:
        cmd += ["-auto-mask", f"{p.auto_mask:g}"]
    cmd += ["-nmiter", str(p.max_major)]
    if p.restoring_beam:
        bmaj, bmin, bpa = p.restoring_beam
        cmd += ["-beam-shape", f"{bmaj:.6g}asec", f"{bmin:.6g}asec", f"{bpa:.6g}deg"]
    cmd += ["-pol", "I", "-data-column", data_column, "-j", str(p.threads), "-use-wgridder",
            "-wgridder-accuracy", f"{p.epsilon:g}", "-no-update-model-required"]
    if temp_dir:
        cmd += ["-temp-dir", temp_dir]
    cmd.append(ms_path)
    return cmd


_TIMING = re.compile(r"Inversion: ([\d:.]+), prediction: ([\d:.]+), deconvolution: ([\d:.]+)")


def _secs(hms: str) -> float:
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _grid_from_ms(ms_path: str, p: ImagingParams) -> tuple[float, int, str, str, float]:
    """(cell_arcsec, npix, data_column, column_note, read_seconds) with our rules."""
    from .imager import choose_grid
    from .msread import read_ms

    data = read_ms(ms_path, p.data_column, p.fallback_to_data, p.chunk_rows, p.chan_average, p.fov_deg)
    cell, npix, _, _ = choose_grid(data, p, compute_weights=False)
    return cell, npix, data.data_column, data.column_note, data.read_seconds


def _column_only(ms_path: str, p: ImagingParams) -> tuple[str, str]:
    from casacore import tables

    from .msread import choose_column

    if not os.path.isdir(ms_path):
        raise PermanentStageError(f"measurement set not found: {ms_path}")
    t = tables.table(ms_path, ack=False, readonly=True)
    try:
        return choose_column(t, p.data_column, p.fallback_to_data)
    finally:
        t.close()


def run_wsclean(ms_path: str, params: ImagingParams | dict | None = None, *, wsclean_path: str | None = None,
                work_dir: str | None = None, timeout: float | None = 6 * 3600) -> ImageResult:
    """Image ``ms_path`` with WSClean; return an ``ImageResult`` like the built-in imager."""
    from astropy.io import fits
    from astropy.time import Time

    p = ImagingParams.from_any(params)
    exe = find_wsclean(wsclean_path)
    t0 = time.perf_counter()
    read_s = 0.0
    if p.cell_arcsec is not None and p.imsize:
        cell, npix = float(p.cell_arcsec), int(p.imsize)
        column, note = _column_only(ms_path, p)
    else:
        cell, npix, column, note, read_s = _grid_from_ms(ms_path, p)
    t_choice = time.perf_counter() - t0
    own_tmp = work_dir is None
    wd = tempfile.mkdtemp(prefix="wsclean-") if own_tmp else tempfile.mkdtemp(prefix="wsclean-", dir=work_dir)
    try:
        name = os.path.join(wd, "ws")
        cmd = wsclean_command(exe, ms_path, name, p, npix, cell, column, temp_dir=wd)
        t1 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TransientStageError(f"wsclean timed out after {timeout} s on {ms_path}") from exc
        t_run = time.perf_counter() - t1
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = " | ".join(log.strip().splitlines()[-5:])
            raise PermanentStageError(f"wsclean failed (exit {proc.returncode}) on {ms_path}: {tail}")
        arrays = {}
        for kind in ("image", "model", "residual", "psf", "dirty"):
            path = f"{name}-{kind}.fits"
            if not os.path.exists(path):
                raise PermanentStageError(f"wsclean did not write {os.path.basename(path)}")
            with fits.open(path) as h:
                arrays[kind] = np.ascontiguousarray(h[0].data[0, 0], dtype=np.float32)
                if kind == "image":
                    hdr = h[0].header.copy()
    finally:
        if own_tmp:
            shutil.rmtree(wd, ignore_errors=True)
    m = _TIMING.search(log)
    timings = {"reading": read_s, "cell_choice": t_choice - read_s, "wsclean_total": t_run}
    if m:
        timings.update(gridding=_secs(m.group(1)), degridding=_secs(m.group(2)), deconvolution=_secs(m.group(3)))
    timings["imaging_total"] = t_run
    timings["total"] = time.perf_counter() - t0
    majors = re.findall(r"(\d+) major iterations were performed", log)
    niters = re.findall(r"Performed (\d+) iterations in total", log)
    if "maximum number of iterations was reached" in log:
        reason = "niter"
    elif "Stopped on peak" in log:
        reason = "threshold"
    else:
        reason = "unknown"
    beam = Beam(float(hdr["BMAJ"]) * 3600.0, float(hdr["BMIN"]) * 3600.0, float(hdr["BPA"]))
    date = hdr.get("DATE-OBS")
    t_first = Time(date, scale="utc").mjd * 86400.0 if date else 0.0
    frame = "FK5" if "EQUINOX" in hdr and hdr.get("RADESYS", "FK5") != "ICRS" else "ICRS"
    residual = arrays["residual"]
    image = arrays["image"]
    return ImageResult(
        image=image, model=arrays["model"], residual=residual, psf=arrays["psf"], dirty=arrays["dirty"],
        beam=beam, cell_arcsec=float(cell), npix=int(npix), noise=robust_std(residual), peak=float(image.max()),
        phase_dir=(math.radians(float(hdr["CRVAL1"])), math.radians(float(hdr["CRVAL2"]))), phase_dir_frame=frame,
        ref_freq=float(hdr["CRVAL3"]), bandwidth=float(hdr["CDELT3"]), time_range=(t_first, t_first),
        telescope=str(hdr.get("TELESCOP", "")), observer=str(hdr.get("OBSERVER", "")), data_column=column,
        column_note=note, n_components=int(np.count_nonzero(arrays["model"])),
        n_iter=int(niters[-1]) if niters else 0, n_major=int(majors[-1]) if majors else 0, stop_reason=reason,
        timings=timings, params=p.to_dict(), backend="wsclean",
        extra={"wsclean_command": " ".join(cmd), "wsclean_version": str(hdr.get("WSCVERSI", ""))},
    )
