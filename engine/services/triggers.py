"""Triggers for the console: the engine's trigger functions (the ones REST calls) on one database and clock.

Every write goes through ``engine.triggers`` (create_trigger, update_trigger, set_status,
delete_trigger, fire) exactly as the REST routes call it, then tells the runtime's
scheduler (``services.on_triggers_changed``). Times the console shows ("next run",
the editor's next five runs) come from the service clock, so snapshots are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from engine import triggers as tg
from engine.db import models as m
from engine.services.area import AreaService

#: Who the console's edits are recorded as (created_by / updated_by).
CONSOLE_USER = "console"


@dataclass(frozen=True)
class TriggerListRow:
    """One trigger as the list shows it; ``next_run`` is computed with the service clock."""

    id: str
    name: str
    event: str
    kind: str                  # schedule | event | manual
    status: str                # enabled | disabled | error
    pipeline_id: str
    pipeline_name: str
    parameters: dict[str, Any]
    conditions: list[dict[str, Any]]
    cron: str | None
    timezone: str | None
    cron_description: str | None
    last_run: datetime | None
    next_run: datetime | None
    last_error: str | None
    total_executions: int
    failed_executions: int

    @property
    def enabled(self) -> bool:
        return self.status != "disabled"


@dataclass(frozen=True)
class CronPreview:
    """What the editor shows under a cron expression: the problem, or its meaning and next runs (UTC)."""

    cron: str
    timezone: str
    error: str | None
    description: str
    next_runs: tuple[datetime, ...]


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    d = datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _field_description(expr: str) -> str:
    """A field-by-field reading for expressions ``describe_cron`` has no sentence for."""
    fields = expr.split()
    parts = [f"{label} {value}" for label, value in zip(tg.CRON_FIELDS, fields, strict=True) if value != "*"]
    return "at " + ", ".join(parts) if parts else "every minute"


def _example_event(event: str, group_id: str | None, now: datetime, data_dir: str) -> dict[str, Any]:
    """Event data shaped like what ``engine.triggers.map_event`` produces for ``event``."""
    gid = group_id or now.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")
    at = now.isoformat()
    if event == "new_measurement_set":
        return {"group_id": gid, "ms_path": f"{data_dir}/ms/{gid}.ms", "n_antennas": 96, "n_channels": 768,
                "flagged_fraction": 0.08, "dec_deg": 55.57, "is_calibrator": False, "n_subbands": 16, "at": at}
    if event == "calibration_complete":
        return {"set": f"cal_{gid}", "calibrator": "J0834+5534", "dec_deg": 55.57, "mid_mjd": 61008.5,
                "retired": [], "at": at}
    if event == "data_quality_alert":
        return {"alert_type": "pointing_change", "group_id": gid, "from_dec_deg": 55.57, "to_dec_deg": 71.2,
                "message": f"pointing changed from dec 55.57° to 71.20° at group {gid}", "at": at}
    if event == "storage_threshold":
        return {"path": data_dir, "used_percent": 91.5, "free_bytes": 120_000_000_000, "at": at}
    if event == "schedule":
        return {"scheduled_at": at}
    return {}


class TriggerService(AreaService):
    """List, edit, enable, run, test and delete triggers; the runtime resyncs its scheduler after writes."""

    # ---- what a form offers ---------------------------------------------------------------
    @staticmethod
    def events() -> tuple[str, ...]:
        return tg.EVENTS

    @staticmethod
    def operators() -> tuple[str, ...]:
        return tg.OPERATORS

    @staticmethod
    def pipelines() -> list[dict[str, Any]]:
        """The pipelines a trigger may run, each with its parameter spec (name, type, required, default)."""
        return tg.available_pipelines()

    def event_fields(self, event: str) -> list[str]:
        """The fields the engine's events of this type carry (what conditions can test)."""
        return [k for k in _example_event(event, None, self.now(), "") if k != "at"]

    @staticmethod
    def check_conditions(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The engine's normalised conditions; raises ``TriggerError`` naming the bad row."""
        return tg.validate_conditions(conditions)

    def cron_preview(self, cron: str, timezone: str = "UTC", count: int = 5) -> CronPreview:
        """The engine's verdict on ``cron``: its error, else a description and the next ``count`` runs."""
        tz = (timezone or "UTC").strip() or "UTC"
        try:
            tg.parse_cron(cron, tz)
        except tg.TriggerError as exc:
            return CronPreview(cron, tz, str(exc), "", ())
        expr = " ".join(cron.split())
        described = tg.describe_cron(expr)
        if described == f"Cron {expr}":
            described = _field_description(expr)
        runs: list[datetime] = []
        after = self.now()
        for _ in range(count):
            nxt = tg.next_run(expr, tz, after)
            if nxt is None:
                break
            runs.append(nxt)
            after = nxt
        if tz != "UTC":
            described += f" ({tz})"
        return CronPreview(cron, tz, None, described, tuple(runs))

    # ---- reading ----------------------------------------------------------------------------
    def list_rows(self) -> list[TriggerListRow]:
        now = self.now()
        out = []
        for t in tg.list_triggers(self.db):
            sched = t.get("schedule") or {}
            cron, tz = sched.get("cron"), sched.get("timezone")
            nxt = None
            if cron and t["status"] != "disabled":
                try:
                    nxt = tg.next_run(cron, tz, now)
                except tg.TriggerError:
                    nxt = None
            kind = "schedule" if t["event"] == "schedule" else "manual" if t["event"] == "manual" else "event"
            out.append(TriggerListRow(
                id=t["id"], name=t["name"], event=t["event"], kind=kind, status=t["status"],
                pipeline_id=t["pipeline_id"], pipeline_name=t["pipeline_name"], parameters=t["parameters"],
                conditions=t["conditions"], cron=cron, timezone=tz,
                cron_description=sched.get("description") if cron else None,
                last_run=_parse_iso(t["last_execution"]), next_run=nxt, last_error=t.get("last_error"),
                total_executions=t["total_executions"], failed_executions=t["failed_executions"]))
        return out

    def get(self, trigger_id: str) -> dict[str, Any] | None:
        """The trigger as REST returns it (conditions, parameters, schedule, counts, last error)."""
        return tg.get_trigger(self.db, trigger_id)

    def executions(self, trigger_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, with status, skip reason, error and the job (or backup) each one made."""
        return tg.list_executions(self.db, trigger_id, limit)

    def sample_event_data(self, trigger_id: str) -> dict[str, Any]:
        """Data to test a trigger with: the latest event of its type it saw, else an example of that type."""
        with self.db.session() as s:
            row = s.get(m.PipelineTrigger, trigger_id)
            if row is None:
                raise KeyError(trigger_id)
            event = row.event_pattern or "manual"
            for data in s.scalars(select(m.TriggerExecution.event_data)
                                  .where(m.TriggerExecution.event_type == event)
                                  .order_by(m.TriggerExecution.started_at.desc()).limit(20)):
                if data:
                    return dict(data)
            gid = s.scalar(select(m.ObservationGroup.id).order_by(m.ObservationGroup.group_time.desc()).limit(1))
        return _example_event(event, gid, self.now(), str(self.settings.data_dir))

    # ---- writing (the REST routes' functions; the scheduler hears of each change) ----------------
    def create(self, data: dict[str, Any], user: str = CONSOLE_USER) -> dict[str, Any]:
        row = tg.create_trigger(self.db, data, user)
        self.services.on_triggers_changed()
        return row

    def update(self, trigger_id: str, data: dict[str, Any], user: str = CONSOLE_USER) -> dict[str, Any]:
        row = tg.update_trigger(self.db, trigger_id, data, user)
        self.services.on_triggers_changed()
        return row

    def set_enabled(self, trigger_id: str, enabled: bool, user: str = CONSOLE_USER) -> dict[str, Any]:
        row = tg.set_status(self.db, trigger_id, "enabled" if enabled else "disabled", user)
        self.services.on_triggers_changed()
        return row

    def delete(self, trigger_id: str) -> None:
        tg.delete_trigger(self.db, trigger_id)
        self.services.on_triggers_changed()

    def run_now(self, trigger_id: str, event_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fire as REST's ``execute`` does (manual: runs even when disabled); returns the execution.

        A ``backup`` action only records a pending backup: the caller runs it with
        :meth:`run_backup` (in another worker, so the operator hears of the firing at once).
        """
        return tg.fire(self.settings, self.db, trigger_id, "manual", event_data or {}, manual=True)

    def run_backup(self, backup_id: str) -> dict[str, Any] | None:
        """Do the work of a backup a trigger recorded; returns the backup's record afterwards."""
        from engine import backups as bk

        bk.run_backup(self.settings, self.db, backup_id)
        return bk.get_backup(self.db, backup_id)

    def test(self, trigger_id: str, test_data: dict[str, Any]) -> dict[str, Any]:
        """Would ``test_data`` fire the trigger? matched and failed conditions; records nothing."""
        return tg.test_trigger(self.db, trigger_id, test_data)

