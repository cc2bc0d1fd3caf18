"""The Logs screen on records emitted through the real logging setup: follow, filters, search, jump to a job."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from textual.widgets import Input, Log, Static

import engine.logs
from engine.db import Database
from engine.db import models as m
from engine.logs import RingBufferHandler, setup_logging
from engine.processing import states
from engine.processing.queue import JobQueue
from screens.job_log import JobLogScreen
from screens.logs import LogsScreen
from screens.prompt import PromptScreen
from screens.widgets.log_view import LogView
from tui_helpers import FIXED_NOW, make_app, settle

LEVEL = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


@pytest.fixture
def ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RingBufferHandler]:
    """A fresh ring buffer and log file through ``setup_logging``, as the console configures them."""
    root = logging.getLogger("contimg")
    saved = (root.level, root.propagate)
    monkeypatch.setattr(engine.logs, "_ring", None)
    ring = setup_logging(tmp_path / "logs")
    yield ring
    for handler in list(root.handlers):
        if getattr(handler, "_contimg", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[0])
    root.propagate = saved[1]


def emit(component: str, level: str, message: str, at: datetime, job_id: str | None = None) -> None:
    """One record through the ``contimg`` logger tree, stamped ``at`` (so snapshots do not drift)."""
    logger = logging.getLogger(f"contimg.{component}")
    record = logger.makeRecord(logger.name, LEVEL[level], __file__, 0, message, (), None,
                               extra={"job_id": job_id} if job_id else None)
    record.created = at.timestamp()
    logger.handle(record)


def night(job_ids: tuple[str, str] = ("3f9c2a17e0b14d6c", "8b21d4e0aa6f4c19")) -> None:
    """A plausible night: ingest, a retried conversion, an alert, API traffic, a failed image."""
    conv, img = job_ids
    t0 = FIXED_NOW - timedelta(minutes=30)
    lines = [
        ("engine", "INFO", "engine started (2 workers, not paused)", None),
        ("ingest", "INFO", "registered 16 subbands of group 2026-11-29T11:30:00", None),
        ("ingest", "DEBUG", "scan of incoming/ took 12 ms", None),
        ("engine", "WARNING", f"job {conv} attempt 1 failed (transient), retrying at 11:31:40: OSError: "
                              "disk I/O error", conv),
        ("api.access", "INFO", "GET /api/v1/health/alerts 200 3.1 ms", None),
        ("engine", "INFO", f"job {conv} (convert) succeeded for group 2026-11-29T11:30:00", conv),
        ("alerting", "WARNING", "alert policy disk nearly full fired: contimg_disk_usage_ratio = 0.912 > 0.9",
         None),
        ("engine", "WARNING", "recovered 2 jobs with expired leases", None),
        ("api.access", "INFO", "GET /api/v1/jobs?state=failed 200 5.0 ms", None),
        ("engine", "ERROR", f"job {img} failed (permanent): corrupt input: header checksum mismatch", img),
        ("triggers", "INFO", "trigger nightly-backup fired: backup queued", None),
        ("ingest", "WARNING", "group 2026-11-29T11:35:00 has 15 of 16 subbands after 10 min; lease on the "
                              "incomplete group kept", None),
        ("calibration", "INFO", "calibration set cal_0834 registered (J0834+5534, QA passed)", None),
        ("engine", "INFO", "group 2026-11-29T11:40:00 waits: no calibration set within 12 h", None),
    ]
    for i, (component, level, message, job) in enumerate(lines):
        emit(component, level, message, t0 + timedelta(seconds=97 * i), job)


def texts(view: LogView) -> list[str]:
    return [ln.text for ln in view.shown_lines]


async def _open_logs(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("7")
    await settle(pilot)


def bar(app: Any) -> str:
    return str(app.screen.query_one("#logbar", Static).render())


async def test_follow_shows_new_lines_and_freezing_keeps_the_place(db: Database, ring: RingBufferHandler) -> None:
    for i in range(60):
        emit("engine", "INFO", f"line {i}", FIXED_NOW + timedelta(seconds=i))
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        screen = app.screen
        assert isinstance(screen, LogsScreen)
        view = screen.view
        assert len(view.shown) == 60 and view.follow and view.current_line.text.endswith("line 59")
        assert view.scroll_y == view.max_scroll_y > 0          # the newest line is on screen
        assert "FOLLOWING" in bar(app) and "60 lines" in bar(app)
        emit("engine", "INFO", "line 60", FIXED_NOW + timedelta(seconds=60))
        screen.refresh_data()
        await pilot.pause()
        assert view.current_line.text.endswith("line 60") and view.scroll_y == view.max_scroll_y

        await pilot.press("up", "up", "up")                  # reading: the view freezes
        await pilot.pause()
        assert not view.follow and view.current_line.text.endswith("line 57")
        assert "FROZEN" in bar(app)
        top = view.scroll_y
        for i in range(61, 90):
            emit("engine", "INFO", f"line {i}", FIXED_NOW + timedelta(seconds=i))
        screen.refresh_data()
        await pilot.pause()
        assert len(view.shown) == 90
        assert view.current_line.text.endswith("line 57") and view.scroll_y == top   # nothing moved

        await pilot.press("f")                               # follow again: to the newest line
        await pilot.pause()
        assert view.follow and view.current_line.text.endswith("line 89") and view.scroll_y == view.max_scroll_y
        await pilot.press("f")
        await pilot.pause()
        assert not view.follow and "FROZEN" in bar(app)
        await pilot.press("home")
        await pilot.pause()
        assert view.cursor == 0 and view.scroll_y == 0
        await pilot.press("end")                             # end follows as well
        await pilot.pause()
        assert view.follow and view.cursor == 89


async def test_level_and_component_filters(db: Database, ring: RingBufferHandler) -> None:
    night()
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        view = app.screen.view
        assert len(view.shown) == 14                       # DEBUG included by default
        await pilot.press("l")                               # ≥ INFO
        await pilot.pause()
        assert len(view.shown) == 13 and not any("DEBUG" in t for t in texts(view))
        await pilot.press("l")                               # ≥ WARNING
        await pilot.pause()
        assert [t.split(" ", 2)[1] for t in texts(view)] == ["WARN", "WARN", "WARN", "ERROR", "WARN"]
        assert "level ≥ WARNING" in bar(app) and "5 of 14 lines" in bar(app)

        await pilot.press("c")
        await pilot.pause()
        prompt = app.screen
        assert isinstance(prompt, PromptScreen) and "seen: alerting, api, calibration, engine, ingest" in prompt.question
        prompt.query_one(Input).value = "ingest"
        await pilot.press("enter")
        await pilot.pause()
        assert len(view.shown) == 1 and view.shown_lines[0].logger == "contimg.ingest"
        assert len(view.shown) == 1 and "15 of 16 subbands" in view.shown_lines[0].text
        assert "component ~ ingest" in bar(app) and "1 of 14 lines" in bar(app)

        await pilot.press("l")                               # ≥ ERROR: no ingest line left
        await pilot.pause()
        assert view.shown == [] and "No line passes the filter" in view.empty_text
        await pilot.press("l")                               # round to DEBUG: every ingest line
        await pilot.pause()
        assert len(view.shown) == 3
        await pilot.press("escape")
        await pilot.pause()
        assert len(view.shown) == 14 and "component" not in bar(app)


async def test_search_highlights_and_jumps_between_matches(db: Database, ring: RingBufferHandler) -> None:
    night()
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        view = app.screen.view
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"LEASE", "enter")                 # case-insensitive
        await pilot.pause()
        assert view.search == "lease" and len(view.matches) == 2
        assert not view.follow                               # the jump stays where it landed
        assert "expired leases" in view.current_line.text and "/lease: 1/2" in bar(app)
        await pilot.press("n")
        await pilot.pause()
        assert "lease on the incomplete group" in view.current_line.text and "/lease: 2/2" in bar(app)
        await pilot.press("n")                               # wraps
        await pilot.pause()
        assert "expired leases" in view.current_line.text
        await pilot.press("N")
        await pilot.pause()
        assert "lease on the incomplete group" in view.current_line.text

        # the match is drawn in the match style on the cursor line
        match_bg = view.get_component_rich_style("log-view--match").bgcolor
        y = view.cursor - int(view.scroll_y)
        segments = list(view.render_line(y))
        highlighted = "".join(s.text for s in segments if s.style and s.style.bgcolor == match_bg)
        assert highlighted.lower() == "lease"

        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one(Input).value = "no such text"
        await pilot.press("enter")
        await pilot.pause()
        assert view.matches == [] and "no match" in bar(app)


async def test_enter_opens_the_job_a_line_belongs_to(tmp_path: Path, ring: RingBufferHandler) -> None:
    """A real engine fails a real job; its log line carries the job id; enter opens that job's log."""
    from engine_helpers import fast_settings, group_states, make_engine, run_until, seed_groups
    from stagefuncs import registry_of

    settings = fast_settings(tmp_path)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    (gid,) = seed_groups(db, 1)
    eng, _ = make_engine(settings, db, registry_of("permanent_stage"))
    await eng.start()
    try:
        await run_until(db, lambda: group_states(db)[gid] == states.FAILED)
    finally:
        await eng.stop()
    with db.session() as s:
        job = s.scalars(select(m.Job)).one()
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        view = app.screen.view
        failed = next(pos for pos, ln in enumerate(view.shown_lines) if f"job {job.id} failed" in ln.text)
        assert view.shown_lines[failed].job_id == job.id
        assert all(ln.job_id is None for ln in view.shown_lines if "engine started" in ln.text)
        view.move_to(failed)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, JobLogScreen) and app.screen.job.id == job.id
        lines = "\n".join(app.screen.query_one(Log).lines)
        assert "header checksum mismatch" in lines           # the job's own log, from job_logs
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        started = next(pos for pos, ln in enumerate(view.shown_lines) if "engine started" in ln.text)
        view.move_to(started)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        assert any("belongs to no job" in n.message for n in app._notifications)
    db.dispose()


