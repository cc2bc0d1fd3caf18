"""Calibrator catalogue: the built-in calibrators, each with its source, plus an operator's own.

The built-in list (``data/vla_calibrators.csv``) holds only calibrators whose numbers
could be checked against a published source, named in each row's ``reference``. The
flux-density standards (3C48, 3C138, 3C147, 3C196, 3C286, 3C295, 3C380) carry the
Perley & Butler (2017, ApJS 230, 7) polynomials (``data/perley_butler_2017.csv``) and
are evaluated at each subband's frequency; others have an L-band flux density and an
optional power-law index. Declinations without a built-in candidate need an operator
catalogue (``[calibration] catalogue_files``); ``declination_gaps`` lists them.

CSV columns (header row required, ``#`` lines are comments)::

    name, ra, dec, flux_jy[, freq_ghz, spectral_index, alias, notes, reference]

``ra`` is sexagesimal hours (``08:34:54.9`` or ``08h34m54.9s``) or decimal
degrees; ``dec`` is sexagesimal degrees (``+55:34:21`` / ``55d34m21s``) or
decimal degrees.  A VOTable with the same column names (case-insensitive;
``RAJ2000``/``DEJ2000`` accepted for ra/dec) can be loaded too.  Operator
entries override built-in ones of the same name (or alias).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.errors import PermanentStageError

__all__ = [
    "Calibrator", "CatalogueError", "builtin_catalogue", "load_catalogue",
    "merged_catalogue", "find_calibrator", "candidates_near_dec", "parse_ra", "parse_dec",
    "perley_butler_2017", "declination_gaps",
]

_BUILTIN = "vla_calibrators.csv"
_PB2017 = "perley_butler_2017.csv"
PB2017_REFERENCE = "Perley & Butler 2017, ApJS 230, 7"


class CatalogueError(PermanentStageError):
    """A catalogue file or one of its rows is invalid (message names file and row)."""


@dataclass(frozen=True)
class Calibrator:
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float                       # at freq_ghz
    freq_ghz: float = 1.4
    spectral_index: float | None = None  # S ~ nu^alpha; None = unknown (treated as 0)
    alias: str = ""
    notes: str = ""
    source: str = "builtin"              # file it came from
    reference: str = ""                  # where the numbers come from
    coefficients: tuple[float, ...] | None = None  # log10 S polynomial in log10(nu/GHz) (Perley & Butler 2017)
    valid_ghz: tuple[float, float] | None = None   # the polynomial's stated validity range

    @property
    def ra_rad(self) -> float:
        return math.radians(self.ra_deg)

    @property
    def dec_rad(self) -> float:
        return math.radians(self.dec_deg)

    def flux_at(self, freq_hz: np.ndarray | float) -> np.ndarray:
        """Flux density (Jy) at ``freq_hz``: the published polynomial for a standard, else the
        power law from ``flux_jy`` at ``freq_ghz`` (flat if alpha unknown)."""
        nu = np.asarray(freq_hz, dtype=np.float64)
        if self.coefficients is not None:
            return _polynomial_flux(self.coefficients, nu)
        alpha = 0.0 if self.spectral_index is None else self.spectral_index
        return self.flux_jy * (nu / (self.freq_ghz * 1e9)) ** alpha

    def matches(self, name: str) -> bool:
        key = _norm(name)
        return key == _norm(self.name) or (bool(self.alias) and key == _norm(self.alias))


def _polynomial_flux(coefficients: Sequence[float], nu_hz: np.ndarray) -> np.ndarray:
    x = np.log10(nu_hz / 1e9)
    return 10.0 ** np.polynomial.polynomial.polyval(x, np.asarray(coefficients, dtype=np.float64))


def perley_butler_2017() -> dict[str, tuple[tuple[float, ...], tuple[float, float]]]:
    """The packaged Perley & Butler 2017 polynomials: name -> (a0..a5, (nu_min, nu_max) GHz)."""
    text = resources.files("engine.calibration").joinpath("data", _PB2017).read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out: dict[str, tuple[tuple[float, ...], tuple[float, float]]] = {}
    for rec in csv.DictReader(io.StringIO("\n".join(rows))):
        coeffs = tuple(float(rec[f"a{i}"]) for i in range(6))
        out[_norm(rec["name"])] = (coeffs, (float(rec["nu_min_ghz"]), float(rec["nu_max_ghz"])))
    return out


def _norm(s: str) -> str:
    return "".join(str(s).split()).upper()


def _sexagesimal(text: str) -> tuple[float, float, float, int]:
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    for ch in "hdm:'\"s°":
        t = t.replace(ch, " ")
    parts = t.split()
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"cannot parse {text!r}")
    vals = [float(p) for p in parts] + [0.0] * (3 - len(parts))
    if vals[1] < 0 or vals[1] >= 60 or vals[2] < 0 or vals[2] >= 60:
        raise ValueError(f"minutes/seconds out of range in {text!r}")
    return vals[0], vals[1], vals[2], sign


def parse_ra(text: str | float) -> float:
    """RA in degrees from sexagesimal hours or decimal degrees."""
    if isinstance(text, (int, float, np.floating, np.integer)):
        val = float(text)
    else:
        s = str(text).strip()
        if any(c in s for c in ":hms ") and not _is_float(s):
            h, m, sec, sign = _sexagesimal(s)
            if sign < 0:
                raise ValueError(f"negative RA {text!r}")
            val = 15.0 * (h + m / 60.0 + sec / 3600.0)
        else:
            val = float(s)
    if not (0.0 <= val < 360.0) or not math.isfinite(val):
        raise ValueError(f"RA {text!r} out of range [0, 360) deg")
    return val


def parse_dec(text: str | float) -> float:
    """Dec in degrees from sexagesimal degrees or decimal degrees."""
    if isinstance(text, (int, float, np.floating, np.integer)):
        val = float(text)
    else:
        s = str(text).strip()
        if any(c in s for c in ":dm'\" °") and not _is_float(s):
            d, m, sec, sign = _sexagesimal(s)
            val = sign * (d + m / 60.0 + sec / 3600.0)
        else:
            val = float(s)
    if not (-90.0 <= val <= 90.0) or not math.isfinite(val):
        raise ValueError(f"Dec {text!r} out of range [-90, 90] deg")
    return val


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _opt_float(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        return None
    if np.ma.is_masked(v):
        return None
    s = str(v).strip()
    if s == "" or s.lower() in ("nan", "none", "--"):
        return None
    return float(s)


def _row_to_cal(row: dict, where: str, source: str,
                standards: dict[str, tuple[tuple[float, ...], tuple[float, float]]] | None = None) -> Calibrator:
    def get(*keys):
        for k in keys:
            if k in row and row[k] is not None and not np.ma.is_masked(row[k]) and str(row[k]).strip() != "":
                return row[k]
        return None

    name = get("name")
    if name is None:
        raise CatalogueError(f"{where}: missing 'name'")
    ra, dec, flux = get("ra", "raj2000", "_raj2000"), get("dec", "dej2000", "_dej2000"), get("flux_jy")
    alias = get("alias")
    standard = None
    if standards is not None:
        standard = standards.get(_norm(name)) or (standards.get(_norm(alias)) if alias is not None else None)
    if standard is not None and flux is None:
        flux = float(_polynomial_flux(standard[0], np.float64(1.4e9)))
    for key, val in (("ra", ra), ("dec", dec), ("flux_jy", flux)):
        if val is None:
            raise CatalogueError(f"{where} ({name}): missing '{key}'")
    try:
        ra_deg = parse_ra(ra)
        dec_deg = parse_dec(dec)
        flux_jy = float(flux)
        freq = _opt_float(get("freq_ghz"))
        alpha = _opt_float(get("spectral_index"))
    except ValueError as exc:
        raise CatalogueError(f"{where} ({name}): {exc}") from None
    if not math.isfinite(flux_jy) or flux_jy <= 0:
        raise CatalogueError(f"{where} ({name}): flux_jy must be > 0, got {flux!r}")
    freq = 1.4 if freq is None else freq
    if freq <= 0:
        raise CatalogueError(f"{where} ({name}): freq_ghz must be > 0, got {freq!r}")
    if alpha is not None and not -5 < alpha < 5:
        raise CatalogueError(f"{where} ({name}): implausible spectral_index {alpha!r}")
    notes = get("notes")
    reference = get("reference")
    return Calibrator(str(name).strip(), ra_deg, dec_deg, flux_jy, freq, alpha,
                      "" if alias is None else str(alias).strip(),
                      "" if notes is None else str(notes).strip(), source,
                      f"operator catalogue {source}" if reference is None else str(reference).strip(),
                      None if standard is None else standard[0], None if standard is None else standard[1])


def _read_csv_text(text: str, label: str, standards=None) -> list[Calibrator]:
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CatalogueError(f"{label}: no header row")
    reader = csv.reader(io.StringIO("\n".join(ln for _, ln in lines)))
    rows = list(reader)
    header = [h.strip().lower() for h in rows[0]]
    for required in ("name",) if standards is not None else ("name", "flux_jy"):
        if required not in header:
            raise CatalogueError(f"{label} line {lines[0][0]}: header lacks column '{required}' (have {header})")
    if not ({"ra", "raj2000"} & set(header)) or not ({"dec", "dej2000"} & set(header)):
        raise CatalogueError(f"{label} line {lines[0][0]}: header needs 'ra' and 'dec' columns (have {header})")
    out = []
    for (lineno, _), values in zip(lines[1:], rows[1:]):
        where = f"{label} line {lineno}"
        if len(values) > len(header):
            raise CatalogueError(f"{where}: {len(values)} fields but header has {len(header)}")
        out.append(_row_to_cal(dict(zip(header, values)), where, label, standards))
    return out


def _read_votable(path: Path) -> list[Calibrator]:
    from astropy.io import votable

    try:
        table = votable.parse_single_table(str(path)).to_table()
    except Exception as exc:  # astropy raises many kinds for malformed XML
        raise CatalogueError(f"{path}: not a readable VOTable: {exc}") from None
    cols = {c.lower(): c for c in table.colnames}
    out = []
    for i, rec in enumerate(table):
        row = {}
        for low, orig in cols.items():
            v = rec[orig]
            row[low] = v.decode() if isinstance(v, bytes) else v
        out.append(_row_to_cal(row, f"{path} row {i + 1}", str(path)))
    return out


def load_catalogue(path: str | os.PathLike) -> list[Calibrator]:
    """Read an operator catalogue (CSV, or VOTable for .xml/.vot/.votable)."""
    p = Path(path)
    if not p.is_file():
        raise CatalogueError(f"{p}: catalogue file not found")
    if p.suffix.lower() in (".xml", ".vot", ".votable"):
        cals = _read_votable(p)
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogueError(f"{p}: cannot read: {exc}") from None
        cals = _read_csv_text(text, str(p))
    _check_duplicates(cals, str(p))
    return cals


def _check_duplicates(cals: Sequence[Calibrator], label: str) -> None:
    seen: dict[str, str] = {}
    for c in cals:
        key = _norm(c.name)
        if key in seen:
            raise CatalogueError(f"{label}: duplicate calibrator name {c.name!r}")
        seen[key] = c.name


_builtin_cache: list[Calibrator] | None = None


def builtin_catalogue() -> list[Calibrator]:
    """The packaged VLA calibrator list."""
    global _builtin_cache
    if _builtin_cache is None:
        text = resources.files("engine.calibration").joinpath("data", _BUILTIN).read_text(encoding="utf-8")
        standards = perley_butler_2017()
        cals = _read_csv_text(text, f"builtin {_BUILTIN}", standards)
        missing = set(standards) - {_norm(c.alias) for c in cals if c.coefficients is not None}
        if missing:
            raise CatalogueError(f"builtin {_PB2017}: no catalogue row for {sorted(missing)}")
        cals = [replace(c, source="builtin") for c in cals]
        _check_duplicates(cals, _BUILTIN)
        _builtin_cache = cals
    return list(_builtin_cache)


def merged_catalogue(extra: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> list[Calibrator]:
    """Built-in list merged with operator catalogues (operator entries win by name/alias)."""
    if extra is None:
        paths: list = []
    elif isinstance(extra, (str, os.PathLike)):
        paths = [extra]
    else:
        paths = list(extra)
    result = builtin_catalogue()
    for p in paths:
        for cal in load_catalogue(p):
            result = [c for c in result if not (c.matches(cal.name) or (cal.alias and c.matches(cal.alias)))]
            result.append(cal)
    result.sort(key=lambda c: c.ra_deg)
    return result


def find_calibrator(name: str, catalogue: Sequence[Calibrator] | None = None) -> Calibrator:
    """Look a calibrator up by name or alias (case and spaces ignored)."""
    cats = builtin_catalogue() if catalogue is None else catalogue
    for c in cats:
        if c.matches(name):
            return c
    raise CatalogueError(f"calibrator {name!r} not in catalogue")


def candidates_near_dec(dec_deg: float, radius_deg: float = 2.5,
                        catalogue: Sequence[Calibrator] | None = None) -> list[Calibrator]:
    """Calibrators whose declination is within ``radius_deg`` of a pointing dec
    (i.e. they transit within that distance of the beam centre), brightest first."""
    cats = builtin_catalogue() if catalogue is None else catalogue
    out = [c for c in cats if abs(c.dec_deg - dec_deg) <= radius_deg]
    out.sort(key=lambda c: -c.flux_jy)
    return out


def declination_gaps(lo_deg: float = -10.0, hi_deg: float = 80.0, radius_deg: float = 2.5,
                     catalogue: Sequence[Calibrator] | None = None, step_deg: float = 0.1) -> list[tuple[float, float]]:
    """Declination ranges in [lo, hi] with no calibrator within ``radius_deg`` (where an operator
    catalogue is needed), as (start, end) pairs on a ``step_deg`` grid."""
    cats = builtin_catalogue() if catalogue is None else catalogue
    grid = np.round(np.arange(lo_deg, hi_deg + step_deg / 2, step_deg), 6)
    decs = np.array([c.dec_deg for c in cats]) if cats else np.array([np.inf])
    bare = np.abs(grid[:, None] - decs[None, :]).min(axis=1) > radius_deg
    gaps: list[tuple[float, float]] = []
    start = prev = None
    for d, b in zip(grid, bare):
        if b and start is None:
            start = d
        if not b and start is not None:
            gaps.append((float(start), float(prev)))
            start = None
        prev = d
    if start is not None:
        gaps.append((float(start), float(grid[-1])))
    return gaps
