"""Read a measurement set into Stokes-I arrays for imaging.

Stokes I = (XX + YY) / 2 for linear feeds.  A visibility is used only when
both XX and YY are unflagged (and the row is not flagged); its weight is the
inverse variance of the mean, ``4 / (1/w_XX + 1/w_YY)``, taken from
WEIGHT_SPECTRUM when present and filled, else from WEIGHT (else 1).  Flagged
samples get weight 0.  Auto-correlations are dropped.  The data are read in
row chunks; python-casacore is not thread-safe, so call this from one thread.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from engine.errors import PermanentStageError, TransientStageError

# casacore Stokes enum values (casacore/measures/Measures/Stokes.h)
_XX, _YY, _RR, _LL, _I = 9, 12, 5, 8, 1


@dataclass
class MSData:
    uvw: np.ndarray  # (nrow, 3) float64, metres
    freq: np.ndarray  # (nchan,) float64, Hz
    vis: np.ndarray  # (nrow, nchan) complex64, Stokes I
    weight: np.ndarray  # (nrow, nchan) float32, 0 where flagged
    phase_dir: tuple[float, float]  # (ra, dec) radians
    phase_dir_frame: str  # "ICRS" or "FK5"
    time_range: tuple[float, float]  # MJD seconds (UTC), first/last sample centre
    exposure: float
    telescope: str
    observer: str
    data_column: str  # column actually read
    data_column_requested: str
    column_note: str  # why a fallback happened, "" otherwise
    nrows_total: int
    flagged_fraction: float
    read_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def nvis(self) -> int:
        return int(self.vis.size)

    @property
    def ref_freq(self) -> float:
        return float(np.mean(self.freq))

    @property
    def bandwidth(self) -> float:
        if self.freq.size > 1:
            return float(abs(self.freq[-1] - self.freq[0]) * self.freq.size / (self.freq.size - 1))
        return float(self.extra.get("chan_width", 0.0))


def _tables():
    from casacore import tables  # imported lazily: heavy

    return tables


def _column_ok(t, name: str) -> tuple[bool, str]:
    if name not in t.colnames():
        return False, f"{name} column absent"
    if t.nrows() and not t.iscelldefined(name, 0):
        return False, f"{name} column present but not filled"
    return True, ""


def choose_column(t, requested: str, fallback_to_data: bool = True) -> tuple[str, str]:
    ok, why = _column_ok(t, requested)
    if ok:
        return requested, ""
    if fallback_to_data and requested != "DATA":
        ok2, why2 = _column_ok(t, "DATA")
        if ok2:
            return "DATA", f"{why}; fell back to DATA"
        raise PermanentStageError(f"no usable data column: {why}; {why2}")
    raise PermanentStageError(f"data column unusable: {why}")


def auto_chan_average(freq: np.ndarray, umax_m: float, fov_deg: float, max_beta: float = 0.25,
                      theta_rad: float | None = None) -> int:
    """Largest divisor k of nchan keeping bandwidth smearing at the field edge small.

    beta = (k * dnu / nu_min) * (fov/2) / theta is the radial smearing at the
    edge of the field in units of theta, the expected restoring beam's minor
    axis FWHM if known (``theta_rad``), else the finest fringe 1/u_max.  For
    a Gaussian beam the peak loss is about (ln 2 / 3) * beta^2 (~1.4% at the
    field edge for beta = 0.25, much less inside).  Returns 1 if nothing
    qualifies.
    """
    nchan = freq.size
    if nchan < 2 or umax_m <= 0:
        return 1
    dnu = abs(float(freq[1] - freq[0]))
    numin = float(freq.min())
    theta = theta_rad if theta_rad else 1.0 / (umax_m * float(freq.max()) / 299792458.0)
    best = 1
    for k in range(1, nchan + 1):
        if nchan % k:
            continue
        beta = k * dnu / numin * np.radians(fov_deg) / 2.0 / theta
        if beta <= max_beta:
            best = k
    return best


def read_uvw(ms_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UVW of unflagged cross-correlation rows, CHAN_FREQ, row weights) — cheap planning read."""
    tables = _tables()
    if not os.path.isdir(ms_path):
        raise PermanentStageError(f"measurement set not found: {ms_path}")
    try:
        with tables.table(ms_path, ack=False, readonly=True) as t:
            a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
            keep = a1 != a2
            if "FLAG_ROW" in t.colnames():
                keep &= ~t.getcol("FLAG_ROW")
            uvw = t.getcol("UVW")[keep]
            w = t.getcol("WEIGHT")[keep].mean(axis=1).astype(np.float32) if "WEIGHT" in t.colnames() \
                else np.ones(int(keep.sum()), np.float32)
        with tables.table(os.path.join(ms_path, "SPECTRAL_WINDOW"), ack=False, readonly=True) as spw:
            freq = np.asarray(spw.getcell("CHAN_FREQ", 0), dtype=np.float64)
    except RuntimeError as exc:
        raise PermanentStageError(f"cannot read {ms_path}: {exc}") from exc
    return uvw, freq, w


