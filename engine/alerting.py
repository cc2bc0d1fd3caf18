"""Alert policies: rules over the pipeline's own metrics, silences, and the evaluator that fires them.

A rule is ``metric{labels} OP threshold`` held for ``for_seconds``. Metrics are the
same numbers ``/metrics`` exports, sampled from the database. A firing policy
writes an ``alerts`` row (shown on the health page and counted by Prometheus)
unless silenced, and not again within its repeat interval. Notification channels
are recorded on the policy; delivery (e-mail, Slack, webhook) is not implemented —
this host reaches no outside network — and the alert row says so.
"""

from __future__ import annotations

import operator
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError
from engine.logs import get_logger

log = get_logger("alerting")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}
METRICS = {
    "contimg_queue_depth": "jobs waiting to run",
    "contimg_groups": "observation groups by state (label: state)",
    "contimg_jobs": "jobs by type and state (labels: type, state)",
    "calibration_age_seconds": "seconds since the newest active calibration set (inf if none)",
    "contimg_disk_usage_ratio": "used fraction of the data dir's partition",
    "contimg_alerts_unacknowledged": "unacknowledged alerts",
    "contimg_failed_jobs_1h": "jobs that failed in the last hour (label: type)",
}


class AlertError(ContimgError):
    pass


Sample = tuple[str, dict[str, str], float]


def sample_metrics(db: Database, data_dir: Any) -> list[Sample]:
    now = datetime.now(UTC)
    out: list[Sample] = []
    with db.session() as s:
        for state, n in s.execute(select(m.ObservationGroup.state, func.count()).group_by(m.ObservationGroup.state)):
            out.append(("contimg_groups", {"state": state}, float(n)))
        queued = 0.0
        for jtype, state, n in s.execute(select(m.Job.type, m.Job.state, func.count()).group_by(m.Job.type, m.Job.state)):
            out.append(("contimg_jobs", {"type": jtype, "state": state}, float(n)))
            queued += n if state == "queued" else 0
        for jtype, n in s.execute(select(m.Job.type, func.count()).where(
                m.Job.state == "failed", m.Job.finished_at >= now - timedelta(hours=1)).group_by(m.Job.type)):
            out.append(("contimg_failed_jobs_1h", {"type": jtype}, float(n)))
        last = s.scalar(select(func.max(m.CalibrationSet.created_at)).where(m.CalibrationSet.status == "active"))
        unack = s.scalar(select(func.count()).select_from(m.Alert).where(m.Alert.acknowledged.is_(False))) or 0
    out.append(("contimg_queue_depth", {}, queued))
    out.append(("calibration_age_seconds", {}, (now - last).total_seconds() if last else float("inf")))
    du = shutil.disk_usage(data_dir)
    out.append(("contimg_disk_usage_ratio", {}, du.used / du.total))
    out.append(("contimg_alerts_unacknowledged", {}, float(unack)))
    return out


def validate_rules(rules: list[dict[str, Any]]) -> None:
    if not rules:
        raise AlertError("a policy needs at least one rule")
    for i, r in enumerate(rules, 1):
        if r.get("metric") not in METRICS:
            raise AlertError(f"rule {i}: unknown metric {r.get('metric')!r}; known: {', '.join(METRICS)}")
        if r.get("operator") not in OPS:
            raise AlertError(f"rule {i}: unknown operator {r.get('operator')!r}")


def _matches(rule: dict[str, Any], samples: list[Sample]) -> list[Sample]:
    want = rule.get("labels") or {}
    hits = []
    for name, labels, value in samples:
        if name == rule["metric"] and all(labels.get(k) == v for k, v in want.items()):
            if OPS[rule["operator"]](value, float(rule["threshold"])):
                hits.append((name, labels, value))
    return hits


def evaluate(policy: dict[str, Any], samples: list[Sample]) -> list[dict[str, Any]]:
    """Sample alerts a policy would raise now (``for_seconds`` is not applied in a dry run)."""
    out = []
    for rule in policy["rules"]:
        for name, labels, value in _matches(rule, samples):
            lbl = "".join(f"{k}={v} " for k, v in labels.items()).strip()
            out.append({"message": f"{policy['name']}: {name}{'{' + lbl + '}' if lbl else ''} = {value:g} "
                                   f"{rule['operator']} {rule['threshold']:g}",
                        "severity": policy["severity"], "labels": labels})
    return out


def _out(p: m.AlertPolicy) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "description": p.description, "severity": p.severity,
            "channels": list(p.channels or []), "enabled": p.enabled, "rules": list(p.rules or []),
            "overrides": list(p.overrides or []), "repeat_interval_seconds": p.repeat_seconds,
            "created_at": p.created_at, "updated_at": p.updated_at}


def _silence(x: m.AlertSilence) -> dict[str, Any]:
    return {"id": x.id, "policy_id": x.policy_id, "reason": x.reason or "", "created_by": x.created_by,
            "starts_at": x.starts_at, "ends_at": x.ends_at, "created_at": x.created_at}


