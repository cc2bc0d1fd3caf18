"""The Calibrations screen: the list, a set's detail from its real caltables, and the operator's actions.

Every set is a real solve (``calibration_seed``): a simulated calibrator transit written
as an MS, solved by the engine's ``solve_ms`` (bandpass, gains, QA, CASA-layout tables)
and registered by the real ``Registry.register``; the actions' effects are read back from
the database and from the registry's own decision.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from textual.widgets import DataTable, Input, Static, TabbedContent
from textual_plotext import PlotextPlot

from calibration_seed import (A, B, C, D, E, FLAGGED_ANT, R, SPECS, build_solves, decide, name_of, seed,
                              status_of)
from conftest import make_settings
from engine.calibration import lifecycle
from engine.calibration.caltable import read_caltable
from engine.calibration.qa import QAThresholds, evaluate_qa
from engine.calibration.qa_report import qa_gates
from engine.db import Database
from engine.db import models as m
from engine.processing.queue import JobQueue
from engine.services.calibrations import to_mjd
from engine.settings import Settings
from screens.calibration_detail import CalibrationDetailScreen
from screens.calibration_forms import WhichSetScreen
from screens.confirm import ConfirmScreen
from screens.prompt import PromptScreen
from tui_helpers import FIXED_NOW, make_app, settle


@pytest.fixture(scope="module")
def solves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The seed's solves, once for the module (a few seconds)."""
    return build_solves(tmp_path_factory.mktemp("calsolves"))


def rows(app: Any) -> list[tuple[Any, ...]]:
    table = app.screen.query_one("#table", DataTable)
    return [tuple(table.get_row_at(i)) for i in range(table.row_count)]


async def select_row(pilot: Any, set_name: str) -> None:
    table = pilot.app.screen.query_one("#table", DataTable)
    index = next(i for i in range(table.row_count) if table.get_row_at(i)[0] == set_name)
    table.move_cursor(row=index)
    await pilot.pause()


async def open_calibrations(pilot: Any) -> None:
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot)


def text(widget: Static) -> str:
    return str(widget.render())


TARGET = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


