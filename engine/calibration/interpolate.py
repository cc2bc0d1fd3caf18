"""Interpolation of complex calibration solutions in time.

Amplitude is interpolated linearly; phase linearly along the shorter arc
between the two solutions (the unwrapped phase difference), so gains whose
phase crosses +-180 deg do not swing through zero amplitude.  Outside the
bracketing times the nearest solution is held (no extrapolation).

Flagged solutions are NaN (or given by explicit flag masks); a result is NaN
where a solution it depends on (with non-zero weight) is flagged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["interpolate_solutions", "interpolate_in_time"]


def _lerp_complex(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    amp = (1.0 - w) * np.abs(a) + w * np.abs(b)
    dphi = np.angle(b * np.conj(a))                         # in (-pi, pi]: unwrapped difference
    phi = np.angle(a) + w * dphi
    return amp * np.exp(1j * phi)


def interpolate_solutions(sol_a: np.ndarray, t_a: float, sol_b: np.ndarray, t_b: float,
                          t: float | np.ndarray, flags_a: np.ndarray | None = None,
                          flags_b: np.ndarray | None = None) -> np.ndarray:
    """Solutions at time(s) ``t`` between set A (at ``t_a``) and set B (at ``t_b``).

    sol_a, sol_b: complex arrays of the same shape (e.g. (nant, nchan, npol)).
    t: scalar -> result has sol_a's shape; 1-D array of N times -> (N,) + shape.
    Times in any consistent unit (MJD or seconds).  Flagged entries (NaN, or
    True in flags_a/flags_b) give NaN wherever they carry weight.
    """
    a = np.array(sol_a, dtype=np.complex128)
    b = np.array(sol_b, dtype=np.complex128)
    if a.shape != b.shape:
        raise ValueError(f"solution shapes differ: {a.shape} vs {b.shape}")
    if flags_a is not None:
        a[np.asarray(flags_a, bool)] = np.nan
    if flags_b is not None:
        b[np.asarray(flags_b, bool)] = np.nan
    scalar = np.ndim(t) == 0
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if t_b == t_a:
        w = np.zeros(tt.shape)
    else:
        w = np.clip((tt - t_a) / (t_b - t_a), 0.0, 1.0)
    wb = w.reshape((-1,) + (1,) * a.ndim)
    out = _lerp_complex(a[None], b[None], wb)
    # where a side carries no weight its flag must not propagate
    out = np.where(wb == 0.0, a[None], out)
    out = np.where(wb == 1.0, b[None], out)
    return out[0] if scalar else out


def interpolate_in_time(sol_times: np.ndarray, sols: np.ndarray, flags: np.ndarray | None,
                        t_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate a time series of solutions (K, ...) to times t_out (N,).

    Returns (values (N, ...) complex128, flags (N, ...) bool).  An output is
    flagged if a bracketing solution with non-zero weight is flagged (or
    non-finite / zero).
    """
    st = np.asarray(sol_times, dtype=np.float64)
    s = np.asarray(sols, dtype=np.complex128)
    K = st.size
    order = np.argsort(st)
    st, s = st[order], s[order]
    f = np.zeros(s.shape, bool) if flags is None else np.asarray(flags, bool)[order]
    f = f | ~np.isfinite(s) | (s == 0)
    t = np.asarray(t_out, dtype=np.float64)
    idx = np.searchsorted(st, t, side="right")
    i0 = np.clip(idx - 1, 0, K - 1)
    i1 = np.clip(idx, 0, K - 1)
    dt = st[i1] - st[i0]
    w = np.where(dt > 0, (t - st[i0]) / np.where(dt > 0, dt, 1.0), 0.0)
    w = np.clip(w, 0.0, 1.0).reshape((-1,) + (1,) * (s.ndim - 1))
    a, b = s[i0], s[i1]
    vals = _lerp_complex(a, b, w)
    fl = (f[i0] & (w < 1.0)) | (f[i1] & (w > 0.0))
    vals = np.where(fl, 0.0, vals)
    return vals, fl
