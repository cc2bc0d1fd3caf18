"""QA that measures a calibration solution against the calibrator's own data.

Antenna-based gains can absorb almost anything antenna-based, including the
atmosphere, so the gains' spread in time says little about their quality.  What a
good solution does is make the corrected calibrator look like its model within the
thermal noise.  Three numbers say whether it does:

* ``residual_ratio``: robust rms of (corrected - model) over the robust rms of the
  channel-to-channel differences of the same residuals divided by sqrt(2).  The
  differences remove anything smooth in frequency (a wrong model, unfit gains), so
  the denominator is the thermal noise measured from the data themselves; a model
  that fits leaves a ratio near 1.
* ``closure_phase_rms_deg``: robust rms of the closure phases of the corrected,
  model-divided, channel-averaged calibrator per integration.  Closure phases do not
  depend on antenna gains, so any that do not vanish come from a model that does not
  describe the sky or from baseline-based errors; ``closure_phase_expected_deg`` is
  what the noise alone gives.
* ``model_amp_ratio_*``: the corrected calibrator's amplitude over its model in each
  integration.  Gains solved per integration follow the model by construction, so this
  catches only what they cannot absorb: gains solved over longer intervals than the
  model changes, or flagged and interpolated solutions.  (A wrong flux scale or beam
  model is absorbed into the gains and is invisible here: the geometry is read from the
  MS for that reason, see ``engine.calibration.geometry``.)

The residual statistics are subsampled (channel pairs, then every k-th sample) so the
checks cost a small fraction of the solve at full DSA-110 size; the channel-averaged
ratios behind the closure phases use every channel, so their noise is as low as the data
allow.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine.robust import robust_complex_rms

from .interpolate import interpolate_in_time
from .solver import PointSourceModel

MAX_TRIANGLES = 4000


def _triangles(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ants = np.asarray(present)
    n = ants.size
    if n < 3:
        return np.zeros((0, 3), int)
    total = n * (n - 1) * (n - 2) // 6
    if total <= MAX_TRIANGLES:
        i, j, k = np.array([(i, j, k) for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)]).T
    else:
        pick = np.sort(rng.choice(n, size=(MAX_TRIANGLES, 3), replace=True), axis=1)
        pick = pick[(pick[:, 0] < pick[:, 1]) & (pick[:, 1] < pick[:, 2])]
        i, j, k = pick.T
    return np.stack([ants[i], ants[j], ants[k]], axis=1)


def corrected_checks(vis: np.ndarray, flags: np.ndarray, model, result, ant1: np.ndarray, ant2: np.ndarray,
                     times_s: np.ndarray, *, max_samples: float = 2e7, max_stat_samples: float = 2e6,
                     seed: int = 0, threads: int = 2) -> dict:
    """Metrics of the corrected calibrator against ``model`` (see the module docstring).

    vis/flags: (ntime, nbl, nchan, npol) as solved; model: (ntime, nbl, nchan) array or a
    lazy PointSourceModel; result: the SolveResult; ant1/ant2: (nbl,); times_s: (ntime,).
    max_samples bounds the channel pairs examined for the residual statistics, whose robust
    rms take every k-th of them, at most ``max_stat_samples`` (medians of tens of millions
    of samples were most of the cost); the ratios to the model and the closure phases use
    every channel (with a tenth of them the closure-phase noise alone was above the gate at
    full DSA-110 size).
    """
    T, Nb, C, P = vis.shape
    a1, a2 = np.asarray(ant1), np.asarray(ant2)
    cross = np.nonzero(a1 != a2)[0]
    out = {"residual_ratio": float("nan"), "residual_rms_jy": float("nan"), "thermal_rms_jy": float("nan"),
           "closure_phase_rms_deg": float("nan"), "closure_phase_expected_deg": float("nan"),
           "model_amp_ratio_median": float("nan"), "model_amp_ratio_min": float("nan"),
           "model_amp_ratio_max": float("nan"), "model_amp_deviation_max": float("nan")}
    if cross.size == 0 or C < 2:
        return out
    # residual statistics on channel pairs (c, c+1), strided so that at most max_samples samples
    # are examined; the ratios to the model (and the closure phases) average every channel, since
    # their noise is what the closure-phase gate compares against
    stride = max(1, int(math.ceil(T * cross.size * C * P / max_samples)))
    c0 = np.arange(0, C - 1, 2 * stride)
    chans = np.sort(np.concatenate([c0, c0 + 1]))
    pair = np.searchsorted(chans, c0)                     # positions of c0 within chans
    g, gf = interpolate_in_time(result.gain_times, result.gains, result.gain_flags, np.asarray(times_s, float))
    g = g.astype(np.complex64)
    B = result.bandpass.astype(np.complex64)
    Bf = result.bandpass_flags | (B == 0)
    # the robust rms of a few million samples is as good as of all of them (MAD error ~ 1/sqrt(n))
    keep = max(1, int(math.ceil(T * cross.size * chans.size * P / max_stat_samples)))
    ratios = np.full(T, np.nan)
    step = max(1, int(2 ** 21 // max(1, C * P)))          # baselines per chunk: temporaries of ~16 MB each
    lazy = hasattr(model, "block")
    point = isinstance(model, PointSourceModel)           # |M|^2 = S(t, nu)^2 on every baseline
    # 1 / (B_p B_q*) per baseline, 0 where either bandpass is flagged and on autocorrelations:
    # the corrected data are V * inv_bb * inv_gg (multiplies, no complex division), and the
    # chunks below are plain slices of baselines (no gathers of the data cube)
    inv_bb = np.zeros((Nb, C, P), np.complex64)
    is_cross = a1 != a2
    for k0 in range(0, Nb, step):
        ks = slice(k0, min(Nb, k0 + step))
        p_, q_ = a1[ks], a2[ks]
        den = B[p_] * np.conj(B[q_])
        np.divide(1, den, out=inv_bb[ks], where=~(Bf[p_] | Bf[q_]) & (den != 0) & is_cross[ks, None, None])
    bb_ok = inv_bb != 0
    del den
    s2_all = (model._flux32.astype(np.float32) ** 2) if point else None
    rho_all = np.zeros((T, Nb), np.complex128)
    w_all = np.zeros((T, Nb))

    def one_time(t: int, resid: list, diffs: list) -> None:
        gg = g[t][a1] * np.conj(g[t][a2])                                  # (Nb, P)
        inv_gg = np.zeros_like(gg)
        np.divide(1, gg, out=inv_gg, where=~(gf[t][a1] | gf[t][a2]) & (gg != 0))
        gg_ok = inv_gg != 0
        m_t = None if lazy else np.asarray(model[t])
        X = np.empty((min(step, Nb), C, P), np.complex64)
        for k0 in range(0, Nb, step):
            ks = slice(k0, min(Nb, k0 + step))
            n = ks.stop - k0
            y = X[:n]
            np.multiply(vis[t, ks], inv_bb[ks], out=y)                    # V / (B_p B_q*), 0 if unusable
            fl = flags[t, ks]
            np.copyto(y, 0, where=fl)
            ok = ~fl
            ok &= bb_ok[ks]
            m = model.block(t, k0, ks.stop) if lazy else np.asarray(m_t[ks], dtype=np.complex64)   # (n, C[, P])
            mc = np.conj(m)
            w2 = s2_all[t][None, None, :] if point else (m.real ** 2 + m.imag ** 2)
            if m.ndim == 2:   # one model for both polarisations: batched (1, C) x (C, P) products
                num_p = np.matmul(mc[:, None, :], y)[:, 0, :]
                w_p = np.matmul(w2 if point else w2[:, None, :], ok.view(np.uint8))[:, 0, :]
            else:
                num_p = (y * mc).sum(axis=1, dtype=np.complex128)
                w_p = (w2 * ok).sum(axis=1, dtype=np.float64)
            num = (num_p * inv_gg[ks]).sum(axis=1, dtype=np.complex128)  # the gains are flat in frequency
            wsum = (w_p * gg_ok[ks]).sum(axis=1, dtype=np.float64)
            rho_all[t, ks] = np.where(wsum > 0, num / np.maximum(wsum, 1e-30), 0)
            w_all[t, ks] = wsum
            # residual statistics on the channel pairs only
            mP = m[:, chans, None] if m.ndim == 2 else m[:, chans]
            r = y[:, chans] * inv_gg[ks, None, :] - mP
            okc = ok[:, chans] & gg_ok[ks, None, :]
            r[~okc] = 0
            resid.append(r[okc][::keep].copy())       # a copy: a view would keep all of r[okc] alive
            both = okc[:, pair] & okc[:, pair + 1]
            diffs.append((r[:, pair + 1] - r[:, pair])[both][::keep].copy())
        num_t, w_t = (rho_all[t] * w_all[t]).sum(), w_all[t].sum()
        if w_t > 0:
            ratios[t] = float(num_t.real / w_t)

    # integrations on two threads (numpy releases the GIL); each thread keeps its own lists,
    # joined in time order so the subsampled statistics do not depend on the scheduling
    shares = [list(range(T))[i::threads] for i in range(max(1, min(threads, T)))]
    parts: list[tuple[dict, dict]] = [({}, {}) for _ in shares]

    def run(i: int) -> None:
        for t in shares[i]:
            parts[i][0][t], parts[i][1][t] = [], []
            one_time(t, parts[i][0][t], parts[i][1][t])

    if len(shares) > 1:
        with ThreadPoolExecutor(max_workers=len(shares)) as ex:
            list(ex.map(run, range(len(shares))))
    else:
        run(0)
    by_t_r = {t: v for part in parts for t, v in part[0].items()}
    by_t_d = {t: v for part in parts for t, v in part[1].items()}
    resid = [x for t in range(T) for x in by_t_r[t]]
    diffs = [x for t in range(T) for x in by_t_d[t]]
    rho, rho_w = rho_all[:, cross], w_all[:, cross]
    r_all = np.concatenate(resid) if resid else np.zeros(0, np.complex64)
    d_all = np.concatenate(diffs) if diffs else np.zeros(0, np.complex64)
    rr = robust_complex_rms(r_all)
    thermal = robust_complex_rms(d_all) / math.sqrt(2.0)
    out["residual_rms_jy"] = rr
    out["thermal_rms_jy"] = thermal
    out["residual_ratio"] = rr / thermal if thermal > 0 else float("nan")
    fin = ratios[np.isfinite(ratios)]
    if fin.size:
        out["model_amp_ratio_median"] = float(np.median(fin))
        out["model_amp_ratio_min"] = float(fin.min())
        out["model_amp_ratio_max"] = float(fin.max())
        out["model_amp_deviation_max"] = float(np.max(np.abs(fin - 1.0)))
    # closure phases on triangles of antennas present in the data
    present = np.unique(np.concatenate([a1[cross], a2[cross]]))
    tri = _triangles(present, np.random.default_rng(seed))
    if tri.size:
        nant = int(max(a1.max(), a2.max())) + 1
        index = np.full((nant, nant), -1, np.int64)                      # (p, q) -> cross-baseline position
        index[a1[cross], a2[cross]] = np.arange(cross.size)
        ij, jk, ik = index[tri[:, 0], tri[:, 1]], index[tri[:, 1], tri[:, 2]], index[tri[:, 0], tri[:, 2]]
        have = (ij >= 0) & (jk >= 0) & (ik >= 0)
        ij, jk, ik = ij[have], jk[have], ik[have]
        if ij.size:
            cl = rho[:, ij] * rho[:, jk] * np.conj(rho[:, ik])
            valid = (rho_w[:, ij] > 0) & (rho_w[:, jk] > 0) & (rho_w[:, ik] > 0)
            ph = np.degrees(np.angle(cl[valid]))
            if ph.size:
                out["closure_phase_rms_deg"] = float(1.4826 * np.median(np.abs(ph)))
                # noise of one channel-averaged baseline phase: sigma / (|M| sqrt(n)) = sigma / sqrt(sum |M|^2)
                # (n samples of the per-sample thermal noise); a closure phase sums three
                with np.errstate(divide="ignore"):
                    sig_bl = np.where(rho_w > 0, thermal / np.sqrt(rho_w), np.nan)
                s3 = np.sqrt(sig_bl[:, ij] ** 2 + sig_bl[:, jk] ** 2 + sig_bl[:, ik] ** 2)[valid]
                out["closure_phase_expected_deg"] = float(np.degrees(np.nanmedian(s3)))
    return out
