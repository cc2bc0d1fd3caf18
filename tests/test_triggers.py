"""Triggers: cron validation, conditions, storage, firing into the real job queue, scheduling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from engine import backups as bk
from engine import triggers as tr
from engine.db import Database
from engine.db import models as m
from engine.settings import Settings

GID = "2026-01-01T00:00:00"


def _group(db: Database, gid: str = GID, state: str = "pending", dec: float = 45.0) -> None:
    with db.session() as s:
        s.add(m.ObservationGroup(id=gid, group_time=datetime(2026, 1, 1, tzinfo=UTC), state=state, dec_deg=dec))


def _jobs(db: Database, type_: str | None = None) -> list[m.Job]:
    with db.session() as s:
        q = select(m.Job)
        if type_:
            q = q.where(m.Job.type == type_)
        return list(s.scalars(q))


# --------------------------------------------------------------------------- cron
@pytest.mark.parametrize(("expr", "tz", "message"), [
    ("* * * *", "UTC", "has 4 field(s); expected 5"),
    ("0 0 * * * *", "UTC", "has 6 field(s)"),
    ("", "UTC", "empty"),
    ("61 * * * *", "UTC", "invalid minute field '61'"),
    ("0 24 * * *", "UTC", "invalid hour field '24'"),
    ("0 0 32 * *", "UTC", "invalid day of month field '32'"),
    ("0 0 * 13 *", "UTC", "invalid month field '13'"),
    ("0 0 * * 9", "UTC", "invalid day of week field '9'"),
    ("0 0 * * *", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
])
def test_cron_errors_name_the_field(expr: str, tz: str, message: str) -> None:
    with pytest.raises(tr.TriggerError) as err:
        tr.parse_cron(expr, tz)
    assert message in str(err.value)


def test_next_run_uses_crontab_weekdays_and_zones() -> None:
    sunday_noon = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert tr.next_run("0 9 * * 1", "UTC", sunday_noon) == datetime(2026, 11, 30, 9, tzinfo=UTC)  # Monday
    assert tr.next_run("0 9 * * 0", "UTC", sunday_noon) == datetime(2026, 12, 6, 9, tzinfo=UTC)  # Sunday
    assert tr.next_run("0 9 * * 7", "UTC", sunday_noon) == datetime(2026, 12, 6, 9, tzinfo=UTC)
    # 09:00 in Los Angeles (PST, UTC-8) on the next weekday.
    assert tr.next_run("0 9 * * 1-5", "America/Los_Angeles", sunday_noon) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert tr.next_run("*/15 * * * *", "UTC", sunday_noon) == datetime(2026, 11, 29, 12, 15, tzinfo=UTC)
    assert tr.describe_cron("0 0 * * *") == "Daily at midnight"


# --------------------------------------------------------------------------- conditions
def test_condition_operators() -> None:
    data = {"dec_deg": "45.5", "n": 3, "name": "3C286", "tags": ["cal", "night"], "flag": True,
            "meta": {"grade": "A"}, "at": "2026-01-02T00:00:00+00:00"}
    cases = [
        ({"field": "dec_deg", "operator": "gt", "value": "30"}, True),  # numbers compare as numbers
        ({"field": "dec_deg", "operator": "lt", "value": 100}, True),
        ({"field": "n", "operator": "gte", "value": "3"}, True),
        ({"field": "n", "operator": "lte", "value": 2}, False),
        ({"field": "n", "operator": "gt", "value": "10"}, False),  # not string order ("3" > "10")
        ({"field": "n", "operator": "equals", "value": "3.0"}, True),
        ({"field": "name", "operator": "equals", "value": "3C286"}, True),
        ({"field": "name", "operator": "not_equals", "value": "3C48"}, True),
        ({"field": "name", "operator": "contains", "value": "C28"}, True),
        ({"field": "tags", "operator": "contains", "value": "cal"}, True),
        ({"field": "tags", "operator": "contains", "value": "ca"}, False),
        ({"field": "name", "operator": "in", "value": ["3C48", "3C286"]}, True),
        ({"field": "name", "operator": "in", "value": "3C48, 3C286"}, True),  # typed in as text
        ({"field": "n", "operator": "not_in", "value": ["1", "2"]}, True),
        ({"field": "flag", "operator": "equals", "value": "true"}, True),
        ({"field": "meta.grade", "operator": "equals", "value": "A"}, True),
        ({"field": "at", "operator": "gt", "value": "2026-01-01"}, True),
        ({"field": "name", "operator": "gt", "value": 3}, False),  # not comparable
    ]
    for cond, expected in cases:
        ok, matched, failed = tr.evaluate_conditions([cond], data)
        assert ok is expected, (cond, failed)
        assert len(matched if expected else failed) == 1
    ok, matched, failed = tr.evaluate_conditions(
        [{"field": "dec_deg", "operator": "gt", "value": 30}, {"field": "snr", "operator": "gt", "value": 5}], data)
    assert not ok and len(matched) == 1 and "field 'snr' is missing" in failed[0]
    _ok, _m, failed = tr.evaluate_conditions([{"field": "name", "operator": "lt", "value": 3}], data)
    assert "not both numbers" in failed[0]
    assert tr.evaluate_conditions([], {}) == (True, [], [])
    with pytest.raises(tr.TriggerError, match="unknown operator 'like'"):
        tr.validate_conditions([{"field": "x", "operator": "like", "value": "a"}])
    with pytest.raises(tr.TriggerError, match="gt needs a number"):
        tr.validate_conditions([{"field": "x", "operator": "gt", "value": "abc"}])


# --------------------------------------------------------------------------- storage
def test_available_pipelines_shape() -> None:
    pipes = {p["id"]: p for p in tr.available_pipelines()}
    assert {"reprocess-group", "backup", "retry-failed", "image-group"} <= set(pipes)
    for p in pipes.values():
        assert p["name"] and isinstance(p["parameters"], list)
        for param in p["parameters"]:
            assert set(param) >= {"name", "type", "required", "description"}
            assert param["type"] in ("string", "number", "boolean", "array")
    assert [p["name"] for p in pipes["reprocess-group"]["parameters"]] == ["group_id"]


def test_create_update_status_delete(db: Database) -> None:
    body = {"name": "nightly backup", "event": "schedule", "pipeline_id": "backup", "conditions": [],
            "schedule": {"cron": "0 0 * * *", "description": "Daily at midnight", "timezone": "America/Los_Angeles"}}
    t = tr.create_trigger(db, body, "ann")
    assert t["event"] == "schedule" and t["status"] == "enabled" and t["pipeline_name"] == "Back up pipeline state"
    assert t["schedule"]["cron"] == "0 0 * * *" and t["schedule"]["timezone"] == "America/Los_Angeles"
    nxt = datetime.fromisoformat(t["schedule"]["next_run"])
    assert nxt > datetime.now(UTC) and nxt.astimezone(tr.parse_timezone("America/Los_Angeles")).hour == 0
    assert t["priority"] == 100 and t["max_concurrent"] == 1 and t["total_executions"] == 0
    assert t["created_by"] == "ann" and t["updated_by"] == "ann"
    with db.session() as s:
        row = s.get_one(m.PipelineTrigger, t["id"])
        assert row.trigger_type == "schedule" and row.schedule == "0 0 * * *" and row.action == "backup"
    assert tr.create_trigger(db, body, "ann")["id"] == t["id"]  # a retried POST
    assert len(tr.list_triggers(db)) == 1

    u = tr.update_trigger(db, t["id"], {"name": "midnight backup", "cooldown_seconds": 600,
                                        "schedule": {"cron": "30 2 * * *", "timezone": "UTC"},
                                        "parameters": {"backup_type": "full"}}, "bob")
    assert u["name"] == "midnight backup" and u["cooldown_seconds"] == 600 and u["updated_by"] == "bob"
    assert u["schedule"]["cron"] == "30 2 * * *" and u["parameters"] == {"backup_type": "full"}
    with pytest.raises(tr.TriggerError, match="pipeline_id cannot be changed"):
        tr.update_trigger(db, t["id"], {"pipeline_id": "retry-failed"}, "bob")
    with pytest.raises(tr.TriggerError, match="event cannot be changed"):
        tr.update_trigger(db, t["id"], {"event": "manual"}, "bob")
    with pytest.raises(tr.TriggerError, match="invalid hour field"):
        tr.update_trigger(db, t["id"], {"schedule": {"cron": "0 99 * * *"}}, "bob")
    with pytest.raises(tr.TriggerError, match="unknown parameter"):
        tr.update_trigger(db, t["id"], {"parameters": {"colour": "red"}}, "bob")

    assert tr.set_status(db, t["id"], "disabled", "bob")["status"] == "disabled"
    assert [x["id"] for x in tr.list_triggers(db, status="disabled")] == [t["id"]]
    assert tr.list_triggers(db, status="enabled") == [] and tr.list_triggers(db, event="manual") == []
    assert tr.get_trigger(db, t["id"])["schedule"]["next_run"] is None
    assert tr.set_status(db, t["id"], "enabled", "bob")["status"] == "enabled"
    tr.delete_trigger(db, t["id"])
    assert tr.get_trigger(db, t["id"]) is None and tr.list_triggers(db) == []


def test_create_validation(db: Database) -> None:
    with pytest.raises(tr.TriggerError, match="unknown pipeline 'rm-rf'"):
        tr.create_trigger(db, {"name": "x", "event": "manual", "pipeline_id": "rm-rf"}, "ann")
    with pytest.raises(tr.TriggerError, match="unknown event"):
        tr.create_trigger(db, {"name": "x", "event": "sunrise", "pipeline_id": "backup"}, "ann")
    with pytest.raises(tr.TriggerError, match="has 3 field"):
        tr.create_trigger(db, {"name": "x", "event": "schedule", "pipeline_id": "backup",
                               "schedule": {"cron": "* * *", "timezone": "UTC"}}, "ann")
    with pytest.raises(tr.TriggerError, match="needs schedule.cron"):
        tr.create_trigger(db, {"name": "x", "event": "schedule", "pipeline_id": "backup"}, "ann")
    with pytest.raises(tr.TriggerError, match="'field' is required"):
        tr.create_trigger(db, {"name": "x", "event": "manual", "pipeline_id": "backup",
                               "conditions": [{"operator": "equals", "value": "1"}]}, "ann")
    with pytest.raises(tr.TriggerError, match="max_concurrent"):
        tr.create_trigger(db, {"name": "x", "event": "manual", "pipeline_id": "backup", "max_concurrent": 0}, "ann")
    assert tr.list_triggers(db) == []


# --------------------------------------------------------------------------- firing
def test_fire_reprocess_enqueues_a_real_job_and_skips(settings: Settings, db: Database) -> None:
    _group(db)
    t = tr.create_trigger(db, {"name": "reprocess", "event": "manual", "pipeline_id": "reprocess-group",
                               "parameters": {"group_id": GID}, "priority": 20}, "ann")
    ex = tr.fire(settings, db, t["id"], "manual", {}, manual=True)
    assert ex["status"] == "success" and ex["job_id"] and ex["trigger_name"] == "reprocess"
    after = tr.get_trigger(db, t["id"])
    assert after["updated_at"] == t["updated_at"] and after["last_execution"]  # firing is not an edit
    assert ex["duration_seconds"] is not None and ex["pipeline_id"] == "reprocess-group"
    jobs = _jobs(db, "convert")
    assert [(j.id, j.group_id, j.state, j.priority) for j in jobs] == [(ex["job_id"], GID, "queued", 20)]
    assert jobs[0].created_by == "trigger:reprocess"
    # max_concurrent 1: the queued job is still at work → skipped.
    ex2 = tr.fire(settings, db, t["id"], "manual", {}, manual=True)
    assert ex2["status"] == "skipped" and "max_concurrent" in ex2["skip_reason"]
    with db.session() as s:
        s.get_one(m.Job, ex["job_id"]).state = "succeeded"
    ex3 = tr.fire(settings, db, t["id"], "manual", {}, manual=True)
    assert ex3["status"] == "success" and ex3["job_id"] != ex["job_id"]
    # Disabled: skipped unless manual.
    tr.set_status(db, t["id"], "disabled", "ann")
    with db.session() as s:
        s.get_one(m.Job, ex3["job_id"]).state = "succeeded"
    ex4 = tr.fire(settings, db, t["id"], "manual", {})
    assert ex4["status"] == "skipped" and ex4["skip_reason"] == "trigger is disabled"
    got = tr.get_trigger(db, t["id"])
    assert got["total_executions"] == 2 and got["successful_executions"] == 2 and got["failed_executions"] == 0
    assert [e["id"] for e in tr.list_executions(db, t["id"], 10)] == [ex4["id"], ex3["id"], ex2["id"], ex["id"]]
    assert tr.recent_executions(db, 2)[0]["id"] == ex4["id"]


def test_fire_cooldown_conditions_and_failure(settings: Settings, db: Database) -> None:
    _group(db, state="calibrated", dec=45.0)
    t = tr.create_trigger(db, {"name": "image north", "event": "new_measurement_set", "pipeline_id": "image-group",
                               "conditions": [{"field": "dec_deg", "operator": "gt", "value": "30"}],
                               "cooldown_seconds": 3600, "max_concurrent": 5}, "ann")
    ex = tr.fire(settings, db, t["id"], "new_measurement_set", {"group_id": GID, "dec_deg": 10})
    assert ex["status"] == "skipped" and "conditions not met" in ex["skip_reason"] and "got 10" in ex["skip_reason"]
    assert _jobs(db) == []
    ex = tr.fire(settings, db, t["id"], "new_measurement_set", {"group_id": GID, "dec_deg": 45})
    assert ex["status"] == "success" and [j.type for j in _jobs(db)] == ["image"]
    ex = tr.fire(settings, db, t["id"], "new_measurement_set", {"group_id": GID, "dec_deg": 45})
    assert ex["status"] == "skipped" and ex["skip_reason"].startswith("cooldown")
    # A failing action: missing group → failed with the reason, trigger shows error.
    t2 = tr.create_trigger(db, {"name": "image any", "event": "new_measurement_set",
                                "pipeline_id": "image-group"}, "ann")
    ex = tr.fire(settings, db, t2["id"], "new_measurement_set", {"group_id": "nope"})
    assert ex["status"] == "failed" and "nope does not exist" in ex["error_message"]
    assert tr.get_trigger(db, t2["id"])["status"] == "error"
    ex = tr.fire(settings, db, t2["id"], "new_measurement_set", {})
    assert ex["status"] == "failed" and "group_id is required" in ex["error_message"]
    _group(db, "2026-01-02T00:00:00", state="pending")
    ex = tr.fire(settings, db, t2["id"], "new_measurement_set", {"group_id": "2026-01-02T00:00:00"})
    assert ex["status"] == "failed" and "is pending" in ex["error_message"]
    t3 = tr.test_trigger(db, t["id"], {"dec_deg": 12})
    assert t3["would_trigger"] is False and t3["failed_conditions"] and t3["matched_conditions"] == []
    assert tr.test_trigger(db, t["id"], {"dec_deg": "60"})["would_trigger"] is True


def test_retry_failed_and_backup_actions(settings: Settings, db: Database) -> None:
    _group(db, state="failed")
    with db.session() as s:
        s.add(m.Job(id="j1", type="convert", group_id=GID, state="failed", attempts=3, error="boom"))
    t = tr.create_trigger(db, {"name": "retry", "event": "manual", "pipeline_id": "retry-failed"}, "ann")
    ex = tr.fire(settings, db, t["id"], "manual", {}, manual=True)
    assert ex["status"] == "success" and ex["job_id"] == "j1" and ex["result"]["retried"] == ["j1"]
    with db.session() as s:
        job, group = s.get_one(m.Job, "j1"), s.get_one(m.ObservationGroup, GID)
        assert (job.state, job.attempts, group.state) == ("queued", 0, "pending")
    b = tr.create_trigger(db, {"name": "snap", "event": "manual", "pipeline_id": "backup",
                               "parameters": {"scope": ["job_history"]}}, "ann")
    ex = tr.fire(settings, db, b["id"], "manual", {}, manual=True)
    assert ex["status"] == "success"
    rec = bk.get_backup(db, ex["job_id"])
    assert rec["status"] == "pending" and rec["created_by"] == "trigger:snap" and rec["scope"]["job_history"]


def test_on_event_maps_engine_events(settings: Settings, db: Database) -> None:
    _group(db, state="calibrated", dec=45.0)
    with db.session() as s:
        s.add(m.MeasurementSet(group_id=GID, path="/data/ms/g.ms", n_antennas=96))
    nms = tr.create_trigger(db, {"name": "image new", "event": "new_measurement_set", "pipeline_id": "image-group",
                                 "conditions": [{"field": "n_antennas", "operator": "gte", "value": "90"}]}, "ann")
    cal = tr.create_trigger(db, {"name": "after cal", "event": "calibration_complete",
                                 "pipeline_id": "retry-failed"}, "ann")
    dqa = tr.create_trigger(db, {"name": "on alert", "event": "data_quality_alert", "pipeline_id": "backup",
                                 "conditions": [{"field": "alert_type", "operator": "equals",
                                                 "value": "pointing_change"}]}, "ann")
    off = tr.create_trigger(db, {"name": "disabled one", "event": "new_measurement_set",
                                 "pipeline_id": "image-group"}, "ann")
    tr.set_status(db, off["id"], "disabled", "ann")

    assert tr.on_event(settings, db, {"type": "job.succeeded", "job_type": "image", "group_id": GID}) == []
    out = tr.on_event(settings, db, {"type": "job.succeeded", "job_id": "c1", "job_type": "convert", "group_id": GID})
    assert [(e["trigger_id"], e["status"]) for e in out] == [(nms["id"], "success")]
    assert out[0]["event_type"] == "new_measurement_set"
    assert out[0]["event_data"]["ms_path"] == "/data/ms/g.ms" and out[0]["event_data"]["group_id"] == GID
    assert [j.type for j in _jobs(db)] == ["image"]
    out = tr.on_event(settings, db, {"type": "calibration.registered", "set": "cal-1", "calibrator": "3C286"})
    assert [(e["trigger_id"], e["event_type"]) for e in out] == [(cal["id"], "calibration_complete")]
    assert out[0]["status"] == "success" and out[0]["job_id"] is None  # no failed jobs: nothing to retry
    out = tr.on_event(settings, db, {"type": "pointing.changed", "group_id": GID, "from_dec_deg": 10.0,
                                     "to_dec_deg": 45.0})
    assert [(e["trigger_id"], e["status"]) for e in out] == [(dqa["id"], "success")]
    assert tr.list_executions(db, off["id"]) == []
    assert tr.on_event(settings, db, {"type": "engine.paused"}) == []


# --------------------------------------------------------------------------- scheduling
async def test_scheduler_syncs_and_fires(settings: Settings, db: Database) -> None:
    sched = AsyncIOScheduler(timezone="UTC")
    sched.start()
    try:
        t = await asyncio.to_thread(tr.create_trigger, db, {
            "name": "every minute", "event": "schedule", "pipeline_id": "backup",
            "parameters": {"scope": ["job_history"]},
            "schedule": {"cron": "* * * * *", "timezone": "UTC"}}, "ann")
        ts = tr.TriggerScheduler(settings, db, sched, misfire_grace_time=30)
        report = await asyncio.to_thread(ts.sync)
        assert report["added"] == [t["id"]] and ts.job_ids() == [t["id"]]
        job = sched.get_job(t["id"])
        assert job is not None and job.max_instances == 1 and job.coalesce and job.misfire_grace_time == 30
        assert (await asyncio.to_thread(ts.sync))["added"] == []  # unchanged: nothing to do
        job.modify(next_run_time=datetime.now(UTC))
        for _ in range(100):
            execs = await asyncio.to_thread(tr.list_executions, db, t["id"])
            # the execution row exists before its backup does: wait for both
            done = execs and execs[0]["job_id"] and bk.get_backup(db, execs[0]["job_id"])
            if done and done["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert len(execs) == 1 and execs[0]["status"] == "success" and execs[0]["event_type"] == "schedule"
        backup = bk.get_backup(db, execs[0]["job_id"])
        assert backup["status"] == "completed", backup["error_message"]
        # The scheduled job function itself, called directly.
        direct = await sched.get_job(t["id"]).func(t["id"])
        assert direct is not None and direct["trigger_id"] == t["id"]
        # A changed cron updates the job; a disabled trigger removes it.
        await asyncio.to_thread(tr.update_trigger, db, t["id"], {"schedule": {"cron": "*/5 * * * *"}}, "ann")
        assert (await asyncio.to_thread(ts.sync))["updated"] == [t["id"]]
        assert "*/5" in str(sched.get_job(t["id"]).trigger)
        await asyncio.to_thread(tr.set_status, db, t["id"], "disabled", "ann")
        assert (await asyncio.to_thread(ts.sync))["removed"] == [t["id"]]
        assert sched.get_job(t["id"]) is None and ts.job_ids() == []
    finally:
        sched.shutdown(wait=False)


def test_next_run_after_must_be_aware() -> None:
    with pytest.raises(tr.TriggerError, match="timezone-aware"):
        tr.next_run("* * * * *", "UTC", datetime(2026, 1, 1))
    assert tr.next_run("* * * * *", "UTC", datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert timedelta(0) < tr.next_run("0 * * * *") - datetime.now(UTC) <= timedelta(hours=1)


def test_concurrent_firings_respect_max_concurrent(settings: Settings, db: Database) -> None:
    import threading

    for i in range(3):
        _group(db, f"g{i}")
    t = tr.create_trigger(db, {"name": "r", "event": "new_measurement_set", "pipeline_id": "reprocess-group"}, "x")
    results: list[dict] = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        tr.fire(settings, db, t["id"], "new_measurement_set", {"group_id": f"g{i % 3}"}))) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r["status"] for r in results) == ["skipped"] * 7 + ["success"]
    assert len(_jobs(db, "convert")) == 1


def test_concurrent_create_retries_make_one_trigger(db: Database) -> None:
    import threading

    body = {"name": "dup", "event": "manual", "pipeline_id": "retry-failed"}
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(tr.create_trigger(db, body, "ann")["id"]))
               for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ids) == 8 and len(set(ids)) == 1 and len(tr.list_triggers(db)) == 1


async def test_listen_fires_event_triggers_from_the_bus(settings: Settings, db: Database) -> None:
    from engine.events import EventBus

    await asyncio.to_thread(_group, db, GID, "pending")
    t = await asyncio.to_thread(tr.create_trigger, db, {
        "name": "on cal", "event": "calibration_complete", "pipeline_id": "reprocess-group",
        "parameters": {"group_id": GID}}, "ann")
    sched = AsyncIOScheduler(timezone="UTC")
    sched.start()
    bus = EventBus()
    ts = tr.TriggerScheduler(settings, db, sched)
    ts.install(resync_interval_s=30)
    assert sched.get_job(tr.RESYNC_JOB_ID) is not None
    task = asyncio.create_task(ts.listen(bus))
    try:
        await asyncio.sleep(0)  # let the listener subscribe
        bus.publish("engine.paused")
        bus.publish("calibration.registered", set="cal-1", calibrator="3C286")
        for _ in range(100):
            execs = await asyncio.to_thread(tr.list_executions, db, t["id"])
            if execs and execs[0]["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert [(e["status"], e["event_type"]) for e in execs] == [("success", "calibration_complete")]
        assert execs[0]["event_data"]["calibrator"] == "3C286"
        assert [j.type for j in await asyncio.to_thread(_jobs, db)] == ["convert"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sched.shutdown(wait=False)
