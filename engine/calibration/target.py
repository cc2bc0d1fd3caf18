"""A target group's calibration: RFI flagging and the apply in one read of the MS.

Calibrator groups are flagged inside the solve; target groups need it as much (a
satellite or radar in a target field otherwise becomes a stripe in the image and
spurious sources in the catalogue). The data are read once, flagged with the same
SumThreshold flagger, and the solutions applied from memory, which writes
CORRECTED_DATA and FLAG = RFI flags | flagged solutions in one pass.
"""

from __future__ import annotations

import os

from .apply import apply_calibration, read_ms_for_solve, store_flags
from .flagging import flag_rfi

__all__ = ["flag_and_apply"]


def flag_and_apply(ms_path: str | os.PathLike, bandpass, gains, **flag_kwargs) -> dict:
    """RFI-flag the cross-correlations of ``ms_path`` (autocorrelation flags kept), then
    apply ``bandpass``/``gains`` (tables or CalTables).  Returns the apply's counts plus
    ``rfi_flagged_fraction`` (new RFI flags over the cross-correlation samples)."""
    path = str(ms_path)
    d = read_ms_for_solve(path)
    auto = d.ant1 == d.ant2
    auto_flags = d.flags[:, auto].copy() if auto.any() else None
    fr = flag_rfi(d.vis, d.flags, d.ant1, d.ant2, nant=d.nant, in_place=True, **flag_kwargs)
    if auto_flags is not None:   # autocorrelations are not RFI-tested: keep their flags
        fr.flags[:, auto] = auto_flags
    rows = d.as_rows(fr.flags)
    if rows is not None:
        applied = apply_calibration(path, bandpass, gains, data=rows[0], data_flags=rows[1])
    else:                        # an MS whose rows are not a plain reshape: flags first, then from disk
        store_flags(path, d, fr.flags)
        del d
        applied = apply_calibration(path, bandpass, gains)
    applied["rfi_flagged_fraction"] = float(fr.new_fraction)
    return applied
