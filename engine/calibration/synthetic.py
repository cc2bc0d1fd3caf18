"""Synthetic DSA-110-like calibrator observations with known truth, for tests
and benchmarks (no I/O; everything vectorised).

Visibilities follow the package convention
``V_pq = G_p B_p S exp(+2 pi i (u l + v m + w (n-1)) nu/c) B_q^* G_q^* + noise``
with ``uvw_pq = uvw_p - uvw_q`` and complex Gaussian noise of standard
deviation ``sigma`` per real and per imaginary component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .catalogue import Calibrator
from .solver import SIDEREAL_RATE_RAD_S, calibrator_model

OVRO_LAT_RAD = math.radians(37.2334)
CHAN_WIDTH_HZ = 244_140.625
INTEGRATION_S = 12.884902


def dsa110_like_layout(nant: int, rng: np.random.Generator) -> np.ndarray:
    """ENU positions (m) on a T: ~2/3 along a 1.2 km E-W arm, the rest on a 1.6 km N-S arm."""
    n_ew = int(round(nant * 2 / 3))
    ew = np.sort(rng.uniform(-600, 600, n_ew))
    ns = np.sort(rng.uniform(-1600, -20, nant - n_ew))
    e = np.concatenate([ew, rng.normal(0, 2, nant - n_ew)])
    n = np.concatenate([rng.normal(0, 2, n_ew), ns])
    u = rng.normal(0, 0.5, nant)
    return np.stack([e, n, u], axis=1)


def baseline_list(nant: int, autos: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ant1 <= ant2 pairs in MS order (autos included if asked)."""
    i, j = np.triu_indices(nant, k=0 if autos else 1)
    return i.astype(np.int32), j.astype(np.int32)


def drift_uvw(enu: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, times_s: np.ndarray,
              dec0: float, lat: float = OVRO_LAT_RAD, t_mid: float | None = None) -> np.ndarray:
    """(ntime, nbl, 3) uvw in metres towards a phase centre on the meridian at t_mid."""
    times = np.asarray(times_s, dtype=np.float64)
    tm = 0.5 * (times.min() + times.max()) if t_mid is None else t_mid
    H = SIDEREAL_RATE_RAD_S * (times - tm)
    E, N, U = enu[:, 0], enu[:, 1], enu[:, 2]
    X = -math.sin(lat) * N + math.cos(lat) * U
    Y = E
    Z = math.cos(lat) * N + math.sin(lat) * U
    sH, cH = np.sin(H)[:, None], np.cos(H)[:, None]
    sd, cd = math.sin(dec0), math.cos(dec0)
    u = sH * X + cH * Y
    v = -sd * cH * X + sd * sH * Y + cd * Z
    w = cd * cH * X - cd * sH * Y + sd * Z
    ant_uvw = np.stack([u, v, w], axis=-1)           # (T, nant, 3)
    return ant_uvw[:, ant1] - ant_uvw[:, ant2]


