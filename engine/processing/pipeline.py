"""The installed stages of the DSA-110 pipeline.

Only real stages are registered. A group stops in the resting state after the
last installed stage (e.g. ``converted`` while calibration is not installed),
which ``contimg status`` shows; nothing is ever marked complete by a stand-in.
"""

from __future__ import annotations

from engine.processing.stages import StageRegistry


def default_registry() -> StageRegistry:
    from engine.processing import stage_calibrate, stage_convert, stage_image

    registry = StageRegistry()
    registry.register(stage_convert.STAGE)
    registry.register(stage_calibrate.SOLVE)
    registry.register(stage_calibrate.CALIBRATE)
    registry.register(stage_image.IMAGE)
    registry.register(stage_image.MEASURE)
    return registry
