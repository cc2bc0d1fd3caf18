"""Alert policies: rules over the pipeline's own metrics, silences, and the evaluator that fires them.

A rule is ``metric{labels} OP threshold`` held for ``for_seconds``. Metrics are the
same numbers ``/metrics`` exports, sampled from the database. A firing policy
writes an ``alerts`` row (shown on the health page and counted by Prometheus) unless
silenced; the same condition (policy and label set) is not raised again within the
policy's repeat interval (de-duplication). A new alert is delivered on the policy's
channels (``engine.alerts.delivery``: webhook, Slack, e-mail) and every delivery is
recorded. The built-in policies come from ``engine.alerts.catalog``, the same table the
shipped Prometheus rules are generated from.
"""

from __future__ import annotations

import operator
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError
from engine.logs import get_logger

if TYPE_CHECKING:
    from engine.alerts.delivery import Notifier

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
    "contimg_job_failure_ratio_1h": "failed / finished jobs of the last hour (label: type)",
    "contimg_processing_stalled_seconds": "seconds jobs have waited with none finishing (0 if none wait)",
    "contimg_backup_age_seconds": "seconds since the newest completed backup (label: type; inf if none)",
    "contimg_http_p95_seconds": "REST p95 latency over the last minutes (from the REST server)",
}


class AlertError(ContimgError):
    pass


Sample = tuple[str, dict[str, str], float]


def pipeline_health_samples(db: Database, now: datetime | None = None) -> list[Sample]:
    """Failure ratio, stall time and backup age: the numbers both ``/metrics`` and the evaluator use."""
    now = now or datetime.now(UTC)
    out: list[Sample] = []
    hour_ago = now - timedelta(hours=1)
    with db.session() as s:
        finished: dict[str, list[int]] = {}
        for jtype, state, n in s.execute(select(m.Job.type, m.Job.state, func.count()).where(
                m.Job.finished_at >= hour_ago, m.Job.state.in_(("succeeded", "failed"))).group_by(
                m.Job.type, m.Job.state)):
            finished.setdefault(jtype, [0, 0])[state == "failed"] += n
        for jtype, (ok, bad) in sorted(finished.items()):
            out.append(("contimg_job_failure_ratio_1h", {"type": jtype}, bad / (ok + bad)))
        oldest_waiting = s.scalar(select(func.min(m.Job.created_at)).where(
            m.Job.state == "queued", (m.Job.run_after.is_(None)) | (m.Job.run_after <= now)))
        last_finished = s.scalar(select(func.max(m.Job.finished_at)))
        by_kind = {kind: last for kind, last in s.execute(
            select(m.BackupRecord.kind, func.max(m.BackupRecord.completed_at)).where(
                m.BackupRecord.status == "completed", m.BackupRecord.kind.is_not(None)).group_by(m.BackupRecord.kind))}
    stalled = 0.0
    if oldest_waiting is not None:
        since = max(oldest_waiting, last_finished) if last_finished else oldest_waiting
        stalled = max(0.0, (now - since).total_seconds())
    out.append(("contimg_processing_stalled_seconds", {}, stalled))
    for kind in sorted(set(by_kind) | {"database"}):
        last = by_kind.get(kind)
        out.append(("contimg_backup_age_seconds", {"type": kind}, (now - last).total_seconds() if last else float("inf")))
    return out


def sample_metrics(db: Database, data_dir: Any) -> list[Sample]:
    now = datetime.now(UTC)
    out: list[Sample] = pipeline_health_samples(db, now)
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


def ensure_builtin_policies(db: Database) -> list[str]:
    """Add the catalogue's policies that are missing; an operator's edits to existing ones are kept."""
    from engine.alerts.catalog import builtin_policies

    added = []
    with db.session() as s:
        for p in builtin_policies():
            if s.get(m.AlertPolicy, p["id"]) is None:
                rules = p["rules"]
                s.add(m.AlertPolicy(id=p["id"], name=p["name"], description=p["description"], severity=p["severity"],
                                    channels=p["channels"], enabled=True, rules=rules, overrides=[],
                                    for_seconds=max(int(r["for_seconds"]) for r in rules), created_by="builtin"))
                added.append(p["id"])
    return added


def _fingerprint(messages: list[dict[str, Any]]) -> str:
    """What makes two firings the same alert: the label sets that match, not the values they hold."""
    return "|".join(sorted({",".join(f"{k}={v}" for k, v in sorted(x["labels"].items())) for x in messages}))


class Evaluator:
    """Runs every minute from the scheduler; remembers since when each rule holds (``for_seconds``).

    ``extra_samples`` adds numbers only the caller has (the REST server's latency); ``notifier``
    delivers each new alert (none: recorded only, and the alert row says so)."""

    def __init__(self, db: Database, data_dir: Any, notifier: Notifier | None = None,
                 extra_samples: Callable[[], list[Sample]] | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self.notifier = notifier
        self.extra_samples = extra_samples
        self._since: dict[tuple[str, int], datetime] = {}

    def run(self, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(UTC)
        samples = sample_metrics(self.db, self.data_dir)
        if self.extra_samples is not None:
            samples += self.extra_samples()
        fired: list[tuple[int, str, list[str]]] = []
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
                if silenced:
                    continue
                fingerprint = _fingerprint(messages)
                recent = s.scalars(select(m.Alert.details).where(
                    m.Alert.policy_id == p.id,
                    m.Alert.triggered_at > now - timedelta(seconds=p.repeat_seconds))).all()
                if any((d or {}).get("fingerprint", fingerprint) == fingerprint for d in recent):
                    continue  # the same condition was raised within the repeat interval
                channels = list(p.channels or [])
                alert = m.Alert(alert_type="policy", severity=p.severity, source="alert-policy", policy_id=p.id,
                                message="; ".join(x["message"] for x in messages[:5]), triggered_at=now,
                                details={"channels": ", ".join(channels) or "none", "fingerprint": fingerprint,
                                         "labels": [x["labels"] for x in messages[:20]],
                                         "runbook": f"docs/runbook.md#{p.name.lower()}" if p.created_by == "builtin"
                                         else "", "delivered": False})
                s.add(alert)
                s.flush()
                fired.append((alert.id, p.name, channels))
                log.warning("alert policy %s fired: %s", p.name, messages[0]["message"])
        for alert_id, name, channels in fired:  # outside the transaction: delivery may wait on retries
            self._deliver(alert_id, name, channels)
        with self.db.session() as s:
            return [s.get(m.Alert, a).policy_id for a, _, _ in fired]

    def _deliver(self, alert_id: int, name: str, channels: list[str]) -> None:
        with self.db.session() as s:
            alert = s.get(m.Alert, alert_id)
            s.expunge(alert)
        if self.notifier is None or not channels:
            note = "no notifier configured" if self.notifier is None else "the policy names no channel"
            self._mark(alert_id, {"delivered": False, "note": note})
            return
        outcomes = self.notifier.deliver(alert, name, channels)
        self._mark(alert_id, {"delivered": any(o.outcome == "delivered" for o in outcomes),
                              "deliveries": {o.channel: o.outcome for o in outcomes}})

    def _mark(self, alert_id: int, extra: dict[str, Any]) -> None:
        with self.db.session() as s:
            alert = s.get(m.Alert, alert_id)
            alert.details = {**(alert.details or {}), **extra}
