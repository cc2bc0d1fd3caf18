"""Fast reading and validation of UVH5 files (pyuvdata's HDF5 format) with h5py.

:func:`read_header` reads only the metadata of one file (no visibilities) and
checks it is a usable UVH5 file; :func:`read_visibilities` reads the
visibility block (the I/O floor of conversion) straight into a caller-given
buffer.  Both raise :class:`~engine.errors.PermanentStageError` naming the file
and the problem for truncated/corrupt HDF5, non-UVH5 files and inconsistent
headers.

Both the current layout (``visdata`` of shape ``(Nblts, Nfreqs, Npols)``,
``freq_array`` of shape ``(Nfreqs,)``) and the older one with a length-1
spectral-window axis (what DSA-110 writes) are accepted, as are the HERA
integer-compound visibilities.  Phase information is summarised as
``phase_type`` = ``"unprojected"`` (``phase_type = "drift"`` or an
``unprojected`` catalog entry) or ``"projected"`` (``phase_type = "phased"`` or
a single sidereal catalog entry); files with several phase centres are
rejected.  The DSA-110 pointing declination is ``extra_keywords/phase_center_dec``
in radians.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from engine.errors import PermanentStageError

_REQUIRED = (
    "Nblts", "Nfreqs", "Npols", "Ntimes", "ant_1_array", "ant_2_array", "antenna_numbers",
    "antenna_positions", "freq_array", "polarization_array", "time_array", "uvw_array",
    "latitude", "longitude", "altitude", "telescope_name",
)


@dataclass
class UVH5Header:
    """Metadata of one UVH5 file (plain values and numpy arrays)."""

    path: str
    telescope_name: str
    instrument: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antenna_numbers: np.ndarray
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray       # ECEF metres relative to the telescope location
    antenna_diameters: np.ndarray | None
    ant_1_array: np.ndarray
    ant_2_array: np.ndarray
    time_array: np.ndarray              # JD (UTC) per blt
    lst_array: np.ndarray | None        # rad per blt, if stored
    integration_time: np.ndarray        # s per blt
    uvw_array: np.ndarray               # (Nblts, 3) metres
    freq_array: np.ndarray              # (Nfreqs,) Hz, file order
    channel_width: np.ndarray           # (Nfreqs,) Hz
    polarization_array: np.ndarray
    nblts: int
    ntimes: int
    nfreqs: int
    npols: int
    nspws: int
    phase_type: str                     # "unprojected" or "projected"
    phase_center_ra: float | None       # rad (projected files)
    phase_center_dec: float | None      # rad (projected files)
    phase_center_frame: str | None
    phase_center_epoch: float | None
    pointing_dec: float | None          # rad: extra_keywords phase_center_dec, else None
    extra_keywords: dict = field(default_factory=dict)
    data_shape: tuple = ()
    spw_axis: bool = False              # visdata has the old length-1 spw axis
    vis_units: str = "uncalib"
    history: str = ""
    object_name: str = ""

    @property
    def unique_times(self) -> np.ndarray:
        return np.unique(self.time_array)

    @property
    def nbls(self) -> int:
        return self.nblts // max(self.ntimes, 1)


def _str(v) -> str:
    v = v[()] if isinstance(v, h5py.Dataset) else v
    if isinstance(v, np.ndarray):
        v = v.item() if v.size == 1 else v.tobytes()
    if isinstance(v, bytes):
        return v.decode("utf8", "replace").rstrip("\x00")
    return str(v)


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise PermanentStageError(f"{path}: file does not exist")
    if not h5py.is_hdf5(path):
        raise PermanentStageError(f"{path}: not an HDF5 file (not UVH5)")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise PermanentStageError(f"{path}: cannot open HDF5 file (truncated or corrupt?): {exc}") from exc


def read_header(path) -> UVH5Header:
    """Read and validate the metadata of one UVH5 file."""
    path = Path(path)
    with _open(path) as f:
        try:
            return _read_header(f, path)
        except PermanentStageError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise PermanentStageError(f"{path}: unreadable UVH5 header (truncated or corrupt?): {exc}") from exc


def _read_header(f: h5py.File, path: Path) -> UVH5Header:
    if "Header" not in f or "Data" not in f:
        missing = [g for g in ("Header", "Data") if g not in f]
        raise PermanentStageError(f"{path}: not a UVH5 file (no {' or '.join(missing)} group)")
    h = f["Header"]
    missing = [k for k in _REQUIRED if k not in h]
    if missing:
        raise PermanentStageError(f"{path}: UVH5 header lacks {', '.join(missing)}")
    if "visdata" not in f["Data"]:
        raise PermanentStageError(f"{path}: UVH5 file has no Data/visdata")
    nblts = int(h["Nblts"][()])
    nfreqs = int(h["Nfreqs"][()])
    npols = int(h["Npols"][()])
    ntimes = int(h["Ntimes"][()])
    nspws = int(h["Nspws"][()]) if "Nspws" in h else 1
    vis = f["Data/visdata"]
    shape = tuple(vis.shape)
    if shape == (nblts, 1, nfreqs, npols):
        spw_axis = True
    elif shape == (nblts, nfreqs, npols):
        spw_axis = False
    else:
        raise PermanentStageError(
            f"{path}: Data/visdata shape {shape} does not match header "
            f"(Nblts={nblts}, Nfreqs={nfreqs}, Npols={npols})")
    for name in ("flags", "nsamples"):
        if name in f["Data"] and tuple(f["Data"][name].shape) != shape:
            raise PermanentStageError(f"{path}: Data/{name} shape {f['Data'][name].shape} != visdata {shape}")

    def arr(name, n=None, dtype=None):
        a = np.asarray(h[name][()])
        if dtype is not None:
            a = a.astype(dtype)
        if n is not None and a.shape[0] != n:
            raise PermanentStageError(f"{path}: Header/{name} has length {a.shape[0]}, expected {n}")
        return a

    ant1 = arr("ant_1_array", nblts, np.int64)
    ant2 = arr("ant_2_array", nblts, np.int64)
    times = arr("time_array", nblts, np.float64)
    uvw = arr("uvw_array", nblts, np.float64)
    if uvw.shape != (nblts, 3):
        raise PermanentStageError(f"{path}: Header/uvw_array shape {uvw.shape} != ({nblts}, 3)")
    freqs = np.asarray(h["freq_array"][()], dtype=np.float64).reshape(-1)
    if freqs.size != nfreqs:
        raise PermanentStageError(f"{path}: freq_array has {freqs.size} channels, Nfreqs = {nfreqs}")
    cw = np.asarray(h["channel_width"][()], dtype=np.float64) if "channel_width" in h else None
    if cw is None:
        cw = np.full(nfreqs, np.abs(np.diff(freqs)).min() if nfreqs > 1 else 1.0)
    cw = np.broadcast_to(np.abs(cw).reshape(-1) if cw.size > 1 else np.abs(cw).reshape(()), (nfreqs,)).copy()
    pols = arr("polarization_array", npols, np.int64)
    ant_nums = np.asarray(h["antenna_numbers"][()], dtype=np.int64)
    pos = np.asarray(h["antenna_positions"][()], dtype=np.float64)
    if pos.shape != (len(ant_nums), 3):
        raise PermanentStageError(f"{path}: antenna_positions shape {pos.shape} != ({len(ant_nums)}, 3)")
    if "antenna_names" in h:
        names = tuple(_str(n) if not isinstance(n, bytes) else n.decode() for n in h["antenna_names"][()])
    else:
        names = tuple(f"ANT{n}" for n in ant_nums)
    unknown = np.setdiff1d(np.union1d(ant1, ant2), ant_nums)
    if unknown.size:
        raise PermanentStageError(f"{path}: baselines use antennas {unknown.tolist()} not in antenna_numbers")
    if not np.all(np.isfinite(times)) or not np.all(np.isfinite(freqs)):
        raise PermanentStageError(f"{path}: non-finite time_array or freq_array")
    if len(np.unique(times)) != ntimes:
        raise PermanentStageError(f"{path}: {len(np.unique(times))} distinct times, header Ntimes = {ntimes}")
    inttime = arr("integration_time", nblts, np.float64) if "integration_time" in h else \
        np.full(nblts, np.median(np.diff(np.unique(times))) * 86400.0 if ntimes > 1 else 1.0)
    lst = arr("lst_array", nblts, np.float64) if "lst_array" in h else None

    extra = {}
    if "extra_keywords" in h:
        for k, v in h["extra_keywords"].items():
            val = v[()]
            if isinstance(val, bytes):
                val = val.decode("utf8", "replace")
            elif isinstance(val, np.generic):
                val = val.item()
            extra[k] = val
    pointing = extra.get("phase_center_dec")
    pointing = float(pointing) if isinstance(pointing, (int, float)) else None

    # phase information
    ra0 = dec0 = epoch = None
    frame = None
    cat_name = ""
    if "phase_center_catalog" in h:
        cat = h["phase_center_catalog"]
        entries = []
        for key in cat:
            grp = cat[key]
            if isinstance(grp, h5py.Group):
                entries.append({k: grp[k][()] for k in grp})
            else:  # older JSON-string storage
                import json

                entries.append(json.loads(_str(grp)))
        if "phase_center_id_array" in h:
            used = np.unique(h["phase_center_id_array"][()])
            if used.size > 1:
                raise PermanentStageError(f"{path}: {used.size} phase centres in one file are not supported")
        if len(entries) != 1:
            raise PermanentStageError(f"{path}: {len(entries)} phase-centre catalog entries are not supported")
        e = entries[0]
        ctype = _str(e.get("cat_type", "sidereal"))
        if ctype == "unprojected":
            ptype = "unprojected"
        elif ctype == "sidereal":
            ptype = "projected"
            ra0, dec0 = float(e["cat_lon"]), float(e["cat_lat"])
            frame = _str(e.get("cat_frame", "icrs"))
            epoch = float(e["cat_epoch"]) if e.get("cat_epoch") is not None else 2000.0
            cat_name = _str(e.get("cat_name", ""))
        else:
            raise PermanentStageError(f"{path}: phase centre type {ctype!r} is not supported")
    else:
        pt = _str(h["phase_type"]) if "phase_type" in h else "drift"
        if pt == "drift":
            ptype = "unprojected"
        elif pt == "phased":
            ptype = "projected"
            ra0 = float(h["phase_center_ra"][()])
            dec0 = float(h["phase_center_dec"][()])
            frame = _str(h["phase_center_frame"]) if "phase_center_frame" in h else "icrs"
            epoch = float(h["phase_center_epoch"][()]) if "phase_center_epoch" in h else 2000.0
        else:
            raise PermanentStageError(f"{path}: unknown phase_type {pt!r}")
    if ptype == "projected" and frame not in ("icrs", "fk5"):
        raise PermanentStageError(f"{path}: phase-centre frame {frame!r} is not supported (icrs/fk5 only)")

    diam = np.asarray(h["antenna_diameters"][()], dtype=float) if "antenna_diameters" in h else None
    return UVH5Header(
        path=str(path),
        telescope_name=_str(h["telescope_name"]),
        instrument=_str(h["instrument"]) if "instrument" in h else "",
        latitude_deg=float(h["latitude"][()]),
        longitude_deg=float(h["longitude"][()]),
        altitude_m=float(h["altitude"][()]),
        antenna_numbers=ant_nums,
        antenna_names=names,
        antenna_positions=pos,
        antenna_diameters=diam,
        ant_1_array=ant1,
        ant_2_array=ant2,
        time_array=times,
        lst_array=lst,
        integration_time=inttime,
        uvw_array=uvw,
        freq_array=freqs,
        channel_width=cw,
        polarization_array=pols,
        nblts=nblts,
        ntimes=ntimes,
        nfreqs=nfreqs,
        npols=npols,
        nspws=nspws,
        phase_type=ptype,
        phase_center_ra=ra0,
        phase_center_dec=dec0,
        phase_center_frame=frame,
        phase_center_epoch=epoch,
        pointing_dec=pointing,
        extra_keywords=extra,
        data_shape=shape,
        spw_axis=spw_axis,
        vis_units=_str(h["vis_units"]) if "vis_units" in h else "uncalib",
        history=_str(h["history"]) if "history" in h else "",
        object_name=_str(h["object_name"]) if "object_name" in h else cat_name,
    )


def read_visibilities(path, header: UVH5Header | None = None, *, out: np.ndarray | None = None,
                      flags_out: np.ndarray | None = None,
                      nsamples_out: np.ndarray | None = None):
    """Read ``visdata`` (and ``flags``/``nsamples``) of one file.

    Returns ``(vis, flags, nsamples)`` of shape ``(Nblts, Nfreqs, Npols)``
    (complex64, bool, float32).  Buffers given via ``out``/``flags_out``/
    ``nsamples_out`` (C-contiguous, right shape and dtype) are filled in place
    and returned, so one buffer can serve every subband.  ``nsamples`` is only
    read when ``nsamples_out`` is given (else None).
    """
    path = Path(path)
    if header is None:
        header = read_header(path)
    shape = (header.nblts, header.nfreqs, header.npols)

    def _buf(given, dtype, what):
        if given is None:
            return np.empty(shape, dtype)
        if given.shape != shape or given.dtype != dtype or not given.flags.c_contiguous:
            raise ValueError(f"{what} buffer must be C-contiguous {dtype} of shape {shape}")
        return given

    vis = _buf(out, np.complex64, "visibility")
    flags = _buf(flags_out, np.bool_, "flag")
    nsamp = _buf(nsamples_out, np.float32, "nsamples") if nsamples_out is not None else None
    file_shape = header.data_shape
    with _open(path) as f:
        try:
            d = f["Data"]
            dset = d["visdata"]
            if tuple(dset.shape) != file_shape:
                raise PermanentStageError(f"{path}: visdata shape changed to {dset.shape}")
            if dset.dtype == np.complex64:
                dset.read_direct(vis.reshape(file_shape))
            elif dset.dtype.names and set(dset.dtype.names) >= {"r", "i"}:
                raw = dset[()]
                vis.reshape(file_shape).real[...] = raw["r"]
                vis.reshape(file_shape).imag[...] = raw["i"]
            elif dset.dtype.kind == "c":
                vis.reshape(file_shape)[...] = dset[()]
            else:
                raise PermanentStageError(f"{path}: unsupported visdata dtype {dset.dtype}")
            if "flags" in d:
                d["flags"].read_direct(flags.reshape(file_shape))
            else:
                flags[...] = False
            if nsamp is not None:
                if "nsamples" in d:
                    ns = d["nsamples"]
                    if ns.dtype == np.float32:
                        ns.read_direct(nsamp.reshape(file_shape))
                    else:
                        nsamp.reshape(file_shape)[...] = ns[()]
                else:
                    nsamp[...] = 1.0
        except PermanentStageError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise PermanentStageError(
                f"{path}: cannot read visibilities (truncated or corrupt?): {exc}") from exc
    return vis, flags, nsamp


class UVH5RowReader:
    """Keeps one UVH5 file open and reads blocks of rows (blts) of its data.

    ``read_rows(start, stop, vis, flags, nsamples)`` fills the first
    ``stop - start`` rows of the given ``(n, Nfreqs, Npols)`` buffers.  Use as
    a context manager.  Rows are read as contiguous hyperslabs, so reading a
    whole file block by block costs the same I/O as one read.
    """

    def __init__(self, header: UVH5Header):
        self.header = header
        self.path = Path(header.path)
        self._f = _open(self.path)
        try:
            d = self._f["Data"]
            self._vis = d["visdata"]
            self._flags = d["flags"] if "flags" in d else None
            self._ns = d["nsamples"] if "nsamples" in d else None
            if tuple(self._vis.shape) != header.data_shape:
                raise PermanentStageError(f"{self.path}: visdata shape changed to {self._vis.shape}")
            dt = self._vis.dtype
            if dt == np.complex64:
                self._kind = "c64"
            elif dt.names and set(dt.names) >= {"r", "i"}:
                self._kind = "ri"
            elif dt.kind == "c":
                self._kind = "c"
            else:
                raise PermanentStageError(f"{self.path}: unsupported visdata dtype {dt}")
        except PermanentStageError:
            self._f.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self._f.close()
            raise PermanentStageError(f"{self.path}: cannot read visibilities (truncated or corrupt?): {exc}") from exc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self._f.close()
        except Exception:  # pragma: no cover
            pass

    def read_rows(self, start: int, stop: int, vis: np.ndarray, flags: np.ndarray,
                  nsamples: np.ndarray | None = None) -> None:
        n = stop - start
        h = self.header
        shp = (n, 1, h.nfreqs, h.npols) if h.spw_axis else (n, h.nfreqs, h.npols)
        sel = np.s_[start:stop]
        try:
            v = vis[:n]
            if self._kind == "c64":
                self._vis.read_direct(v.reshape(shp), source_sel=sel)
            elif self._kind == "ri":
                raw = self._vis[sel]
                v.real[...] = raw["r"].reshape(v.shape)
                v.imag[...] = raw["i"].reshape(v.shape)
            else:
                v[...] = self._vis[sel].reshape(v.shape)
            if self._flags is not None:
                self._flags.read_direct(flags[:n].reshape(shp), source_sel=sel)
            else:
                flags[:n] = False
            if nsamples is not None:
                if self._ns is None:
                    nsamples[:n] = 1.0
                elif self._ns.dtype == np.float32:
                    self._ns.read_direct(nsamples[:n].reshape(shp), source_sel=sel)
                else:
                    nsamples[:n] = self._ns[sel].reshape(nsamples[:n].shape)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise PermanentStageError(
                f"{self.path}: cannot read visibilities rows {start}..{stop} "
                f"(truncated or corrupt?): {exc}") from exc
