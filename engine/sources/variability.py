"""Light-curve variability metrics (Swinbank et al. 2015; Barvainis et al. 2005).

For fluxes S_i with errors sigma_i, weights w_i = 1/sigma_i^2, N epochs:
* weighted mean  S_w = sum w S / sum w
* chi2 = sum w (S - S_w)^2, nu = N - 1, chi2_nu = chi2 / nu, p = P(chi2 > chi2 | nu)
* eta  = chi2_nu  (the weighted reduced chi^2 about the weighted mean)
* V    = std(S, ddof=1) / mean(S)   (coefficient of variation)
* m    = modulation index = V; ``m_debiased`` = sqrt(max(sum (S - mean)^2 - sum sigma^2, 0) / N) / mean
Returns None for fewer than ``min_epochs`` (default 3) finite epochs.
"""

from __future__ import annotations

import math

import numpy as np


def variability_metrics(flux, flux_err, min_epochs: int = 3) -> dict | None:
    s = np.asarray(flux, float)
    e = np.asarray(flux_err, float)
    if s.shape != e.shape:
        raise ValueError("flux and flux_err must have the same shape")
    ok = np.isfinite(s) & np.isfinite(e) & (e > 0)
    s, e = s[ok], e[ok]
    n = s.size
    if n < max(min_epochs, 2):
        return None
    from scipy import stats

    w = 1.0 / e**2
    sw = float((w * s).sum() / w.sum())
    chi2 = float((w * (s - sw) ** 2).sum())
    nu = n - 1
    mean = float(s.mean())
    std = float(s.std(ddof=1))
    v = std / mean if mean != 0 else float("inf")
    num = float(((s - mean) ** 2).sum() - (e**2).sum())
    md = math.sqrt(max(num, 0.0) / n) / mean if mean != 0 else float("inf")
    return {
        "n_epochs": int(n),
        "weighted_mean_jy": sw,
        "mean_jy": mean,
        "eta": chi2 / nu,
        "v": v,
        "chi2": chi2,
        "dof": nu,
        "chi2_nu": chi2 / nu,
        "p_value": float(stats.chi2.sf(chi2, nu)),
        "modulation_index": v,
        "m_debiased": md,
    }
