"""Natural, uniform and Briggs imaging weights computed on the uv grid.

The weighting grid has the same cell as the image's Fourier grid,
``du = 1 / (npix * cell)`` wavelengths, so "uniform" means uniform over the
imaged field (as in CASA/WSClean).  Hermitian symmetry is folded in: a
visibility and its conjugate fall in the same cell (points with v < 0 are
mirrored).  Density is the sum of the input (natural) weights per cell.

Briggs (1995) / CASA "briggs" definition::

    f^2 = (5 * 10^-R)^2 / (sum_cells D^2 / sum_k w_k)
    W_k = w_k / (1 + f^2 D(cell_k))

Samples falling outside the grid (|u| or |v| beyond the image's Nyquist
limit) get weight 0.
"""

from __future__ import annotations

import numpy as np

C = 299792458.0


def _cell_index(uvw: np.ndarray, freq: np.ndarray, npix: int, cell_rad: float):
    """Flat cell index (rows, chans) and in-grid mask for a block of rows."""
    scale = freq / C * (npix * cell_rad)  # metres -> cells
    u = uvw[:, 0:1] * scale[None, :]
    v = uvw[:, 1:2] * scale[None, :]
    flip = v < 0
    u = np.where(flip, -u, u)
    v = np.abs(v)
    iu = np.rint(u).astype(np.int64) + npix // 2
    iv = np.rint(v).astype(np.int64) + npix // 2
    inside = (iu >= 0) & (iu < npix) & (iv >= 0) & (iv < npix)
    idx = np.where(inside, iv * npix + iu, 0)
    return idx, inside


def weight_density(uvw, freq, weight, npix: int, cell_rad: float, chunk_rows: int = 20000) -> np.ndarray:
    """Sum of natural weights per uv cell, shape (npix, npix) (row = v, col = u)."""
    grid = np.zeros(npix * npix, dtype=np.float64)
    for s in range(0, uvw.shape[0], chunk_rows):
        idx, inside = _cell_index(uvw[s:s + chunk_rows], freq, npix, cell_rad)
        w = weight[s:s + chunk_rows]
        grid += np.bincount(idx.ravel(), weights=(w * inside).ravel(), minlength=npix * npix)
    return grid.reshape(npix, npix)


def imaging_weights(
    uvw: np.ndarray,
    freq: np.ndarray,
    weight: np.ndarray,
    mode: str,
    npix: int,
    cell_rad: float,
    robust: float = 0.0,
    chunk_rows: int = 20000,
) -> np.ndarray:
    """Return imaging weights (float32, same shape as ``weight``)."""
    mode = mode.lower()
    if mode == "natural":
        out = np.array(weight, dtype=np.float32, copy=True)
        for s in range(0, uvw.shape[0], chunk_rows):
            _, inside = _cell_index(uvw[s:s + chunk_rows], freq, npix, cell_rad)
            out[s:s + chunk_rows] *= inside
        return out
    if mode not in ("uniform", "briggs"):
        raise ValueError(f"unknown weighting {mode!r}")
    dens = weight_density(uvw, freq, weight, npix, cell_rad, chunk_rows).ravel()
    if mode == "uniform":
        with np.errstate(divide="ignore"):
            factor = np.where(dens > 0, 1.0 / dens, 0.0)
    else:
        sumw = dens.sum()
        f2 = (5.0 * 10.0 ** (-robust)) ** 2 / (np.sum(dens**2) / sumw) if sumw > 0 else 0.0
        factor = 1.0 / (1.0 + f2 * dens)
    factor = factor.astype(np.float32)
    out = np.empty_like(weight, dtype=np.float32)
    for s in range(0, uvw.shape[0], chunk_rows):
        idx, inside = _cell_index(uvw[s:s + chunk_rows], freq, npix, cell_rad)
        out[s:s + chunk_rows] = weight[s:s + chunk_rows] * factor[idx] * inside
    return out
