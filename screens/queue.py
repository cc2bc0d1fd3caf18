"""Queue: every observation group, newest first, with its single processing state."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


def _dt(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


class QueueScreen(TableScreen):
    TITLE = "Queue"
    COLUMNS = (("id", "Group"), ("state", "State"), ("sb", "SB"), ("dec", "Dec°"), ("cal", "Calibrator"),
               ("changed", "Changed (UTC)"), ("error", "Error"))
    EMPTY = ("No observation groups yet. Files dropped into incoming/ (or registered with "
             "`contimg ingest`) appear here as they are grouped.")

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_groups()  # type: ignore[attr-defined]
        return [(g.id, (g.id, g.state, str(g.n_subbands), "" if g.dec_deg is None else f"{g.dec_deg:.2f}",
                        g.calibrator_name or "", _dt(g.state_changed_at), (g.error or "")[:60])) for g in rows]
