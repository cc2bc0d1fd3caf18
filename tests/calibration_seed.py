"""Calibration sets for the console tests: real solves of simulated transits, registered by the real registry.

Two days of calibrator transits at Dec +55.57 (J0834+5534 near noon, J1638+5720 near
20:00 UTC) and one at +33.15, as of the console's fixed clock (2026-11-29 12:00 UTC):
the newest with one antenna flagged before its solve, one too noisy to pass QA (its
group failed), one retired by an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from casacore import tables

from engine.calibration import lifecycle
from engine.calibration.registry import Registry
from engine.calibration.solve_ms import solve_ms
from engine.calibration.synthetic import synthesize, write_ms
from engine.db import Database
from engine.db import models as m
from engine.processing.queue import JobQueue
from engine.processing.stage_calibrate import GROUP_SECONDS, mid_mjd
from engine.processing.transitions import transition
from engine.services.calibrations import to_mjd
from engine.settings import Settings
from tui_helpers import FIXED_NOW

DEC = 55.57
FLAGGED_ANT = 4   # DSA-005: every visibility flagged before the solve of set A


@dataclass(frozen=True)
class Spec:
    gid: str
    calibrator: str
    dec: float = DEC
    sigma: float = 1.0
    seed: int = 1
    flag_ant: int | None = None


A = Spec("2026-11-29T11:53:00", "J0834+5534", seed=11, flag_ant=FLAGGED_ANT)   # newest, group calibrated
E = Spec("2026-11-29T04:57:00", "J0137+3309", dec=33.15, seed=12)
C = Spec("2026-11-28T19:59:00", "J1638+5720", seed=13)
B = Spec("2026-11-28T11:57:00", "J0834+5534", seed=14)
R = Spec("2026-11-27T20:03:00", "J1638+5720", sigma=40.0, seed=15)             # noisy: fails QA
D = Spec("2026-11-27T12:01:00", "J0834+5534", seed=16)                         # retired by an operator
SPECS = (A, E, C, B, R, D)


def name_of(spec: Spec) -> str:
    return f"{spec.gid}_{spec.calibrator}"


def _group_time(spec: Spec) -> datetime:
    return datetime.fromisoformat(spec.gid).replace(tzinfo=UTC)


def build_solves(root: Path) -> dict[str, dict[str, Any]]:
    """One real solve per calibrator group under ``root``: MS written, solved, tables on disk."""
    (root / "ms").mkdir(parents=True)
    out = {}
    for spec in SPECS:
        t0 = to_mjd(_group_time(spec)) * 86400.0
        obs = synthesize(nant=8, nchan=32, ntime=12, sigma=spec.sigma, seed=spec.seed, dec_deg=spec.dec,
                         t0_mjd_s=t0)
        ms = write_ms(str(root / "ms" / f"{spec.gid}.ms"), obs)
        if spec.flag_ant is not None:
            with tables.table(ms, readonly=False, ack=False) as t:
                a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
                flags = t.getcol("FLAG")
                flags[(a1 == spec.flag_ant) | (a2 == spec.flag_ant)] = True
                t.putcol("FLAG", flags)
        res = solve_ms(ms, obs.calibrator, root / "caltables" / spec.gid)
        out[spec.gid] = res
    assert [out[s.gid]["qa_passed"] for s in SPECS] == [True, True, True, True, False, True]
    return out


def seed(db: Database, settings: Settings, solves: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The registry after two days of transits at Dec +55.57 (and one at +33.15); returns set ids by group."""
    reg = Registry(settings.calibration)
    ids: dict[str, int] = {}
    for spec in SPECS:
        res = solves[spec.gid]
        gt = _group_time(spec)
        with db.session() as s:
            g = m.ObservationGroup(id=spec.gid, group_time=gt, state="pending", n_subbands=16, dec_deg=spec.dec,
                                   is_calibrator=True, calibrator_name=spec.calibrator,
                                   start_mjd=to_mjd(gt), end_mjd=to_mjd(gt + timedelta(seconds=GROUP_SECONDS)))
            s.add(g)
            s.flush()
            for src, dst in (("pending", "converting"), ("converting", "converted"), ("converted", "solving")):
                transition(s, spec.gid, src, dst)
            passed = bool(res["qa_passed"])
            if passed:
                transition(s, spec.gid, "solving", "calibrated")
            else:
                transition(s, spec.gid, "solving", "failed", error="calibration QA failed")
            s.add(m.MeasurementSet(group_id=spec.gid, path=res["ms"], cal_sets_applied=[name_of(spec)] if passed
                                   else []))
            cs, _ = reg.register(s, name=name_of(spec), calibrator=spec.calibrator, group_id=spec.gid,
                                 ms_path=res["ms"], refant=res["refant_name"],
                                 solver_params={"solint_s": None, "qa": settings.calibration.qa_thresholds()},
                                 dec_deg=spec.dec, mid_mjd=mid_mjd(g), qa_metrics=res["metrics"],
                                 qa_passed=passed, qa_reasons=res["qa_reasons"], bandpass=res["bandpass_table"],
                                 gain=res["gain_table"])
            cs.created_at = gt + timedelta(minutes=6)
            ids[spec.gid] = cs.id
            if spec is not A and passed:
                g.state = "complete"
    with db.session() as s:   # targets calibrated with C and B
        for gid, used in (("2026-11-28T21:00:00", C), ("2026-11-28T22:00:00", C), ("2026-11-28T13:00:00", B)):
            s.add(m.ObservationGroup(id=gid, group_time=datetime.fromisoformat(gid).replace(tzinfo=UTC),
                                     state="complete", n_subbands=16, dec_deg=DEC))
            s.flush()
            s.add(m.MeasurementSet(group_id=gid, path=f"/data/ms/{gid}.ms", cal_sets_applied=[name_of(used)]))
        lifecycle.retire(s, ids[D.gid], "DSA-005 phase jumps after 12:10 UTC", "console:alice",
                         datetime(2026, 11, 28, 8, 10, tzinfo=UTC))
    JobQueue(db).enqueue("image", group_id=A.gid, priority=10)   # as the engine does after a solve
    return ids


def decide(db: Database, settings: Settings, when: datetime, dec: float = DEC) -> Any:
    with db.session() as s:
        return Registry(settings.calibration).find_best_calibration(s, to_mjd(when), dec,
                                                                    now_mjd=to_mjd(FIXED_NOW))


def status_of(db: Database, set_id: int) -> tuple[str, str | None]:
    with db.session() as s:
        cs = s.get_one(m.CalibrationSet, set_id)
        return cs.status, cs.status_reason
