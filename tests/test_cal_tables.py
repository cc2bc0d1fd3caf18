"""MS -> solve -> CASA-layout tables -> reopen with casacore -> apply -> CORRECTED_DATA ~ model."""

import math
import os
import pickle
import shutil

import numpy as np
import pytest
from casacore import tables

from engine.calibration.apply import apply_calibration, read_ms_for_solve, solve_ms
from engine.calibration.caltable import read_caltable, write_bandpass_table, write_gain_table
from engine.calibration.catalogue import CatalogueError
from engine.calibration.solver import solve_calibration
from engine.calibration.synthetic import synthesize, write_ms
from engine.errors import PermanentStageError

SIGMA = 1.0


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    obs = synthesize(nant=12, nchan=48, ntime=12, sigma=SIGMA, seed=31, source_offset_deg=(0.2, -0.4))
    ms = write_ms(str(d / "grp.ms"), obs)
    res = solve_ms(ms, obs.calibrator, d / "tables", qa_thresholds={"min_antennas": 10})
    return obs, ms, res, d


def test_solve_ms_result_plain_and_passes(case):
    obs, ms, res, d = case
    pickle.loads(pickle.dumps(res))
    assert res["qa_passed"], res["qa_reasons"]
    assert res["calibrator"] == "SYNTH"
    assert os.path.isdir(res["bandpass_table"]) and os.path.isdir(res["gain_table"])
    assert not [p for p in os.listdir(d / "tables") if ".tmp-" in p]
    assert res["metrics"]["n_antennas_with_solutions"] == 12
    assert res["rfi_flagged_fraction"] < 0.02
    assert set(res["timings_s"]) >= {"read", "flag", "model", "solve", "write_tables", "total"}


def test_tables_have_casa_layout(case):
    _, ms, res, _ = case
    for path, viscal, nchan in ((res["bandpass_table"], "B Jones", 48), (res["gain_table"], "G Jones", 1)):
        t = tables.table(path, ack=False)
        try:
            assert set(t.colnames()) >= {"TIME", "INTERVAL", "FIELD_ID", "SPECTRAL_WINDOW_ID", "ANTENNA1", "ANTENNA2",
                                         "SCAN_NUMBER", "OBSERVATION_ID", "CPARAM", "PARAMERR", "FLAG", "SNR",
                                         "WEIGHT"}
            kw = t.getkeywords()
            assert kw["ParType"] == "Complex" and kw["VisCal"] == viscal
            assert kw["MSName"] == "grp.ms" and "PolBasis" in kw
            assert t.info()["type"] == "Calibration" and t.info()["subType"] == viscal
            assert t.getcell("CPARAM", 0).shape == (nchan, 2)
            assert t.getcoldesc("CPARAM")["valueType"] == "complex"
            assert t.getcolkeywords("TIME")["MEASINFO"]["type"] == "epoch"
            assert set(np.unique(t.getcol("ANTENNA2"))) == {res["refant"]}
            for sub in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION", "HISTORY"):
                assert sub in kw
                s = tables.table(os.path.join(path, sub), ack=False)
                assert s.nrows() >= 1
                s.close()
                # the keyword must point inside the final table, not at the temporary name
                assert ".tmp-" not in str(kw[sub])
        finally:
            t.close()
        with tables.table(os.path.join(path, "SPECTRAL_WINDOW"), ack=False) as s:
            assert s.getcell("NUM_CHAN", 0) == nchan
        with tables.table(os.path.join(path, "ANTENNA"), ack=False) as a:
            assert a.nrows() == 12


