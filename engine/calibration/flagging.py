"""RFI flagging on each baseline's time-frequency plane (vectorised numpy).

Arrays are shaped (ntime, nbl, nchan, npol).  For every baseline and
polarisation (processed in blocks of baselines, all at once):

1. zero / non-finite samples and autocorrelations are flagged;
2. a smooth model of the visibility amplitude is removed: the median over time
   of each channel, smoothed by a running median across channels (so a
   persistent narrow-band RFI channel does not enter its own model), then the
   median over channels of each integration, smoothed by a running median in
   time (so a broadband burst does not enter its own model);
3. the residual is scaled by a robust noise estimate (1.4826 x MAD over the
   plane, per baseline and polarisation);
4. a SumThreshold pass (Offringa et al. 2010) runs over windows of 1, 2, 4, 8,
   16 ... samples in time and in frequency with thresholds
   ``chi_i = chi_1 / rho ** log2(i)``; samples already flagged take the value
   of the current threshold, as in AOFlagger;
5. a (time, channel, polarisation) flagged on more than ``broadcast_fraction``
   of the cross-correlation baselines is flagged on all of them (catches RFI
   that is too weak on the longer baselines to be seen individually).

Only positive excursions (added power) are flagged; dropouts show up as zeros.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["FlagResult", "flag_rfi", "sumthreshold", "flag_fractions"]


@dataclass
class FlagResult:
    flags: np.ndarray              # (ntime, nbl, nchan, npol) bool: input flags OR new flags
    antenna_fraction: np.ndarray   # (nant,) flagged fraction of each antenna's cross-correlation samples
    channel_fraction: np.ndarray   # (nchan,) flagged fraction of each channel (cross-correlations)
    time_fraction: np.ndarray      # (ntime,)
    flagged_fraction: float        # overall, cross-correlations only
    new_fraction: float            # newly flagged by this call, cross-correlations only


def _median_last(x: np.ndarray) -> np.ndarray:
    """Median along the last axis by a single partition (the upper median for an
    even count, which is all a robust model needs)."""
    n = x.shape[-1]
    return np.partition(x, n // 2, axis=-1)[..., n // 2]


def _running_median(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Running median of odd ``width`` along ``axis`` (edges: nearest-value padding)."""
    n = x.shape[axis]
    width = int(width)
    if width <= 1 or n < 3:
        return x.copy()
    width = min(width if width % 2 else width + 1, n if n % 2 else n - 1)
    half = width // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    xp = np.pad(x, pad, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(xp, width, axis=axis)
    part = np.partition(win, half, axis=-1)
    return part[..., half]


def _sl(ndim: int, axis: int, start, stop) -> tuple:
    idx = [slice(None)] * ndim
    idx[axis] = slice(start, stop)
    return tuple(idx)


def sumthreshold(z: np.ndarray, mask: np.ndarray, axis: int, window: int, threshold: float) -> None:
    """One SumThreshold pass in place: flag every sample of each length-``window``
    run along ``axis`` whose mean exceeds ``threshold``; samples already flagged
    count as ``threshold`` (Offringa et al. 2010)."""
    nd = z.ndim
    axis = axis % nd
    L = z.shape[axis]
    if window > L:
        return
    thr = np.float32(threshold)
    x = np.where(mask, thr, z)
    if window == 1:
        mask |= x > thr
        return
    # window sums by repeated doubling (contiguous slices, no cumsum rounding)
    s = x
    w = 1
    while w < window:
        s = s[_sl(nd, axis, None, -w)] + s[_sl(nd, axis, w, None)]
        w *= 2
    hit = s > thr * window                               # windows starting at 0 .. L-window
    # dilate: sample j is covered by any hit window starting in [j-window+1, j]
    cover = np.zeros(mask.shape, dtype=bool)
    cover[_sl(nd, axis, None, hit.shape[axis])] = hit
    w = 1
    while w < window:
        cover[_sl(nd, axis, w, None)] |= cover[_sl(nd, axis, None, -w)].copy()
        w *= 2
    mask |= cover


