"""The Queue's reads and actions beyond job control: keyset pages of groups, priority, reprocessing, progress."""

from __future__ import annotations

from engine.services.area import AreaService


class QueueService(AreaService):
    """The Queue's reads and actions beyond job control."""
