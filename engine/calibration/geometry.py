"""Where the dishes pointed during an observation, and how big they are: read from the MS.

The calibrator model multiplies the catalogue flux by the primary-beam power at the
source's offset from the pointing centre.  That offset depends on how the telescope
observed: DSA-110 drift-scans (the dishes stay on the meridian at a fixed declination
and the sky moves through the beam at the sidereal rate), while a tracking array such
as the VLA follows its target (a source at the pointing centre stays at beam power 1).
Assuming a drift scan for tracked data leaves the calibrated amplitude following the
wrong beam (measured on VLA data of 3C286: 0.879 of the model at both ends of a 5.5 min
scan), so the geometry comes from the MS, in this order:

1. the POINTING table, when it has rows: a direction fixed on the sky is tracking,
   a right ascension that advances with sidereal time is a drift scan;
2. the telescope: DSA-110 cannot track, so its data are a drift scan on the meridian;
3. OBSERVATION.SCHEDULE_TYPE = "drift" (written by our converter for unprojected data);
4. otherwise a field with a fixed sky position (FIELD.REFERENCE_DIR) was tracked.

The dish diameter is ANTENNA.DISH_DIAMETER (median of the positive values); where the
MS leaves it empty, the telescope's known diameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .beam import angular_separation
from .solver import SIDEREAL_RATE_RAD_S

# dish diameters of telescopes whose MS may not say (metres), by normalised name (see _key)
KNOWN_DISHES = {
    "DSA110": 4.65, "OVRODSA": 4.65, "OVRODSA110": 4.65, "DSA": 4.65,
    "VLA": 25.0, "EVLA": 25.0, "JVLA": 25.0, "WSRT": 25.0, "ATCA": 22.0,
    "MEERKAT": 13.5, "ASKAP": 12.0, "GMRT": 45.0, "ATA": 6.1,
}
DRIFT_TELESCOPES = {"DSA110", "OVRODSA", "OVRODSA110", "DSA"}
DEFAULT_DISH_M = 4.65
TRACK_TOLERANCE_RAD = math.radians(1.0 / 60.0)  # pointing RA constant to 1' = tracking


@dataclass(frozen=True)
class BeamGeometry:
    """How the primary beam moved against the sky during one observation.

    mode "tracked": the pointing stays at (ra, dec).  mode "drift": the pointing is at
    declination ``dec`` and right ascension ``ra`` at ``t_mid`` (MS seconds) and
    advances at the sidereal rate.  ``reason`` says which evidence decided.
    """

    mode: str
    ra: float
    dec: float
    t_mid: float
    dish_diameter_m: float
    dish_source: str
    reason: str

    def pointing(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointing (ra, dec) in radians at each time."""
        t = np.asarray(times_s, dtype=np.float64)
        if self.mode == "tracked":
            return np.full(t.shape, self.ra), np.full(t.shape, self.dec)
        return self.ra + SIDEREAL_RATE_RAD_S * (t - self.t_mid), np.full(t.shape, self.dec)

    def offsets(self, times_s: np.ndarray, ra: float, dec: float) -> np.ndarray:
        """Angular distance (radians) of (ra, dec) from the pointing centre at each time."""
        pra, pdec = self.pointing(times_s)
        return angular_separation(pra, pdec, ra, dec)

    def describe(self) -> str:
        where = f"RA {math.degrees(self.ra) % 360:.4f} deg, Dec {math.degrees(self.dec):+.4f} deg"
        how = f"tracked pointing at {where}" if self.mode == "tracked" else \
            f"drift scan at Dec {math.degrees(self.dec):+.4f} deg (meridian RA {math.degrees(self.ra) % 360:.4f} deg at mid)"
        return f"primary beam: {how}, {self.dish_diameter_m:g} m Airy dish ({self.dish_source}); {self.reason}"

    def as_dict(self) -> dict:
        return {"mode": self.mode, "ra_deg": math.degrees(self.ra) % 360.0, "dec_deg": math.degrees(self.dec),
                "dish_diameter_m": self.dish_diameter_m, "dish_source": self.dish_source, "reason": self.reason}


def _key(telescope: str) -> str:
    """'DSA-110', 'DSA_110', 'dsa110' -> 'DSA110'."""
    return re.sub(r"[^A-Z0-9]", "", telescope.upper())


def _observation(tables, path: str) -> tuple[str, str]:
    """(TELESCOPE_NAME, SCHEDULE_TYPE in lower case) of the first OBSERVATION row ("" when absent)."""
    try:
        with tables.table(path + "/OBSERVATION", ack=False) as t:
            if not t.nrows():
                return "", ""
            schedule = str(t.getcell("SCHEDULE_TYPE", 0)) if "SCHEDULE_TYPE" in t.colnames() else ""
            return str(t.getcell("TELESCOPE_NAME", 0)).strip(), schedule.strip().lower()
    except RuntimeError:
        return "", ""