def _robust_z(a: np.ndarray, f: np.ndarray, spectral_smooth: int, temporal_smooth: int,
              mad_stride: int) -> np.ndarray:
    """(nb, P, T, C) amplitudes -> residual in robust sigma units after removing
    the smooth spectral and temporal model."""
    nb, P, T, C = a.shape
    if f.any():
        fill = np.median(a[..., ::8], axis=(2, 3))                                # (nb, P)
        a = np.where(f, fill[..., None, None], a)
    spec = _median_last(np.ascontiguousarray(np.swapaxes(a, 2, 3))) if T > 2 else a.mean(axis=2)  # (nb, P, C)
    spec = _running_median(spec, spectral_smooth, axis=-1)
    r = a - spec[:, :, None, :]
    tm = _median_last(r[..., ::2])                                               # (nb, P, T)
    tm = _running_median(tm, temporal_smooth, axis=-1)
    r -= tm[..., None]
    sub = r[..., ::max(1, mad_stride)].reshape(nb, P, -1)
    med = _median_last(sub)
    mad = _median_last(np.abs(sub - med[..., None]))
    sigma = np.float32(1.4826) * mad
    sigma = np.where(sigma > 0, sigma, np.float32(np.inf))
    r -= med[..., None, None]
    r /= sigma[..., None, None]
    return r


def _flag_block(pw: np.ndarray, f: np.ndarray, *, chi1: float, rho: float, time_windows, freq_windows,
                spectral_smooth: int, temporal_smooth: int, mad_stride: int) -> np.ndarray:
    """Flag one block of cross-correlations given as |V|^2 (nb, P, T, C); returns
    the new mask (nb, T, C), common to all polarisations."""
    nb, P, T, C = pw.shape
    # polarisation-combined amplitude sqrt(mean_p |V_p|^2): RFI in either polarisation adds to it
    a = np.sqrt(pw.mean(axis=1, keepdims=True))                                   # (nb, 1, T, C)
    zc = _robust_z(a, f.any(axis=1, keepdims=True), spectral_smooth, temporal_smooth, mad_stride)[:, 0]
    mask = f.any(axis=1)
    for w in sorted(set(time_windows) | set(freq_windows)):
        thr = chi1 / rho ** math.log2(w)
        if w in time_windows and w <= T:
            sumthreshold(zc, mask, -2, w, thr)
        if w in freq_windows and w <= C:
            sumthreshold(zc, mask, -1, w, thr)
    return mask


