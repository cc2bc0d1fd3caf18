"""FITS products and PNG thumbnails.

Header layout (checked with ``fitsverify -e`` and astropy.wcs in the tests):
4 axes RA---SIN, DEC--SIN, FREQ, STOKES; CRPIX1/2 = N/2 + 1 (1-based) is the
phase centre; CDELT1 < 0 (RA increases to the left / east); CDELT3 = the
imaged bandwidth around CRVAL3 = mean frequency; STOKES = 1 (I).  Beam in
degrees (BMAJ/BMIN/BPA), BUNIT 'Jy/beam' ('Jy/pixel' for the model).
No RESTFRQ: this is a continuum image (no line rest frequency applies).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .imager import ImageResult

UNITS = {"image": "Jy/beam", "residual": "Jy/beam", "dirty": "Jy/beam", "psf": "", "model": "Jy/pixel"}


def _time_iso(mjd_seconds: float) -> tuple[str, float]:
    from astropy.time import Time

    t = Time(mjd_seconds / 86400.0, format="mjd", scale="utc")
    return t.isot, float(t.mjd)


def make_header(res: ImageResult, kind: str = "image", history: list[str] | None = None):
    """astropy Header for one product of ``res``."""
    from astropy.io import fits

    h = fits.Header()
    n = res.npix
    ra0, dec0 = (math.degrees(res.phase_dir[0]) % 360.0, math.degrees(res.phase_dir[1]))
    cell = res.cell_arcsec / 3600.0
    h["BUNIT"] = (UNITS.get(kind, "Jy/beam"), "brightness unit")
    h["BTYPE"] = "Intensity"
    h["CTYPE1"] = "RA---SIN"
    h["CRVAL1"] = ra0
    h["CDELT1"] = -cell
    h["CRPIX1"] = n / 2 + 1.0
    h["CUNIT1"] = "deg"
    h["CTYPE2"] = "DEC--SIN"
    h["CRVAL2"] = dec0
    h["CDELT2"] = cell
    h["CRPIX2"] = n / 2 + 1.0
    h["CUNIT2"] = "deg"
    h["CTYPE3"] = "FREQ"
    h["CRVAL3"] = (res.ref_freq, "mean frequency of the imaged data")
    h["CDELT3"] = (res.bandwidth if res.bandwidth > 0 else 1.0, "imaged bandwidth")
    h["CRPIX3"] = 1.0
    h["CUNIT3"] = "Hz"
    h["CTYPE4"] = "STOKES"
    h["CRVAL4"] = 1.0
    h["CDELT4"] = 1.0
    h["CRPIX4"] = 1.0
    h["CUNIT4"] = ""
    h["LONPOLE"] = 180.0
    h["LATPOLE"] = dec0
    if res.phase_dir_frame == "FK5":
        h["RADESYS"] = "FK5"
        h["EQUINOX"] = 2000.0
    else:
        h["RADESYS"] = "ICRS"
    h["SPECSYS"] = ("TOPOCENT", "frequencies as recorded by the telescope")
    h["BMAJ"] = (res.beam.bmaj_deg, "restoring beam major axis FWHM (deg)")
    h["BMIN"] = (res.beam.bmin_deg, "restoring beam minor axis FWHM (deg)")
    h["BPA"] = (res.beam.bpa_deg, "restoring beam position angle (deg, E of N)")
    iso, mjd = _time_iso(res.time_range[0])
    h["DATE-OBS"] = (iso, "first integration centre (UTC)")
    h["MJD-OBS"] = mjd
    h["TIMESYS"] = "UTC"
    if res.telescope:
        h["TELESCOP"] = res.telescope
    if res.observer:
        h["OBSERVER"] = res.observer
    h["ORIGIN"] = "contimg-console"
    h["OBJECT"] = "drift"
    h["IMAGER"] = (res.backend, "imaging backend")
    h["DATACOL"] = (res.data_column, "MS column imaged")
    h["NOISE"] = (float(res.noise), "robust rms of residual (Jy/beam)")
    h["NITER"] = (int(res.n_iter), "CLEAN components subtracted")
    for line in history or []:
        h.add_history(line[:70])
    if res.column_note:
        h.add_history(res.column_note[:70])
    return h


def write_fits(path: str, data: np.ndarray, res: ImageResult, kind: str = "image", history=None) -> str:
    """Write the [y, x] array as a 4-axis primary HDU (1, 1, ny, nx)."""
    from astropy.io import fits

    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32)[None, None, :, :],
                          header=make_header(res, kind, history))
    hdu.writeto(path, overwrite=True, output_verify="exception")
    return path


def write_products(out_dir: str, prefix: str, res: ImageResult, history=None,
                   kinds=("image", "model", "residual", "psf")) -> dict:
    paths = {}
    for k in kinds:
        p = os.path.join(out_dir, f"{prefix}-{k}.fits")
        write_fits(p, getattr(res, k), res, k, history)
        paths[k] = p
    return paths


def stretch_asinh(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.95, a: float = 0.05) -> np.ndarray:
    """Map to [0, 1] with an asinh stretch between two percentiles."""
    finite = np.isfinite(img)
    vals = img[finite]
    if vals.size == 0:
        return np.zeros_like(img, dtype=np.float32)
    lo, hi = np.percentile(vals, [lo_pct, hi_pct])
    hi = max(hi, float(vals.max()) * 0.5, lo + 1e-12)
    x = np.clip((np.where(finite, img, lo) - lo) / (hi - lo), 0, 1)
    return (np.arcsinh(x / a) / np.arcsinh(1 / a)).astype(np.float32)


def write_png(path: str, img: np.ndarray, max_size: int = 512) -> str:
    """Greyscale asinh thumbnail, north up / east left, at most max_size px."""
    from PIL import Image

    img = np.asarray(img, dtype=np.float64)
    f = int(math.ceil(max(img.shape) / max_size))
    if f > 1:
        ny, nx = (img.shape[0] // f) * f, (img.shape[1] // f) * f
        img = img[:ny, :nx].reshape(ny // f, f, nx // f, f).max(axis=(1, 3))
    s = stretch_asinh(img)
    arr = (s[::-1] * 255).round().astype(np.uint8)  # FITS row 0 is the bottom
    Image.fromarray(arr, mode="L").save(path, optimize=True)
    return path
