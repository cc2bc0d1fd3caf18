"""The Triggers screen: create, edit, enable/disable, run now, test, delete and history, on a real database.

Every action is driven by keys in a pilot and proven in the database: a trigger made in
the form exists with the right fields and fires (an execution row and a real queued job
or a completed backup), its scheduler job follows edits, deletes and disables.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select
from textual.widgets import DataTable, Input, Select, Static, TextArea

from engine import triggers as tg
from engine.db import Database
from engine.db import models as m
from engine.processing.queue import JobQueue
from engine.settings import Settings
from screens.confirm import ConfirmScreen
from screens.trigger_detail import TriggerDetailScreen
from screens.trigger_editor import ConditionRow, TriggerEditorScreen
from screens.trigger_test import TriggerTestScreen
from tui_helpers import FIXED_NOW, make_app, settle

GID = "2026-11-29T08:00:00"


def _group(db: Database, gid: str = GID, state: str = "pending", dec: float = 55.6) -> None:
    with db.session() as s:
        s.add(m.ObservationGroup(id=gid, group_time=datetime(2026, 11, 29, 8, tzinfo=UTC), state=state, dec_deg=dec))


def _trigger(db: Database, name: str) -> m.PipelineTrigger:
    with db.session() as s:
        row = s.scalars(select(m.PipelineTrigger).where(m.PipelineTrigger.name == name)).one()
        s.expunge(row)
        return row


def _executions(db: Database, trigger_id: str) -> list[m.TriggerExecution]:
    with db.session() as s:
        rows = list(s.scalars(select(m.TriggerExecution).where(m.TriggerExecution.trigger_id == trigger_id)
                              .order_by(m.TriggerExecution.started_at)))
        s.expunge_all()
        return rows


def _text(widget: Static) -> str:
    return str(widget.render())


async def _type(pilot: Any, selector: str, text: str, *, clear: bool = True) -> None:
    """Focus an input and type into it key by key (the live validation sees every keystroke)."""
    widget = pilot.app.screen.query_one(selector, Input)
    widget.focus()
    if clear:
        widget.value = ""
    await pilot.pause()
    for ch in text:
        await pilot.press("space" if ch == " " else ch)
    await settle(pilot)


async def _choose(pilot: Any, selector: str, label_start: str) -> None:
    """Pick an option of a Select with the keyboard: open it, type to search, enter."""
    select_ = pilot.app.screen.query_one(selector, Select)
    select_.focus()
    await pilot.press("enter")
    await pilot.pause()
    for ch in label_start:
        await pilot.press(ch)
    await pilot.press("enter")
    await settle(pilot)


async def _select_row(pilot: Any, name: str) -> None:
    table = pilot.app.screen.query_one("#table", DataTable)
    for i in range(table.row_count):
        if table.get_row_at(i)[0] == name:
            table.move_cursor(row=i)
            await pilot.pause()
            return
    raise AssertionError(f"no row {name!r}")


def _scheduler(app: Any, settings: Settings) -> AsyncIOScheduler:
    """The runtime's wiring: a real APScheduler mirrors the triggers the console changes."""
    sched = AsyncIOScheduler(timezone="UTC")
    sched.start(paused=True)
    ts = tg.TriggerScheduler(settings, app.services.db, sched, run_backups=False)
    app.services.on_triggers_changed = ts.sync
    return sched


