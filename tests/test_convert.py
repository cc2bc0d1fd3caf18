"""UVH5 -> Measurement Set conversion: structure, agreement with pyuvdata, bad input, atomicity."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from engine.convert import TMP_PREFIX, convert_group, remove_stale_temporaries
from engine.errors import PermanentStageError
from engine.simulator import CALIBRATOR, Source, default_start, simulate

pyuvdata = pytest.importorskip("pyuvdata")
from casacore import tables as pt  # noqa: E402

ANTENNA_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "DSA110_Station_Coordinates.csv"
REPO = Path(__file__).resolve().parents[1]


def _uv(paths, **kw):
    from pyuvdata import UVData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(paths, (list, tuple)):
            return UVData.from_file([str(p) for p in paths], file_type="uvh5", **kw)
        if str(paths).endswith(".hdf5"):
            kw.setdefault("file_type", "uvh5")
        return UVData.from_file(str(paths), **kw)


def _sorted_by_names(uv):
    """Row order (time, name1, name2) and antenna-name arrays of a UVData object."""
    names = np.array(uv.telescope.antenna_names)
    idx = {a: i for i, a in enumerate(uv.telescope.antenna_numbers)}
    n1 = names[[idx[a] for a in uv.ant_1_array]]
    n2 = names[[idx[a] for a in uv.ant_2_array]]
    return np.lexsort((n2, n1, uv.time_array)), n1, n2


def _assert_same_vis(uv_ref, uv_ms, rel=2e-6):
    o1, a1, b1 = _sorted_by_names(uv_ref)
    o2, a2, b2 = _sorted_by_names(uv_ms)
    assert np.array_equal(a1[o1], a2[o2]) and np.array_equal(b1[o1], b2[o2])
    assert np.allclose(uv_ref.time_array[o1], uv_ms.time_array[o2], atol=1e-8)
    assert np.allclose(uv_ref.freq_array, uv_ms.freq_array)
    d1, d2 = uv_ref.data_array[o1], uv_ms.data_array[o2]
    scale = np.abs(d1).max()
    assert np.abs(d1 - d2).max() <= rel * scale
    assert np.abs(uv_ref.uvw_array[o1] - uv_ms.uvw_array[o2]).max() < 2e-3   # metres
    assert np.array_equal(uv_ref.flag_array[o1], uv_ms.flag_array[o2])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    (g,) = simulate(root / "sim", preset="tiny", seed=21)
    res = convert_group(g.files, root / "tiny.ms")
    return g, res, root


# ---------------------------------------------------------------------------
def test_result_and_ms_structure(tiny):
    g, res, root = tiny
    ms_path = Path(res.ms_path)
    assert ms_path == root / "tiny.ms" and ms_path.is_dir()
    assert res.rows == 8 * 55 and res.channels == 768 and res.antennas == 10
    assert res.missing_subbands == [] and res.subbands_present == list(range(16))
    assert res.pointing_dec_deg == pytest.approx(54.57) and res.phase_center_dec_deg == pytest.approx(54.57)
    assert res.end_mjd > res.start_mjd
    assert {"read", "phase", "reorder", "write", "validate", "total"} <= set(res.timings)
    assert not list(root.glob(f"{TMP_PREFIX}*"))
    with pt.table(str(ms_path), ack=False) as ms:
        cols = set(ms.colnames())
        assert {"DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "UVW", "WEIGHT", "SIGMA", "TIME",
                "ANTENNA1", "ANTENNA2", "FLAG_ROW", "DATA_DESC_ID", "FIELD_ID", "SCAN_NUMBER"} <= cols
        subtables = set(ms.keywordnames())
        assert {"ANTENNA", "DATA_DESCRIPTION", "FEED", "FIELD", "FLAG_CMD", "HISTORY", "OBSERVATION",
                "POINTING", "POLARIZATION", "PROCESSOR", "SPECTRAL_WINDOW", "STATE"} <= subtables
        assert ms.nrows() == res.rows
        assert ms.getdminfo("DATA")["TYPE"] == "TiledColumnStMan"
        assert ms.getdminfo("CORRECTED_DATA")["TYPE"] == "TiledColumnStMan"
        data = ms.getcol("DATA")
        assert data.shape == (res.rows, 768, 2)
        assert np.array_equal(ms.getcol("CORRECTED_DATA"), data)
        assert not np.any(ms.getcol("MODEL_DATA"))
        assert np.all(ms.getcol("ANTENNA1") <= ms.getcol("ANTENNA2"))
        assert np.all(np.diff(ms.getcol("TIME")) >= 0)
    with pt.table(str(ms_path / "SPECTRAL_WINDOW"), ack=False) as spw:
        assert spw.nrows() == 1
        f = spw.getcell("CHAN_FREQ", 0)
        assert len(f) == 768 and np.all(np.diff(f) > 0)
        assert 1.311e9 < f[0] < 1.3115e9 and 1.4985e9 < f[-1] < 1.499e9
    with pt.table(str(ms_path / "POLARIZATION"), ack=False) as pol:
        assert list(pol.getcell("CORR_TYPE", 0)) == [9, 12]               # XX, YY
    with pt.table(str(ms_path / "OBSERVATION"), ack=False) as obs:
        assert obs.getcell("TELESCOPE_NAME", 0) == "OVRO_MMA"
    with pt.table(str(ms_path / "ANTENNA"), ack=False) as ant:
        assert ant.nrows() == 117
        assert np.allclose(ant.getcol("DISH_DIAMETER"), 4.65)
        r = np.linalg.norm(ant.getcol("POSITION"), axis=1)
        assert np.all(np.abs(r - 6.37e6) < 3e4)                           # ITRF, on the Earth
    with pt.table(str(ms_path / "FIELD"), ack=False) as fld:
        ra, dec = fld.getcell("PHASE_DIR", 0)[0]
        assert np.degrees(dec) == pytest.approx(res.phase_center_dec_deg)
        assert np.degrees(ra) % 360 == pytest.approx(res.phase_center_ra_deg % 360)
    with pt.table(str(ms_path / "HISTORY"), ack=False) as hist:
        text = " ".join(hist.getcol("MESSAGE"))
        assert "unprojected_w0" in text and "sb00" in text


def test_pyuvdata_reads_ms_with_same_visibilities_as_its_own_conversion(tiny, tmp_path):
    g, res, _ = tiny
    ra, dec = np.radians(res.phase_center_ra_deg), np.radians(res.phase_center_dec_deg)
    # pyuvdata's path: read all subbands, phase to the same centre, sort channels
    ref = _uv(g.files)
    ref.phase(lon=ra, lat=dec, epoch="J2000", cat_name="pc")
    ref.reorder_freqs(channel_order="freq")
    ours = _uv(res.ms_path)
    assert ours.Nfreqs == 768 and ours.Nblts == ref.Nblts
    _assert_same_vis(ref, ours)
    # and the MS pyuvdata itself writes from the same phased data reads back the same
    ref_ms = tmp_path / "pyuvdata.ms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.write_ms(str(ref_ms))
    _assert_same_vis(_uv(ref_ms), ours)


def test_runs_in_a_process_pool(tiny, tmp_path):
    """Plain top-level function with picklable arguments and result (the engine's executor)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    g, res, _ = tiny
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        r = pool.submit(convert_group, [str(p) for p in g.files], str(tmp_path / "pool.ms")).result()
    assert r.rows == res.rows and r.ms_path == str(tmp_path / "pool.ms")
    assert r.as_dict()["channels"] == 768


def test_block_size_does_not_change_the_ms(tiny, tmp_path):
    """Streaming in many row blocks (with read-ahead) writes exactly the same MS."""
    g, res, _ = tiny
    small = convert_group(g.files, tmp_path / "blocks.ms", chunk_rows=37)
    with pt.table(res.ms_path, ack=False) as a, pt.table(small.ms_path, ack=False) as b:
        for col in ("DATA", "FLAG", "UVW", "WEIGHT", "ANTENNA1", "ANTENNA2", "TIME", "CORRECTED_DATA"):
            assert np.array_equal(a.getcol(col), b.getcol(col)), col


def test_phased_point_source_has_zero_phase_in_ms(tmp_path):
    """Converter phasing to a source's position leaves ~0 phase (same convention as pyuvdata)."""
    src = Source("PT", CALIBRATOR["ra_deg"] - 0.4, 54.9, 2.0, -0.7)
    (g,) = simulate(tmp_path / "sim", preset="tiny", sources=[src], unit_gains=True, noise=False,
                    antenna_file=ANTENNA_CSV if ANTENNA_CSV.exists() else None)
    res = convert_group(g.files, tmp_path / "pt.ms", phase_center=(src.ra_deg, src.dec_deg))
    with pt.table(res.ms_path, ack=False) as ms:
        d = ms.getcol("DATA")
        a1, a2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
        uvw = ms.getcol("UVW")
    cross = a1 != a2
    assert np.linalg.norm(uvw[cross], axis=1).max() > 2000
    ph = np.degrees(np.abs(np.angle(d[cross])))
    assert ph.max() < 0.5
    # and the default (meridian) centre gives fringes: the convention matters
    res2 = convert_group(g.files, tmp_path / "mer.ms")
    with pt.table(res2.ms_path, ack=False) as ms:
        d2 = ms.getcol("DATA")
    assert np.degrees(np.abs(np.angle(d2[cross]))).max() > 90


def test_zenith_convention_option(tmp_path):
    src = Source("PT", CALIBRATOR["ra_deg"], 54.4, 2.0, -0.7)
    kw = dict(preset="tiny", sources=[src], noise=False, seed=4, subbands=list(range(12)))
    (gw,) = simulate(tmp_path / "w0", **kw)
    (gz,) = simulate(tmp_path / "z", convention="zenith", **kw)
    rw = convert_group(gw.files, tmp_path / "w0.ms")
    rz = convert_group(gz.files, tmp_path / "z.ms", convention="zenith")
    wrong = convert_group(gz.files, tmp_path / "wrong.ms")              # default convention: wrong here
    with pt.table(rw.ms_path, ack=False) as a, pt.table(rz.ms_path, ack=False) as b, \
            pt.table(wrong.ms_path, ack=False) as c:
        dw, dz, dx = a.getcol("DATA"), b.getcol("DATA"), c.getcol("DATA")
        flags = a.getcol("FLAG")
        text = " ".join(pt.table(rz.ms_path + "/HISTORY", ack=False).getcol("MESSAGE"))
    ok = ~flags
    assert np.allclose(dw[ok], dz[ok], atol=1e-4 * np.abs(dw).max())
    assert np.abs(dw[ok] - dx[ok]).max() > 0.5 * np.abs(dw).max()
    assert "zenith" in text
    # subbands 12..15 were not simulated: flagged, zero, and counted as missing
    assert rw.missing_subbands == [12, 13, 14, 15]


def test_missing_subband_gives_flagged_channels(tmp_path):
    (g,) = simulate(tmp_path / "sim", preset="tiny", faults=("missing_subband", "nans", "timestamp_jitter"),
                    seed=8)
    assert len({p.name[:19] for p in g.files}) > 1          # file-name times differ by a few seconds
    res = convert_group(g.files, tmp_path / "m.ms")
    assert res.missing_subbands == [7] and res.channels == 768
    assert res.nan_samples_flagged == 5
    with pt.table(res.ms_path, ack=False) as ms:
        flags = ms.getcol("FLAG")
        data = ms.getcol("DATA")
    sb7 = slice((15 - 7) * 48, (15 - 7) * 48 + 48)          # ascending channel block of sb07
    assert flags[:, sb7].all() and not np.any(data[:, sb7])
    others = np.ones(768, bool)
    others[sb7] = False
    assert flags[:, others].sum() == 5                       # only the NaN samples
    assert np.all(np.isfinite(data))
    assert res.flagged_fraction == pytest.approx((flags.sum()) / flags.size)


# ---- bad input: clear errors, nothing left behind ------------------------------------------
def _assert_nothing_left(directory: Path, name: str):
    assert not (directory / name).exists()
    assert not list(directory.glob(f"{TMP_PREFIX}*"))


def test_truncated_file(tmp_path):
    (g,) = simulate(tmp_path / "sim", preset="tiny", faults=("truncated_file",))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PermanentStageError) as err:
        convert_group(g.files, out / "t.ms")
    assert "_sb03.hdf5" in str(err.value) and "truncated" in str(err.value)
    _assert_nothing_left(out, "t.ms")


