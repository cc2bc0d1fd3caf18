"""Fast UVH5 header/visibility reading with h5py and its error handling."""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest

from engine.errors import PermanentStageError
from engine.simulator import simulate
from engine.uvh5 import UVH5RowReader, read_header, read_visibilities

pyuvdata = pytest.importorskip("pyuvdata")


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    (g,) = simulate(tmp_path_factory.mktemp("uvh5"), preset="tiny", seed=9, subbands=[0, 5, 15])
    return g


def _uv(path):
    from pyuvdata import UVData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return UVData.from_file(str(path), file_type="uvh5")


def test_header_of_simulated_file(group):
    h = read_header(group.files[0])
    uv = _uv(group.files[0])
    assert h.telescope_name == "DSA_110"
    assert h.nblts == uv.Nblts and h.ntimes == uv.Ntimes and h.nfreqs == 48 and h.npols == 2
    assert h.phase_type == "unprojected"
    assert h.pointing_dec == pytest.approx(np.radians(54.57))
    assert h.spw_axis is True                       # DSA-110 style (Nblts, 1, Nfreqs, Npols)
    assert np.array_equal(h.freq_array, uv.freq_array)
    assert np.allclose(h.time_array, uv.time_array)
    assert np.array_equal(h.antenna_numbers, uv.telescope.antenna_numbers)
    assert np.allclose(h.antenna_positions, uv.telescope.antenna_positions)
    assert h.antenna_names[0] == "DSA-001"
    assert len(h.unique_times) == 8 and h.nbls == 55


def test_visibilities_match_pyuvdata(group):
    path = group.files[1]
    h = read_header(path)
    vis, flags, ns = read_visibilities(path, h, nsamples_out=np.empty((h.nblts, 48, 2), np.float32))
    uv = _uv(path)
    assert np.array_equal(vis, uv.data_array.astype(np.complex64))
    assert np.array_equal(flags, uv.flag_array) and np.allclose(ns, uv.nsample_array)
    # block reading gives the same values
    buf = np.empty((100, 48, 2), np.complex64)
    fl = np.empty((100, 48, 2), bool)
    with UVH5RowReader(h) as r:
        r.read_rows(200, 300, buf, fl)
    assert np.array_equal(buf, vis[200:300])
    # a wrong buffer is refused
    with pytest.raises(ValueError, match="buffer"):
        read_visibilities(path, h, out=np.empty((3, 3), np.complex64))


def test_pyuvdata_written_projected_file(group, tmp_path):
    """Current-format UVH5 from pyuvdata (no spw axis, phase_center_catalog, projected)."""
    uv = _uv(group.files[0])
    uv.phase(lon=2.2, lat=0.95, epoch="J2000", cat_name="target")
    uv.telescope.name = "OTHER"
    out = tmp_path / "other.uvh5"
    uv.write_uvh5(str(out))
    h = read_header(out)
    assert h.telescope_name == "OTHER" and h.spw_axis is False
    assert h.phase_type == "projected"
    assert h.phase_center_ra == pytest.approx(2.2) and h.phase_center_dec == pytest.approx(0.95)
    vis, _, _ = read_visibilities(out, h)
    assert np.allclose(vis, uv.data_array)


def test_truncated_file(group, tmp_path):
    bad = tmp_path / "2025-10-05T15:28:56_sb00.hdf5"
    shutil.copy(group.files[0], bad)
    size = bad.stat().st_size
    with open(bad, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(PermanentStageError) as err:
        read_header(bad)
    msg = str(err.value)
    assert str(bad) in msg and "truncated" in msg


def test_text_file_is_not_uvh5(tmp_path):
    bad = tmp_path / "2025-10-05T15:28:56_sb01.hdf5"
    bad.write_text("this is not HDF5\n")
    with pytest.raises(PermanentStageError, match="not an HDF5 file") as err:
        read_header(bad)
    assert str(bad) in str(err.value)


def test_hdf5_without_header(tmp_path):
    bad = tmp_path / "plain.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(PermanentStageError, match="not a UVH5 file") as err:
        read_header(bad)
    assert str(bad) in str(err.value)


def test_header_missing_keys_and_bad_shapes(group, tmp_path):
    bad = tmp_path / "bad.hdf5"
    shutil.copy(group.files[0], bad)
    with h5py.File(bad, "r+") as f:
        del f["Header/time_array"]
    with pytest.raises(PermanentStageError, match="lacks time_array"):
        read_header(bad)
    bad2 = tmp_path / "bad2.hdf5"
    shutil.copy(group.files[0], bad2)
    with h5py.File(bad2, "r+") as f:
        f["Header/Nfreqs"][()] = 47
    with pytest.raises(PermanentStageError, match="does not match header"):
        read_header(bad2)


def test_missing_file(tmp_path):
    with pytest.raises(PermanentStageError, match="does not exist"):
        read_header(tmp_path / "nope.hdf5")