def test_caltable_roundtrip_exact(case, tmp_path):
    obs, ms, _, _ = case
    d = read_ms_for_solve(ms)
    r = solve_calibration(d.vis, obs.model, d.flags, d.ant1, d.ant2, d.times, d.freqs)
    bp = write_bandpass_table(tmp_path / "x.B", r, ms)
    gp = write_gain_table(tmp_path / "x.G", r, ms)
    b, g = read_caltable(bp), read_caltable(gp)
    assert b.vis_cal == "B Jones" and g.vis_cal == "G Jones" and b.refant == r.refant
    np.testing.assert_array_equal(b.cparam[0], r.bandpass)
    np.testing.assert_array_equal(b.flags[0], r.bandpass_flags)
    np.testing.assert_array_equal(g.cparam[:, :, 0], r.gains)
    np.testing.assert_array_equal(g.flags[:, :, 0], r.gain_flags)
    np.testing.assert_allclose(g.times, r.gain_times)
    np.testing.assert_allclose(b.freqs, d.freqs)
    assert g.freqs.size == 1 and g.freqs[0] == pytest.approx(d.freqs.mean())
    # writing again replaces the table atomically
    write_gain_table(tmp_path / "x.G", r, ms)
    assert sorted(os.listdir(tmp_path)) == ["x.B", "x.G"]


def test_apply_gives_model(case, tmp_path):
    obs, ms, res, _ = case
    ms2 = str(tmp_path / "copy.ms")
    shutil.copytree(ms, ms2)
    out = apply_calibration(ms2, res["bandpass_table"], res["gain_table"], chunk_rows=500)
    assert out["rows"] == obs.vis.shape[0] * obs.vis.shape[1]
    with tables.table(ms2, ack=False) as t:
        cd = t.getcol("CORRECTED_DATA").reshape(obs.vis.shape)
        fl = t.getcol("FLAG").reshape(obs.vis.shape)
    cross = obs.ant1 != obs.ant2
    model = obs.model[:, cross][..., None] * np.ones(2)
    ok = ~fl[:, cross]
    assert ok.mean() > 0.97
    ratio = (cd[:, cross][ok] / model[ok]).mean()
    assert abs(ratio - 1) < 0.01
    resid = cd[:, cross] - model
    rms = np.sqrt(np.mean(np.abs(resid[ok]) ** 2))
    # corrected noise: sqrt(2) sigma divided by |G B|^2 ~ 1, plus a little solution noise
    assert rms == pytest.approx(math.sqrt(2) * SIGMA, rel=0.2)


def test_flagged_solutions_flag_data(case, tmp_path):
    obs, ms, res, _ = case
    ms2 = str(tmp_path / "copy2.ms")
    shutil.copytree(ms, ms2)
    g2 = str(tmp_path / "flagged.G")
    shutil.copytree(res["gain_table"], g2)
    with tables.table(g2, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        f[t.getcol("ANTENNA1") == 3] = True
        t.putcol("FLAG", f)
    with tables.table(ms2, ack=False) as t:
        before = t.getcol("FLAG")
    apply_calibration(ms2, res["bandpass_table"], g2)
    with tables.table(ms2, ack=False) as t:
        after = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    with3 = (a1 == 3) | (a2 == 3)
    assert after[with3].all()
    np.testing.assert_array_equal(after[~with3], before[~with3] | after[~with3])
    assert after[~with3].mean() < 0.05


def test_read_ms_irregular_row_order(case, tmp_path):
    obs, ms, _, _ = case
    regular = read_ms_for_solve(ms)
    with tables.table(ms, ack=False) as t:
        srt = t.sort("ANTENNA2, ANTENNA1, TIME")
        srt.copy(str(tmp_path / "sorted.ms"), deep=True).close()
        srt.close()
    shuffled = read_ms_for_solve(str(tmp_path / "sorted.ms"))
    np.testing.assert_array_equal(shuffled.vis, regular.vis)
    np.testing.assert_array_equal(shuffled.ant1, regular.ant1)
    np.testing.assert_allclose(shuffled.uvw, regular.uvw)
    assert regular.vis.shape == obs.vis.shape
    np.testing.assert_allclose(regular.freqs, obs.freqs)
    assert regular.phase_centre == pytest.approx(obs.phase_centre)


def test_errors(tmp_path, case):
    obs, ms, _, _ = case
    with pytest.raises(PermanentStageError):
        read_ms_for_solve(str(tmp_path / "missing.ms"))
    with pytest.raises(CatalogueError):
        solve_ms(ms, "NOT-A-CALIBRATOR", tmp_path)
    with pytest.raises(PermanentStageError):
        read_caltable(str(tmp_path / "missing.G"))
