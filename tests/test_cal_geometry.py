"""The calibrator's primary-beam geometry comes from the MS: drift scan or tracking, and the dish."""

from __future__ import annotations

import math

import numpy as np
import pytest
from casacore import tables

from engine.calibration.geometry import SIDEREAL_RATE_RAD_S, read_beam_geometry
from engine.calibration.solver import calibrator_model
from engine.calibration.synthetic import synthesize, write_ms


@pytest.fixture
def ms(tmp_path):
    obs = synthesize(nant=6, nchan=8, ntime=6, sigma=1.0, seed=5, source_offset_deg=(0.3, 0.0))
    path = write_ms(str(tmp_path / "g.ms"), obs)
    with tables.table(path, ack=False) as t:
        times = np.unique(t.getcol("TIME"))
    with tables.table(path + "/FIELD", ack=False) as f:
        pc = tuple(f.getcell("PHASE_DIR", 0)[0])
    return path, times, pc, obs


def _set(path, sub, col, value):
    with tables.table(f"{path}/{sub}", readonly=False, ack=False) as t:
        t.putcol(col, value)


def _without_dish(path, telescope):
    """Another telescope's MS that leaves DISH_DIAMETER empty."""
    _set(path, "OBSERVATION", "TELESCOPE_NAME", [telescope])
    with tables.table(path + "/ANTENNA", ack=False) as a:
        n = a.nrows()
    _set(path, "ANTENNA", "DISH_DIAMETER", np.zeros(n))


def _pointing(path, times, ra, dec):
    with tables.table(path + "/POINTING", readonly=False, ack=False) as p:
        p.addrows(len(times))
        p.putcol("TIME", np.asarray(times, float))
        p.putcol("ANTENNA_ID", np.zeros(len(times), np.int32))
        p.putcol("DIRECTION", np.stack([np.asarray(ra), np.asarray(dec)], axis=1)[:, None, :])


def test_dsa110_is_a_drift_scan_with_its_own_dish(ms):
    path, times, pc, _ = ms
    g = read_beam_geometry(path, times, pc)
    assert g.mode == "drift" and g.dish_diameter_m == pytest.approx(4.65)
    assert "drift" in g.describe() and "ANTENNA.DISH_DIAMETER" in g.describe()
    ra, _ = g.pointing(times)
    assert np.allclose(np.diff(ra), SIDEREAL_RATE_RAD_S * np.diff(times))


def test_a_fixed_field_of_another_telescope_was_tracked(ms):
    path, times, pc, _ = ms
    _without_dish(path, "VLA")
    g = read_beam_geometry(path, times, pc)
    assert g.mode == "tracked" and g.dish_diameter_m == 25.0 and "known diameter of VLA" in g.dish_source
    ra, dec = g.pointing(times)
    assert np.ptp(ra) == 0 and ra[0] == pytest.approx(pc[0])


def test_unknown_telescope_without_dish_says_what_it_assumed(ms):
    path, times, pc, _ = ms
    _without_dish(path, "MYSTERY")
    g = read_beam_geometry(path, times, pc)
    assert g.dish_diameter_m == 4.65 and "unknown" in g.dish_source


@pytest.mark.parametrize("mode", ["tracked", "drift"])
def test_pointing_table_decides(ms, mode):
    path, times, pc, _ = ms
    _set(path, "OBSERVATION", "TELESCOPE_NAME", ["VLA"])   # the telescope alone would say: tracked
    ra = np.full(times.size, pc[0]) if mode == "tracked" else pc[0] + SIDEREAL_RATE_RAD_S * (times - times.mean())
    _pointing(path, times, ra, np.full(times.size, pc[1] + math.radians(0.1)))
    g = read_beam_geometry(path, times, pc)
    assert g.mode == mode and "POINTING" in g.reason
    assert g.dec == pytest.approx(pc[1] + math.radians(0.1))


def test_tracked_model_keeps_a_centred_calibrator_at_full_flux(ms):
    """Tracked: a calibrator at the pointing centre has beam power 1 at every integration;
    the drift geometry of the same data attenuates it away from transit."""
    path, times, pc, obs = ms
    cal = obs.calibrator
    centre = (cal.ra_rad, cal.dec_rad)
    with tables.table(path, ack=False) as t:
        uvw = t.getcol("UVW").reshape(times.size, -1, 3)
    freqs = np.array([1.4e9])
    drift = read_beam_geometry(path, times, centre)
    _set(path, "OBSERVATION", "TELESCOPE_NAME", ["VLA"])
    with tables.table(path + "/FIELD", readonly=False, ack=False) as f:
        f.putcell("REFERENCE_DIR", 0, np.array([centre]))
    tracked = read_beam_geometry(path, times, centre)
    # evaluate over +-10 min around the middle (the group itself is a minute long)
    long_times = drift.t_mid + np.array([-600.0, -300.0, 0.0, 300.0, 600.0])
    uvw5 = np.repeat(uvw[:1], 5, axis=0)
    flux_t = np.abs(calibrator_model(cal, uvw5, long_times, freqs, centre, geometry=tracked)[:, 1, 0])
    dish25 = type(drift)(**{**drift.__dict__, "dish_diameter_m": 25.0})
    flux_d = np.abs(calibrator_model(cal, uvw5, long_times, freqs, centre, geometry=dish25)[:, 1, 0])
    assert np.allclose(flux_t, cal.flux_at(freqs)[0], rtol=1e-5)
    assert flux_d[0] < 0.95 * flux_t[0] and flux_d[4] < 0.95 * flux_t[0]
    assert flux_d[2] == pytest.approx(flux_t[2], rel=1e-5)
