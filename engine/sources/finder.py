"""Blob detection and Gaussian fitting on a restored (Jy/beam) image.

Steps
1. background and rms maps: sigma-clipped (median, 1.4826*MAD) statistics in
   boxes on a grid (step = box/2), bilinearly interpolated to every pixel;
2. islands: connected pixels with (I - bkg)/rms > ``analysis_sigma`` that
   contain at least one pixel above ``detect_sigma`` (default 5);
3. one elliptical Gaussian per island (scipy least squares on the island,
   dilated by 2 px); integrated flux S = A * (theta_M theta_m) / (bmaj bmin);
4. errors from Condon (1997, PASP 109, 166) eq. 21 & 41 with the noise
   correlation length theta_N = sqrt(bmaj * bmin) of the restoring beam;
5. pixel -> (RA, Dec) through the FITS WCS (celestial part).

Blended sources in one island are fitted as one Gaussian (limitation).
Image arrays are ``[y, x]`` in FITS order; pixel coordinates are 0-based.
"""

from __future__ import annotations

import math

import numpy as np

from engine.imaging.imager import FWHM_PER_SIGMA, gauss2d, normalise_shape

LN2x8 = 8.0 * math.log(2.0)


def _clipped_stats(v: np.ndarray, clip: float = 3.0, iters: int = 5) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if v.size < 5:
        return float("nan"), float("nan")
    for _ in range(iters):
        med = np.median(v)
        s = 1.4826 * np.median(np.abs(v - med))
        if s <= 0:
            break
        keep = np.abs(v - med) < clip * s
        if keep.all():
            break
        v = v[keep]
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def background_rms(image: np.ndarray, box: int = 64, step: int | None = None, clip: float = 3.0):
    """Background and rms maps (same shape as ``image``)."""
    from scipy import ndimage

    ny, nx = image.shape
    box = int(max(8, min(box, ny, nx)))
    step = int(step or max(1, box // 2))
    cy = list(range(0, max(ny - box, 0) + 1, step))
    cx = list(range(0, max(nx - box, 0) + 1, step))
    if cy[-1] != ny - box:
        cy.append(max(ny - box, 0))
    if cx[-1] != nx - box:
        cx.append(max(nx - box, 0))
    bk = np.empty((len(cy), len(cx)))
    rm = np.empty_like(bk)
    for i, y0 in enumerate(cy):
        for j, x0 in enumerate(cx):
            bk[i, j], rm[i, j] = _clipped_stats(image[y0:y0 + box, x0:x0 + box], clip)
    # fill boxes without statistics (all NaN) with the global value
    for arr in (bk, rm):
        bad = ~np.isfinite(arr)
        if bad.any():
            arr[bad] = np.nanmedian(arr) if np.isfinite(arr).any() else 0.0
    centres_y = np.array(cy) + box / 2.0 - 0.5
    centres_x = np.array(cx) + box / 2.0 - 0.5
    fy = np.interp(np.arange(ny), centres_y, np.arange(len(cy)))
    fx = np.interp(np.arange(nx), centres_x, np.arange(len(cx)))
    gy, gx = np.meshgrid(fy, fx, indexing="ij")
    bkg = ndimage.map_coordinates(bk, [gy, gx], order=1, mode="nearest")
    rms = ndimage.map_coordinates(rm, [gy, gx], order=1, mode="nearest")
    return bkg.astype(np.float32), rms.astype(np.float32)


def condon_errors(amp, theta_maj, theta_min, pa, theta_n, sigma):
    """Condon (1997) 1-sigma errors; angles in pixels (FWHM), pa in radians.

    Returns dict: amp, x_maj, y_min (position errors along the major/minor
    axes), theta_maj, theta_min, pa (radians), int_frac (fractional error of
    the integrated flux).
    """
    snr = amp / sigma if sigma > 0 else float("inf")

    def rho(am, an):
        return math.sqrt(theta_maj * theta_min / (4.0 * theta_n**2)
                         * (1 + (theta_n / theta_maj) ** 2) ** am
                         * (1 + (theta_n / theta_min) ** 2) ** an) * snr

    r_a, r_x, r_y = rho(1.5, 1.5), rho(2.5, 0.5), rho(0.5, 2.5)
    e_amp = amp * math.sqrt(2) / r_a
    e_x = theta_maj / math.sqrt(LN2x8) * math.sqrt(2) / r_x
    e_y = theta_min / math.sqrt(LN2x8) * math.sqrt(2) / r_y
    e_tM = theta_maj * math.sqrt(2) / r_x
    e_tm = theta_min * math.sqrt(2) / r_y
    d = theta_maj**2 - theta_min**2
    e_pa = (2.0 / r_y) * theta_maj * theta_min / d if d > 0 else math.pi
    int_frac = math.sqrt((e_amp / amp) ** 2 + theta_n**2 / (theta_maj * theta_min)
                         * ((e_tM / theta_maj) ** 2 + (e_tm / theta_min) ** 2)) if amp else float("inf")
    return {"amp": e_amp, "x_maj": e_x, "y_min": e_y, "theta_maj": e_tM, "theta_min": e_tm,
            "pa": min(e_pa, math.pi), "int_frac": int_frac}


def beam_from_header(header) -> tuple[float, float, float, float]:
    """(bmaj_arcsec, bmin_arcsec, bpa_deg, cell_arcsec) from a FITS header."""
    cell = abs(float(header["CDELT2"])) * 3600.0
    return float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0, float(header.get("BPA", 0.0)), cell


def fit_island(img, ys, xs, rms_pix, beam_px, pa0):
    """Least-squares elliptical Gaussian; returns (params, ok)."""
    from scipy import optimize

    z = img[ys, xs].astype(float)
    w = 1.0 / np.maximum(rms_pix, 1e-30)
    k = int(np.argmax(z))
    x0 = [z[k], float(xs[k]), float(ys[k]), beam_px[0], beam_px[1], pa0]
    xx, yy = xs.astype(float), ys.astype(float)

    def resid(p):
        return (gauss2d(xx, yy, p[0], p[1], p[2], p[3], p[4], p[5]) - z) * w

    lo = [0.0, xs.min() - 1.0, ys.min() - 1.0, 0.3, 0.3, -np.inf]
    hi = [np.inf, xs.max() + 1.0, ys.max() + 1.0, 10 * max(img.shape), 10 * max(img.shape), np.inf]
    x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    try:
        sol = optimize.least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return np.array(x0), False
    return sol.x, bool(sol.success)


def find_sources(
    image: np.ndarray,
    header,
    detect_sigma: float = 5.0,
    analysis_sigma: float = 3.0,
    box: int | None = None,
    bkg_rms: tuple[np.ndarray, np.ndarray] | None = None,
    min_pixels: int = 3,
) -> list[dict]:
    """Find and fit sources in a 2-D [y, x] Jy/beam image with FITS ``header``.

    Returns one dict per island: x, y (0-based pixels), ra_deg, dec_deg,
    ra_err_arcsec, dec_err_arcsec, peak_jy, peak_err_jy, int_flux_jy,
    int_flux_err_jy, maj_arcsec, min_arcsec, pa_deg (fitted, not
    deconvolved), local_rms_jy, snr, npix, fit_ok.
    """
    from astropy.wcs import WCS
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    while img.ndim > 2:
        img = img[0]
    bmaj, bmin, bpa, cell = beam_from_header(header)
    bmaj_px, bmin_px = bmaj / cell, bmin / cell
    if box is None:
        box = int(np.clip(round(10 * bmaj_px), 24, max(24, min(img.shape) // 2)))
    bkg, rms = bkg_rms if bkg_rms is not None else background_rms(img, box)
    data = img - bkg
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(rms > 0, data / rms, 0.0)
    labels, nlab = ndimage.label(snr > analysis_sigma, structure=np.ones((3, 3)))
    if nlab == 0:
        return []
    peaks = ndimage.maximum(snr, labels, index=np.arange(1, nlab + 1))
    wcs = WCS(header).celestial
    theta_n = math.sqrt(bmaj_px * bmin_px)
    pa0 = math.radians(bpa)
    out = []
    slices = ndimage.find_objects(labels)
    for lab, (pk, sl) in enumerate(zip(peaks, slices), start=1):
        if pk <= detect_sigma:
            continue
        ys0, xs0 = sl[0].start, sl[1].start
        isl = labels[sl] == lab
        if isl.sum() < min_pixels:
            continue
        pad = 2
        y1, y2 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, img.shape[0])
        x1, x2 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, img.shape[1])
        big = np.zeros((y2 - y1, x2 - x1), bool)
        big[ys0 - y1:ys0 - y1 + isl.shape[0], xs0 - x1:xs0 - x1 + isl.shape[1]] = isl
        big = ndimage.binary_dilation(big, iterations=pad) & ((labels[y1:y2, x1:x2] == 0) | (labels[y1:y2, x1:x2] == lab))
        ys, xs = np.nonzero(big)
        ys, xs = ys + y1, xs + x1
        p, ok = fit_island(data, ys, xs, rms[ys, xs], (bmaj_px / FWHM_PER_SIGMA, bmin_px / FWHM_PER_SIGMA), pa0)
        amp, x, y = float(p[0]), float(p[1]), float(p[2])
        sa, sb, pa = normalise_shape(p[3], p[4], p[5])
        tM, tm = sa * FWHM_PER_SIGMA, sb * FWHM_PER_SIGMA
        iy = int(np.clip(round(y), 0, img.shape[0] - 1))
        ix = int(np.clip(round(x), 0, img.shape[1] - 1))
        local_rms = float(rms[iy, ix])
        e = condon_errors(amp, tM, tm, pa, theta_n, local_rms)
        s_int = amp * tM * tm / (bmaj_px * bmin_px)
        # position errors along major/minor -> RA/Dec (pa from north through east)
        e_ra = math.hypot(e["x_maj"] * math.sin(pa), e["y_min"] * math.cos(pa)) * cell
        e_dec = math.hypot(e["x_maj"] * math.cos(pa), e["y_min"] * math.sin(pa)) * cell
        sky = wcs.pixel_to_world(x, y)
        out.append({
            "x": x, "y": y,
            "ra_deg": float(sky.ra.deg), "dec_deg": float(sky.dec.deg),
            "ra_err_arcsec": e_ra, "dec_err_arcsec": e_dec,
            "peak_jy": amp, "peak_err_jy": e["amp"],
            "int_flux_jy": s_int, "int_flux_err_jy": s_int * e["int_frac"],
            "maj_arcsec": tM * cell, "min_arcsec": tm * cell, "pa_deg": math.degrees(pa),
            "maj_err_arcsec": e["theta_maj"] * cell, "min_err_arcsec": e["theta_min"] * cell,
            "pa_err_deg": math.degrees(e["pa"]),
            "local_rms_jy": local_rms, "snr": amp / local_rms if local_rms > 0 else float("inf"),
            "island_peak_snr": float(pk), "npix": int(ys.size), "fit_ok": ok,
        })
    out.sort(key=lambda s: -s["peak_jy"])
    for i, s in enumerate(out):
        s["id"] = i
    return out


def find_sources_fits(path: str, **kw) -> list[dict]:
    """``find_sources`` on the first plane of a FITS image."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        return find_sources(hdul[0].data, hdul[0].header, **kw)
