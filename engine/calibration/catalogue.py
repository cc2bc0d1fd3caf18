"""Calibrator catalogue: the built-in bright VLA calibrators plus an operator's own.

The built-in list (``data/vla_calibrators.csv``) holds compact VLA calibrators
brighter than ~1 Jy at L band with J2000 positions, chosen so that every DSA-110
pointing between Dec -10 and +80 deg has a candidate within 2.5 deg.

CSV columns (header row required, ``#`` lines are comments)::

    name, ra, dec, flux_jy[, freq_ghz, spectral_index, alias, notes]

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
]

_BUILTIN = "vla_calibrators.csv"


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

    @property
    def ra_rad(self) -> float:
        return math.radians(self.ra_deg)

    @property
    def dec_rad(self) -> float:
        return math.radians(self.dec_deg)

    def flux_at(self, freq_hz: np.ndarray | float) -> np.ndarray:
        """Flux density (Jy) at ``freq_hz`` from the power law (flat if alpha unknown)."""
        alpha = 0.0 if self.spectral_index is None else self.spectral_index
        nu = np.asarray(freq_hz, dtype=np.float64)
        return self.flux_jy * (nu / (self.freq_ghz * 1e9)) ** alpha

    def matches(self, name: str) -> bool:
        key = _norm(name)
        return key == _norm(self.name) or (bool(self.alias) and key == _norm(self.alias))


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


def _row_to_cal(row: dict, where: str, source: str) -> Calibrator:
    def get(*keys):
        for k in keys:
            if k in row and row[k] is not None and not np.ma.is_masked(row[k]) and str(row[k]).strip() != "":
                return row[k]
        return None

    name = get("name")
    if name is None:
        raise CatalogueError(f"{where}: missing 'name'")
    ra, dec, flux = get("ra", "raj2000", "_raj2000"), get("dec", "dej2000", "_dej2000"), get("flux_jy")
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
    alias = get("alias")
    notes = get("notes")
    return Calibrator(str(name).strip(), ra_deg, dec_deg, flux_jy, freq, alpha,
                      "" if alias is None else str(alias).strip(),
                      "" if notes is None else str(notes).strip(), source)


def _read_csv_text(text: str, label: str) -> list[Calibrator]:
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CatalogueError(f"{label}: no header row")
    reader = csv.reader(io.StringIO("\n".join(ln for _, ln in lines)))
    rows = list(reader)
    header = [h.strip().lower() for h in rows[0]]
    for required in ("name", "flux_jy"):
        if required not in header:
            raise CatalogueError(f"{label} line {lines[0][0]}: header lacks column '{required}' (have {header})")
    if not ({"ra", "raj2000"} & set(header)) or not ({"dec", "dej2000"} & set(header)):
        raise CatalogueError(f"{label} line {lines[0][0]}: header needs 'ra' and 'dec' columns (have {header})")
    out = []
    for (lineno, _), values in zip(lines[1:], rows[1:]):
        where = f"{label} line {lineno}"
        if len(values) > len(header):
            raise CatalogueError(f"{where}: {len(values)} fields but header has {len(header)}")
        out.append(_row_to_cal(dict(zip(header, values)), where, label))
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
        cals = _read_csv_text(text, f"builtin {_BUILTIN}")
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
