"""The Queue: virtualised rows, filter, priority, reprocess, live stage progress, read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from engine.db import Database
from engine.db import models as m
from engine.processing import joblog, progress
from engine.processing.queue import JobQueue
from engine.processing.transitions import transition
from screens.choose import ChoiceScreen
from screens.confirm import ConfirmScreen
from screens.help import HelpScreen
from screens.prompt import PromptScreen
from screens.widgets.paged_table import PagedTable
from tui_helpers import FIXED_NOW, make_app, settle


def group(gid: str, hours_ago: float, state: str = "pending", **kw: object) -> m.ObservationGroup:
    t = FIXED_NOW - timedelta(hours=hours_ago)
    return m.ObservationGroup(id=gid, group_time=t, state=state, n_subbands=16, dec_deg=54.57,
                              state_changed_at=t, **kw)


def walk(db: Database, gid: str, *path: str) -> None:
    """Move a group along legal transitions (as the engine would)."""
    with db.session() as s:
        for a, b in zip(path, path[1:], strict=False):
            transition(s, gid, a, b)


def seed_night(db: Database) -> dict[str, str]:
    """A failed target, a complete target, a calibrator being solved, one imaging with progress."""
    with db.session() as s:
        s.add(group("2026-11-29T08:00:00", 4))
        s.add(group("2026-11-29T09:00:00", 3))
        s.add(group("2026-11-29T10:00:00", 2, is_calibrator=True, calibrator_name="J0834+5534"))
        s.add(group("2026-11-29T11:00:00", 1))
        s.add(group("2026-11-29T11:30:00", 0.5))
    with db.session() as s:
        transition(s, "2026-11-29T08:00:00", "pending", "converting")
        transition(s, "2026-11-29T08:00:00", "converting", "failed", error="convert: HDF5 file truncated at 12 MB")
    walk(db, "2026-11-29T09:00:00", "pending", "converting", "converted", "calibrating", "calibrated", "imaging",
         "imaged", "measuring", "complete")
    walk(db, "2026-11-29T10:00:00", "pending", "converting", "converted")
    walk(db, "2026-11-29T11:00:00", "pending", "converting", "converted", "calibrating", "calibrated")
    q = JobQueue(db)
    q.enqueue("image", group_id="2026-11-29T11:00:00")
    running = q.claim("w", ["image"], 600)
    walk(db, "2026-11-29T11:00:00", "calibrated", "imaging")
    with db.session() as s:
        start = FIXED_NOW - timedelta(seconds=30)
        for i, done in enumerate((0, 150, 300)):
            s.add(m.JobLog(job_id=running.id, level=progress.LEVEL, at=start + timedelta(seconds=10 * i),
                           message=f"CLEAN: {done}/1000 iterations"))
    queued = q.enqueue("convert", group_id="2026-11-29T11:30:00", priority=100)
    with db.session() as s:  # transitions stamp the real time; the view shows the fixed clock's
        for g in s.scalars(select(m.ObservationGroup)):
            g.state_changed_at = g.group_time + timedelta(minutes=6)
    return {"running": running.id, "queued": queued}


def rows(app) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one(PagedTable)
    return [table._row(i).cells for i in range(table.total) if table._row(i) is not None]


async def test_queue_lists_groups_with_states_errors_and_progress(db: Database) -> None:
    seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        got = rows(app)
        assert [r[0] for r in got] == ["2026-11-29T11:30:00", "2026-11-29T11:00:00", "2026-11-29T10:00:00",
                                       "2026-11-29T09:00:00", "2026-11-29T08:00:00"]
        by_id = {r[0]: r for r in got}
        # 300 of 1000 iterations in 20 s: ≤ 47 s left at that rate (CLEAN may stop sooner)
        assert by_id["2026-11-29T11:00:00"][6] == "image CLEAN 30% ≤47s"
        assert by_id["2026-11-29T08:00:00"][6].startswith("convert: HDF5 file truncated")
        assert by_id["2026-11-29T11:30:00"][6] == "queued, priority 100"
        assert by_id["2026-11-29T10:00:00"][4] == "J0834+5534"
        with db.session() as s:  # the view follows the database on the next refresh
            s.get_one(m.ObservationGroup, "2026-11-29T10:00:00").state = "solving"
        app.action_refresh_view()
        await settle(pilot)
        assert {r[0]: r for r in rows(app)}["2026-11-29T10:00:00"][1] == "solving"


async def test_filter_by_state_type_and_time(db: Database) -> None:
    seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"failed bogus")
        await pilot.pause()
        assert "unknown filter term 'bogus'" in str(app.screen.query_one("#problem").render())
        await pilot.press("enter")  # refused: the prompt stays, nothing applied
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        for _ in "bogus":
            await pilot.press("backspace")
        await pilot.press("enter")
        await settle(pilot)
        assert [r[0] for r in rows(app)] == ["2026-11-29T08:00:00"]
        assert "filter: failed" in str(app.screen.query_one("#filter").render())
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one("#answer").value = "calibrator 3h"
        await pilot.press("enter")
        await settle(pilot)
        assert [r[0] for r in rows(app)] == ["2026-11-29T10:00:00"]
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one("#answer").value = ""
        await pilot.press("enter")
        await settle(pilot)
        assert len(rows(app)) == 5


async def test_priority_of_a_queued_job(db: Database) -> None:
    ids = seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        await pilot.press("plus")  # cursor on the newest group, whose convert is queued
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one("#answer").value = "5"
        await pilot.press("enter")
        await settle(pilot)
        assert JobQueue(db).get(ids["queued"]).priority == 5
        assert rows(app)[0][6] == "queued, priority 5"


async def test_reprocess_a_complete_group_from_calibrated(db: Database) -> None:
    seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        for _ in range(3):
            await pilot.press("down")
        assert app.screen.query_one(PagedTable).cursor_row().key == "2026-11-29T09:00:00"
        await pilot.press("F")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceScreen)
        assert [v for v, _ in app.screen.options] == ["pending", "converted", "calibrated", "imaged"]
        await pilot.press("down", "down", "enter")  # from calibrated
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "2026-11-29T09:00:00 from calibrated" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
    with db.session() as s:
        g = s.get_one(m.ObservationGroup, "2026-11-29T09:00:00")
        assert g.state == "calibrated"
        jobs = list(s.scalars(select(m.Job).where(m.Job.group_id == g.id)))
        assert [(j.type, j.state, j.created_by) for j in jobs] == [("image", "queued", "console")]
        last = s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == g.id)
                         .order_by(m.StateTransition.id.desc())).first()
        assert (last.from_state, last.to_state, last.reason) == ("complete", "calibrated",
                                                                "reprocess from calibrated by console")


async def test_reprocess_refused_while_a_stage_holds_the_group(db: Database) -> None:
    seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # the imaging group
        await pilot.press("F")
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert any("cannot be reprocessed now" in n.message for n in app._notifications)
    with pytest.raises(Exception, match="queued or running; cancel it first"):
        app.services.queue.reprocess("2026-11-29T11:00:00", "pending", by="test")


def test_progress_reports_reach_the_job_log_and_read_back(db: Database) -> None:
    """A stage's report inside joblog.capture lands as a PROGRESS line; outside a job it is a no-op."""
    progress.report("write", 1, 2, "rows")  # no job: nothing happens, nothing raises
    job_id = JobQueue(db).enqueue("convert")
    with joblog.capture(str(db.path), job_id):
        progress.report("write", 0, 1000, "rows")
        progress.report("write", 10, 1000, "rows")  # within a second of the last: skipped
        progress.report("write", 1000, 1000, "rows")  # the last always lands
    with db.session() as s:
        lines = [x.message for x in s.scalars(select(m.JobLog).where(m.JobLog.level == progress.LEVEL))]
        assert lines == ["write: 0/1000 rows", "write: 1000/1000 rows"]
        report = app_free_progress(db, job_id)
    assert (report.phase, report.done, report.total, report.fraction) == ("write", 1000, 1000, 1.0)


