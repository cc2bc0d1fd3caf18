"""The flags conversion wrote, kept beside FLAG so a calibration stage can run again from the start.

Solving and applying rewrite FLAG in place (RFI found by the solver, flagged solutions).
A stage interrupted after that write and run again would start from its own earlier
flags and reach a slightly different answer; a re-solve or a reprocess would too. So
before either stage touches the MS, :func:`pristine_flags` either saves FLAG as
``FLAG_CONVERTED`` (the first time) or restores FLAG from it (every later time).

The save is made safe against a kill: the copy is only trusted once the table keyword
``CONTIMG_FLAG_COPY`` says it is complete; a copy without the keyword is discarded and
made again (FLAG itself is never written before the copy is complete).
"""

from __future__ import annotations

import os

from engine.errors import PermanentStageError

COPY = "FLAG_CONVERTED"
KEYWORD = "CONTIMG_FLAG_COPY"
_CHUNK = 20_000  # rows per read/write: a few tens of MB of booleans at full size


def _copy(t, src: str, dst: str) -> None:  # type: ignore[no-untyped-def]
    n = t.nrows()
    for r0 in range(0, n, _CHUNK):
        k = min(_CHUNK, n - r0)
        t.putcol(dst, t.getcol(src, startrow=r0, nrow=k), startrow=r0, nrow=k)


def pristine_flags(ms_path: str | os.PathLike) -> str:
    """Make FLAG what conversion wrote; returns ``saved`` (first run) or ``restored``."""
    from casacore import tables

    path = str(ms_path)
    if not os.path.isdir(path):
        raise PermanentStageError(f"{path}: measurement set not found")
    with tables.table(path, readonly=False, ack=False) as t:
        if COPY in t.colnames() and KEYWORD in t.keywordnames() and t.getkeyword(KEYWORD):
            _copy(t, COPY, "FLAG")
            t.flush()
            return "restored"
        if COPY in t.colnames():  # a copy a kill interrupted: FLAG is still the converted one
            t.removecols(COPY)
        desc = t.getcoldesc("FLAG")
        desc.pop("dataManagerGroup", None)
        desc.pop("dataManagerType", None)
        t.addcols(tables.makecoldesc(COPY, desc))
        _copy(t, "FLAG", COPY)
        t.flush()
        t.putkeyword(KEYWORD, True)
        t.flush()
        return "saved"
