"""Reading an MS for the solver and applying solutions (the solve stage is in ``solve_ms``).

* :func:`read_ms_for_solve` reads DATA, FLAG, UVW, TIME, antennas, channel
  frequencies and the phase centre into (ntime, nbl, nchan, npol) arrays.
* :func:`apply_calibration` writes CORRECTED_DATA = DATA / (G_p B_p (G_q B_q)^*)
  in row chunks, gains interpolated in time (amplitude linear, phase along the
  shorter arc), and flags data whose solutions are flagged.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine.errors import PermanentStageError, TransientStageError

from .caltable import CalTable, read_caltable
from .flagging import flag_rfi
from .interpolate import interpolate_in_time
from .solver import SolveResult

__all__ = ["MSData", "read_ms_for_solve", "apply_to_arrays", "apply_calibration", "flag_ms", "store_flags"]


def _tables():
    from casacore import tables
    return tables


def _open_ms(path: str, readonly: bool = True):
    tables = _tables()
    if not os.path.isdir(path):
        raise PermanentStageError(f"{path}: measurement set not found")
    try:
        return tables.table(path, readonly=readonly, ack=False)
    except RuntimeError as exc:
        if "lock" in str(exc).lower():
            raise TransientStageError(f"{path}: MS locked: {exc}") from exc
        raise PermanentStageError(f"{path}: cannot open MS: {exc}") from exc


@dataclass
class MSData:
    vis: np.ndarray            # (ntime, nbl, nchan, npol) complex64
    flags: np.ndarray          # (ntime, nbl, nchan, npol) bool
    ant1: np.ndarray           # (nbl,)
    ant2: np.ndarray           # (nbl,)
    uvw: np.ndarray            # (ntime, nbl, 3) m
    times: np.ndarray          # (ntime,) MJD seconds (MS TIME)
    freqs: np.ndarray          # (nchan,) Hz
    phase_centre: tuple        # (ra, dec) rad, FIELD PHASE_DIR of the first field
    nant: int
    antenna_names: list
    rows: np.ndarray           # (ntime, nbl) MS row of each sample, -1 where missing
    pol_index: np.ndarray      # MS correlation indices used (XX, YY)
    reversed_channels: bool = False   # MS channels were descending (arrays are ascending)
    ms_ncorr: int = 0                 # correlations in the MS

    def as_rows(self, flags: np.ndarray | None = None):
        """(vis, flags) as (nrow, nchan, npol) views in MS row order (for
        :func:`apply_calibration` from memory), or None when the arrays are not a plain
        reshape of the MS rows (other row order, missing rows, selected correlations or
        reversed channels).  ``flags``: another flag cube of the same shape instead of
        the flags read."""
        T, Nb, C, P = self.vis.shape
        if self.reversed_channels or P != self.ms_ncorr or not np.array_equal(self.pol_index, np.arange(P)):
            return None
        if not np.array_equal(self.rows.ravel(), np.arange(T * Nb)):
            return None
        f = self.flags if flags is None else flags
        return self.vis.reshape(T * Nb, C, P), f.reshape(T * Nb, C, P)


_READ_CHUNK_BYTES = 64 << 20


def _read_array_column(t, col: str, rows_per_chunk: int, n: int, dest, pol_index: np.ndarray | None,
                       reverse_chan: bool, row_map=None) -> None:
    """Read array column ``col`` into ``dest`` (nrow, nchan, npol) or, with row_map, into
    ``dest[row_map[r]]`` (a pair of index arrays), with getcolnp into preallocated buffers
    (python-casacore's getcol allocates and converts much more slowly).  pol_index selects
    correlations; reverse_chan flips the channel axis."""
    nchan_c, ncorr = t.getcell(col, 0).shape
    kind = t.coldatatype(col)
    direct = row_map is None and pol_index is None and not reverse_chan and \
        ((kind == "complex" and dest.dtype == np.complex64) or (kind == "boolean" and dest.dtype == bool))
    if direct:
        for r0 in range(0, n, rows_per_chunk):
            m = min(rows_per_chunk, n - r0)
            t.getcolnp(col, dest[r0:r0 + m], startrow=r0, nrow=m)
        return
    bdt = {"complex": np.complex64, "dcomplex": np.complex128, "boolean": bool}.get(kind)
    buf = np.empty((min(rows_per_chunk, n), nchan_c, ncorr), bdt) if bdt is not None else None
    for r0 in range(0, n, rows_per_chunk):
        m = min(rows_per_chunk, n - r0)
        if buf is not None:
            b = buf[:m]
            t.getcolnp(col, b, startrow=r0, nrow=m)
        else:
            b = t.getcol(col, startrow=r0, nrow=m)
        if pol_index is not None:
            b = b[:, :, pol_index]
        if reverse_chan:
            b = b[:, ::-1]
        if row_map is None:
            dest[r0:r0 + m] = b
        else:
            dest[row_map[0][r0:r0 + m], row_map[1][r0:r0 + m]] = b


def read_ms_for_solve(ms_path: str | os.PathLike, *, datacolumn: str = "DATA") -> MSData:
    """Read one-SPW MS into solver arrays (missing rows are flagged).

    The data and flag columns are read in chunks of rows straight into the
    preallocated (ntime, nbl, nchan, npol) arrays (no intermediate copy when the
    rows are time-major in baseline order, as the converter writes them)."""
    tables = _tables()
    path = str(ms_path)
    try:
        with tables.table(path + "/DATA_DESCRIPTION", ack=False) as dd:
            dd_spw = dd.getcol("SPECTRAL_WINDOW_ID")
            dd_pol = dd.getcol("POLARIZATION_ID")
    except RuntimeError:
        dd_spw = dd_pol = None
    t = _open_ms(path)
    try:
        if datacolumn not in t.colnames():
            raise PermanentStageError(f"{path}: no {datacolumn} column")
        ddid = t.getcol("DATA_DESC_ID")
        if ddid.size == 0:
            raise PermanentStageError(f"{path}: MS has no rows")
        if np.any(ddid != ddid[0]):
            raise PermanentStageError(f"{path}: more than one DATA_DESC_ID; one spectral window expected")
        if dd_spw is None or int(ddid[0]) >= len(dd_spw):
            raise PermanentStageError(f"{path}: DATA_DESCRIPTION row {int(ddid[0])} missing")
        spw, polid = int(dd_spw[int(ddid[0])]), int(dd_pol[int(ddid[0])])
        with tables.table(path + "/SPECTRAL_WINDOW", ack=False) as s:
            freqs = np.asarray(s.getcell("CHAN_FREQ", spw), dtype=np.float64)
        with tables.table(path + "/POLARIZATION", ack=False) as p:
            corr = np.asarray(p.getcell("CORR_TYPE", polid))
        with tables.table(path + "/FIELD", ack=False) as f:
            pd = np.asarray(f.getcell("PHASE_DIR", 0), dtype=np.float64).reshape(-1, 2)[0]
        with tables.table(path + "/ANTENNA", ack=False) as a:
            names = list(a.getcol("NAME"))
        times_row = t.getcol("TIME")
        a1 = t.getcol("ANTENNA1")
        a2 = t.getcol("ANTENNA2")
        uvw_row = t.getcol("UVW")
        nrow = times_row.size
        cell = t.getcell(datacolumn, 0).shape                     # (nchan, ncorr)
        nchan = cell[0]
        # XX, YY (CASA Stokes codes 9, 12); fall back to the first and last correlation
        want = [int(np.nonzero(corr == c)[0][0]) for c in (9, 12) if np.any(corr == c)]
        pol_index = np.array(want if len(want) == 2 else ([0, corr.size - 1] if corr.size > 1 else [0]))
        if freqs.size != nchan:
            raise PermanentStageError(f"{path}: {nchan} channels in {datacolumn} but {freqs.size} in SPECTRAL_WINDOW")
        descending = nchan > 1 and freqs[1] < freqs[0]
        if descending:   # make ascending
            freqs = freqs[::-1]
        sel = None if (cell[1] == pol_index.size and np.array_equal(pol_index, np.arange(cell[1]))) else pol_index
        utimes, tidx = np.unique(times_row, return_inverse=True)
        nant = int(max(a1.max(), a2.max(), len(names) - 1) + 1)
        key = a1.astype(np.int64) * nant + a2
        ukey, bidx = np.unique(key, return_inverse=True)
        T, Nb, P = utimes.size, ukey.size, pol_index.size
        ant1 = (ukey // nant).astype(np.int32)
        ant2 = (ukey % nant).astype(np.int32)
        regular = nrow == T * Nb and np.array_equal(tidx, np.repeat(np.arange(T), Nb)) \
            and np.array_equal(bidx, np.tile(np.arange(Nb), T))
        vis = np.empty((T, Nb, nchan, P), np.complex64)
        chunk = max(1, _READ_CHUNK_BYTES // (nchan * cell[1] * 8))
        if regular:
            flags = np.empty((T, Nb, nchan, P), bool)
            _read_array_column(t, datacolumn, chunk, nrow, vis.reshape(nrow, nchan, P), sel, descending)
            _read_array_column(t, "FLAG", chunk, nrow, flags.reshape(nrow, nchan, P), sel, descending)
            uvw = uvw_row.reshape(T, Nb, 3)
            rows = np.arange(nrow).reshape(T, Nb)
        else:
            vis[:] = 0
            flags = np.ones((T, Nb, nchan, P), bool)
            _read_array_column(t, datacolumn, chunk, nrow, vis, sel, descending, (tidx, bidx))
            _read_array_column(t, "FLAG", chunk, nrow, flags, sel, descending, (tidx, bidx))
            uvw = np.zeros((T, Nb, 3))
            rows = np.full((T, Nb), -1, np.int64)
            uvw[tidx, bidx] = uvw_row
            rows[tidx, bidx] = np.arange(nrow)
        if "FLAG_ROW" in t.colnames():
            fr = t.getcol("FLAG_ROW")
            if fr.any():
                r = np.nonzero(fr)[0]
                flags[tidx[r], bidx[r]] = True
    except RuntimeError as exc:
        raise PermanentStageError(f"{path}: cannot read main table: {exc}") from exc
    finally:
        t.close()
    return MSData(vis, flags, ant1, ant2, uvw, utimes, freqs, (float(pd[0]), float(pd[1])), nant,
                  names, rows, pol_index, bool(descending), int(cell[1]))


def apply_to_arrays(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                    row_times: np.ndarray, bandpass: np.ndarray, bandpass_flags: np.ndarray,
                    gain_times: np.ndarray, gains: np.ndarray, gain_flags: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Correct rows of data: vis/flags (nrow, nchan, npol), ant1/ant2/row_times (nrow,),
    bandpass (nant, nchan, npol), gains (K, nant, npol) at gain_times (K,).

    corrected = V / (J_p J_q^*) with J = G(t) B, computed as V (1/J_p) conj(1/J_q)
    from per-antenna inverses at the chunk's distinct times.  Returns
    (corrected complex64, flags | flagged-solution mask)."""
    ut, inv = np.unique(row_times, return_inverse=True)
    g, gf = interpolate_in_time(gain_times, gains, gain_flags, ut)             # (Nu, nant, P)
    bf = bandpass_flags | (bandpass == 0) | ~np.isfinite(bandpass)
    J = bandpass[None].astype(np.complex128) * g[:, :, None, :]               # (Nu, nant, C, P)
    Jf = bf[None] | gf[:, :, None, :] | (J == 0) | ~np.isfinite(J)
    Jinv = np.where(Jf, 0, 1.0 / np.where(Jf, 1, J)).astype(np.complex64)
    out = Jinv[inv, ant1]
    out *= vis
    j2 = Jinv[inv, ant2]
    np.conj(j2, out=j2)
    out *= j2
    del j2
    # flagged solutions have Jinv = 0, so their corrected data are already 0
    if not Jf.any():
        return out, flags
    bad = Jf[inv, ant1]
    bad |= Jf[inv, ant2]
    bad |= flags
    return out, bad


def _as_caltable(x) -> CalTable:
    if isinstance(x, CalTable):
        return x
    return read_caltable(str(x))


class _Corrector:
    """Solutions prepared for applying to MS rows in chunks:
    corrected = V * BB[baseline] * gg[time, baseline] with the per-baseline bandpass
    factor BB = (1/B_p) conj(1/B_q) (computed once) and the per-integration gain
    factor gg = (1/g_p(t)) conj(1/g_q(t)) (gains interpolated to each distinct row
    time).  Flagged or zero solutions give 0 and flag the data."""

    def __init__(self, B, Bf, gt, G, Gf, a1_rows, a2_rows, t_rows):
        B = np.asarray(B)
        nant = int(max(B.shape[0], int(a1_rows.max()) + 1, int(a2_rows.max()) + 1))
        ut, self.tinv = np.unique(t_rows, return_inverse=True)
        g, gf = interpolate_in_time(gt, G, Gf, ut)                              # (Nu, nant, P)
        gf = gf | (g == 0) | ~np.isfinite(g)
        self.ginv = np.where(gf, 0, 1.0 / np.where(gf, 1, g)).astype(np.complex64)
        self.gbad = gf if gf.any() else None
        bf = np.asarray(Bf, bool) | (B == 0) | ~np.isfinite(B)
        Binv = np.where(bf, 0, 1.0 / np.where(bf, 1, B)).astype(np.complex64)  # (nant, C, P)
        key = a1_rows.astype(np.int64) * nant + a2_rows
        ukey, self.bidx = np.unique(key, return_inverse=True)
        ua1, ua2 = ukey // nant, ukey % nant
        self.BB = np.empty((ukey.size,) + Binv.shape[1:], np.complex64)           # (Nbl, C, P)
        for k0 in range(0, ukey.size, 512):                                     # no cube-sized temporaries
            k = slice(k0, k0 + 512)
            np.multiply(Binv[ua1[k]], np.conj(Binv[ua2[k]]), out=self.BB[k])
        self.Bbad = (bf[ua1] | bf[ua2]) if bf.any() else None
        self.a1, self.a2 = a1_rows, a2_rows

    def rows(self, r0: int, r1: int, data: np.ndarray, out: np.ndarray, flag: np.ndarray | None):
        """Correct rows r0:r1 (data (n, C, P) -> out); returns the flags with flagged solutions
        added (None when no solution of these rows is flagged).  Runs of consecutive
        baselines (a time slice of a time-major MS) use slices of the bandpass factors."""
        b = self.bidx[r0:r1]
        if b.size == 0:
            return None
        cuts = np.nonzero(np.diff(b) != 1)[0] + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [b.size]])
        if starts.size > 8:   # irregular order: one gather
            runs = [(0, b.size, self.BB[b], None if self.Bbad is None else self.Bbad[b])]
        else:
            runs = [(i0, i1, self.BB[b[i0]:b[i0] + i1 - i0],
                     None if self.Bbad is None else self.Bbad[b[i0]:b[i0] + i1 - i0])
                    for i0, i1 in zip(starts.tolist(), ends.tolist())]
        ti = self.tinv[r0:r1]
        a1, a2 = self.a1[r0:r1], self.a2[r0:r1]
        gg = self.ginv[ti, a1] * np.conj(self.ginv[ti, a2])                      # (n, P)
        for i0, i1, BB, _ in runs:
            np.multiply(data[i0:i1], BB, out=out[i0:i1])
        for p in range(out.shape[2]):   # per polarisation: long strided rows beat a 2-wide broadcast
            np.multiply(out[:, :, p], gg[:, p:p + 1], out=out[:, :, p])
        if flag is None or (self.gbad is None and self.Bbad is None):
            return None
        bad = None
        if self.Bbad is not None:
            bad = np.empty_like(flag)
            for i0, i1, _, Bb in runs:
                np.logical_or(flag[i0:i1], Bb, out=bad[i0:i1])
        if self.gbad is not None:
            gb = self.gbad[ti, a1] | self.gbad[ti, a2]                           # (n, P)
            rows_bad = np.nonzero(gb.any(axis=1))[0]
            if rows_bad.size:
                if bad is None:
                    bad = flag.copy()
                bad[rows_bad] |= gb[rows_bad][:, None, :]
        return bad


