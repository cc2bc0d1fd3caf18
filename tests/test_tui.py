"""Pilot tests of the console shell and snapshot tests of its screens."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from textual.widgets import DataTable, Static

from contimg_console.app import ContimgApp
from engine.db import Database
from engine.db import models as m
from screens.help import HelpScreen
from tui_helpers import make_app, settle

MODES = ("queue", "calibrations", "triggers", "backups", "data")


async def test_switch_between_screens(db: Database) -> None:
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.current_mode == "queue"
        for key, mode in zip("2341", ("calibrations", "triggers", "backups", "queue"), strict=True):
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode
            empty = app.screen.query_one("#empty", Static)
            assert empty.display  # proper empty state, not a blank table
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_rest_answers_while_tui_runs(runtime: object) -> None:
    """TUI, REST and scheduler share one loop: a REST call during run_test is answered."""
    rt = runtime
    app = ContimgApp(rt.services, status=rt.status, refresh_interval=0.5)  # type: ignore[attr-defined]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        async with aiohttp.ClientSession() as http:
            async with http.get(rt.api_url + "/api/health") as resp:  # type: ignore[attr-defined]
                assert resp.status == 200
        assert rt.scheduler.running  # type: ignore[attr-defined]
        assert "REST 127.0.0.1:" in str(app.screen.query_one("#status", Static).render())


async def test_keymap_from_config_rebinds(db: Database) -> None:
    app = make_app(db, keymap={"mode.backups": "b"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await pilot.pause()
        assert app.current_mode == "backups"


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_empty_screens(snap_compare, db: Database, mode: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(db)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.app.switch_mode(mode)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_operator_retries_a_failed_group_from_the_queue(db: Database) -> None:
    from engine.processing.queue import JobQueue

    with db.session() as s:
        s.add(m.ObservationGroup(id="g1", group_time=datetime(2026, 11, 29, 1, tzinfo=UTC), state="failed",
                                 error="corrupt"))
    queue = JobQueue(db)
    job_id = queue.enqueue("convert", group_id="g1")
    claimed = queue.claim("w", ["convert"], 60)
    with db.session() as s:
        queue.finish(s, claimed.id, "w", "failed", error="corrupt", error_kind="permanent")
    app = make_app(db)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert queue.get(job_id).state == "queued"
        with db.session() as s:
            assert s.get_one(m.ObservationGroup, "g1").state == "pending"
        await pilot.press("p")
        await settle(pilot)
        from engine.processing.pause import read_paused

        assert read_paused(db)
        await pilot.press("l")
        await settle(pilot)
        from textual.widgets import Log

        from screens.job_log import JobLogScreen

        assert isinstance(app.screen, JobLogScreen)
        text = "\n".join(app.screen.query_one(Log).lines)
        assert "retried by console" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, JobLogScreen)


async def test_read_only_console_refuses_actions(db: Database) -> None:
    with db.session() as s:
        s.add(m.ObservationGroup(id="g1", group_time=datetime(2026, 11, 29, 1, tzinfo=UTC), state="failed"))
    app = make_app(db, read_only=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        from engine.processing.pause import read_paused

        assert not read_paused(db)


async def test_data_and_health_screens(db: Database) -> None:
    with db.session() as s:
        s.add(m.Image(id="img1", path="/x/2026-11-29T01:00:00-image.fits", qa_grade="good", noise_jy=0.0012,
                      peak_flux_jy=3.1, dynamic_range=2600, beam_major_arcsec=50.2, beam_minor_arcsec=33.9,
                      created_at=datetime(2026, 11, 29, 1, tzinfo=UTC)))
        s.add(m.Alert(alert_type="pointing_change", severity="warning", message="pointing changed", source="ingest"))
        s.flush()  # the image row first: the measurements refer to it
        for mjd, ratio in ((61000.1, 1.01), (61001.1, 0.71)):
            s.add(m.CalibratorFlux(calibrator_name="J0834+5534", image_id="img1", mjd=mjd, freq_hz=1.4e9,
                                   observed_flux_jy=5 * ratio, apparent_flux_jy=3.4 * ratio, catalog_flux_jy=5.0,
                                   flux_ratio=ratio, beam_gain=0.68, offset_deg=1.0))
    app = make_app(db)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        from screens.widgets.paged_table import PagedTable

        images = app.screen.query_one("#table-images", PagedTable)  # the Data screen opens on its images
        assert app.current_mode == "data" and images.cursor_row().cells[:3] == ("2026-11-29T01:00:00", "good", "1.20")
        await pilot.press("6")
        await settle(pilot)
        lines = app.screen.query_one("#lines", DataTable)   # Health: alerts on top, one line per check below
        rows = {lines.get_row_at(i)[0]: lines.get_row_at(i) for i in range(lines.row_count)}
        assert {"engine", "scheduler", "REST API", "data disk", "calibration", "failed jobs"} <= set(rows)
        assert rows["calibration"][1] == "[b]none[/b]"
        assert rows["Jupyter"][1:] == ["running", "http://127.0.0.1:8888"]
        assert rows["flux J0834+5534"][1:] == ["[b]check[/b]", "observed/catalogue 0.710 (latest of 2)"]
        assert app.screen.query_one("#table", DataTable).get_row_at(0)[3] == "pointing_change"
