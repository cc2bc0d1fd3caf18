"""The Queue's group detail view: stages with attempts and errors, products, calibration, history."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from textual.widgets import DataTable, Static

from engine.db import Database
from engine.db import models as m
from engine.processing.queue import JobQueue
from engine.processing.transitions import transition
from screens.group_detail import GroupDetailScreen
from tui_helpers import make_app, settle

GID = "2026-11-29T01:00:00"


def seed(db: Database, tmp_path) -> str:
    """A target group converted, then failed in imaging twice (transient, then permanent)."""
    ms_path = tmp_path / "g.ms"
    (ms_path / "table.f0").parent.mkdir(parents=True)
    (ms_path / "table.f0").write_bytes(b"x" * 2500)
    with db.session() as s:
        s.add(m.ObservationGroup(id=GID, group_time=datetime(2026, 11, 29, 1, tzinfo=UTC), state="pending",
                                 n_subbands=15, missing_subbands=[7], dec_deg=55.57))
        s.add(m.CalibrationSet(name="cal_0834", calibrator_name="J0834+5534", status="active", dec_deg=55.57,
                               source_ms_path="/data/ms/cal.ms", refant="DSA-001",
                               valid_start_mjd=0.0, valid_end_mjd=1e6, mid_mjd=61000.0, qa_passed=True))
    with db.session() as s:
        transition(s, GID, "pending", "converting")
        transition(s, GID, "converting", "converted")
        s.add(m.MeasurementSet(group_id=GID, path=str(ms_path), n_rows=1000, n_channels=768,
                               cal_sets_applied=["cal_0834"],
                               qa_summary="calibrated (nearest): cal_0834 is 0.4 h away, within 12 h"))
    q = JobQueue(db)
    conv = q.enqueue("convert", group_id=GID)
    c = q.claim("w", ["convert"], 60)
    with db.session() as s:
        q.finish(s, c.id, "w", "succeeded", outcome={"rows": 1000})
    q.enqueue("image", group_id=GID)
    c = q.claim("w", ["image"], 60)
    with db.session() as s:
        q.finish(s, c.id, "w", "failed", error="all imaging weights are zero", error_kind="permanent")
        transition(s, GID, "converted", "failed", reason="image: all imaging weights are zero")
        s.get_one(m.ObservationGroup, GID).error = "image: all imaging weights are zero"
    return conv


async def test_detail_view_explains_a_failed_group(db: Database, tmp_path) -> None:
    seed(db, tmp_path)
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, GroupDetailScreen)
        stages = screen.query_one("#stages", DataTable)
        rows = [stages.get_row_at(i) for i in range(stages.row_count)]
        assert [r[0] for r in rows] == ["convert", "image"]
        assert rows[0][1] == "succeeded" and rows[1][1] == "failed"
        assert rows[1][2] == "1/3" and rows[1][5] == "permanent"
        assert "image (attempt 1/3, permanent): all imaging weights are zero" in str(
            screen.query_one("#stage-errors", Static).render())
        assert "image: all imaging weights are zero" in str(screen.query_one("#error", Static).render())
        products = str(screen.query_one("#products", Static).render())
        assert "g.ms" in products and "2.4 KB" in products and "768 ch" in products   # measured on disk
        calibration = str(screen.query_one("#calibration", Static).render())
        assert "cal_0834: J0834+5534, active" in calibration
        assert "why: calibrated (nearest): cal_0834 is 0.4 h away, within 12 h" in calibration
        history = str(screen.query_one("#history", Static).render())
        assert "pending → converting" in history and "converted → failed" in history
        assert "missing [7]" in str(screen.query_one("#title", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, GroupDetailScreen)
        await pilot.press("enter")                     # enter on the row opens it as well
        await settle(pilot)
        assert isinstance(app.screen, GroupDetailScreen)


async def test_detail_of_a_group_that_vanished(db: Database) -> None:
    app = make_app(db)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        app.push_screen(GroupDetailScreen("nope"))
        await settle(pilot)
        assert "no such group" in str(app.screen.query_one("#title", Static).render())


def _pin_clock(db: Database) -> None:
    """Fixed times and paths for the snapshot: the view shows nothing that depends on today."""
    t0 = datetime(2026, 11, 29, 1, 6, tzinfo=UTC)
    with db.session() as s:
        s.get_one(m.ObservationGroup, GID).state_changed_at = t0
        for i, tr in enumerate(s.scalars(select(m.StateTransition).order_by(m.StateTransition.id))):
            tr.at = t0.replace(second=10 * i)
        for i, job in enumerate(s.scalars(select(m.Job).order_by(m.Job.created_at, m.Job.id))):
            job.created_at = job.started_at = t0.replace(minute=6 + i)
            job.finished_at = t0.replace(minute=6 + i, second=41)
        ms = s.scalars(select(m.MeasurementSet)).one()
        ms.path, ms.size_bytes = f"/data/ms/{GID}.ms", 1_310_000_000


def test_snapshot_group_detail(snap_compare, db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed(db, tmp_path)
    _pin_clock(db)
    app = make_app(db)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