def test_non_uvh5_files(tiny, tmp_path):
    g, _, _ = tiny
    files = [tmp_path / p.name for p in g.files]
    for src, dst in zip(g.files, files):
        shutil.copy(src, dst)
    files[4].write_text("not a visibility file\n")
    with pytest.raises(PermanentStageError, match="not an HDF5 file") as err:
        convert_group(files, tmp_path / "x.ms")
    assert files[4].name in str(err.value)
    with h5py.File(files[4], "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(PermanentStageError, match="not a UVH5 file"):
        convert_group(files, tmp_path / "x.ms")
    _assert_nothing_left(tmp_path, "x.ms")


def test_subbands_that_disagree(tmp_path):
    start = default_start()
    (a,) = simulate(tmp_path / "a", preset="tiny", start=start, subbands=range(13))
    (b,) = simulate(tmp_path / "b", preset="tiny", start=start, n_ant=8, subbands=[13])
    (c,) = simulate(tmp_path / "c", preset="tiny", start=start + timedelta(seconds=60), subbands=[13])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PermanentStageError, match="disagree") as err:
        convert_group(a.files + b.files, out / "x.ms")
    msg = str(err.value)
    assert str(b.files[0]) in msg and str(a.files[0]) in msg and "Nblts" in msg
    with pytest.raises(PermanentStageError, match="times differ"):
        convert_group(a.files + c.files, out / "x.ms")
    _assert_nothing_left(out, "x.ms")


