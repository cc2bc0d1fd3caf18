"""IVOA Simple Cone Search 1.03 over the source catalogue.

``RA``, ``DEC`` and ``SR`` are decimal degrees (ICRS); ``VERB`` (1-3) chooses how many
columns come back. The response is a VOTable 1.1 document, because SCS 1.03 requires the
UCD1 words ``ID_MAIN``, ``POS_EQ_RA_MAIN`` and ``POS_EQ_DEC_MAIN`` (VOTable ≥ 1.2 validates
UCD1+). Any bad parameter answers the standard's error VOTable, never a partial table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from sqlalchemy import select

from engine.db import Database
from engine.db import models as m

from .votable import VOError, error_document, finite, table_document

MAX_SR_DEG = 10.0
MAX_ROWS = 100_000

# name, UCD (1.03 words for the three the standard requires), unit, description, minimum VERB
COLUMNS: tuple[tuple[str, str, str, str, int], ...] = (
    ("id", "ID_MAIN", "", "source identifier", 1),
    ("ra_deg", "POS_EQ_RA_MAIN", "deg", "right ascension (ICRS, J2000)", 1),
    ("dec_deg", "POS_EQ_DEC_MAIN", "deg", "declination (ICRS, J2000)", 1),
    ("name", "meta.id", "", "source name", 2),
    ("peak_flux_jy", "phot.flux.density;stat.max", "Jy", "brightest measured flux density", 2),
    ("mean_flux_jy", "phot.flux.density;stat.mean", "Jy", "mean flux density", 2),
    ("n_detections", "meta.number", "", "number of detections", 2),
    ("n_images", "meta.number", "", "number of images covering the source", 3),
    ("eta", "stat.fit.chi2", "", "variability eta", 3),
    ("v", "stat.stdev", "", "variability V (fractional rms)", 3),
    ("chi2_nu", "stat.fit.chi2", "", "reduced chi2 against a constant", 3),
    ("modulation_index", "stat.stdev", "", "modulation index", 3),
)


def _number(params: Mapping[str, str], key: str, required: bool = True) -> float | None:
    raw = params.get(key)
    if raw is None or str(raw).strip() == "":
        if required:
            raise VOError(f"{key} is required (decimal degrees)")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise VOError(f"{key} must be a number in decimal degrees, not {raw!r}") from None
    if not math.isfinite(value):
        raise VOError(f"{key} must be finite, not {raw!r}")
    return value


def parse(params: Mapping[str, str]) -> tuple[float, float, float, int]:
    """(ra, dec, sr, verb) from a case-insensitive parameter mapping, or VOError naming the parameter."""
    p = {k.upper(): v for k, v in params.items()}
    ra, dec, sr = _number(p, "RA"), _number(p, "DEC"), _number(p, "SR")
    assert ra is not None and dec is not None and sr is not None
    if not 0.0 <= ra <= 360.0:
        raise VOError(f"RA must be in [0, 360] deg, not {ra:g}")
    if not -90.0 <= dec <= 90.0:
        raise VOError(f"DEC must be in [-90, 90] deg, not {dec:g}")
    if not 0.0 <= sr <= MAX_SR_DEG:
        raise VOError(f"SR must be in [0, {MAX_SR_DEG:g}] deg, not {sr:g}")
    verb_raw = p.get("VERB", "2") or "2"
    if verb_raw not in ("1", "2", "3"):
        raise VOError(f"VERB must be 1, 2 or 3, not {verb_raw!r}")
    return ra % 360.0, dec, sr, int(verb_raw)


def separation_deg(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Great-circle separation (haversine, stable at small angles)."""
    r1, d1, r0, d0 = np.radians(ra), np.radians(dec), math.radians(ra0), math.radians(dec0)
    h = np.sin((d1 - d0) / 2) ** 2 + np.cos(d1) * math.cos(d0) * np.sin((r1 - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def search(db: Database, params: Mapping[str, str]) -> bytes:
    """The SCS response document for ``params`` (an error VOTable when they are bad)."""
    try:
        ra, dec, sr, verb = parse(params)
    except VOError as exc:
        return error_document(str(exc), version="1.1", scs=True)
    cols = [c for c in COLUMNS if c[4] <= verb]
    attrs = [getattr(m.Source, c[0]) for c in cols]
    with db.session() as s:
        rows = s.execute(select(*attrs).where(m.Source.dec_deg >= dec - sr, m.Source.dec_deg <= dec + sr)).all()
    if rows:
        sep = separation_deg(np.array([r[1] for r in rows], dtype=float), np.array([r[2] for r in rows], dtype=float),
                             ra, dec)
        order = [i for i in np.argsort(sep, kind="stable") if sep[i] <= sr]
    else:
        sep, order = np.array([]), []
    matches = len(order)
    truncated = matches > MAX_ROWS
    order = order[:MAX_ROWS]
    out = [[finite(v) for v in rows[i]] + [float(sep[i])] for i in order]
    meta = {c[0]: {"ucd": c[1], "unit": c[2], "description": c[3]} for c in cols}
    meta["_r"] = {"ucd": "", "unit": "deg", "description": "distance from the cone centre"}
    infos = [("truncated", f"only the nearest {MAX_ROWS} of {matches} matches")] if truncated else []
    return table_document([c[0] for c in cols] + ["_r"], out, meta, version="1.1",
                          description=f"DSA-110 continuum sources within {sr:g} deg of ({ra:g}, {dec:g})",
                          infos=infos)
