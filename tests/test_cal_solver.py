"""Bandpass/gain solver (StEFCal), model, QA and interpolation on synthetic data with known truth."""

import math

import numpy as np
import pytest

from engine.calibration.interpolate import interpolate_in_time, interpolate_solutions
from engine.calibration.qa import QAThresholds, compute_metrics, evaluate_qa
from engine.calibration.solver import (direction_cosines, normalise_bandpass, point_source_model,
                                       solution_intervals, solve_calibration, stefcal)
from engine.calibration.synthetic import synthesize

# Full size: 96 antennas, 24 integrations, sigma = 2.3 Jy per visibility.  The
# bandpass SNR per channel scales as S/sigma * sqrt((nant-1) * ntime); with 32
# antennas the same SNR needs sigma * sqrt(31/95).  (Gains then have *lower* SNR
# than at full size, since 96 channels replace 768: a conservative test.)
NANT, NCHAN, NTIME = 32, 96, 24
SIGMA_FULL_COMPLEX = 2.3                       # rms of the complex noise per visibility
SIGMA_TEST = SIGMA_FULL_COMPLEX / math.sqrt(2) * math.sqrt((NANT - 1) / 95)   # per component


def _normalised_truth(obs, ref):
    """Truth put in the solver's convention (refant phase 0, normalise_bandpass)."""
    B = obs.bandpass * np.conj(obs.bandpass[ref:ref + 1]) / np.abs(obs.bandpass[ref:ref + 1])
    Bn, _ = normalise_bandpass(B)
    J = obs.gains[:, :, None, :] * obs.bandpass[None]           # (T, nant, C, P)
    J = J * np.conj(J[:, ref:ref + 1]) / np.abs(J[:, ref:ref + 1])
    G = (J / Bn[None]).mean(axis=2)                              # constant over channels
    return Bn, G


def _errors(est, truth):
    r = est / truth
    return float(np.sqrt(np.mean((np.abs(r) - 1) ** 2))), float(np.degrees(np.sqrt(np.mean(np.angle(r) ** 2))))


@pytest.fixture(scope="module")
def solved():
    obs = synthesize(nant=NANT, nchan=NCHAN, ntime=NTIME, sigma=SIGMA_TEST, flux_jy=5.0, seed=3)
    res = solve_calibration(obs.vis, obs.model, None, obs.ant1, obs.ant2, obs.times, obs.freqs)
    return obs, res


def test_accuracy_at_realistic_snr(solved):
    obs, res = solved
    Bn, Gn = _normalised_truth(obs, res.refant)
    g_amp, g_ph = _errors(res.gains, Gn)
    b_amp, b_ph = _errors(res.bandpass, Bn)
    print(f"\ngain error: amp {100 * g_amp:.3f} % rms, phase {g_ph:.3f} deg rms; "
          f"bandpass error: amp {100 * b_amp:.3f} % rms, phase {b_ph:.3f} deg rms; "
          f"median SNR G {np.median(res.gain_snr):.0f}, B {np.median(res.bandpass_snr):.0f}")
    assert g_amp <= 0.01 and g_ph <= 1.0
    assert b_amp <= 0.01 and b_ph <= 1.0
    assert not res.bandpass_flags.any() and not res.gain_flags.any()
    # conventions: refant phase zero, bandpass mean amplitude 1 and zero mean phase per antenna
    assert np.allclose(np.angle(res.bandpass[res.refant]), 0, atol=1e-5)
    assert np.allclose(np.angle(res.gains[:, res.refant]), 0, atol=1e-5)
    assert np.allclose(np.abs(res.bandpass).mean(axis=1), 1.0, atol=1e-5)
    again, norm = normalise_bandpass(res.bandpass)
    assert np.allclose(norm, 1.0, atol=1e-5) and np.allclose(again, res.bandpass, atol=1e-5)


def test_errors_match_noise_limit(solved):
    """The per-channel bandpass error equals the thermal limit 1/(sqrt(2) SNR) within 15 %,
    and the reported SNR agrees with the actual scatter."""
    obs, res = solved
    Bn, _ = _normalised_truth(obs, res.refant)
    r = res.bandpass / Bn
    amp_err = np.sqrt(np.mean((np.abs(r) - 1) ** 2))
    expected = np.sqrt(np.mean(1.0 / (2 * res.bandpass_snr.astype(float) ** 2)))
    assert amp_err == pytest.approx(expected, rel=0.15)
    assert res.noise_sigma == pytest.approx([SIGMA_TEST * math.sqrt(2)] * 2, rel=0.02)