@pytest.mark.skipif(not ANTENNA_CSV.exists(), reason="public station table not available")
def test_antenna_positions_that_disagree(tmp_path):
    start = default_start()
    (a,) = simulate(tmp_path / "a", preset="tiny", start=start, subbands=range(13))
    (b,) = simulate(tmp_path / "b", preset="tiny", start=start, subbands=[13], antenna_file=ANTENNA_CSV)
    with pytest.raises(PermanentStageError, match="antenna_positions differ") as err:
        convert_group(a.files + b.files, tmp_path / "x.ms")
    assert str(b.files[0]) in str(err.value)
    _assert_nothing_left(tmp_path, "x.ms")


def test_wrong_names_duplicates_and_too_few(tiny, tmp_path):
    g, _, _ = tiny
    renamed = tmp_path / "observation.hdf5"
    shutil.copy(g.files[0], renamed)
    with pytest.raises(PermanentStageError, match="not a DSA-110 subband file name") as err:
        convert_group([renamed] + g.files[1:], tmp_path / "x.ms")
    assert "observation.hdf5" in str(err.value)
    dup = tmp_path / g.files[3].name
    shutil.copy(g.files[3], dup)
    with pytest.raises(PermanentStageError, match="duplicate subband") as err:
        convert_group(g.files + [dup], tmp_path / "x.ms")
    assert "sb03" in str(err.value)
    with pytest.raises(PermanentStageError, match="at least 12 required"):
        convert_group(g.files[:5], tmp_path / "x.ms")
    _assert_nothing_left(tmp_path, "x.ms")


