"""Calibration stages start from the flags conversion wrote, however often they are interrupted or rerun."""

from __future__ import annotations

import numpy as np
from casacore import tables

from engine.calibration.flagstore import COPY, KEYWORD, pristine_flags
from engine.calibration.synthetic import synthesize, write_ms


def _flags(ms: str) -> np.ndarray:
    with tables.table(ms, ack=False) as t:
        return t.getcol("FLAG")


def test_save_then_restore_and_an_interrupted_copy_is_redone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    obs = synthesize(nant=6, nchan=16, ntime=4, seed=3)
    ms = write_ms(str(tmp_path / "g.ms"), obs)
    with tables.table(ms, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        f[::7] = True  # conversion's own flags
        t.putcol("FLAG", f)
    converted = _flags(ms)
    assert pristine_flags(ms) == "saved"
    with tables.table(ms, readonly=False, ack=False) as t:  # a solve flags RFI in place, then is killed
        t.putcol("FLAG", np.ones_like(converted))
    assert pristine_flags(ms) == "restored"
    assert np.array_equal(_flags(ms), converted)
    # a kill during the very first save leaves a copy without the keyword: it is discarded and made again
    with tables.table(ms, readonly=False, ack=False) as t:
        t.removekeyword(KEYWORD)
        t.putcol(COPY, np.ones_like(converted))
    assert pristine_flags(ms) == "saved"
    with tables.table(ms, ack=False) as t:
        assert np.array_equal(t.getcol(COPY), converted) and t.getkeyword(KEYWORD)