def read_ms(
    ms_path: str,
    data_column: str = "CORRECTED_DATA",
    fallback_to_data: bool = True,
    chunk_rows: int = 20000,
    chan_average: int = 1,
    fov_deg: float | None = None,
) -> MSData:
    """Read Stokes I, weights, UVW and metadata from ``ms_path``.

    ``chan_average`` k > 1 averages k adjacent channels (weighted mean,
    weights summed, frequency = mean); 0 = automatic with
    ``auto_chan_average`` for ``fov_deg`` (k must divide nchan).

    Raises PermanentStageError for a missing/corrupt/unsupported MS and
    TransientStageError when the table is locked by another process.
    """
    t0 = time.perf_counter()
    tables = _tables()
    if not os.path.isdir(ms_path):
        raise PermanentStageError(f"measurement set not found: {ms_path}")
    try:
        t = tables.table(ms_path, ack=False, readonly=True, lockoptions="autonoread")
    except RuntimeError as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            raise TransientStageError(f"cannot open {ms_path}: {msg}") from exc
        raise PermanentStageError(f"cannot open {ms_path}: {msg}") from exc
    try:
        return _read_open(t, ms_path, data_column, fallback_to_data, chunk_rows, t0, chan_average, fov_deg)
    except (PermanentStageError, TransientStageError):
        raise
    except RuntimeError as exc:
        raise PermanentStageError(f"error reading {ms_path}: {exc}") from exc
    finally:
        t.close()


def _sub(tables, ms_path, name):
    return tables.table(os.path.join(ms_path, name), ack=False, readonly=True)