def test_existing_destination(tiny, tmp_path):
    g, _, _ = tiny
    dest = tmp_path / "d.ms"
    dest.mkdir()
    (dest / "marker").write_text("old")
    with pytest.raises(PermanentStageError, match="already exists"):
        convert_group(g.files, dest)
    res = convert_group(g.files, dest, overwrite=True)
    assert not (dest / "marker").exists() and res.rows == 440
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def _corrupt_late_chunk(src: Path, dst: Path) -> None:
    """Copy a subband with gzip-chunked visdata and damage its last chunk (header stays valid)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        vis = f["Data/visdata"][()]
        del f["Data/visdata"]
        f["Data"].create_dataset("visdata", data=vis, chunks=(64,) + vis.shape[1:], compression="gzip")
    with h5py.File(dst, "r") as f:
        ds = f["Data/visdata"]
        info = ds.id.get_chunk_info(ds.id.get_num_chunks() - 1)
    with open(dst, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(os.urandom(max(1, info.size - 20)))


def test_exception_mid_write_leaves_no_ms(tiny, tmp_path):
    g, _, _ = tiny
    files = [tmp_path / p.name for p in g.files]
    for src, dst in zip(g.files, files):
        if "_sb09" in dst.name:
            _corrupt_late_chunk(src, dst)
        else:
            shutil.copy(src, dst)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PermanentStageError) as err:
        convert_group(files, out / "x.ms", chunk_rows=64)     # several blocks written before the damage
    assert "_sb09.hdf5" in str(err.value)
    _assert_nothing_left(out, "x.ms")


def test_kill_mid_write_leaves_no_ms(tmp_path):
    (g,) = simulate(tmp_path / "sim", preset="small", seed=2)
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys; from engine.convert import convert_group; "
            "convert_group(sys.argv[2:], sys.argv[1], chunk_rows=256)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out / "k.ms")] + [str(p) for p in g.files],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob(f"{TMP_PREFIX}*")):
            time.sleep(0.01)
        assert list(out.glob(f"{TMP_PREFIX}*")), "conversion never started writing"
        time.sleep(0.05)                   # the skeleton exists; blocks are being written
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "k.ms").exists()
    removed = remove_stale_temporaries(out, older_than_s=0)
    assert removed and not list(out.glob(f"{TMP_PREFIX}*"))


def test_single_generic_projected_file(tiny, tmp_path):
    """Any pyuvdata UVH5: other telescope, projected, baseline-major order, mixed conjugation."""
    g, _, _ = tiny
    uv = _uv(g.files[2:4])
    uv.phase(lon=np.radians(130.0), lat=np.radians(54.0), epoch="J2000", cat_name="target")
    uv.telescope.name = "TEST_ARRAY"
    uv.reorder_blts(order="baseline")
    uv.conjugate_bls(convention="ant2<ant1")
    src = tmp_path / "anything.uvh5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_uvh5(str(src))
    res = convert_group([src], tmp_path / "g.ms")
    assert res.telescope_name == "TEST_ARRAY" and res.channels == 96 and res.subbands_present == []
    assert res.phase_center_ra_deg == pytest.approx(130.0) and res.phase_center_dec_deg == pytest.approx(54.0)
    with pt.table(str(tmp_path / "g.ms" / "OBSERVATION"), ack=False) as obs:
        assert obs.getcell("TELESCOPE_NAME", 0) == "TEST_ARRAY"
    ref = _uv(src)
    ref.reorder_freqs(channel_order="freq")
    ref.conjugate_bls(convention="ant1<ant2")        # the MS stores ANTENNA1 <= ANTENNA2
    _assert_same_vis(ref, _uv(res.ms_path))


# ---- imaging check -------------------------------------------------------------------------
def _interpolated_peak(img, j, i):
    """Peak value and sub-pixel position from log-parabolas through the 3x3 neighbourhood."""
    def axis(lm, c, rp):
        lm, c, rp = np.log(max(lm, 1e-6)), np.log(c), np.log(max(rp, 1e-6))
        den = lm - 2 * c + rp
        if den >= 0:
            return 0.0, 1.0
        off = 0.5 * (lm - rp) / den
        return off, float(np.exp(-(lm - rp) ** 2 / (8 * den)))
    dx, fx = axis(img[j, i - 1], img[j, i], img[j, i + 1])
    dy, fy = axis(img[j - 1, i], img[j, i], img[j + 1, i])
    return img[j, i] * fx * fy, i + dx, j + dy


@pytest.mark.wsclean
@pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean not installed")
def test_wsclean_images_calibrator_at_true_position(tmp_path):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    (g,) = simulate(tmp_path / "sim", preset="tiny", n_ant=16, unit_gains=True, seed=1)
    res = convert_group(g.files, tmp_path / "cal.ms")
    # the calibrator (Dec 55.575) is 1 deg north of the meridian phase centre (Dec 54.57):
    # 1700 x 5" covers +-1.18 deg
    cmd = ["wsclean", "-quiet", "-size", "1700", "1700", "-scale", "5asec", "-weight", "briggs", "0",
           "-niter", "300", "-auto-threshold", "5", "-mgain", "0.9", "-pol", "I", "-data-column", "DATA",
           "-use-wgridder", "-no-update-model-required", "-name", str(tmp_path / "img"), res.ms_path]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=300)
    with fits.open(tmp_path / "img-image.fits") as hdul:
        img = hdul[0].data[0, 0]
        hdr = hdul[0].header
    wcs = WCS(hdr).celestial
    j, i = np.unravel_index(np.nanargmax(img), img.shape)
    peak, x, y = _interpolated_peak(img, j, i)
    cal = next(s for s in g.truth["sources"] if s["name"] == "J0834+5534")
    pos = wcs.pixel_to_world(x, y)
    true = SkyCoord(cal["ra_deg"] * u.deg, cal["dec_deg"] * u.deg)
    beam_minor = hdr["BMIN"] * 3600
    assert pos.separation(true).arcsec < 0.3 * beam_minor
    assert peak == pytest.approx(cal["apparent_flux_jy"], rel=0.10)
    assert cal["apparent_flux_jy"] > 2.0          # it really is the brightest thing in the field


def test_single_generic_unprojected_file(tiny, tmp_path):
    """Unprojected UVH5 of another telescope without a pointing keyword: phased to the zenith
    declination at the meridian of mid-observation, same visibilities as pyuvdata's phase()."""
    g, _, _ = tiny
    uv = _uv(g.files[5])
    uv.telescope.name = "OTHER_DRIFT"
    uv.extra_keywords = {}
    src = tmp_path / "drift.uvh5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_uvh5(str(src))
    res = convert_group([src], tmp_path / "d.ms")
    assert res.pointing_dec_deg is None and res.channels == 48
    assert res.phase_center_dec_deg == pytest.approx(uv.telescope.location.lat.deg)
    ref = _uv(src)
    ref.phase(lon=np.radians(res.phase_center_ra_deg), lat=np.radians(res.phase_center_dec_deg),
              epoch="J2000", cat_name="pc")
    ref.reorder_freqs(channel_order="freq")
    _assert_same_vis(ref, _uv(res.ms_path))
