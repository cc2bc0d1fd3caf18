"""Health for the console: alerts (acknowledge, silence), trends over the last hours, status lines.

Acknowledging and silencing go through the same engine functions as REST
(``monitoring.acknowledge_alert``, ``AlertPolicies.silence``), stamped with the
service clock. Trends come from what is recorded, nothing is invented: disk usage
from the runtime's hourly storage samples (``monitoring.record_storage_sample``),
throughput from job finish times, and queue depth reconstructed from job creation
and start times (see :meth:`HealthService.trends`).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select

from engine import monitoring
from engine.alerting import AlertError, AlertPolicies
from engine.db import models as m
from engine.services.area import AreaService
from engine.units import human_bytes

#: Acknowledged alerts stay listed this long after they fired, so the night shift sees what was handled.
ACKED_KEEP = timedelta(hours=24)
#: Silences the console offers are at most this long (a week): longer is a policy change, not a silence.
MAX_SILENCE = timedelta(days=7)
DISK_WARN_PERCENT = 85.0
STALE_CALIBRATION_H = 24.0


@dataclass(frozen=True)
class AlertRow:
    id: int
    alert_type: str
    severity: str
    message: str
    source: str | None
    triggered_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    policy_id: str | None
    policy_name: str | None
    #: End of the policy's silence in force now (None: not silenced), its reason and author.
    silenced_until: datetime | None = None
    silence_reason: str | None = None
    silenced_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def silenceable(self) -> bool:
        """Only alerts raised by a policy can be silenced (silences belong to policies)."""
        return self.policy_id is not None


@dataclass(frozen=True)
class AlertList:
    alerts: list[AlertRow]
    unacknowledged: int
    silenced: int


@dataclass(frozen=True)
class HealthLine:
    key: str
    what: str
    status: str
    detail: str


@dataclass(frozen=True)
class Trends:
    """Hourly buckets ending at ``bucket_ends`` (the last one ends now)."""

    hours: int
    bucket_ends: list[datetime]
    #: Jobs waiting at each bucket end; the last value is the live count.
    queue_depth: list[int]
    #: Jobs that succeeded in each bucket, per job type (only types that finished any).
    finished_by_stage: dict[str, list[int]]
    failed: list[int]
    #: Disk samples in the window: times, percent used (the last is read now).
    disk_times: list[datetime]
    disk_percent: list[float]
    disk_free_bytes: int
    disk_growth_bytes_per_day: float
    disk_days_until_full: float | None

    @property
    def finished(self) -> list[int]:
        return [sum(col) for col in zip(*self.finished_by_stage.values(), strict=True)] if self.finished_by_stage \
            else [0] * len(self.bucket_ends)


class HealthService(AreaService):
    """Health for the console."""

    # ---- alerts ---------------------------------------------------------------------------------
    def alerts(self, limit: int = 200) -> AlertList:
        """Every unacknowledged alert and those acknowledged in the last day; unacknowledged first, newest first."""
        now = self.now()
        with self.db.session() as s:
            q = (select(m.Alert, m.AlertPolicy.name).outerjoin(m.AlertPolicy, m.AlertPolicy.id == m.Alert.policy_id)
                 .where(or_(m.Alert.acknowledged.is_(False), m.Alert.triggered_at >= now - ACKED_KEEP))
                 .order_by(case((m.Alert.acknowledged.is_(False), 0), else_=1), m.Alert.triggered_at.desc(),
                           m.Alert.id.desc())
                 .limit(limit))
            rows = [(a, name) for a, name in s.execute(q)]
            unack = s.scalar(select(func.count()).select_from(m.Alert).where(m.Alert.acknowledged.is_(False))) or 0
            out = [self._row(a, name) for a, name in rows]
        active = self._active_silences(now)
        out = [_with_silence(r, active.get(r.policy_id)) if r.policy_id in active else r for r in out]
        return AlertList(out, int(unack), sum(1 for r in out if r.silenced_until is not None))

    def alert(self, alert_id: int) -> AlertRow | None:
        with self.db.session() as s:
            a = s.get(m.Alert, alert_id)
            if a is None:
                return None
            policy = s.get(m.AlertPolicy, a.policy_id) if a.policy_id else None
            row = self._row(a, policy.name if policy else None)
        silence = self._active_silences(self.now()).get(row.policy_id) if row.policy_id else None
        return _with_silence(row, silence) if silence else row

    def acknowledge(self, alert_id: int, by: str) -> AlertRow:
        """Acknowledge (who, when: the service clock); an alert already acknowledged keeps its first record."""
        if not monitoring.acknowledge_alert(self.db, alert_id, by, at=self.now()):
            raise KeyError(f"no alert {alert_id} (deleted?)")
        row = self.alert(alert_id)
        assert row is not None
        return row

    def silence(self, alert_id: int, duration: timedelta, reason: str, by: str) -> dict[str, Any]:
        """Silence the policy that raised the alert from now for ``duration`` (as REST's silence dialog)."""
        row = self.alert(alert_id)
        if row is None:
            raise KeyError(f"no alert {alert_id} (deleted?)")
        if row.policy_id is None:
            raise AlertError(f"alert {alert_id} was raised by {row.source or row.alert_type}, not by an alert "
                             "policy: there is no policy to silence; acknowledge it instead")
        if not timedelta(0) < duration <= MAX_SILENCE:
            raise AlertError("a silence lasts more than 0 and at most 7 days")
        start = self.now()
        out = AlertPolicies(self.db).silence(row.policy_id, reason.strip() or "Silenced from the console", start,
                                             start + duration, by)
        if out is None:
            raise KeyError(f"alert policy {row.policy_id} no longer exists")
        return {**out, "policy_name": row.policy_name}

    def _active_silences(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Per policy, the silence in force now that ends last."""
        out: dict[str, dict[str, Any]] = {}
        for x in AlertPolicies(self.db).silences():
            if x["starts_at"] <= now < x["ends_at"]:
                best = out.get(x["policy_id"])
                if best is None or x["ends_at"] > best["ends_at"]:
                    out[x["policy_id"]] = x
        return out

    @staticmethod
    def _row(a: m.Alert, policy_name: str | None) -> AlertRow:
        return AlertRow(a.id, a.alert_type, a.severity, a.message, a.source, a.triggered_at, a.acknowledged,
                        a.acknowledged_at, a.acknowledged_by, a.policy_id, policy_name, details=dict(a.details or {}))

    # ---- trends ---------------------------------------------------------------------------------
    def trends(self, hours: int = 24) -> Trends:
        """Disk, queue depth and throughput over the last ``hours``, in hourly buckets.

        Queue depth at a past time is reconstructed from job rows: a job waited from its
        creation until it started (or finished without starting). A retried job only keeps
        its last start, so its earlier attempts count as waiting; purged jobs are gone.
        The last point is the live count of queued jobs.
        """
        now = self.now()
        since = now - timedelta(hours=hours)
        ends = [since + timedelta(hours=i + 1) for i in range(hours)]
        with self.db.session() as s:
            finished = s.execute(select(m.Job.type, m.Job.state, m.Job.finished_at).where(
                m.Job.finished_at > since, m.Job.finished_at <= now,
                m.Job.state.in_(("succeeded", "failed")))).all()
            spans = s.execute(select(m.Job.created_at, m.Job.started_at, m.Job.finished_at).where(
                m.Job.created_at <= now,
                or_(m.Job.started_at.is_(None), m.Job.started_at > since),
                or_(m.Job.finished_at.is_(None), m.Job.finished_at > since))).all()
            queued_now = s.scalar(select(func.count()).select_from(m.Job).where(m.Job.state == "queued")) or 0
        by_stage: dict[str, list[int]] = {}
        failed = [0] * hours
        for jtype, state, at in finished:
            i = min(hours - 1, math.ceil((at - since).total_seconds() / 3600) - 1)  # bucket (end-1h, end]
            if state == "succeeded":
                by_stage.setdefault(jtype, [0] * hours)[i] += 1
            else:
                failed[i] += 1
        depth = []
        for t in ends[:-1]:
            depth.append(sum(1 for created, started, done in spans if created <= t
                             and (started is None or started > t) and (done is None or done > t)))
        depth.append(int(queued_now))
        disk = monitoring.storage_trend(self.db, self.settings, hours / 24, now=now)
        points = disk["data_points"]
        return Trends(hours, ends, depth, dict(sorted(by_stage.items())), failed,
                      [p["timestamp"] for p in points], [float(p["usage_percent"]) for p in points],
                      int(shutil.disk_usage(self.settings.data_dir).free), float(disk["growth_rate_bytes_per_day"]),
                      disk["days_until_full"])

    # ---- status lines ---------------------------------------------------------------------------
    def latest_calibrator_fluxes(self) -> list[tuple[str, float, int]]:
        """(calibrator, latest observed/catalogue ratio, measurements) for each monitored calibrator."""
        with self.db.session() as s:
            latest = select(m.CalibratorFlux.calibrator_name, func.max(m.CalibratorFlux.mjd).label("mjd"),
                            func.count().label("n")).group_by(m.CalibratorFlux.calibrator_name).subquery()
            rows = s.execute(select(latest.c.calibrator_name, m.CalibratorFlux.flux_ratio, latest.c.n).join(
                m.CalibratorFlux, (m.CalibratorFlux.calibrator_name == latest.c.calibrator_name)
                & (m.CalibratorFlux.mjd == latest.c.mjd)).order_by(latest.c.calibrator_name))
            return [(r[0], float(r[1]), int(r[2])) for r in rows]

    def status_lines(self) -> list[HealthLine]:
        """Disk, calibration age, failed jobs, active silences and the calibrator flux monitor, one line each."""
        out: list[HealthLine] = []
        du = shutil.disk_usage(self.settings.data_dir)
        pct = 100 * du.used / du.total
        out.append(HealthLine("disk", "data disk", "warning" if pct >= DISK_WARN_PERCENT else "ok",
                              f"{pct:.1f}% used, {human_bytes(du.free)} free"))
        now = self.now()
        with self.db.session() as s:
            last = s.scalar(select(func.max(m.CalibrationSet.created_at)).where(m.CalibrationSet.status == "active"))
            failed = s.scalar(select(func.count()).select_from(m.Job).where(m.Job.state == "failed")) or 0
            names = dict(s.execute(select(m.AlertPolicy.id, m.AlertPolicy.name)).all())
        if last is None:
            out.append(HealthLine("calibration", "calibration", "none", "no active calibration set"))
        else:
            age_h = max(0.0, (now - last).total_seconds() / 3600)
            out.append(HealthLine("calibration", "calibration", "stale" if age_h > STALE_CALIBRATION_H else "ok",
                                  f"newest active set {age_h:.1f} h old"))
        out.append(HealthLine("failed", "failed jobs", "attention" if failed else "ok",
                              f"{failed} in the dead-letter view"))
        silences = sorted(self._active_silences(now).values(), key=lambda x: x["ends_at"])
        if silences:
            first = silences[0]
            more = f" (+{len(silences) - 1} more)" if len(silences) > 1 else ""
            out.append(HealthLine("silences", "silences", "active",
                                  f"{names.get(first['policy_id'], first['policy_id'])} until "
                                  f"{first['ends_at']:%m-%d %H:%M} UTC{more}"))
        fraction = self.settings.calibration.flux_alert_fraction
        for name, ratio, n in self.latest_calibrator_fluxes():
            out.append(HealthLine(f"flux-{name}", f"flux {name}", "ok" if abs(ratio - 1) <= fraction else "check",
                                  f"observed/catalogue {ratio:.3f} (latest of {n})"))
        return out


def _with_silence(row: AlertRow, silence: dict[str, Any] | None) -> AlertRow:
    if silence is None:
        return row
    return replace(row, silenced_until=silence["ends_at"], silence_reason=silence["reason"],
                   silenced_by=silence["created_by"])


def parse_duration(text: str) -> timedelta:
    """``90m``, ``2h``, ``1d``, ``1h30m`` or a bare number of hours; ValueError says what is accepted."""
    raw = text.strip().lower().replace(" ", "")
    if not raw:
        raise ValueError("a duration is required, e.g. 2h, 90m, 1d")
    try:
        hours = float(raw)
    except ValueError:
        pass
    else:
        return _bounded(timedelta(hours=hours))
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?", raw)
    if not parts or not any(parts.groups()):
        raise ValueError(f"{text.strip()!r} is not a duration: use e.g. 2h, 90m, 1d or 1h30m")
    d, h, mi = (float(x) if x else 0.0 for x in parts.groups())
    return _bounded(timedelta(days=d, hours=h, minutes=mi))


def _bounded(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a silence must last longer than zero")
    if value > MAX_SILENCE:
        raise ValueError("at most 7 days: a longer silence is a change to the policy")
    return value