# --------------------------------------------------------------------------- create
async def test_create_schedule_trigger_in_the_console_then_run_it(db: Database, settings: Settings) -> None:
    _group(db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        sched = _scheduler(app, settings)
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, TriggerEditorScreen)
        assert not editor.query_one("#schedule").display            # new_measurement_set: no cron
        await _type(pilot, "#name", "reprocess at night")
        await _choose(pilot, "#event", "sch")
        assert editor.query_one("#event", Select).value == "schedule"
        assert editor.query_one("#schedule").display
        await _type(pilot, "#cron", "30 2 * * *")
        assert _text(editor.query_one("#cron-description", Static)) == "Daily at 02:30"
        assert "Mon 11-30 02:30" in _text(editor.query_one("#cron-next", Static))
        # reprocess-group (the first pipeline) needs group_id; a schedule event carries none: the form warns
        assert "group_id is blank" in _text(editor.query_one("#params-warning", Static))
        await _type(pilot, "#param-group_id", GID)
        assert not editor.query_one("#params-warning").display
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, TriggerEditorScreen)
        row = _trigger(db, "reprocess at night")
        assert (row.event_pattern, row.trigger_type, row.schedule, row.timezone) == ("schedule", "schedule",
                                                                                     "30 2 * * *", "UTC")
        assert row.action == "reprocess-group" and json.loads(row.action_params) == {"group_id": GID}
        assert row.enabled and row.created_by == "console" and row.conditions == []
        assert sched.get_job(row.id) is not None                     # the scheduler heard of it
        table = app.screen.query_one("#table", DataTable)
        assert table.get_row_at(0)[:6] == ["reprocess at night", "30 2 * * *", "reprocess-group", "on", "—",
                                           "in 14h"]
        # run it now: confirm names it; the execution is recorded and a real convert job is queued
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "'reprocess at night'" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        (ex,) = _executions(db, row.id)
        assert ex.status == "success" and ex.event_type == "manual"
        job = JobQueue(db).get(ex.job_id)
        assert (job.type, job.group_id, job.state) == ("convert", GID, "queued")
        assert job.created_by == "trigger:reprocess at night"
        sched.shutdown(wait=False)


async def test_event_trigger_with_conditions_made_in_the_form_fires_on_matching_events(
        db: Database, settings: Settings) -> None:
    _group(db, state="calibrated")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        editor = app.screen
        await _type(pilot, "#name", "image northern targets")
        fields = _text(editor.query_one("#event-fields", Static))   # what a condition can test
        assert fields.startswith("new_measurement_set events carry: group_id") and "dec_deg" in fields
        await _choose(pilot, "#pipeline", "ima")
        assert editor.query_one("#pipeline", Select).value == "image-group"
        await pilot.click("#add-condition")
        await settle(pilot)
        await pilot.click("#add-condition")
        await settle(pilot)
        first, second = editor.query(ConditionRow)
        await _type(pilot, "ConditionRow:first-of-type .c-field", "dec_deg")
        first.query_one(".c-op", Select).value = "gt"
        await _type(pilot, "ConditionRow:first-of-type .c-value", "abc")
        await settle(pilot)
        # the engine's own verdict, as typed
        assert "gt needs a number or a date, got 'abc'" in _text(editor.query_one("#conditions-problem", Static))
        await _type(pilot, "ConditionRow:first-of-type .c-value", "50")
        assert not editor.query_one("#conditions-problem").display
        await _type(pilot, "ConditionRow:last-of-type .c-field", "is_calibrator")
        await _type(pilot, "ConditionRow:last-of-type .c-value", "false")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, TriggerEditorScreen)
    row = _trigger(db, "image northern targets")
    assert row.event_pattern == "new_measurement_set" and row.action == "image-group"
    assert row.conditions == [{"field": "dec_deg", "operator": "gt", "value": 50},
                              {"field": "is_calibrator", "operator": "equals", "value": "false"}]
    # a southern group does not fire it; a northern target does, and a real image job is queued
    (skipped,) = tg.on_event(settings, db, {"type": "new_measurement_set", "group_id": GID, "dec_deg": 10.0,
                                            "is_calibrator": False})
    assert skipped["status"] == "skipped" and "dec_deg gt 50" in skipped["skip_reason"]
    (fired,) = tg.on_event(settings, db, {"type": "new_measurement_set", "group_id": GID, "dec_deg": 55.6,
                                          "is_calibrator": False})
    assert fired["status"] == "success"
    job = JobQueue(db).get(fired["job_id"])
    assert (job.type, job.group_id, job.state) == ("image", GID, "queued")