async def test_a_job_that_was_purged_is_reported(db: Database, ring: RingBufferHandler) -> None:
    jid = JobQueue(db).enqueue("backup")
    emit("engine", "INFO", f"job {jid} queued", FIXED_NOW, jid)
    with db.session() as s:
        s.execute(m.Job.__table__.delete())
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LogsScreen)
        assert any("no longer exists" in n.message for n in app._notifications)


async def test_ten_thousand_lines_stay_responsive(db: Database, ring: RingBufferHandler) -> None:
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_logs(pilot)
        screen = app.screen
        for batch in range(3):                               # more than the ring holds, over three polls
            for i in range(4000):
                n = batch * 4000 + i
                emit("engine" if n % 3 else "ingest", "WARNING" if n % 100 == 0 else "INFO", f"record {n}",
                     FIXED_NOW + timedelta(milliseconds=n))
            screen.refresh_data()
            await pilot.pause()
        view = screen.view
        assert len(view.entries) == 12_000 and view.current_line.text.endswith("record 11999")
        t0 = time.perf_counter()
        await pilot.press("l", "l")                          # ≥ WARNING over 12,000 lines
        await pilot.press("slash", *"record 5", "enter")
        await pilot.pause()
        elapsed = time.perf_counter() - t0
        assert len(view.shown) == 120 and view.current_line.text.endswith("record 500")  # first match
        assert elapsed < 5, f"filter and search over 12,000 lines took {elapsed:.1f} s"
        await pilot.press("pageup", "pagedown", "home")
        await pilot.pause()
        assert view.cursor == 0


# ---- snapshots (80x24, fixed record times) ----------------------------------------------------------------
def test_snapshot_logs_filtered(snap_compare, db: Database, ring: RingBufferHandler) -> None:  # type: ignore[no-untyped-def]
    night()

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _open_logs(pilot)
        await pilot.press("l", "l", "c")
        await pilot.pause()
        pilot.app.screen.query_one(Input).value = "engine"
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_logs_search(snap_compare, db: Database, ring: RingBufferHandler) -> None:  # type: ignore[no-untyped-def]
    night()

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _open_logs(pilot)
        await pilot.press("slash", *"job", "enter", "n")
        await pilot.pause()

    assert snap_compare(make_app(db), terminal_size=(80, 24), run_before=run_before)
