"""Calibrator catalogue, primary beam and transit prediction."""

import math

import numpy as np
import pytest

from engine.calibration.beam import DISH_DIAMETER_M, airy_power, bessel_j1, fwhm_rad
from engine.calibration.catalogue import (CatalogueError, builtin_catalogue, candidates_near_dec,
                                          declination_gaps, find_calibrator, load_catalogue, merged_catalogue, parse_dec,
                                          parse_ra)
from engine.calibration.transit import (best_calibrator, is_calibrator_group, meridian_ra_deg,
                                        transiting_calibrators)


@pytest.mark.parametrize("name, flux, lo, hi", [
    ("3C286", 15.0, 13.0, 17.0), ("J1331+3030", 15.0, 13.0, 17.0), ("3C48", 16.0, 14.0, 18.0),
    ("3C147", 22.0, 20.0, 25.0), ("3C138", 8.0, 7.0, 10.0), ("J0834+5534", 5.0, 4.0, 9.0)])
def test_required_calibrators_present(name, flux, lo, hi):
    c = find_calibrator(name)
    assert lo <= c.flux_jy <= hi


def test_j0834_position():
    c = find_calibrator("j0834+5534")
    assert c.dec_deg == pytest.approx(55.575, abs=0.005)
    assert c.ra_deg == pytest.approx(15 * (8 + 34 / 60 + 54.9 / 3600), abs=0.002)
    assert find_calibrator("4C+55.16") == c


def test_3c286_position_and_spectrum():
    c = find_calibrator("3c 286")
    assert c.ra_deg == pytest.approx(202.7845, abs=1e-3)
    assert c.dec_deg == pytest.approx(30.5092, abs=1e-3)
    assert c.flux_at(1.4e9) == pytest.approx(c.flux_jy, rel=1e-12)
    assert "Perley & Butler 2017" in c.reference


def test_3c286_at_1p4_ghz_matches_perley_butler_2017():
    # log10 S = 1.2481 - 0.4507 x - 0.1798 x^2 + 0.0357 x^3 with x = log10(1.4) = 0.146128 (the paper's
    # coefficients, worked by hand): log10 S = 1.178512, S = 15.084 Jy.
    assert float(find_calibrator("3C286").flux_at(1.4e9)) == pytest.approx(15.084, rel=0.005)


@pytest.mark.parametrize("name, coeffs", [
    ("3C48", (1.3253, -0.7553, -0.1914, 0.0498, 0, 0)), ("3C138", (1.0088, -0.4981, -0.1552, -0.0102, 0.0223, 0)),
    ("3C147", (1.4516, -0.6961, -0.2007, 0.0640, -0.0464, 0.0289)),
    ("3C286", (1.2481, -0.4507, -0.1798, 0.0357, 0, 0))])
def test_standards_carry_the_published_coefficients_per_subband(name, coeffs):
    c = find_calibrator(name)
    assert c.coefficients == coeffs
    subbands = np.linspace(1.311e9, 1.499e9, 16)          # one value per DSA-110 subband, not one power law
    x = np.log10(subbands / 1e9)
    expect = 10 ** sum(a * x ** i for i, a in enumerate(coeffs))
    np.testing.assert_allclose(c.flux_at(subbands), expect, rtol=1e-12)
    assert len(set(np.round(c.flux_at(subbands), 6))) == 16


def test_every_builtin_row_names_its_source():
    for c in builtin_catalogue():
        assert c.reference, c
        if c.coefficients is None and "VLA calibrator list" not in c.reference:
            assert "not a published value" in c.reference, c    # honest about unsourced simulator entries


def test_builtin_rows_sane():
    cats = builtin_catalogue()
    assert len(cats) >= 10
    names = [c.name for c in cats]
    assert len(set(names)) == len(names)
    for c in cats:
        assert 0 <= c.ra_deg < 360 and -90 <= c.dec_deg <= 90
        assert c.flux_jy >= 1.0, c
        # J2000 names agree with the positions (to the name's precision)
        sign = 1 if c.name[5] == "+" else -1
        dd = int(c.name[6:8])
        assert abs(sign * (abs(c.dec_deg)) - sign * dd) < 1.0 or abs(abs(c.dec_deg) - dd) < 1.0, c
        assert int(c.name[1:3]) == int(c.ra_deg / 15), c


