"""Calibration solutions as casacore tables in the CASA calibration-table layout.

Main table (one row per solution interval and antenna, CASA "NewCalTable"):
TIME, INTERVAL, FIELD_ID, SPECTRAL_WINDOW_ID, ANTENNA1, ANTENNA2 (= reference
antenna), SCAN_NUMBER, OBSERVATION_ID, CPARAM (complex [nchan, npol] per row;
nchan = 1 for gains), PARAMERR, FLAG, SNR, WEIGHT.  Table keywords ParType =
'Complex', VisCal = 'B Jones' or 'G Jones', PolBasis, MSName and the subtables
ANTENNA, FIELD, SPECTRAL_WINDOW, OBSERVATION, HISTORY copied from the MS (the
gain table's SPECTRAL_WINDOW holds one channel spanning the band).  Table info
type 'Calibration', subType = VisCal.

Tables are written under a temporary name next to the target and renamed into
place, so a reader never sees a half-written table.  python-casacore is not
thread-safe: call these from one thread per process.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import PermanentStageError, TransientStageError

from .solver import SolveResult

__all__ = ["CalTable", "write_caltable", "write_bandpass_table", "write_gain_table", "read_caltable"]

_MJD_UNIX_OFFSET_S = 40587.0 * 86400.0


@dataclass
class CalTable:
    vis_cal: str                 # 'B Jones' or 'G Jones'
    times: np.ndarray            # (nsol,) MJD seconds
    intervals: np.ndarray        # (nsol,) s
    cparam: np.ndarray           # (nsol, nant, nchan, npol) complex64
    flags: np.ndarray            # (nsol, nant, nchan, npol) bool
    snr: np.ndarray              # (nsol, nant, nchan, npol) float32
    paramerr: np.ndarray         # (nsol, nant, nchan, npol) float32
    refant: int
    freqs: np.ndarray            # (nchan,) Hz
    ms_name: str
    field_id: int
    spw_id: int
    antenna_names: list


def _tables():
    try:
        from casacore import tables
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise PermanentStageError(f"python-casacore unavailable: {exc}") from exc
    return tables


def _open(path: str, readonly: bool = True):
    tables = _tables()
    if not os.path.isdir(path):
        raise PermanentStageError(f"{path}: table not found")
    try:
        return tables.table(path, readonly=readonly, ack=False)
    except RuntimeError as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            raise TransientStageError(f"{path}: table locked: {msg}") from exc
        raise PermanentStageError(f"{path}: cannot open table: {msg}") from exc


def _main_desc(tables):
    time_kw = {"QuantumUnits": ["s"], "MEASINFO": {"type": "epoch", "Ref": "UTC"}}
    cols = [
        tables.makescacoldesc("TIME", 0.0, keywords=time_kw),
        tables.makescacoldesc("FIELD_ID", 0),
        tables.makescacoldesc("SPECTRAL_WINDOW_ID", 0),
        tables.makescacoldesc("ANTENNA1", 0),
        tables.makescacoldesc("ANTENNA2", 0),
        tables.makescacoldesc("INTERVAL", 0.0, keywords={"QuantumUnits": ["s"]}),
        tables.makescacoldesc("SCAN_NUMBER", 0),
        tables.makescacoldesc("OBSERVATION_ID", 0),
        tables.makearrcoldesc("CPARAM", 0j, ndim=2, valuetype="complex"),
        tables.makearrcoldesc("PARAMERR", 0.0, ndim=2, valuetype="float"),
        tables.makearrcoldesc("FLAG", False, ndim=2),
        tables.makearrcoldesc("SNR", 0.0, ndim=2, valuetype="float"),
        tables.makearrcoldesc("WEIGHT", 0.0, ndim=2, valuetype="float"),
    ]
    return tables.maketabdesc(cols)


def _copy_subtable(tables, ms_path: str, name: str, dst: str, copynorows: bool = False) -> bool:
    src = os.path.join(ms_path, name)
    if not os.path.isdir(src):
        return False
    t = tables.table(src, ack=False)
    try:
        t.copy(dst, deep=True, copynorows=copynorows).close()
    finally:
        t.close()
    return True


def write_caltable(path: str | os.PathLike, vis_cal: str, times: np.ndarray, intervals: np.ndarray,
                   cparam: np.ndarray, flags: np.ndarray, snr: np.ndarray, ms_path: str | os.PathLike, *,
                   refant: int = 0, field_id: int = 0, spw_id: int = 0, scan_number: int = 1,
                   observation_id: int = 0, pol_basis: str = "LINEAR",
                   history: str = "") -> str:
    """Write a CASA-layout calibration table.

    cparam/flags/snr: (nsol, nant, nchan, npol).  The subtables are copied from
    ``ms_path``; for a one-channel table (gains) the SPECTRAL_WINDOW row is
    collapsed to one channel covering the band.  Returns the final path.
    """
    tables = _tables()
    final = str(Path(path).resolve())
    ms_path = str(Path(ms_path).resolve())
    cparam = np.asarray(cparam, dtype=np.complex64)
    nsol, nant, nchan, npol = cparam.shape
    flags = np.asarray(flags, dtype=bool).reshape(cparam.shape)
    snr = np.asarray(snr, dtype=np.float32).reshape(cparam.shape)
    times = np.asarray(times, dtype=np.float64).reshape(nsol)
    intervals = np.asarray(intervals, dtype=np.float64).reshape(nsol)
    amp = np.abs(cparam)
    with np.errstate(divide="ignore", invalid="ignore"):
        perr = np.where((snr > 0) & ~flags, amp / snr, 0.0).astype(np.float32)
        weight = np.where(perr > 0, 1.0 / perr ** 2, 0.0).astype(np.float32)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        t = tables.table(tmp, _main_desc(tables), nrow=nsol * nant, ack=False)
        try:
            t.putcol("TIME", np.repeat(times, nant))
            t.putcol("INTERVAL", np.repeat(intervals, nant))
            t.putcol("FIELD_ID", np.full(nsol * nant, field_id, np.int32))
            t.putcol("SPECTRAL_WINDOW_ID", np.full(nsol * nant, spw_id, np.int32))
            t.putcol("ANTENNA1", np.tile(np.arange(nant, dtype=np.int32), nsol))
            t.putcol("ANTENNA2", np.full(nsol * nant, refant, np.int32))
            t.putcol("SCAN_NUMBER", np.full(nsol * nant, scan_number, np.int32))
            t.putcol("OBSERVATION_ID", np.full(nsol * nant, observation_id, np.int32))
            t.putcol("CPARAM", cparam.reshape(nsol * nant, nchan, npol))
            t.putcol("PARAMERR", perr.reshape(nsol * nant, nchan, npol))
            t.putcol("FLAG", flags.reshape(nsol * nant, nchan, npol))
            t.putcol("SNR", snr.reshape(nsol * nant, nchan, npol))
            t.putcol("WEIGHT", weight.reshape(nsol * nant, nchan, npol))
            t.putkeyword("ParType", "Complex")
            t.putkeyword("MSName", os.path.basename(ms_path))
            t.putkeyword("VisCal", vis_cal)
            t.putkeyword("PolBasis", pol_basis)
            t.putkeyword("CASA_Version", "contimg-console")
            t.putinfo({"type": "Calibration", "subType": vis_cal,
                       "readme": f"Written by engine.calibration.caltable from {ms_path}"})
            for name in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION"):
                dst = os.path.join(tmp, name)
                if _copy_subtable(tables, ms_path, name, dst):
                    t.putkeyword(name, "Table: " + dst)
            hdst = os.path.join(tmp, "HISTORY")
            if _copy_subtable(tables, ms_path, "HISTORY", hdst, copynorows=True):
                t.putkeyword("HISTORY", "Table: " + hdst)
                h = tables.table(hdst, readonly=False, ack=False)
                try:
                    h.addrows(1)
                    h.putcell("TIME", 0, (time.time() / 86400.0 + 40587.0) * 86400.0)
                    h.putcell("MESSAGE", 0, history or f"{vis_cal} solutions, refant {refant}")
                    h.putcell("PRIORITY", 0, "NORMAL")
                    h.putcell("ORIGIN", 0, "engine.calibration")
                    h.putcell("APPLICATION", 0, "contimg-console")
                finally:
                    h.close()
        finally:
            t.close()
        if nchan == 1 and os.path.isdir(os.path.join(tmp, "SPECTRAL_WINDOW")):
            _collapse_spw(tables, os.path.join(tmp, "SPECTRAL_WINDOW"), spw_id)
        # atomic-ish replace: move the old table aside, rename the new one in, remove the old
        old = None
        if os.path.exists(final):
            old = final + f".old-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        os.rename(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except RuntimeError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if "lock" in str(exc).lower():
            raise TransientStageError(f"{final}: {exc}") from exc
        raise PermanentStageError(f"{final}: cannot write calibration table: {exc}") from exc
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TransientStageError(f"{final}: cannot write calibration table: {exc}") from exc
    return final


def _collapse_spw(tables, spw_path: str, spw_id: int) -> None:
    s = tables.table(spw_path, readonly=False, ack=False)
    try:
        if spw_id >= s.nrows():
            return
        f = np.asarray(s.getcell("CHAN_FREQ", spw_id), dtype=np.float64)
        w = np.asarray(s.getcell("CHAN_WIDTH", spw_id), dtype=np.float64)
        total = float(np.abs(w).sum())
        s.putcell("NUM_CHAN", spw_id, 1)
        s.putcell("CHAN_FREQ", spw_id, np.array([f.mean()]))
        for col in ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            if col in s.colnames():
                s.putcell(col, spw_id, np.array([total]))
        if "REF_FREQUENCY" in s.colnames():
            s.putcell("REF_FREQUENCY", spw_id, float(f.mean()))
    finally:
        s.close()


def write_bandpass_table(path, result: SolveResult, ms_path, **kw) -> str:
    """B Jones table: one solution (mid-time of the data, interval = span) per antenna."""
    t0 = float(result.gain_times[0] - 0.5 * result.gain_intervals[0])
    t1 = float(result.gain_times[-1] + 0.5 * result.gain_intervals[-1])
    return write_caltable(path, "B Jones", np.array([0.5 * (t0 + t1)]), np.array([t1 - t0]),
                          result.bandpass[None], result.bandpass_flags[None], result.bandpass_snr[None],
                          ms_path, refant=result.refant, **kw)


def write_gain_table(path, result: SolveResult, ms_path, **kw) -> str:
    """G Jones table: one row per solution interval and antenna, one channel."""
    return write_caltable(path, "G Jones", result.gain_times, result.gain_intervals,
                          result.gains[:, :, None, :], result.gain_flags[:, :, None, :],
                          result.gain_snr[:, :, None, :], ms_path, refant=result.refant, **kw)


def read_caltable(path: str | os.PathLike) -> CalTable:
    """Read a table written by :func:`write_caltable` (or a CASA B/G table with
    one spectral window and the same row layout)."""
    p = str(path)
    t = _open(p)
    try:
        kw = t.getkeywords()
        if kw.get("ParType") != "Complex":
            raise PermanentStageError(f"{p}: not a complex calibration table (ParType={kw.get('ParType')!r})")
        vis_cal = str(kw.get("VisCal", ""))
        times = t.getcol("TIME")
        ant = t.getcol("ANTENNA1")
        cp = t.getcol("CPARAM")
        fl = t.getcol("FLAG")
        snr = t.getcol("SNR")
        perr = t.getcol("PARAMERR")
        ant2 = t.getcol("ANTENNA2")
        interval = t.getcol("INTERVAL")
        field = t.getcol("FIELD_ID")
        spw = t.getcol("SPECTRAL_WINDOW_ID")
        ms_name = str(kw.get("MSName", ""))
        freqs = np.array([])
        names: list = []
        try:
            s = _tables().table(p + "/SPECTRAL_WINDOW", ack=False)
            freqs = np.asarray(s.getcell("CHAN_FREQ", int(spw[0]) if spw.size else 0), dtype=np.float64)
            s.close()
        except RuntimeError:
            pass
        try:
            a = _tables().table(p + "/ANTENNA", ack=False)
            names = list(a.getcol("NAME"))
            a.close()
        except RuntimeError:
            pass
    finally:
        t.close()
    utimes, tidx = np.unique(times, return_inverse=True)
    nant = int(ant.max()) + 1 if ant.size else 0
    nsol = utimes.size
    shape = (nsol, nant) + cp.shape[1:]
    cparam = np.zeros(shape, np.complex64)
    flags = np.ones(shape, bool)
    snr_a = np.zeros(shape, np.float32)
    perr_a = np.zeros(shape, np.float32)
    cparam[tidx, ant] = cp
    flags[tidx, ant] = fl
    snr_a[tidx, ant] = snr
    perr_a[tidx, ant] = perr
    intervals = np.zeros(nsol)
    intervals[tidx] = interval
    return CalTable(vis_cal, utimes, intervals, cparam, flags, snr_a, perr_a,
                    int(ant2[0]) if ant2.size else -1, freqs, ms_name,
                    int(field[0]) if field.size else 0, int(spw[0]) if spw.size else 0, names)
