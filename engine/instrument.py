"""DSA-110 instrument constants, array layout and shared sky geometry.

Everything that knows a number about the telescope lives here: the site, the
channel layout of the 16 subbands, dish size, SEFD, integration time, and the
station layout.

Layout
------
The default layout is *generated*: a T-shaped core (an east-west arm of 51
stations over 400 m and a north-south arm of 51 stations over 430 m, starting
just north of the east-west arm) plus 15 outriggers that give baselines up to
~2.6 km.  It has the extent of the real array but is not the real table.  The
public table of the real station positions can be loaded with
:func:`load_antenna_csv` (``antenna_file=`` option of the simulator).

Geometry conventions
--------------------
Antenna positions are kept the way UVH5 stores them: ECEF (ITRF) metres
relative to the telescope location.  Baselines are ``pos(ant2) - pos(ant1)``.
Apparent source directions follow the erfa route that pyuvdata uses
(``atco13`` observed place without refraction, apparent RA = CIO RA - equation
of the origins, LST = GAST(06a) + s' + longitude), so that delays computed
here agree with pyuvdata's ``phase()`` to well below a degree of phase.

Importing this module puts astropy's IERS machinery in offline mode (no
downloads, no age limit): the pipeline runs on machines without internet.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.utils import iers

iers.conf.auto_max_age = None
iers.conf.auto_download = False

import erfa  # noqa: E402  (pyerfa ships with astropy)
from astropy import units as u  # noqa: E402
from astropy.coordinates import EarthLocation  # noqa: E402
from astropy.time import Time  # noqa: E402

# --------------------------------------------------------------------------
# Site and telescope
# --------------------------------------------------------------------------
SITE_LAT_DEG = 37.2334
SITE_LON_DEG = -118.2830
SITE_HEIGHT_M = 1183.0
SITE = EarthLocation.from_geodetic(
    lon=SITE_LON_DEG * u.deg, lat=SITE_LAT_DEG * u.deg, height=SITE_HEIGHT_M * u.m
)
SITE_XYZ = np.array([SITE.x.to_value(u.m), SITE.y.to_value(u.m), SITE.z.to_value(u.m)])

TELESCOPE_NAME = "DSA_110"          # name written in the UVH5 headers
CASACORE_OBSERVATORY = "OVRO_MMA"   # the name casacore's measures know for this site
INSTRUMENT = "DSA"

DISH_DIAMETER_M = 4.65
SEFD_JY = 5800.0
C_M_S = 299792458.0

# --------------------------------------------------------------------------
# Frequency / time layout
# --------------------------------------------------------------------------
N_SUBBANDS = 16
N_CHAN_PER_SUBBAND = 48
N_CHAN_TOTAL = N_SUBBANDS * N_CHAN_PER_SUBBAND
CHANNEL_WIDTH_HZ = 244140.625
BAND_BOTTOM_HZ = 1311.25e6          # lower edge of the lowest channel
INTEGRATION_TIME_S = 12.884902
N_INTEGRATIONS = 24
OBSERVATION_LENGTH_S = N_INTEGRATIONS * INTEGRATION_TIME_S   # ~309 s
POLARIZATIONS = (-5, -6)            # AIPS codes for XX, YY
POL_NAMES = ("XX", "YY")
COMMON_DECS_DEG = (54.57, 16.27, 50.5, 65.72)


def noise_sigma_jy(channel_width_hz: float = CHANNEL_WIDTH_HZ,
                   integration_s: float = INTEGRATION_TIME_S) -> float:
    """Thermal noise per real/imaginary part of one visibility (Jy)."""
    return SEFD_JY / np.sqrt(2.0 * channel_width_hz * integration_s)


def primary_beam_fwhm_rad(freq_hz: float) -> float:
    """FWHM of the Airy pattern of a uniformly illuminated 4.65 m dish."""
    return 1.028 * C_M_S / freq_hz / DISH_DIAMETER_M


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class AntennaLayout:
    """Station numbers, names and positions (ECEF metres relative to SITE)."""

    numbers: np.ndarray        # int, shape (N,)
    names: tuple[str, ...]
    positions_ecef_rel: np.ndarray   # float64, shape (N, 3)
    enu: np.ndarray            # float64, shape (N, 3)
    is_outrigger: np.ndarray   # bool, shape (N,)

    def __len__(self) -> int:
        return len(self.numbers)


def _rot_enu_to_ecef(lat_rad: float, lon_rad: float) -> np.ndarray:
    sl, cl = np.sin(lat_rad), np.cos(lat_rad)
    so, co = np.sin(lon_rad), np.cos(lon_rad)
    # columns: east, north, up expressed in ECEF
    return np.array(
        [[-so, -sl * co, cl * co],
         [co, -sl * so, cl * so],
         [0.0, cl, sl]]
    )


def enu_to_ecef_rel(enu: np.ndarray) -> np.ndarray:
    """ENU offsets (N,3) at the site -> ECEF offsets relative to SITE."""
    rot = _rot_enu_to_ecef(np.radians(SITE_LAT_DEG), np.radians(SITE_LON_DEG))
    return np.asarray(enu, dtype=float) @ rot.T


def ecef_rel_to_enu(ecef_rel: np.ndarray, lat_deg: float = SITE_LAT_DEG,
                    lon_deg: float = SITE_LON_DEG) -> np.ndarray:
    rot = _rot_enu_to_ecef(np.radians(lat_deg), np.radians(lon_deg))
    return np.asarray(ecef_rel, dtype=float) @ rot


# Outrigger offsets (east, north) in metres from the T junction.  Generated to
# have the spread of the real outriggers (baselines up to ~2.6 km); not the
# real positions.
_OUTRIGGER_EN = np.array([
    [-1230.0, -250.0], [-1100.0, 1330.0], [-930.0, 660.0], [-610.0, 1430.0],
    [-300.0, 1480.0], [90.0, 1460.0], [420.0, 1470.0], [640.0, 1250.0],
    [655.0, 610.0], [660.0, 120.0], [240.0, -520.0], [-170.0, -380.0],
    [-960.0, -240.0], [-1160.0, 430.0], [820.0, 1480.0],
])


def default_layout() -> AntennaLayout:
    """The generated 117-station T-shaped layout (51 EW + 51 NS + 15 outriggers)."""
    ew_e = np.linspace(-200.0, 200.0, 51)
    ew = np.column_stack([ew_e, np.zeros(51), np.zeros(51)])
    ns_n = np.linspace(20.0, 450.0, 51)
    ns = np.column_stack([np.full(51, 35.0), ns_n, np.zeros(51)])
    # gentle terrain slope, like the real site (a few metres over the array)
    outr = np.column_stack([_OUTRIGGER_EN, 0.002 * _OUTRIGGER_EN[:, 1]])
    enu = np.vstack([ew, ns, outr])
    n = len(enu)
    numbers = np.arange(1, n + 1)
    names = tuple(f"DSA-{k:03d}" for k in numbers)
    is_out = np.zeros(n, bool)
    is_out[102:] = True
    return AntennaLayout(numbers, names, enu_to_ecef_rel(enu), enu, is_out)


def load_antenna_csv(path: str | Path) -> AntennaLayout:
    """Read a station table in the format of the public DSA-110 coordinates CSV.

    Rows look like ``,DSA-001,37.2333752,-118.2856408,1182.6``; header and
    blank rows are skipped.  A missing elevation is replaced by the median of
    the others.  Stations DSA-103 and above are treated as outriggers.
    """
    path = Path(path)
    names, lat, lon, h = [], [], [], []
    try:
        with path.open(newline="") as fh:
            for row in csv.reader(fh):
                cells = [c.strip() for c in row]
                name = next((c for c in cells if re.fullmatch(r"DSA-\d+", c.upper())), None)
                if name is None:
                    continue
                i = cells.index(name)
                try:
                    la, lo = float(cells[i + 1]), float(cells[i + 2])
                except (IndexError, ValueError) as exc:
                    raise ValueError(f"{path}: bad coordinates for {name}: {row}") from exc
                try:
                    el = float(cells[i + 3])
                except (IndexError, ValueError):
                    el = np.nan
                names.append(name)
                lat.append(la)
                lon.append(lo)
                h.append(el)
    except OSError as exc:
        raise ValueError(f"cannot read antenna file {path}: {exc}") from exc
    if not names:
        raise ValueError(f"{path}: no DSA-NNN station rows found")
    h = np.asarray(h)
    h[np.isnan(h)] = np.nanmedian(h) if np.any(np.isfinite(h)) else SITE_HEIGHT_M
    loc = EarthLocation.from_geodetic(lon=np.asarray(lon) * u.deg,
                                      lat=np.asarray(lat) * u.deg, height=h * u.m)
    xyz = np.column_stack([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)])
    rel = xyz - SITE_XYZ
    numbers = np.array([int(n.split("-")[1]) for n in names])
    return AntennaLayout(numbers, tuple(names), rel, ecef_rel_to_enu(rel), numbers >= 103)


DEFAULT_N_ACTIVE = 96     # typical: all 15 outriggers + 81 core stations


def choose_active(layout: AntennaLayout, n_active: int = DEFAULT_N_ACTIVE, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``n_active`` stations: all outriggers first, then core.

    For ``n_active`` below the number of outriggers, an even spread over the
    whole array is used so small presets still have long baselines.
    """
    n = len(layout)
    if n_active >= n:
        return np.arange(n)
    out = np.flatnonzero(layout.is_outrigger)
    core = np.flatnonzero(~layout.is_outrigger)
    rng = np.random.default_rng(seed + 1234)
    if n_active <= len(out) or n_active < 40:
        # small arrays: half outriggers, half core, evenly picked
        n_out = min(len(out), n_active // 3)
        pick_out = out[np.linspace(0, len(out) - 1, n_out).round().astype(int)] if n_out else out[:0]
        pick_core = core[np.linspace(0, len(core) - 1, n_active - n_out).round().astype(int)]
        return np.unique(np.concatenate([pick_out, pick_core]))
    n_core = n_active - len(out)
    pick_core = np.sort(rng.choice(core, size=n_core, replace=False))
    return np.unique(np.concatenate([out, pick_core]))


# --------------------------------------------------------------------------
# Time and apparent-direction geometry (shared by simulator and converter)
# --------------------------------------------------------------------------
def _site_geodetic(location: EarthLocation | None):
    loc = SITE if location is None else location
    lon = loc.lon.to_value(u.rad)
    lat = loc.lat.to_value(u.rad)
    h = loc.height.to_value(u.m)
    return loc, float(lon), float(lat), float(h)


def lst_rad(jd_utc: np.ndarray, location: EarthLocation | None = None) -> np.ndarray:
    """Apparent local sidereal time (rad) the way pyuvdata computes it (erfa)."""
    loc, lon, _, _ = _site_geodetic(location)
    jd = np.atleast_1d(np.asarray(jd_utc, dtype=float))
    uniq, inv = np.unique(jd, return_inverse=True)
    t = Time(uniq, format="jd", scale="utc", location=loc)
    gast = erfa.gst06a(t.ut1.jd1, t.ut1.jd2, t.tt.jd1, t.tt.jd2)
    sp = erfa.sp00(t.tt.jd1, t.tt.jd2)
    return np.mod(gast + sp + lon, 2 * np.pi)[inv].reshape(np.shape(jd_utc) or (1,))


def apparent_radec(ra_rad: float, dec_rad: float, jd_utc: np.ndarray,
                   location: EarthLocation | None = None):
    """ICRS (J2000) -> topocentric apparent RA/Dec (rad) per time, erfa atco13.

    Returns ``(app_ra, app_dec)`` arrays with the shape of ``jd_utc``.
    """
    loc, lon, lat, h = _site_geodetic(location)
    jd = np.atleast_1d(np.asarray(jd_utc, dtype=float))
    t = Time(jd, format="jd", scale="utc", location=loc)
    dut1 = t.delta_ut1_utc
    try:
        pm = iers.earth_orientation_table.get().pm_xy(t)
        xp = pm[0].to_value(u.rad)
        yp = pm[1].to_value(u.rad)
    except Exception:  # pragma: no cover - table outside range
        xp = yp = np.zeros_like(jd)
    res = erfa.atco13(ra_rad, dec_rad, 0.0, 0.0, 0.0, 0.0, t.utc.jd1, t.utc.jd2, dut1,
                      lon, lat, h, xp, yp, 0.0, 0.0, 0.0, 0.0)
    app_dec, app_ra, eo = res[3], res[4], res[5]
    return np.mod(app_ra - eo, 2 * np.pi), app_dec


def direction_ecef(app_ra: np.ndarray, app_dec: np.ndarray, lst: np.ndarray,
                   location: EarthLocation | None = None) -> np.ndarray:
    """Unit vector (…,3) towards a source in the (relative) ECEF frame.

    ``lst - app_ra`` is the hour angle; the source lies over the meridian of
    longitude ``lon - HA``.
    """
    _, lon, _, _ = _site_geodetic(location)
    ha = np.asarray(lst) - np.asarray(app_ra)
    elon = lon - ha
    cd = np.cos(app_dec)
    return np.stack([cd * np.cos(elon), cd * np.sin(elon), np.sin(app_dec) * np.ones_like(elon)], axis=-1)


def uvw_basis_ecef(app_ra: np.ndarray, app_dec: np.ndarray, lst: np.ndarray,
                   location: EarthLocation | None = None) -> np.ndarray:
    """(…,3,3) rows = u (east), v (north), w (towards source) unit vectors in ECEF."""
    _, lon, _, _ = _site_geodetic(location)
    ha = np.asarray(lst) - np.asarray(app_ra)
    elon = lon - ha
    sd, cd = np.sin(app_dec), np.cos(app_dec)
    se, ce = np.sin(elon), np.cos(elon)
    w = np.stack([cd * ce, cd * se, sd * np.ones_like(elon)], axis=-1)
    uu = np.stack([-se, ce, np.zeros_like(elon)], axis=-1)
    vv = np.stack([-sd * ce, -sd * se, cd * np.ones_like(elon)], axis=-1)
    return np.stack([uu, vv, w], axis=-2)


def frame_position_angle(ra_rad: float, dec_rad: float, jd_utc: np.ndarray,
                         app_ra: np.ndarray, app_dec: np.ndarray,
                         location: EarthLocation | None = None) -> np.ndarray:
    """Angle (rad) from apparent north to J2000 north at the phase centre.

    Like pyuvdata: the position angle, in apparent coordinates, of a 1-degree
    J2000 north-south arc centred on the phase centre (pyuvdata uses the
    inverse transform of an apparent arc; the two agree to ~1e-5 rad).
    """
    half = np.radians(0.5)
    up = min(dec_rad + half, np.pi / 2 - 1e-9)
    dn = max(dec_rad - half, -np.pi / 2 + 1e-9)
    up_ra, up_dec = apparent_radec(ra_rad, up, jd_utc, location)
    dn_ra, dn_dec = apparent_radec(ra_rad, dn, jd_utc, location)
    return erfa.pas(dn_ra, dn_dec, up_ra, up_dec)


def delay_phasor(delay_m: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """exp(+2 pi i delay f / c) for (N,) delays (m) and Nf freqs -> (N, Nf) complex64.

    For evenly spaced channels f_k = f_0 + k df (either sign of df) it needs
    only three complex exponentials per row: with k = 8q + r,
    exp(i a f_k) = exp(i a f_0) exp(i a 8 df)^q exp(i a df)^r, the powers
    built by cumulative products in complex128 (error ~1e-15).
    """
    delay_m = np.asarray(delay_m, dtype=np.float64).reshape(-1)
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64).reshape(-1)
    n, nf = len(delay_m), len(freqs_hz)
    a = (2 * np.pi / C_M_S) * delay_m
    step = 8 if nf % 8 == 0 and nf >= 16 else 1
    if step > 1:
        df = (freqs_hz[-1] - freqs_hz[0]) / (nf - 1)
        if not np.allclose(np.diff(freqs_hz), df, rtol=0, atol=1e-6 * abs(df) + 1e-3):
            step = 1
    if step == 1:
        return np.exp(1j * a[:, None] * freqs_hz[None, :]).astype(np.complex64)
    nq = nf // step
    d = np.exp(1j * a * df)
    fine = np.empty((step, n), np.complex128)          # row r: exp(i a r df)
    fine[0] = 1.0
    for r in range(1, step):
        np.multiply(fine[r - 1], d, out=fine[r])
    big = np.exp(1j * a * (step * df))
    coarse = np.empty((nq, n), np.complex128)          # row q: exp(i a (f_0 + q step df))
    coarse[0] = np.exp(1j * a * freqs_hz[0])
    for q in range(1, nq):
        np.multiply(coarse[q - 1], big, out=coarse[q])
    out = coarse.T.astype(np.complex64)[:, :, None] * fine.T.astype(np.complex64)[:, None, :]
    return out.reshape(n, nf)


# --------------------------------------------------------------------------
# Bessel J1 without scipy (scipy is not a dependency of the engine)
# --------------------------------------------------------------------------
def _j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1 (Numerical Recipes rational fits)."""
    x = np.asarray(x, dtype=float)
    ax = np.abs(x)
    out = np.empty_like(ax)
    small = ax < 8.0
    y = x[small] ** 2
    xs = x[small]
    a1 = xs * (72362614232.0 + y * (-7895059235.0 + y * (242396853.1 + y * (
        -2972611.439 + y * (15704.48260 + y * (-30.16036606))))))
    a2 = 144725228442.0 + y * (2300535178.0 + y * (18583304.74 + y * (
        99447.43394 + y * (376.9991397 + y * 1.0))))
    out[small] = a1 / a2
    xb = ax[~small]
    z = 8.0 / xb
    y = z * z
    xx = xb - 2.356194491
    b1 = 1.0 + y * (0.183105e-2 + y * (-0.3516396496e-4 + y * (0.2457520174e-5 + y * (-0.240337019e-6))))
    b2 = 0.04687499995 + y * (-0.2002690873e-3 + y * (0.8449199096e-5 + y * (
        -0.88228987e-6 + y * 0.105787412e-6)))
    big = np.sqrt(0.636619772 / xb) * (np.cos(xx) * b1 - z * np.sin(xx) * b2)
    out[~small] = np.where(x[~small] < 0, -big, big)
    return out


def airy_power(theta_rad, freq_hz) -> np.ndarray:
    """Power response of a uniformly illuminated 4.65 m dish: (2 J1(x)/x)^2."""
    x = np.pi * DISH_DIAMETER_M * np.sin(np.asarray(theta_rad, dtype=float)) * np.asarray(freq_hz, dtype=float) / C_M_S
    x = np.where(np.abs(x) < 1e-9, 1e-9, x)
    return (2.0 * _j1(x) / x) ** 2
