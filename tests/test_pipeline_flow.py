"""End to end through the real runtime: files dropped in incoming/ become a Measurement Set."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from casacore.tables import table
from sqlalchemy import select

from conftest import make_settings
from engine.db import models as m
from engine_helpers import group_states, run_until
from engine.simulator import simulate


@pytest.fixture
async def flow_runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, ingest={"stable_s": 0, "poll_interval_s": 0.2},
                             engine={"poll_interval_s": 0.1, "retry_base_s": 0.1, "retry_max_s": 0.5})
    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_dropped_group_is_converted(flow_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rt = flow_runtime
    (group,) = simulate(tmp_path / "sim", groups=1, preset="tiny", start=datetime(2026, 11, 29, 8), seed=3)
    for f in group.files:
        shutil.copy(f, rt.settings.incoming_dir / f.name)
    gid = "2026-11-29T08:00:00"
    # no calibrator transit around 08:00 UTC at this declination and no set registered: after conversion
    # the target fails with that reason (old data is not waited for)
    await run_until(rt.db, lambda: group_states(rt.db).get(gid) == "failed", timeout=120)
    with rt.db.session() as s:
        ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == gid))
        job = s.scalar(select(m.Job).where(m.Job.group_id == gid, m.Job.type == "convert"))
        group = s.get_one(m.ObservationGroup, gid)
        logs = [r.message for r in s.scalars(select(m.JobLog).where(m.JobLog.job_id == job.id))]
    assert ms is not None and Path(ms.path).is_dir() and ms.n_channels == 768
    assert job.state == "succeeded" and job.attempts == 1
    assert any("converting 16 subband files" in line for line in logs)
    with table(ms.path, ack=False) as t:
        assert t.nrows() == ms.n_rows
        # conversion writes DATA only: CORRECTED_DATA appears with calibration, which never came
        assert "DATA" in t.colnames() and "CORRECTED_DATA" not in t.colnames()
    assert not list(rt.settings.ms_dir.glob("*.tmp*"))
    assert "no calibration set at dec 54.57" in group.error and not group.is_calibrator


async def test_corrupt_group_fails_with_reason_and_engine_goes_on(flow_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rt = flow_runtime
    g1, g2 = simulate(tmp_path / "sim", groups=2, preset="tiny", start=datetime(2026, 11, 29, 8), seed=4)
    # group 1: every other subband has a different antenna set → inconsistent subbands
    (alt,) = simulate(tmp_path / "alt", groups=1, preset="tiny", start=datetime(2026, 11, 29, 8), seed=4, n_ant=8)
    for f in g1.files[:8] + alt.files[8:]:
        shutil.copy(f, rt.settings.incoming_dir / f.name)
    for f in g2.files:
        shutil.copy(f, rt.settings.incoming_dir / f.name)
    ids = sorted({"2026-11-29T08:00:00", g2.start.strftime("%Y-%m-%dT%H:%M:%S")})
    await run_until(rt.db, lambda: {group_states(rt.db).get(i) for i in ids} == {"failed"}, timeout=120)
    with rt.db.session() as s:
        bad = s.get_one(m.ObservationGroup, ids[0])
        job = s.scalar(select(m.Job).where(m.Job.group_id == ids[0], m.Job.type == "convert"))
    assert bad.state == "failed" and job.attempts == 1 and job.error_kind == "permanent"
    assert "sb0" in bad.error or "antenna" in bad.error.lower()
    assert not (rt.settings.ms_dir / f"{ids[0]}.ms").exists()
    with rt.db.session() as s:  # the engine went on: the good group was converted
        assert s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == ids[1])) is not None


@pytest.mark.both_backends
async def test_calibrator_transit_flows_to_complete(tmp_path: Path, backend: str) -> None:
    """Two tiny groups around a J0834+555 transit: convert → solve → image → measure → complete.

    On SQLite and on PostgreSQL: the stage workers of the process pool write their job logs (the PROGRESS
    lines below) straight into the backend's job_logs."""
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, ingest={"stable_s": 0, "poll_interval_s": 0.2},
                             engine={"poll_interval_s": 0.1},
                             imaging={"params": {"fov_deg": 0.6, "niter": 300}})
    groups = simulate(tmp_path / "sim", groups=2, preset="tiny", seed=5)
    rt = Runtime(settings)
    assert rt.db.dialect == backend
    await rt.start()
    try:
        for g in groups:
            for f in g.files:
                shutil.copy(f, settings.incoming_dir / f.name)
        ids = [g.start.strftime("%Y-%m-%dT%H:%M:%S") for g in groups]
        await run_until(rt.db, lambda: [group_states(rt.db).get(i) for i in ids] == ["complete"] * 2, timeout=300)
    finally:
        await rt.stop()
    with rt.db.session() as s:
        groups_db = {g.id: g for g in s.scalars(select(m.ObservationGroup))}
        sets = list(s.scalars(select(m.CalibrationSet)))
        images = list(s.scalars(select(m.Image)))
        reports = {(j.type, ln.message.split(":")[0]) for j, ln in s.execute(
            select(m.Job, m.JobLog).join(m.JobLog, m.JobLog.job_id == m.Job.id).where(m.JobLog.level == "PROGRESS"))}
    # each stage's own progress reports reached its job log (what the Queue shows as fraction and ETA)
    assert {("convert", "write"), ("solve", "calibration"), ("image", "CLEAN")} <= reports
    assert all(g.is_calibrator and g.calibrator_name == "J0834+5534" for g in groups_db.values())
    assert sorted(c.status for c in sets) == ["active", "retired"]  # same transit: one wins, one is retired
    assert all(c.qa_metrics["snr_median"] > 10 for c in sets)
    assert len(images) == 2 and all(Path(i.path).exists() and Path(i.png_path).exists() for i in images)
    assert all(i.qa_grade in ("good", "warn", "fail") and i.qa_summary for i in images)
    assert all(i.data_column == "CORRECTED_DATA" and i.beam_major_arcsec for i in images)
