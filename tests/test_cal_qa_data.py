"""The data checks of a solution (engine.calibration.qa_data) at a low sample budget.

At full DSA-110 size the checks subsample the residual statistics; the closure phases must
still average every channel, or their noise alone exceeds the 5 deg gate (a full-size
calibrator group failed QA with "closure phase rms 7.07 deg > 5 (expected 7.08 from the
noise)" when they used every ninth channel).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.calibration.qa_data import corrected_checks
from engine.calibration.solver import solve_calibration
from engine.calibration.synthetic import synthesize


@pytest.fixture(scope="module")
def solved():
    obs = synthesize(nant=16, nchan=256, ntime=8, sigma=3.0, flux_jy=5.0, seed=21)
    res = solve_calibration(obs.vis, obs.model, None, obs.ant1, obs.ant2, obs.times, obs.freqs)
    return obs, res


def _checks(obs, res, **kw):
    return corrected_checks(obs.vis, res.flags, obs.model, res, obs.ant1, obs.ant2, obs.times, **kw)


def test_closure_noise_does_not_grow_when_the_statistics_are_subsampled(solved) -> None:
    obs, res = solved
    full = _checks(obs, res)
    n = obs.vis.size
    # budgets ~20x smaller than the data: the residual statistics use every 20th channel pair
    sub = _checks(obs, res, max_samples=n / 20, max_stat_samples=n / 50)
    assert full["closure_phase_expected_deg"] == pytest.approx(sub["closure_phase_expected_deg"], rel=0.1)
    assert full["closure_phase_rms_deg"] == pytest.approx(sub["closure_phase_rms_deg"], rel=1e-6)
    assert full["model_amp_ratio_median"] == pytest.approx(sub["model_amp_ratio_median"], rel=1e-6)
    # the robust rms from 2 % of the samples still agrees within a few %
    assert sub["residual_ratio"] == pytest.approx(full["residual_ratio"], rel=0.1)
    assert sub["thermal_rms_jy"] == pytest.approx(full["thermal_rms_jy"], rel=0.1)


def test_a_good_solution_passes_and_the_noise_is_the_injected_one(solved) -> None:
    obs, res = solved
    c = _checks(obs, res, max_samples=obs.vis.size / 20)
    # corrected noise ~ sigma sqrt(2) / |g|^2 with |g| ~ 1: close to the injected complex rms
    assert 0.5 * math.sqrt(2) * obs.sigma < c["thermal_rms_jy"] < 2.0 * math.sqrt(2) * obs.sigma
    assert 0.9 < c["residual_ratio"] < 1.15
    assert c["closure_phase_rms_deg"] < 5.0
    # measured closure scatter is what the noise predicts (within the robust estimator's spread)
    assert c["closure_phase_rms_deg"] == pytest.approx(c["closure_phase_expected_deg"], rel=0.35)
    assert c["model_amp_deviation_max"] < 0.02


def test_a_wrong_model_shows_in_the_residual_ratio_however_subsampled(solved) -> None:
    obs, res = solved
    wrong = obs.model * np.exp(1j * np.linspace(0, 3, obs.model.shape[2]))[None, None, :].astype(np.complex64) ** 2
    c = corrected_checks(obs.vis, res.flags, wrong, res, obs.ant1, obs.ant2, obs.times,
                         max_samples=obs.vis.size / 20, max_stat_samples=1e4)
    assert c["residual_ratio"] > 1.5
