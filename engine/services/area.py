"""What every area service shares: the database, the settings and the clock of one ``Services``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.db import Database
    from engine.services import Services
    from engine.settings import Settings


class AreaService:
    """One area of operations (calibrations, triggers, ...) over the shared services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def now(self) -> datetime:
        return self.services.clock()
