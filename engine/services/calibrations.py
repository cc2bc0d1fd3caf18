"""Calibration sets for the console: detail, gains and bandpass for plots, retire/reinstate, re-solve, which set a target would use."""

from __future__ import annotations

from engine.services.area import AreaService


class CalibrationService(AreaService):
    """Calibration sets for the console."""
