"""Calibration sets for the console: detail, gains and bandpass for plots, retire/reinstate, re-solve, which set a target would use.

Everything here calls the engine's own pieces — the registry's decision
(``Registry.find_best_calibration``), the QA gates (``engine.calibration.qa``), the
caltable reader and the lifecycle rules (``engine.calibration.lifecycle``) — so the
console shows what the pipeline will actually do, never a second opinion.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import case, func, literal_column, select, true

from engine.calibration import lifecycle
from engine.calibration.lifecycle import LifecycleError, ResolvePlan
from engine.calibration.qa import QAThresholds
from engine.calibration.qa_report import QAGate, qa_gates, verdict
from engine.calibration.registry import MJD_UNIX, Registry, mjd_to_datetime
from engine.db import models as m
from engine.services.area import AreaService

__all__ = ["CalibrationService", "CalSetRow", "CalSetDetail", "CalSolutions", "SetEvent", "UsedBy", "WhichSet",
           "LifecycleError", "ResolvePlan", "parse_epoch", "parse_dec"]

#: python-casacore is not thread-safe: every caltable read of the console goes through this lock.
CASACORE_LOCK = threading.Lock()


def to_mjd(t: datetime) -> float:
    return t.timestamp() / 86400.0 + MJD_UNIX


def parse_epoch(text: str) -> float:
    """An MJD (``61008.25``) or a UTC time (``2026-11-29 06:00``, ISO, optional Z/UTC) → MJD."""
    raw = text.strip()
    if not raw:
        raise ValueError("give an MJD (e.g. 61008.25) or a UTC time (e.g. 2026-11-29 06:00)")
    try:
        mjd = float(raw)
    except ValueError:
        pass
    else:
        if not 40000 <= mjd <= 100000:
            raise ValueError(f"MJD {mjd:g} is outside 40000–100000 (years 1968–2132)")
        return mjd
    cleaned = raw.removesuffix("UTC").removesuffix("Z").strip().replace(" ", "T", 1)
    try:
        t = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{raw!r} is neither an MJD nor a UTC time like 2026-11-29 06:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return to_mjd(t)


def parse_dec(text: str) -> float:
    try:
        dec = float(text.strip().removesuffix("°"))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a declination in degrees (e.g. 55.57)") from None
    if not -90 <= dec <= 90:
        raise ValueError(f"declination {dec:g}° is outside −90…+90")
    return dec


def _snr(metrics: dict[str, Any]) -> float | None:
    for key in ("snr_median", "snr"):
        v = (metrics or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


@dataclass(frozen=True)
class CalSetRow:
    """One registered set as the list shows it; ``age_h`` is from the solve (mid) time to the service clock."""

    id: int
    name: str
    calibrator: str
    status: str
    status_reason: str | None
    dec_deg: float
    mid_mjd: float
    valid_start_mjd: float
    valid_end_mjd: float
    qa_passed: bool
    snr: float | None
    age_h: float
    window: str          # "covers now" | "ended 3.2 h ago" | "starts in 1.0 h"

    @property
    def mid_utc(self) -> datetime:
        return mjd_to_datetime(self.mid_mjd)

    @property
    def valid_start_utc(self) -> datetime:
        return mjd_to_datetime(self.valid_start_mjd)

    @property
    def valid_end_utc(self) -> datetime:
        return mjd_to_datetime(self.valid_end_mjd)


@dataclass(frozen=True)
class SetEvent:
    at: datetime
    by: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    job_id: str | None


@dataclass(frozen=True)
class UsedBy:
    group_id: str
    state: str
    solved_here: bool


@dataclass(frozen=True)
class CalSetDetail:
    row: CalSetRow
    group_id: str | None
    source_ms_path: str
    refant: str | None
    created_at: datetime
    tables: list[tuple[str, str, bool]]            # (type, path, exists on disk)
    gates: list[QAGate]
    verdict: tuple[bool, list[str]] | None          # evaluate_qa under today's thresholds; None: metrics incomplete
    thresholds_note: str | None                     # the solve's own thresholds, when they differ from today's
    used_by: list[UsedBy]
    events: list[SetEvent]
    overlaps: list[str]                             # other active sets of the same transit
    resolve: ResolvePlan
    not_applicable: list[str]                       # why the registry could not apply it even if active


@dataclass
class CalSolutions:
    """Gain and bandpass solutions of one set for plotting, as the engine's caltable reader returns them."""

    set_name: str
    antenna_names: list[str]
    refant: int
    pols: list[str]
    gain_t0: datetime | None = None
    gain_minutes: np.ndarray = field(default_factory=lambda: np.zeros(0))   # (nsol,) since gain_t0
    gain_amp: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))   # (nsol, nant, npol)
    gain_phase_deg: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    gain_flags: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))
    bp_freq_mhz: np.ndarray = field(default_factory=lambda: np.zeros(0))   # (nchan,)
    bp_amp: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))  # (nant, nchan, npol)
    bp_phase_deg: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    bp_flags: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))
    errors: list[str] = field(default_factory=list)

    @property
    def n_antennas(self) -> int:
        return max(len(self.antenna_names), self.gain_amp.shape[1] if self.gain_amp.ndim == 3 else 0,
                   self.bp_amp.shape[0] if self.bp_amp.ndim == 3 else 0)

    def antenna_name(self, ant: int) -> str:
        return self.antenna_names[ant] if ant < len(self.antenna_names) else f"ant {ant}"

    def flag_note(self, ant: int) -> str | None:
        """Why this antenna's plot is empty or partial (None when every solution is good)."""
        notes = []
        for label, flags in (("gain", self.gain_flags), ("bandpass", self.bp_flags)):
            if flags.size == 0 or ant >= (flags.shape[1] if label == "gain" else flags.shape[0]):
                continue
            f = flags[:, ant] if label == "gain" else flags[ant]
            if f.all():
                notes.append(f"{label}: all solutions flagged")
            elif f.any():
                notes.append(f"{label}: {f.mean():.0%} flagged")
        return "; ".join(notes) or None

    def fully_flagged(self) -> list[int]:
        """Antennas with every gain and bandpass solution flagged."""
        out = []
        for a in range(self.n_antennas):
            g = self.gain_flags[:, a].all() if self.gain_flags.size and a < self.gain_flags.shape[1] else True
            b = self.bp_flags[a].all() if self.bp_flags.size and a < self.bp_flags.shape[0] else True
            if g and b:
                out.append(a)
        return out


