"""Robust noise estimates shared by calibration and imaging QA."""

from __future__ import annotations

import math

import numpy as np


def robust_complex_rms(z: np.ndarray) -> float:
    """sqrt(E|z|^2) of complex Gaussian noise from the MADs of its real and imaginary parts
    (outliers such as residual RFI or a few bad baselines do not inflate it)."""
    z = np.asarray(z)
    if z.size == 0:
        return float("nan")
    s_re = 1.4826 * np.median(np.abs(z.real - np.median(z.real)))
    s_im = 1.4826 * np.median(np.abs(z.imag - np.median(z.imag)))
    return float(math.hypot(s_re, s_im))
