"""The DSA-110 simulator: file layout, pyuvdata compatibility, sky/gain/noise truth, faults, RFI."""

from __future__ import annotations

import json
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from engine import instrument as inst
from engine.simulator import CALIBRATOR, Source, default_start, gain_model, simulate
from engine.subbands import SubbandNameError, parse_subband_filename, subband_frequencies

ANTENNA_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "DSA110_Station_Coordinates.csv"

pyuvdata = pytest.importorskip("pyuvdata")


def _read(paths):
    from pyuvdata import UVData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(paths, (list, tuple)):
            return UVData.from_file([str(p) for p in paths], file_type="uvh5")
        return UVData.from_file(str(paths), file_type="uvh5")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_tiny")
    t0 = time.perf_counter()
    (group,) = simulate(out, preset="tiny", seed=5)
    return group, time.perf_counter() - t0


# ---------------------------------------------------------------------------
def test_subband_names_and_frequencies():
    when, sb = parse_subband_filename("/data/incoming/2025-10-05T15:28:56_sb07.hdf5")
    assert when == datetime(2025, 10, 5, 15, 28, 56) and sb == 7
    for bad in ("2025-10-05T15:28:56_sb7.hdf5", "2025-10-05_sb07.hdf5", "notes.txt",
                "2025-10-05T15:28:56_sb16.hdf5", "2025-13-05T15:28:56_sb01.hdf5"):
        with pytest.raises(SubbandNameError) as err:
            parse_subband_filename(bad)
        assert bad in str(err.value)
        assert isinstance(err.value, ValueError)
    f0, f15 = subband_frequencies(0), subband_frequencies(15)
    assert len(f0) == 48 and np.all(np.diff(f0) < 0)            # descending inside a file
    assert f0[0] == pytest.approx(1.4986e9, abs=0.1e6)          # top of the band
    assert f15[-1] == pytest.approx(1.3114e9, abs=0.1e6)        # bottom of the band
    allf = np.sort(np.concatenate([subband_frequencies(s) for s in range(16)]))
    assert np.allclose(np.diff(allf), inst.CHANNEL_WIDTH_HZ)     # 768 contiguous channels
    assert inst.noise_sigma_jy() == pytest.approx(2.3, abs=0.05)
    assert 2.5 <= np.degrees(inst.primary_beam_fwhm_rad(1.4e9)) <= 3.0


def test_default_layout_is_t_shaped_with_outriggers():
    lay = inst.default_layout()
    assert len(lay) == 117 and lay.is_outrigger.sum() == 15
    ew, ns = lay.enu[:51], lay.enu[51:102]
    assert np.ptp(ew[:, 0]) == pytest.approx(400, abs=20) and np.ptp(ew[:, 1]) < 1
    assert np.ptp(ns[:, 1]) == pytest.approx(430, abs=20) and np.ptp(ns[:, 0]) < 1
    d = np.linalg.norm(lay.enu[:, None] - lay.enu[None], axis=-1)
    assert 2300 < d.max() < 2900
    active = inst.choose_active(lay, 96)
    assert len(active) == 96 and set(np.flatnonzero(lay.is_outrigger)) <= set(active)


@pytest.mark.skipif(not ANTENNA_CSV.exists(), reason="public station table not available")
def test_load_real_station_table():
    lay = inst.load_antenna_csv(ANTENNA_CSV)
    assert len(lay) == 117 and lay.names[0] == "DSA-001"
    d = np.linalg.norm(lay.enu[:, None] - lay.enu[None], axis=-1)
    assert 2400 < d.max() < 3000
    assert np.all(np.isfinite(lay.positions_ecef_rel))          # the row without elevation is filled


def test_tiny_group_files_and_manifest(tiny):
    group, elapsed = tiny
    assert elapsed < 5.0          # ~1 s on an idle machine; generous for a loaded CI box
    assert len(group.files) == 16
    sbs = sorted(parse_subband_filename(p)[1] for p in group.files)
    assert sbs == list(range(16))
    assert all(parse_subband_filename(p)[0] == group.start for p in group.files)
    truth = json.loads(group.manifest.read_text())
    for key in ("gains", "sources", "rfi", "faults", "convention", "active_antennas", "time_jd"):
        assert key in truth
    cal = truth["sources"][0]
    assert cal["name"] == "J0834+5534" and cal["flux_jy"] == 5.0
    assert 0 < cal["apparent_flux_jy"] < cal["flux_jy"]
    assert truth["convention"]["phase_center_dec_unit"] == "rad"
    with h5py.File(group.files[0]) as f:
        assert f["Header/extra_keywords/phase_center_dec"][()] == pytest.approx(np.radians(54.57))


