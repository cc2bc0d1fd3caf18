"""Source finder, forced photometry, crossmatch and variability on synthetic images."""

import math

import numpy as np
import pytest
from astropy.utils import iers

iers.conf.auto_max_age = None
iers.conf.auto_download = False

from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from engine.imaging.imager import FWHM_PER_SIGMA, gauss2d  # noqa: E402
from engine.sources.crossmatch import crossmatch  # noqa: E402
from engine.sources.finder import background_rms, condon_errors, find_sources  # noqa: E402
from engine.sources.photometry import forced_photometry  # noqa: E402
from engine.sources.variability import variability_metrics  # noqa: E402

CELL = 7.0  # arcsec
BMAJ, BMIN, BPA = 50.0, 34.0, 30.0  # DSA-110-like restoring beam
RA0, DEC0 = 200.0, 50.0


def header(n):
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = n
    h["NAXIS2"] = n
    for k, v in dict(CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CRVAL1=RA0, CRVAL2=DEC0, CDELT1=-CELL / 3600,
                     CDELT2=CELL / 3600, CRPIX1=n / 2 + 1, CRPIX2=n / 2 + 1, CUNIT1="deg", CUNIT2="deg",
                     RADESYS="ICRS", BMAJ=BMAJ / 3600, BMIN=BMIN / 3600, BPA=BPA, BUNIT="Jy/beam").items():
        h[k] = v
    return h


def beam_image(n, x0, y0, amp=1.0):
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    return gauss2d(xx, yy, amp, x0, y0, BMAJ / CELL / FWHM_PER_SIGMA, BMIN / CELL / FWHM_PER_SIGMA,
                   math.radians(BPA))


