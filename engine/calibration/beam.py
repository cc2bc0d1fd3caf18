"""Airy primary beam of a DSA-110 dish (uniformly illuminated 4.65 m aperture).

The power pattern is ``P(theta) = (2 J1(x) / x)^2`` with
``x = pi D sin(theta) / lambda``; P(0) = 1.  J1 is evaluated with numpy only
(no scipy at run time) using the Abramowitz & Stegun 9.4.4/9.4.6 polynomial
approximations (absolute error < 1e-7).
"""

from __future__ import annotations

import numpy as np

DISH_DIAMETER_M = 4.65
SPEED_OF_LIGHT = 299_792_458.0


def bessel_j1(x: np.ndarray | float) -> np.ndarray:
    """Bessel function of the first kind, order 1, for real x (vectorised)."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    out = np.empty_like(ax)
    small = ax <= 3.0
    # |x| <= 3:  J1(x)/x = 1/2 - 0.56249985 (x/3)^2 + ...   (A&S 9.4.4)
    y = (ax[small] / 3.0) ** 2
    p = 0.5 + y * (-0.56249985 + y * (0.21093573 + y * (-0.03954289 + y * (
        0.00443319 + y * (-0.00031761 + y * 0.00001109)))))
    out[small] = ax[small] * p
    # |x| > 3: J1(x) = x^-1/2 f1 cos(theta1)   (A&S 9.4.6)
    xl = ax[~small]
    z = 3.0 / xl
    f1 = 0.79788456 + z * (0.00000156 + z * (0.01659667 + z * (0.00017105 + z * (
        -0.00249511 + z * (0.00113653 + z * -0.00020033)))))
    t1 = xl - 2.35619449 + z * (0.12499612 + z * (0.00005650 + z * (-0.00637879 + z * (
        0.00074348 + z * (0.00079824 + z * -0.00029166)))))
    out[~small] = f1 * np.cos(t1) / np.sqrt(xl)
    return np.sign(x) * out


def airy_power(offset_rad: np.ndarray | float, freq_hz: np.ndarray | float,
               diameter_m: float = DISH_DIAMETER_M) -> np.ndarray:
    """Primary-beam power response at ``offset_rad`` from the pointing centre.

    Broadcasts ``offset_rad`` against ``freq_hz``; returns values in [0, 1].
    """
    theta = np.asarray(offset_rad, dtype=np.float64)
    nu = np.asarray(freq_hz, dtype=np.float64)
    x = np.pi * diameter_m * np.sin(theta) * nu / SPEED_OF_LIGHT
    x = np.asarray(x)
    out = np.ones(x.shape, dtype=np.float64)
    nz = np.abs(x) > 1e-9
    xv = x[nz]
    out[nz] = (2.0 * bessel_j1(xv) / xv) ** 2
    return out


def fwhm_rad(freq_hz: float, diameter_m: float = DISH_DIAMETER_M) -> float:
    """Full width at half power of the Airy power pattern (~1.029 lambda/D)."""
    return 1.02899 * SPEED_OF_LIGHT / (float(freq_hz) * diameter_m)


def angular_separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation (radians) of directions given in radians (vectorised)."""
    sdr = np.sin((dec2 - dec1) / 2.0)
    sra = np.sin((ra2 - ra1) / 2.0)
    h = sdr ** 2 + np.cos(dec1) * np.cos(dec2) * sra ** 2
    return 2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
