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
from dataclasses import dataclass, field

import numpy as np

from .beam import SPEED_OF_LIGHT, airy_power, angular_separation
from .catalogue import Calibrator

__all__ = [
    "SolveResult", "direction_cosines", "point_source_model", "calibrator_model",
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


def point_source_model(uvw_m: np.ndarray, freqs_hz: np.ndarray, lmn: tuple[float, float, float],
                       flux: np.ndarray | float = 1.0, sign: float = +1.0) -> np.ndarray:
    """Point-source visibilities ``S(t, nu) exp(sign 2 pi i (u l + v m + w (n - 1)) nu / c)``.

    uvw_m: (ntime, nbl, 3) metres; flux: scalar, (nchan,) or (ntime, nchan).
    Returns complex64 (ntime, nbl, nchan).  The sign follows the convention
    ``V = S exp(+2 pi i (u l + v m + w (n-1)))``; pass ``sign=-1`` for data using
    the opposite one.
    """
    uvw = np.asarray(uvw_m, dtype=np.float64)
    freqs = np.asarray(freqs_hz, dtype=np.float64)
    l, m, n = lmn
    tau = (uvw[..., 0] * l + uvw[..., 1] * m + uvw[..., 2] * (n - 1.0)) / SPEED_OF_LIGHT  # (T, B) s
    nt, nb = tau.shape
    s = np.broadcast_to(np.asarray(flux, dtype=np.float64), (nt, freqs.size)) if np.ndim(flux) \
        else np.full((nt, freqs.size), float(flux))
    out = np.empty((nt, nb, freqs.size), dtype=np.complex64)
    two_pi = 2.0 * np.pi * sign
    for t in range(nt):   # time slices keep temporaries small; each slice is fully vectorised
        cycles = np.multiply.outer(tau[t], freqs)
        cycles -= np.round(cycles)
        ph = (two_pi * cycles).astype(np.float32)
        amp = s[t].astype(np.float32)
        out[t].real = np.cos(ph) * amp
        out[t].imag = np.sin(ph) * amp
    return out


def calibrator_model(cal: Calibrator, uvw_m: np.ndarray, times_s: np.ndarray, freqs_hz: np.ndarray,
                     phase_centre: tuple[float, float], *, pointing_dec: float | None = None,
                     pointing_ra_at_mid: float | None = None, t_mid: float | None = None,
                     primary_beam: bool = True, sign: float = +1.0) -> np.ndarray:
    """Model visibilities (ntime, nbl, nchan) of a catalogue calibrator.

    phase_centre: (ra, dec) radians (the MS FIELD PHASE_DIR).  The dishes point
    at ``pointing_dec`` (default: the phase-centre dec) on the meridian; the
    pointing RA is ``pointing_ra_at_mid`` (default: phase-centre RA, the meridian
    at mid-observation) at ``t_mid`` (default: mid of ``times_s``) and moves at the
    sidereal rate.  Flux includes the spectral index and the Airy beam power at
    the source's offset from the pointing at each time and frequency.
    """
    ra0, dec0 = phase_centre
    times = np.asarray(times_s, dtype=np.float64)
    freqs = np.asarray(freqs_hz, dtype=np.float64)
    lmn = direction_cosines(cal.ra_rad, cal.dec_rad, ra0, dec0)
    flux = np.broadcast_to(cal.flux_at(freqs), (times.size, freqs.size)).astype(np.float64)
    if primary_beam:
        pdec = dec0 if pointing_dec is None else pointing_dec
        pra_mid = ra0 if pointing_ra_at_mid is None else pointing_ra_at_mid
        tm = 0.5 * (times.min() + times.max()) if t_mid is None else t_mid
        pra = pra_mid + SIDEREAL_RATE_RAD_S * (times - tm)
        off = angular_separation(pra, np.full_like(pra, pdec), cal.ra_rad, cal.dec_rad)   # (T,)
        flux = flux * airy_power(off[:, None], freqs[None, :])
    return point_source_model(uvw_m, freqs, lmn, flux, sign=sign)


# ----------------------------------------------------------------------------- StEFCal

def stefcal(A: np.ndarray, D: np.ndarray, g0: np.ndarray | None = None, *, max_iter: int = 200,
            tol: float = 1e-6) -> tuple[np.ndarray, int, np.ndarray]:
    """Batched StEFCal.

    A: (nprob, nant, nant) complex Hermitian, D: (nprob, nant, nant) real >= 0.
    Solves ``A_pq ~ g_p D_pq g_q^*`` style normal equations for every problem at
    once.  Returns (g (nprob, nant) complex128, iterations used, final relative
    change per problem).  Antennas without data get g = 0.
    """
    nprob, nant = A.shape[:2]
    g = np.ones((nprob, nant), dtype=np.complex128) if g0 is None else np.array(g0, dtype=np.complex128)
    g[~np.isfinite(g)] = 1.0
    has = D.sum(axis=2) > 0
    g[has & (g == 0)] = 1.0
    change = np.full(nprob, np.inf)
    active = np.arange(nprob)
    it = 0
    for it in range(1, max_iter + 1):
        Aa, Da, ga = A[active], D[active], g[active]
        num = np.matmul(Aa, ga[..., None])[..., 0]
        den = np.matmul(Da, (ga.real ** 2 + ga.imag ** 2)[..., None])[..., 0]
        ok = den > 0
        gn = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
        if it % 2 == 0:
            gn = 0.5 * (gn + ga)
        norm = np.linalg.norm(gn, axis=1)
        ch = np.linalg.norm(gn - ga, axis=1) / np.where(norm > 0, norm, 1.0)
        g[active] = gn
        change[active] = ch
        if it % 2 == 0:   # convergence checked after the averaging step
            active = active[ch >= tol]
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


def _to_matrices(vals: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, nant: int,
                 hermitian: bool) -> np.ndarray:
    """(nbl, nprob) baseline values -> (nprob, nant, nant) matrices (p,q) and (q,p)."""
    nprob = vals.shape[1]
    dtype = np.complex128 if hermitian else np.float64
    mat = np.zeros((nprob, nant, nant), dtype=dtype)
    v = np.ascontiguousarray(vals.T)
    mat[:, ant1, ant2] = v
    mat[:, ant2, ant1] = np.conj(v) if hermitian else v
    return mat


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

    @property
    def nant(self) -> int:
        return self.bandpass.shape[0]

    def antennas_with_solutions(self) -> np.ndarray:
        """Antennas with any unflagged bandpass and gain solution."""
        b = (~self.bandpass_flags).any(axis=(1, 2))
        g = (~self.gain_flags).any(axis=(0, 2))
        return np.nonzero(b & g)[0]


# ----------------------------------------------------------------------------- solve

def _expand_model(model_t: np.ndarray) -> np.ndarray:
    return model_t if model_t.ndim == 3 else model_t[..., None]


def solve_calibration(vis: np.ndarray, model: np.ndarray, flags: np.ndarray | None,
                      ant1: np.ndarray, ant2: np.ndarray, times_s: np.ndarray,
                      freqs_hz: np.ndarray, *, nant: int | None = None, refant: int | None = None,
                      solint_s: float | None = None, n_rounds: int = 2, outlier_sigma: float = 5.0,
                      baseline_excess: float = 3.0, min_snr: float = 3.0, min_baselines: int = 4,
                      max_iter: int = 200, tol: float = 1e-6) -> SolveResult:
    """Solve bandpass B then gains G (alternating ``n_rounds`` times), flag
    residual outliers (|r| > outlier_sigma x per-component noise, and whole
    baseline-polarisations whose mean clipped residual power exceeds
    ``baseline_excess`` x the global one), then re-solve once.

    refant: antenna index to reference phases to (default: the one with most
    unflagged data).  solint_s: gain interval in seconds (None = per
    integration, math.inf = whole observation).
    """
    vis = np.asarray(vis)
    T, Nb, C, P = vis.shape
    ant1 = np.asarray(ant1, dtype=np.int64)
    ant2 = np.asarray(ant2, dtype=np.int64)
    nant = int(max(ant1.max(), ant2.max()) + 1) if nant is None else int(nant)
    if model.shape[:3] != (T, Nb, C):
        raise ValueError(f"model shape {model.shape} does not match data {vis.shape}")
    fl = np.zeros(vis.shape, dtype=bool) if flags is None else np.array(flags, dtype=bool, copy=True)
    auto = ant1 == ant2
    fl[:, auto] = True
    fl |= ~np.isfinite(vis)
    cross = ~auto
    a1c, a2c = ant1[cross], ant2[cross]

    ranking = choose_refant(fl, ant1, ant2, nant)
    if refant is not None:
        if not 0 <= refant < nant:
            raise ValueError(f"refant {refant} outside 0..{nant - 1}")
        ranking = np.concatenate([[refant], ranking[ranking != refant]])
    ref = int(ranking[0])

    tidx, gtimes, gint = solution_intervals(times_s, solint_s)
    K = gtimes.size

    # Model-weighted data Y = w V conj(M) and weights Wm = w |M|^2 (one data pass).
    Y = np.empty((T, Nb, C, P), dtype=np.complex64)
    Wm = np.empty((T, Nb, C, P), dtype=np.float32)

    def build_weighted():
        for t in range(T):
            m = _expand_model(model[t])
            w = ~fl[t]
            np.multiply(vis[t], np.conj(m), out=Y[t])
            Y[t][~w] = 0
            np.multiply(w, (m.real ** 2 + m.imag ** 2), out=Wm[t])
    _t = time.perf_counter()
    build_weighted()
    prepare_s = time.perf_counter() - _t

    B = np.ones((nant, C, P), dtype=np.complex128)
    G = np.ones((K, nant, P), dtype=np.complex128)
    Bflag = np.zeros((nant, C, P), dtype=bool)
    Gflag = np.zeros((K, nant, P), dtype=bool)
    iters: dict = {"bandpass": [], "gains": [], "bandpass_s": 0.0, "gains_s": 0.0, "residual_s": 0.0,
                   "prepare_s": prepare_s}
    sigma2 = np.ones(P)
    Bden = np.zeros((nant, C, P))
    Gden = np.zeros((K, nant, P))

    def timed(key):
        def deco(fn):
            def run(*a, **k):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    iters[key] += time.perf_counter() - t0
            return run
        return deco

    @timed("bandpass_s")
    def solve_B():
        nonlocal B, Bflag, Bden
        A = np.zeros((Nb, C, P), dtype=np.complex128)
        Dm = np.zeros((Nb, C, P), dtype=np.float64)
        for t in range(T):
            g = G[tidx[t]]
            gg = g[ant1] * np.conj(g[ant2])                       # (Nb, P)
            A += Y[t] * np.conj(gg)[:, None, :]
            Dm += Wm[t] * (np.abs(gg) ** 2)[:, None, :]
        Am = _to_matrices(A[cross].reshape(-1, C * P), a1c, a2c, nant, True)
        Dmat = _to_matrices(Dm[cross].reshape(-1, C * P), a1c, a2c, nant, False)
        g0 = B.reshape(nant, C * P).T
        sol, nit, _ = stefcal(Am, Dmat, g0, max_iter=max_iter, tol=tol)
        den = np.matmul(Dmat, (np.abs(sol) ** 2)[..., None])[..., 0]
        nbl_ok = (Dmat > 0).sum(axis=2)
        sfl = (den <= 0) | (nbl_ok < min_baselines) | (np.abs(sol) == 0)
        sol = _reference(sol, sfl, ranking)
        sol[sfl] = 0
        iters["bandpass"].append(nit)
        B = sol.T.reshape(nant, C, P)
        Bflag = sfl.T.reshape(nant, C, P)
        Bden = den.T.reshape(nant, C, P)
        B, norm = normalise_bandpass(B, Bflag)
        Bden = Bden * (np.abs(norm) ** 2)[:, None, :]

    @timed("gains_s")
    def solve_G():
        nonlocal G, Gflag, Gden
        A = np.zeros((K, Nb, P), dtype=np.complex128)
        Dm = np.zeros((K, Nb, P), dtype=np.float64)
        bb = B[ant1] * np.conj(B[ant2])                           # (Nb, C, P)
        bbc = np.conj(bb).astype(np.complex64)
        bb2 = (np.abs(bb) ** 2).astype(np.float32)
        for t in range(T):
            k = tidx[t]
            A[k] += np.einsum("bcp,bcp->bp", Y[t], bbc)
            Dm[k] += np.einsum("bcp,bcp->bp", Wm[t], bb2)
        Am = _to_matrices(A[:, cross].transpose(1, 0, 2).reshape(-1, K * P), a1c, a2c, nant, True)
        Dmat = _to_matrices(Dm[:, cross].transpose(1, 0, 2).reshape(-1, K * P), a1c, a2c, nant, False)
        g0 = G.transpose(0, 2, 1).reshape(K * P, nant)
        sol, nit, _ = stefcal(Am, Dmat, g0, max_iter=max_iter, tol=tol)
        den = np.matmul(Dmat, (np.abs(sol) ** 2)[..., None])[..., 0]
        nbl_ok = (Dmat > 0).sum(axis=2)
        sfl = (den <= 0) | (nbl_ok < min_baselines) | (np.abs(sol) == 0)
        sol = _reference(sol, sfl, ranking)
        sol[sfl] = 0
        iters["gains"].append(nit)
        G = sol.reshape(K, P, nant).transpose(0, 2, 1)
        Gflag = sfl.reshape(K, P, nant).transpose(0, 2, 1)
        Gden = den.reshape(K, P, nant).transpose(0, 2, 1)

    @timed("residual_s")
    def residual_pass(flag_outliers: bool) -> int:
        """Robust noise estimate; optionally flag outliers. Returns number newly flagged."""
        nonlocal sigma2
        # 1) robust sigma^2 per pol from a subsample of times: median |r|^2 / ln 2
        samp_t = np.unique(np.linspace(0, T - 1, min(T, 6)).astype(int))
        med = np.zeros(P)
        for p in range(P):
            vals = []
            for t in samp_t:
                r = vis[t, cross, :, p] - corrupt_model(model[t][cross] if model.ndim == 3
                                                        else model[t][cross][..., p:p + 1],
                                                        a1c, a2c, B[..., p:p + 1], G[tidx[t]][:, p:p + 1])[..., 0]
                ok = ~fl[t, cross, :, p]
                vals.append((r.real ** 2 + r.imag ** 2)[ok])
            v = np.concatenate(vals)
            med[p] = np.median(v) / math.log(2.0) if v.size else 1.0
        sigma2 = np.where(med > 0, med, 1.0)
        if not flag_outliers:
            return 0
        thr = outlier_sigma ** 2 / 2.0   # |r|^2 / sigma^2 threshold (sigma^2 = 2 sigma_component^2)
        before = int(fl.sum())
        blpow = np.zeros((Nb, P))
        blcnt = np.zeros((Nb, P))
        for t in range(T):
            r = vis[t] - corrupt_model(model[t], ant1, ant2, B, G[tidx[t]])
            z = (r.real ** 2 + r.imag ** 2) / sigma2
            ok = ~fl[t]
            fl[t] |= z > thr
            blpow += np.where(ok, np.minimum(z, thr), 0).sum(axis=1)
            blcnt += ok.sum(axis=1)
        excess = blpow / np.maximum(blcnt, 1)
        bad_bl = (excess > baseline_excess * np.median(excess[cross])) & cross[:, None]
        for p in range(P):   # whole baseline-polarisations with excess residual power
            if bad_bl[:, p].any():
                fl[:, bad_bl[:, p], :, p] = True
        # zero the weighted data where newly flagged
        for t in range(T):
            Y[t][fl[t]] = 0
            Wm[t][fl[t]] = 0
        return int(fl.sum()) - before

    # one B/G round, residual-based outlier flagging, then the remaining rounds
    # (all n_rounds again if outliers were flagged: the first G/B may be biased by them)
    solve_B()
    solve_G()
    n_out = residual_pass(flag_outliers=outlier_sigma is not None and outlier_sigma > 0)
    for _ in range(max(1, n_rounds) if n_out else max(0, n_rounds - 1)):
        solve_B()
        solve_G()
    residual_pass(flag_outliers=False)

    sig2 = sigma2[None, None, :]
    bsnr = np.abs(B) * np.sqrt(np.maximum(Bden, 0) / sig2)
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
        outliers_flagged=int(n_out), iterations=iters)
