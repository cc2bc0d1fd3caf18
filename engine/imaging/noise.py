"""The thermal noise an image should reach, measured from its own visibilities.

An absolute noise limit fails every snapshot of a bright source (its sidelobes, not the
receivers, set the residual), so image QA compares the residual noise with what the
data's thermal noise allows.  The per-visibility noise comes from the channel-to-channel
differences of the *residual* visibilities (data minus the CLEAN model's prediction):
the model removes the sources, whose fringes would otherwise dominate the differences
towards the edge of a wide field, and the differences remove whatever smooth emission
the model missed.  Propagated through the imaging weights, it gives the noise of the
dirty image of pure noise:

    sigma_img^2 = sum_i w_i^2 sigma_i^2 / 2 / (sum_i w_i)^2,  sigma_i^2 = sigma_0^2 / n_i

with w the imaging weights, n the natural (data) weights and sigma_0^2 = E|noise|^2 at
natural weight 1 (the 1/2: the image is the real part of a complex sum).
"""

from __future__ import annotations

import math

import numpy as np

from engine.robust import robust_complex_rms

MAX_ROWS_VIS = 2_000_000  # visibilities degridded for the estimate


def thermal_image_noise(vis: np.ndarray, natural: np.ndarray, imaging: np.ndarray, model: np.ndarray,
                        make_gridder, seed: int = 0) -> dict:
    """Expected thermal noise of the image (Jy/beam) and the per-visibility noise.

    vis, natural, imaging: (nrow, nchan); model: [y, x] Jy/pixel; ``make_gridder(rows)``
    returns a Gridder bound to those rows (used to predict the model's visibilities on
    a row subset of at most MAX_ROWS_VIS visibilities).
    """
    nrow, nchan = vis.shape
    out = {"thermal_noise_jy": float("nan"), "vis_noise_jy": float("nan"), "noise_samples": 0}
    if nchan < 2 or nrow == 0:
        return out
    take = min(nrow, max(1, MAX_ROWS_VIS // nchan))
    rows = np.sort(np.random.default_rng(seed).choice(nrow, size=take, replace=False)) if take < nrow \
        else np.arange(nrow)
    v = vis[rows]
    if np.any(model):
        v = v - make_gridder(rows).degrid(model)
    n = natural[rows]
    ok = (n[:, 1:] > 0) & (n[:, :-1] > 0)
    d = (v[:, 1:] - v[:, :-1])[ok]
    w_pair = (n[:, 1:] * n[:, :-1] / np.maximum(n[:, 1:] + n[:, :-1], 1e-30))[ok]   # 1/(1/n1 + 1/n2)
    z = d * np.sqrt(w_pair)
    sigma0 = robust_complex_rms(z)
    used = (natural > 0) & (imaging > 0)
    sw = float(imaging[used].sum(dtype=np.float64))
    if not (sw > 0 and math.isfinite(sigma0)):
        return out
    var = float((imaging[used].astype(np.float64) ** 2 / natural[used]).sum()) * sigma0 ** 2 / 2.0
    n_med = float(np.median(natural[used]))
    out["thermal_noise_jy"] = math.sqrt(var) / sw
    out["vis_noise_jy"] = sigma0 / math.sqrt(n_med) if n_med > 0 else float("nan")
    out["noise_samples"] = int(z.size)
    return out
