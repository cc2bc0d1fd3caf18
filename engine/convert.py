"""UVH5 subband files -> one CASA Measurement Set (MS v2) per observation.

:func:`convert_group` reads the (up to 16) DSA-110 subband files of one
observation with h5py (one read of each visibility block), reorders the
channels to ascending frequency in a single spectral window, phases the
drift-scan data to one phase centre, recomputes UVW, and writes the MS with
python-casacore (tiled storage managers) to a temporary directory next to the
destination, renaming it into place only after validation.  It also converts
any single pyuvdata-style UVH5 file (other telescopes, projected or
unprojected), taking telescope name, location and antenna positions from the
header.

Phase centre
------------
Default for unprojected (drift-scan) data: RA = apparent LST at the middle of
the observation, Dec = pointing declination (``extra_keywords/phase_center_dec``
in radians; the latitude, i.e. zenith, when absent), both used as J2000
coordinates.  (This is ~0.3 deg of precession away from the apparent meridian
in 2025 -- a choice of phase centre, the data are phased exactly to it.)
Projected input keeps its own phase centre.  ``phase_center=(ra_deg, dec_deg)``
overrides both.

Conventions (``convention=``)
-----------------------------
Let ``b = X(ant2) - X(ant1)`` (ECEF), ``w_new`` the w of ``b`` towards the
apparent phase centre.  The file's visibilities ``V`` are rotated by
``exp(-2 pi i (w_new - w_old) f / c)`` where

* ``"unprojected_w0"`` (default): ``w_old = 0`` for unprojected data -- the data
  carry no delay tracking, ``V = S exp(+2 pi i b.s f/c)``; this is what
  pyuvdata's ``phase()`` assumes and what the simulator writes;
* ``"zenith"``: unprojected data already phased to zenith, ``w_old`` = the
  up-component of the stored (ENU) ``uvw_array``;
* projected input always uses its stored ``w`` as ``w_old``.

The MS then follows the usual CASA convention as pyuvdata writes it: rows
with ANTENNA1 <= ANTENNA2, ``UVW_ms = -uvw`` and ``DATA_ms = conj(V_phased)``.
The convention used is written to the MS HISTORY.

Missing subbands become flagged, zero-valued channels.  NaN/Inf samples are
zeroed and flagged.  Inconsistent or duplicate subbands, unreadable/corrupt
input and wrong file names raise :class:`~engine.errors.PermanentStageError`
naming the files; a failure while writing the MS (disk full, I/O error)
raises :class:`~engine.errors.TransientStageError`.  Either way the temporary
MS is removed and nothing appears at the destination.  A conversion killed
outright leaves only a ``.contimg-tmp-*`` directory next to the destination,
which :func:`remove_stale_temporaries` deletes.

Performance: the visibilities are streamed in blocks of rows: a helper thread
reads every subband's rows with h5py (each byte read once), screens NaN/Inf,
phases and reorders them while the calling thread writes the previous block
with casacore (the only thread touching casacore).  Memory stays at a few
hundred MB regardless of the group size.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from engine import instrument as inst
from engine.errors import PermanentStageError, TransientStageError
from engine.processing import progress
from engine.subbands import SubbandNameError, parse_subband_filename
from engine.uvh5 import UVH5Header, UVH5RowReader, read_header, read_visibilities

CONVENTIONS = ("unprojected_w0", "zenith")
# pyuvdata / AIPS polarisation codes -> casacore Stokes enum
_POL_TO_CASA = {1: 1, 2: 2, 3: 3, 4: 4, -1: 5, -2: 8, -3: 6, -4: 7, -5: 9, -6: 12, -7: 10, -8: 11}
_POL_NAMES = {-5: "XX", -6: "YY", -7: "XY", -8: "YX", -1: "RR", -2: "LL", -3: "RL", -4: "LR",
              1: "I", 2: "Q", 3: "U", 4: "V"}
_DSA_NAMES = {"DSA_110", "DSA-110", "DSA110", "OVRO_DSA110"}
TMP_PREFIX = ".contimg-tmp-"


@dataclass
class ConversionResult:
    """Outcome of one conversion (plain, picklable values)."""

    ms_path: str
    rows: int
    channels: int
    antennas: int
    polarizations: int
    subbands_present: list[int]
    missing_subbands: list[int]
    start_mjd: float
    end_mjd: float
    pointing_dec_deg: float | None
    phase_center_ra_deg: float
    phase_center_dec_deg: float
    convention: str
    telescope_name: str
    flagged_fraction: float
    nan_samples_flagged: int
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class _Timer:
    def __init__(self):
        self.t = {}

    def add(self, key, dt):
        self.t[key] = self.t.get(key, 0.0) + dt


def _tmp_path_for(out_ms: Path) -> Path:
    return out_ms.parent / f"{TMP_PREFIX}{out_ms.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(directory, older_than_s: float = 3600.0) -> list[str]:
    """Delete temporary MS directories left by killed conversions in ``directory``."""
    removed = []
    now = time.time()
    for p in Path(directory).glob(f"{TMP_PREFIX}*"):
        try:
            if now - p.stat().st_mtime >= older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(str(p))
        except OSError:
            pass
    return removed


# ---------------------------------------------------------------------------
def _subband_indices(files: list[Path]) -> list[int | None]:
    """Subband index per file; None for every file when a single non-DSA name."""
    if len(files) == 1:
        try:
            return [parse_subband_filename(files[0])[1]]
        except SubbandNameError:
            return [None]
    out = []
    for f in files:
        try:
            out.append(parse_subband_filename(f)[1])
        except SubbandNameError as exc:
            raise PermanentStageError(f"{f}: {exc}") from exc
    seen: dict[int, Path] = {}
    dups = []
    for f, sb in zip(files, out):
        if sb in seen:
            dups.append(f"sb{sb:02d}: {seen[sb]} and {f}")
        else:
            seen[sb] = f
    if dups:
        raise PermanentStageError("duplicate subband files: " + "; ".join(dups))
    return out


def _check_consistent(headers: list[UVH5Header], time_tol_s: float) -> None:
    ref = headers[0]
    problems = []
    for h in headers[1:]:
        why = []
        if (h.nblts, h.ntimes, h.npols) != (ref.nblts, ref.ntimes, ref.npols):
            why.append(f"shape Nblts/Ntimes/Npols {h.nblts}/{h.ntimes}/{h.npols} vs "
                       f"{ref.nblts}/{ref.ntimes}/{ref.npols}")
        else:
            if not np.array_equal(h.ant_1_array, ref.ant_1_array) or \
                    not np.array_equal(h.ant_2_array, ref.ant_2_array):
                why.append("baselines (ant_1_array/ant_2_array) differ")
            dt = np.max(np.abs(h.time_array - ref.time_array)) * 86400.0
            if dt > time_tol_s:
                why.append(f"times differ by up to {dt:.1f} s")
        if not np.array_equal(h.polarization_array, ref.polarization_array):
            why.append(f"polarizations {h.polarization_array.tolist()} vs "
                       f"{ref.polarization_array.tolist()}")
        if not np.array_equal(h.antenna_numbers, ref.antenna_numbers):
            why.append("antenna_numbers differ")
        elif np.max(np.abs(h.antenna_positions - ref.antenna_positions)) > 1e-3:
            why.append("antenna_positions differ")
        if h.telescope_name != ref.telescope_name:
            why.append(f"telescope {h.telescope_name!r} vs {ref.telescope_name!r}")
        if h.phase_type != ref.phase_type:
            why.append(f"phase type {h.phase_type} vs {ref.phase_type}")
        if abs(h.latitude_deg - ref.latitude_deg) > 1e-6 or abs(h.longitude_deg - ref.longitude_deg) > 1e-6:
            why.append("telescope location differs")
        if why:
            problems.append(f"{h.path} vs {ref.path}: " + ", ".join(why))
    if problems:
        raise PermanentStageError("subband files disagree: " + "; ".join(problems))


def _frequency_grid(headers: list[UVH5Header], sbs: list[int | None], expected_subbands: int):
    """Ascending channel grid, per-file destination indices, missing subbands."""
    widths = np.concatenate([h.channel_width for h in headers])
    width = float(np.median(widths))
    nf = headers[0].nfreqs
    missing: list[int] = []
    if sbs[0] is not None and all(h.nfreqs == nf for h in headers):
        # DSA-110 layout: subband s covers the ascending block at offset
        # (s_ref - s) * nf channels from the reference subband (descending order).
        ref_i = int(np.argmin(sbs))
        ref_asc = np.sort(headers[ref_i].freq_array)
        step = nf * width
        ok = True
        for h, s in zip(headers, sbs):
            expect = ref_asc - (s - sbs[ref_i]) * step
            if not np.allclose(np.sort(h.freq_array), expect, rtol=0, atol=width * 0.01):
                ok = False
                break
        if ok:
            all_sb = list(range(max(expected_subbands, max(sbs) + 1)))
            missing = sorted(set(all_sb) - set(sbs))
            top = ref_asc + sbs[ref_i] * step          # sb00 block (ascending)
            grid = np.concatenate([top - s * step for s in reversed(all_sb)])
            dest = [np.searchsorted(grid, h.freq_array - width * 0.01) for h in headers]
            for h, d in zip(headers, dest):
                if not np.allclose(grid[d], h.freq_array, rtol=0, atol=width * 0.01):
                    raise PermanentStageError(f"{h.path}: channel frequencies do not fit the subband grid")
            return grid, dest, missing, width
    allf = np.concatenate([h.freq_array for h in headers])
    grid = np.sort(allf)
    if np.any(np.diff(grid) < width * 0.01):
        raise PermanentStageError(
            "overlapping or duplicate channel frequencies in: " + ", ".join(Path(h.path).name for h in headers))
    dest = [np.searchsorted(grid, h.freq_array - width * 0.01) for h in headers]
    return grid, dest, missing, width


def _phase_center(ref: UVH5Header, jd_unique: np.ndarray, lst_unique: np.ndarray,
                  phase_center) -> tuple[float, float]:
    if phase_center is not None:
        return float(np.radians(phase_center[0])), float(np.radians(phase_center[1]))
    if ref.phase_type == "projected":
        return float(ref.phase_center_ra), float(ref.phase_center_dec)
    mid = len(jd_unique) // 2
    if len(jd_unique) % 2 == 0:
        # LST at the exact middle time
        jd_mid = 0.5 * (jd_unique[mid - 1] + jd_unique[mid])
        ra = float(inst.lst_rad(np.array([jd_mid]), _location(ref))[0])
    else:
        ra = float(lst_unique[mid])
    dec = ref.pointing_dec
    if dec is None:
        dec = np.radians(ref.latitude_deg)
    if not -np.pi / 2 <= dec <= np.pi / 2:
        raise PermanentStageError(
            f"{ref.path}: extra_keywords phase_center_dec = {dec!r} is not a declination in radians")
    return ra, float(dec)


def _location(h: UVH5Header):
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon=h.longitude_deg * u.deg, lat=h.latitude_deg * u.deg,
                                       height=h.altitude_m * u.m)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------
def convert_group(files: Sequence[str | os.PathLike], out_ms: str | os.PathLike, *,
                  convention: str = "unprojected_w0", min_subbands: int = 12,
                  expected_subbands: int = 16, phase_center: tuple[float, float] | None = None,
                  overwrite: bool = False, imaging_columns: bool = True,
                  time_tolerance_s: float | None = None, chunk_rows: int = 8192,
                  ms_telescope_name: str | None = None) -> ConversionResult:
    """Convert the UVH5 files of one observation into one Measurement Set.

    ``files``: the subband files (DSA-110 names ``..._sbNN.hdf5``, any order)
    or a single UVH5 file of any name.  ``out_ms``: destination directory
    (``*.ms``).  ``min_subbands``: fewer present DSA subbands is an error
    (missing ones become flagged channels).  ``phase_center``: (RA, Dec) in
    degrees, J2000; default see module docstring.  ``imaging_columns``: create
    MODEL_DATA (zeros) and CORRECTED_DATA (= DATA).  ``ms_telescope_name``:
    OBSERVATION TELESCOPE_NAME (default: ``OVRO_MMA`` for DSA-110 data, which
    casacore's measures know, else the file's name).
    """
    timer = _Timer()
    t_all = time.perf_counter()
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {CONVENTIONS}")
    files = [Path(f) for f in files]
    out_ms = Path(out_ms)
    if not files:
        raise PermanentStageError(f"{out_ms}: no input files")
    if out_ms.exists() and not overwrite:
        raise PermanentStageError(f"{out_ms}: destination already exists")
    try:
        out_ms.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermanentStageError(f"{out_ms.parent}: cannot create destination directory: {exc}") from exc

    # ---- headers --------------------------------------------------------
    t0 = time.perf_counter()
    sbs = _subband_indices(files)
    if sbs[0] is not None:
        order = np.argsort(sbs)
        files = [files[i] for i in order]
        sbs = [sbs[i] for i in order]
    headers = [read_header(f) for f in files]
    ref = headers[0]
    int_time = float(np.median(ref.integration_time))
    _check_consistent(headers, time_tolerance_s if time_tolerance_s is not None else 0.5 * int_time)
    if sbs[0] is not None and len(files) < min_subbands and len(files) > 1:
        raise PermanentStageError(
            f"only {len(files)} subbands present ({', '.join(f.name for f in files)}), "
            f"at least {min_subbands} required")
    if sbs[0] is not None and len(files) < min_subbands and len(files) == 1 and min_subbands > 1:
        raise PermanentStageError(
            f"only 1 subband present ({files[0].name}), at least {min_subbands} required")
    grid, dests, missing, width = _frequency_grid(headers, sbs, expected_subbands)
    nchan = len(grid)
    nrow, npol = ref.nblts, ref.npols
    bad_pols = [p for p in ref.polarization_array.tolist() if p not in _POL_TO_CASA]
    if bad_pols:
        raise PermanentStageError(f"{ref.path}: unsupported polarization codes {bad_pols}")
    timer.add("headers", time.perf_counter() - t0)

    # ---- geometry ------------------------------------------------------------
    t0 = time.perf_counter()
    loc = _location(ref)
    jd_u, t_inv = np.unique(ref.time_array, return_inverse=True)
    if ref.lst_array is not None:
        lst_u = np.zeros(len(jd_u))
        lst_u[t_inv] = ref.lst_array
    else:
        lst_u = inst.lst_rad(jd_u, loc)
    ra0, dec0 = _phase_center(ref, jd_u, lst_u, phase_center)
    app_ra, app_dec = inst.apparent_radec(ra0, dec0, jd_u, loc)
    basis = inst.uvw_basis_ecef(app_ra, app_dec, lst_u, loc)            # (Nt, 3, 3)
    pa = inst.frame_position_angle(ra0, dec0, jd_u, app_ra, app_dec, loc)
    lut = np.full(int(ref.antenna_numbers.max()) + 1, -1, np.int64)
    lut[ref.antenna_numbers] = np.arange(len(ref.antenna_numbers))
    i1 = lut[ref.ant_1_array]
    i2 = lut[ref.ant_2_array]
    pos = ref.antenna_positions
    b = pos[i2] - pos[i1]
    uvw_app = np.einsum("rij,rj->ri", basis[t_inv], b)
    cpa, spa = np.cos(pa)[t_inv], np.sin(pa)[t_inv]
    uvw = np.empty_like(uvw_app)
    uvw[:, 0] = cpa * uvw_app[:, 0] - spa * uvw_app[:, 1]
    uvw[:, 1] = spa * uvw_app[:, 0] + cpa * uvw_app[:, 1]
    uvw[:, 2] = uvw_app[:, 2]
    if ref.phase_type == "projected":
        w_old = ref.uvw_array[:, 2]
    elif convention == "zenith":
        w_old = ref.uvw_array[:, 2]
    else:
        w_old = np.zeros(nrow)
    delay = uvw[:, 2] - w_old
    # MS rows: ANTENNA1 <= ANTENNA2, sorted by time then baseline
    swap = i1 > i2
    a1 = np.where(swap, i2, i1)
    a2 = np.where(swap, i1, i2)
    perm = np.lexsort((a2, a1, ref.time_array))
    identity = bool(np.all(perm == np.arange(nrow)))
    # data are conjugated (MS convention) except on swapped rows (conjugated twice)
    uvw_ms = np.where(swap[:, None], uvw, -uvw)
    timer.add("geometry", time.perf_counter() - t0)

    if not identity:
        uvw_ms = uvw_ms[perm]
        a1, a2 = a1[perm], a2[perm]
    times_row = ref.time_array[perm] if not identity else ref.time_array
    int_row = ref.integration_time[perm] if not identity else ref.integration_time

    # ---- write (streaming: read, phase and reorder one block of rows at a time)
    tmp = _tmp_path_for(out_ms)
    tel_name = ref.telescope_name
    if ms_telescope_name is None:
        ms_telescope_name = inst.CASACORE_OBSERVATORY if tel_name.upper() in _DSA_NAMES else tel_name
    missing_chan = np.ones(nchan, bool)
    chan_width = np.full(nchan, width)
    for h, d in zip(headers, dests):
        missing_chan[d] = False
        chan_width[d] = h.channel_width
    if not identity:
        # rows must be gathered out of order: load each file once and produce one block
        chunk_rows = max(nrow, 1)
    stream = _Stream(headers, dests, delay=delay, swap=swap, perm=None if identity else perm,
                     nchan=nchan, npol=npol, missing_chan=missing_chan, timer=timer)
    try:
        t0 = time.perf_counter()
        checks = _write_ms(tmp, stream=stream, uvw=uvw_ms, a1=a1, a2=a2, times_jd=times_row,
                           int_time=int_row, grid=grid, width=chan_width, header=ref, ra0=ra0,
                           dec0=dec0, telescope_name=ms_telescope_name,
                           history_fn=lambda: _history(files, convention, ref, ra0, dec0, tel_name,
                                                       ms_telescope_name, missing, stream.n_nan),
                           imaging_columns=imaging_columns, chunk_rows=chunk_rows, timer=timer)
        timer.add("write_total", time.perf_counter() - t0)
        timer.t["write"] = sum(timer.t.get(k, 0.0) for k in ("write_meta", "write_data", "write_subtables",
                                                             "write_close"))
        t0 = time.perf_counter()
        _validate_ms(tmp, checks=checks, nrow=nrow, nchan=nchan, pos=pos, a1=a1, a2=a2, uvw=uvw_ms)
        timer.add("validate", time.perf_counter() - t0)
        if out_ms.exists():
            old = out_ms.parent / f"{TMP_PREFIX}old-{out_ms.name}-{uuid.uuid4().hex[:8]}"
            os.rename(out_ms, old)
            os.rename(tmp, out_ms)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_ms)
    except (OSError, RuntimeError) as exc:
        # casacore/file-system failures while writing (disk full, I/O error): worth a retry
        shutil.rmtree(tmp, ignore_errors=True)
        raise TransientStageError(f"{out_ms}: writing the Measurement Set failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        stream.close()
    n_nan = stream.n_nan

    flagged_fraction = stream.flagged / max(1, nrow * nchan * npol)
    start_mjd = float((jd_u[0] - 2400000.5))
    end_mjd = float((jd_u[-1] - 2400000.5))
    timer.add("total", time.perf_counter() - t_all)
    return ConversionResult(
        ms_path=str(out_ms),
        rows=int(nrow),
        channels=int(nchan),
        antennas=int(len(np.union1d(a1, a2))),
        polarizations=int(npol),
        subbands_present=[s for s in sbs if s is not None],
        missing_subbands=missing,
        start_mjd=start_mjd,
        end_mjd=end_mjd,
        pointing_dec_deg=None if ref.pointing_dec is None else float(np.degrees(ref.pointing_dec)),
        phase_center_ra_deg=float(np.degrees(ra0)),
        phase_center_dec_deg=float(np.degrees(dec0)),
        convention=convention,
        telescope_name=tel_name,
        flagged_fraction=flagged_fraction,
        nan_samples_flagged=n_nan,
        timings={k: round(v, 4) for k, v in timer.t.items()},
        peak_rss_mb=_peak_rss_mb(),
    )


# ---------------------------------------------------------------------------
def _write_ms(path: Path, *, stream: "_Stream", uvw, a1, a2, times_jd, int_time, grid, width,
              header: UVH5Header, ra0, dec0, telescope_name, history_fn, imaging_columns,
              chunk_rows, timer) -> dict:
    """Create the MS at ``path`` and fill it; returns read-back check material."""
    from casacore import tables as pt

    nrow, nchan, npol = len(a1), stream.nchan, stream.npol
    t0 = time.perf_counter()
    data_cols = ["DATA"] + (["MODEL_DATA", "CORRECTED_DATA"] if imaging_columns else [])
    descs = [pt.makearrcoldesc(c, 0j, shape=[nchan, npol], valuetype="complex", options=4,
                               datamanagertype="TiledColumnStMan", datamanagergroup=f"Tiled{c}")
             for c in data_cols]
    descs.append(pt.makearrcoldesc("FLAG", False, shape=[nchan, npol], options=4,
                                   datamanagertype="TiledColumnStMan", datamanagergroup="TiledFlag"))
    descs.append(pt.makearrcoldesc("UVW", 0.0, shape=[3], options=5,
                                   datamanagertype="TiledColumnStMan", datamanagergroup="TiledUVW",
                                   keywords={"QuantumUnits": ["m", "m", "m"],
                                             "MEASINFO": {"type": "uvw", "Ref": "J2000"}}))
    descs.append(pt.makearrcoldesc("WEIGHT", 0.0, shape=[npol], valuetype="float", options=4))
    descs.append(pt.makearrcoldesc("SIGMA", 0.0, shape=[npol], valuetype="float", options=4))
    td = pt.maketabdesc(descs)
    # tiles of ~ 0.2-1.5 MB: all correlations, up to 768 channels, 16-32 rows
    ctile = min(nchan, 768)
    rtile = max(1, int(round(1.5e6 / (8 * npol * ctile))))
    dminfo = {}
    k = 1
    for c in data_cols:
        dminfo[f"*{k}"] = {"TYPE": "TiledColumnStMan", "NAME": f"Tiled{c}",
                           "SPEC": {"DEFAULTTILESHAPE": np.array([npol, ctile, rtile], np.int32)},
                           "COLUMNS": [c]}
        k += 1
    dminfo[f"*{k}"] = {"TYPE": "TiledColumnStMan", "NAME": "TiledFlag",
                       "SPEC": {"DEFAULTTILESHAPE": np.array([npol, ctile, 8 * rtile], np.int32)},
                       "COLUMNS": ["FLAG"]}
    dminfo[f"*{k + 1}"] = {"TYPE": "TiledColumnStMan", "NAME": "TiledUVW",
                           "SPEC": {"DEFAULTTILESHAPE": np.array([3, 4096], np.int32)},
                           "COLUMNS": ["UVW"]}
    ms = pt.default_ms(str(path), td, dminfo)
    try:
        ms.addrows(nrow)
        for c in data_cols:
            kw = ms.getcolkeywords(c)
            kw.update({"UNIT": "Jy"} if c != "MODEL_DATA" else {})
            if kw:
                ms.putcolkeywords(c, kw)
        tmjd = (times_jd - 2400000.5) * 86400.0
        ms.putcol("TIME", tmjd)
        ms.putcol("TIME_CENTROID", tmjd)
        ms.putcol("INTERVAL", int_time)
        ms.putcol("EXPOSURE", int_time)
        ms.putcol("ANTENNA1", a1.astype(np.int32))
        ms.putcol("ANTENNA2", a2.astype(np.int32))
        zeros = np.zeros(nrow, np.int32)
        for c in ("ARRAY_ID", "DATA_DESC_ID", "FEED1", "FEED2", "FIELD_ID", "OBSERVATION_ID",
                  "PROCESSOR_ID", "STATE_ID"):
            ms.putcol(c, zeros if c != "STATE_ID" else zeros - 1)
        ms.putcol("SCAN_NUMBER", zeros + 1)
        ms.putcol("UVW", uvw)
        timer.add("write_meta", time.perf_counter() - t0)
        t0 = time.perf_counter()
        zchunk = np.zeros((min(chunk_rows, nrow), nchan, npol), np.complex64) if imaging_columns else None
        flag_row = np.empty(nrow, bool)
        weight = np.empty((nrow, npol), np.float32)
        n = min(chunk_rows, nrow)
        check_starts = sorted({0, max(0, (nrow // 2) // n * n), max(0, (nrow - 1) // n * n)})
        checks = {}
        starts = list(range(0, nrow, chunk_rows))
        # produce block i+1 (read, phase, reorder: h5py + numpy) in a helper thread
        # while this thread writes block i; only this thread touches casacore
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convert-read") as pool:
            fut = pool.submit(stream.block, 0, min(nrow, chunk_rows))
            progress.report("write", 0, nrow, "rows")
            for bi, s in enumerate(starts):
                e = min(nrow, s + chunk_rows)
                tw = time.perf_counter()
                blk, fblk, wblk = fut.result()
                timer.add("wait_for_blocks", time.perf_counter() - tw)
                if bi + 1 < len(starts):
                    s2 = starts[bi + 1]
                    fut = pool.submit(stream.block, s2, min(nrow, s2 + chunk_rows))
                tw = time.perf_counter()
                k = e - s
                ms.putcol("DATA", blk, startrow=s, nrow=k)
                ms.putcol("FLAG", fblk, startrow=s, nrow=k)
                flag_row[s:e] = fblk.reshape(k, -1).all(axis=1)
                weight[s:e] = wblk
                if imaging_columns:
                    ms.putcol("CORRECTED_DATA", blk, startrow=s, nrow=k)
                    ms.putcol("MODEL_DATA", zchunk[:k], startrow=s, nrow=k)
                if s in check_starts:      # keep a sample of rows to compare after re-opening
                    m = min(k, 256)
                    checks[s] = (blk[:m].copy(), fblk[:m].copy())
                timer.add("write_data", time.perf_counter() - tw)
                progress.report("write", e, nrow, "rows")
        ms.putcol("FLAG_ROW", flag_row)
        ms.putcol("WEIGHT", weight)
        sigma = np.where(weight > 0, 1.0 / np.sqrt(np.maximum(weight, 1e-30)), 0.0)
        ms.putcol("SIGMA", sigma.astype(np.float32))
        t0 = time.perf_counter()
        _write_subtables(ms, path, header=header, grid=grid, width=width, npol=npol, ra0=ra0,
                         dec0=dec0, t_first=float(tmjd.min()), t_last=float(tmjd.max()),
                         int_time=float(np.median(int_time)), telescope_name=telescope_name,
                         history=history_fn())
        timer.add("write_subtables", time.perf_counter() - t0)
    finally:
        t0 = time.perf_counter()
        ms.close()
        timer.add("write_close", time.perf_counter() - t0)
    return checks


def _write_subtables(ms, path: Path, *, header: UVH5Header, grid, width, npol, ra0, dec0, t_first,
                     t_last, int_time, telescope_name, history) -> None:
    from casacore import tables as pt

    loc = _location(header)
    site = np.array([loc.x.value, loc.y.value, loc.z.value])
    nant = len(header.antenna_numbers)

    ant = pt.table(str(path / "ANTENNA"), readonly=False, ack=False)
    ant.addrows(nant)
    ant.putcol("NAME", list(header.antenna_names))
    ant.putcol("STATION", list(header.antenna_names))
    ant.putcol("TYPE", ["GROUND-BASED"] * nant)
    ant.putcol("MOUNT", ["ALT-AZ"] * nant)
    ant.putcol("POSITION", header.antenna_positions + site[None, :])
    ant.putcol("OFFSET", np.zeros((nant, 3)))
    diam = header.antenna_diameters if header.antenna_diameters is not None else \
        np.full(nant, inst.DISH_DIAMETER_M if header.telescope_name.upper() in _DSA_NAMES else 0.0)
    ant.putcol("DISH_DIAMETER", np.asarray(diam, float))
    ant.putcol("FLAG_ROW", np.zeros(nant, bool))
    ant.close()

    pols = header.polarization_array.tolist()
    feed = pt.table(str(path / "FEED"), readonly=False, ack=False)
    feed.addrows(nant)
    feed.putcol("ANTENNA_ID", np.arange(nant, dtype=np.int32))
    feed.putcol("FEED_ID", np.zeros(nant, np.int32))
    feed.putcol("SPECTRAL_WINDOW_ID", np.full(nant, -1, np.int32))
    feed.putcol("TIME", np.full(nant, 0.5 * (t_first + t_last)))
    feed.putcol("INTERVAL", np.full(nant, 0.0))
    feed.putcol("BEAM_ID", np.full(nant, -1, np.int32))
    feed.putcol("BEAM_OFFSET", np.zeros((nant, 2, 2)))
    circular = any(p in (-1, -2, -3, -4) for p in pols)
    feed.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (nant, 1, 1)))
    feed.putcol("POLARIZATION_TYPE", np.array([["R", "L"] if circular else ["X", "Y"]] * nant))
    feed.putcol("POSITION", np.zeros((nant, 3)))
    feed.putcol("RECEPTOR_ANGLE", np.tile(np.array([0.0, np.pi / 2]), (nant, 1)))
    feed.putcol("NUM_RECEPTORS", np.full(nant, 2, np.int32))
    feed.close()

    spw = pt.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False)
    spw.addrows(1)
    nchan = len(grid)
    spw.putcell("NUM_CHAN", 0, nchan)
    spw.putcell("NAME", 0, "SPW0")
    spw.putcell("REF_FREQUENCY", 0, float(grid[0]))
    spw.putcell("CHAN_FREQ", 0, grid)
    widths = np.broadcast_to(np.asarray(width, float), (nchan,)).copy()
    spw.putcell("CHAN_WIDTH", 0, widths)
    spw.putcell("EFFECTIVE_BW", 0, widths)
    spw.putcell("RESOLUTION", 0, widths)
    spw.putcell("TOTAL_BANDWIDTH", 0, float(widths.sum()))
    spw.putcell("MEAS_FREQ_REF", 0, 5)   # TOPO
    spw.putcell("NET_SIDEBAND", 0, 1)
    spw.putcell("IF_CONV_CHAIN", 0, 0)
    spw.putcell("FREQ_GROUP", 0, 0)
    spw.putcell("FREQ_GROUP_NAME", 0, "")
    spw.putcell("FLAG_ROW", 0, False)
    spw.close()

    pol = pt.table(str(path / "POLARIZATION"), readonly=False, ack=False)
    pol.addrows(1)
    pol.putcell("NUM_CORR", 0, npol)
    pol.putcell("CORR_TYPE", 0, np.array([_POL_TO_CASA[p] for p in pols], np.int32))
    names = [_POL_NAMES[p] for p in pols]
    feed_idx = {"X": 0, "Y": 1, "R": 0, "L": 1}
    prod = np.array([[feed_idx.get(n[0], 0), feed_idx.get(n[-1], 0)] for n in names], np.int32)
    pol.putcell("CORR_PRODUCT", 0, prod)
    pol.putcell("FLAG_ROW", 0, False)
    pol.close()

    dd = pt.table(str(path / "DATA_DESCRIPTION"), readonly=False, ack=False)
    dd.addrows(1)
    dd.putcell("SPECTRAL_WINDOW_ID", 0, 0)
    dd.putcell("POLARIZATION_ID", 0, 0)
    dd.putcell("FLAG_ROW", 0, False)
    dd.close()

    fld = pt.table(str(path / "FIELD"), readonly=False, ack=False)
    fld.addrows(1)
    direction = np.array([[ra0, dec0]])
    name = header.object_name if header.phase_type == "projected" and header.object_name else \
        f"drift_{np.degrees(ra0):.4f}_{np.degrees(dec0):+.4f}"
    fld.putcell("NAME", 0, name)
    fld.putcell("CODE", 0, "")
    fld.putcell("TIME", 0, 0.5 * (t_first + t_last))
    fld.putcell("NUM_POLY", 0, 0)
    for c in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
        fld.putcell(c, 0, direction)
    fld.putcell("SOURCE_ID", 0, -1)
    fld.putcell("FLAG_ROW", 0, False)
    fld.close()

    obs = pt.table(str(path / "OBSERVATION"), readonly=False, ack=False)
    obs.addcols(pt.makearrcoldesc("TELESCOPE_LOCATION", 0.0, shape=[3], options=5,
                                  comment="ITRF position of the telescope (non-standard)"))
    obs.addrows(1)
    obs.putcell("TELESCOPE_NAME", 0, telescope_name)
    obs.putcell("TIME_RANGE", 0, np.array([t_first - int_time / 2, t_last + int_time / 2]))
    obs.putcell("OBSERVER", 0, header.instrument or "unknown")
    obs.putcell("PROJECT", 0, "contimg")
    obs.putcell("RELEASE_DATE", 0, 0.0)
    obs.putcell("SCHEDULE_TYPE", 0, "drift" if header.phase_type == "unprojected" else "")
    obs.putcell("LOG", 0, np.array(["none"]))
    obs.putcell("SCHEDULE", 0, np.array(["none"]))
    obs.putcell("FLAG_ROW", 0, False)
    obs.putcell("TELESCOPE_LOCATION", 0, site)
    obs.close()

    proc = pt.table(str(path / "PROCESSOR"), readonly=False, ack=False)
    proc.addrows(1)
    proc.putcell("TYPE", 0, "CORRELATOR")
    proc.putcell("SUB_TYPE", 0, header.instrument or header.telescope_name)
    proc.putcell("TYPE_ID", 0, 0)
    proc.putcell("MODE_ID", 0, 0)
    proc.putcell("FLAG_ROW", 0, False)
    proc.close()

    hist = pt.table(str(path / "HISTORY"), readonly=False, ack=False)
    n = len(history)
    hist.addrows(n)
    now = (time.time() / 86400.0 + 40587.0) * 86400.0
    hist.putcol("TIME", np.full(n, now))
    hist.putcol("OBSERVATION_ID", np.zeros(n, np.int32))
    hist.putcol("MESSAGE", history)
    hist.putcol("PRIORITY", ["NORMAL"] * n)
    hist.putcol("ORIGIN", ["contimg-console engine.convert"] * n)
    hist.putcol("OBJECT_ID", np.zeros(n, np.int32))
    hist.putcol("APPLICATION", ["contimg-console"] * n)
    for r in range(n):
        hist.putcell("CLI_COMMAND", r, np.array([""]))
        hist.putcell("APP_PARAMS", r, np.array([""]))
    hist.close()


def _validate_ms(path: Path, *, checks, nrow, nchan, pos, a1, a2, uvw) -> None:
    """Re-open the written MS and check it before it is renamed into place."""
    from casacore import tables as pt

    ms = pt.table(str(path), ack=False)
    try:
        if ms.nrows() != nrow:
            raise PermanentStageError(f"{path}: wrote {ms.nrows()} rows, expected {nrow}")
        missing = [t for t in ("ANTENNA", "DATA_DESCRIPTION", "FEED", "FIELD", "FLAG_CMD", "HISTORY",
                               "OBSERVATION", "POINTING", "POLARIZATION", "PROCESSOR",
                               "SPECTRAL_WINDOW", "STATE") if t not in ms.keywordnames()]
        if missing:
            raise PermanentStageError(f"{path}: missing subtables {missing}")
        spw = pt.table(str(path / "SPECTRAL_WINDOW"), ack=False)
        f = spw.getcell("CHAN_FREQ", 0)
        spw.close()
        if len(f) != nchan or np.any(np.diff(f) <= 0):
            raise PermanentStageError(f"{path}: channel frequencies are not strictly ascending")
        ant = pt.table(str(path / "ANTENNA"), ack=False)
        apos = ant.getcol("POSITION")
        ant.close()
        # UVW lengths must equal baseline lengths from the ANTENNA table
        u = ms.getcol("UVW")
        blen = np.linalg.norm(apos[a2] - apos[a1], axis=1)
        err = np.abs(np.linalg.norm(u, axis=1) - blen)
        if err.max() > 1e-3 + 1e-7 * blen.max():
            raise PermanentStageError(f"{path}: UVW inconsistent with antenna positions "
                                      f"(max length error {err.max():.3g} m)")
        if not np.allclose(u, uvw, atol=1e-6):
            raise PermanentStageError(f"{path}: UVW column does not read back as written")
        if not (np.array_equal(ms.getcol("ANTENNA1"), a1) and np.array_equal(ms.getcol("ANTENNA2"), a2)):
            raise PermanentStageError(f"{path}: ANTENNA1/2 do not read back as written")
        # spot-check DATA/FLAG read-back: first, middle and last block
        for s, (blk, fblk) in checks.items():
            k = len(blk)
            d = ms.getcol("DATA", startrow=s, nrow=k)
            fl = ms.getcol("FLAG", startrow=s, nrow=k)
            if not (np.array_equal(d, blk) and np.array_equal(fl, fblk)):
                raise PermanentStageError(f"{path}: DATA/FLAG rows {s}..{s + k} do not read back as written")
    finally:
        ms.close()


def _history(files, convention, ref: UVH5Header, ra0, dec0, tel_name, ms_tel, missing, n_nan):
    if ref.phase_type == "projected":
        conv = "projected input: w_old = stored w"
    elif convention == "unprojected_w0":
        conv = ("unprojected_w0: files carry no delay tracking (w_old = 0), "
                "V = g1 g2* S exp(+2 pi i b.s f/c) with b = X(ant2) - X(ant1)")
    else:
        conv = "zenith: files phased to zenith (w_old = up-component of the stored ENU uvw)"
    return [
        f"Converted by contimg-console engine.convert from {len(files)} UVH5 file(s): "
        + ", ".join(Path(f).name for f in files),
        f"Visibility convention: {conv}; data rotated by exp(-2 pi i (w_new - w_old) f/c).",
        f"Phase centre J2000 RA {np.degrees(ra0):.6f} deg Dec {np.degrees(dec0):.6f} deg; UVW "
        "recomputed from antenna positions; MS rows ANTENNA1 <= ANTENNA2 with UVW = -(uvw of "
        "X(ant2) - X(ant1)) and DATA conjugated accordingly.",
        f"Telescope in files: {tel_name}; OBSERVATION TELESCOPE_NAME = {ms_tel}.",
        f"Missing subbands (flagged, zero data): {missing if missing else 'none'}; "
        f"NaN/Inf samples flagged: {n_nan}.",
    ]


class _Stream:
    """Produces MS rows [s, e): reads every subband's rows, phases, reorders channels."""

    def __init__(self, headers, dests, *, delay, swap, perm, nchan, npol, missing_chan, timer):
        self.headers = headers
        self.dests = dests
        self.delay = delay
        self.swap = swap
        self.perm = perm
        self.nchan = nchan
        self.npol = npol
        self.missing_chan = missing_chan
        self.timer = timer
        self.n_nan = 0
        self.flagged = 0
        self.readers = []
        self._full = {}
        self._bufs = {}
        self._outs = [None, None]
        self._slot = 0
        f0 = headers[0].freq_array
        self._same_layout = [h.nfreqs == len(f0) and np.allclose(h.freq_array - h.freq_array[0], f0 - f0[0],
                                                                 rtol=0, atol=1e-3)
                             for h in headers]
        self._vtype = np.dtype((np.void, 8 * npol))
        self._ftype = np.dtype((np.void, npol))
        self._ones_cache = {}
        try:
            t0 = time.perf_counter()
            if perm is None:
                for h in headers:
                    self.readers.append(UVH5RowReader(h))
            timer.add("read", time.perf_counter() - t0)
        except BaseException:
            self.close()
            raise

    def close(self):
        for r in self.readers:
            r.close()
        self.readers = []
        self._full = {}

    def _ones(self, nf):
        if nf not in self._ones_cache:
            self._ones_cache[nf] = np.ones(nf, np.float32)
        return self._ones_cache[nf]

    def _buffers(self, n, nf):
        b = self._bufs.get(nf)
        if b is None or b[0].shape[0] < n:
            b = (np.empty((n, nf, self.npol), np.complex64),
                 np.empty((n, nf, self.npol), bool),
                 np.empty((n, nf, self.npol), np.float32))
            self._bufs[nf] = b
        return b

    def _read(self, i, s, e, vis, fl, ns):
        if self.perm is None:
            self.readers[i].read_rows(s, e, vis, fl, ns)
            return
        if i not in self._full:
            h = self.headers[i]
            self._full = {i: read_visibilities(h.path, h, nsamples_out=np.empty(
                (h.nblts, h.nfreqs, h.npols), np.float32))}
        v, f, n_ = self._full[i]
        rows = self.perm[s:e]
        k = e - s
        vis[:k] = v[rows]
        fl[:k] = f[rows]
        ns[:k] = n_[rows]

    def block(self, s, e):
        """MS rows [s, e) as (DATA, FLAG, WEIGHT).  Alternates between two output
        buffers, so the previous block may still be in use (being written) while
        this one is produced."""
        k = e - s
        slot = self._slot
        self._slot ^= 1
        out = self._outs[slot]
        if out is None or out[0].shape[0] < k:
            out = (np.empty((k, self.nchan, self.npol), np.complex64),
                   np.empty((k, self.nchan, self.npol), bool))
            self._outs[slot] = out
        data, flags = out[0][:k], out[1][:k]
        if self.missing_chan.any():
            data[:, self.missing_chan] = 0
            flags[:, self.missing_chan] = True
        wsum = np.zeros((k, self.npol), np.float64)
        rows = slice(s, e) if self.perm is None else self.perm[s:e]
        delay = self.delay[rows]
        swap = self.swap[rows]
        any_swap = bool(swap.any())
        base = None
        for i, (h, dest) in enumerate(zip(self.headers, self.dests)):
            vis, fl, ns = (b[:k] for b in self._buffers(k, h.nfreqs))
            t0 = time.perf_counter()
            self._read(i, s, e, vis, fl, ns)
            t1 = time.perf_counter()
            self.timer.add("read", t1 - t0)
            # cheap screen first: sum |v|^2 (BLAS) is finite unless a sample is NaN/Inf
            # (or the sum overflows, then the exact test below finds nothing)
            flat = vis.reshape(-1)
            if not np.isfinite(np.vdot(flat, flat)):
                bad = ~np.isfinite(vis)
                nb = int(bad.sum())
                if nb:
                    vis[bad] = 0
                    fl |= bad
                    self.n_nan += nb
            # exp(+2 pi i d f / c): channels of every subband share the layout of the
            # first one, up to a per-row factor exp(2 pi i d (f0_i - f0_ref) / c)
            if self._same_layout[i]:
                if base is None:
                    base = inst.delay_phasor(delay, self.headers[0].freq_array)
                off = h.freq_array[0] - self.headers[0].freq_array[0]
                if off:
                    ph = base * np.exp((2j * np.pi * off / inst.C_M_S) * delay).astype(np.complex64)[:, None]
                else:
                    ph = base
            else:
                ph = inst.delay_phasor(delay, h.freq_array)
            # MS value = conj(V exp(-2 pi i d f/c)) = conj(V) * ph   (rows not swapped)
            # (separate contiguous passes are faster than one strided pass)
            np.conjugate(vis, out=vis)
            vis *= ph[:, :, None]
            if any_swap:
                vis[swap] = np.conj(vis[swap])
            t2 = time.perf_counter()
            self.timer.add("phase", t2 - t1)
            # copy whole (all-polarisation) samples into their ascending channel slots:
            # each channel's npol values are viewed as one opaque item
            dv = data.view(self._vtype).reshape(k, self.nchan)
            fv = flags.view(self._ftype).reshape(k, self.nchan)
            vv = vis.view(self._vtype).reshape(k, h.nfreqs)
            flv = fl.view(self._ftype).reshape(k, h.nfreqs)
            lo, hi = int(dest.min()), int(dest.max()) + 1
            if hi - lo == len(dest) and len(dest) > 1 and np.all(np.diff(dest) == -1):
                dv[:, lo:hi] = vv[:, ::-1]
                fv[:, lo:hi] = flv[:, ::-1]
            elif hi - lo == len(dest) and np.all(np.diff(dest) == 1):
                dv[:, lo:hi] = vv
                fv[:, lo:hi] = flv
            else:
                dv[:, dest] = vv
                fv[:, dest] = flv
            # weights: mean nsamples of unflagged samples (fast path: constant nsamples)
            any_flag = fl.any()
            n0 = ns.reshape(-1)[0] if ns.size else 1.0
            if not any_flag and ns.min() == n0 and ns.max() == n0:
                wsum += float(n0) * h.nfreqs
            else:
                if any_flag:
                    ns[fl] = 0.0
                wsum += np.matmul(ns.transpose(0, 2, 1), self._ones(h.nfreqs))
            self.timer.add("reorder", time.perf_counter() - t2)
        # every input sample was checked (non-finite -> zero + flag) and the
        # phasors are finite, so the block holds no NaN/Inf
        self.flagged += int(np.count_nonzero(flags))
        nch_present = max(1, int((~self.missing_chan).sum()))
        return data, flags, (wsum / nch_present).astype(np.float32)
