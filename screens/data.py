"""Data: the newest images with their QA grade, noise and beam (sources are counted in the header)."""

from __future__ import annotations

from typing import Any

from screens.table_screen import TableScreen


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


class DataScreen(TableScreen):
    TITLE = "Data"
    COLUMNS = (("image", "Image"), ("qa", "QA"), ("noise", "RMS mJy"), ("peak", "Peak Jy"), ("dr", "DR"),
               ("beam", "Beam \""), ("created", "Created (UTC)"))
    EMPTY = "No images yet. Each group is imaged after calibration; products appear here with their QA."

    def fetch(self) -> list[tuple[str, tuple[Any, ...]]]:
        rows = self.app.services.recent_images()  # type: ignore[attr-defined]
        return [(i["id"], (i["name"], i["qa_grade"] or "", _num(i["noise_mjy"], ".2f"), _num(i["peak_jy"], ".3f"),
                           _num(i["dynamic_range"], ".0f"), i["beam"], i["created_at"].strftime("%Y-%m-%d %H:%M")))
                for i in rows]
