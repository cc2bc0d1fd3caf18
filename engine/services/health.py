"""Health for the console: alerts (acknowledge, silence) and the trends behind its sparklines."""

from __future__ import annotations

from engine.services.area import AreaService


class HealthService(AreaService):
    """Health for the console."""