def app_free_progress(db: Database, job_id: str) -> progress.Progress | None:
    from engine.services import Services
    from tui_helpers import settings_for

    with db.session() as s:
        return Services(db, settings_for(db)).queue.job_progress(s, job_id)


async def test_hundred_thousand_groups_page_by_keyset(db: Database) -> None:
    n = 100_000
    t0 = FIXED_NOW - timedelta(days=400)
    with db.session() as s:
        s.execute(insert(m.ObservationGroup), [
            {"id": f"g{i:06d}", "group_time": t0 + timedelta(seconds=309 * i), "state": "complete", "n_subbands": 16,
             "state_changed_at": t0, "created_at": t0, "updated_at": t0} for i in range(n)])
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        assert table.total == n and table.cursor_row().key == f"g{n - 1:06d}"
        assert len(table._rows) <= 300  # only pages near the screen are held
        await pilot.press("pagedown")
        await settle(pilot)
        assert table.cursor_row().key == f"g{n - 1 - table.body_height:06d}"
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor_row().key == "g000000" and not table.pending
        await pilot.press("up")
        await settle(pilot)
        assert table.cursor_row().key == "g000001"
        assert len(table._rows) <= 300


async def test_read_only_queue_shows_actions_disabled_with_the_reason(db: Database) -> None:
    seed_night(db)
    app = make_app(db, read_only=True)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        by_id = {r[2]: r for r in app.screen.rows}
        assert "read-only" in by_id["queue.retry"][3] and "read-only" in by_id["queue.reprocess"][3]
        assert by_id["queue.detail"][3] == "" and by_id["queue.filter"][3] == ""
        assert by_id["mode.calibrations"][0] == "2"


def _snap_app(db: Database):  # type: ignore[no-untyped-def]
    seed_night(db)
    return make_app(db)


def test_snapshot_queue_populated(snap_compare, db: Database) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_snap_app(db), terminal_size=(80, 24), run_before=settle)


def test_snapshot_queue_filter_error(snap_compare, db: Database) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("slash", *"failed since=yesterday")
        await pilot.pause()

    assert snap_compare(_snap_app(db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_queue_reprocess_choice(snap_compare, db: Database) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("down", "down", "down", "F")
        await settle(pilot)

    assert snap_compare(_snap_app(db), terminal_size=(80, 24), run_before=run_before)





async def test_the_command_palette_offers_the_screens_actions(db: Database) -> None:
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    seed_night(db)
    app = make_app(db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.action_command_palette()
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"reprocess")
        for _ in range(20):  # the palette searches in the background
            await pilot.pause(0.05)
            prompts = [str(o.prompt) for o in app.screen.query_one(OptionList).options]
            if any("Reprocess" in p for p in prompts):
                break
        assert any("Reprocess" in p and "stage" in p for p in prompts), prompts
