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
    axis = axis % x.ndim
    first = np.take(x, [0], axis=axis)
    last = np.take(x, [n - 1], axis=axis)
    xp = np.concatenate([np.repeat(first, half, axis=axis), x, np.repeat(last, half, axis=axis)], axis=axis)
    win = np.lib.stride_tricks.sliding_window_view(xp, width, axis=axis)
    part = np.partition(win, half, axis=-1)
    return part[..., half]


def _sl(ndim: int, axis: int, start, stop) -> tuple:
    idx = [slice(None)] * ndim
    idx[axis] = slice(start, stop)
    return tuple(idx)


class _SumThresholdWork:
    """Scratch buffers for :func:`sumthreshold` on arrays of one shape, reused from
    window to window (no fresh allocations in the inner loop)."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.x = np.empty(shape, np.float32)
        self.s = (np.empty(shape, np.float32), np.empty(shape, np.float32))
        self.h = (np.empty(shape, bool), np.empty(shape, bool))


def sumthreshold(z: np.ndarray, mask: np.ndarray, axis: int, window: int, threshold: float,
                 work: _SumThresholdWork | None = None) -> None:
    """One SumThreshold pass in place: flag every sample of each length-``window``
    run along ``axis`` whose mean exceeds ``threshold``; samples already flagged
    count as ``threshold`` (Offringa et al. 2010).  ``work``: reusable buffers."""
    if window > z.shape[axis % z.ndim]:
        return
    if work is None or work.shape != z.shape:
        work = _SumThresholdWork(z.shape)
    thr = np.float32(threshold)
    np.copyto(work.x, z)
    np.copyto(work.x, thr, where=mask)
    _sumthreshold_x(work.x, mask, axis, window, thr, work)


def _sumthreshold_x(x: np.ndarray, mask: np.ndarray, axis: int, window: int, thr: np.float32,
                    work: _SumThresholdWork) -> bool:
    """SumThreshold on x, which already holds ``thr`` at the flagged samples; returns
    whether any window was over the threshold (the mask may have grown)."""
    nd = x.ndim
    axis = axis % nd
    L = x.shape[axis]
    if window > L:
        return False
    cover, other = work.h
    if window == 1:
        np.greater(x, thr, out=cover)
        mask |= cover
        return True
    # window sums by repeated doubling (contiguous slices, no cumsum rounding), ping-pong buffers
    src, n, w, i = x, L, 1, 0
    while w < window:
        n -= w
        np.add(src[_sl(nd, axis, 0, n)], src[_sl(nd, axis, w, w + n)], out=work.s[i][_sl(nd, axis, 0, n)])
        src = work.s[i]
        i ^= 1
        w *= 2
    hit = cover[_sl(nd, axis, 0, n)]
    np.greater(src[_sl(nd, axis, 0, n)], thr * window, out=hit)                # windows starting 0..n-1
    if not np.count_nonzero(hit):   # usual case away from RFI: nothing to dilate
        return False
    cover[_sl(nd, axis, n, L)] = False
    # dilate: sample j is covered by any hit window starting in [j-window+1, j]
    w = 1
    while w < window:
        other[_sl(nd, axis, 0, w)] = cover[_sl(nd, axis, 0, w)]
        np.logical_or(cover[_sl(nd, axis, w, L)], cover[_sl(nd, axis, 0, L - w)], out=other[_sl(nd, axis, w, L)])
        cover, other = other, cover
        w *= 2
    mask |= cover
    return True


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


def _flag_block_amp(a: np.ndarray, f: np.ndarray, *, chi1: float, rho: float, time_windows, freq_windows,
                    spectral_smooth: int, temporal_smooth: int, mad_stride: int) -> np.ndarray:
    """Flag one block given the polarisation-combined amplitude a (nb, 1, T, C) and
    flags f (nb, 1, T, C); returns the new mask (nb, T, C)."""
    nb, T, C = a.shape[0], a.shape[2], a.shape[3]
    zc = _robust_z(a, f, spectral_smooth, temporal_smooth, mad_stride)[:, 0]
    mask = f[:, 0].copy()
    # SumThreshold on sub-blocks of a few baselines: its many passes then run in cache
    sub = 8
    work = _SumThresholdWork((min(sub, nb), T, C))
    for s0 in range(0, nb, sub):
        x = zc[s0:s0 + sub]   # flagged samples take the current threshold; their z values are not needed again
        m = mask[s0:s0 + sub]
        wk = work if x.shape[0] == work.shape[0] else _SumThresholdWork(x.shape)
        for w in sorted(set(time_windows) | set(freq_windows)):
            thr = np.float32(chi1 / rho ** math.log2(w))
            np.copyto(x, thr, where=m)
            if w in time_windows and w <= T:
                if _sumthreshold_x(x, m, -2, w, thr, wk):      # new flags: they take the threshold too
                    np.copyto(x, thr, where=m)
            if w in freq_windows and w <= C:
                _sumthreshold_x(x, m, -1, w, thr, wk)
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
    auto_idx = np.nonzero(~cross)[0]
    per_bl = np.zeros(Nb)
    per_chan = np.zeros(C)
    per_time = np.zeros(T)
    for t in range(T):   # one integration at a time: no copy of the whole flag cube
        ft = flags[t]
        nb_t = np.count_nonzero(ft.reshape(Nb, C * P), axis=1)
        nb_t[~cross] = 0
        per_bl += nb_t
        per_time[t] = nb_t.sum()
        # all baselines summed (row additions), minus the few autocorrelations
        ch = np.add.reduce(np.ascontiguousarray(ft).view(np.uint8), axis=0, dtype=np.int64).sum(axis=1)
        if auto_idx.size:
            ch = ch - np.add.reduce(ft[auto_idx].view(np.uint8), axis=0, dtype=np.int64).sum(axis=1)
        per_chan += ch
    n_per_bl = T * C * P
    num = np.bincount(ant1[cross], per_bl[cross], nant) + np.bincount(ant2[cross], per_bl[cross], nant)
    den = (np.bincount(ant1[cross], None, nant) + np.bincount(ant2[cross], None, nant)) * n_per_bl
    ant_frac = np.where(den > 0, num / np.maximum(den, 1), 1.0)
    chan_frac = per_chan / (T * ncross * P)
    time_frac = per_time / (ncross * C * P)
    overall = float(per_bl[cross].sum() / (ncross * n_per_bl))
    return ant_frac, chan_frac, time_frac, overall


def flagged_per_baseline(flags: np.ndarray) -> np.ndarray:
    """Flagged samples per baseline, (nbl,) int64, of a (ntime, nbl, ...) flag cube: a
    popcount of eight flags at a time (numpy bools are bytes 0 or 1), one integration at a
    time, so the cube is neither copied nor converted."""
    T, Nb = flags.shape[:2]
    n = int(np.prod(flags.shape[2:], dtype=np.int64))
    out = np.zeros(Nb, np.int64)
    for t in range(T):
        ft = np.ascontiguousarray(flags[t], dtype=bool).reshape(Nb, n)
        if n % 8 == 0:
            out += np.bitwise_count(ft.view(np.uint64)).sum(axis=1, dtype=np.int64)
        else:
            out += np.count_nonzero(ft, axis=1)
    return out


def _cross_flag_count(flags: np.ndarray, cross: np.ndarray) -> int:
    """Number of flagged cross-correlation samples (a fast popcount, autos subtracted)."""
    n = int(np.count_nonzero(flags))
    auto_idx = np.nonzero(~cross)[0]
    if auto_idx.size:
        n -= int(np.count_nonzero(flags[:, auto_idx]))
    return n


def flag_rfi(vis: np.ndarray, flags: np.ndarray | None = None, ant1: np.ndarray | None = None,
             ant2: np.ndarray | None = None, *, chi1: float = 6.0, rho: float = 1.5,
             time_windows=(1, 2, 4, 8, 16), freq_windows=(1, 2, 4, 8, 16, 32, 64),
             spectral_smooth: int | None = None, temporal_smooth: int = 11, broadcast_fraction: float | None = 0.1,
             block_baselines: int = 32, mad_stride: int = 4, threads: int = 2,
             nant: int | None = None, in_place: bool = False) -> FlagResult:
    """Flag RFI, zeros/NaNs and autocorrelations.

    vis: (ntime, nbl, nchan, npol) complex; flags: same shape bool (existing,
    kept); ant1/ant2: (nbl,) antenna indices (without them no baseline is
    treated as an autocorrelation).  chi1 is the single-sample threshold in
    robust sigma; rho the threshold decrease per doubling of the window.
    spectral_smooth: running-median width (channels) of the spectral model;
    default C // 48 clipped to 5..15 (15 for a 768-channel group).  It must
    exceed twice the width of persistent RFI and be short against real
    bandpass structure (which matters only at high per-visibility SNR).
    Returns a FlagResult; the input arrays are not modified unless ``in_place``, where
    ``flags`` (a C-ordered bool array of the data's shape) receives the new flags and is
    ``result.flags``: a full-size group then holds one flag cube, not two.
    """
    T, Nb, C, P = vis.shape
    if spectral_smooth is None:   # ~ one subband's worth of a 768-channel group, 5..15 channels
        spectral_smooth = int(min(15, max(5, C // 48)))
    if ant1 is None or ant2 is None:
        ant1 = np.zeros(Nb, np.int64)
        ant2 = np.arange(1, Nb + 1)
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    vis = np.asarray(vis)
    if vis.dtype != np.complex64:
        vis = vis.astype(np.complex64)
    in_flags = np.zeros(vis.shape, bool) if flags is None else np.asarray(flags, dtype=bool)
    auto = ant1 == ant2
    cross = ~auto
    before = 0.0 if flags is None else _cross_flag_count(in_flags, cross) / max(1, int(cross.sum()) * T * C * P)
    if in_place and flags is not None and (not isinstance(flags, np.ndarray) or flags.dtype != bool
                                           or flags.shape != vis.shape or not flags.flags.c_contiguous):
        raise ValueError("in_place flagging needs a C-ordered bool flag array of the data's shape")
    out = in_flags if in_place and flags is not None else np.array(in_flags, dtype=bool, order="C", copy=True)
    out[:, auto] = True
    cross_idx = np.nonzero(cross)[0]
    blocks = [cross_idx[i:i + block_baselines] for i in range(0, cross_idx.size, block_baselines)]
    # both polarisations of a sample as one 16-bit word (0x0101 = both flagged)
    packed = out.view(np.uint16).reshape(T, Nb, C) if P == 2 else None
    both = np.uint16(0x0101)

    def work(bl):
        sl = slice(int(bl[0]), int(bl[-1]) + 1) if bl[-1] - bl[0] + 1 == bl.size else bl
        v = vis[:, sl]                                                          # (T, nb, C, P)
        vf = v.view(np.float32)                                                 # (T, nb, C, 2P)
        sq = vf * vf
        pp = [sq[..., 2 * p] + sq[..., 2 * p + 1] for p in range(P)]           # |V_p|^2, (T, nb, C)
        a2 = pp[0]
        for x in pp[1:]:
            a2 = a2 + x
        # zero or NaN in any polarisation: flagged (an infinite amplitude exceeds every threshold)
        prod = pp[0] if P == 1 else np.multiply(pp[0], pp[1])
        for x in pp[2:]:
            prod = prod * x
        bad = ~(prod > 0)
        del sq, pp, prod
        if packed is not None:
            fw = packed[:, sl]                                                  # (T, nb, C) uint16
            fany = fw != 0
            fall = fw == both
        else:
            fo = out[:, sl]
            fany = fo.any(axis=-1)
            fall = fo.all(axis=-1)
        fany |= bad
        fall |= bad
        if bad.any():
            a2[bad] = 0
        # polarisation-combined amplitude sqrt(mean_p |V_p|^2): RFI in either polarisation adds to it
        a2 *= np.float32(1.0 / P)
        np.sqrt(a2, out=a2)
        at = np.ascontiguousarray(a2.transpose(1, 0, 2))[:, None]              # (nb, 1, T, C)
        ft = np.ascontiguousarray(fany.transpose(1, 0, 2))[:, None]
        m = _flag_block_amp(at, ft, chi1=chi1, rho=rho, time_windows=tuple(time_windows),
                            freq_windows=tuple(freq_windows), spectral_smooth=spectral_smooth,
                            temporal_smooth=temporal_smooth, mad_stride=mad_stride)   # (nb, T, C)
        mt = m.transpose(1, 0, 2)                                               # (T, nb, C) view
        if packed is not None:
            packed[:, sl] |= mt.view(np.uint8) * both
        else:
            out[:, sl] |= mt[..., None]
        # for the broadcast step: new RFI flags and usable samples per (time, channel)
        newm = mt & ~fall
        return (np.add.reduce(newm.view(np.uint8), axis=1, dtype=np.int32),
                np.add.reduce((~fall).view(np.uint8), axis=1, dtype=np.int32))

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
    new_frac = overall - before
    return FlagResult(out, ant_frac, chan_frac, time_frac, overall, new_frac)
