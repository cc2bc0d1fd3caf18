"""FITS headers, fitsverify and PNG thumbnails of the imaging products."""

import math
import shutil
import subprocess

import numpy as np
import pytest
from astropy.utils import iers

iers.conf.auto_max_age = None
iers.conf.auto_download = False

from astropy.io import fits  # noqa: E402
from astropy.time import Time  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from PIL import Image  # noqa: E402

from engine.imaging.fits_io import stretch_asinh, write_png  # noqa: E402
from engine.imaging.pipeline import image_ms  # noqa: E402
from engine.imaging.synth import make_synthetic_ms  # noqa: E402

RA0, DEC0 = 210.0, 55.0


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    d = tmp_path_factory.mktemp("fits")
    ms = str(d / "grp.ms")
    make_synthetic_ms(ms, [(RA0, DEC0, 1.0), (RA0 - 0.1, DEC0 + 0.05, 0.3)], ra0_deg=RA0, dec0_deg=DEC0,
                      nant=16, nchan=8, ntime=3, noise_jy=0.05, mjd_start=61000.25, observer="ops")
    return image_ms(ms, str(d / "out"), dict(fov_deg=0.4, niter=300, chan_average=1), png_size=128)


@pytest.mark.parametrize("kind", ["image", "model", "residual", "psf"])
def test_header_layout(products, kind):
    with fits.open(products["products"][kind]) as h:
        hdr = h[0].header
        data = h[0].data
    n = products["npix"]
    assert data.shape == (1, 1, n, n) and data.dtype == np.dtype(">f4")
    assert [hdr[f"CTYPE{i}"] for i in range(1, 5)] == ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    assert hdr["CDELT1"] < 0 and hdr["CDELT2"] == pytest.approx(-hdr["CDELT1"], rel=1e-12)
    assert hdr["CDELT1"] == pytest.approx(-products["cell_arcsec"] / 3600)
    assert hdr["CRPIX1"] == n / 2 + 1 and hdr["CRPIX2"] == n / 2 + 1
    assert (hdr["CRVAL1"], hdr["CRVAL2"]) == pytest.approx((RA0, DEC0))
    assert hdr["CRVAL3"] == pytest.approx(products["ref_freq_hz"])
    assert hdr["CDELT3"] == pytest.approx(products["bandwidth_hz"]) and hdr["CDELT3"] > 1e8
    assert hdr["CRVAL4"] == 1  # Stokes I
    assert hdr["BMAJ"] == pytest.approx(products["beam"]["bmaj_arcsec"] / 3600)
    assert hdr["BMIN"] == pytest.approx(products["beam"]["bmin_arcsec"] / 3600)
    assert hdr["BPA"] == pytest.approx(products["beam"]["bpa_deg"])
    assert hdr["BUNIT"] == ("Jy/pixel" if kind == "model" else ("" if kind == "psf" else "Jy/beam"))
    assert hdr["TELESCOP"] == "DSA-110" and hdr["OBSERVER"] == "ops"
    t = Time(hdr["DATE-OBS"], scale="utc")
    assert abs(t.mjd - 61000.25) < 60 / 86400
    assert hdr["SPECSYS"] == "TOPOCENT" and hdr["RADESYS"] in ("FK5", "ICRS")
    hist = "\n".join(str(x) for x in hdr["HISTORY"])
    assert "robust=0.0" in hist and "weighting=briggs" in hist and "datacolumn=CORRECTED_DATA" in hist
    w = WCS(hdr)
    assert w.naxis == 4 and w.celestial.wcs.ctype[0] == "RA---SIN"


def test_wcs_world_of_reference_pixel(products):
    with fits.open(products["products"]["image"]) as h:
        w = WCS(h[0].header).celestial
    n = products["npix"]
    ra, dec = w.pixel_to_world_values(n / 2, n / 2)
    assert (float(ra), float(dec)) == pytest.approx((RA0, DEC0), abs=1e-9)
    ra_e, _ = w.pixel_to_world_values(n / 2 - 10, n / 2)  # left = east = larger RA
    assert ra_e > RA0


@pytest.mark.skipif(shutil.which("fitsverify") is None, reason="fitsverify not installed")
@pytest.mark.parametrize("kind", ["image", "model", "residual", "psf"])
def test_fitsverify(products, kind):
    out = subprocess.run(["fitsverify", "-e", products["products"][kind]], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 error(s)" in out.stdout


def test_png_thumbnail(products, tmp_path):
    with Image.open(products["products"]["png"]) as im:
        assert im.mode == "L" and max(im.size) <= 128
        arr = np.asarray(im)
    # the bright source at the phase centre is near the middle and is the brightest pixel
    y, x = np.unravel_index(np.argmax(arr), arr.shape)
    assert abs(x - arr.shape[1] / 2) <= 2 and abs(y - arr.shape[0] / 2) <= 2
    # north up: an image bright at the top row (FITS last row) is bright at PNG row 0
    img = np.zeros((600, 600), np.float32)
    img[-20:, :] = 1.0
    p = write_png(str(tmp_path / "t.png"), img, 512)
    with Image.open(p) as im:
        a = np.asarray(im)
        assert max(im.size) <= 512
    assert a[0].mean() > 200 and a[-1].mean() < 50


def test_stretch_range():
    rng = np.random.default_rng(0)
    s = stretch_asinh(rng.normal(size=(50, 50)))
    assert s.min() >= 0 and s.max() <= 1 and math.isfinite(float(s.mean()))
    assert stretch_asinh(np.full((4, 4), np.nan)).max() == 0
