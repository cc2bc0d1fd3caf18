"""The conversion stage: one group's subband files → one Measurement Set in ``ms/``.

``run`` executes in a pool process. The converter writes to a temporary path and
renames into place only after validation; a product left at the final path by an
attempt whose success was never recorded (a crash between rename and commit) is
replaced, since the database — not the file system — says what is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.db import models as m
from engine.errors import PermanentStageError
from engine.processing import states
from engine.processing.stages import Stage


def prepare(s: Any, group: m.ObservationGroup, settings: Any) -> dict[str, Any]:
    files = list(s.scalars(select(m.Hdf5File.path).where(m.Hdf5File.group_id == group.id,
                                                        m.Hdf5File.status == "grouped")
                           .order_by(m.Hdf5File.subband)))
    return {
        "group_id": group.id,
        "files": files,
        "out": str(settings.ms_dir / f"{group.id}.ms"),
        "min_subbands": settings.ingest.min_subbands,
        "convention": settings.ingest.convention,
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    import logging

    from engine.convert import convert_group

    log = logging.getLogger("contimg.stage.convert")
    if not params["files"]:
        raise PermanentStageError(f"group {params['group_id']}: no valid subband files to convert")
    log.info("converting %d subband files into %s", len(params["files"]), params["out"])
    # DATA only: CORRECTED_DATA is written by calibration (so its presence means "calibrated"
    # and an uncalibrated image says so), MODEL_DATA by whatever predicts a model (WSClean adds
    # it itself). Writing them here cost 2.7 GB of writes per full-size group.
    result = convert_group(params["files"], params["out"], convention=params["convention"],
                           min_subbands=params["min_subbands"], overwrite=True, imaging_columns=False)
    log.info("wrote %s: %d rows, %d channels, %d antennas, flagged %.1f%%", result.ms_path, result.rows,
             result.channels, result.antennas, 100 * result.flagged_fraction)
    out = result.as_dict()
    out["size_bytes"] = sum(p.stat().st_size for p in Path(result.ms_path).rglob("*") if p.is_file())
    return out


def record(s: Any, group: m.ObservationGroup, outcome: dict[str, Any], settings: Any) -> None:
    ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == group.id))
    if ms is None:
        ms = m.MeasurementSet(group_id=group.id, path=outcome["ms_path"])
        s.add(ms)
    ms.path = outcome["ms_path"]
    ms.n_rows, ms.n_channels, ms.n_antennas = outcome["rows"], outcome["channels"], outcome["antennas"]
    ms.start_mjd, ms.end_mjd = outcome["start_mjd"], outcome["end_mjd"]
    ms.phase_ra_deg, ms.phase_dec_deg = outcome["phase_center_ra_deg"], outcome["phase_center_dec_deg"]
    ms.flagged_fraction, ms.size_bytes = outcome["flagged_fraction"], outcome.get("size_bytes")
    group.start_mjd, group.end_mjd = outcome["start_mjd"], outcome["end_mjd"]
    if outcome.get("pointing_dec_deg") is not None:
        group.dec_deg = outcome["pointing_dec_deg"]
    if outcome["missing_subbands"]:
        group.missing_subbands = outcome["missing_subbands"]
    from engine.processing.stage_calibrate import classify_group

    classify_group(group, settings)  # refined with the MS's real times


STAGE = Stage("convert", states.PENDING, states.CONVERTING, states.CONVERTED,
              "engine.processing.stage_convert:run", prepare, record)