def test_declination_gaps_are_reported_and_closed_by_an_operator_catalogue(tmp_path):
    # Only sourced calibrators are built in, so some declinations need an operator catalogue; the gaps say which.
    gaps = declination_gaps()
    assert gaps and all(lo <= hi for lo, hi in gaps)
    for d in (30.5, 55.57, 49.9):
        assert candidates_near_dec(d)
        assert not any(lo <= d <= hi for lo, hi in gaps)
    lo, hi = gaps[0]
    extra = tmp_path / "own.csv"
    rows = "".join(f"X{i},{i % 24:02d}:00:00,{d:+.2f},2.0,1.4,,,,site survey\n"
                   for i, d in enumerate(np.arange(-10.0, 80.1, 2.0)))
    extra.write_text("name,ra,dec,flux_jy,freq_ghz,spectral_index,alias,notes,reference\n" + rows)
    merged = merged_catalogue(extra)
    assert declination_gaps(catalogue=merged) == []
    assert candidates_near_dec((lo + hi) / 2, catalogue=merged)
    assert {c.reference for c in merged if c.name.startswith("X")} == {"site survey"}


def test_parse_coordinates():
    assert parse_ra("08:34:54.9") == pytest.approx(128.72875)
    assert parse_ra("08h34m54.9s") == pytest.approx(128.72875)
    assert parse_ra("128.5") == 128.5
    assert parse_dec("+55:34:21") == pytest.approx(55.5725)
    assert parse_dec("-05d47m21.5s") == pytest.approx(-(5 + 47 / 60 + 21.5 / 3600))
    assert parse_dec("-0:30:00") == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        parse_dec("95.0")
    with pytest.raises(ValueError):
        parse_ra("25:00:00")


