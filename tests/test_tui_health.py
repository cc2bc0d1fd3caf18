"""The Health screen: alerts with acknowledge and silence, trends from recorded history, status lines."""

from __future__ import annotations

import shutil
from collections import namedtuple
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from textual.widgets import DataTable, Input, Static

from engine.alerting import Evaluator
from engine.db import Database
from engine.db import models as m
from engine.monitoring import record_storage_sample
from engine.processing.queue import JobQueue
from engine.services.health import parse_duration
from engine.settings import Settings
from screens.confirm import ConfirmScreen
from screens.health import HealthScreen
from screens.health_trends import TrendsScreen
from screens.silence import SilenceScreen
from screens.widgets.trend import TrendLine
from tui_helpers import FIXED_NOW, make_app, settle

Usage = namedtuple("Usage", "total used free")
TB = 1_000_000_000_000
H = timedelta(hours=1)


def fixed_disk(used: float, total: float = 4 * TB):  # type: ignore[no-untyped-def]
    return lambda path: Usage(int(total), int(used), int(total - used))


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's operator name comes from the login: make it the same on every machine."""
    monkeypatch.setenv("LOGNAME", "ana")


def seed(db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, int | str]:
    """Alerts in every state, a day of disk samples and jobs, a calibration set and flux measurements."""
    ids: dict[str, int | str] = {}
    with db.session() as s:
        disk = m.AlertPolicy(name="disk nearly full", severity="critical", created_by="ana", channels=["email"],
                             rules=[{"metric": "contimg_disk_usage_ratio", "operator": ">", "threshold": 0.9}])
        backlog = m.AlertPolicy(name="queue backlog", severity="warning", created_by="ana", channels=["email"],
                                rules=[{"metric": "contimg_queue_depth", "operator": ">", "threshold": 0}])
        s.add_all([disk, backlog])
        s.flush()
        ids["disk_policy"], ids["backlog_policy"] = disk.id, backlog.id
        alerts = {
            "disk": m.Alert(alert_type="policy", severity="critical", source="alert-policy", policy_id=disk.id,
                            message="disk nearly full: contimg_disk_usage_ratio = 0.912 > 0.9",
                            triggered_at=FIXED_NOW - timedelta(minutes=20)),
            "backlog": m.Alert(alert_type="policy", severity="warning", source="alert-policy", policy_id=backlog.id,
                               message="queue backlog: contimg_queue_depth = 3 > 0",
                               triggered_at=FIXED_NOW - timedelta(minutes=70)),
            "flux": m.Alert(alert_type="calibrator_flux", severity="warning", source="imaging",
                            calibrator_name="J0834+5534",
                            message="J0834+5534 observed/catalogue 0.71, outside ±15%",
                            triggered_at=FIXED_NOW - 2 * H),
            "acked": m.Alert(alert_type="pointing_change", severity="info", source="ingest",
                             message="pointing changed from Dec +54.57 to +71.20", triggered_at=FIXED_NOW - 5 * H,
                             acknowledged=True, acknowledged_at=FIXED_NOW - 4 * H, acknowledged_by="console:bo"),
            "old": m.Alert(alert_type="pointing_change", severity="info", source="ingest", message="old news",
                           triggered_at=FIXED_NOW - timedelta(days=3), acknowledged=True,
                           acknowledged_at=FIXED_NOW - timedelta(days=3), acknowledged_by="console:bo"),
        }
        s.add_all(alerts.values())
        s.add(m.AlertSilence(policy_id=backlog.id, reason="reprocessing last night's data", created_by="console:bo",
                             starts_at=FIXED_NOW - H, ends_at=FIXED_NOW + 3 * H))
        s.add(m.CalibrationSet(name="cal_0834", calibrator_name="J0834+5534", status="active", dec_deg=55.57,
                               source_ms_path="/data/ms/cal.ms", refant="DSA-001", valid_start_mjd=0.0,
                               valid_end_mjd=1e6, mid_mjd=61000.0, qa_passed=True, created_at=FIXED_NOW - 3 * H))
        s.add(m.Image(id="img1", path="/x/img1.fits", created_at=FIXED_NOW - 3 * H))
        s.flush()
        for mjd, ratio in ((61000.1, 1.01), (61001.1, 0.71)):
            s.add(m.CalibratorFlux(calibrator_name="J0834+5534", image_id="img1", mjd=mjd, freq_hz=1.4e9,
                                   observed_flux_jy=5 * ratio, apparent_flux_jy=3.4 * ratio, catalog_flux_jy=5.0,
                                   flux_ratio=ratio, beam_gain=0.68, offset_deg=1.0))
        s.flush()
        ids.update({k: a.id for k, a in alerts.items()})
    # a day of hourly disk samples, through the sampler the runtime schedules (2.40 → 2.46 TB of 4 TB)
    with monkeypatch.context() as mp:
        for i in range(24):
            mp.setattr(shutil, "disk_usage", fixed_disk(2.40 * TB + i * 0.0025 * TB))
            record_storage_sample(db, settings, now=FIXED_NOW - (23 - i) * H - timedelta(minutes=30))
    # jobs through the real queue, then placed in time: 2 convert + 3 image succeeded, 1 failed, 3 waiting
    with db.session() as s:
        for i, gid in enumerate([f"g{i}" for i in range(6)] + [f"q{i}" for i in range(3)]):
            s.add(m.ObservationGroup(id=gid, group_time=FIXED_NOW - timedelta(hours=11 - i), n_subbands=16))
    q = JobQueue(db)
    plan = [("convert", "succeeded", 10.5), ("convert", "succeeded", 6.5), ("image", "succeeded", 6.2),
            ("image", "succeeded", 2.4), ("image", "succeeded", 0.4), ("image", "failed", 3.5)]
    for i, (jtype, state, hours_ago) in enumerate(plan):
        jid = q.enqueue(jtype, group_id=f"g{i}")
        claimed = q.claim("w", [jtype], 60)
        assert claimed is not None and claimed.id == jid
        with db.session() as s:
            q.finish(s, jid, "w", state, error="boom" if state == "failed" else None)
            done = FIXED_NOW - hours_ago * H
            s.execute(update(m.Job).where(m.Job.id == jid).values(
                created_at=done - timedelta(minutes=30), started_at=done - timedelta(minutes=10), finished_at=done))
    for i, hours_ago in enumerate((4.5, 1.5, 0.7)):
        jid = q.enqueue("image", group_id=f"q{i}")
        with db.session() as s:
            s.execute(update(m.Job).where(m.Job.id == jid).values(created_at=FIXED_NOW - hours_ago * H))
    return ids