def apply_calibration(ms_path: str | os.PathLike, bandpass, gains, *, datacolumn: str = "DATA",
                      out_column: str = "CORRECTED_DATA", chunk_rows: int | None = None,
                      update_flags: bool = True, threads: int = 2, data: np.ndarray | None = None,
                      data_flags: np.ndarray | None = None) -> dict:
    """Write ``out_column`` = data / (G_p B_p (G_q B_q)^*) for every row.

    bandpass/gains: table paths, CalTable objects or a SolveResult (for both).
    Flagged solutions flag the data (written to FLAG when update_flags; chunks
    whose flags do not change are not rewritten).  Rows are read and written in
    chunks of ``chunk_rows`` (default ~32 MB of data) with getcolnp/putcol from
    reused buffers; the arithmetic of each chunk is shared among ``threads``
    threads (casacore itself is only called from this thread).
    ``data`` / ``data_flags``: the data column and the flags already in memory as
    (nrow, nchan, ncorr) in MS row order (:meth:`MSData.as_rows`), so that they are
    not read again; with ``data_flags`` the FLAG column is written in full
    (data_flags | flagged solutions).
    Returns counts of rows and newly flagged samples (relative to the flags used).
    """
    tables = _tables()
    path = str(ms_path)
    if isinstance(bandpass, SolveResult):
        res = bandpass
        B, Bf = res.bandpass, res.bandpass_flags
        gt, G, Gf = res.gain_times, res.gains, res.gain_flags
    else:
        bt, gtab = _as_caltable(bandpass), _as_caltable(gains)
        if not bt.vis_cal.startswith("B"):
            raise PermanentStageError(f"{bandpass}: expected a B Jones table, got {bt.vis_cal!r}")
        if not gtab.vis_cal.startswith("G"):
            raise PermanentStageError(f"{gains}: expected a G Jones table, got {gtab.vis_cal!r}")
        B, Bf = bt.cparam[0], bt.flags[0]
        gt, G, Gf = gtab.times, gtab.cparam[:, :, 0, :], gtab.flags[:, :, 0, :]
    t = _open_ms(path, readonly=False)
    newly = 0
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        nrow = t.nrows()
        if out_column not in t.colnames():
            desc = t.getcoldesc(datacolumn)
            desc["comment"] = "calibrated data"
            dm = t.getdminfo(datacolumn)
            dm["NAME"] = f"{out_column}_dm"
            t.addcols(tables.maketabdesc(tables.makecoldesc(out_column, desc)), dm)
        with tables.table(path + "/SPECTRAL_WINDOW", ack=False) as s:
            fr = np.asarray(s.getcell("CHAN_FREQ", 0))
        descending = fr.size > 1 and fr[1] < fr[0]
        with tables.table(path + "/POLARIZATION", ack=False) as p:
            corr = np.asarray(p.getcell("CORR_TYPE", 0))
        P = B.shape[2]
        if corr.size != P:
            raise PermanentStageError(f"{path}: {corr.size} correlations but solutions have {P}")
        if B.shape[1] != fr.size:
            raise PermanentStageError(f"{path}: {fr.size} channels but bandpass has {B.shape[1]}")
        Bm, Bfm = (B[:, ::-1], Bf[:, ::-1]) if descending else (B, Bf)
        C = fr.size
        if nrow == 0:
            return {"rows": 0, "newly_flagged": 0}
        for name, x in (("data", data), ("data_flags", data_flags)):
            if x is not None and x.shape != (nrow, C, P):
                raise ValueError(f"{name} shape {x.shape} does not match the MS ({nrow}, {C}, {P})")
        a1_all = t.getcol("ANTENNA1")
        a2_all = t.getcol("ANTENNA2")
        corrector = _Corrector(Bm, Bfm, gt, G, Gf, a1_all, a2_all, t.getcol("TIME"))
        step = int(chunk_rows) if chunk_rows else max(1, (32 << 20) // (C * P * 8))
        step = min(step, nrow)
        complex_in = t.coldatatype(datacolumn) == "complex"
        dbuf = np.empty((step, C, P), np.complex64) if data is None else None
        flag = np.empty((step, C, P), bool)
        out = np.empty((step, C, P), np.complex64)
        nthr = 1 if pool is None else threads
        for r0 in range(0, nrow, step):
            n = min(step, nrow - r0)
            f, o = flag[:n], out[:n]
            if data is not None:
                d = data[r0:r0 + n]
            elif complex_in:
                d = dbuf[:n]
                t.getcolnp(datacolumn, d, startrow=r0, nrow=n)
            else:
                d = dbuf[:n]
                d[...] = t.getcol(datacolumn, startrow=r0, nrow=n)
            if update_flags:
                if data_flags is not None:
                    f[...] = data_flags[r0:r0 + n]
                else:
                    t.getcolnp("FLAG", f, startrow=r0, nrow=n)
            edges = np.linspace(0, n, nthr + 1).astype(int)
            parts = [(int(edges[i]), int(edges[i + 1])) for i in range(nthr) if edges[i + 1] > edges[i]]

            def work(part, r0=r0, d=d, f=f, o=o):
                i0, i1 = part
                return corrector.rows(r0 + i0, r0 + i1, d[i0:i1], o[i0:i1], f[i0:i1] if update_flags else None)

            bads = list(pool.map(work, parts)) if pool is not None and len(parts) > 1 else [work(q) for q in parts]
            t.putcol(out_column, o, startrow=r0, nrow=n)
            if update_flags:
                changed = False
                if any(x is not None for x in bads):
                    before = int(np.count_nonzero(f))
                    for (i0, i1), x in zip(parts, bads):
                        if x is not None:
                            f[i0:i1] = x
                    after = int(np.count_nonzero(f))
                    newly += after - before
                    changed = after != before
                if changed or data_flags is not None:
                    t.putcol("FLAG", f, startrow=r0, nrow=n)
    except RuntimeError as exc:
        raise PermanentStageError(f"{path}: applying calibration failed: {exc}") from exc
    finally:
        if pool is not None:
            pool.shutdown()
        t.close()
    return {"rows": int(nrow), "newly_flagged": newly}


def store_flags(path: str, d: MSData, flags: np.ndarray) -> None:
    t = _open_ms(path, readonly=False)
    try:
        nrow = t.nrows()
        full = t.getcol("FLAG") if flags.shape[-1] != t.getcell("FLAG", 0).shape[-1] else None
        mask = np.zeros((nrow,) + flags.shape[2:], bool)
        ok = d.rows >= 0
        mask[d.rows[ok]] = flags[ok]
        with _tables().table(path + "/SPECTRAL_WINDOW", ack=False) as s:
            fr = np.asarray(s.getcell("CHAN_FREQ", 0))
        if fr.size > 1 and fr[1] < fr[0]:
            mask = mask[:, ::-1]
        if full is not None:   # more correlations in the MS than solved: flag them all
            full |= mask.any(axis=2, keepdims=True)
            mask = full
        t.putcol("FLAG", mask)
    finally:
        t.close()


def flag_ms(ms_path: str | os.PathLike, **flag_kwargs) -> dict:
    """RFI-flag the cross-correlations of an MS in place (DATA; FLAG column updated;
    autocorrelation flags left as they were).  Returns flag fractions."""
    d = read_ms_for_solve(ms_path)
    fr = flag_rfi(d.vis, d.flags, d.ant1, d.ant2, nant=d.nant, **flag_kwargs)
    auto = d.ant1 == d.ant2
    if auto.any():   # autocorrelations are not RFI-tested: keep their flags
        fr.flags[:, auto] = d.flags[:, auto]
    store_flags(str(ms_path), d, fr.flags)
    return {"flagged_fraction": fr.flagged_fraction, "new_fraction": fr.new_fraction,
            "antenna_fraction": fr.antenna_fraction.tolist(), "channel_fraction": fr.channel_fraction.tolist()}
