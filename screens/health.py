"""Health: services, disk, calibration age, calibrator fluxes and unacknowledged alerts, one line each."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


class HealthScreen(TableScreen):
    TITLE = "Health"
    COLUMNS = (("what", "What"), ("status", "Status"), ("detail", "Detail"))
    EMPTY = "No health information yet."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        status = self.app.status()  # type: ignore[attr-defined]
        rows = [("engine", ("engine", status.get("engine", "?"), "")),
                ("scheduler", ("scheduler", status.get("scheduler", "?"), "")),
                ("rest", ("REST API", "running" if str(status.get("rest", "")).startswith("http") else
                          str(status.get("rest", "?")), str(status.get("rest", "")))),
                ("jupyter", ("Jupyter", "running" if status.get("jupyter_ok") else "unavailable",
                             str(status.get("jupyter", ""))))]
        for key, what, state, detail in self.app.services.health_lines():  # type: ignore[attr-defined]
            rows.append((key, (what, state, detail)))
        return rows
