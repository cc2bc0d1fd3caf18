"""Bandpass and gain solutions with batched StEFCal (Salvini & Wijnholds 2014).

Data layout: visibilities ``vis`` of shape (ntime, nbl, nchan, npol) with
baselines given by ``ant1``/``ant2`` (autocorrelations allowed, never used in
the solve); ``model`` is (ntime, nbl, nchan) (same for every polarisation, an
unpolarised source with XX = YY = I) or (ntime, nbl, nchan, npol).

Measurement equation (per polarisation, diagonal Jones):

    V_obs_pq(t, nu) = G_p(t) B_p(nu) V_model_pq(t, nu) B_q(nu)^* G_q(t)^*

* B (bandpass): one complex value per antenna, channel and polarisation,
  constant over the observation; normalised (:func:`normalise_bandpass`) so
  that for every antenna and polarisation the mean amplitude over unflagged
  channels is 1 and the delay-removed mean phase (the phase at the band
  centre of the linear phase fit) is 0.
* G (gain): one complex value per antenna, solution interval and polarisation;
  carries the overall amplitude (units: sqrt(data units / Jy)).
* The reference antenna has phase 0 in B (every channel) and G (every
  interval); where it is flagged the next antenna in the ranking is used.

Every independent problem (a channel-polarisation for B, an interval-
polarisation for G) is reduced to a Hermitian pair of nant x nant matrices

    A_pq = sum w V_pq conj(M'_pq),   D_pq = sum w |M'_pq|^2

(sums over the samples of the problem, M' the model corrupted by the other,
fixed, Jones term), after which the StEFCal update
``g_p <- sum_q A_pq g_q / sum_q D_pq |g_q|^2`` runs on all problems at once
as a batched matrix-vector product.

Solution uncertainty: ``var(g_p) = sigma^2 / sum_q D_pq |g_q|^2`` with sigma^2
the visibility noise variance E|r|^2 estimated robustly from the residuals;
SNR = |g_p| / sqrt(var(g_p)).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .beam import SPEED_OF_LIGHT, airy_power, angular_separation
from .catalogue import Calibrator

__all__ = [
    "SolveResult", "direction_cosines", "point_source_model", "PointSourceModel", "calibrator_model",
    "stefcal", "choose_refant", "solve_calibration", "solution_intervals",
    "corrupt_model", "normalise_bandpass", "SIDEREAL_RATE_RAD_S",
]

SIDEREAL_RATE_RAD_S = 2.0 * math.pi / 86164.0905


# ----------------------------------------------------------------------------- model

def direction_cosines(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float, float]:
    """(l, m, n) of direction (ra, dec) relative to phase centre (ra0, dec0), radians in."""
    dra = ra - ra0
    l = math.cos(dec) * math.sin(dra)
    m = math.sin(dec) * math.cos(dec0) - math.cos(dec) * math.sin(dec0) * math.cos(dra)
    n = math.sin(dec) * math.sin(dec0) + math.cos(dec) * math.cos(dec0) * math.cos(dra)
    return l, m, n


class PointSourceModel:
    """Point-source visibilities ``S(t, nu) exp(sign 2 pi i (u l + v m + w (n - 1)) nu / c)``,
    evaluated block by block on demand (the full (ntime, nbl, nchan) cube, 0.7 GB
    for a full-size group, is never stored unless asked for).

    ``block(t, b0, b1)`` gives (b1 - b0, nchan) complex64 for integration t;
    indexing ``m[t]``, ``m[t, b0:b1]`` and other (time, baseline) selections
    evaluate what they select; ``np.asarray(m)`` materialises the cube.  For
    uniformly spaced channels each block costs two small tables of phase
    factors and one complex multiply per sample.
    """

    ndim = 3
    dtype = np.dtype(np.complex64)

    def __init__(self, uvw_m: np.ndarray, freqs_hz: np.ndarray, lmn: tuple[float, float, float],
                 flux: np.ndarray | float = 1.0, sign: float = +1.0):
        uvw = np.asarray(uvw_m, dtype=np.float64)
        self.freqs = np.asarray(freqs_hz, dtype=np.float64)
        l, m, n = lmn
        self.tau = (uvw[..., 0] * l + uvw[..., 1] * m + uvw[..., 2] * (n - 1.0)) / SPEED_OF_LIGHT   # (T, B) s
        nt, nb = self.tau.shape
        C = self.freqs.size
        s = np.broadcast_to(np.asarray(flux, dtype=np.float64), (nt, C)) if np.ndim(flux) \
            else np.full((nt, C), float(flux))
        self.flux = np.ascontiguousarray(s, dtype=np.float64)
        self._flux32 = self.flux.astype(np.float32)
        self.shape = (nt, nb, C)
        self.two_pi = 2.0 * np.pi * sign
        df = self.freqs[1] - self.freqs[0] if C > 1 else 0.0
        uniform = C > 1 and np.allclose(np.diff(self.freqs), df, rtol=0, atol=abs(df) * 1e-9)
        blk = int(2 ** round(math.log2(math.sqrt(C)))) if uniform else 0
        self._blk = blk if uniform and C % blk == 0 else 0
        self._tables = None
        if self._blk:
            na = C // blk
            self._a_f = self.freqs[0] + blk * df * np.arange(na)
            self._b_f = df * np.arange(blk)

    def __len__(self) -> int:
        return self.shape[0]

    def prepare(self) -> None:
        """Precompute the two phase-factor tables for every (time, baseline) (a few % of
        the cube's size) so that repeated evaluations of a block cost one complex multiply
        per sample and no exponentials."""
        if self._tables is not None or not self._blk:
            return
        nt, nb, C = self.shape
        ea = np.empty((nt, nb, C // self._blk), np.complex64)
        eb = np.empty((nt, nb, self._blk), np.complex64)
        for t in range(nt):
            for tab, f in ((ea, self._a_f), (eb, self._b_f)):
                cyc = np.multiply.outer(self.tau[t], f)
                cyc -= np.round(cyc)
                tab[t] = np.exp(1j * self.two_pi * cyc)
        self._tables = (ea, eb)

    def amplitude_max(self) -> float:
        """Largest model amplitude (a point source has |M| = S(t, nu) on every baseline)."""
        return float(np.max(np.abs(self.flux))) if self.flux.size else 0.0

    def block(self, t: int, b0: int = 0, b1: int | None = None, out: np.ndarray | None = None,
              chans=None) -> np.ndarray:
        """Model of baselines b0:b1 at integration t, (nb, nchan) complex64 (into out if given);
        ``chans`` (a slice or index array) evaluates only those channels."""
        tau = self.tau[t, b0:b1]
        nb = tau.size
        if chans is None and self._tables is not None:
            ea = self._tables[0][t, b0:b1]
            eb = self._tables[1][t, b0:b1]
            if out is None:
                out = np.empty((nb, self.shape[2]), np.complex64)
            np.multiply(ea[:, :, None], eb[:, None, :], out=out.reshape(nb, ea.shape[1], eb.shape[1]))
            out *= self._flux32[t]
            return out
        if chans is not None:
            f = self.freqs[chans]
            cycles = np.multiply.outer(tau, f)
            cycles -= np.round(cycles)
            res = np.exp(1j * self.two_pi * cycles).astype(np.complex64)
            res *= self._flux32[t, chans]
            return res
        C = self.shape[2]
        if out is None:
            out = np.empty((nb, C), np.complex64)
        if self._blk:
            # exp(i 2 pi tau (f0 + (a blk + b) df)) = exp(i 2 pi tau (f0 + a blk df)) * exp(i 2 pi tau b df)
            blk = self._blk
            cyc_a = np.multiply.outer(tau, self._a_f)
            cyc_a -= np.round(cyc_a)
            cyc_b = np.multiply.outer(tau, self._b_f)
            cyc_b -= np.round(cyc_b)
            ea = np.exp(1j * self.two_pi * cyc_a).astype(np.complex64)             # (nb, na)
            eb = np.exp(1j * self.two_pi * cyc_b).astype(np.complex64)             # (nb, blk)
            np.multiply(ea[:, :, None], eb[:, None, :], out=out.reshape(nb, C // blk, blk))
            out *= self._flux32[t]
            return out
        cycles = np.multiply.outer(tau, self.freqs)
        cycles -= np.round(cycles)
        ph = (self.two_pi * cycles).astype(np.float32)
        amp = self._flux32[t]
        out.real = np.cos(ph) * amp
        out.imag = np.sin(ph) * amp
        return out

    def materialise(self) -> np.ndarray:
        nt, nb, C = self.shape
        out = np.empty((nt, nb, C), dtype=np.complex64)
        for t in range(nt):   # time slices keep temporaries small; each slice is fully vectorised
            self.block(t, 0, nb, out=out[t])
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.materialise()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        tk = key[0]
        rest = key[1:]
        if isinstance(tk, (int, np.integer)):
            bk = rest[0] if rest else slice(None)
            if isinstance(bk, slice) and bk.step in (None, 1):
                b0, b1, _ = bk.indices(self.shape[1])
                res = self.block(int(tk), b0, b1)
                return res[(slice(None),) + rest[1:]] if len(rest) > 1 else res
            full = self.block(int(tk))
            return full[rest] if rest else full
        ts = np.arange(self.shape[0])[tk]
        return np.stack([self[int(t)][rest] if rest else self[int(t)] for t in np.atleast_1d(ts)])


def point_source_model(uvw_m: np.ndarray, freqs_hz: np.ndarray, lmn: tuple[float, float, float],
                       flux: np.ndarray | float = 1.0, sign: float = +1.0) -> np.ndarray:
    """Point-source visibilities ``S(t, nu) exp(sign 2 pi i (u l + v m + w (n - 1)) nu / c)``.

    uvw_m: (ntime, nbl, 3) metres; flux: scalar, (nchan,) or (ntime, nchan).
    Returns complex64 (ntime, nbl, nchan) (see :class:`PointSourceModel` for the
    same values evaluated on demand).  The sign follows the convention
    ``V = S exp(+2 pi i (u l + v m + w (n-1)))``; pass ``sign=-1`` for data using
    the opposite one.
    """
    return PointSourceModel(uvw_m, freqs_hz, lmn, flux, sign).materialise()


def calibrator_model(cal: Calibrator, uvw_m: np.ndarray, times_s: np.ndarray, freqs_hz: np.ndarray,
                     phase_centre: tuple[float, float], *, pointing_dec: float | None = None,
                     pointing_ra_at_mid: float | None = None, t_mid: float | None = None,
                     primary_beam: bool = True, sign: float = +1.0,
                     lazy: bool = False, geometry=None) -> np.ndarray | PointSourceModel:
    """Model visibilities (ntime, nbl, nchan) of a catalogue calibrator.

    phase_centre: (ra, dec) radians (the MS FIELD PHASE_DIR).  The dishes point
    at ``pointing_dec`` (default: the phase-centre dec) on the meridian; the
    pointing RA is ``pointing_ra_at_mid`` (default: phase-centre RA, the meridian
    at mid-observation) at ``t_mid`` (default: mid of ``times_s``) and moves at the
    sidereal rate.  Flux includes the spectral index and the Airy beam power at
    the source's offset from the pointing at each time and frequency.
    lazy: return a :class:`PointSourceModel` (evaluated block by block where it
    is used; :func:`solve_calibration` accepts it) instead of the array.
    geometry: a :class:`engine.calibration.geometry.BeamGeometry` read from the MS
    (tracked or drift pointing, dish diameter); it replaces the DSA-110 drift
    defaults above.
    """
    ra0, dec0 = phase_centre
    times = np.asarray(times_s, dtype=np.float64)
    freqs = np.asarray(freqs_hz, dtype=np.float64)
    lmn = direction_cosines(cal.ra_rad, cal.dec_rad, ra0, dec0)
    flux = np.broadcast_to(cal.flux_at(freqs), (times.size, freqs.size)).astype(np.float64)
    if primary_beam and geometry is not None:
        off = geometry.offsets(times, cal.ra_rad, cal.dec_rad)   # (T,)
        flux = flux * airy_power(off[:, None], freqs[None, :], geometry.dish_diameter_m)
    elif primary_beam:
        pdec = dec0 if pointing_dec is None else pointing_dec
        pra_mid = ra0 if pointing_ra_at_mid is None else pointing_ra_at_mid
        tm = 0.5 * (times.min() + times.max()) if t_mid is None else t_mid
        pra = pra_mid + SIDEREAL_RATE_RAD_S * (times - tm)
        off = angular_separation(pra, np.full_like(pra, pdec), cal.ra_rad, cal.dec_rad)   # (T,)
        flux = flux * airy_power(off[:, None], freqs[None, :])
    model = PointSourceModel(uvw_m, freqs, lmn, flux, sign=sign)
    return model if lazy else model.materialise()


# ----------------------------------------------------------------------------- StEFCal

def _initial_guess(A: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Rank-one starting point from each problem's best-connected antenna r:
    g_p ~ (A_pr / D_pr) / conj(g_r) with |g_r| = sqrt(median_p |A_pr / D_pr|)."""
    nprob, nant = A.shape[:2]
    r = np.argmax(D.sum(axis=2), axis=1)
    k = np.arange(nprob)
    a = A[k, :, r]
    d = D[k, :, r]
    x = np.where(d > 0, a / np.where(d > 0, d, 1), 0)
    mag = np.abs(x)
    med = np.sqrt(np.median(np.where(d > 0, mag, np.nan), axis=1)) if nant > 1 else np.ones(nprob)
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    g = x / med[:, None]
    g[k, r] = med
    bad = (d <= 0) | ~np.isfinite(g)
    bad[k, r] = False
    g[bad] = med[np.nonzero(bad)[0]]
    return g


def stefcal(A: np.ndarray, D: np.ndarray, g0: np.ndarray | None = None, *, max_iter: int = 200,
            tol: float = 1e-6, threads: int = 1) -> tuple[np.ndarray, int, np.ndarray]:
    """Batched StEFCal.

    A: (nprob, nant, nant) complex Hermitian, D: (nprob, nant, nant) real >= 0,
    with ``A_pq = sum w V_pq conj(M_pq)`` and ``D_pq = sum w |M_pq|^2``; solves
    ``V ~ g_p M_pq g_q^*`` for every problem at once (Salvini & Wijnholds 2014,
    with averaging of every second iterate).  Computation is in A's precision
    (pass complex64 for speed, complex128 for exactness).  g0 None starts from a
    rank-one estimate.  Returns (g (nprob, nant), iterations, final relative
    change per problem).  Antennas without data get g = 0.  With threads > 1
    the problems are shared among that many threads (the batched matrix-vector
    products release the GIL).
    """
    nprob = A.shape[0]
    nthr = max(1, min(int(threads), nprob // 32))
    if nthr > 1:
        edges = np.linspace(0, nprob, nthr + 1).astype(int)
        parts = [slice(edges[i], edges[i + 1]) for i in range(nthr)]
        with ThreadPoolExecutor(max_workers=nthr) as ex:
            res = list(ex.map(lambda sl: _stefcal_batch(A[sl], D[sl], None if g0 is None else g0[sl],
                                                        max_iter=max_iter, tol=tol), parts))
        return (np.concatenate([r[0] for r in res]), max(r[1] for r in res),
                np.concatenate([r[2] for r in res]))
    return _stefcal_batch(A, D, g0, max_iter=max_iter, tol=tol)


def _stefcal_batch(A: np.ndarray, D: np.ndarray, g0: np.ndarray | None, *, max_iter: int,
                   tol: float) -> tuple[np.ndarray, int, np.ndarray]:
    nprob, nant = A.shape[:2]
    cdt = np.complex64 if A.dtype == np.complex64 else np.complex128
    rdt = np.float32 if cdt == np.complex64 else np.float64
    Aa = np.ascontiguousarray(A, dtype=cdt)
    Da = np.ascontiguousarray(D, dtype=rdt)
    g = _initial_guess(Aa, Da) if g0 is None else np.array(g0)
    g = g.astype(cdt)
    g[~np.isfinite(g)] = 1.0
    has = Da.sum(axis=2) > 0
    g[has & (g == 0)] = 1.0
    change = np.full(nprob, np.inf)
    active = np.arange(nprob)
    cur = active            # problems held in Aa/Da
    it = 0
    for it in range(1, max_iter + 1):
        if active.size < 0.6 * cur.size:   # compress the working set when it has shrunk enough
            keep = np.isin(cur, active)
            Aa, Da, cur = Aa[keep], Da[keep], cur[keep]
        sel = np.isin(cur, active) if cur.size != active.size else None
        ga = g[cur]
        # two identical columns: OpenBLAS treats a (nant x nant) x (nant x 2) product as a small
        # gemm and keeps it on the calling thread; a gemv of this size is split over its own
        # threads, which collides with our worker threads (>10x slower under load)
        num = np.matmul(Aa, np.stack([ga, ga], axis=2))[:, :, 0]
        den = np.matmul(Da, (ga.real ** 2 + ga.imag ** 2)[:, :, None])[:, :, 0]
        ok = den > 0
        gn = np.where(ok, num / np.where(ok, den, 1.0), 0.0).astype(cdt)
        if it % 2 == 0:
            gn = 0.5 * (gn + ga)
        if sel is not None:   # converged problems in the working set keep their values
            gn, ga, cur_act = gn[sel], ga[sel], cur[sel]
        else:
            cur_act = cur
        norm = np.linalg.norm(gn, axis=1)
        ch = np.linalg.norm(gn - ga, axis=1) / np.where(norm > 0, norm, 1.0)
        g[cur_act] = gn
        change[cur_act] = ch
        if it % 2 == 0:   # convergence checked after the averaging step
            active = cur_act[ch >= tol]
            if active.size == 0:
                break
    return g, it, change


# ----------------------------------------------------------------------------- helpers

def choose_refant(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, nant: int) -> np.ndarray:
    """Antennas ranked by unflagged cross-correlation samples (best first)."""
    cross = ant1 != ant2
    good = (~flags[:, cross]).sum(axis=(0, 2, 3)) if flags.ndim == 4 else (~flags[:, cross]).sum(axis=0)
    counts = np.zeros(nant, dtype=np.int64)
    np.add.at(counts, ant1[cross], good)
    np.add.at(counts, ant2[cross], good)
    return np.argsort(-counts, kind="stable")


def solution_intervals(times_s: np.ndarray, solint_s: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map each time to a solution interval.

    solint_s None (or <= the integration) = one interval per integration;
    math.inf = one interval for the whole observation.  Returns
    (index per time (ntime,), interval mid times (K,), interval widths (K,)).
    """
    times = np.asarray(times_s, dtype=np.float64)
    dt = float(np.median(np.diff(times))) if times.size > 1 else 1.0
    if solint_s is None or solint_s <= dt * 1.0001:
        idx = np.arange(times.size)
    elif math.isinf(solint_s):
        idx = np.zeros(times.size, dtype=np.int64)
    else:
        idx = np.floor((times - times[0] + 0.5 * dt) / solint_s + 1e-9).astype(np.int64)
        _, idx = np.unique(idx, return_inverse=True)
    K = int(idx.max()) + 1
    lo = np.full(K, np.inf)
    hi = np.full(K, -np.inf)
    np.minimum.at(lo, idx, times - 0.5 * dt)
    np.maximum.at(hi, idx, times + 0.5 * dt)
    return idx, 0.5 * (lo + hi), hi - lo


def _problem_matrices(vals: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, nant: int,
                      hermitian: bool, out: np.ndarray | None = None, block: int = 16) -> np.ndarray:
    """(nbl, nprob) baseline values -> contiguous (nprob, nant, nant) matrices with the
    values at (p, q) and (conjugated when hermitian) at (q, p), into ``out`` when
    given; built a few problems at a time (a cache-friendly transposition)."""
    nbl, nprob = vals.shape
    dtype = np.complex64 if hermitian else np.float32
    if out is None:
        out = np.empty((nprob, nant, nant), dtype=dtype)
    i1 = ant1 * nant + ant2
    i2 = ant2 * nant + ant1
    scratch = np.zeros((nant * nant, min(block, nprob)), dtype=dtype)    # entries never set stay 0
    for k0 in range(0, nprob, block):
        k1 = min(nprob, k0 + block)
        sc = scratch if k1 - k0 == scratch.shape[1] else np.zeros((nant * nant, k1 - k0), dtype=dtype)
        v = vals[:, k0:k1]
        sc[i1] = v
        sc[i2] = np.conj(v) if hermitian else v
        out[k0:k1].reshape(k1 - k0, nant * nant)[...] = sc.T
    return out


def _solve_problems(Abl: np.ndarray, Dbl: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, nant: int,
                    g0: np.ndarray | None, *, max_iter: int, tol: float, threads: int = 1,
                    group: int = 128):
    """StEFCal on problems given in baseline form: Abl (nbl, nprob) complex, Dbl (nbl, nprob)
    real.  Problems are solved in groups of ``group`` (matrices built into buffers reused
    from group to group: bounded memory, no fresh pages) shared among ``threads``
    threads.  Returns (g (nprob, nant), max iterations, den = sum_q D_pq |g_q|^2
    (nprob, nant), number of baselines with data per antenna (nprob, nant))."""
    nprob = Abl.shape[1]
    groups = [(k0, min(nprob, k0 + group)) for k0 in range(0, nprob, group)]
    nthr = max(1, min(int(threads), len(groups)))
    g_out = np.empty((nprob, nant), np.complex64)
    den = np.empty((nprob, nant))
    nbl_ok = np.empty((nprob, nant), np.int64)

    def work(share):
        n = max(k1 - k0 for k0, k1 in share)
        Abuf = np.empty((n, nant, nant), np.complex64)
        Dbuf = np.empty((n, nant, nant), np.float32)
        its = 0
        for k0, k1 in share:
            Am = _problem_matrices(Abl[:, k0:k1], ant1, ant2, nant, True, Abuf[:k1 - k0])
            Dm = _problem_matrices(Dbl[:, k0:k1], ant1, ant2, nant, False, Dbuf[:k1 - k0])
            g, it, _ = _stefcal_batch(Am, Dm, None if g0 is None else g0[k0:k1], max_iter=max_iter, tol=tol)
            its = max(its, it)
            a2 = (np.abs(g) ** 2).astype(np.float32)
            g_out[k0:k1] = g
            den[k0:k1] = np.matmul(Dm, a2[:, :, None])[:, :, 0]
            nbl_ok[k0:k1] = np.count_nonzero(Dm > 0, axis=2)
        return its

    shares = [groups[i::nthr] for i in range(nthr)]
    if nthr == 1:
        its = [work(shares[0])]
    else:
        with ThreadPoolExecutor(max_workers=nthr) as ex:
            its = list(ex.map(work, shares))
    return g_out, max(its), den, nbl_ok


def _reference(sol: np.ndarray, sflags: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """Rotate (nprob, nant) solutions so the reference antenna has phase 0."""
    ok_rank = ~sflags[:, ranking]
    first = np.argmax(ok_rank, axis=1)
    ref = ranking[first]
    r = sol[np.arange(sol.shape[0]), ref]
    rot = np.where(np.abs(r) > 0, np.conj(r) / np.where(np.abs(r) > 0, np.abs(r), 1.0), 1.0)
    return sol * rot[:, None]


def corrupt_model(model_t: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, bandpass: np.ndarray,
                  gains_t: np.ndarray) -> np.ndarray:
    """One time slice of G_p B_p M B_q^* G_q^*: model_t (nbl, nchan[, npol]),
    bandpass (nant, nchan, npol), gains_t (nant, npol) -> (nbl, nchan, npol)."""
    m = model_t if model_t.ndim == 3 else model_t[..., None]
    j = bandpass * gains_t[:, None, :]
    return m * (j[ant1] * np.conj(j[ant2]))


def normalise_bandpass(B: np.ndarray, flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fix the B/G degeneracy: scale each antenna/pol bandpass (nant, nchan, npol)
    to mean amplitude 1 over unflagged channels and rotate it so that its phase
    at the band centre, after removing the mean phase slope (delay), is 0.

    (A plain vector mean is ill-conditioned when a delay winds the phase through
    a full turn across the band.)  Returns (normalised B, divisor (nant, npol)).
    """
    ok = np.ones(B.shape, bool) if flags is None else ~flags
    ok = ok & np.isfinite(B) & (B != 0)
    Bz = np.where(ok, B, 0)
    n = ok.sum(axis=1)
    amean = np.abs(Bz).sum(axis=1) / np.maximum(n, 1)
    step = (Bz[:, 1:] * np.conj(Bz[:, :-1])).sum(axis=1)                 # mean phase slope per channel
    slope = np.angle(step)
    ch = np.arange(B.shape[1]) - 0.5 * (B.shape[1] - 1)
    derot = Bz * np.exp(-1j * slope[:, None, :] * ch[None, :, None])
    c = derot.sum(axis=1)
    phase = np.where(np.abs(c) > 0, c / np.maximum(np.abs(c), 1e-300), 1.0)
    norm = np.where(n > 0, phase * np.where(amean > 0, amean, 1.0), 1.0)
    return B / norm[:, None, :], norm


# ----------------------------------------------------------------------------- result

@dataclass
class SolveResult:
    bandpass: np.ndarray          # (nant, nchan, npol) complex64
    bandpass_flags: np.ndarray    # (nant, nchan, npol) bool
    bandpass_snr: np.ndarray      # (nant, nchan, npol) float32
    gains: np.ndarray             # (nsol, nant, npol) complex64
    gain_flags: np.ndarray        # (nsol, nant, npol) bool
    gain_snr: np.ndarray          # (nsol, nant, npol) float32
    gain_times: np.ndarray        # (nsol,) interval mid-times, same units as input times (MS: MJD s)
    gain_intervals: np.ndarray    # (nsol,) interval widths, s
    time_to_solint: np.ndarray    # (ntime,) index of the gain interval of each integration
    refant: int
    freqs: np.ndarray             # (nchan,)
    flags: np.ndarray             # (ntime, nbl, nchan, npol) data flags after outlier flagging
    noise_sigma: np.ndarray       # (npol,) rms |residual| per visibility (sqrt E|r|^2)
    outliers_flagged: int         # samples newly flagged from residuals
    iterations: dict = field(default_factory=dict)   # StEFCal iterations per solve and seconds per step
    antennas_present: np.ndarray | None = None       # (nant,) bool: antenna appears in cross-correlations

    @property
    def nant(self) -> int:
        return self.bandpass.shape[0]

    def antennas_with_solutions(self) -> np.ndarray:
        """Antennas with any unflagged bandpass and gain solution."""
        b = (~self.bandpass_flags).any(axis=(1, 2))
        g = (~self.gain_flags).any(axis=(0, 2))
        return np.nonzero(b & g)[0]


# ----------------------------------------------------------------------------- solve

def reweighted_spectra(Z: np.ndarray, Zw: np.ndarray, wc: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-integration sums over channel blocks of coarse spectra Z, Zw (T, Nb, P, NB)
    weighted by wc (complex) and w2 (real) (Nb, P, NB): one integration at a time, so the
    products need no temporary of the spectra's size."""
    Zs = np.empty(Z.shape[:-1], np.complex64)
    Ws = np.empty(Zw.shape[:-1], np.float32)
    wc = wc.astype(np.complex64, copy=False)
    for t in range(Z.shape[0]):
        Zs[t] = (Z[t] * wc).sum(axis=-1)
        Ws[t] = (Zw[t] * w2).sum(axis=-1)
    return Zs, Ws


def _expand_model(model_t: np.ndarray) -> np.ndarray:
    return model_t if model_t.ndim == 3 else model_t[..., None]


def _block_size(nchan: int, target: int = 32) -> int:
    """Largest divisor of nchan not above target (channel block for coarse spectra)."""
    for b in range(min(target, nchan), 0, -1):
        if nchan % b == 0:
            return b
    return 1


def solve_calibration(vis: np.ndarray, model: np.ndarray, flags: np.ndarray | None,
                      ant1: np.ndarray, ant2: np.ndarray, times_s: np.ndarray,
                      freqs_hz: np.ndarray, *, nant: int | None = None, refant: int | None = None,
                      solint_s: float | None = None, n_rounds: int = 2, outlier_sigma: float | None = 5.0,
                      baseline_excess: float = 1.5, min_snr: float = 3.0, min_baselines: int = 4,
                      max_iter: int = 100, tol: float = 1e-5, threads: int = 2,
                      block_baselines: int = 64, copy_flags: bool = True) -> SolveResult:
    """Solve bandpass B and gains G in two passes over the data.

    Pass 1 reduces the data to the time-summed model-weighted visibilities
    ``A1 = sum_t w V conj(M)``, ``D1 = sum_t w |M|^2`` per (baseline, pol,
    channel) and to coarse spectra (sums over blocks of ~32 channels) per
    integration.  B1 comes from one batched StEFCal over the channels of A1/D1
    (G = 1); the gains G1 of every interval from the coarse spectra weighted by
    the block means of B1 (consistent weights, so the block averaging causes no
    bias).  Pass 2 flags residual outliers with (B1, G1) -- samples with
    |r| > outlier_sigma x the per-component noise, then whole
    baseline-polarisations whose mean clipped residual amplitude exceeds
    ``baseline_excess`` x the median over baselines -- and accumulates the
    G1-weighted sums for the final bandpass B2 and the B1-weighted coarse
    spectra of the cleaned data, from which the final gains follow (corrected
    to B2 block by block, exact to second order in B2/B1 - 1).  With
    ``n_rounds`` > 2 (or more than 0.1 % of the data flagged as outliers) pass 2
    is repeated with the new solutions.  n_rounds = 1 stops after B1, G1.  The
    noise and the SNRs come from residuals of the final solution on a subsample
    of integrations and channels.

    Both passes run over blocks of ``block_baselines`` baselines (all
    integrations of a block before the next, so the partial sums stay in
    cache), in layout (baseline, pol, channel), shared among ``threads``
    threads (numpy releases the GIL); no per-baseline Python loops.

    refant: antenna to reference phases to (default: most unflagged data).
    solint_s: gain interval in seconds (None = per integration, math.inf =
    whole observation).  copy_flags=False lets the solver add its outlier flags to
    ``flags`` in place (it becomes ``result.flags``) instead of copying the cube.
    """
    vis = np.asarray(vis)
    T, Nb, C, P = vis.shape
    ant1 = np.asarray(ant1, dtype=np.int64)
    ant2 = np.asarray(ant2, dtype=np.int64)
    nant = int(max(ant1.max(), ant2.max()) + 1) if nant is None else int(nant)
    if model.shape[:3] != (T, Nb, C):
        raise ValueError(f"model shape {model.shape} does not match data {vis.shape}")
    if refant is not None and not 0 <= refant < nant:
        raise ValueError(f"refant {refant} outside 0..{nant - 1}")
    # Solve on the antennas present in cross-correlations only (an MS ANTENNA table
    # may list the whole array); results are expanded back to ``nant`` at the end.
    xc = ant1 != ant2
    present = np.unique(np.concatenate([ant1[xc], ant2[xc]]))
    if present.size < nant:
        lut = np.full(nant, -1, np.int64)
        lut[present] = np.arange(present.size)
        sub_ant1 = np.where(lut[ant1] >= 0, lut[ant1], 0)
        sub_ant2 = np.where(lut[ant2] >= 0, lut[ant2], 0)
        sub_ant1[~xc] = sub_ant2[~xc] = 0          # autos of absent antennas: flagged anyway
        sub_ref = None if refant is None or lut[refant] < 0 else int(lut[refant])
        r = solve_calibration(vis, model, flags, sub_ant1, sub_ant2, times_s, freqs_hz, nant=present.size,
                              refant=sub_ref, solint_s=solint_s, n_rounds=n_rounds,
                              outlier_sigma=outlier_sigma, baseline_excess=baseline_excess, min_snr=min_snr,
                              min_baselines=min_baselines, max_iter=max_iter, tol=tol, threads=threads,
                              block_baselines=block_baselines, copy_flags=copy_flags)
        def grow(x, axis, fill):
            shape = list(x.shape)
            shape[axis] = nant
            out = np.full(shape, fill, dtype=x.dtype)
            idx = [slice(None)] * x.ndim
            idx[axis] = present
            out[tuple(idx)] = x
            return out
        r.bandpass = grow(r.bandpass, 0, 0)
        r.bandpass_flags = grow(r.bandpass_flags, 0, True)
        r.bandpass_snr = grow(r.bandpass_snr, 0, 0)
        r.gains = grow(r.gains, 1, 0)
        r.gain_flags = grow(r.gain_flags, 1, True)
        r.gain_snr = grow(r.gain_snr, 1, 0)
        r.refant = int(present[r.refant])
        r.antennas_present = np.zeros(nant, bool)
        r.antennas_present[present] = True
        return r
    t_setup = time.perf_counter()
    if flags is None:
        fl = np.zeros(vis.shape, dtype=bool)
    elif not copy_flags and isinstance(flags, np.ndarray) and flags.dtype == bool and flags.shape == vis.shape:
        fl = flags
    else:
        fl = np.array(flags, dtype=bool, copy=True)
    auto = ant1 == ant2
    if auto.any():
        fl[:, auto] = True
    cross = ~auto
    a1c, a2c = ant1[cross], ant2[cross]

    tidx, gtimes, gint = solution_intervals(times_s, solint_s)
    K = gtimes.size
    iters: dict = {"bandpass": [], "gains": [], "bandpass_s": 0.0, "gains_s": 0.0, "residual_s": 0.0,
                   "prepare_s": 0.0}
    bs = _block_size(C)
    NB = C // bs                                    # channel blocks of the coarse spectra
    ones_c = np.ones(bs, np.complex64)
    ones_f = np.ones(bs, np.float32)
    Pm = 1 if model.ndim == 3 else P
    lazy_model = isinstance(model, PointSourceModel)
    if lazy_model:
        model.prepare()
    nbk = max(1, int(block_baselines))
    chunks = [(b0, min(Nb, b0 + nbk)) for b0 in range(0, Nb, nbk)]
    chunks = [c for c in chunks if cross[c[0]:c[1]].any()]
    nthreads = max(1, min(int(threads), len(chunks)))

    def run_chunks(work):
        """work(list of chunks) on each thread's share; list of results."""
        shares = [chunks[i::nthreads] for i in range(nthreads)]
        if nthreads == 1:
            return [work(shares[0])]
        with ThreadPoolExecutor(max_workers=nthreads) as ex:
            return list(ex.map(work, shares))

    class Buffers:
        """Per-thread scratch arrays for one block of baselines at one integration,
        layout (bl, pol, chan)."""
        def __init__(self):
            self.F = np.empty((nbk, P, C), bool)               # flags
            self.Mc = np.empty((nbk, Pm, C), np.complex64)     # conj(M)
            self.M2 = np.empty((nbk, Pm, C), np.float32)       # |M|^2
            self.Mn = np.empty((nbk, Pm, C), np.complex64)     # M
            self.S = np.empty((nbk, Pm, 2 * C), np.float32)
            self.Mblk = np.empty((nbk, C), np.complex64) if lazy_model else None
            self.R = np.empty((nbk, P, C), np.complex64)
            self.Q = np.empty((nbk, P, C), np.float32)
            self.Q2 = np.empty((nbk, P, C), np.float32)
            self.N = np.empty((nbk, P, C), bool)
            self.Y = np.empty((nbk, P, C), np.complex64)       # w V conj(M)
            self.W = np.empty((nbk, P, C), np.float32)         # w |M|^2

        def load(self, t, b0, b1):
            """Fill F, Y, W for baselines b0:b1 at time t; returns views (V unused)."""
            n = b1 - b0
            F, Mc, M2 = self.F[:n], self.Mc[:n], self.M2[:n]
            Y, W = self.Y[:n], self.W[:n]
            np.copyto(F, fl[t, b0:b1].transpose(0, 2, 1))
            if lazy_model:
                m = model.block(t, b0, b1, out=self.Mblk[:n])
                np.conjugate(m[:, None, :], out=Mc)
                np.copyto(W, flux2[t])                       # |M|^2 of a point source: S(t, nu)^2
            else:
                m = model[t, b0:b1]
                np.conjugate(m[:, None, :] if Pm == 1 else m.transpose(0, 2, 1), out=Mc)
                Mf = Mc.view(np.float32)
                S = self.S[:n]
                np.multiply(Mf, Mf, out=S)
                np.add(S[..., 0::2], S[..., 1::2], out=M2)
                np.copyto(W, M2)
            np.multiply(vis[t, b0:b1].transpose(0, 2, 1), Mc, out=Y)
            np.copyto(Y, 0, where=F)
            np.copyto(W, 0, where=F)
            return None, Y, W, F, Mc

    flux2 = (model._flux32 ** 2) if lazy_model else None

    def blocksum(x, ones):
        """Sums over channel blocks: (..., C) -> (..., NB).  Batched small products (one
        large gemv would start OpenBLAS threads inside our worker threads)."""
        lead = x.shape[:-1]
        return np.matmul(x.reshape(-1, NB, bs), ones).reshape(lead + (NB,))

    # ---- pass 1: time sums A1, D1 (bl, P, C) and coarse spectra Z1, Z1w (T, bl, P, NB)
    t0 = time.perf_counter()
    A1 = np.zeros((Nb, P, C), np.complex64)
    D1 = np.zeros((Nb, P, C), np.float32)
    Z1 = np.zeros((T, Nb, P, NB), np.complex64)
    Z1w = np.zeros((T, Nb, P, NB), np.float32)

    def pass1(share):
        buf = Buffers()
        for b0, b1 in share:
            n = b1 - b0
            for attempt in range(2):
                A = np.zeros((n, P, C), np.complex64)
                D = np.zeros((n, P, C), np.float32)
                for t in range(T):
                    _, Y, W, _, _ = buf.load(t, b0, b1)
                    A += Y
                    D += W
                    Z1[t, b0:b1] = blocksum(Y, ones_c)
                    Z1w[t, b0:b1] = blocksum(W, ones_f)
                if np.isfinite(A.sum()) and np.isfinite(D.sum()):
                    break
                # NaN/inf data or model: flag those samples and redo this block
                mm = model[:, b0:b1] if model.ndim == 4 else model[:, b0:b1, :, None]
                fl[:, b0:b1] |= ~(np.isfinite(vis[:, b0:b1]) & np.isfinite(mm))
            A1[b0:b1] = A
            D1[b0:b1] = D

    run_chunks(pass1)
    # reference antenna ranking: unflagged (pol, channel) samples summed over baselines
    good = (D1 > 0).sum(axis=(1, 2))
    good[auto] = 0
    counts = np.bincount(ant1, good, nant) + np.bincount(ant2, good, nant)
    ranking = np.argsort(-counts, kind="stable")
    if refant is not None:
        ranking = np.concatenate([[refant], ranking[ranking != refant]])
    ref = int(ranking[0])
    iters["prepare_s"] = time.perf_counter() - t_setup

    def finish(sol, den, nbl_ok):
        sfl = (den <= 0) | (nbl_ok < min_baselines) | (np.abs(sol) == 0)
        sol = _reference(sol, sfl, ranking)
        sol[sfl] = 0
        return sol, sfl, den

    def solve_B(A, D, B0):
        """Bandpass (nant, P, C) from per-baseline sums A, D (Nb, P, C); B0 warm start or None."""
        t0 = time.perf_counter()
        g0 = None if B0 is None else B0.reshape(nant, P * C).T
        # all baselines, no gather of the cross ones: the autocorrelations' sums are 0 (flagged),
        # so their diagonal entries of the problem matrices stay 0
        sol, nit, den, nbl_ok = _solve_problems(A.reshape(Nb, P * C), D.reshape(Nb, P * C),
                                                ant1, ant2, nant, g0, max_iter=max_iter, tol=tol, threads=threads)
        sol, sfl, den = finish(sol, den, nbl_ok)
        iters["bandpass"].append(nit)
        Bn = sol.T.reshape(nant, P, C).transpose(0, 2, 1)                     # (nant, C, P)
        Bf = sfl.T.reshape(nant, P, C).transpose(0, 2, 1)
        Bn, norm = normalise_bandpass(Bn, Bf)
        Bi = np.ascontiguousarray(Bn.transpose(0, 2, 1)).astype(np.complex64)
        Bfi = np.ascontiguousarray(Bf.transpose(0, 2, 1))
        Bden = den.T.reshape(nant, P, C) * (np.abs(norm) ** 2)[:, :, None]
        iters["bandpass_s"] += time.perf_counter() - t0
        return Bi, Bfi, Bden

    def solve_G(Zs, Ws, G0):
        """Gains (K, nant, P) from per-integration sums Zs (T, Nb, P) complex, Ws (T, Nb, P)."""
        t0 = time.perf_counter()
        if K == T and np.array_equal(tidx, np.arange(T)):
            A, D = Zs, Ws
        else:
            A = np.zeros((K, Nb, P), np.complex128)
            D = np.zeros((K, Nb, P), np.float64)
            np.add.at(A, tidx, Zs)
            np.add.at(D, tidx, Ws)
        g0 = None if G0 is None else G0.transpose(0, 2, 1).reshape(K * P, nant)
        sol, nit, den, nbl_ok = _solve_problems(
            np.ascontiguousarray(A[:, cross].transpose(1, 0, 2)).reshape(-1, K * P),
            np.ascontiguousarray(D[:, cross].transpose(1, 0, 2)).reshape(-1, K * P),
            a1c, a2c, nant, g0, max_iter=max_iter, tol=tol, threads=threads)
        sol, sfl, den = finish(sol, den, nbl_ok)
        iters["gains"].append(nit)
        G = sol.reshape(K, P, nant).transpose(0, 2, 1).astype(np.complex64)
        Gf = sfl.reshape(K, P, nant).transpose(0, 2, 1)
        Gd = den.reshape(K, P, nant).transpose(0, 2, 1)
        iters["gains_s"] += time.perf_counter() - t0
        return G, Gf, Gd

    BSTEP = 512     # baselines per step of the whole-array products below (small temporaries)

    def bb_of(Bi, b0, b1, out=None):
        """B_p conj(B_q) of baselines b0:b1 (n, P, C), autocorrelations 0: made per block of
        baselines where it is needed (a whole-array copy would be 57 MB at full size)."""
        out = np.empty((b1 - b0, P, C), np.complex64) if out is None else out
        np.multiply(Bi[ant1[b0:b1]], np.conj(Bi[ant2[b0:b1]]), out=out)
        out[auto[b0:b1]] = 0
        return out

    def block_means(x, w):
        """Weighted block means over channel blocks: x, w (n, P, C) -> (n, P, NB)."""
        n = x.shape[0]
        ws = w.reshape(n, P, NB, bs).sum(axis=-1)
        xs = (x * w).reshape(n, P, NB, bs).sum(axis=-1)
        return np.where(ws > 0, xs / np.where(ws > 0, ws, 1), 0)

    def noise_sigma2(Bi, G, times_sample) -> np.ndarray:
        """Robust E|r|^2 per pol (median |r|^2 / ln 2) on some integrations and channels."""
        cs = slice(None, None, max(1, C // 48))
        Bc = Bi[:, :, cs]                                                     # channels first: small gathers
        bbs = Bc[a1c] * np.conj(Bc[a2c])                                      # (Nbc, P, Cs)
        vals = [[] for _ in range(P)]
        for t in times_sample:
            g = G[tidx[t]]
            gg = g[a1c] * np.conj(g[a2c])
            mt = (model.block(t, chans=cs) if lazy_model else model[t][:, cs])[cross]
            m = mt[:, None, :] if Pm == 1 else mt.transpose(0, 2, 1)
            r = vis[t][:, cs][cross].transpose(0, 2, 1) - m * bbs * gg[:, :, None]
            ok = ~fl[t][:, cs][cross].transpose(0, 2, 1)
            for p in range(P):
                rp = r[:, p][ok[:, p]]
                vals[p].append(rp.real ** 2 + rp.imag ** 2)
        out = np.ones(P)
        for p in range(P):
            v = np.concatenate(vals[p]) if vals[p] else np.array([])
            if v.size:
                med = float(np.median(v)) / math.log(2.0)
                out[p] = med if med > 0 else 1.0
        return out

    # ---- B1 from the time sums, G1 from the coarse spectra weighted by B1's block means
    Bi, Bflag_i, Bden_i = solve_B(A1, D1, None)
    beta = np.empty((Nb, P, NB), np.complex64)                                   # block means of B1 B1*
    for b0 in range(0, Nb, BSTEP):
        b1 = min(Nb, b0 + BSTEP)
        beta[b0:b1] = block_means(bb_of(Bi, b0, b1), D1[b0:b1])
    t0 = time.perf_counter()
    Zs, Ws = reweighted_spectra(Z1, Z1w, np.conj(beta), (np.abs(beta) ** 2).astype(np.float32))
    iters["gains_s"] += time.perf_counter() - t0
    G, Gflag, Gden = solve_G(Zs, Ws, None)
    del Zs, Ws, beta

    stat_times = set(np.unique(np.linspace(0, T - 1, min(T, 8)).astype(int)).tolist())

    def pass2(Bi, G, flag_outliers, thr2, A, D, Z, Zw):
        """Flag outliers with (B, G); return G-weighted sums A, D (Nb, P, C) for the next B,
        B-weighted coarse spectra Z, Zw (T, Nb, P, NB) of the cleaned data, baseline
        residual statistics and the number of new flags."""
        for x in (A, D, Z, Zw):   # buffers of pass 1, reused (their pages are mapped already)
            x[...] = 0
        blsum = np.zeros((Nb, P))
        blcnt = np.zeros((Nb, P))
        thr = np.sqrt(thr2)[:, None] if flag_outliers else None
        ones_q = np.ones(C, np.float32)

        gt = G[tidx]                                                          # (T, nant, P)

        def work(share):
            buf = Buffers()
            bbc_b = np.empty((nbk, P, C), np.complex64)
            bbA_b = np.empty((nbk, P, C), np.complex64)
            bb2_b = np.empty((nbk, P, C), np.float32)
            n_new = 0
            for b0, b1 in share:
                n = b1 - b0
                a1b, a2b = ant1[b0:b1], ant2[b0:b1]
                bbA_c = bb_of(Bi, b0, b1, out=bbA_b[:n])
                R, Q, N, Q2 = buf.R[:n], buf.Q[:n], buf.N[:n], buf.Q2[:n]
                ggt = (gt[:, a1b] * np.conj(gt[:, a2b])).transpose(1, 2, 0)       # (n, P, T)
                ggc = np.conj(ggt)
                gg2 = (ggt.real ** 2 + ggt.imag ** 2).astype(np.float32)
                Ac, Dc = A[b0:b1], D[b0:b1]
                bbc_c = np.conjugate(bbA_c, out=bbc_b[:n])
                bb2_c = bb2_b[:n]
                np.multiply(bbA_c.real, bbA_c.real, out=bb2_c)
                bb2_c += bbA_c.imag * bbA_c.imag
                for t in range(T):
                    V, Y, W, F, Mc = buf.load(t, b0, b1)
                    if flag_outliers:
                        # residual in model-weighted form: Y - g g* B B* W = w conj(M) r, so
                        # |.|^2 = W |r|^2 and |r| > thr <=> |.|^2 > thr^2 W (0 where flagged)
                        np.multiply(bbA_c, ggt[:, :, t, None], out=R)
                        np.multiply(R, W, out=R)
                        np.subtract(Y, R, out=R)
                        Rf = R.view(np.float32)
                        np.multiply(Rf, Rf, out=Rf)
                        np.add(Rf[..., 0::2], Rf[..., 1::2], out=Q)             # W |r|^2
                        np.multiply(W, thr2[:, None], out=Q2)
                        np.greater(Q, Q2, out=N)
                        nn = int(np.count_nonzero(N))
                        if nn:
                            n_new += nn
                            F |= N
                            fl[t, b0:b1] |= N.transpose(0, 2, 1)
                            np.copyto(Y, 0, where=N)
                            np.copyto(W, 0, where=N)
                        if t in stat_times:
                            np.divide(Q, W, out=Q, where=~F)
                            np.sqrt(Q, out=Q)
                            np.minimum(Q, thr, out=Q)
                            np.copyto(Q, 0, where=F)
                            blsum[b0:b1] += np.matmul(Q, ones_q)
                            blcnt[b0:b1] += C - np.count_nonzero(F, axis=2)
                    # G-weighted time sums for the next bandpass
                    np.multiply(Y, ggc[:, :, t, None], out=R)
                    Ac += R
                    np.multiply(W, gg2[:, :, t, None], out=Q)
                    Dc += Q
                    # B-weighted coarse spectra of the cleaned data, for the gains
                    np.multiply(Y, bbc_c, out=R)
                    Z[t, b0:b1] = blocksum(R, ones_c)
                    np.multiply(W, bb2_c, out=Q)
                    Zw[t, b0:b1] = blocksum(Q, ones_f)
            return n_new

        n_new = int(sum(run_chunks(work)))
        return A, D, Z, Zw, blsum, blcnt, n_new

    n_out = 0
    rounds = max(1, n_rounds)
    r = 1
    while r < rounds:
        t0 = time.perf_counter()
        flag_out = r == 1 and outlier_sigma is not None and outlier_sigma > 0
        thr2 = None
        if flag_out:
            sig2 = noise_sigma2(Bi, G, np.unique(np.linspace(0, T - 1, min(T, 4)).astype(int)))
            thr2 = (outlier_sigma ** 2 * sig2 / 2.0).astype(np.float32)                   # (P,)
        A, D, Z, Zw, blsum, blcnt, n_new = pass2(Bi, G, flag_out, thr2, A1, D1, Z1, Z1w)
        if flag_out:
            nok = blcnt[cross]                                                # (Nbc, P)
            mean_amp = np.where(nok > 0, blsum[cross] / np.maximum(nok, 1), np.nan)
            med = np.nanmedian(mean_amp, axis=0) if np.isfinite(mean_amp).any() else np.ones(P)
            bad = np.zeros((Nb, P), bool)
            bad[cross] = mean_amp > baseline_excess * med[None, :]
            for p in range(P):
                if bad[:, p].any():
                    sel = np.nonzero(bad[:, p])[0]
                    n_new += int((~fl[:, sel, :, p]).sum())
                    fl[:, sel, :, p] = True
                    A[sel, p] = 0
                    D[sel, p] = 0
                    Z[:, sel, p] = 0
                    Zw[:, sel, p] = 0
            n_out = n_new
            if n_new > 1e-3 * T * int(cross.sum()) * C * P:
                rounds += 1
        iters["residual_s"] += time.perf_counter() - t0
        # B2 with the G1-weighted sums; then the gains of the cleaned data, from the
        # B1-weighted coarse spectra re-weighted to B2 block by block
        B_old = Bi
        Bi, Bflag_i, Bden_i = solve_B(A, D, Bi)
        t0 = time.perf_counter()
        ratio = np.where((B_old != 0) & ~Bflag_i, Bi / np.where(B_old != 0, B_old, 1), 0)   # (nant, P, C)
        rho_k = np.empty((Nb, P, NB), np.complex64)
        rho2_k = np.empty((Nb, P, NB), np.float32)
        for b0 in range(0, Nb, BSTEP):
            b1 = min(Nb, b0 + BSTEP)
            rho = ratio[ant1[b0:b1]] * np.conj(ratio[ant2[b0:b1]])
            bo = bb_of(B_old, b0, b1)
            w = D[b0:b1] * (bo.real ** 2 + bo.imag ** 2)     # G-weighted time sums of w |M|^2 |B1 B1|^2
            rho_k[b0:b1] = block_means(rho, w)
            rho2_k[b0:b1] = block_means(rho.real ** 2 + rho.imag ** 2, w)
        Zs, Ws = reweighted_spectra(Z, Zw, np.conj(rho_k), rho2_k)
        del rho, w, bo
        iters["gains_s"] += time.perf_counter() - t0
        G, Gflag, Gden = solve_G(Zs, Ws, G)
        r += 1

    # the passes' sums (A..Zw are the same buffers): freed before the last residuals
    A1 = D1 = Z1 = Z1w = A = D = Z = Zw = None  # noqa: F841
    t0 = time.perf_counter()
    sigma2 = noise_sigma2(Bi, G, np.unique(np.linspace(0, T - 1, min(T, 6)).astype(int)))
    iters["residual_s"] += time.perf_counter() - t0
    B = np.ascontiguousarray(Bi.transpose(0, 2, 1))
    Bflag = np.ascontiguousarray(Bflag_i.transpose(0, 2, 1))
    Bden = Bden_i.transpose(0, 2, 1)
    bsnr = np.abs(B) * np.sqrt(np.maximum(Bden, 0) / sigma2[None, None, :])
    gsnr = np.abs(G) * np.sqrt(np.maximum(Gden, 0) / sigma2[None, None, :])
    Bflag |= bsnr < min_snr
    Gflag |= gsnr < min_snr
    B[Bflag] = 0
    G[Gflag] = 0
    return SolveResult(
        bandpass=B.astype(np.complex64), bandpass_flags=Bflag, bandpass_snr=bsnr.astype(np.float32),
        gains=G.astype(np.complex64), gain_flags=Gflag, gain_snr=gsnr.astype(np.float32),
        gain_times=gtimes, gain_intervals=gint, time_to_solint=tidx, refant=ref,
        freqs=np.asarray(freqs_hz, dtype=np.float64), flags=fl, noise_sigma=np.sqrt(sigma2),
        outliers_flagged=int(n_out), iterations=iters,
        antennas_present=np.isin(np.arange(nant), np.concatenate([a1c, a2c])))
