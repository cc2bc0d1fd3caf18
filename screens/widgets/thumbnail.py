"""An image drawn in the terminal with half blocks: two pixels a cell, so a preview reads over SSH.

Each cell is ``▀`` with the upper pixel as foreground and the lower as background;
a terminal cell is about twice as tall as wide, so each half is close to square and
the image keeps its aspect. The grey levels are scaled to the widget's size with
Pillow (max-pooled first when reducing a lot, so point sources do not vanish into the
average) once per size, and the strips are cached until the size or image changes.
"""

from __future__ import annotations

import textwrap

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

UPPER_HALF = "▀"


def fit(width_px: int, height_px: int, cells_w: int, cells_h: int) -> tuple[int, int]:
    """Pixel size (w, h) of the image scaled to fit ``cells_w`` × ``2·cells_h`` half-cells, aspect kept."""
    if width_px <= 0 or height_px <= 0 or cells_w <= 0 or cells_h <= 0:
        return 0, 0
    scale = min(cells_w / width_px, 2 * cells_h / height_px)
    return max(1, min(cells_w, round(width_px * scale))), max(1, min(2 * cells_h, round(height_px * scale)))


def scale_grey(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` (uint8 grey, row 0 on top) resized to ``height`` × ``width`` with Pillow."""
    from PIL import Image

    arr = np.asarray(pixels, dtype=np.uint8)
    factor = min(arr.shape[1] // max(1, width), arr.shape[0] // max(1, height))
    if factor >= 2:  # keep the brightest pixel of each block: a 2-pixel source survives a 10× reduction
        ny, nx = (arr.shape[0] // factor) * factor, (arr.shape[1] // factor) * factor
        arr = arr[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).max(axis=(1, 3))
    im = Image.fromarray(arr, mode="L")
    shrinking = im.width >= width and im.height >= height
    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.NEAREST
    return np.asarray(im.resize((width, height), resample), dtype=np.uint8)


class Thumbnail(Widget):
    """Grey levels drawn with half blocks, centred; a one-line reason when there is nothing to draw."""

    DEFAULT_CSS = """
    Thumbnail { width: 1fr; height: 1fr; background: $surface; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.pixels: np.ndarray | None = None
        self.message = "loading preview…"
        self._strips: list[Strip] = []
        self._built_for: tuple[int, int] = (0, 0)
        #: the pixel size the image was scaled to at the last draw (tests and the caption read it)
        self.drawn_px: tuple[int, int] = (0, 0)

    def show(self, pixels: np.ndarray | None, message: str = "") -> None:
        """Draw ``pixels`` (2-D uint8), or ``message`` when they are None."""
        self.pixels = None if pixels is None else np.asarray(pixels, dtype=np.uint8)
        self.message = message
        self._built_for = (0, 0)
        self.refresh()

    def on_resize(self) -> None:
        self._built_for = (0, 0)
        self.refresh()

    def _build(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        blank = Strip.blank(width, base)
        if self.pixels is None or self.pixels.ndim != 2 or not self.pixels.size:
            lines = textwrap.wrap(self.message or "no preview", max(8, width - 2))[:height]
            top = max(0, (height - len(lines)) // 2)
            out = [blank] * height
            for i, line in enumerate(lines):
                pad = max(0, (width - len(line)) // 2)
                out[top + i] = Strip([Segment(" " * pad + line, base)]).adjust_cell_length(width, base)
            self.drawn_px = (0, 0)
            return out
        w, h = fit(self.pixels.shape[1], self.pixels.shape[0], width, height)
        grey = scale_grey(self.pixels, w, h)
        self.drawn_px = (w, h)
        rows = (h + 1) // 2
        top, left = (height - rows) // 2, (width - w) // 2
        out = [blank] * height
        for r in range(rows):
            upper = grey[2 * r]
            lower = grey[2 * r + 1] if 2 * r + 1 < h else None
            segments = [Segment(" " * left, base)] if left else []
            for x in range(w):
                u = int(upper[x])
                style = Style(color=Color.from_rgb(u, u, u),
                              bgcolor=None if lower is None else Color.from_rgb(*(int(lower[x]),) * 3))
                segments.append(Segment(UPPER_HALF, base + style))
            out[top + r] = Strip(segments).adjust_cell_length(width, base).simplify()
        return out

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if (width, height) != self._built_for:
            self._strips = self._build(width, height)
            self._built_for = (width, height)
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(width, self.rich_style)
