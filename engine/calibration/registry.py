"""The calibration registry: which solutions a target may use, and why.

Rules (the old pipeline's weaknesses, answered):

* **Bidirectional validity.** A set is valid ±``validity_h`` (12 h) around its solve
  time, before *and* after. Only sets that passed QA, are ``active`` and were solved
  at the target's declination (within ``dec_tolerance_deg``) are ever used.
* **Nearest, or interpolated.** With valid sets on both sides of the target the
  solutions are interpolated (amplitude linearly, phase unwrapped) between the
  nearest before and after; otherwise the nearest set wins.
* **Preferred, then fallback calibrator.** The preferred calibrator is the
  catalogue's brightest source near the declination; when it has no valid set,
  another calibrator's set is used and recorded as a fallback.
* **48 h with a warning.** With nothing within ±12 h, the nearest set within
  ±``fallback_h`` (48 h) is used and a warning is recorded on the group.
* **Wait rather than race.** While a calibrator group whose window covers the
  target is still being converted or solved — or a calibrator transit at this
  declination is expected within the window — the target waits
  (``waiting_for_calibration``) and resumes when a set registers, failing with a
  clear reason after its deadline.
* **Overlaps.** Two active sets of the same calibrator less than ``validity_h``
  apart describe the same transit: the better QA (higher SNR) wins, ties go to the
  newer, and the loser is retired with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import models as m
from engine.processing import states

MJD_UNIX = 40587.0
SIDEREAL_DAY = 0.99726957  # solar days


def mjd_now() -> float:
    return datetime.now(UTC).timestamp() / 86400.0 + MJD_UNIX


def mjd_to_datetime(mjd: float) -> datetime:
    return datetime.fromtimestamp((mjd - MJD_UNIX) * 86400.0, UTC)


@dataclass
class UsedSet:
    name: str
    calibrator: str
    mid_mjd: float
    bandpass: str
    gain: str
    weight: float


@dataclass
class Decision:
    """The registry's answer for one target; ``action`` is use, wait or fail."""

    action: str  # use | wait | fail
    reason: str
    sets: list[UsedSet] = field(default_factory=list)
    mode: str = ""  # exact | nearest | interpolated | fallback | stale
    warning: str | None = None
    wait_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "mode": self.mode, "warning": self.warning,
                "wait_until": self.wait_until.isoformat() if self.wait_until else None,
                "sets": [s.__dict__ for s in self.sets]}


def _tables(cs: m.CalibrationSet) -> tuple[str, str] | None:
    paths = {t.table_type: t.path for t in cs.tables}
    if "bandpass" in paths and "gain" in paths:
        return paths["bandpass"], paths["gain"]
    return None


def _used(cs: m.CalibrationSet, weight: float) -> UsedSet:
    b, g = _tables(cs) or ("", "")
    return UsedSet(cs.name, cs.calibrator_name, cs.mid_mjd, b, g, weight)


