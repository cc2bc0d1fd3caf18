"""Animated cut-outs: the same patch of sky in every image that covers it, in time order, as a GIF.

DSA-110 revisits each patch once a sidereal day (drift scan at fixed declination), so
the frames are the images from other days at the same LST — what an astronomer
flicks through to see a source vary. All frames share one linear grey scale (noise
floor to the brightest pixel of any frame), so a brightness change between frames is real,
not a re-stretch; each frame is labelled with its time.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from typing import Any

import numpy as np

MAX_FRAMES = 30
FRAME_MS = 600
SEARCH_RADIUS_DEG = 3.0  # wider than the primary beam: each candidate's own WCS decides


def _plane(data: np.ndarray) -> np.ndarray:
    while data.ndim > 2:
        data = data[0]
    return data


def _cut(path: str, ra: float, dec: float, size_px: int | None) -> tuple[np.ndarray, int] | None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D, NoOverlapError
    from astropy.wcs import WCS

    try:
        with fits.open(path, memmap=False) as hdul:
            plane = _plane(hdul[0].data)
            wcs = WCS(hdul[0].header).celestial
    except (OSError, ValueError):
        return None  # a file gone (retention) or unreadable: the animation goes on without it
    size = size_px or max(16, min(plane.shape) // 4)
    x, y = wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
    if not (0 <= x < plane.shape[1] and 0 <= y < plane.shape[0]):
        return None
    try:
        cut = Cutout2D(plane, (float(x), float(y)), (size, size), wcs=wcs, mode="partial", fill_value=np.nan)
    except NoOverlapError:
        return None
    return np.asarray(cut.data, dtype=np.float32), size


def candidates_near(rows: list[dict[str, Any]], ra: float, dec: float) -> list[dict[str, Any]]:
    """Images whose pointing lies within the search radius of (ra, dec)."""
    out = []
    r0, d0 = math.radians(ra), math.radians(dec)
    for row in rows:
        if row.get("pointing_ra_deg") is None or row.get("pointing_dec_deg") is None:
            continue
        r1, d1 = math.radians(row["pointing_ra_deg"]), math.radians(row["pointing_dec_deg"])
        cosd = math.sin(d0) * math.sin(d1) + math.cos(d0) * math.cos(d1) * math.cos(r1 - r0)
        if math.degrees(math.acos(max(-1.0, min(1.0, cosd)))) <= SEARCH_RADIUS_DEG:
            out.append(row)
    return out


def animated_cutout(center: dict[str, Any], rows: list[dict[str, Any]], ra: float, dec: float,
                    size_px: int | None = None) -> tuple[bytes, int]:
    """GIF bytes and the number of frames: up to MAX_FRAMES images covering (ra, dec), nearest in time to
    ``center`` (which is always one of them), shown oldest first."""
    from PIL import Image, ImageDraw

    t0 = center["created_at"]
    pool = sorted(candidates_near(rows, ra, dec), key=lambda r: abs((r["created_at"] - t0).total_seconds()))
    frames: list[tuple[datetime, np.ndarray]] = []
    first = _cut(center["path"], ra, dec, size_px)
    if first is None:
        raise ValueError(f"image {center['id']} does not cover RA {ra:.4f}, Dec {dec:.4f}")
    data, size = first
    frames.append((t0, data))
    for row in pool:
        if len(frames) >= MAX_FRAMES:
            break
        if row["id"] == center["id"]:
            continue
        got = _cut(row["path"], ra, dec, size)
        if got is not None:
            frames.append((row["created_at"], got[0]))
    frames.sort(key=lambda f: f[0])
    stack = np.concatenate([f[1][np.isfinite(f[1])] for f in frames]) if frames else np.array([0.0])
    # floor at the 1st percentile (noise), ceiling at the brightest pixel of any frame: no frame saturates,
    # so a source twice as bright is twice as light
    lo, hi = (float(np.percentile(stack, 1)), float(stack.max())) if stack.size else (0.0, 1.0)
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    zoom = max(1, 256 // size)
    images = []
    for when, plane in frames:
        grey = np.nan_to_num((plane - lo) * scale, nan=0.0).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(np.flipud(grey), "L").resize((size * zoom, size * zoom), Image.NEAREST)
        im = im.convert("P")
        draw = ImageDraw.Draw(im)
        draw.text((3, 2), when.strftime("%Y-%m-%d %H:%M UTC"), fill=255)
        images.append(im)
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0)
    return out.getvalue(), len(images)
