"""Data products for the console: measurement sets, images with thumbnails, sources and light curves."""

from __future__ import annotations

from engine.services.area import AreaService


class DataService(AreaService):
    """Data products for the console."""