class Registry:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg  # CalibrationSettings

    # ---- lookup ---------------------------------------------------------------
    def usable(self, s: Session, dec_deg: float, lo: float, hi: float) -> list[m.CalibrationSet]:
        tol = self.cfg.dec_tolerance_deg
        rows = s.scalars(select(m.CalibrationSet).where(
            m.CalibrationSet.status == "active", m.CalibrationSet.qa_passed.is_(True),
            m.CalibrationSet.dec_deg >= dec_deg - tol, m.CalibrationSet.dec_deg <= dec_deg + tol,
            m.CalibrationSet.mid_mjd >= lo, m.CalibrationSet.mid_mjd <= hi))
        return [c for c in rows if _tables(c) is not None]

    def preferred_calibrator(self, dec_deg: float) -> str | None:
        from engine.calibration.catalogue import candidates_near_dec

        cands = candidates_near_dec(dec_deg, self.cfg.dec_window_deg, self._catalogue())
        return cands[0].name if cands else None

    def _catalogue(self) -> Any:
        from engine.calibration.catalogue import merged_catalogue

        return merged_catalogue(self.cfg.catalogue_files or None)

    def find_best_calibration(self, s: Session, target_mjd: float, dec_deg: float, *,
                              group_id: str | None = None, now_mjd: float | None = None) -> Decision:
        v = self.cfg.validity_h / 24.0
        near = self.usable(s, dec_deg, target_mjd - v, target_mjd + v)
        preferred = self.preferred_calibrator(dec_deg)
        if near:
            mine = [c for c in near if c.calibrator_name == preferred] if preferred else near
            fallback = not mine
            pool = mine or near
            before = max((c for c in pool if c.mid_mjd <= target_mjd), key=lambda c: c.mid_mjd, default=None)
            after = min((c for c in pool if c.mid_mjd >= target_mjd), key=lambda c: c.mid_mjd, default=None)
            if before is not None and after is not None and before.id != after.id:
                span = after.mid_mjd - before.mid_mjd
                w = (target_mjd - before.mid_mjd) / span
                mode = "fallback" if fallback else "interpolated"
                reason = (f"interpolated between {before.name} and {after.name} "
                          f"(weights {1 - w:.2f}/{w:.2f})" + (f"; {preferred} has no valid set" if fallback else ""))
                return Decision("use", reason, [_used(before, 1 - w), _used(after, w)], mode)
            best = before or after
            assert best is not None
            dt_h = abs(best.mid_mjd - target_mjd) * 24
            mode = "fallback" if fallback else ("exact" if dt_h < 0.1 else "nearest")
            reason = f"{best.name} ({best.calibrator_name}) solved {dt_h:.1f} h from the target"
            if fallback:
                reason += f"; fallback because {preferred} has no valid set within ±{self.cfg.validity_h:g} h"
            return Decision("use", reason, [_used(best, 1.0)], mode)

        # Nothing valid yet: is something on its way?
        pending = self._calibrator_in_flight(s, target_mjd, dec_deg, exclude=group_id)
        if pending is not None:
            return Decision("wait", f"calibrator group {pending.id} ({pending.calibrator_name or 'calibrator'}) "
                                    f"covering this time is {pending.state}; waiting for its solutions",
                            wait_until=self._deadline(pending.group_time))
        now_mjd = mjd_now() if now_mjd is None else now_mjd
        transit = self.next_transit(target_mjd, dec_deg)
        if transit is not None and transit[1] > now_mjd - 1 / 24 and abs(transit[1] - target_mjd) <= v:
            when = mjd_to_datetime(transit[1])
            return Decision("wait", f"{transit[0]} transits at {when:%Y-%m-%d %H:%M} UTC, within "
                                    f"±{self.cfg.validity_h:g} h; waiting for its solutions",
                            wait_until=self._deadline(when))

        f = self.cfg.fallback_h / 24.0
        stale = self.usable(s, dec_deg, target_mjd - f, target_mjd + f)
        if stale:
            best = min(stale, key=lambda c: abs(c.mid_mjd - target_mjd))
            dt_h = abs(best.mid_mjd - target_mjd) * 24
            warning = (f"no calibration within ±{self.cfg.validity_h:g} h; using {best.name} solved "
                       f"{dt_h:.1f} h away")
            return Decision("use", warning, [_used(best, 1.0)], "stale", warning=warning)
        return Decision("fail", f"no calibration set at dec {dec_deg:.2f}° within ±{self.cfg.fallback_h:g} h "
                                f"of MJD {target_mjd:.4f} and no calibrator transit expected")

    def _deadline(self, when: datetime) -> datetime:
        return when + timedelta(hours=self.cfg.wait_deadline_h)

    def _calibrator_in_flight(self, s: Session, target_mjd: float, dec_deg: float,
                              exclude: str | None) -> m.ObservationGroup | None:
        v = timedelta(hours=self.cfg.validity_h)
        t = mjd_to_datetime(target_mjd)
        tol = self.cfg.dec_tolerance_deg
        q = select(m.ObservationGroup).where(
            m.ObservationGroup.is_calibrator.is_(True),
            m.ObservationGroup.state.in_((states.PENDING, states.CONVERTING, states.CONVERTED, states.SOLVING)),
            m.ObservationGroup.group_time >= t - v, m.ObservationGroup.group_time <= t + v,
            m.ObservationGroup.dec_deg >= dec_deg - tol, m.ObservationGroup.dec_deg <= dec_deg + tol)
        if exclude:
            q = q.where(m.ObservationGroup.id != exclude)
        return s.scalars(q.order_by(m.ObservationGroup.group_time)).first()

    def next_transit(self, target_mjd: float, dec_deg: float) -> tuple[str, float] | None:
        """The calibrator transit (name, MJD) at this declination nearest the target."""
        from engine.calibration.catalogue import candidates_near_dec
        from engine.calibration.transit import meridian_ra_deg

        cands = candidates_near_dec(dec_deg, self.cfg.dec_window_deg, self._catalogue())
        if not cands:
            return None
        lst = float(np.ravel(meridian_ra_deg(target_mjd))[0])
        best: tuple[str, float] | None = None
        for cal in cands:
            dra = ((cal.ra_deg - lst + 180.0) % 360.0) - 180.0  # nearest transit, before or after
            t = target_mjd + dra / 360.0 * SIDEREAL_DAY
            if best is None or abs(t - target_mjd) < abs(best[1] - target_mjd):
                best = (cal.name, t)
        return best

    # ---- registration -----------------------------------------------------------
    def register(self, s: Session, *, name: str, calibrator: str, group_id: str | None, ms_path: str,
                 refant: str | None, solver_params: dict[str, Any], dec_deg: float, mid_mjd: float,
                 qa_metrics: dict[str, Any], qa_passed: bool, qa_reasons: list[str], bandpass: str,
                 gain: str) -> tuple[m.CalibrationSet, list[str]]:
        """Store a solve (QA metrics always); resolve overlaps; returns the set and the names retired."""
        v = self.cfg.validity_h / 24.0
        cs = m.CalibrationSet(name=name, calibrator_name=calibrator, group_id=group_id, source_ms_path=ms_path,
                              refant=refant, solver_params=solver_params, dec_deg=dec_deg, mid_mjd=mid_mjd,
                              valid_start_mjd=mid_mjd - v, valid_end_mjd=mid_mjd + v, qa_metrics=qa_metrics,
                              qa_passed=qa_passed, status="active" if qa_passed else "rejected",
                              status_reason=None if qa_passed else "QA failed: " + "; ".join(qa_reasons))
        cs.tables = [m.CalibrationTable(table_type="bandpass", path=bandpass),
                     m.CalibrationTable(table_type="gain", path=gain)]
        s.add(cs)
        s.flush()
        retired: list[str] = []
        if not qa_passed:
            return cs, retired
        tol = self.cfg.dec_tolerance_deg
        rivals = s.scalars(select(m.CalibrationSet).where(
            m.CalibrationSet.id != cs.id, m.CalibrationSet.status == "active",
            m.CalibrationSet.calibrator_name == calibrator,
            m.CalibrationSet.mid_mjd > mid_mjd - v, m.CalibrationSet.mid_mjd < mid_mjd + v,
            m.CalibrationSet.dec_deg >= dec_deg - tol, m.CalibrationSet.dec_deg <= dec_deg + tol))
        for rival in rivals:
            mine, theirs = _snr(cs), _snr(rival)
            if theirs > mine:  # better QA wins
                loser, winner = cs, rival
            else:  # better or tied: the newer (this one) wins
                loser, winner = rival, cs
            loser.status = "retired"
            loser.status_reason = (f"overlaps {winner.name} from the same calibrator; "
                                   f"{'better QA' if _snr(winner) != _snr(loser) else 'newer'} wins "
                                   f"(SNR {_snr(winner):.1f} vs {_snr(loser):.1f})")
            retired.append(loser.name)
            if loser is cs:
                break
        return cs, retired


def _snr(cs: m.CalibrationSet) -> float:
    value = (cs.qa_metrics or {}).get("snr_median")
    if value is None:
        value = (cs.qa_metrics or {}).get("snr", 0.0)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