def random_bandpass(nant: int, freqs: np.ndarray, npol: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth ripples, a delay and a subband-edge roll-off; (nant, nchan, npol)."""
    f = (freqs - freqs.mean()) / (freqs.max() - freqs.min() + 1e-9)
    amp = 1.0 + 0.15 * np.sin(2 * np.pi * (rng.uniform(1, 4, (nant, 1, npol)) * f[None, :, None]
                                            + rng.uniform(0, 2 * np.pi, (nant, 1, npol))))
    amp = amp * (1.0 - 0.1 * f[None, :, None] ** 2)
    delay = rng.uniform(-5e-9, 5e-9, (nant, 1, npol))
    phase = 2 * np.pi * delay * (freqs - freqs[0])[None, :, None] + rng.uniform(-np.pi, np.pi, (nant, 1, npol)) \
        + 0.2 * np.sin(2 * np.pi * 3 * f)[None, :, None]
    return amp * np.exp(1j * phase)


def random_gains(ntime: int, nant: int, npol: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitude ~ 1 +- 10 % with slow drifts, random phases with a drift of up to 20 deg; (ntime, nant, npol)."""
    x = np.linspace(-0.5, 0.5, ntime)[:, None, None]
    amp = rng.uniform(0.85, 1.15, (1, nant, npol)) * (1 + rng.normal(0, 0.02, (1, nant, npol)) * x)
    ph = rng.uniform(-np.pi, np.pi, (1, nant, npol)) + np.radians(rng.uniform(-20, 20, (1, nant, npol))) * x
    return amp * np.exp(1j * ph)


@dataclass
class SyntheticObs:
    vis: np.ndarray          # (T, Nb, C, P) complex64, corrupted + noise
    model: np.ndarray        # (T, Nb, C) complex64, true sky model (what the solver is given)
    ant1: np.ndarray
    ant2: np.ndarray
    uvw: np.ndarray          # (T, Nb, 3)
    times: np.ndarray        # (T,) MJD seconds
    freqs: np.ndarray        # (C,)
    bandpass: np.ndarray     # (nant, C, P) truth
    gains: np.ndarray        # (T, nant, P) truth
    phase_centre: tuple[float, float]
    calibrator: Calibrator
    sigma: float             # per real/imag component
    enu: np.ndarray


def synthesize(nant: int = 16, nchan: int = 64, ntime: int = 24, npol: int = 2, *, sigma: float = 2.3,
               flux_jy: float = 5.0, dec_deg: float = 55.5725, source_offset_deg: tuple[float, float] = (0.0, 0.0),
               f0_hz: float = 1.311e9, chan_width_hz: float | None = None, seed: int = 1,
               t0_mjd_s: float = 61000.5 * 86400.0, autos: bool = True, primary_beam: bool = True,
               corrupt: bool = True) -> SyntheticObs:
    """A drift-scan group with a point calibrator near the phase centre.

    source_offset_deg = (dRA*cos(dec), dDec) of the source from the phase centre.
    chan_width_hz defaults to spanning 1.311-1.499 GHz with ``nchan`` channels.
    """
    rng = np.random.default_rng(seed)
    cw = (1.499e9 - 1.311e9) / nchan if chan_width_hz is None else chan_width_hz
    freqs = f0_hz + cw * np.arange(nchan)
    times = t0_mjd_s + INTEGRATION_S * np.arange(ntime)
    dec0 = math.radians(dec_deg)
    ra0 = math.radians(128.7)
    cal = Calibrator("SYNTH", math.degrees(ra0) + source_offset_deg[0] / math.cos(dec0),
                     dec_deg + source_offset_deg[1], flux_jy, 1.4, -0.7)
    enu = dsa110_like_layout(nant, rng)
    ant1, ant2 = baseline_list(nant, autos)
    uvw = drift_uvw(enu, ant1, ant2, times, dec0)
    model = calibrator_model(cal, uvw, times, freqs, (ra0, dec0), primary_beam=primary_beam)
    if corrupt:
        B = random_bandpass(nant, freqs, npol, rng)
        G = random_gains(ntime, nant, npol, rng)
    else:
        B = np.ones((nant, nchan, npol), complex)
        G = np.ones((ntime, nant, npol), complex)
    vis = np.empty((ntime, ant1.size, nchan, npol), dtype=np.complex64)
    for t in range(ntime):
        j = B * G[t][:, None, :]
        vis[t] = model[t][..., None] * (j[ant1] * np.conj(j[ant2]))
        noise = rng.standard_normal((ant1.size, nchan, npol, 2), dtype=np.float32) * np.float32(sigma)
        vis[t].real += noise[..., 0]
        vis[t].imag += noise[..., 1]
    return SyntheticObs(vis, model, ant1, ant2, uvw, times, freqs, B, G, (ra0, dec0), cal, sigma, enu)


def inject_rfi(vis: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, rng: np.random.Generator, sigma: float, *,
               n_channels: int = 4, n_bursts: int = 2, amp_range_sigma: tuple[float, float] = (3.0, 300.0),
               bl_length: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Add narrow-band persistent RFI (single channels, every time) and broadband
    bursts (single integrations, every channel) in place.

    The RFI amplitude per event is drawn log-uniformly in amp_range_sigma x sigma,
    scaled per baseline (weaker on long baselines when bl_length is given:
    decorrelation factor 1/(1 + L/500 m)), with random phase per sample.
    Returns (mask of RFI samples on cross-correlations (T, Nb, C, P) bool,
    amplitude in units of sigma per RFI sample (same shape, 0 elsewhere)).
    """
    T, Nb, C, P = vis.shape
    mask = np.zeros(vis.shape, dtype=bool)
    ampl = np.zeros(vis.shape, dtype=np.float32)
    cross = ant1 != ant2
    scale = np.ones(Nb) if bl_length is None else 1.0 / (1.0 + bl_length / 500.0)
    lo, hi = np.log(amp_range_sigma[0]), np.log(amp_range_sigma[1])
    chans = rng.choice(np.arange(2, C - 2), size=n_channels, replace=False)
    for c in chans:
        a = math.exp(rng.uniform(lo, hi)) * sigma
        amp = (a * scale)[None, :, None] * np.ones((T, 1, P))
        ph = rng.uniform(0, 2 * np.pi, (T, Nb, P))
        vis[:, :, c, :] += (amp * np.exp(1j * ph)).astype(np.complex64) * cross[None, :, None]
        mask[:, cross, c, :] = True
        ampl[:, :, c, :] = np.maximum(ampl[:, :, c, :], amp / sigma * cross[None, :, None])
    times = rng.choice(np.arange(1, T - 1), size=n_bursts, replace=False)
    for t in times:
        a = math.exp(rng.uniform(lo, hi)) * sigma
        spec = 0.5 + rng.uniform(0, 1, C)          # broadband, not flat
        amp = (a * scale)[:, None, None] * spec[None, :, None] * np.ones((1, 1, P))
        ph = rng.uniform(0, 2 * np.pi, (Nb, C, P))
        vis[t] += (amp * np.exp(1j * ph)).astype(np.complex64) * cross[:, None, None]
        mask[t, cross] = True
        ampl[t] = np.maximum(ampl[t], amp / sigma * cross[:, None, None])
    return mask, ampl


def write_ms(path: str, obs: SyntheticObs, *, telescope: str = "DSA_110", add_model: bool = False,
             imaging_columns: bool = False) -> str:
    """Write ``obs`` as a small MS v2 (one SPW, XX/YY, DATA + FLAG tiled;
    rows time-major, baselines ant1 <= ant2 with autos) with python-casacore.
    ``imaging_columns``: also MODEL_DATA (zeros) and CORRECTED_DATA (= DATA), tiled
    like DATA, as the converter writes them."""
    import shutil

    from casacore import tables

    T, Nb, C, P = obs.vis.shape
    nant = obs.enu.shape[0]
    shutil.rmtree(path, ignore_errors=True)
    cols = [tables.makearrcoldesc("DATA", 0j, shape=[C, P], valuetype="complex"),
            tables.makearrcoldesc("FLAG", False, shape=[C, P])]
    dm = {"*1": {"TYPE": "TiledColumnStMan", "NAME": "TiledData",
                 "SPEC": {"DEFAULTTILESHAPE": [P, C, max(1, 65536 // (C * P))]}, "COLUMNS": ["DATA"]},
          "*2": {"TYPE": "TiledColumnStMan", "NAME": "TiledFlag",
                 "SPEC": {"DEFAULTTILESHAPE": [P, C, max(8, 262144 // (C * P))]}, "COLUMNS": ["FLAG"]}}
    if add_model and not imaging_columns:
        cols.append(tables.makearrcoldesc("MODEL_DATA", 0j, shape=[C, P], valuetype="complex"))
    if imaging_columns:
        for k, name in enumerate(("MODEL_DATA", "CORRECTED_DATA")):
            cols.append(tables.makearrcoldesc(name, 0j, shape=[C, P], valuetype="complex"))
            dm[f"*{k + 3}"] = {"TYPE": "TiledColumnStMan", "NAME": f"Tiled{name}",
                               "SPEC": {"DEFAULTTILESHAPE": [P, C, max(1, 65536 // (C * P))]}, "COLUMNS": [name]}
    ms = tables.default_ms(path, tables.maketabdesc(cols), dm)
    try:
        nrow = T * Nb
        ms.addrows(nrow)
        ms.putcol("TIME", np.repeat(obs.times, Nb))
        ms.putcol("TIME_CENTROID", np.repeat(obs.times, Nb))
        ms.putcol("INTERVAL", np.full(nrow, INTEGRATION_S))
        ms.putcol("EXPOSURE", np.full(nrow, INTEGRATION_S))
        ms.putcol("ANTENNA1", np.tile(obs.ant1, T).astype(np.int32))
        ms.putcol("ANTENNA2", np.tile(obs.ant2, T).astype(np.int32))
        ms.putcol("UVW", obs.uvw.reshape(nrow, 3))
        ms.putcol("SCAN_NUMBER", np.ones(nrow, np.int32))
        ms.putcol("WEIGHT", np.ones((nrow, P), np.float32))
        ms.putcol("SIGMA", np.ones((nrow, P), np.float32))
        step = max(1, 2_000_000 // (C * P))
        for r0 in range(0, nrow, step):
            r1 = min(nrow, r0 + step)
            ms.putcol("DATA", obs.vis.reshape(nrow, C, P)[r0:r1], startrow=r0, nrow=r1 - r0)
            if imaging_columns:
                ms.putcol("CORRECTED_DATA", obs.vis.reshape(nrow, C, P)[r0:r1], startrow=r0, nrow=r1 - r0)
                ms.putcol("MODEL_DATA", np.zeros((r1 - r0, C, P), np.complex64), startrow=r0, nrow=r1 - r0)
            ms.putcol("FLAG", np.zeros((r1 - r0, C, P), bool), startrow=r0, nrow=r1 - r0)
    finally:
        ms.close()
    lat, lon, h = math.radians(37.2334), math.radians(-118.2830), 1183.0
    a_wgs, f_wgs = 6378137.0, 1 / 298.257223563
    e2 = f_wgs * (2 - f_wgs)
    N = a_wgs / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    x0 = (N + h) * math.cos(lat) * math.cos(lon)
    y0 = (N + h) * math.cos(lat) * math.sin(lon)
    z0 = (N * (1 - e2) + h) * math.sin(lat)
    E, Nn, U = obs.enu[:, 0], obs.enu[:, 1], obs.enu[:, 2]
    dx = -math.sin(lon) * E - math.sin(lat) * math.cos(lon) * Nn + math.cos(lat) * math.cos(lon) * U
    dy = math.cos(lon) * E - math.sin(lat) * math.sin(lon) * Nn + math.cos(lat) * math.sin(lon) * U
    dz = math.cos(lat) * Nn + math.sin(lat) * U
    with tables.table(path + "/ANTENNA", readonly=False, ack=False) as t:
        t.addrows(nant)
        t.putcol("NAME", [f"DSA-{i + 1:03d}" for i in range(nant)])
        t.putcol("STATION", [f"DSA-{i + 1:03d}" for i in range(nant)])
        t.putcol("TYPE", ["GROUND-BASED"] * nant)
        t.putcol("MOUNT", ["ALT-AZ"] * nant)
        t.putcol("DISH_DIAMETER", np.full(nant, 4.65))
        t.putcol("POSITION", np.stack([x0 + dx, y0 + dy, z0 + dz], axis=1))
    cw = float(obs.freqs[1] - obs.freqs[0]) if C > 1 else CHAN_WIDTH_HZ
    with tables.table(path + "/SPECTRAL_WINDOW", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("CHAN_FREQ", 0, obs.freqs)
        t.putcell("CHAN_WIDTH", 0, np.full(C, cw))
        t.putcell("EFFECTIVE_BW", 0, np.full(C, cw))
        t.putcell("RESOLUTION", 0, np.full(C, cw))
        t.putcell("NUM_CHAN", 0, C)
        t.putcell("REF_FREQUENCY", 0, float(obs.freqs[0]))
        t.putcell("TOTAL_BANDWIDTH", 0, cw * C)
        t.putcell("MEAS_FREQ_REF", 0, 5)
        t.putcell("NAME", 0, "L-band")
    with tables.table(path + "/POLARIZATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("NUM_CORR", 0, P)
        t.putcell("CORR_TYPE", 0, np.array([9, 12][:P], np.int32))
        t.putcell("CORR_PRODUCT", 0, np.array([[0, 1][:P], [0, 1][:P]], np.int32))
    with tables.table(path + "/DATA_DESCRIPTION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("SPECTRAL_WINDOW_ID", 0, 0)
        t.putcell("POLARIZATION_ID", 0, 0)
    with tables.table(path + "/FIELD", readonly=False, ack=False) as t:
        t.addrows(1)
        d = np.array([[obs.phase_centre[0], obs.phase_centre[1]]])
        for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            t.putcell(col, 0, d)
        t.putcell("NAME", 0, "drift")
        t.putcell("TIME", 0, float(obs.times.mean()))
    with tables.table(path + "/OBSERVATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("TELESCOPE_NAME", 0, telescope)
        t.putcell("TIME_RANGE", 0, np.array([obs.times[0], obs.times[-1]]))
        t.putcell("OBSERVER", 0, "synthetic")
        t.putcell("PROJECT", 0, "contimg-tests")
    return path
