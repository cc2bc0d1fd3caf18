"""Simulator of DSA-110 subband files (UVH5) with a truth manifest.

``simulate(out_dir, groups=..., preset=...)`` writes, for each ~309 s
observation ("group"), 16 UVH5 files ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`` in the
format the DSA-110 correlator writes (pyuvdata's UVH5: ``Header`` and ``Data``
groups, drift-scan / unprojected data, ``phase_type = "drift"``) plus a JSON
truth manifest ``YYYY-MM-DDTHH:MM:SS_truth.json``.

Conventions (recorded in the manifest under ``"convention"``):

* ``uvw_array`` = ENU(ant2) - ENU(ant1) (metres), time independent, as
  pyuvdata stores unprojected data.
* Visibility model (``convention="unprojected_w0"``, the default)::

      V_12(t, f) = g_1 g_2^* * sum_s S_s(f) A_s(t, f) exp(+2 pi i b_12 . s_hat(t) f / c)

  with ``b_12 = X_2 - X_1`` the ECEF baseline and ``s_hat`` the apparent
  (topocentric) direction of the source: no delay tracking at all, which is
  what pyuvdata assumes for unprojected data (its ``phase()`` multiplies by
  ``exp(-2 pi i w_new f / c)`` with old w = 0).  ``convention="zenith"``
  instead writes data already phased to the local zenith
  (``exp(+2 pi i (b.s_hat - b.up) f / c)``), the other interpretation a real
  file may need; the converter has the matching option.
* Pointing declination: header ``extra_keywords/phase_center_dec`` in
  **radians** (as DSA-110 writes it); ``ha_phase_center`` = 0 (meridian).
* Frequencies: subbands in descending frequency (sb00 highest), channels in
  each file also descending (negative ``channel_width`` is *not* used: the
  width is written positive, the order is given by ``freq_array``).
* Stokes: sources are unpolarised, XX = YY = I (pyuvdata's pI = (XX+YY)/2).
* Primary beam: Airy power pattern of a 4.65 m dish pointed at
  (HA = 0, Dec = pointing); ``apparent_flux_jy`` in the manifest is the
  flux density times the beam averaged over the group's times and channels.
* Gains: ``g = amp (1 + amp_rate dt_h) exp(i (phase0 + phase_rate dt_h)) *
  B(f)`` with dt_h hours since the first group's start and
  ``B(f) = (1 + slope x + ripple sin(2 pi f / period + ripple_phase))
  exp(2 pi i delay_ns 1e-9 (f - 1.405 GHz))``, x = (f - 1.405 GHz) / 93.75 MHz.
  :func:`gain_model` rebuilds them from a manifest.
* Noise: Gaussian, sigma = SEFD / sqrt(2 dnu dt) per real/imaginary part on
  cross-correlations, SEFD / sqrt(dnu dt) on the (real) autocorrelations.
* RFI (``rfi=True``): persistent narrow-band channels (global ascending
  channel indices, all times and baselines) and broadband bursts (integration
  index, all channels of all cross baselines).  The manifest lists them; files
  carry no flags for them, as the correlator does not flag.
* Faults: ``missing_subband`` (file not written), ``truncated_file`` (file
  cut to 40% of its size), ``nans`` (NaN samples, unflagged, positions listed),
  ``timestamp_jitter`` (file-name timestamps of some subbands shifted by 1-3 s;
  the data time stamps are unchanged).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from engine import instrument as inst
from engine.subbands import subband_channel_width, subband_filename, subband_frequencies

def _calibrator() -> dict:
    """J0834+555 exactly as the calibrator catalogue has it (one source of truth for sky and model)."""
    from engine.calibration.catalogue import find_calibrator

    cal = find_calibrator("J0834+5534")
    return {"name": cal.name, "ra_deg": cal.ra_deg, "dec_deg": cal.dec_deg, "flux_jy": cal.flux_jy,
            "spectral_index": cal.spectral_index or 0.0}


CALIBRATOR = _calibrator()
REFERENCE_DATE = "2025-10-05"
REF_FREQ_HZ = 1.4e9
BAND_CENTRE_HZ = 1.405e9

PRESETS = {
    # n_ant, n_int, n_chan per subband, n field sources scale
    "tiny": {"n_ant": 10, "n_int": 8, "nchan": 48},
    "small": {"n_ant": 28, "n_int": 24, "nchan": 48},
    "full": {"n_ant": 96, "n_int": 24, "nchan": 48},
}
FAULTS = ("missing_subband", "truncated_file", "nans", "timestamp_jitter")
CONVENTIONS = ("unprojected_w0", "zenith")


@dataclass(frozen=True)
class Source:
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float            # at 1.4 GHz
    spectral_index: float = -0.7


@dataclass
class SimulatedGroup:
    """One simulated observation: its subband files, start time and manifest."""

    start: datetime
    files: list[Path]
    manifest: Path
    missing_subbands: list[int] = field(default_factory=list)

    @property
    def truth(self) -> dict:
        return json.loads(self.manifest.read_text())


# ---------------------------------------------------------------------------
def default_start(dec_deg: float = 54.57, date: str = REFERENCE_DATE,
                  n_int: int = inst.N_INTEGRATIONS) -> datetime:
    """Start (whole second, UTC, naive) of an observation centred on the
    calibrator's meridian transit on ``date``.  The transit does not depend on
    the pointing declination (drift scan on the meridian)."""
    from astropy.time import Time

    t0 = Time(f"{date}T00:00:00", scale="utc")
    ra = np.radians(CALIBRATOR["ra_deg"])
    # LST advances 1.0027379 times faster than UTC
    lst0 = inst.lst_rad(np.array([t0.jd]))[0]
    dt_days = np.mod(ra - lst0, 2 * np.pi) / (2 * np.pi) / 1.00273790935
    jd_transit = t0.jd + dt_days
    for _ in range(3):  # refine
        lst = inst.lst_rad(np.array([jd_transit]))[0]
        d = np.angle(np.exp(1j * (ra - lst)))
        jd_transit += d / (2 * np.pi) / 1.00273790935
    half = n_int * inst.INTEGRATION_TIME_S / 2
    start = Time(jd_transit, format="jd", scale="utc").to_datetime() - timedelta(seconds=half)
    return start.replace(microsecond=0)


def _jd(dt: datetime) -> float:
    from astropy.time import Time

    return Time(dt.replace(tzinfo=None), scale="utc").jd


def field_sources(dec_deg: float, ra_min_deg: float, ra_max_deg: float, seed: int,
                  density_per_deg2: float = 0.3) -> list[Source]:
    """Random field sources in a strip around the pointing declination."""
    rng = np.random.default_rng(seed + 99)
    half_width = 3.0
    cosd = max(np.cos(np.radians(dec_deg)), 0.05)
    ra_lo = ra_min_deg - half_width / cosd
    ra_hi = ra_max_deg + half_width / cosd
    area = (ra_hi - ra_lo) * cosd * 2 * half_width
    n = max(3, rng.poisson(density_per_deg2 * area))
    ra = rng.uniform(ra_lo, ra_hi, n) % 360.0
    dec = np.clip(dec_deg + rng.uniform(-half_width, half_width, n), -89.0, 89.0)
    # power-law fluxes 0.05 .. 1 Jy (the calibrator stays the brightest)
    flux = 0.05 * (1 - rng.uniform(0, 0.95, n)) ** (-1 / 1.0)
    flux = np.minimum(flux, 1.0)
    alpha = rng.normal(-0.7, 0.2, n)
    return [Source(f"SIM{k:03d}", float(ra[k]), float(dec[k]), float(flux[k]), float(alpha[k]))
            for k in range(n)]


# ---------------------------------------------------------------------------
def _make_gain_params(n_ant: int, seed: int, unit: bool) -> dict:
    rng = np.random.default_rng(seed + 7)
    shape = (n_ant, 2)
    if unit:
        z = np.zeros(shape)
        return {"amp": np.ones(shape), "amp_rate_per_h": z, "phase0": z, "phase_rate_per_h": z,
                "delay_ns": z, "slope": z, "ripple": z, "ripple_period_mhz": np.full(shape, 20.0),
                "ripple_phase": z}
    return {
        "amp": rng.uniform(0.8, 1.2, shape),
        "amp_rate_per_h": rng.normal(0, 0.02, shape),
        "phase0": rng.uniform(-np.pi, np.pi, shape),
        "phase_rate_per_h": rng.normal(0, 0.3, shape),
        "delay_ns": rng.normal(0, 2.0, shape),
        "slope": rng.normal(0, 0.05, shape),
        "ripple": rng.uniform(0, 0.05, shape),
        "ripple_period_mhz": rng.uniform(10, 40, shape),
        "ripple_phase": rng.uniform(0, 2 * np.pi, shape),
    }


def gain_model(params: dict, jd: np.ndarray, freqs_hz: np.ndarray, ref_jd: float) -> np.ndarray:
    """Complex gains, shape (Nant, Ntimes, Nfreqs, 2), from manifest parameters."""
    p = {k: np.asarray(v, dtype=float)[:, None, None, :] for k, v in params.items()}
    dt_h = ((np.asarray(jd, float) - ref_jd) * 24.0)[None, :, None, None]
    f = np.asarray(freqs_hz, float)[None, None, :, None]
    x = (f - BAND_CENTRE_HZ) / 93.75e6
    amp_t = p["amp"] * (1 + p["amp_rate_per_h"] * dt_h)
    ph_t = p["phase0"] + p["phase_rate_per_h"] * dt_h
    bp_amp = 1 + p["slope"] * x + p["ripple"] * np.sin(2 * np.pi * f / (p["ripple_period_mhz"] * 1e6)
                                                        + p["ripple_phase"])
    bp_ph = 2 * np.pi * p["delay_ns"] * 1e-9 * (f - BAND_CENTRE_HZ)
    return (amp_t * bp_amp) * np.exp(1j * (ph_t + bp_ph))


@dataclass
class _Array:
    layout: inst.AntennaLayout
    active: np.ndarray          # indices into layout
    ant1: np.ndarray            # indices into layout, per baseline
    ant2: np.ndarray
    a1_act: np.ndarray          # indices into active list
    a2_act: np.ndarray


def _baselines(layout: inst.AntennaLayout, active: np.ndarray) -> _Array:
    i, j = np.triu_indices(len(active))
    return _Array(layout, active, active[i], active[j], i, j)


def _sky_model_subband(arr: _Array, sources: Sequence[Source], s_hat: list[np.ndarray],
                       beam: list[np.ndarray], freqs: np.ndarray, ntimes: int) -> np.ndarray:
    """Sum of sources, (Ntimes*Nbls, Nf) complex64, time-major."""
    pos = arr.layout.positions_ecef_rel
    b = pos[arr.ant2] - pos[arr.ant1]                   # (Nbls, 3)
    out = np.zeros((ntimes * len(b), len(freqs)), np.complex64)
    for src, sh, bm in zip(sources, s_hat, beam):
        spec = src.flux_jy * (freqs / REF_FREQ_HZ) ** src.spectral_index       # (Nf,)
        weight = (bm * spec[None, :]).astype(np.float32)                         # (Nt, Nf)
        delay = (sh @ b.T).reshape(-1)                                            # (Nt*Nbls,)
        ph = inst.delay_phasor(delay, freqs).reshape(ntimes, len(b), len(freqs))
        ph *= weight[:, None, :]
        out += ph.reshape(out.shape)
    return out


def simulate(out_dir, *, groups: int = 1, preset: str = "small", dec_deg: float = 54.57,
             start: datetime | None = None, seed: int = 0, faults: Iterable[str] = (),
             rfi: bool = False, antenna_file=None, unit_gains: bool = False,
             noise: bool = True, sources: Sequence[Source] | None = None,
             n_ant: int | None = None, convention: str = "unprojected_w0",
             subbands: Sequence[int] | None = None,
             workers: int | None = None) -> list[SimulatedGroup]:
    """Write ``groups`` consecutive DSA-110 observations to ``out_dir``.

    ``preset``: ``tiny`` (10 antennas, 8 integrations), ``small`` (28
    antennas, 24 integrations) or ``full`` (96 antennas, 24 integrations);
    all have 16 subbands x 48 channels, XX and YY, autos included.
    ``sources``: replace the default sky (calibrator J0834+555 + random field
    sources) by this list.  ``unit_gains``/``noise`` switch off gains/noise.
    ``faults``: any of ``missing_subband``, ``truncated_file``, ``nans``,
    ``timestamp_jitter``.  ``subbands``: write only these subband indices.
    ``workers``: processes writing subbands in parallel (default: 2 for the
    ``full`` preset, else 1).  Output does not depend on it (one random
    stream per subband).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    faults = tuple(faults)
    bad = [f for f in faults if f not in FAULTS]
    if bad:
        raise ValueError(f"unknown fault(s) {bad}; choose from {FAULTS}")
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {CONVENTIONS}")
    cfg = dict(PRESETS[preset])
    if n_ant is not None:
        cfg["n_ant"] = int(n_ant)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    layout = inst.load_antenna_csv(antenna_file) if antenna_file else inst.default_layout()
    active = inst.choose_active(layout, cfg["n_ant"], seed)
    arr = _baselines(layout, active)
    n_int = cfg["n_int"]
    nchan = cfg["nchan"]
    dt_int = inst.INTEGRATION_TIME_S
    if start is None:
        start = default_start(dec_deg, n_int=n_int)
    start = start.replace(tzinfo=None, microsecond=0) if start.tzinfo is None else \
        start.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
    group_len = n_int * dt_int
    starts = [start + timedelta(seconds=round(k * group_len)) for k in range(groups)]
    ref_jd = _jd(starts[0])
    gparams = _make_gain_params(len(active), seed, unit_gains)
    dec_rad = np.radians(dec_deg)

    if sources is None:
        lst_first = np.degrees(inst.lst_rad(np.array([ref_jd]))[0])
        lst_last = lst_first + groups * group_len / 86400 * 360.98564736
        sky = [Source(**CALIBRATOR)] + field_sources(dec_deg, lst_first, lst_last, seed)
    else:
        sky = list(sources)

    sb_list = list(range(inst.N_SUBBANDS)) if subbands is None else sorted(set(subbands))
    sigma = inst.noise_sigma_jy(subband_channel_width(nchan), dt_int)
    results = []
    for g, gstart in enumerate(starts):
        jd_t = _jd(gstart) + (np.arange(n_int) + 0.5) * dt_int / 86400.0
        lst_t = inst.lst_rad(jd_t)
        point = inst.direction_ecef(lst_t, np.full(n_int, dec_rad), lst_t)         # (Nt,3)
        all_freqs = np.sort(np.concatenate([subband_frequencies(s, nchan) for s in range(16)]))
        # source geometry per time
        s_hats, beams_full, used, src_truth = [], [], [], []
        for src in sky:
            ara, adec = inst.apparent_radec(np.radians(src.ra_deg), np.radians(src.dec_deg), jd_t)
            sh = inst.direction_ecef(ara, adec, lst_t)
            theta = np.arccos(np.clip(np.sum(sh * point, axis=1), -1, 1))
            bm = inst.airy_power(theta[:, None], all_freqs[None, :])               # (Nt, 768)
            spec = src.flux_jy * (all_freqs / REF_FREQ_HZ) ** src.spectral_index
            app = float(np.mean(bm * spec[None, :]))
            src_truth.append({"name": src.name, "ra_deg": src.ra_deg, "dec_deg": src.dec_deg,
                              "flux_jy": src.flux_jy, "spectral_index": src.spectral_index,
                              "ref_freq_hz": REF_FREQ_HZ, "apparent_flux_jy": app,
                              "min_offset_deg": float(np.degrees(theta.min())),
                              "in_model": bool(bm.max() * spec.max() > 1e-3)})
            if src_truth[-1]["in_model"]:
                s_hats.append(sh)
                beams_full.append(bm)
                used.append(src)

        # faults for this group
        fault_info: dict = {}
        fault_rng = np.random.default_rng([seed, g, 17])
        skip_sb: set[int] = set()
        if "missing_subband" in faults:
            fault_info["missing_subband"] = 7
            skip_sb.add(7)
        if "truncated_file" in faults:
            fault_info["truncated_file"] = 3
        if "nans" in faults:
            fault_info["nans"] = {"subband": 11, "samples": []}
        jitter = {}
        if "timestamp_jitter" in faults:
            for s in sb_list:
                j = int(fault_rng.integers(0, 4)) if s % 3 == 1 else 0
                jitter[s] = j
            fault_info["timestamp_jitter_s"] = {str(k): v for k, v in jitter.items() if v}

        # RFI definition (global ascending channel index)
        rfi_info = None
        if rfi:
            r = np.random.default_rng([seed, g, 23])
            chans = sorted(int(c) for c in r.choice(16 * nchan, size=4, replace=False))
            bursts = sorted(int(t) for t in r.choice(n_int, size=max(1, n_int // 8), replace=False))
            rfi_info = {"narrowband_channels": chans, "narrowband_amp_jy": 200.0,
                        "burst_integrations": bursts, "burst_amp_jy": 50.0,
                        "burst_baselines": "all cross-correlations",
                        "channel_index": "global ascending channel index 0..767 "
                                         "(0 = lowest frequency); subband sb holds "
                                         "indices (15-sb)*48 .. (15-sb)*48+47",
                        "mask_shape": "(time, baseline, channel); narrowband: all times and "
                                      "cross baselines; bursts: all channels and cross baselines"}

        gains_all = gain_model(gparams, jd_t, all_freqs, ref_jd)   # (Nact, Nt, 768, 2)
        ctx = _SubbandJob(
            arr=arr, sources=used, s_hats=s_hats, beams=beams_full, all_freqs=all_freqs,
            gains=gains_all, n_int=n_int, nchan=nchan, noise=noise, sigma=sigma,
            convention=convention, rfi=rfi_info, fault_info=fault_info, jitter=jitter,
            gstart=gstart, out_dir=out_dir, jd_t=jd_t, lst_t=lst_t, dec_rad=dec_rad,
            seed=seed, group=g)
        todo = [sb for sb in sb_list if sb not in skip_sb]
        n_workers = _n_workers(workers, preset, len(todo))
        if n_workers > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            with cf.ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn")) as pool:
                outs = list(pool.map(_simulate_subband, [ctx] * len(todo), todo))
        else:
            outs = [_simulate_subband(ctx, sb) for sb in todo]
        files = []
        for path, nan_samples in outs:
            files.append(path)
            if nan_samples is not None:
                fault_info["nans"]["samples"] = nan_samples
                fault_info["nans"]["sample_index"] = "(blt row, channel in file order, pol)"

        manifest = out_dir / f"{gstart.strftime('%Y-%m-%dT%H:%M:%S')}_truth.json"
        truth = {
            "telescope": inst.TELESCOPE_NAME,
            "preset": preset,
            "seed": seed,
            "group_index": g,
            "start_utc": gstart.isoformat(),
            "time_jd": jd_t.tolist(),
            "reference_jd_for_gains": ref_jd,
            "pointing_dec_deg": dec_deg,
            "n_integrations": n_int,
            "integration_time_s": dt_int,
            "nchan_per_subband": nchan,
            "noise_sigma_jy": sigma if noise else 0.0,
            "antenna_file": str(antenna_file) if antenna_file else None,
            "active_antennas": [layout.names[i] for i in active],
            "active_antenna_numbers": [int(layout.numbers[i]) for i in active],
            "gains": {k: np.asarray(v).tolist() for k, v in gparams.items()},
            "gain_axes": "(active antenna, pol XX/YY); see engine.simulator.gain_model",
            "unit_gains": unit_gains,
            "sources": src_truth,
            "rfi": rfi_info,
            "faults": fault_info,
            "files": [p.name for p in files],
            "convention": {
                "name": convention,
                "uvw": "ENU(ant2) - ENU(ant1), metres, unprojected (phase_type drift)",
                "model": ("V = g1 g2* S A exp(+2 pi i b.s f/c), b = ECEF(ant2)-ECEF(ant1), "
                          "s = apparent topocentric direction (no delay tracking, w=0 reference)"
                          if convention == "unprojected_w0" else
                          "V = g1 g2* S A exp(+2 pi i (b.s - b.up) f/c) (phased to zenith)"),
                "phase_center_dec_unit": "rad",
                "freq_order": "descending within and across subbands (sb00 highest)",
                "stokes": "XX = YY = I",
            },
        }
        manifest.write_text(json.dumps(truth, indent=1))
        results.append(SimulatedGroup(gstart, files, manifest,
                                      sorted(set(sb_list) - {int(f.name[-7:-5]) for f in files})))
    return results


@dataclass
class _SubbandJob:
    """Everything one subband needs (picklable, sent to worker processes)."""

    arr: _Array
    sources: list
    s_hats: list
    beams: list
    all_freqs: np.ndarray
    gains: np.ndarray
    n_int: int
    nchan: int
    noise: bool
    sigma: float
    convention: str
    rfi: dict | None
    fault_info: dict
    jitter: dict
    gstart: datetime
    out_dir: Path
    jd_t: np.ndarray
    lst_t: np.ndarray
    dec_rad: float
    seed: int
    group: int


def _n_workers(workers: int | None, preset: str, n_sb: int) -> int:
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if preset == "full" else 1
    return max(1, min(int(workers), n_sb))


def _simulate_subband(job: _SubbandJob, sb: int):
    """Write one subband file; returns (path, NaN sample list or None)."""
    arr, nchan, n_int = job.arr, job.nchan, job.n_int
    nbls = len(arr.ant1)
    rng = np.random.default_rng([job.seed, job.group, sb])
    layout = arr.layout
    uvw_bl = layout.enu[arr.ant2] - layout.enu[arr.ant1]
    freqs = subband_frequencies(sb, nchan)                      # descending
    idx = np.searchsorted(job.all_freqs, freqs)
    vis = _sky_model_subband(arr, job.sources, job.s_hats, [b[:, idx] for b in job.beams], freqs, n_int)
    if job.convention == "zenith":
        wz = np.tile(uvw_bl[:, 2], n_int)
        vis *= inst.delay_phasor(-wz, freqs)
    vis = np.repeat(vis[:, :, None], 2, axis=2)                  # (Nblts, Nf, 2)
    gs = job.gains[:, :, idx, :].astype(np.complex64)            # (Nact, Nt, Nf, 2)
    t_idx = np.repeat(np.arange(n_int), nbls)
    a1 = np.tile(arr.a1_act, n_int)
    a2 = np.tile(arr.a2_act, n_int)
    vis *= gs[a1, t_idx]
    vis *= np.conj(gs[a2, t_idx])
    auto = a1 == a2
    if job.noise:
        vis.real[auto] += (inst.SEFD_JY * np.abs(gs[a1[auto], t_idx[auto]]) ** 2)
        nz = rng.standard_normal((vis.shape[0], nchan, 2, 2), dtype=np.float32)
        nz *= np.float32(job.sigma)
        vis.real += nz[..., 0]
        vis.imag += nz[..., 1]
        vis.imag[auto] = 0.0
        vis.real[auto] += nz[auto][..., 0] * np.float32(np.sqrt(2.0) - 1.0)
        del nz
    if job.rfi:
        lo = (15 - sb) * nchan
        cross = ~auto
        for c in job.rfi["narrowband_channels"]:
            if lo <= c < lo + nchan:
                col = nchan - 1 - (c - lo)                       # file order is descending
                ph = np.exp(1j * rng.uniform(0, 2 * np.pi, cross.sum())).astype(np.complex64)
                vis[cross, col, :] += (job.rfi["narrowband_amp_jy"] * ph)[:, None]
        for t in job.rfi["burst_integrations"]:
            rows = np.flatnonzero(cross & (t_idx == t))
            ph = np.exp(1j * rng.uniform(0, 2 * np.pi, (len(rows), nchan))).astype(np.complex64)
            vis[rows] += (job.rfi["burst_amp_jy"] * ph)[:, :, None]
    nan_samples = None
    if "nans" in job.fault_info and sb == job.fault_info["nans"]["subband"]:
        rows = rng.choice(vis.shape[0], size=5, replace=False)
        chans = rng.integers(0, nchan, 5)
        vis[rows, chans, 0] = np.nan
        nan_samples = [[int(r_), int(c_), 0] for r_, c_ in zip(rows, chans)]
    name_time = job.gstart + timedelta(seconds=job.jitter.get(sb, 0))
    path = Path(job.out_dir) / subband_filename(name_time, sb)
    _write_uvh5(path, vis=vis, jd_t=job.jd_t, lst_t=job.lst_t, arr=arr, uvw_bl=uvw_bl,
                freqs=freqs, chan_width=subband_channel_width(nchan), dec_rad=job.dec_rad,
                convention=job.convention, sb=sb)
    del vis
    if job.fault_info.get("truncated_file") == sb:
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.truncate(int(size * 0.4))
    return path, nan_samples


def _write_uvh5(path: Path, *, vis, jd_t, lst_t, arr: _Array, uvw_bl, freqs, chan_width,
                dec_rad, convention, sb) -> None:
    layout = arr.layout
    n_int = len(jd_t)
    nbls = len(arr.ant1)
    nblts = n_int * nbls
    nf = len(freqs)
    tmp = path.with_name(path.name + ".part")
    with h5py.File(tmp, "w") as f:
        h = f.create_group("Header")
        h["latitude"] = inst.SITE_LAT_DEG
        h["longitude"] = inst.SITE_LON_DEG
        h["altitude"] = inst.SITE_HEIGHT_M
        h["telescope_name"] = np.bytes_(inst.TELESCOPE_NAME)
        h["instrument"] = np.bytes_(inst.INSTRUMENT)
        h["object_name"] = np.bytes_("search")
        h["history"] = np.bytes_(f"Simulated by contimg-console engine.simulator "
                                 f"(convention {convention}, subband {sb:02d}).")
        h["version"] = np.bytes_("1.0")
        h["vis_units"] = np.bytes_("uncalib")
        h["phase_type"] = np.bytes_("drift")
        h["Nants_data"] = len(arr.active)
        h["Nants_telescope"] = len(layout)
        h["Nbls"] = nbls
        h["Nblts"] = nblts
        h["Nfreqs"] = nf
        h["Npols"] = 2
        h["Nspws"] = 1
        h["Ntimes"] = n_int
        h["antenna_names"] = np.array([n.encode() for n in layout.names])
        h["antenna_numbers"] = layout.numbers.astype(np.int64)
        h["antenna_positions"] = layout.positions_ecef_rel
        h["antenna_diameters"] = np.full(len(layout), inst.DISH_DIAMETER_M)
        h["ant_1_array"] = np.tile(layout.numbers[arr.ant1], n_int).astype(np.int64)
        h["ant_2_array"] = np.tile(layout.numbers[arr.ant2], n_int).astype(np.int64)
        h["time_array"] = np.repeat(jd_t, nbls)
        h["lst_array"] = np.repeat(lst_t, nbls)
        h["integration_time"] = np.full(nblts, inst.INTEGRATION_TIME_S)
        h["uvw_array"] = np.tile(uvw_bl, (n_int, 1))
        h["freq_array"] = freqs[None, :]
        h["channel_width"] = chan_width
        h["spw_array"] = np.array([0])
        h["polarization_array"] = np.array(inst.POLARIZATIONS)
        h["blt_order"] = np.bytes_("time, baseline")
        ek = h.create_group("extra_keywords")
        ek["phase_center_dec"] = float(dec_rad)
        ek["ha_phase_center"] = 0.0
        ek["applied_delays_ns"] = np.bytes_(" ".join(["0"] * (2 * len(layout))))
        ek["simulated"] = True
        ek["convention"] = np.bytes_(convention)
        d = f.create_group("Data")
        d.create_dataset("visdata", data=vis.reshape(nblts, 1, nf, 2))
        d.create_dataset("flags", data=np.zeros((nblts, 1, nf, 2), bool))
        d.create_dataset("nsamples", data=np.ones((nblts, 1, nf, 2), np.float32))
    os.replace(tmp, path)