def _read_open(t, ms_path, data_column, fallback_to_data, chunk_rows, t0, chan_average=1, fov_deg=None) -> MSData:
    tables = _tables()
    nrow = t.nrows()
    if nrow == 0:
        raise PermanentStageError(f"{ms_path}: main table has no rows")
    column, note = choose_column(t, data_column, fallback_to_data)

    # --- subtables ---------------------------------------------------------
    spw = _sub(tables, ms_path, "SPECTRAL_WINDOW")
    if spw.nrows() != 1:
        raise PermanentStageError(f"{ms_path}: expected 1 spectral window, found {spw.nrows()}")
    freq = np.asarray(spw.getcell("CHAN_FREQ", 0), dtype=np.float64)
    chan_width = float(np.abs(spw.getcell("CHAN_WIDTH", 0)).mean()) if "CHAN_WIDTH" in spw.colnames() else 0.0
    spw.close()

    pol = _sub(tables, ms_path, "POLARIZATION")
    corr = [int(c) for c in pol.getcell("CORR_TYPE", 0)]
    pol.close()
    if _XX in corr and _YY in corr:
        ia, ib = corr.index(_XX), corr.index(_YY)
    elif _RR in corr and _LL in corr:
        ia, ib = corr.index(_RR), corr.index(_LL)
    elif corr == [_I]:
        ia = ib = 0
    else:
        raise PermanentStageError(f"{ms_path}: unsupported correlations {corr}")

    fld = _sub(tables, ms_path, "FIELD")
    pdir = np.asarray(fld.getcell("PHASE_DIR", 0), dtype=np.float64).reshape(-1, 2)[0]
    frame = "ICRS"
    try:
        ref = fld.getcolkeyword("PHASE_DIR", "MEASINFO").get("Ref", "J2000")
        frame = "ICRS" if str(ref).upper() == "ICRS" else "FK5"
    except RuntimeError:
        frame = "FK5"
    fld.close()
    field_ids = np.unique(t.getcol("FIELD_ID"))
    if field_ids.size != 1:
        raise PermanentStageError(f"{ms_path}: {field_ids.size} fields in one MS are not supported")
    ddids = np.unique(t.getcol("DATA_DESC_ID"))
    if ddids.size != 1:
        raise PermanentStageError(f"{ms_path}: {ddids.size} data descriptions are not supported")

    telescope, observer = "", ""
    try:
        obs = _sub(tables, ms_path, "OBSERVATION")
        if obs.nrows():
            telescope = str(obs.getcell("TELESCOPE_NAME", 0))
            if "OBSERVER" in obs.colnames():
                observer = str(obs.getcell("OBSERVER", 0))
        obs.close()
    except RuntimeError:
        pass

    times = t.getcol("TIME")
    exposure = float(np.median(t.getcol("EXPOSURE"))) if "EXPOSURE" in t.colnames() else 0.0
    a1 = t.getcol("ANTENNA1")
    a2 = t.getcol("ANTENNA2")
    cross = a1 != a2
    keep_rows = np.flatnonzero(cross)
    nkeep = keep_rows.size
    nchan_in = freq.size
    if chan_average == 0:
        uvw_all = t.getcol("UVW")[cross]
        umax = float(np.hypot(uvw_all[:, 0], uvw_all[:, 1]).max()) if nkeep else 0.0
        del uvw_all
        chan_average = auto_chan_average(freq, umax, fov_deg if fov_deg else 3.5)
    k_avg = int(chan_average)
    if k_avg < 1 or nchan_in % k_avg:
        raise PermanentStageError(f"chan_average={k_avg} does not divide {nchan_in} channels")
    nchan = nchan_in // k_avg
    if nkeep == 0:
        raise PermanentStageError(f"{ms_path}: no cross-correlation rows")

    has_ws = "WEIGHT_SPECTRUM" in t.colnames() and t.iscelldefined("WEIGHT_SPECTRUM", 0)
    has_w = "WEIGHT" in t.colnames()
    has_flagrow = "FLAG_ROW" in t.colnames()

    uvw = np.empty((nkeep, 3), dtype=np.float64)
    vis = np.empty((nkeep, nchan), dtype=np.complex64)
    wgt = np.empty((nkeep, nchan), dtype=np.float32)
    out = 0
    for start in range(0, nrow, chunk_rows):
        n = min(chunk_rows, nrow - start)
        sel = cross[start:start + n]
        k = int(sel.sum())
        if k == 0:
            continue
        d = t.getcol(column, startrow=start, nrow=n)[sel]
        f = t.getcol("FLAG", startrow=start, nrow=n)[sel]
        if d.shape[1] != nchan_in:
            raise PermanentStageError(f"{ms_path}: {column} has {d.shape[1]} channels, SPW has {nchan_in}")
        if has_ws:
            w = t.getcol("WEIGHT_SPECTRUM", startrow=start, nrow=n)[sel].astype(np.float32)
            wa, wb = w[:, :, ia], w[:, :, ib]
        elif has_w:
            w = t.getcol("WEIGHT", startrow=start, nrow=n)[sel].astype(np.float32)
            wa, wb = w[:, None, ia], w[:, None, ib]
        else:
            wa = wb = np.ones((k, 1), np.float32)
        good = ~(f[:, :, ia] | f[:, :, ib])
        if has_flagrow:
            good &= ~t.getcol("FLAG_ROW", startrow=start, nrow=n)[sel][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            wi = np.where((wa > 0) & (wb > 0), 4.0 / (1.0 / wa + 1.0 / wb), 0.0)
        wi = np.broadcast_to(wi, good.shape) * good
        v = d[:, :, ia] if ia == ib else 0.5 * (d[:, :, ia] + d[:, :, ib])
        finite = np.isfinite(v)
        if not finite.all():
            wi = wi * finite
            v = np.where(finite, v, 0)
        if k_avg > 1:
            wi = wi.reshape(k, nchan, k_avg)
            ws = wi.sum(axis=2)
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(ws > 0, (v.reshape(k, nchan, k_avg) * wi).sum(axis=2) / ws, 0)
            wi = ws
        vis[out:out + k] = v
        wgt[out:out + k] = wi
        uvw[out:out + k] = t.getcol("UVW", startrow=start, nrow=n)[sel]
        out += k
    assert out == nkeep
    if k_avg > 1:
        freq = freq.reshape(nchan, k_avg).mean(axis=1)
        chan_width *= k_avg
    flagged = float(np.count_nonzero(wgt == 0) / wgt.size)
    if flagged >= 1.0:
        raise PermanentStageError(f"{ms_path}: all cross-correlation data are flagged")
    return MSData(
        uvw=uvw,
        freq=freq,
        vis=vis,
        weight=wgt,
        phase_dir=(float(pdir[0]) % (2 * np.pi), float(pdir[1])),
        phase_dir_frame=frame,
        time_range=(float(times.min()), float(times.max())),
        exposure=exposure,
        telescope=telescope,
        observer=observer,
        data_column=column,
        data_column_requested=data_column,
        column_note=note,
        nrows_total=int(nrow),
        flagged_fraction=flagged,
        read_seconds=time.perf_counter() - t0,
        extra={"chan_width": chan_width, "n_autocorr_rows": int(nrow - nkeep),
               "chan_average": k_avg, "nchan_ms": int(nchan_in)},
    )