def test_per_component_noise_interpretation_reported():
    """If 2.3 Jy is the noise per real/imaginary part (not the complex rms), the noise
    is sqrt(2) higher: the gains still meet 1 % / 1 deg; the per-channel bandpass sits
    at the thermal limit (~1 %).  Reported, asserted against the noise limit."""
    sigma = 2.3 * math.sqrt((NANT - 1) / 95)
    obs = synthesize(nant=NANT, nchan=NCHAN, ntime=NTIME, sigma=sigma, flux_jy=5.0, seed=4)
    res = solve_calibration(obs.vis, obs.model, None, obs.ant1, obs.ant2, obs.times, obs.freqs)
    Bn, Gn = _normalised_truth(obs, res.refant)
    g_amp, g_ph = _errors(res.gains, Gn)
    b_amp, b_ph = _errors(res.bandpass, Bn)
    print(f"\n[sigma 2.3 per component] gain {100 * g_amp:.3f} % / {g_ph:.3f} deg; "
          f"bandpass {100 * b_amp:.3f} % / {b_ph:.3f} deg")
    assert g_amp <= 0.01 and g_ph <= 1.0
    assert b_amp <= 1.2 * math.sqrt(np.mean(1 / (2 * res.bandpass_snr.astype(float) ** 2)))


def test_stefcal_noise_free_exact():
    rng = np.random.default_rng(0)
    nprob, nant = 5, 12
    g = rng.uniform(0.5, 1.5, (nprob, nant)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (nprob, nant)))
    M = rng.normal(size=(nprob, nant, nant)) + 1j * rng.normal(size=(nprob, nant, nant))
    M = M + np.conj(np.swapaxes(M, 1, 2))
    idx = np.arange(nant)
    M[:, idx, idx] = 0
    V = g[:, :, None] * M * np.conj(g[:, None, :])
    A = V * np.conj(M)
    D = np.abs(M) ** 2
    sol, nit, change = stefcal(A, D, tol=1e-12, max_iter=500)
    rot = sol[:, :1] / g[:, :1]
    assert np.allclose(sol / rot * np.abs(rot), g, atol=1e-8)
    assert np.all(change < 1e-10)


def test_refant_override_dead_antenna_and_outliers():
    obs = synthesize(nant=12, nchan=32, ntime=12, sigma=1.0, seed=5)
    vis = obs.vis.copy()
    dead = 4
    vis[:, (obs.ant1 == dead) | (obs.ant2 == dead)] = 0
    flags = (vis == 0)
    # a baseline with a strong spurious offset on a few samples
    b = np.nonzero((obs.ant1 == 1) & (obs.ant2 == 2))[0][0]
    vis[2:4, b, 5:9] += 200.0
    res = solve_calibration(vis, obs.model, flags, obs.ant1, obs.ant2, obs.times, obs.freqs, refant=7)
    assert res.refant == 7
    assert np.allclose(np.angle(res.gains[:, 7]), 0, atol=1e-5)
    assert res.bandpass_flags[dead].all() and res.gain_flags[:, dead].all()
    assert not res.bandpass_flags[np.arange(12) != dead].any()
    assert res.flags[2:4, b, 5:9].all() and res.outliers_flagged >= 8
    Bn, Gn = _normalised_truth(obs, 7)
    live = np.arange(12) != dead
    b_amp, b_ph = _errors(res.bandpass[live], Bn[live])
    limit = math.sqrt(np.mean(1 / (2 * res.bandpass_snr[live].astype(float) ** 2)))
    # phases carry the reference antenna's noise as well: sqrt(2) x the amplitude limit
    assert b_amp < 1.25 * limit and np.radians(b_ph) < 1.25 * math.sqrt(2) * limit
    assert 4 not in res.antennas_with_solutions()


def test_automatic_refant_has_most_data():
    obs = synthesize(nant=8, nchan=16, ntime=6, sigma=0.5, seed=6)
    flags = np.zeros(obs.vis.shape, bool)
    flags[:, obs.ant1 == 0] = True          # antenna 0 loses many baselines
    res = solve_calibration(obs.vis, obs.model, flags, obs.ant1, obs.ant2, obs.times, obs.freqs)
    assert res.refant != 0


def test_solution_intervals_and_solint():
    times = 1000.0 + 12.884902 * np.arange(24)
    idx, mid, width = solution_intervals(times, None)
    assert idx.tolist() == list(range(24))
    idx, mid, width = solution_intervals(times, math.inf)
    assert set(idx) == {0} and width[0] == pytest.approx(24 * 12.884902)
    idx, mid, width = solution_intervals(times, 60.0)
    assert idx.max() + 1 == 6 and np.all(np.diff(idx) >= 0)
    obs = synthesize(nant=10, nchan=16, ntime=24, sigma=0.5, seed=7)
    res = solve_calibration(obs.vis, obs.model, None, obs.ant1, obs.ant2, obs.times, obs.freqs, solint_s=60.0)
    assert res.gains.shape[0] == 6 and res.time_to_solint.shape == (24,)