def test_default_start_puts_calibrator_transit_in_first_group(tiny):
    group, _ = tiny
    truth = group.truth
    lst = np.degrees(inst.lst_rad(np.array(truth["time_jd"])))
    ra = CALIBRATOR["ra_deg"]
    assert lst[0] < ra < lst[-1]
    full_start = default_start(54.57)
    lst_full = np.degrees(inst.lst_rad(np.array([_jd(full_start), _jd(full_start + timedelta(seconds=309))])))
    assert lst_full[0] < ra < lst_full[1]


def _jd(dt):
    from astropy.time import Time

    return Time(dt, scale="utc").jd


def test_pyuvdata_reads_simulated_files(tiny):
    group, _ = tiny
    uv = _read(group.files[0])
    uv.check()
    assert uv.Nfreqs == 48 and uv.Npols == 2 and uv.Ntimes == 8
    assert uv.Nants_data == 10 and uv.telescope.name == "DSA_110"
    assert list(uv.polarization_array) == [-5, -6]
    assert uv.phase_center_catalog[0]["cat_type"] == "unprojected"
    assert uv.extra_keywords["phase_center_dec"] == pytest.approx(np.radians(54.57))
    # all 16 subbands together: 768 channels, 1.311 - 1.499 GHz
    uv_all = _read(group.files)
    assert uv_all.Nfreqs == 768
    assert 1.311e9 < uv_all.freq_array.min() < uv_all.freq_array.max() < 1.499e9
    auto = uv.ant_1_array == uv.ant_2_array
    assert np.allclose(uv.data_array[auto].imag, 0)
    assert np.all(uv.data_array[auto].real > 0.3 * inst.SEFD_JY)


@pytest.mark.parametrize("use_real_layout", [False, True])
def test_phasing_with_pyuvdata_gives_zero_phase(tmp_path, use_real_layout):
    """One source, no noise, unit gains: pyuvdata's phase() to the source leaves ~0 phase."""
    if use_real_layout and not ANTENNA_CSV.exists():
        pytest.skip("public station table not available")
    src = Source("PT", CALIBRATOR["ra_deg"] + 0.3, 55.2, 3.0, -0.7)
    (g,) = simulate(tmp_path, preset="tiny", sources=[src], unit_gains=True, noise=False,
                    dec_deg=55.0, subbands=[0, 15],
                    antenna_file=ANTENNA_CSV if use_real_layout else None)
    for path in g.files:
        uv = _read(path)
        uv.phase(lon=np.radians(src.ra_deg), lat=np.radians(src.dec_deg), epoch="J2000", cat_name="pt")
        cross = uv.ant_1_array != uv.ant_2_array
        bl = np.linalg.norm(uv.uvw_array[cross], axis=1)
        assert bl.max() > 2000                                     # outriggers included
        ph = np.degrees(np.abs(np.angle(uv.data_array[cross])))
        assert ph.max() < 0.5, f"{path.name}: residual phase up to {ph.max():.3f} deg"
        amp = np.abs(uv.data_array[cross])
        assert np.ptp(amp) < 0.2 * amp.max()                       # only beam/spectrum changes


def test_gains_in_manifest_rebuild_the_data(tmp_path):
    """V / (S A) after phasing equals g1 g2* rebuilt from the manifest."""
    src = Source("PT", CALIBRATOR["ra_deg"], 54.7, 4.0, -0.5)
    (g,) = simulate(tmp_path, preset="tiny", sources=[src], noise=False, seed=11, subbands=[4])
    truth = g.truth
    uv = _read(g.files[0])
    unit_dir = tmp_path / "unit"
    (gu,) = simulate(unit_dir, preset="tiny", sources=[src], noise=False, seed=11, subbands=[4],
                     unit_gains=True)
    uvu = _read(gu.files[0])
    ratio = uv.data_array / uvu.data_array                          # = g1 g2*
    numbers = truth["active_antenna_numbers"]
    idx = {n: i for i, n in enumerate(numbers)}
    jd_u = np.unique(uv.time_array)
    gains = gain_model(truth["gains"], jd_u, uv.freq_array, truth["reference_jd_for_gains"])
    t = np.searchsorted(jd_u, uv.time_array)
    i1 = np.array([idx[a] for a in uv.ant_1_array])
    i2 = np.array([idx[a] for a in uv.ant_2_array])
    expect = gains[i1, t] * np.conj(gains[i2, t])
    assert np.allclose(ratio, expect, rtol=1e-4, atol=1e-4)
    assert np.std(np.abs(expect)) > 0.05                            # gains are not trivial