async def test_engine_errors_stay_in_the_form(db: Database, settings: Settings) -> None:
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        editor = app.screen
        await pilot.press("ctrl+s")                                    # no name
        await settle(pilot)
        assert isinstance(app.screen, TriggerEditorScreen)
        assert "not saved: name is required" in _text(editor.query_one("#form-error", Static))
        await _type(pilot, "#name", "incremental backup")
        await _choose(pilot, "#pipeline", "bac")
        assert editor.query_one("#param-backup_type", Input).value == "full"      # defaults filled
        assert editor.query_one("#param-scope", Input).value.startswith("images, catalogs")
        await _type(pilot, "#param-backup_type", "incremental")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, TriggerEditorScreen)
        assert "incremental needs a parent" in _text(editor.query_one("#form-error", Static))
        await _type(pilot, "#limit-priority", "")
        await _type(pilot, "#param-backup_type", "full")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, TriggerEditorScreen)
    row = _trigger(db, "incremental backup")
    assert json.loads(row.action_params)["backup_type"] == "full" and row.priority == 100


async def test_bad_cron_is_named_as_it_is_typed_and_never_saved(db: Database, settings: Settings) -> None:
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        editor = app.screen
        await _type(pilot, "#name", "bad")
        await _choose(pilot, "#event", "sch")
        await _type(pilot, "#cron", "61 * * * *")
        problem = _text(editor.query_one("#cron-problem", Static))
        assert "invalid minute field '61'" in problem
        assert _text(editor.query_one("#cron-next", Static)) == ""
        await _type(pilot, "#cron", "0 3 * *")
        assert "has 4 field(s); expected 5" in _text(editor.query_one("#cron-problem", Static))
        await _type(pilot, "#timezone", "Mars/Olympus")
        await _type(pilot, "#cron", "0 3 * * *")
        assert "unknown time zone 'Mars/Olympus'" in _text(editor.query_one("#cron-problem", Static))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "unknown time zone" in _text(editor.query_one("#form-error", Static))
        await _type(pilot, "#timezone", "America/Los_Angeles")
        assert not editor.query_one("#cron-problem").display
        # 03:00 in Los Angeles is 11:00 UTC; the first run after noon UTC Sunday is Monday's
        assert _text(editor.query_one("#cron-next", Static)).startswith("next (UTC): Mon 11-30 11:00 · Tue 12-01")
        # escape on a filled form asks before throwing the work away
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Discard your changes" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is editor
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "TriggersScreen"
    with db.session() as s:
        assert s.scalar(select(m.PipelineTrigger)) is None


async def test_escape_on_an_untouched_form_just_closes(db: Database, settings: Settings) -> None:
    _seed_schedule(db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        for key in ("n", "e"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, TriggerEditorScreen)
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen.__class__.__name__ == "TriggersScreen", key


# --------------------------------------------------------------------------- edit, toggle, delete
def _seed_schedule(db: Database, name: str = "nightly reprocess", **kw: Any) -> dict[str, Any]:
    body = {"name": name, "event": "schedule", "pipeline_id": "reprocess-group", "parameters": {"group_id": GID},
            "schedule": {"cron": "0 3 * * *"}, **kw}
    return tg.create_trigger(db, body, "alice")


async def test_edit_changes_the_trigger_and_its_schedule(db: Database, settings: Settings) -> None:
    t = _seed_schedule(db)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        sched = _scheduler(app, settings)
        app.services.on_triggers_changed()
        assert str(sched.get_job(t["id"]).trigger.fields[5]) == "3"            # hour field
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, TriggerEditorScreen)
        assert editor.query_one("#name", Input).value == "nightly reprocess"
        assert editor.query_one("#cron", Input).value == "0 3 * * *"
        assert editor.query_one("#param-group_id", Input).value == GID
        assert editor.query_one("#event", Select).disabled and editor.query_one("#pipeline", Select).disabled
        await _type(pilot, "#name", "early reprocess")
        await _type(pilot, "#cron", "15 1 * * 1-5")
        assert _text(editor.query_one("#cron-description", Static)) == "At 01:15 on day-of-week 1-5"
        await _type(pilot, "#limit-cooldown_seconds", "600")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, TriggerEditorScreen)
        with db.session() as s:
            row = s.get_one(m.PipelineTrigger, t["id"])
            assert (row.name, row.schedule, row.cooldown_seconds) == ("early reprocess", "15 1 * * 1-5", 600)
            assert row.created_by == "alice" and row.updated_by == "console"
        job = sched.get_job(t["id"])
        assert str(job.trigger.fields[5]) == "1" and str(job.trigger.fields[6]) == "15"
        assert app.screen.query_one("#table", DataTable).get_row_at(0)[1] == "15 1 * * 1-5"
        sched.shutdown(wait=False)