def test_direction_cosines_and_point_model():
    assert direction_cosines(1.0, 0.5, 1.0, 0.5) == pytest.approx((0.0, 0.0, 1.0))
    l, m, n = direction_cosines(1.0 + math.radians(1) / math.cos(0.5), 0.5, 1.0, 0.5)
    assert l == pytest.approx(math.radians(1), rel=1e-3) and abs(m) < 1e-3
    assert l ** 2 + m ** 2 + n ** 2 == pytest.approx(1.0)
    uvw = np.array([[[100.0, 0.0, 0.0], [0.0, 50.0, 10.0]]])
    freqs = np.array([1.4e9])
    lmn = (0.01, 0.02, math.sqrt(1 - 0.01 ** 2 - 0.02 ** 2))
    vis = point_source_model(uvw, freqs, lmn, 3.0)
    lam = 299792458.0 / 1.4e9
    expect0 = 3.0 * np.exp(2j * np.pi * 100 * 0.01 / lam)
    expect1 = 3.0 * np.exp(2j * np.pi * (50 * 0.02 + 10 * (lmn[2] - 1)) / lam)
    assert vis[0, 0, 0] == pytest.approx(expect0, rel=1e-5)
    assert vis[0, 1, 0] == pytest.approx(expect1, rel=1e-5)


def test_qa_gates(solved):
    obs, res = solved
    q = evaluate_qa(res, None, obs.ant1, obs.ant2)
    assert q.passed, q.reasons
    m = q.metrics
    assert m["n_antennas_with_solutions"] == NANT and m["snr_median"] > 10
    assert 0 <= m["phase_scatter_deg"] < 15 and m["amp_scatter"] < 0.1
    strict = evaluate_qa(res, QAThresholds(min_snr=1e6, min_antennas=NANT + 1, max_phase_scatter_deg=1e-3),
                         obs.ant1, obs.ant2)
    assert not strict.passed
    joined = " ".join(strict.reasons)
    assert "SNR" in joined and "antennas" in joined and "phase scatter" in joined
    with pytest.raises(ValueError):
        QAThresholds.from_dict({"nonsense": 1})


def test_qa_fails_without_source():
    obs = synthesize(nant=10, nchan=16, ntime=12, sigma=2.3, flux_jy=5.0, seed=8)
    rng = np.random.default_rng(1)
    noise = (rng.normal(size=obs.vis.shape) + 1j * rng.normal(size=obs.vis.shape)).astype(np.complex64) * 2.3
    res = solve_calibration(noise, obs.model, None, obs.ant1, obs.ant2, obs.times, obs.freqs)
    q = evaluate_qa(res, {"min_antennas": 8}, obs.ant1, obs.ant2)
    assert not q.passed and q.reasons
    assert compute_metrics(res)["snr_median"] < 10 or res.gain_flags.mean() > 0.3


def test_interpolate_solutions_phase_wrap_and_amplitude():
    a = np.array([2.0 * np.exp(1j * np.radians(170.0)), 1.0 + 0j])
    b = np.array([4.0 * np.exp(1j * np.radians(-170.0)), 1j])
    mid = interpolate_solutions(a, 0.0, b, 10.0, 5.0)
    assert abs(mid[0]) == pytest.approx(3.0)
    assert abs(np.degrees(np.angle(mid[0]))) == pytest.approx(180.0, abs=1e-6)
    assert np.degrees(np.angle(mid[1])) == pytest.approx(45.0)
    many = interpolate_solutions(a, 0.0, b, 10.0, np.array([-5.0, 0.0, 2.5, 10.0, 20.0]))
    assert many.shape == (5, 2)
    assert np.allclose(many[0], a) and np.allclose(many[-1], b) and np.allclose(many[3], b)
    assert np.degrees(np.angle(many[2, 1])) == pytest.approx(22.5)
    flagged = interpolate_solutions(a, 0.0, b, 10.0, 5.0, flags_b=np.array([True, False]))
    assert np.isnan(flagged[0]) and np.isfinite(flagged[1])
    held = interpolate_solutions(a, 0.0, b, 10.0, 0.0, flags_b=np.array([True, False]))
    assert np.allclose(held, a)


def test_interpolate_in_time_flags():
    t = np.array([0.0, 10.0, 20.0])
    s = np.array([[1.0 + 0j], [1j], [-1.0 + 0j]])
    f = np.array([[False], [False], [True]])
    vals, fl = interpolate_in_time(t, s, f, np.array([5.0, 10.0, 15.0, 25.0]))
    assert np.degrees(np.angle(vals[0, 0])) == pytest.approx(45.0)
    assert not fl[0, 0] and not fl[1, 0] and fl[2, 0] and fl[3, 0]


