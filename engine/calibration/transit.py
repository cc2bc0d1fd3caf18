"""Which calibrators drift through the DSA-110 primary beam during an observation.

DSA-110 is a meridian drift-scan array: the dishes point at hour angle 0 and a
fixed declination, so the pointing centre moves in RA with the local sidereal
time.  A catalogue source passes closest to the beam centre at its transit
(LST = RA).  Candidates are ranked by beam-weighted flux: the source flux at
``freq_hz`` times the Airy power response at closest approach within the
observation (``rank_by="peak"``) or averaged over the observation (``"mean"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from astropy.utils import iers

iers.conf.auto_max_age = None
iers.conf.auto_download = False

import astropy.units as u  # noqa: E402
from astropy.coordinates import ICRS, TETE, EarthLocation, SkyCoord  # noqa: E402
from astropy.time import Time  # noqa: E402

from .beam import airy_power, angular_separation  # noqa: E402
from .catalogue import Calibrator, builtin_catalogue  # noqa: E402

__all__ = ["OVRO_LAT_DEG", "OVRO_LON_DEG", "OVRO_HEIGHT_M", "SIDEREAL_RATE_RAD_S",
           "TransitCandidate", "meridian_ra_deg", "transiting_calibrators",
           "best_calibrator", "is_calibrator_group"]

OVRO_LAT_DEG = 37.2334
OVRO_LON_DEG = -118.2830
OVRO_HEIGHT_M = 1183.0
SIDEREAL_RATE_RAD_S = 2.0 * math.pi / 86164.0905
DEFAULT_FREQ_HZ = 1.405e9


@dataclass(frozen=True)
class TransitCandidate:
    calibrator: Calibrator
    closest_mjd: float             # time of closest approach within the observation
    transit_mjd: float             # time of transit (LST = RA) nearest the observation mid-time
    transits_in_window: bool
    min_offset_deg: float          # offset from beam centre at closest approach
    peak_beam: float               # Airy power at closest approach
    peak_flux_jy: float            # flux x peak_beam
    mean_flux_jy: float            # flux x beam averaged over the observation

    @property
    def name(self) -> str:
        return self.calibrator.name


def _site(lat_deg: float, lon_deg: float, height_m: float) -> EarthLocation:
    return EarthLocation.from_geodetic(lon=lon_deg * u.deg, lat=lat_deg * u.deg, height=height_m * u.m)


def meridian_ra_deg(mjd: np.ndarray | float, dec_deg: float = 0.0, *, lat_deg: float = OVRO_LAT_DEG,
                    lon_deg: float = OVRO_LON_DEG, height_m: float = OVRO_HEIGHT_M) -> np.ndarray:
    """ICRS (J2000) RA in degrees of the local meridian at the given UTC MJDs."""
    mjd_arr = np.atleast_1d(np.asarray(mjd, dtype=np.float64))
    t = Time(mjd_arr, format="mjd", scale="utc", location=_site(lat_deg, lon_deg, height_m))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polar-motion / UT1 extrapolation beyond the bundled IERS table
        lst = t.sidereal_time("apparent")
        apparent = SkyCoord(ra=lst, dec=np.full(mjd_arr.shape, dec_deg) * u.deg, frame=TETE(obstime=t))
        icrs = apparent.transform_to(ICRS())
    out = icrs.ra.deg
    return out if np.ndim(mjd) else out[:1]


def transiting_calibrators(start_mjd: float, end_mjd: float, dec_deg: float, *,
                           catalogue: Sequence[Calibrator] | None = None,
                           freq_hz: float = DEFAULT_FREQ_HZ, max_offset_deg: float = 2.5,
                           rank_by: str = "peak", step_s: float = 10.0,
                           lat_deg: float = OVRO_LAT_DEG, lon_deg: float = OVRO_LON_DEG,
                           height_m: float = OVRO_HEIGHT_M) -> list[TransitCandidate]:
    """Catalogue sources passing within ``max_offset_deg`` of the beam centre
    during [start_mjd, end_mjd] (UTC), best (highest beam-weighted flux) first."""
    if not end_mjd >= start_mjd:
        raise ValueError(f"end_mjd {end_mjd} before start_mjd {start_mjd}")
    if rank_by not in ("peak", "mean"):
        raise ValueError("rank_by must be 'peak' or 'mean'")
    cats = list(builtin_catalogue() if catalogue is None else catalogue)
    if not cats:
        return []
    # quick declination cut before any astrometry
    cats = [c for c in cats if abs(c.dec_deg - dec_deg) <= max_offset_deg + 0.5]
    if not cats:
        return []
    dur_s = (end_mjd - start_mjd) * 86400.0
    nstep = max(2, int(math.ceil(dur_s / step_s)) + 1)
    mjd_grid = np.linspace(start_mjd, end_mjd, nstep)
    mid = 0.5 * (start_mjd + end_mjd)
    ra_mid = math.radians(float(meridian_ra_deg(mid, dec_deg, lat_deg=lat_deg, lon_deg=lon_deg,
                                                height_m=height_m)[0]))
    # the pointing moves at the sidereal rate; over a group this is exact to << 1 arcsec
    ra_point = ra_mid + SIDEREAL_RATE_RAD_S * (mjd_grid - mid) * 86400.0
    dec_p = math.radians(dec_deg)
    src_ra = np.array([c.ra_rad for c in cats])[:, None]
    src_dec = np.array([c.dec_rad for c in cats])[:, None]
    off = angular_separation(ra_point[None, :], np.full_like(ra_point, dec_p)[None, :], src_ra, src_dec)
    beam = airy_power(off, freq_hz)
    flux = np.array([float(c.flux_at(freq_hz)) for c in cats])
    imin = np.argmin(off, axis=1)
    out = []
    for i, c in enumerate(cats):
        min_off = float(off[i, imin[i]])
        if math.degrees(min_off) > max_offset_deg:
            continue
        dha = (ra_mid - c.ra_rad + math.pi) % (2 * math.pi) - math.pi   # HA of source at mid (rad)
        transit = mid - dha / SIDEREAL_RATE_RAD_S / 86400.0
        out.append(TransitCandidate(
            calibrator=c, closest_mjd=float(mjd_grid[imin[i]]), transit_mjd=float(transit),
            transits_in_window=bool(start_mjd <= transit <= end_mjd),
            min_offset_deg=math.degrees(min_off), peak_beam=float(beam[i, imin[i]]),
            peak_flux_jy=float(flux[i] * beam[i, imin[i]]), mean_flux_jy=float(flux[i] * beam[i].mean())))
    key = (lambda x: -x.peak_flux_jy) if rank_by == "peak" else (lambda x: -x.mean_flux_jy)
    out.sort(key=key)
    return out


def best_calibrator(start_mjd: float, end_mjd: float, dec_deg: float, *, threshold_jy: float = 1.0,
                    **kwargs) -> TransitCandidate | None:
    """Highest-ranked candidate whose beam-weighted flux reaches ``threshold_jy``, else None."""
    rank_by = kwargs.get("rank_by", "peak")
    for c in transiting_calibrators(start_mjd, end_mjd, dec_deg, **kwargs):
        val = c.peak_flux_jy if rank_by == "peak" else c.mean_flux_jy
        if val >= threshold_jy:
            return c
    return None


def is_calibrator_group(start_mjd: float, end_mjd: float, dec_deg: float, threshold_jy: float = 1.0,
                        **kwargs) -> bool:
    """True if a catalogue source with beam-weighted flux >= ``threshold_jy`` passes
    through the beam during the observation."""
    return best_calibrator(start_mjd, end_mjd, dec_deg, threshold_jy=threshold_jy, **kwargs) is not None
