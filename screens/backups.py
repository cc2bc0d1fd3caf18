"""Backups: backup history, sizes and validation state."""

from __future__ import annotations

from typing import Any

from engine.units import human_bytes
from screens.table_screen import TableScreen




class BackupsScreen(TableScreen):
    TITLE = "Backups"
    COLUMNS = (("name", "Backup"), ("type", "Type"), ("status", "Status"), ("size", "Size"),
               ("created", "Created (UTC)"), ("by", "By"), ("valid", "Validated"))
    EMPTY = "No backups yet. Backups made by schedule or on request are listed here."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_backups()  # type: ignore[attr-defined]
        return [(b.id, (b.name or b.id, b.backup_type, b.status, human_bytes(b.size_bytes) if b.size_bytes is not None else "",
                        b.created_at.strftime("%Y-%m-%d %H:%M"), b.created_by or "", b.validation_status or ""))
                for b in rows]
