"""Backups: backup history, sizes and validation state."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class BackupsScreen(TableScreen):
    TITLE = "Backups"
    COLUMNS = (("name", "Backup"), ("type", "Type"), ("status", "Status"), ("size", "Size"),
               ("created", "Created (UTC)"), ("by", "By"), ("valid", "Validated"))
    EMPTY = "No backups yet. Backups made by schedule or on request are listed here."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_backups()  # type: ignore[attr-defined]
        return [(b.id, (b.name or b.id, b.backup_type, b.status, human_bytes(b.size_bytes),
                        b.created_at.strftime("%Y-%m-%d %H:%M"), b.created_by or "", b.validation_status or ""))
                for b in rows]