# ---- the list ---------------------------------------------------------------------------------------
async def test_list_shows_every_set_with_status_qa_window_and_age(db: Database, settings: Settings,
                                                                  solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        got = rows(app)
        assert [r[0] for r in got] == [name_of(s) for s in SPECS]   # newest solve first
        by_name = {r[0]: r for r in got}
        a = by_name[name_of(A)]
        assert a[1:3] == ("active", "pass") and a[5] == "+55.57" and a[6] == "J0834+5534"
        assert a[4] == "0.1 h"                                      # solved 11:55:54, clock 12:00
        assert a[7] == "11-28 23:55→11-29 23:55"                    # ±12 h, UTC
        assert int(a[3]) == round(solves[A.gid]["metrics"]["snr_median"])
        assert by_name[name_of(R)][1:3] == ("rejected", "FAIL")
        assert by_name[name_of(D)][1] == "retired" and by_name[name_of(D)][4] == "47.9 h"
        assert by_name[name_of(E)][5] == "+33.15"
        info = text(app.screen.query_one("#row-info", Static))
        assert name_of(A) in info and "MJD 61373.4969" in info and "covers now" in info
        await select_row(pilot, name_of(D))
        info = text(app.screen.query_one("#row-info", Static))
        assert "retired by console:alice at 2026-11-28 08:10 UTC: DSA-005 phase jumps after 12:10 UTC" in info
        assert "ended" in info


# ---- retire and reinstate ----------------------------------------------------------------------------
async def test_retire_stops_the_registry_choosing_it_and_reinstate_brings_it_back(
        db: Database, settings: Settings, solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    before = decide(db, settings, TARGET)
    assert before.action == "use" and [u.name for u in before.sets] == [name_of(A)] and before.mode == "nearest"
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await select_row(pilot, name_of(A))
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and name_of(A) in app.screen.question
        await pilot.press("enter")                      # an empty reason is refused
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"DSA-005 dead all night")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert name_of(A) in app.screen.question and "DSA-005 dead all night" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        status, reason = status_of(db, ids[A.gid])
        assert status == "retired" and reason is not None
        assert reason.startswith("retired by console") and reason.endswith(" at 2026-11-29 12:00 UTC: DSA-005 dead all night")
        with db.session() as s:
            ev = lifecycle.events(s, name_of(A))
            assert [(e.action, e.from_status, e.to_status, e.reason, e.at) for e in ev] == [
                ("retired", "active", "retired", "DSA-005 dead all night", FIXED_NOW)]
            assert ev[0].by.startswith("console")
        after = decide(db, settings, TARGET)            # the registry now takes the other calibrator's set
        assert after.action == "use" and [u.name for u in after.sets] == [name_of(C)]
        assert after.mode == "fallback" and "J0834+5534 has no valid set" in after.reason
        assert dict((r[0], r[1]) for r in rows(app))[name_of(A)] == "retired"   # the list refreshed

        await pilot.press("u")
        await pilot.pause()
        await pilot.press(*"false alarm, DSA-005 was fine")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Reinstate" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert status_of(db, ids[A.gid])[0] == "active"
        again = decide(db, settings, TARGET)
        assert [u.name for u in again.sets] == [name_of(A)] and again.mode == "nearest"
        with db.session() as s:
            assert [e.action for e in lifecycle.events(s, name_of(A))] == ["retired", "reinstated"]


async def test_no_thanks_changes_nothing(db: Database, settings: Settings, solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await select_row(pilot, name_of(A))
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"typo")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("escape")                     # no reason given: no question asked
        await settle(pilot)
        assert status_of(db, ids[A.gid])[0] == "active"
        await select_row(pilot, name_of(R))              # a rejected set is neither retired nor reinstated
        await pilot.press("u")
        await settle(pilot)
        assert not isinstance(app.screen, PromptScreen)
        assert status_of(db, ids[R.gid])[0] == "rejected"
    with db.session() as s:
        assert not list(s.scalars(select(m.CalibrationSetEvent).where(
            m.CalibrationSetEvent.set_name != name_of(D))))


def test_reinstate_refuses_a_set_whose_tables_are_gone(db: Database, settings: Settings,
                                                       solves: dict[str, Any], tmp_path: Path) -> None:
    ids = seed(db, settings, solves)
    copy = tmp_path / "D.G"
    shutil.copytree(solves[D.gid]["gain_table"], copy)
    with db.session() as s:
        t = s.scalars(select(m.CalibrationTable).where(m.CalibrationTable.set_id == ids[D.gid],
                                                        m.CalibrationTable.table_type == "gain")).one()
        t.path = str(copy)
    shutil.rmtree(copy)                                   # as a retention run would
    app = make_app(db, settings=settings)
    with pytest.raises(lifecycle.LifecycleError, match="gain table missing on disk"):
        app.services.calibrations.reinstate(ids[D.gid], "needed again", "console:test")
    assert status_of(db, ids[D.gid])[0] == "retired"
    with pytest.raises(lifecycle.LifecycleError, match="reason is required"):
        app.services.calibrations.retire(ids[A.gid], "   ", "console:test")


async def test_detail_says_which_table_is_gone_and_plots_the_other(db: Database, settings: Settings,
                                                                   solves: dict[str, Any], tmp_path: Path) -> None:
    ids = seed(db, settings, solves)
    copy = tmp_path / "D.G"
    shutil.copytree(solves[D.gid]["gain_table"], copy)
    with db.session() as s:
        t = s.scalars(select(m.CalibrationTable).where(m.CalibrationTable.set_id == ids[D.gid],
                                                        m.CalibrationTable.table_type == "gain")).one()
        t.path = str(copy)
    shutil.rmtree(copy)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(CalibrationDetailScreen(ids[D.gid]))
        await settle(pilot)
        screen = app.screen
        assert f"gain table {copy}: {copy}: table not found" in text(screen.query_one("#gain-ant", Static))
        assert "table unreadable" in screen.query_one("#gain-amp", PlotextPlot).plt.build()
        assert _braille(screen.query_one("#bp-amp", PlotextPlot)) > 20
        await pilot.press("h")
        await pilot.pause()
        body = text(screen.query_one("#use-body", Static))
        assert f"gain     {copy}  MISSING" in body and "gain table missing on disk" in body


# ---- re-solve ----------------------------------------------------------------------------------------
async def test_resolve_queues_the_solve_stage_for_a_failed_calibrator_group(
        db: Database, settings: Settings, solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await select_row(pilot, name_of(R))
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        q = app.screen.question
        assert name_of(R) in q and "is failed; it returns to converted and a solve job is queued" in q
        await pilot.press("y")
        await settle(pilot)
    jobs = JobQueue(db).list(group_id=R.gid)
    assert [(j.type, j.state, j.priority, j.max_attempts) for j in jobs] == [("solve", "queued", 10, 2)]
    assert jobs[0].created_by.startswith("console")
    with db.session() as s:
        assert s.get_one(m.ObservationGroup, R.gid).state == "converted"
        last = s.scalars(select(m.StateTransition).where(m.StateTransition.group_id == R.gid)
                         .order_by(m.StateTransition.id.desc())).first()
        assert (last.from_state, last.to_state) == ("failed", "converted") and "re-solve" in last.reason
        ev = lifecycle.events(s, name_of(R))
        assert [(e.action, e.job_id) for e in ev] == [("resolve_requested", jobs[0].id)]
    # asked again while that solve is queued: refused, no second job
    with pytest.raises(lifecycle.LifecycleError, match="has its solve job queued"):
        app.services.calibrations.resolve(ids[R.gid], "console:test")


async def test_resolve_says_why_a_busy_group_cannot_be_solved_again(
        db: Database, settings: Settings, solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)
    notes: list[str] = []
    app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await select_row(pilot, name_of(A))
        await pilot.press("s")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
    assert any(f"cannot re-solve {name_of(A)}" in n and "has its image job queued" in n
               and "cancel it from the Queue" in n for n in notes), notes
    assert [j.type for j in JobQueue(db).list(group_id=A.gid)] == ["image"]
    with db.session() as s:
        assert s.get_one(m.ObservationGroup, A.gid).state == "calibrated"


async def test_resolve_of_a_complete_group_runs_the_real_solve_and_replaces_the_set(
        db: Database, settings: Settings, solves: dict[str, Any]) -> None:
    from engine.processing.stage_calibrate import SOLVE
    from engine.processing.stages import StageRegistry
    from engine_helpers import group_states, make_engine, run_until

    ids = seed(db, settings, solves)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await select_row(pilot, name_of(B))
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "is complete; it goes back to converted and is solved again, then imaged and measured again" \
            in app.screen.question
        await pilot.press("y")
        await settle(pilot)
    assert [(j.type, j.state) for j in JobQueue(db).list(group_id=B.gid)] == [("solve", "queued")]
    assert group_states(db)[B.gid] == "converted"
    registry = StageRegistry()
    registry.register(SOLVE)                 # the engine's own solve stage, nothing after it
    engine, _ = make_engine(settings, db, registry)
    await engine.start()
    try:
        await run_until(db, lambda: group_states(db)[B.gid] == "calibrated", timeout=120)
    finally:
        await engine.stop()
    with db.session() as s:
        cs = s.scalars(select(m.CalibrationSet).where(m.CalibrationSet.name == name_of(B))).one()
        assert cs.id != ids[B.gid] and cs.status == "active" and cs.qa_passed
        assert {t.table_type: Path(t.path).parent for t in cs.tables} == {
            "bandpass": settings.caltables_dir / B.gid, "gain": settings.caltables_dir / B.gid}
        assert [e.action for e in lifecycle.events(s, name_of(B))] == ["resolve_requested"]   # outlived the row
    assert [u.name for u in decide(db, settings, datetime(2026, 11, 28, 13, 0, tzinfo=UTC)).sets] == [name_of(B)]


# ---- which set would a target use? ---------------------------------------------------------------------
async def test_which_set_form_shows_the_registry_decision(db: Database, settings: Settings,
                                                          solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    expected = decide(db, settings, TARGET)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await pilot.press("w")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, WhichSetScreen)
        when, dec = form.query_one("#when", Input), form.query_one("#dec", Input)
        assert when.value == "2026-11-29 12:00" and dec.value == "55.57"   # the clock, the selected set
        when.value = "yesterday"
        await pilot.pause()
        assert "neither an MJD nor a UTC time" in text(form.query_one("#problem", Static))
        when.value = "2026-11-29 06:00"
        when.focus()
        await pilot.press("enter")
        await settle(pilot)
        shown = text(form.query_one("#decision", Static))
        assert f"use (nearest): {expected.reason}" in shown and name_of(A) in shown and "weight 1.00" in shown
        when.value = f"{to_mjd(TARGET) - 3:.4f}"         # three days back: nothing within 48 h
        await pilot.press("enter")
        await settle(pilot)
        failed = decide(db, settings, TARGET - timedelta(days=3))
        assert failed.action == "fail"
        assert f"fail: {failed.reason}" in text(form.query_one("#decision", Static))


# ---- the detail --------------------------------------------------------------------------------------
def _braille(plot: PlotextPlot) -> int:
    return sum(0x2801 <= ord(ch) <= 0x28FF for ch in plot.plt.build())


async def test_detail_plots_the_real_caltables_per_antenna(db: Database, settings: Settings,
                                                           solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    gain = read_caltable(solves[A.gid]["gain_table"])
    bp = read_caltable(solves[A.gid]["bandpass_table"])
    app = make_app(db, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CalibrationDetailScreen) and screen.set_id == ids[A.gid]
        sol = screen.solutions
        np.testing.assert_allclose(sol.gain_amp, np.abs(gain.cparam[:, :, 0, :]), rtol=1e-6)
        np.testing.assert_allclose(sol.bp_amp, np.abs(bp.cparam[0]), rtol=1e-6)
        assert sol.antenna_names == gain.antenna_names and sol.fully_flagged() == [FLAGGED_ANT]
        title = text(screen.query_one("#title", Static))
        assert name_of(A) in title and "active" in title and "QA pass" in title
        amp, phase = screen.query_one("#gain-amp", PlotextPlot), screen.query_one("#gain-phase", PlotextPlot)
        assert _braille(amp) > 20 and _braille(phase) > 20
        assert "antenna DSA-002 (2/8) · fully flagged: DSA-005" in text(screen.query_one("#gain-ant", Static))
        await pilot.press("p")                             # the reference antenna: phase zero by definition
        assert "antenna DSA-001 (refant) (1/8)" in text(screen.query_one("#gain-ant", Static))
        assert np.abs(sol.gain_phase_deg[:, 0][~sol.gain_flags[:, 0]]).max() < 1e-3 and _braille(phase) > 20
        for _ in range(FLAGGED_ANT):
            await pilot.press("n")
        line = text(screen.query_one("#gain-ant", Static))
        assert "antenna DSA-005 (5/8)" in line and "DSA-005 gain: all solutions flagged" in line
        assert _braille(amp) == 0 and "all solutions flagged" in amp.plt.build()
        await pilot.press("n")
        assert _braille(amp) > 20                          # DSA-006 has solutions again
        await pilot.press("p", "p")
        assert "DSA-004" in text(screen.query_one("#gain-ant", Static))
        await pilot.press("b")
        await pilot.pause()
        assert screen.query_one("#tabs", TabbedContent).active == "bandpass"
        assert _braille(screen.query_one("#bp-amp", PlotextPlot)) > 20
        await pilot.press("o")                             # four antennas overlaid, one line each
        assert "antennas DSA-004, DSA-005, DSA-006, DSA-007, pol X" in text(screen.query_one("#bp-ant", Static))
        assert "DSA-005 bandpass: all solutions flagged" in text(screen.query_one("#bp-ant", Static))


async def test_detail_qa_gates_against_todays_thresholds(db: Database, tmp_path: Path,
                                                         solves: dict[str, Any]) -> None:
    strict = make_settings(tmp_path, calibration={"qa_min_snr": 60.0})
    ids = seed(db, strict, solves)
    metrics = solves[A.gid]["metrics"]
    app = make_app(db, settings=strict)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(CalibrationDetailScreen(ids[A.gid]))
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#gates", DataTable)
        gates = {table.get_row_at(i)[0]: tuple(table.get_row_at(i)[1:]) for i in range(table.row_count)}
        assert gates["median gain SNR"] == (f"{metrics['snr_median']:.1f}", ">= 60.0", "FAIL", "")
        assert gates["data flagged"] == (f"{metrics['data_flagged_fraction']:.3f}", "<= 0.300", "pass", "")
        assert gates["antennas solved"] == ("7", ">= 7", "pass", "of 8 in the data")
        assert gates["phase scatter (deg)"][1:] == ("not gated", "—", "the atmosphere, reported")
        assert gates["residual / thermal"][2] == "pass"
        verdict = text(screen.query_one("#verdict", Static))
        assert verdict.startswith(f"fails today's thresholds: median gain SNR {metrics['snr_median']:.1f} < 60")
        assert verdict.rstrip().endswith("(at the solve it passed)")
        await pilot.press("h")
        await pilot.pause()
        body = text(screen.query_one("#use-body", Static))
        assert "Used by (1 group)" in body and f"{A.gid}  calibrated  (solved here)" in body
        assert solves[A.gid]["gain_table"] in body and "MISSING" not in body
        assert "not from here: group 2026-11-29T11:53:00 has its image job queued" in body


async def test_detail_history_keeps_who_when_and_why(db: Database, settings: Settings,
                                                     solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    app = make_app(db, settings=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(CalibrationDetailScreen(ids[D.gid]))
        await settle(pilot)
        assert "retired by console:alice at 2026-11-28 08:10 UTC: DSA-005 phase jumps" in text(
            app.screen.query_one("#title", Static))          # why it is not active, without looking further
        await pilot.press("h")
        await pilot.pause()
        body = text(app.screen.query_one("#use-body", Static))
        assert ("2026-11-28 08:10 UTC  retired by console:alice, active → retired: DSA-005 phase jumps after "
                "12:10 UTC") in body
        await pilot.press("u")                             # reinstate from the detail view itself
        await pilot.pause()
        await pilot.press(*"phase jumps were RFI")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert status_of(db, ids[D.gid])[0] == "active"
        body = text(app.screen.query_one("#use-body", Static))
        assert "reinstated by console" in body and "retired → active: phase jumps were RFI" in body
        assert f"{name_of(D)} · J0834+5534 · active" in text(app.screen.query_one("#title", Static))
        app.push_screen(CalibrationDetailScreen(ids[C.gid]))
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        body = text(app.screen.query_one("#use-body", Static))
        assert "Used by (3 groups)" in body
        assert "2026-11-28T21:00:00  complete" in body and "2026-11-28T22:00:00  complete" in body


# ---- read-only ---------------------------------------------------------------------------------------
async def test_read_only_console_cannot_retire_resolve_or_reinstate(db: Database, settings: Settings,
                                                                     solves: dict[str, Any]) -> None:
    ids = seed(db, settings, solves)
    app = make_app(db, settings=settings, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_calibrations(pilot)
        for key in ("x", "u", "s"):
            await pilot.press(key)
            await settle(pilot)
            assert not isinstance(app.screen, (PromptScreen, ConfirmScreen))
        from screens.keymap import action_entries

        entries = {e.id: e.disabled for e in action_entries(app.screen)}
        assert entries["calibrations.retire"] and "read-only" in entries["calibrations.retire"]
        assert entries["calibrations.which"] is None and entries["calibrations.detail"] is None
    assert status_of(db, ids[A.gid])[0] == "active" and JobQueue(db).list(group_id=R.gid) == []


# ---- the QA breakdown agrees with the gates ------------------------------------------------------------
def test_qa_gates_agree_with_evaluate_qa(solves: dict[str, Any]) -> None:
    strict = QAThresholds(min_snr=60.0)
    for res in solves.values():
        for th in (QAThresholds(), strict, QAThresholds(max_phase_scatter_deg=0.5)):
            gates = qa_gates(res["metrics"], th)
            assert all(g.passed is not False for g in gates) == evaluate_qa(res["metrics"], th).passed


# ---- snapshots ---------------------------------------------------------------------------------------
def test_snapshot_calibrations_list(snap_compare, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                    solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_calibrations(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_calibration_detail_gains(snap_compare, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                           solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_calibrations(pilot)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_calibration_detail_qa(snap_compare, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                        solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_calibrations(pilot)
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_which_set_form(snap_compare, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                 solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_calibrations(pilot)
        await pilot.press("w")
        await pilot.pause()
        app.screen.query_one("#when", Input).value = "2026-11-29 06:00"
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_retire_dialog(snap_compare, db: Database, settings: Settings,  # type: ignore[no-untyped-def]
                                solves: dict[str, Any]) -> None:
    seed(db, settings, solves)
    app = make_app(db, settings=settings)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_calibrations(pilot)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"DSA-005 dead all night")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