def test_noise_level_matches_sefd(tmp_path):
    (g,) = simulate(tmp_path, preset="tiny", sources=[], unit_gains=True, subbands=[8])
    uv = _read(g.files[0])
    cross = uv.ant_1_array != uv.ant_2_array
    d = uv.data_array[cross]
    sigma = inst.noise_sigma_jy()
    assert np.std(d.real) == pytest.approx(sigma, rel=0.05)
    assert np.std(d.imag) == pytest.approx(sigma, rel=0.05)
    auto = uv.data_array[~cross].real
    assert np.mean(auto) == pytest.approx(inst.SEFD_JY, rel=0.01)


def test_faults(tmp_path):
    faults = ("missing_subband", "truncated_file", "nans", "timestamp_jitter")
    (g,) = simulate(tmp_path, preset="tiny", faults=faults, seed=2)
    truth = g.truth
    assert len(g.files) == 15 and g.missing_subbands == [7]
    assert truth["faults"]["missing_subband"] == 7
    names = {parse_subband_filename(p)[1]: parse_subband_filename(p)[0] for p in g.files}
    assert 7 not in names
    offsets = [(t - g.start).total_seconds() for t in names.values()]
    assert max(offsets) > 0 and max(offsets) <= 3                   # jittered names, same observation
    trunc = next(p for p in g.files if parse_subband_filename(p)[1] == 3)
    with pytest.raises(OSError):
        with h5py.File(trunc, "r") as f:
            f["Data/visdata"][()]
    nan_file = next(p for p in g.files if parse_subband_filename(p)[1] == 11)
    samples = truth["faults"]["nans"]["samples"]
    with h5py.File(nan_file) as f:
        vis = f["Data/visdata"][:, 0]
    assert len(samples) == 5
    assert all(np.isnan(vis[r, c, p]) for r, c, p in samples)
    assert np.isnan(vis).sum() == 5


def test_rfi_is_recorded_and_present(tmp_path):
    (g,) = simulate(tmp_path, preset="tiny", rfi=True, seed=3)
    rfi = g.truth["rfi"]
    assert len(rfi["narrowband_channels"]) == 4 and rfi["burst_integrations"]
    uv = _read(g.files)
    uv.reorder_freqs(channel_order="freq")
    cross = uv.ant_1_array != uv.ant_2_array
    amp = np.abs(uv.data_array[cross])                               # (blt, 768, 2)
    jd_u = np.unique(uv.time_array)
    tidx = np.searchsorted(jd_u, uv.time_array[cross])
    clean_t = ~np.isin(tidx, rfi["burst_integrations"])
    clean_c = np.setdiff1d(np.arange(768), rfi["narrowband_channels"])
    base = np.median(amp[clean_t][:, clean_c])
    for c in rfi["narrowband_channels"]:
        assert np.median(amp[clean_t, c]) > 20 * base
    for t in rfi["burst_integrations"]:
        assert np.median(amp[tidx == t][:, clean_c]) > 5 * base


@pytest.mark.slow
def test_full_preset_size_and_speed(tmp_path):
    t0 = time.perf_counter()
    (g,) = simulate(tmp_path, preset="full")
    elapsed = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in g.files)
    assert elapsed < 90           # ~30 s on an idle 2-core machine, ~65 s when it is shared
    assert 1.3e9 < size < 2.5e9
    uv = _read(g.files[0])
    assert uv.Nants_data == 96 and uv.Ntimes == 24 and uv.Nbls == 96 * 97 // 2


def test_parallel_workers_write_identical_files(tmp_path):
    kw = dict(preset="tiny", seed=6, subbands=[2, 11], faults=("nans",), rfi=True)
    (a,) = simulate(tmp_path / "serial", workers=1, **kw)
    (b,) = simulate(tmp_path / "parallel", workers=2, **kw)
    for fa, fb in zip(a.files, b.files):
        with h5py.File(fa) as x, h5py.File(fb) as y:
            assert np.array_equal(x["Data/visdata"][()], y["Data/visdata"][()], equal_nan=True)
    assert a.truth["faults"] == b.truth["faults"] and a.truth["rfi"] == b.truth["rfi"]