def flag_fractions(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, nant: int | None = None):
    """(per-antenna, per-channel, per-time, overall) flagged fractions over cross-correlations."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    nant = int(max(ant1.max(), ant2.max()) + 1) if nant is None else nant
    T, Nb, C, P = flags.shape
    cross = ant1 != ant2
    ncross = int(cross.sum())
    if ncross == 0:
        return np.ones(nant), np.ones(C), np.ones(T), 1.0
    per_bl = np.zeros(Nb)
    per_chan = np.zeros(C)
    per_time = np.zeros(T)
    for t in range(T):   # one integration at a time: no copy of the whole flag cube
        ft = flags[t]
        nb_t = np.count_nonzero(ft.reshape(Nb, C * P), axis=1)
        nb_t[~cross] = 0
        per_bl += nb_t
        per_time[t] = nb_t.sum()
        per_chan += np.count_nonzero(ft[cross], axis=(0, 2)) if ncross < Nb else np.count_nonzero(ft, axis=(0, 2))
    n_per_bl = T * C * P
    num = np.bincount(ant1[cross], per_bl[cross], nant) + np.bincount(ant2[cross], per_bl[cross], nant)
    den = (np.bincount(ant1[cross], None, nant) + np.bincount(ant2[cross], None, nant)) * n_per_bl
    ant_frac = np.where(den > 0, num / np.maximum(den, 1), 1.0)
    chan_frac = per_chan / (T * ncross * P)
    time_frac = per_time / (ncross * C * P)
    overall = float(per_bl[cross].sum() / (ncross * n_per_bl))
    return ant_frac, chan_frac, time_frac, overall


def flag_rfi(vis: np.ndarray, flags: np.ndarray | None = None, ant1: np.ndarray | None = None,
             ant2: np.ndarray | None = None, *, chi1: float = 6.0, rho: float = 1.5,
             time_windows=(1, 2, 4, 8, 16), freq_windows=(1, 2, 4, 8, 16, 32, 64),
             spectral_smooth: int | None = None, temporal_smooth: int = 11, broadcast_fraction: float | None = 0.1,
             block_baselines: int = 16, mad_stride: int = 4, threads: int = 2,
             nant: int | None = None) -> FlagResult:
    """Flag RFI, zeros/NaNs and autocorrelations.

    vis: (ntime, nbl, nchan, npol) complex; flags: same shape bool (existing,
    kept); ant1/ant2: (nbl,) antenna indices (without them no baseline is
    treated as an autocorrelation).  chi1 is the single-sample threshold in
    robust sigma; rho the threshold decrease per doubling of the window.
    spectral_smooth: running-median width (channels) of the spectral model;
    default C // 48 clipped to 5..15 (15 for a 768-channel group).  It must
    exceed twice the width of persistent RFI and be short against real
    bandpass structure (which matters only at high per-visibility SNR).
    Returns a FlagResult (the input arrays are not modified).
    """
    T, Nb, C, P = vis.shape
    if spectral_smooth is None:   # ~ one subband's worth of a 768-channel group, 5..15 channels
        spectral_smooth = int(min(15, max(5, C // 48)))
    if ant1 is None or ant2 is None:
        ant1 = np.zeros(Nb, np.int64)
        ant2 = np.arange(1, Nb + 1)
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    in_flags = np.zeros(vis.shape, bool) if flags is None else np.asarray(flags, dtype=bool)
    out = in_flags.copy()
    auto = ant1 == ant2
    out[:, auto] = True
    cross_idx = np.nonzero(~auto)[0]
    blocks = [cross_idx[i:i + block_baselines] for i in range(0, cross_idx.size, block_baselines)]

    def work(bl):
        sl = slice(int(bl[0]), int(bl[-1]) + 1) if bl[-1] - bl[0] + 1 == bl.size else bl
        v = np.transpose(vis[:, sl], (1, 3, 0, 2))                                # (nb, P, T, C) view
        pw = np.empty(v.shape, np.float32)                                      # |V|^2, contiguous
        np.multiply(v.real, v.real, out=pw)
        pw += v.imag * v.imag
        bad = ~(pw > 0) | ~np.isfinite(pw)                                     # zero, NaN or inf data
        f = np.transpose(out[:, sl], (1, 3, 0, 2)) | bad
        if bad.any():
            pw[bad] = 0
        m = _flag_block(pw, f, chi1=chi1, rho=rho, time_windows=tuple(time_windows),
                        freq_windows=tuple(freq_windows), spectral_smooth=spectral_smooth,
                        temporal_smooth=temporal_smooth, mad_stride=mad_stride)   # (nb, T, C)
        out[:, sl] |= np.transpose(m, (1, 0, 2))[..., None]
        # for the broadcast step: new RFI flags and usable samples per (time, channel)
        prior = f.all(axis=1)
        return (m & ~prior).sum(axis=0), (~prior).sum(axis=0)

    if threads > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(max_workers=threads) as ex:
            counts = list(ex.map(work, blocks))
    else:
        counts = [work(bl) for bl in blocks]

    if broadcast_fraction is not None and counts:
        n_new = sum(c[0] for c in counts)
        n_ok = sum(c[1] for c in counts)
        hot = n_new > broadcast_fraction * np.maximum(n_ok, 1)                    # (T, C)
        if hot.any():
            ti, ci = np.nonzero(hot)
            out[ti[:, None], cross_idx[None, :], ci[:, None]] = True

    ant_frac, chan_frac, time_frac, overall = flag_fractions(out, ant1, ant2, nant)
    if flags is None:
        new_frac = overall
    else:
        _, _, _, before = flag_fractions(in_flags, ant1, ant2, nant)
        new_frac = overall - before
    return FlagResult(out, ant_frac, chan_frac, time_frac, overall, new_frac)
