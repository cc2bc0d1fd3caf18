"""Triggers: scheduled and event triggers and when they last fired."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


class TriggersScreen(TableScreen):
    TITLE = "Triggers"
    COLUMNS = (("name", "Trigger"), ("type", "Type"), ("when", "Schedule / event"), ("action", "Action"),
               ("enabled", "Enabled"), ("last", "Last fired (UTC)"), ("error", "Error"))
    EMPTY = "No triggers defined. Create one from the dashboard or the REST API."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_triggers()  # type: ignore[attr-defined]
        return [(t.id, (t.name, t.trigger_type, t.schedule or t.event or "", t.action, "yes" if t.enabled else "no",
                        t.last_triggered_at.strftime("%Y-%m-%d %H:%M") if t.last_triggered_at else "never",
                        (t.last_error or "")[:40])) for t in rows]