async def test_enable_disable_and_delete(db: Database, settings: Settings) -> None:
    t = _seed_schedule(db)
    tg.fire(settings, db, t["id"], "manual", {}, manual=True)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        sched = _scheduler(app, settings)
        app.services.on_triggers_changed()
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert not _trigger(db, "nightly reprocess").enabled
        assert sched.get_job(t["id"]) is None                         # a disabled trigger is not scheduled
        table = app.screen.query_one("#table", DataTable)
        assert table.get_row_at(0)[3] == "off" and table.get_row_at(0)[5] == "—"
        await pilot.press("o")
        await settle(pilot)
        assert _trigger(db, "nightly reprocess").enabled and sched.get_job(t["id"]) is not None
        assert table.get_row_at(0)[3] == "on"
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "'nightly reprocess' and its 1 recorded run(s)" in app.screen.question
        await pilot.press("n")                                        # no: nothing happens
        await settle(pilot)
        assert tg.get_trigger(db, t["id"]) is not None
        await pilot.press("D")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert tg.get_trigger(db, t["id"]) is None and _executions(db, t["id"]) == []
        assert sched.get_job(t["id"]) is None
        assert app.screen.query_one("#empty", Static).display
        sched.shutdown(wait=False)


# --------------------------------------------------------------------------- run now
async def test_run_now_of_a_backup_trigger_runs_the_backup(db: Database, settings: Settings) -> None:
    t = tg.create_trigger(db, {"name": "config backup", "event": "manual", "pipeline_id": "backup",
                               "parameters": {"backup_type": "full", "scope": ["pipeline_configs"]}}, "alice")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        await settle(pilot)
    (ex,) = _executions(db, t["id"])
    assert ex.status == "success"
    with db.session() as s:
        backup = s.get_one(m.BackupRecord, ex.job_id)
        assert backup.status == "completed" and backup.created_by == "trigger:config backup"


async def test_run_now_reports_a_failure_and_the_list_shows_it(db: Database, settings: Settings) -> None:
    t = _seed_schedule(db, "reprocess missing group")                 # GID does not exist
    app = make_app(db, settings=settings)
    async with app.run_test(size=(120, 30)) as pilot:                  # wide: the table has an error column
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        (ex,) = _executions(db, t["id"])
        assert ex.status == "failed" and f"observation group {GID} does not exist" in ex.error_message
        row = app.screen.query_one("#table", DataTable).get_row_at(0)
        assert row[3] == "error" and row[4] != "—" and row[6].startswith("observation group")
        assert f"last error: observation group {GID} does not exist" in _text(app.screen.query_one("#info", Static))
        # the history shows it in full
        await pilot.press("d")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, TriggerDetailScreen)
        runs = detail.query_one("#runs", DataTable)
        assert runs.row_count == 1 and runs.get_row_at(0)[1] == "failed"
        assert f"error: observation group {GID} does not exist" in _text(detail.query_one("#run", Static))