def test_point_model_fast_path_matches_direct():
    rng = np.random.default_rng(3)
    uvw = rng.uniform(-1500, 1500, (3, 40, 3))
    freqs = 1.311e9 + 244140.625 * np.arange(64)            # uniform: two-table fast path
    lmn = (0.03, -0.02, math.sqrt(1 - 0.03 ** 2 - 0.02 ** 2))
    fast = point_source_model(uvw, freqs, lmn, np.linspace(4, 6, 64))
    lam = 299792458.0 / freqs
    tau = uvw[..., 0] * lmn[0] + uvw[..., 1] * lmn[1] + uvw[..., 2] * (lmn[2] - 1)
    direct = np.linspace(4, 6, 64) * np.exp(2j * np.pi * tau[..., None] / lam)
    assert np.abs(fast - direct).max() < 1e-4


def test_antennas_absent_from_data_are_not_counted():
    """An MS ANTENNA table may list the whole array; only antennas in the data count for QA."""
    obs = synthesize(nant=10, nchan=16, ntime=8, sigma=0.5, seed=9)
    a1 = obs.ant1 * 3          # antenna indices 0, 3, 6, ... 27 of a 30-antenna table
    a2 = obs.ant2 * 3
    res = solve_calibration(obs.vis, obs.model, None, a1, a2, obs.times, obs.freqs, nant=30)
    assert res.bandpass.shape[0] == 30 and res.refant % 3 == 0
    assert res.bandpass_flags[1].all() and not res.bandpass_flags[3].any()
    q = evaluate_qa(res, None, a1, a2)
    assert q.metrics["n_antennas"] == 10 and q.metrics["n_antennas_with_solutions"] == 10
    assert q.passed, q.reasons
    assert evaluate_qa(res).metrics["n_antennas"] == 10     # from SolveResult.antennas_present


def test_lazy_model_matches_array_model():
    """The block-evaluated model gives the same cube and the same solutions as the array."""
    from engine.calibration.solver import PointSourceModel, calibrator_model
    obs = synthesize(nant=10, nchan=48, ntime=6, sigma=0.5, seed=12, source_offset_deg=(0.3, -0.5))
    lazy = calibrator_model(obs.calibrator, obs.uvw, obs.times, obs.freqs, obs.phase_centre, lazy=True)
    assert isinstance(lazy, PointSourceModel) and lazy.shape == obs.model.shape
    np.testing.assert_array_equal(np.asarray(lazy), obs.model)
    np.testing.assert_array_equal(lazy[3, 5:17], obs.model[3, 5:17])
    np.testing.assert_allclose(lazy.block(2, chans=slice(None, None, 5)), obs.model[2][:, ::5], rtol=2e-6, atol=2e-6)
    assert lazy.amplitude_max() == pytest.approx(float(np.abs(obs.model).max()), rel=1e-6)
    lazy.prepare()                                # cached phase tables give the same values
    np.testing.assert_array_equal(np.asarray(lazy), obs.model)
    flags = np.zeros(obs.vis.shape, bool)
    flags[:, 7, 10:14] = True
    a = solve_calibration(obs.vis, obs.model, flags, obs.ant1, obs.ant2, obs.times, obs.freqs)
    b = solve_calibration(obs.vis, lazy, flags, obs.ant1, obs.ant2, obs.times, obs.freqs)
    # |M|^2 is S^2 exactly for the lazy model, from the rounded complex64 M for the array
    np.testing.assert_allclose(a.bandpass, b.bandpass, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.gains, b.gains, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.flags, b.flags)


def test_bad_antennas_from_the_input_cube_or_its_counts():
    """An antenna whose data were not flagged upstream but carry noise only is named, whether
    QA is given the input flag cube or its flagged samples per baseline (the solve stage keeps
    only the counts, to hold one flag cube)."""
    from engine.calibration.flagging import flagged_per_baseline
    from engine.calibration.qa import bad_antennas

    obs = synthesize(nant=12, nchan=32, ntime=12, sigma=1.0, seed=8)
    vis = obs.vis.copy()
    deaf = 6
    on = (obs.ant1 == deaf) | (obs.ant2 == deaf)
    rng = np.random.default_rng(9)
    vis[:, on] = (rng.standard_normal(vis[:, on].shape) + 1j * rng.standard_normal(vis[:, on].shape)) * 20
    flags = np.zeros(vis.shape, bool)
    res = solve_calibration(vis, obs.model, flags.copy(), obs.ant1, obs.ant2, obs.times, obs.freqs)
    from_cube = bad_antennas(res, obs.ant1, obs.ant2, flags)
    from_counts = bad_antennas(res, obs.ant1, obs.ant2, flagged_per_baseline(flags))
    assert from_cube == from_counts
    assert deaf in from_counts
    m = compute_metrics(res, obs.ant1, obs.ant2, None, flagged_per_baseline(flags))
    cross = obs.ant1 != obs.ant2
    assert m["data_flagged_fraction"] == pytest.approx(float(res.flags[:, cross].mean()))
