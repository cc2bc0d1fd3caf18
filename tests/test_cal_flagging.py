"""RFI flagger on synthetic noise-dominated calibrator data with injected RFI."""

import numpy as np
import pytest

from engine.calibration.flagging import flag_fractions, flag_rfi, flagged_per_baseline, sumthreshold
from engine.calibration.synthetic import inject_rfi, synthesize

SIGMA = 2.3   # Jy per real and per imaginary part of one visibility (12.9 s, 244 kHz)


@pytest.fixture(scope="module")
def rfi_case():
    # 5 Jy calibrator, realistic per-visibility noise, 768 channels, 24 integrations
    obs = synthesize(nant=16, nchan=768, ntime=24, sigma=SIGMA, flux_jy=5.0, seed=11,
                     source_offset_deg=(0.3, 0.8))
    rng = np.random.default_rng(12)
    length = np.linalg.norm(obs.uvw[obs.times.size // 2], axis=1)
    mask, ampl = inject_rfi(obs.vis, obs.ant1, obs.ant2, rng, SIGMA, n_channels=10, n_bursts=3,
                            amp_range_sigma=(3.0, 300.0), bl_length=length)
    res = flag_rfi(obs.vis, None, obs.ant1, obs.ant2)
    return obs, mask, ampl, res


def test_rfi_detection_and_false_positive_rate(rfi_case):
    obs, mask, ampl, res = rfi_case
    cross = obs.ant1 != obs.ant2
    f, m, a = res.flags[:, cross], mask[:, cross], ampl[:, cross]
    detected = f[m].mean()
    false = f[~m].mean()
    lines = []
    edges = [0, 1, 2, 3, 5, 10, 30, 100, 1e4]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = m & (a >= lo) & (a < hi)
        if sel.any():
            lines.append(f"  RFI amplitude {lo:g}-{hi:g} sigma: {sel.sum():7d} samples, {f[sel].mean():.3f} flagged")
    print("\nRFI detection vs amplitude (per-baseline amplitude, units of sigma per component):")
    print("\n".join(lines))
    print(f"  overall: {detected:.4f} of RFI samples flagged, {false:.5f} of clean samples flagged")
    assert detected >= 0.95
    assert false <= 0.02
    # strong RFI is always caught
    assert f[m & (a >= 5)].mean() > 0.999


def test_autos_zeros_nans_flagged_and_fractions(rfi_case):
    obs, _, _, res = rfi_case
    auto = obs.ant1 == obs.ant2
    assert res.flags[:, auto].all()
    vis = obs.vis.copy()
    b = np.nonzero(~auto)[0][5]
    vis[3, b, 10, 0] = 0
    vis[4, b, 11, 1] = np.nan
    dead = 7
    vis[:, (obs.ant1 == dead) | (obs.ant2 == dead)] = 0
    r = flag_rfi(vis, None, obs.ant1, obs.ant2)
    assert r.flags[3, b, 10].all() and r.flags[4, b, 11].all()
    assert r.antenna_fraction[dead] == 1.0
    assert r.antenna_fraction.shape == (16,) and r.channel_fraction.shape == (768,)
    assert r.time_fraction.shape == (24,)
    others = np.delete(r.antenna_fraction, dead)
    assert np.all(others < 0.2)
    # existing flags are kept
    pre = np.zeros(vis.shape, bool)
    pre[0, b, 100:110] = True
    r2 = flag_rfi(obs.vis, pre, obs.ant1, obs.ant2)
    assert r2.flags[0, b, 100:110].all()


def test_clean_data_barely_flagged():
    obs = synthesize(nant=12, nchan=384, ntime=24, sigma=SIGMA, seed=21)
    r = flag_rfi(obs.vis, None, obs.ant1, obs.ant2)
    assert r.flagged_fraction < 0.005
    # high per-visibility SNR with bandpass ripple must not be mistaken for RFI either
    obs2 = synthesize(nant=12, nchan=384, ntime=24, sigma=0.3, seed=22)
    r2 = flag_rfi(obs2.vis, None, obs2.ant1, obs2.ant2)
    assert r2.flagged_fraction < 0.02


def test_sumthreshold_window_logic():
    z = np.zeros((1, 24, 64), np.float32)
    z[0, :, 20] = 1.5                      # weak persistent channel: only long time windows see it
    z[0, 5, 40:43] = 3.5                   # short broadband burst (3 channels)
    m = np.zeros(z.shape, bool)
    sumthreshold(z, m, -2, 1, 5.0)
    assert not m.any()
    sumthreshold(z, m, -2, 16, 5.0 / 1.5 ** 4)
    assert m[0, :, 20].all() and m.sum() == 24
    sumthreshold(z, m, -1, 2, 5.0 / 1.5)
    assert m[0, 5, 40:43].all()
    assert m.sum() == 24 + 3
    # flagged samples count as the threshold: no growth from a strong already-flagged sample
    z2 = np.zeros((1, 1, 32), np.float32)
    z2[0, 0, 10] = 1000.0
    m2 = np.zeros(z2.shape, bool)
    m2[0, 0, 10] = True
    for w in (2, 4, 8):
        sumthreshold(z2, m2, -1, w, 5.0 / 1.5 ** np.log2(w))
    assert m2.sum() == 1


def test_flag_fractions_counts():
    f = np.zeros((2, 3, 4, 2), bool)
    a1 = np.array([0, 0, 1])
    a2 = np.array([0, 1, 2])
    f[:, 1] = True            # baseline 0-1 fully flagged
    ant, chan, tim, overall = flag_fractions(f, a1, a2, 3)
    assert ant.tolist() == [1.0, 0.5, 0.0]
    assert overall == 0.5 and chan.tolist() == [0.5] * 4 and tim.tolist() == [0.5, 0.5]


def test_in_place_flagging_gives_the_same_flags_in_the_input_array(rfi_case):
    """The solve stage flags its one flag cube in place (memory): same answer as a copy."""
    obs, _mask, _ampl, res = rfi_case
    flags = np.zeros(obs.vis.shape, bool)
    flags[:, 3, 100:110] = True                         # existing flags are kept
    copy = flag_rfi(obs.vis, flags.copy(), obs.ant1, obs.ant2)
    inplace = flag_rfi(obs.vis, flags, obs.ant1, obs.ant2, in_place=True)
    assert inplace.flags is flags
    assert np.array_equal(inplace.flags, copy.flags)
    assert inplace.new_fraction == pytest.approx(copy.new_fraction)
    assert flags[:, 3, 100:110].all()
    with pytest.raises(ValueError, match="C-ordered bool"):
        flag_rfi(obs.vis, flags.astype(np.uint8), obs.ant1, obs.ant2, in_place=True)


@pytest.mark.parametrize("shape", [(3, 5, 8, 2), (2, 4, 7, 1), (1, 3, 5, 3)])
def test_flagged_per_baseline_is_a_count_per_baseline(shape):
    rng = np.random.default_rng(4)
    flags = rng.random(shape) < 0.3
    expect = flags.transpose(1, 0, 2, 3).reshape(shape[1], -1).sum(axis=1)
    assert np.array_equal(flagged_per_baseline(flags), expect)
    assert np.array_equal(flagged_per_baseline(np.asfortranarray(flags)), expect)