def test_operator_csv_merged_and_overrides(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("# my list\nname,ra,dec,flux_jy,spectral_index,alias\n"
                 "MYSRC,12:00:00,+45:00:00,3.5,-0.8,\n"
                 "J1331+3030,13:31:08.2881,+30:30:32.959,15.5,,3C286\n")
    cats = merged_catalogue(p)
    mine = find_calibrator("mysrc", cats)
    assert mine.ra_deg == pytest.approx(180.0) and mine.flux_jy == 3.5 and mine.spectral_index == -0.8
    c286 = find_calibrator("3C286", cats)
    assert c286.flux_jy == 15.5 and c286.source == str(p)
    assert len(cats) == len(builtin_catalogue()) + 1


@pytest.mark.parametrize("row, needle", [
    ("BAD,12:00:00,+95:00:00,2.0", "Dec"),
    ("BAD,12:00:00,+45:00:00,", "flux_jy"),
    ("BAD,xx:yy,+45:00:00,2.0", "BAD"),
    ("BAD,12:00:00,+45:00:00,-1", "flux_jy"),
])
def test_bad_csv_row_names_file_and_line(tmp_path, row, needle):
    p = tmp_path / "bad.csv"
    p.write_text("name,ra,dec,flux_jy\nOK,01:00:00,+10:00:00,2.0\n" + row + "\n")
    with pytest.raises(CatalogueError) as ei:
        load_catalogue(p)
    msg = str(ei.value)
    assert str(p) in msg and "line 3" in msg and needle in msg


def test_missing_file_and_header(tmp_path):
    with pytest.raises(CatalogueError, match="not found"):
        load_catalogue(tmp_path / "nope.csv")
    p = tmp_path / "h.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(CatalogueError, match="header"):
        load_catalogue(p)


def test_votable_loader(tmp_path):
    from astropy.io.votable import from_table
    from astropy.table import Table

    t = Table({"name": ["VOSRC", "VO2"], "ra": [150.0, 10.0], "dec": [20.0, -5.0], "flux_jy": [2.5, 1.5],
               "spectral_index": [-0.7, np.nan]})
    p = tmp_path / "cat.vot"
    from_table(t).to_xml(str(p))
    cats = merged_catalogue([p])
    v = find_calibrator("VOSRC", cats)
    assert v.ra_deg == 150.0 and v.dec_deg == 20.0 and v.flux_jy == 2.5 and v.spectral_index == -0.7
    assert find_calibrator("VO2", cats).spectral_index is None
    bad = Table({"name": ["X"], "ra": [400.0], "dec": [0.0], "flux_jy": [1.0]})
    pb = tmp_path / "bad.xml"
    from_table(bad).to_xml(str(pb))
    with pytest.raises(CatalogueError, match=r"bad.xml row 1"):
        load_catalogue(pb)


def test_bessel_and_airy_beam():
    assert bessel_j1(np.array([1.0, 5.0, 10.0])) == pytest.approx([0.4400505857, -0.3275791376, 0.0434727462], abs=1e-7)
    assert airy_power(0.0, 1.4e9) == pytest.approx(1.0)
    f = fwhm_rad(1.4e9)
    assert math.degrees(f) == pytest.approx(1.029 * 299792458 / 1.4e9 / DISH_DIAMETER_M * 180 / math.pi, rel=1e-3)
    assert airy_power(f / 2, 1.4e9) == pytest.approx(0.5, abs=1e-3)
    null = math.asin(1.21967 * 299792458 / 1.4e9 / DISH_DIAMETER_M)
    assert airy_power(null, 1.4e9) < 1e-8
    th = np.linspace(0, null, 200)
    assert np.all(np.diff(airy_power(th, 1.4e9)) <= 1e-12)
    # narrower at higher frequency
    assert airy_power(math.radians(1.0), 1.5e9) < airy_power(math.radians(1.0), 1.3e9)


def _transit_mjd(ra_deg, dec_deg, mjd0=61000.0):
    mjd = mjd0
    for _ in range(4):
        ra = meridian_ra_deg(mjd, dec_deg)[0]
        mjd += ((ra_deg - ra + 180) % 360 - 180) / 360.0 * 0.99726958
    return mjd


def test_transit_of_j0834():
    c = find_calibrator("J0834+5534")
    mjd = _transit_mjd(c.ra_deg, 55.57)
    half = 12 * 12.884902 / 86400
    cands = transiting_calibrators(mjd - half, mjd + half, 55.57)
    assert cands and cands[0].name == "J0834+5534"
    top = cands[0]
    assert top.transits_in_window and abs(top.transit_mjd - mjd) * 86400 < 5
    assert top.min_offset_deg < 0.02 and top.peak_flux_jy == pytest.approx(c.flux_jy, rel=0.01)
    assert top.mean_flux_jy < top.peak_flux_jy
    assert is_calibrator_group(mjd - half, mjd + half, 55.57, threshold_jy=3.0)
    assert not is_calibrator_group(mjd - half, mjd + half, 55.57, threshold_jy=50.0)
    # six hours later nothing from the list is near
    assert transiting_calibrators(mjd + 0.25 - half, mjd + 0.25 + half, 55.57)[:1] == [] or \
        transiting_calibrators(mjd + 0.25 - half, mjd + 0.25 + half, 55.57)[0].name != "J0834+5534"


def test_transit_offset_pointing_weights_by_beam():
    c = find_calibrator("3C286")
    mjd = _transit_mjd(c.ra_deg, 31.9)
    half = 150 / 86400
    top = best_calibrator(mjd - half, mjd + half, 31.9, threshold_jy=1.0)
    assert top is not None and top.name == "J1331+3030"
    off = 31.9 - c.dec_deg
    assert top.min_offset_deg == pytest.approx(off, abs=0.01)
    assert top.peak_beam == pytest.approx(float(airy_power(math.radians(off), 1.405e9)), rel=1e-3)
    assert top.peak_flux_jy == pytest.approx(float(c.flux_at(1.405e9)) * top.peak_beam, rel=1e-6)
    # ranking: with a tiny threshold every candidate appears, sorted by beam-weighted flux
    cands = transiting_calibrators(mjd - 0.05, mjd + 0.05, 31.9, rank_by="mean")
    assert [x.mean_flux_jy for x in cands] == sorted([x.mean_flux_jy for x in cands], reverse=True)
