"""Synthetic DSA-110-like measurement sets of point sources (tests, benchmarks).

The visibilities follow the MS/CASA/WSClean convention used throughout
``engine.imaging``::

    V(u, v, w) = sum_k S_k exp(+2 pi i (u l_k + v m_k + w (n_k - 1)) / lambda)

with UVW (metres) = UVW(ANTENNA2) - UVW(ANTENNA1) relative to the FIELD
PHASE_DIR, ``l = cos(dec) sin(ra - ra0)`` (positive towards east / increasing
RA) and ``m = sin(dec) cos(dec0) - cos(dec) sin(dec0) cos(ra - ra0)``.
The array is a T (an east-west arm and a north-south arm) at the OVRO
latitude; it is *like* DSA-110 (4.65 m dishes, 2.6 km max baseline), not its
real layout.  Drift scan: the phase centre transits at the middle time.
"""

from __future__ import annotations

import math
import os

import numpy as np

C = 299792458.0
OVRO_LAT_DEG = 37.2339
OVRO_LON_DEG = -118.2825
OVRO_HEIGHT_M = 1222.0
SIDEREAL_RATE = 2 * math.pi / 86164.0905  # rad / s


def dsa_like_layout(nant: int, seed: int = 0, ew_len: float = 2500.0, ns_len: float = 1500.0) -> np.ndarray:
    """ENU positions (nant, 3) of a T-shaped array, metres."""
    rng = np.random.default_rng(seed)
    n_ew = int(round(nant * 0.6))
    n_ns = nant - n_ew
    ew = np.sort(rng.uniform(-ew_len / 2, ew_len / 2, n_ew))
    ns = np.sort(rng.uniform(40.0, ns_len, n_ns))
    enu = np.zeros((nant, 3))
    enu[:n_ew, 0] = ew
    enu[:n_ew, 1] = rng.normal(0, 3, n_ew)
    enu[n_ew:, 0] = rng.normal(0, 3, n_ns)
    enu[n_ew:, 1] = ns
    return enu


def dsa110_like_layout(nant: int, seed: int = 0) -> np.ndarray:
    """ENU positions of a DSA-110-like array: half the antennas on a 0.9 km
    east-west arm, 46% on a 0.6 km north-south arm, the rest (~4%) as
    outriggers 0.3-1 km from the centre.  Tuned so that 96 antennas, 24 x
    12.88 s at dec +37 give a Briggs-0 beam of ~52" x 36" (DSA-110: ~50" x
    34"); approximate, for benchmarks; not the surveyed layout."""
    rng = np.random.default_rng(seed)
    n_ew = nant // 2
    n_ns = int(round(0.46 * nant))
    n_out = nant - n_ew - n_ns
    enu = np.zeros((nant, 3))
    enu[:n_ew, 0] = np.linspace(-450.0, 450.0, n_ew) + rng.normal(0, 2, n_ew)
    enu[:n_ew, 1] = rng.normal(0, 2, n_ew)
    enu[n_ew:n_ew + n_ns, 1] = np.sort(rng.uniform(-600.0, -20.0, n_ns))
    enu[n_ew:n_ew + n_ns, 0] = rng.normal(0, 2, n_ns)
    r = rng.uniform(300.0, 1000.0, n_out)
    th = rng.uniform(0, 2 * np.pi, n_out)
    enu[n_ew + n_ns:, 0] = r * np.sin(th)
    enu[n_ew + n_ns:, 1] = r * np.cos(th)
    return enu


def enu_to_ecef(enu: np.ndarray, lat_deg=OVRO_LAT_DEG, lon_deg=OVRO_LON_DEG, h=OVRO_HEIGHT_M) -> np.ndarray:
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    nrad = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    x0 = (nrad + h) * math.cos(lat) * math.cos(lon)
    y0 = (nrad + h) * math.cos(lat) * math.sin(lon)
    z0 = (nrad * (1 - e2) + h) * math.sin(lat)
    e, n, u = enu[:, 0], enu[:, 1], enu[:, 2]
    sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
    dx = -so * e - sl * co * n + cl * co * u
    dy = co * e - sl * so * n + cl * so * u
    dz = cl * n + sl * u
    return np.stack([x0 + dx, y0 + dy, z0 + dz], axis=1)


def antenna_uvw(enu: np.ndarray, hour_angle: float, dec0: float, lat_deg=OVRO_LAT_DEG) -> np.ndarray:
    """Per-antenna (u, v, w) in metres for hour angle H and declination dec0."""
    lat = math.radians(lat_deg)
    e, n, up = enu[:, 0], enu[:, 1], enu[:, 2]
    X = -math.sin(lat) * n + math.cos(lat) * up
    Y = e
    Z = math.cos(lat) * n + math.sin(lat) * up
    sh, ch = math.sin(hour_angle), math.cos(hour_angle)
    sd, cd = math.sin(dec0), math.cos(dec0)
    u = sh * X + ch * Y
    v = -sd * ch * X + sd * sh * Y + cd * Z
    w = cd * ch * X - cd * sh * Y + sd * Z
    return np.stack([u, v, w], axis=1)