def correlated_noise(n, sigma, rng):
    white = rng.normal(size=(n, n))
    k = np.fft.ifftshift(beam_image(n, n // 2, n // 2))
    f = np.fft.irfft2(np.fft.rfft2(white) * np.fft.rfft2(k), s=(n, n))
    return f / f.std() * sigma


def sky(n, sources, sigma, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    img = correlated_noise(n, sigma, rng) + offset
    for x, y, s in sources:
        img += beam_image(n, x, y, s)
    return img


def test_background_and_rms_maps():
    n = 256
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:n, 0:n]
    img = rng.normal(0, 1e-3, (n, n)) + 5e-3 + 2e-5 * xx  # gradient + offset
    img += beam_image(n, 100.3, 140.7, 0.5)
    bkg, rms = background_rms(img, box=48)
    err = np.abs(bkg - (5e-3 + 2e-5 * xx))
    assert err[24:-24, 24:-24].max() < 2e-4  # interpolated between box centres
    assert err.max() < 6e-4  # held constant beyond the outer box centres
    assert np.median(rms) == pytest.approx(1e-3, rel=0.05)


def test_finder_positions_fluxes_shapes():
    n = 300
    sigma = 1e-3
    rng = np.random.default_rng(2)
    truth = []
    for i in range(10):
        x = rng.uniform(30, n - 30)
        y = rng.uniform(30, n - 30)
        truth.append((x, y, sigma * rng.uniform(12, 200)))
    # keep them apart (> 4 beams)
    keep = []
    for t in truth:
        if all(math.hypot(t[0] - k[0], t[1] - k[1]) > 30 for k in keep):
            keep.append(t)
    img = sky(n, keep, sigma, seed=8)
    h = header(n)
    found = find_sources(img, h)
    w = WCS(h)
    assert len([s for s in found if s["snr"] > 7]) == len(keep)
    for x, y, s in keep:
        d = [math.hypot(f["x"] - x, f["y"] - y) for f in found]
        f = found[int(np.argmin(d))]
        assert min(d) * CELL < 0.1 * BMIN
        ra, dec = w.pixel_to_world_values(x, y)
        assert f["ra_deg"] == pytest.approx(float(ra), abs=0.1 * BMIN / 3600 / math.cos(math.radians(DEC0)))
        assert f["dec_deg"] == pytest.approx(float(dec), abs=0.1 * BMIN / 3600)
        # flux errors follow Condon (1997); require 2% or 3 sigma_fit, whichever is larger
        tol = max(0.02 * s, 3 * f["peak_err_jy"])
        assert abs(f["peak_jy"] - s) < tol
        assert abs(f["int_flux_jy"] - s) < max(0.02 * s, 3 * f["int_flux_err_jy"])
        if s / sigma > 50:  # 2% unless noise alone makes that a < 3 sigma requirement
            assert f["peak_jy"] == pytest.approx(s, rel=max(0.02, 3 * sigma / s))
            assert f["int_flux_jy"] == pytest.approx(s, rel=max(0.02, 3 * f["int_flux_err_jy"] / s))
            assert f["maj_arcsec"] == pytest.approx(BMAJ, rel=0.05)
            assert f["min_arcsec"] == pytest.approx(BMIN, rel=0.05)
            assert f["pa_deg"] == pytest.approx(BPA, abs=5)


def test_east_is_left_in_finder():
    n = 128
    img = sky(n, [(40.0, 64.0, 0.1)], 1e-3, seed=1)  # left of centre
    (s,) = [f for f in find_sources(img, header(n)) if f["snr"] > 7]
    assert s["ra_deg"] > RA0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_spurious_sources_on_noise(seed):
    n = 400
    img = sky(n, [], 1e-3, seed=seed)
    found = find_sources(img, header(n))
    assert not [s for s in found if s["snr"] > 7]


def test_condon_errors_match_scatter():
    n = 64
    sigma = 1e-3
    amp = 20 * sigma
    peaks, xs = [], []
    errs = None
    for seed in range(40):
        img = sky(n, [(32.3, 31.6, amp)], sigma, seed=100 + seed)
        f = max(find_sources(img, header(n), box=64), key=lambda s: s["peak_jy"])
        peaks.append(f["peak_jy"])
        xs.append(f["dec_deg"])
        errs = f
    emp = np.std(peaks, ddof=1)
    assert 0.6 < emp / errs["peak_err_jy"] < 1.6
    assert 0.5 < np.std(xs, ddof=1) * 3600 / errs["dec_err_arcsec"] < 2.0
    e = condon_errors(1.0, 10.0, 5.0, 0.3, math.sqrt(50.0), 0.01)
    assert e["amp"] > 0 and e["x_maj"] > e["y_min"] * 0  # finite and positive


def test_forced_photometry():
    n = 200
    sigma = 1e-3
    src = [(70.4, 120.6, 0.05), (140.8, 60.2, 0.2)]
    img = sky(n, src, sigma, seed=4)
    h = header(n)
    w = WCS(h)
    ra, dec = w.pixel_to_world_values([s[0] for s in src] + [500.0], [s[1] for s in src] + [10.0])
    for method in ("peak", "gaussian"):
        res = forced_photometry(img, h, ra, dec, method=method)
        for r, (x, y, s) in zip(res, src):
            assert r["inside"] and abs(r["x"] - x) < 1e-6
            assert r["flux_jy"] == pytest.approx(s, abs=max(0.02 * s, 3 * sigma))
            assert r["flux_err_jy"] == pytest.approx(sigma, rel=0.2)
        assert not res[2]["inside"] and math.isnan(res[2]["flux_jy"])
    # blank position: flux consistent with zero
    blank = forced_photometry(img, h, [float(ra[0]) + 0.2], [float(dec[0])])[0]
    assert abs(blank["flux_jy"]) < 4 * sigma
    with pytest.raises(ValueError):
        forced_photometry(img, h, ra, dec, method="aperture")


def test_crossmatch():
    cat_ra = np.array([10.0, 10.1, 10.2])
    cat_dec = np.array([20.0, 20.0, 20.0])
    ra = np.array([10.1 + 5 / 3600 / math.cos(math.radians(20)), 10.0, 11.0])
    dec = np.array([20.0, 20.0 + 15 / 3600, 20.0])
    m = crossmatch(ra, dec, cat_ra, cat_dec)
    assert list(m["index"]) == [1, -1, -1]
    assert m["sep_arcsec"][0] == pytest.approx(5.0, abs=0.01)
    assert m["sep_arcsec"][1] == pytest.approx(15.0, abs=0.01)
    m2 = crossmatch(ra, dec, cat_ra, cat_dec, radius_arcsec=20)
    assert list(m2["matched"]) == [True, True, False]
    empty = crossmatch(ra, dec, [], [])
    assert (empty["index"] == -1).all()


def test_variability_metrics():
    assert variability_metrics([1.0, 1.1], [0.1, 0.1]) is None
    s = np.array([1.0, 1.2, 0.8, 1.0])
    e = np.array([0.1, 0.1, 0.1, 0.2])
    v = variability_metrics(s, e)
    w = 1 / e**2
    mw = (w * s).sum() / w.sum()
    chi2 = (w * (s - mw) ** 2).sum()
    assert v["eta"] == pytest.approx(chi2 / 3) and v["chi2_nu"] == pytest.approx(chi2 / 3)
    assert v["v"] == pytest.approx(s.std(ddof=1) / s.mean())
    assert v["n_epochs"] == 4 and 0 < v["p_value"] < 1
    rng = np.random.default_rng(0)
    steady = variability_metrics(1 + rng.normal(0, 0.01, 200), np.full(200, 0.01))
    assert steady["eta"] == pytest.approx(1.0, abs=0.25) and steady["m_debiased"] < 0.005
    flare = variability_metrics(np.r_[np.ones(10), 3.0], np.full(11, 0.01))
    assert flare["eta"] > 100 and flare["p_value"] < 1e-6
