"""Nearest-neighbour sky crossmatch (astropy ``match_to_catalog_sky``)."""

from __future__ import annotations

import numpy as np


def crossmatch(ra_deg, dec_deg, cat_ra_deg, cat_dec_deg, radius_arcsec: float = 10.0) -> dict:
    """Match each source to its nearest catalogue entry within ``radius_arcsec``.

    Returns numpy arrays (one entry per source): ``index`` (catalogue row,
    -1 when no entry lies within the radius), ``sep_arcsec`` (to the nearest
    entry, NaN for an empty catalogue) and ``matched`` (bool).
    """
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    ra = np.atleast_1d(np.asarray(ra_deg, float))
    dec = np.atleast_1d(np.asarray(dec_deg, float))
    cra = np.atleast_1d(np.asarray(cat_ra_deg, float))
    cdec = np.atleast_1d(np.asarray(cat_dec_deg, float))
    n = ra.size
    if n == 0 or cra.size == 0:
        return {"index": np.full(n, -1), "sep_arcsec": np.full(n, np.nan), "matched": np.zeros(n, bool)}
    src = SkyCoord(ra * u.deg, dec * u.deg)
    cat = SkyCoord(cra * u.deg, cdec * u.deg)
    idx, sep, _ = src.match_to_catalog_sky(cat)
    sep = sep.arcsec
    ok = sep <= radius_arcsec
    return {"index": np.where(ok, idx, -1), "sep_arcsec": sep, "matched": ok}
