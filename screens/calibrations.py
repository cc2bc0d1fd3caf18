"""Calibrations: registered sets, their validity windows, QA and status."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


class CalibrationsScreen(TableScreen):
    TITLE = "Calibrations"
    COLUMNS = (("name", "Set"), ("cal", "Calibrator"), ("status", "Status"), ("dec", "Dec°"),
               ("window", "Valid MJD"), ("qa", "QA"), ("snr", "SNR"))
    EMPTY = "No calibration sets registered yet. A calibrator transit is solved and registered here."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.list_calibration_sets()  # type: ignore[attr-defined]
        return [(str(c.id), (c.name, c.calibrator_name, c.status, f"{c.dec_deg:.2f}",
                             f"{c.valid_start_mjd:.3f}–{c.valid_end_mjd:.3f}", "pass" if c.qa_passed else "fail",
                             "" if c.snr is None else f"{c.snr:.0f}")) for c in rows]