@dataclass(frozen=True)
class WhichSet:
    """The registry's decision for a target time and declination, as it returns it."""

    target_mjd: float
    target_utc: datetime
    dec_deg: float
    action: str
    mode: str
    reason: str
    warning: str | None
    wait_until: datetime | None
    sets: list[dict[str, Any]]        # name, calibrator, mid_mjd, weight, bandpass, gain


class CalibrationService(AreaService):
    """Calibration sets for the console."""

    @property
    def registry(self) -> Registry:
        return Registry(self.settings.calibration)

    def thresholds(self) -> QAThresholds:
        return QAThresholds.from_dict(self.settings.calibration.qa_thresholds())

    # ---- reads -------------------------------------------------------------------------
    def _row(self, c: m.CalibrationSet, now_mjd: float) -> CalSetRow:
        if c.valid_start_mjd <= now_mjd <= c.valid_end_mjd:
            window = "covers now"
        elif now_mjd > c.valid_end_mjd:
            window = f"ended {(now_mjd - c.valid_end_mjd) * 24:.1f} h ago"
        else:
            window = f"starts in {(c.valid_start_mjd - now_mjd) * 24:.1f} h"
        return CalSetRow(c.id, c.name, c.calibrator_name, c.status, c.status_reason, c.dec_deg, c.mid_mjd,
                         c.valid_start_mjd, c.valid_end_mjd, c.qa_passed, _snr(c.qa_metrics),
                         (now_mjd - c.mid_mjd) * 24.0, window)

    def list_sets(self, limit: int = 500) -> list[CalSetRow]:
        """Registered sets, newest solve first."""
        now_mjd = to_mjd(self.now())
        with self.db.session() as s:
            q = select(m.CalibrationSet).order_by(m.CalibrationSet.mid_mjd.desc(), m.CalibrationSet.id.desc())
            return [self._row(c, now_mjd) for c in s.scalars(q.limit(limit))]

    def detail(self, set_id: int) -> CalSetDetail | None:
        """Everything the detail view shows except the solutions themselves (see :meth:`solutions`)."""
        import os

        now_mjd = to_mjd(self.now())
        th = self.thresholds()
        with self.db.session() as s:
            c = s.get(m.CalibrationSet, set_id)
            if c is None:
                return None
            metrics = dict(c.qa_metrics or {})
            used_then = (c.solver_params or {}).get("qa")
            note = None
            if isinstance(used_then, dict) and used_then != self.settings.calibration.qa_thresholds():
                changed = {k: v for k, v in used_then.items()
                           if self.settings.calibration.qa_thresholds().get(k) != v}
                note = "solved under other thresholds: " + ", ".join(f"{k} {v}" for k, v in sorted(changed.items()))
            col = m.MeasurementSet.cal_sets_applied
            if s.get_bind().dialect.name == "postgresql":  # json_each is SQLite's; a non-array is no rows
                arr = case((func.json_typeof(col) == "array", col), else_=literal_column("'[]'::json"))
                je = func.json_array_elements_text(arr).table_valued("value")
            else:
                je = func.json_each(col).table_valued("value")
            used = s.execute(select(m.MeasurementSet.group_id, m.ObservationGroup.state)
                             .select_from(m.MeasurementSet).join(je, true())
                             .join(m.ObservationGroup, m.ObservationGroup.id == m.MeasurementSet.group_id)
                             .where(je.c.value == c.name).order_by(m.MeasurementSet.group_id)).all()
            return CalSetDetail(
                row=self._row(c, now_mjd), group_id=c.group_id, source_ms_path=c.source_ms_path, refant=c.refant,
                created_at=c.created_at,
                tables=[(t.table_type, t.path, os.path.isdir(t.path))
                        for t in sorted(c.tables, key=lambda t: t.table_type)],
                gates=qa_gates(metrics, th), verdict=verdict(metrics, th), thresholds_note=note,
                used_by=[UsedBy(g, st, g == c.group_id) for g, st in used],
                events=[SetEvent(e.at, e.by, e.action, e.from_status, e.to_status, e.reason, e.job_id)
                        for e in lifecycle.events(s, c.name)],
                overlaps=lifecycle.overlapping_active(s, c, self.settings.calibration) if c.status == "active"
                else [],
                resolve=lifecycle.resolve_plan(s, c),
                not_applicable=lifecycle.missing_tables(c) + ([] if c.qa_passed else ["failed QA"]))

    def solutions(self, set_id: int) -> CalSolutions:
        """Read the set's gain and bandpass tables (one table read at a time in this process)."""
        from engine.calibration.caltable import read_caltable

        with self.db.session() as s:
            c = s.get(m.CalibrationSet, set_id)
            if c is None:
                raise LifecycleError(f"calibration set {set_id} is no longer registered")
            name = c.name
            paths = {t.table_type: t.path for t in c.tables}
        out = CalSolutions(name, [], -1, ["X", "Y"])
        for kind in ("gain", "bandpass"):
            path = paths.get(kind)
            if path is None:
                out.errors.append(f"no {kind} table recorded")
                continue
            try:
                with CASACORE_LOCK:
                    tab = read_caltable(path)
            except Exception as exc:  # noqa: BLE001 - a missing or broken table is shown, not fatal
                out.errors.append(f"{kind} table {path}: {exc}")
                continue
            npol = tab.cparam.shape[-1]
            out.pols = ["X", "Y"][:npol] if npol <= 2 else [f"pol {i}" for i in range(npol)]
            out.antenna_names = out.antenna_names or [str(a) for a in tab.antenna_names]
            out.refant = tab.refant
            with np.errstate(all="ignore"):
                amp = np.abs(tab.cparam).astype(np.float64)
                phase = np.degrees(np.angle(tab.cparam)).astype(np.float64)
            if kind == "gain":
                t0 = float(tab.times[0]) if tab.times.size else 0.0
                out.gain_t0 = mjd_to_datetime(t0 / 86400.0) if tab.times.size else None
                out.gain_minutes = (np.asarray(tab.times, dtype=np.float64) - t0) / 60.0
                out.gain_amp, out.gain_phase_deg = amp[:, :, 0, :], phase[:, :, 0, :]
                out.gain_flags = tab.flags[:, :, 0, :]
            else:
                out.bp_freq_mhz = np.asarray(tab.freqs, dtype=np.float64) / 1e6
                out.bp_amp, out.bp_phase_deg, out.bp_flags = amp[0], phase[0], tab.flags[0]
        return out

    # ---- actions -----------------------------------------------------------------------
    def retire(self, set_id: int, reason: str, by: str) -> str:
        with self.db.session() as s:
            cs = lifecycle.retire(s, set_id, reason, by, self.now())
            return f"{cs.name} retired: the registry no longer chooses it"

    def reinstate(self, set_id: int, reason: str, by: str) -> str:
        with self.db.session() as s:
            cs = lifecycle.reinstate(s, set_id, reason, by, self.now())
            also = lifecycle.overlapping_active(s, cs, self.settings.calibration)
            extra = f" (also active for this transit: {', '.join(also)})" if also else ""
            return f"{cs.name} reinstated: the registry may choose it again{extra}"

    def resolve_plan(self, set_id: int) -> ResolvePlan:
        with self.db.session() as s:
            return lifecycle.resolve_plan(s, lifecycle.get_set(s, set_id))

    def resolve(self, set_id: int, by: str) -> str:
        """Queue the solve stage for the set's calibrator group; returns the job id."""
        from engine.processing.engine import CALIBRATOR_PRIORITY
        from engine.processing.stage_calibrate import SOLVE

        with self.db.session() as s:
            return lifecycle.request_resolve(self.db, s, set_id, by, self.now(), priority=CALIBRATOR_PRIORITY,
                                             max_attempts=SOLVE.max_attempts or self.settings.engine.max_attempts)

    def which_set(self, when: str | float, dec: str | float) -> WhichSet:
        """The registry's decision for a target at ``when`` (MJD or UTC text) and ``dec``, judged at the service clock."""
        mjd = float(when) if isinstance(when, (int, float)) else parse_epoch(when)
        dec_deg = float(dec) if isinstance(dec, (int, float)) else parse_dec(dec)
        with self.db.session() as s:
            d = self.registry.find_best_calibration(s, mjd, dec_deg, now_mjd=to_mjd(self.now()))
        return WhichSet(mjd, mjd_to_datetime(mjd), dec_deg, d.action, d.mode, d.reason, d.warning, d.wait_until,
                        [dict(u.__dict__) for u in d.sets])