# --------------------------------------------------------------------------- test
async def test_testing_against_sample_event_data(db: Database, settings: Settings) -> None:
    _group(db)
    t = tg.create_trigger(db, {"name": "north", "event": "new_measurement_set", "pipeline_id": "image-group",
                               "conditions": [{"field": "dec_deg", "operator": "gt", "value": 50},
                                              {"field": "flagged_fraction", "operator": "lt", "value": 0.05}]},
                          "alice")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TriggerTestScreen)
        area = screen.query_one("#data", TextArea)
        sample = json.loads(area.text)                                # an example shaped like the engine's event
        assert sample["group_id"] == GID and sample["dec_deg"] == 55.57 and sample["flagged_fraction"] == 0.08
        await pilot.press("ctrl+t")
        await settle(pilot)
        result = _text(screen.query_one("#result", Static))
        assert "✗ would not fire" in result
        assert "✓ dec_deg gt 50 (got 55.57)" in result
        assert "✗ flagged_fraction lt 0.05: got 0.08" in result
        area.load_text(json.dumps({**sample, "flagged_fraction": 0.01}))
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "✓ would fire" in _text(screen.query_one("#result", Static))
        area.load_text('{"dec_deg": 60,')
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "not valid JSON" in _text(screen.query_one("#result", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TriggerTestScreen)
    assert _executions(db, t["id"]) == []                             # testing records nothing


async def test_sample_data_is_the_latest_event_the_trigger_type_saw(db: Database, settings: Settings) -> None:
    t = tg.create_trigger(db, {"name": "alerts", "event": "data_quality_alert", "pipeline_id": "retry-failed"},
                          "alice")
    tg.on_event(settings, db, {"type": "data_quality_alert", "alert_type": "rfi", "fraction": 0.4})
    assert app_sample(db, settings, t["id"]) == {"alert_type": "rfi", "fraction": 0.4}


async def test_run_with_the_tested_event_data(db: Database, settings: Settings) -> None:
    """The test dialog runs the trigger as if its event happened: group_id comes from the data."""
    _group(db)
    t = tg.create_trigger(db, {"name": "reprocess on alert", "event": "data_quality_alert",
                               "pipeline_id": "reprocess-group",
                               "conditions": [{"field": "alert_type", "operator": "equals",
                                               "value": "pointing_change"}]}, "alice")
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        sample = json.loads(app.screen.query_one("#data", TextArea).text)
        assert sample["alert_type"] == "pointing_change" and sample["group_id"] == GID
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "'reprocess on alert'" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, TriggerTestScreen)
        assert "ran: success" in _text(app.screen.query_one("#result", Static))
    (ex,) = _executions(db, t["id"])
    assert ex.status == "success" and ex.event_data["group_id"] == GID
    job = JobQueue(db).get(ex.job_id)
    assert (job.type, job.group_id, job.state) == ("convert", GID, "queued")


def app_sample(db: Database, settings: Settings, trigger_id: str) -> dict[str, Any]:
    return make_app(db, settings=settings).services.triggers.sample_event_data(trigger_id)


# --------------------------------------------------------------------------- read-only
async def test_read_only_console_shows_trigger_actions_disabled(db: Database, settings: Settings) -> None:
    t = _seed_schedule(db)
    app = make_app(db, settings=settings, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        for key in ("n", "e", "x", "D"):
            await pilot.press(key)
            await settle(pilot)
            assert app.screen.__class__.__name__ == "TriggersScreen", key
        await pilot.press("o")
        await settle(pilot)
        assert _trigger(db, "nightly reprocess").enabled and _executions(db, t["id"]) == []
        from screens.keymap import action_entries

        entries = {e.id: e.disabled for e in action_entries(app.screen)}
        for action_id in ("triggers.new", "triggers.edit", "triggers.toggle", "triggers.run", "triggers.delete"):
            assert entries[action_id] and "read-only" in entries[action_id], action_id
        assert entries["triggers.test"] is None and entries["triggers.detail"] is None   # they write nothing
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TriggerTestScreen)
        await pilot.press("ctrl+g")                                   # running with data writes: refused
        await settle(pilot)
        assert isinstance(app.screen, TriggerTestScreen) and _executions(db, t["id"]) == []


