"""Triggers for the console: the same engine functions the REST layer calls, bound to one database and settings."""

from __future__ import annotations

from engine.services.area import AreaService


class TriggerService(AreaService):
    """Triggers for the console."""
