"""Backups for the console: create, validate, restore preview and restore, delete, schedules."""

from __future__ import annotations

from engine.services.area import AreaService


class BackupService(AreaService):
    """Backups for the console."""