async def _open_health(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot)
    await pilot.press("6")
    await settle(pilot)


def _rows(table: DataTable) -> list[list[object]]:
    return [table.get_row_at(i) for i in range(table.row_count)]


async def test_health_lists_alerts_trends_and_status_lines(db: Database, settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(db, settings, monkeypatch)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        rows = _rows(screen.query_one("#table", DataTable))
        # unacknowledged first (newest first), then the acknowledged one; the 3-day-old one is gone
        assert [r[0] for r in rows] == [f"#{ids[k]}" for k in ("disk", "backlog", "flux", "acked")]
        assert [r[4] for r in rows] == ["[b]NEW[/b]", "silenced", "[b]NEW[/b]", "acked"]
        assert rows[0][3] == "disk nearly full" and rows[2][3] == "calibrator_flux"
        title = str(screen.query_one("#alerts-title", Static).render())
        assert "3 unacknowledged" in title and "1 silenced" in title and "1 acknowledged in 24 h" in title
        detail = str(screen.query_one("#alert-detail", Static).render())
        assert "contimg_disk_usage_ratio = 0.912 > 0.9" in detail

        trends = screen.trends
        assert trends is not None
        # finished per hour, bucket (end-1h, end]: image jobs at 0.4, 2.4 and 6.2 h ago, convert at 6.5 and 10.5
        assert trends.finished_by_stage["image"][-1] == 1 and trends.finished_by_stage["image"][-3] == 1
        assert trends.finished_by_stage["image"][-7] == 1 and trends.finished_by_stage["convert"][-7] == 1
        assert trends.finished_by_stage["convert"][-11] == 1 and sum(trends.finished) == 5
        assert trends.failed[-4] == 1 and sum(trends.failed) == 1
        # waiting: one since 4.5 h, one since 1.5 h, one since 0.7 h (plus finished jobs' 20-min waits)
        assert trends.queue_depth[-1] == 3 and trends.queue_depth[-2] == 2 and trends.queue_depth[-4] == 1
        assert trends.queue_depth[-6] == 0
        done = screen.query_one("#trend-done", TrendLine)
        assert done.values == [float(x) for x in trends.finished]
        assert done.summary == "5 done, 1 failed in 24 h; last h 1"
        assert "now 3 waiting, peak 3" in screen.query_one("#trend-queue", TrendLine).summary
        # 24 recorded samples in the window and the live reading
        assert len(trends.disk_percent) == 25 and trends.disk_percent[:2] == [60.0, 60.06]
        assert screen.query_one("#trend-disk", TrendLine).values[:24] == trends.disk_percent[:24]

        lines = {r[0]: r for r in _rows(screen.query_one("#lines", DataTable))}
        assert lines["engine"][1] == "running 0/2" and lines["REST API"][2] == "http://127.0.0.1:8000"
        assert lines["Jupyter"][1] == "running"
        assert lines["calibration"][2] == "newest active set 3.0 h old"
        assert lines["failed jobs"][2] == "1 in the dead-letter view"
        assert lines["silences"][2] == "queue backlog until 11-29 15:00 UTC"
        assert lines["flux J0834+5534"][1:] == ["[b]check[/b]", "observed/catalogue 0.710 (latest of 2)"]
        assert "data disk" in lines


async def test_acknowledge_records_who_and_when(db: Database, settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(db, settings, monkeypatch)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert f"Acknowledge alert #{ids['disk']} (critical, disk nearly full, fired 11-29 11:40 UTC)?" \
            in app.screen.question
        assert "console:ana" in app.screen.question
        await pilot.press("n")                       # no: nothing is written
        await settle(pilot)
        with db.session() as s:
            assert not s.get_one(m.Alert, ids["disk"]).acknowledged
        await pilot.press("a", "y")
        await settle(pilot)
        with db.session() as s:
            a = s.get_one(m.Alert, ids["disk"])
            assert a.acknowledged and a.acknowledged_by == "console:ana" and a.acknowledged_at == FIXED_NOW
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        rows = _rows(screen.query_one("#table", DataTable))
        # acknowledged alerts move below the unacknowledged ones; the cursor row now shows the next one
        assert [r[0] for r in rows] == [f"#{ids[k]}" for k in ("backlog", "flux", "disk", "acked")]
        assert rows[2][4] == "acked"
        assert "2 unacknowledged" in str(screen.query_one("#alerts-title", Static).render())
        # the acknowledged one again: no second record, the first acknowledgement is reported
        table = screen.query_one("#table", DataTable)
        table.move_cursor(row=2)
        await pilot.pause()
        assert "acknowledged by console:ana at 11-29 12:00 UTC" in str(
            screen.query_one("#alert-detail", Static).render())
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_silence_goes_through_the_policies_and_quiets_the_evaluator(
        db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(db, settings, monkeypatch)
    with db.session() as s:   # only the disk policy's alert is considered below: drop the backlog's silence
        s.execute(m.AlertSilence.__table__.delete())
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)
        table = app.screen.query_one("#table", DataTable)
        table.move_cursor(row=1)                     # the queue backlog alert
        await pilot.press("s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SilenceScreen) and dialog.alert.id == ids["backlog"]
        duration = dialog.query_one("#duration", Input)
        duration.value = "8d"
        await pilot.pause()
        assert "at most 7 days" in str(dialog.query_one("#problem", Static).render())
        duration.value = "90m"
        await pilot.press("enter")                   # on to the reason
        await pilot.pause()
        assert dialog.query_one("#reason", Input).has_focus
        await pilot.press("enter")                   # no reason: refused
        await pilot.pause()
        assert app.screen is dialog and "a reason is required" in str(dialog.query_one("#problem", Static).render())
        await pilot.press(*"reprocessing", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Silence policy queue backlog (alert #%d) for 1 h 30 min, until 11-29 13:30 UTC?" % ids["backlog"] \
            in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        with db.session() as s:
            (silence,) = s.scalars(select(m.AlertSilence)).all()
            assert silence.policy_id == ids["backlog_policy"] and silence.reason == "reprocessing"
            assert silence.created_by == "console:ana"
            assert silence.starts_at == FIXED_NOW and silence.ends_at == FIXED_NOW + timedelta(minutes=90)
        rows = _rows(app.screen.query_one("#table", DataTable))
        assert rows[1][4] == "silenced"
        assert "policy silenced until 11-29 13:30 UTC by console:ana: reprocessing" in str(
            app.screen.query_one("#alert-detail", Static).render())

    # the evaluator honours it: the backlog policy (3 jobs waiting) stays quiet until 13:30, then fires
    with db.session() as s:
        s.execute(update(m.AlertPolicy).where(m.AlertPolicy.id == ids["disk_policy"]).values(enabled=False))
    evaluator = Evaluator(db, settings.data_dir)
    assert evaluator.run(now=FIXED_NOW + timedelta(minutes=10)) == []
    assert evaluator.run(now=FIXED_NOW + 2 * H) == [ids["backlog_policy"]]


async def test_alerts_without_a_policy_cannot_be_silenced(db: Database, settings: Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(db, settings, monkeypatch)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)
        table = app.screen.query_one("#table", DataTable)
        table.move_cursor(row=2)                     # the calibrator flux alert
        await pilot.pause()
        assert "from imaging (no policy: acknowledge only)" in str(
            app.screen.query_one("#alert-detail", Static).render())
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, HealthScreen)
        assert any("not from an alert policy" in n.message for n in app._notifications)
    with db.session() as s:
        assert len(s.scalars(select(m.AlertSilence)).all()) == 1      # only the seeded one
    with pytest.raises(Exception, match="no policy to silence"):
        app.services.health.silence(int(ids["flux"]), timedelta(hours=1), "x", "ana")


async def test_read_only_console_shows_why_acknowledge_is_disabled(db: Database, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(db, settings, monkeypatch)
    app = make_app(db, settings=settings, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, HealthScreen)
        from screens.keymap import action_entries

        entries = {e.id: e for e in action_entries(app.screen)}
        assert "read-only" in (entries["health.acknowledge"].disabled or "")
        assert "read-only" in (entries["health.silence"].disabled or "")
        assert entries["health.trends"].disabled is None
    with db.session() as s:
        assert not s.get_one(m.Alert, ids["disk"]).acknowledged
        assert len(s.scalars(select(m.AlertSilence)).all()) == 1


async def test_trends_open_as_plots_and_empty_history_says_so(db: Database, settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_health(pilot)                     # nothing recorded at all
        screen = app.screen
        assert "No alerts" in str(screen.query_one("#empty", Static).render())
        assert "no hourly samples yet" in screen.query_one("#trend-disk", TrendLine).summary
        assert screen.query_one("#trend-done", TrendLine).summary == "0 done in 24 h; last h 0"
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TrendsScreen)
        assert "No disk history yet" in str(app.screen.query_one("#note-disk", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HealthScreen)


def test_silence_durations() -> None:
    assert parse_duration("2h") == 2 * H and parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1h30m") == timedelta(minutes=90) and parse_duration("1d") == 24 * H
    assert parse_duration(" 1.5 ") == timedelta(minutes=90)
    for bad, why in (("", "required"), ("0", "longer than zero"), ("8d", "at most 7 days"), ("soon", "not a duration")):
        with pytest.raises(ValueError, match=why):
            parse_duration(bad)


# ---- snapshots (80x24, fixed clock, fixed disk) ---------------------------------------------------------
@pytest.fixture
def seeded_app(db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    seed(db, settings, monkeypatch)
    monkeypatch.setattr(shutil, "disk_usage", fixed_disk(2.46 * TB))   # the live reading, the same everywhere
    return make_app(db, settings=settings)


def test_snapshot_health_populated(snap_compare, seeded_app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(seeded_app, terminal_size=(80, 24), run_before=_open_health)


def test_snapshot_health_acknowledge_dialog(snap_compare, seeded_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _open_health(pilot)
        await pilot.press("a")
        await pilot.pause()

    assert snap_compare(seeded_app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_health_silence_dialog(snap_compare, seeded_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _open_health(pilot)
        await pilot.press("s", "enter", *"disk cleanup")
        await pilot.pause()

    assert snap_compare(seeded_app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_health_trends(snap_compare, seeded_app) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _open_health(pilot)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("right")
        await pilot.pause()

    assert snap_compare(seeded_app, terminal_size=(80, 24), run_before=run_before)
