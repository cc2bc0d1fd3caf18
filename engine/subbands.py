"""DSA-110 subband file names and frequencies.

A ~309 s observation is written as 16 files ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``
(NN = 00..15).  Subbands are in *descending* frequency: sb00 holds the highest
48 channels (top channel centre ~1.4986 GHz), sb15 the lowest (bottom channel
centre ~1.3114 GHz).  Within a file the channels are also stored in
descending frequency, as the DSA-110 correlator writes them.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from engine.instrument import (
    BAND_BOTTOM_HZ,
    CHANNEL_WIDTH_HZ,
    N_CHAN_PER_SUBBAND,
    N_SUBBANDS,
)

_NAME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(\d{2})\.hdf5$")


class SubbandNameError(ValueError):
    """A file name does not follow ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``."""


def parse_subband_filename(name: str | Path) -> tuple[datetime, int]:
    """Return ``(start time (naive UTC), subband index)`` of a subband file name.

    Only the base name is looked at.  Raises :class:`SubbandNameError` (a
    ``ValueError``) naming the file when the name is not a DSA-110 subband
    name or the subband index is outside 0..15.
    """
    base = Path(name).name
    m = _NAME_RE.match(base)
    if not m:
        raise SubbandNameError(
            f"{base!r} is not a DSA-110 subband file name "
            "(expected YYYY-MM-DDTHH:MM:SS_sbNN.hdf5)"
        )
    try:
        when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError as exc:
        raise SubbandNameError(f"{base!r}: invalid timestamp {m.group(1)!r}: {exc}") from exc
    sb = int(m.group(2))
    if not 0 <= sb < N_SUBBANDS:
        raise SubbandNameError(f"{base!r}: subband index {sb} outside 0..{N_SUBBANDS - 1}")
    return when, sb


def subband_filename(start: datetime, sb: int) -> str:
    """The file name of subband ``sb`` of the observation starting at ``start``."""
    if not 0 <= sb < N_SUBBANDS:
        raise ValueError(f"subband index {sb} outside 0..{N_SUBBANDS - 1}")
    return f"{start.strftime('%Y-%m-%dT%H:%M:%S')}_sb{sb:02d}.hdf5"


def subband_frequencies(sb: int, nchan: int = N_CHAN_PER_SUBBAND) -> np.ndarray:
    """Channel-centre frequencies (Hz) of subband ``sb`` in file order (descending).

    ``nchan`` < 48 gives a channel-averaged layout covering the same band
    (channel width ``48/nchan`` times the native one).
    """
    if not 0 <= sb < N_SUBBANDS:
        raise ValueError(f"subband index {sb} outside 0..{N_SUBBANDS - 1}")
    if nchan <= 0 or N_CHAN_PER_SUBBAND % nchan:
        raise ValueError(f"nchan must divide {N_CHAN_PER_SUBBAND}, got {nchan}")
    width = subband_channel_width(nchan)
    lo = BAND_BOTTOM_HZ + (N_SUBBANDS - 1 - sb) * N_CHAN_PER_SUBBAND * CHANNEL_WIDTH_HZ
    asc = lo + (np.arange(nchan) + 0.5) * width
    return asc[::-1].copy()


def subband_channel_width(nchan: int = N_CHAN_PER_SUBBAND) -> float:
    """Channel width (Hz, positive) for ``nchan`` channels per subband."""
    return CHANNEL_WIDTH_HZ * (N_CHAN_PER_SUBBAND // nchan)