class AlertPolicies:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, severity: str | None = None, enabled: bool | None = None,
             search: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(m.AlertPolicy).order_by(m.AlertPolicy.name)
            if severity:
                q = q.where(m.AlertPolicy.severity == severity)
            if enabled is not None:
                q = q.where(m.AlertPolicy.enabled.is_(enabled))
            if search:
                q = q.where(func.lower(m.AlertPolicy.name).contains(search.lower(), autoescape=True))
            return [_out(p) for p in s.scalars(q)]

    def get(self, policy_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            p = s.get(m.AlertPolicy, policy_id)
            return _out(p) if p else None

    def save(self, data: dict[str, Any], user: str, policy_id: str | None = None) -> dict[str, Any] | None:
        validate_rules(data["rules"])
        if data.get("overrides"):
            validate_rules(data["overrides"])
        with self.db.session() as s:
            if policy_id is None:
                recent = s.scalar(select(m.AlertPolicy).where(
                    m.AlertPolicy.name == data["name"], m.AlertPolicy.created_by == user,
                    m.AlertPolicy.created_at >= datetime.now(UTC) - timedelta(seconds=60)))
                p = recent or m.AlertPolicy(created_by=user)
                if recent is None:
                    s.add(p)
            else:
                p = s.get(m.AlertPolicy, policy_id)
                if p is None:
                    return None
            p.name, p.description, p.severity = data["name"], data.get("description"), data["severity"]
            p.channels, p.enabled, p.rules = data["channels"], data["enabled"], data["rules"]
            p.overrides = data.get("overrides") or []
            if data.get("repeat_interval_seconds") is not None:
                p.repeat_seconds = int(data["repeat_interval_seconds"])
            p.for_seconds = max((int(r.get("for_seconds") or 0) for r in data["rules"]), default=0)
            p.updated_at = datetime.now(UTC)
            s.flush()
            return _out(p)

    def delete(self, policy_id: str) -> bool:
        with self.db.session() as s:
            p = s.get(m.AlertPolicy, policy_id)
            if p is None:
                return False
            s.delete(p)
            return True

    def toggle(self, policy_id: str, enabled: bool) -> dict[str, Any] | None:
        with self.db.session() as s:
            p = s.get(m.AlertPolicy, policy_id)
            if p is None:
                return None
            p.enabled = enabled
            return _out(p)

    def silences(self, policy_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(m.AlertSilence).order_by(m.AlertSilence.starts_at.desc())
            if policy_id:
                q = q.where(m.AlertSilence.policy_id == policy_id)
            return [_silence(x) for x in s.scalars(q)]

    def silence(self, policy_id: str, reason: str, starts_at: datetime, ends_at: datetime,
                user: str) -> dict[str, Any] | None:
        if ends_at <= starts_at:
            raise AlertError("a silence must end after it starts")
        with self.db.session() as s:
            if s.get(m.AlertPolicy, policy_id) is None:
                return None
            x = m.AlertSilence(policy_id=policy_id, reason=reason, starts_at=starts_at, ends_at=ends_at,
                               created_by=user)
            s.add(x)
            s.flush()
            return _silence(x)


class Evaluator:
    """Runs every minute from the scheduler; remembers since when each rule holds (``for_seconds``)."""

    def __init__(self, db: Database, data_dir: Any) -> None:
        self.db = db
        self.data_dir = data_dir
        self._since: dict[tuple[str, int], datetime] = {}

    def run(self, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(UTC)
        samples = sample_metrics(self.db, self.data_dir)
        fired = []
        with self.db.session() as s:
            for p in s.scalars(select(m.AlertPolicy).where(m.AlertPolicy.enabled.is_(True))):
                messages = []
                for i, rule in enumerate(p.rules or []):
                    key = (p.id, i)
                    if _matches(rule, samples):
                        since = self._since.setdefault(key, now)
                        if (now - since).total_seconds() >= float(rule.get("for_seconds") or 0):
                            messages += evaluate({"name": p.name, "severity": p.severity, "rules": [rule]}, samples)
                    else:
                        self._since.pop(key, None)
                if not messages:
                    continue
                silenced = s.scalar(select(m.AlertSilence.id).where(
                    m.AlertSilence.policy_id == p.id, m.AlertSilence.starts_at <= now, m.AlertSilence.ends_at > now))
                last = s.scalar(select(func.max(m.Alert.triggered_at)).where(m.Alert.policy_id == p.id))
                if silenced or (last and (now - last).total_seconds() < p.repeat_seconds):
                    continue
                channels = ", ".join(p.channels or []) or "none"
                s.add(m.Alert(alert_type="policy", severity=p.severity, source="alert-policy", policy_id=p.id,
                              message="; ".join(x["message"] for x in messages[:5]),
                              details={"channels": channels, "delivered": False,
                                       "note": "notification delivery is not implemented on this host"}))
                fired.append(p.id)
                log.warning("alert policy %s fired: %s", p.name, messages[0]["message"])
        return fired