def dish_diameter(tables, path: str, telescope: str) -> tuple[float, str]:
    """(diameter in metres, where it came from)."""
    try:
        with tables.table(path + "/ANTENNA", ack=False) as a:
            d = np.asarray(a.getcol("DISH_DIAMETER"), dtype=np.float64) if "DISH_DIAMETER" in a.colnames() else np.zeros(0)
    except RuntimeError:
        d = np.zeros(0)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size:
        return float(np.median(d)), "ANTENNA.DISH_DIAMETER"
    known = KNOWN_DISHES.get(_key(telescope))
    if known is not None:
        return known, f"known diameter of {telescope}"
    return DEFAULT_DISH_M, f"telescope {telescope or 'unnamed'} unknown and no DISH_DIAMETER: DSA-110's assumed"


def _pointing_rows(tables, path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(times, directions (n, 2)) of the first antenna's POINTING rows, or None."""
    try:
        with tables.table(path + "/POINTING", ack=False) as p:
            if p.nrows() == 0 or "DIRECTION" not in p.colnames():
                return None
            ant = p.getcol("ANTENNA_ID")
            sel = np.nonzero(ant == ant.min())[0]
            times = p.getcol("TIME")[sel]
            dirs = np.asarray(p.getcol("DIRECTION"), dtype=np.float64)[sel].reshape(sel.size, -1, 2)[:, 0, :]
    except RuntimeError:
        return None
    order = np.argsort(times)
    return times[order], dirs[order]


def read_beam_geometry(ms_path: str, times_s: np.ndarray, phase_centre: tuple[float, float]) -> BeamGeometry:
    """Decide the pointing geometry of ``ms_path`` (see the module docstring)."""
    from casacore import tables

    path = str(ms_path).rstrip("/")
    telescope, schedule = _observation(tables, path)
    dish, dish_source = dish_diameter(tables, path, telescope)
    t = np.asarray(times_s, dtype=np.float64)
    t_mid = 0.5 * (float(t.min()) + float(t.max())) if t.size else 0.0
    ra0, dec0 = float(phase_centre[0]), float(phase_centre[1])

    rows = _pointing_rows(tables, path)
    if rows is not None and rows[0].size >= 2 and rows[0][-1] > rows[0][0]:
        pt, pdir = rows
        ra = np.unwrap(pdir[:, 0])
        dur = pt[-1] - pt[0]
        mid = float(np.interp(t_mid, pt, ra))
        dec = float(np.median(pdir[:, 1]))
        drift = abs((ra[-1] - ra[0]) - SIDEREAL_RATE_RAD_S * dur) * math.cos(dec) < TRACK_TOLERANCE_RAD
        fixed = float(np.ptp(ra)) * math.cos(dec) < TRACK_TOLERANCE_RAD
        if fixed:
            return BeamGeometry("tracked", float(ra[0]), dec, t_mid, dish, dish_source,
                                "POINTING directions fixed on the sky over the observation")
        if drift:
            return BeamGeometry("drift", mid, dec, t_mid, dish, dish_source,
                                "POINTING right ascension advances at the sidereal rate")
    if rows is not None and rows[0].size == 1:
        d = rows[1][0]
        return BeamGeometry("tracked", float(d[0]), float(d[1]), t_mid, dish, dish_source,
                            "one POINTING direction for the observation")
    if _key(telescope) in DRIFT_TELESCOPES:
        return BeamGeometry("drift", ra0, dec0, t_mid, dish, dish_source,
                            f"{telescope} drift-scans on the meridian (phase centre = meridian at mid-observation)")
    if schedule == "drift":
        return BeamGeometry("drift", ra0, dec0, t_mid, dish, dish_source, "OBSERVATION.SCHEDULE_TYPE is drift")
    try:
        with tables.table(path + "/FIELD", ack=False) as f:
            ref = np.asarray(f.getcell("REFERENCE_DIR", 0), dtype=np.float64).reshape(-1, 2)[0]
            ra_t, dec_t = float(ref[0]), float(ref[1])
    except RuntimeError:
        ra_t, dec_t = ra0, dec0
    return BeamGeometry("tracked", ra_t, dec_t, t_mid, dish, dish_source,
                        f"{telescope or 'telescope'}: no POINTING rows and a field fixed on the sky, so the dishes "
                        f"tracked the field centre")