# --------------------------------------------------------------------------- snapshots
def seed_list(db: Database, settings: Settings) -> None:
    """Four triggers with a history, at times fixed relative to the console's clock."""
    _group(db, state="converted")
    nightly = tg.create_trigger(db, {"name": "nightly backup", "event": "schedule", "pipeline_id": "backup",
                                     "parameters": {"backup_type": "full"}, "schedule": {"cron": "0 3 * * *"}},
                                "alice")
    retry = tg.create_trigger(db, {"name": "retry transient", "event": "schedule", "pipeline_id": "retry-failed",
                                   "parameters": {"max_age_hours": 6, "limit": 20},
                                   "schedule": {"cron": "*/30 * * * *"}}, "alice")
    image = tg.create_trigger(db, {"name": "image new targets", "event": "new_measurement_set",
                                   "pipeline_id": "image-group",
                                   "conditions": [{"field": "is_calibrator", "operator": "equals", "value": "false"},
                                                  {"field": "dec_deg", "operator": "gt", "value": 50}]}, "alice")
    weekly = tg.create_trigger(db, {"name": "weekly full backup", "event": "schedule", "pipeline_id": "backup",
                                    "schedule": {"cron": "0 4 * * 0"}}, "alice")
    tg.set_status(db, weekly["id"], "disabled", "alice")
    err = f"group {GID} is converted; image-group queues image, which starts from calibrated"
    history = [(nightly["id"], 9 * 60, "success", "schedule", None, None),
               (nightly["id"], 33 * 60, "success", "schedule", None, None),
               (retry["id"], 20, "success", "schedule", None, None),
               (image["id"], 3 * 60 + 55, "failed", "new_measurement_set", err, None),
               (image["id"], 5 * 60, "skipped", "new_measurement_set", None,
                "conditions not met: dec_deg gt 50: got 12.3"),
               (image["id"], 26 * 60, "success", "new_measurement_set", None, None)]
    with db.session() as s:
        for tid, minutes_ago, status, event, error, skip in history:
            at = FIXED_NOW - timedelta(minutes=minutes_ago)
            s.add(m.TriggerExecution(trigger_id=tid, status=status, event_type=event, started_at=at,
                                     completed_at=at + timedelta(seconds=1.5), error_message=error, skip_reason=skip,
                                     job_id=None if status != "success" else f"job{minutes_ago:05d}",
                                     event_data={"group_id": GID, "dec_deg": 12.3} if skip else {}))
        for row in s.scalars(select(m.PipelineTrigger)):
            row.created_at = row.updated_at = FIXED_NOW - timedelta(days=3)
        s.get_one(m.PipelineTrigger, image["id"]).last_error = err


def test_snapshot_trigger_list(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed_list(db, settings)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_editor_with_cron_and_next_runs(snap_compare, db: Database,  # type: ignore[no-untyped-def]
                                                 settings: Settings) -> None:
    seed_list(db, settings)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await _select_row(pilot, "nightly backup")
        await pilot.press("e")
        await settle(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_editor_bad_cron(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await _type(pilot, "#name", "every quarter hour")
        await _choose(pilot, "#event", "sch")
        await _type(pilot, "#cron", "*/15 25 * * *")
        await pilot.press("ctrl+s")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_history(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed_list(db, settings)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await _select_row(pilot, "image new targets")
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_test_dialog(snap_compare, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    seed_list(db, settings)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await _select_row(pilot, "image new targets")
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