def radec_to_lmn(ra, dec, ra0, dec0):
    """Direction cosines (l, m, n) of (ra, dec) relative to (ra0, dec0), radians."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * math.cos(dec0) - np.cos(dec) * math.sin(dec0) * np.cos(dra)
    n = np.sqrt(1.0 - l * l - m * m)
    return l, m, n


def make_synthetic_ms(
    path: str,
    sources=(),
    *,
    ra0_deg: float = 180.0,
    dec0_deg: float = 37.0,
    nant: int = 24,
    nchan: int = 16,
    ntime: int = 6,
    fmin: float = 1.311e9,
    fmax: float = 1.499e9,
    int_time: float = 12.88,
    noise_jy: float = 0.0,
    seed: int = 0,
    columns=("DATA", "MODEL_DATA", "CORRECTED_DATA"),
    signal_columns=("DATA", "CORRECTED_DATA"),
    flag_fraction: float = 0.0,
    telescope: str = "DSA-110",
    observer: str = "synthetic",
    mjd_start: float = 61041.5,
    layout_seed: int = 0,
    layout: str = "T",
) -> str:
    """Write a small MS v2 with point sources ``[(ra_deg, dec_deg, flux_jy), ...]``.

    ``noise_jy`` is the rms of the real and of the imaginary part of each
    polarisation's visibility (WEIGHT = 1/noise^2).  Both XX and YY carry
    S (unpolarised source, I = (XX+YY)/2 = S).  Autocorrelation rows are
    included (value sum S, no noise) as in real data.  Columns listed in
    ``columns`` but not in ``signal_columns`` are written as zeros.
    ``layout`` "T" (``dsa_like_layout``, default for tests) or "dsa"
    (``dsa110_like_layout``, dense core: beam closer to DSA-110's).
    """
    from casacore import tables as pt

    rng = np.random.default_rng(seed)
    freqs = np.linspace(fmin, fmax, nchan) if nchan > 1 else np.array([0.5 * (fmin + fmax)])
    chan_width = (fmax - fmin) / max(nchan - 1, 1)
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    if layout == "dsa":
        enu = dsa110_like_layout(nant, seed=layout_seed)
    elif layout == "T":
        enu = dsa_like_layout(nant, seed=layout_seed)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    linear = nchan > 1 and np.allclose(np.diff(freqs), freqs[1] - freqs[0])
    a1, a2 = np.triu_indices(nant)  # includes autos
    nbl = a1.size
    nrow = nbl * ntime
    tmid = mjd_start * 86400.0
    times = tmid + (np.arange(ntime) - (ntime - 1) / 2) * int_time
    src = np.array(list(sources), dtype=float).reshape(-1, 3)
    l, m, n = radec_to_lmn(np.radians(src[:, 0]), np.radians(src[:, 1]), ra0, dec0)

    coldescs = [pt.makearrcoldesc(c, 0j, shape=[nchan, 2], valuetype="complex") for c in columns]
    coldescs.append(pt.makearrcoldesc("FLAG", False, shape=[nchan, 2], valuetype="boolean"))
    desc = pt.maketabdesc(coldescs)
    if os.path.exists(path):
        raise FileExistsError(path)
    t = pt.default_ms(path, desc)
    t.addrows(nrow)
    w_val = 1.0 / noise_jy**2 if noise_jy > 0 else 1.0
    for it, tt in enumerate(times):
        ha = (tt - tmid) * SIDEREAL_RATE
        auvw = antenna_uvw(enu, ha, dec0)
        uvw = auvw[a2] - auvw[a1]
        vis = np.zeros((nbl, nchan), dtype=np.complex128)
        for k in range(src.shape[0]):
            phase = uvw[:, 0] * l[k] + uvw[:, 1] * m[k] + uvw[:, 2] * (n[k] - 1.0)
            if linear:  # exp(2 pi i phase f / c) by recurrence over equally spaced channels
                term = np.empty((nbl, nchan), dtype=np.complex128)
                term[:, 0] = src[k, 2] * np.exp(2j * np.pi * phase * freqs[0] / C)
                term[:, 1:] = np.exp(2j * np.pi * phase * (freqs[1] - freqs[0]) / C)[:, None]
                vis += np.cumprod(term, axis=1)
            else:
                vis += src[k, 2] * np.exp(2j * np.pi * phase[:, None] * (freqs / C)[None, :])
        data = np.repeat(vis.astype(np.complex64)[:, :, None], 2, axis=2)
        if noise_jy > 0:
            cross = (a1 != a2)[:, None, None]
            noise = np.empty(data.shape, dtype=np.complex64)
            noise.real = rng.standard_normal(data.shape, dtype=np.float32)
            noise.imag = rng.standard_normal(data.shape, dtype=np.float32)
            data += (noise_jy * noise) * cross
        flags = np.zeros(data.shape, dtype=bool)
        if flag_fraction > 0:
            flags = np.repeat((rng.random((nbl, nchan)) < flag_fraction)[:, :, None], 2, axis=2)
        s = it * nbl
        t.putcol("TIME", np.full(nbl, tt), startrow=s, nrow=nbl)
        t.putcol("TIME_CENTROID", np.full(nbl, tt), startrow=s, nrow=nbl)
        t.putcol("ANTENNA1", a1.astype(np.int32), startrow=s, nrow=nbl)
        t.putcol("ANTENNA2", a2.astype(np.int32), startrow=s, nrow=nbl)
        t.putcol("UVW", uvw, startrow=s, nrow=nbl)
        t.putcol("FLAG", flags, startrow=s, nrow=nbl)
        for c in columns:
            val = data if c in signal_columns else np.zeros_like(data)
            t.putcol(c, val, startrow=s, nrow=nbl)
    t.putcol("INTERVAL", np.full(nrow, int_time))
    t.putcol("EXPOSURE", np.full(nrow, int_time))
    t.putcol("WEIGHT", np.full((nrow, 2), w_val, dtype=np.float32))
    t.putcol("SIGMA", np.full((nrow, 2), 1 / math.sqrt(w_val), dtype=np.float32))
    t.putcol("SCAN_NUMBER", np.ones(nrow, dtype=np.int32))
    t.putcol("FLAG_ROW", np.zeros(nrow, dtype=bool))
    t.close()

    def sub(name, n_rows):
        st = pt.table(os.path.join(path, name), readonly=False, ack=False)
        st.addrows(n_rows)
        return st

    st = sub("SPECTRAL_WINDOW", 1)
    st.putcell("CHAN_FREQ", 0, freqs)
    st.putcell("CHAN_WIDTH", 0, np.full(nchan, chan_width))
    st.putcell("EFFECTIVE_BW", 0, np.full(nchan, chan_width))
    st.putcell("RESOLUTION", 0, np.full(nchan, chan_width))
    st.putcell("NUM_CHAN", 0, nchan)
    st.putcell("REF_FREQUENCY", 0, float(freqs[0]))
    st.putcell("TOTAL_BANDWIDTH", 0, chan_width * nchan)
    st.putcell("MEAS_FREQ_REF", 0, 5)  # TOPO
    st.putcell("NAME", 0, "SPW0")
    st.close()
    st = sub("POLARIZATION", 1)
    st.putcell("CORR_TYPE", 0, np.array([9, 12], dtype=np.int32))
    st.putcell("CORR_PRODUCT", 0, np.array([[0, 1], [0, 1]], dtype=np.int32))
    st.putcell("NUM_CORR", 0, 2)
    st.close()
    st = sub("DATA_DESCRIPTION", 1)
    st.putcell("SPECTRAL_WINDOW_ID", 0, 0)
    st.putcell("POLARIZATION_ID", 0, 0)
    st.close()
    st = sub("FIELD", 1)
    d = np.array([[ra0, dec0]])
    for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
        st.putcell(col, 0, d)
    st.putcell("NAME", 0, "drift")
    st.putcell("TIME", 0, tmid)
    st.close()
    st = sub("ANTENNA", nant)
    st.putcol("POSITION", enu_to_ecef(enu))
    st.putcol("NAME", [f"pad{i + 1}" for i in range(nant)])
    st.putcol("STATION", ["DSA"] * nant)
    st.putcol("DISH_DIAMETER", np.full(nant, 4.65))
    st.putcol("MOUNT", ["alt-az"] * nant)
    st.putcol("TYPE", ["GROUND-BASED"] * nant)
    st.close()
    st = sub("OBSERVATION", 1)
    st.putcell("TELESCOPE_NAME", 0, telescope)
    st.putcell("OBSERVER", 0, observer)
    st.putcell("PROJECT", 0, "synthetic")
    st.putcell("TIME_RANGE", 0, np.array([times[0] - int_time / 2, times[-1] + int_time / 2]))
    st.close()
    st = sub("FEED", nant)
    st.putcol("ANTENNA_ID", np.arange(nant, dtype=np.int32))
    st.putcol("NUM_RECEPTORS", np.full(nant, 2, dtype=np.int32))
    st.putcol("POLARIZATION_TYPE", np.array([["X", "Y"]] * nant))
    st.putcol("SPECTRAL_WINDOW_ID", np.full(nant, -1, dtype=np.int32))
    st.putcol("BEAM_OFFSET", np.zeros((nant, 2, 2)))
    st.putcol("RECEPTOR_ANGLE", np.zeros((nant, 2)))
    st.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (nant, 1, 1)))
    st.putcol("POSITION", np.zeros((nant, 3)))
    st.putcol("TIME", np.full(nant, tmid))
    st.putcol("INTERVAL", np.full(nant, 1e9))
    st.close()
    return path
