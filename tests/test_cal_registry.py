"""Every branch of the calibration registry, on a real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conftest import make_settings
from engine.calibration.registry import Registry, mjd_to_datetime
from engine.db import Database
from engine.db import models as m
from engine.processing import states

DEC = 54.57
T = 61000.5  # target MJD
H = 1 / 24


@pytest.fixture
def reg(tmp_path) -> tuple[Registry, Database]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    return Registry(settings.calibration), db


def add(reg: Registry, db: Database, name: str, mid: float, *, cal: str | None = None, dec: float = DEC,
        snr: float = 50.0, passed: bool = True) -> list[str]:
    cal = cal or reg.preferred_calibrator(DEC)
    with db.session() as s:
        _, retired = reg.register(s, name=name, calibrator=cal, group_id=None, ms_path=f"/ms/{name}.ms", refant="3",
                                  solver_params={}, dec_deg=dec, mid_mjd=mid, qa_metrics={"snr_median": snr},
                                  qa_passed=passed, qa_reasons=[] if passed else ["SNR 4 < 10"],
                                  bandpass=f"/cal/{name}.B", gain=f"/cal/{name}.G")
    return retired


def decide(reg: Registry, db: Database, target: float = T, **kw: Any):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return reg.find_best_calibration(s, target, DEC, now_mjd=kw.pop("now_mjd", target + 10), **kw)


def test_preferred_calibrator_is_the_brightest_near_dec(reg) -> None:  # type: ignore[no-untyped-def]
    r, _ = reg
    assert r.preferred_calibrator(DEC) is not None


def test_exact(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "a", T)
    d = decide(r, db)
    assert (d.action, d.mode, [u.name for u in d.sets]) == ("use", "exact", ["a"])


def test_before_only_and_after_only(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "before", T - 6 * H)
    d = decide(r, db)
    assert d.action == "use" and d.mode == "nearest" and d.sets[0].name == "before" and "6.0 h" in d.reason
    r2, db2 = reg
    with db2.session() as s:
        s.query(m.CalibrationSet).delete()
    add(r2, db2, "after", T + 5 * H)  # bidirectional: a set solved after the target is valid too
    d = decide(r2, db2)
    assert d.action == "use" and d.sets[0].name == "after"


def test_interpolated(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "b", T - 3 * H)
    add(r, db, "a", T + 9 * H)
    d = decide(r, db)
    assert d.mode == "interpolated" and [u.name for u in d.sets] == ["b", "a"]
    assert [round(u.weight, 3) for u in d.sets] == [0.75, 0.25]


def test_fallback_calibrator(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "other", T - 2 * H, cal="SOME_OTHER_CAL")
    d = decide(r, db)
    assert d.action == "use" and d.mode == "fallback" and "fallback" in d.reason
    add(r, db, "mine", T - 8 * H)
    assert decide(r, db).sets[0].name == "mine"  # the preferred calibrator wins when it has a set


def test_stale_within_48h_with_warning(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "old", T - 30 * H)
    d = decide(r, db, now_mjd=T + 5)  # any transit around the target is long past
    assert d.action == "use" and d.mode == "stale" and d.warning and "30.0 h" in d.warning


def test_nothing_fails_with_reason(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "ancient", T - 60 * H)
    d = decide(r, db, now_mjd=T + 5)
    assert d.action == "fail" and "no calibration set at dec 54.57" in d.reason


def test_waits_for_an_expected_transit(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    name, when = r.next_transit(T, DEC)
    assert abs(when - T) <= 12 * H  # a transit at this dec is never more than half a sidereal day away
    d = decide(r, db, now_mjd=when - 2 * H)  # live: the transit is still to come
    assert d.action == "wait" and name in d.reason
    assert d.wait_until == mjd_to_datetime(when) + timedelta(hours=3)
    later = decide(r, db, now_mjd=when + 5)  # reprocessing long after: nothing to wait for
    assert later.action == "fail"


def test_waits_for_a_calibrator_group_in_flight(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "old", T - 20 * H)  # only a stale set exists
    with db.session() as s:
        s.add(m.ObservationGroup(id="cal", group_time=mjd_to_datetime(T + 2 * H), dec_deg=DEC, is_calibrator=True,
                                 calibrator_name="J0834+5534", state=states.SOLVING))
    d = decide(r, db, now_mjd=T + 5)
    assert d.action == "wait" and "cal" in d.reason and "solving" in d.reason


def test_rejected_and_other_dec_sets_are_never_used(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "bad", T, passed=False)
    add(r, db, "elsewhere", T, dec=DEC + 3.0)
    with db.session() as s:
        bad = s.query(m.CalibrationSet).filter_by(name="bad").one()
        assert bad.status == "rejected" and "SNR 4 < 10" in bad.status_reason and bad.qa_metrics["snr_median"]
    d = decide(r, db, now_mjd=T + 5)
    assert d.action == "fail"


def test_overlapping_sets_better_qa_wins_ties_to_newer(reg) -> None:  # type: ignore[no-untyped-def]
    r, db = reg
    add(r, db, "first", T, snr=40)
    assert add(r, db, "better", T + 0.5 * H, snr=80) == ["first"]
    assert add(r, db, "worse", T + 1 * H, snr=20) == ["worse"]
    assert add(r, db, "tie", T + 1.5 * H, snr=80) == ["better"]
    with db.session() as s:
        status = {c.name: (c.status, c.status_reason) for c in s.query(m.CalibrationSet)}
    assert status["tie"][0] == "active" and status["better"][0] == "retired" and "newer" in status["better"][1]
    assert status["worse"][0] == "retired" and "better QA" in status["worse"][1]
    assert status["first"][0] == "retired"
