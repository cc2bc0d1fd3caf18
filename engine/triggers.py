"""Pipeline triggers: scheduled (cron) and event-driven runs of small pipeline actions.

A trigger (row in ``pipeline_triggers``) names an event of the dashboard's model
(``new_measurement_set``, ``calibration_complete``, ``schedule``, ``manual``,
``data_quality_alert``, ``storage_threshold``), conditions on the event's data (all
must match) and a pipeline action (``available_pipelines()``). Firing a trigger
records a row in ``trigger_executions`` and performs the action, which only enqueues
or records work (jobs in the queue, a pending backup); the engine does the work.

Scheduling: ``TriggerScheduler`` mirrors enabled schedule triggers into an APScheduler
3 ``AsyncIOScheduler`` given by the caller; the scheduler only fires, our tables keep
the history. Cron expressions are standard 5-field crontab (day of week 0 or 7 =
Sunday, as in crontab; translated for APScheduler 3, whose own numbering starts at
Monday).

Everything but ``TriggerScheduler``'s job function is synchronous; callers run it in
threads. ``on_event`` is meant to be called from a thread too (not inline in the
bus publisher's thread: it writes to the database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import OperationalError

from engine.units import retry_busy
from engine.db import Database, writers_lock
from engine.db import models as m
from engine.errors import ContimgError

log = logging.getLogger(__name__)

EVENTS = ("new_measurement_set", "calibration_complete", "schedule", "manual", "data_quality_alert",
          "storage_threshold")
OPERATORS = ("equals", "not_equals", "contains", "gt", "gte", "lt", "lte", "in", "not_in")
STATUSES = ("enabled", "disabled", "error")
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_APS_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
IDEMPOTENCE_WINDOW = timedelta(seconds=60)
RESYNC_JOB_ID = "contimg-trigger-sync"
DEFAULTS = {"priority": 100, "max_concurrent": 1, "retry_count": 0, "retry_delay_seconds": 60,
            "cooldown_seconds": 0}


class TriggerError(ContimgError):
    """A trigger, its cron expression, conditions or action is invalid; the message names the culprit."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None




# --------------------------------------------------------------------------- cron
def parse_timezone(name: str | None) -> ZoneInfo:
    """An IANA zone; unknown names raise TriggerError naming the zone."""
    name = (name or "UTC").strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a region such as 'America'
        raise TriggerError(f"unknown time zone {name!r} (expected an IANA name such as 'UTC' or "
                           "'America/Los_Angeles')") from None


def _dow_to_aps(value: str) -> str:
    """Crontab day-of-week (0/7 = Sunday) → APScheduler 3 names (whose number 0 is Monday)."""
    out: list[str] = []
    for part in value.split(","):
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ValueError(f"bad step {step_s!r}")
            step = int(step_s)
        if rng == "*" and not step_s:
            return "*"
        if rng == "*":
            lo, hi = 0, 6
        elif re.fullmatch(r"\d+-\d+", rng):
            lo, hi = (int(x) for x in rng.split("-"))
        elif rng.isdigit():
            lo = hi = int(rng)
            if step_s:
                hi = 6
        else:  # names (mon, tue-fri, ...): APScheduler's own syntax, same meaning as crontab
            out.append(part)
            continue
        if not (0 <= lo <= 7 and 0 <= hi <= 7) or lo > hi:
            raise ValueError(f"{rng!r} is not a day of week range within 0-7")
        out.extend(_WEEKDAYS[d % 7] for d in range(lo, hi + 1, step))
    return ",".join(dict.fromkeys(out))


def parse_cron(expr: str, timezone: str | None = "UTC") -> CronTrigger:
    """A CronTrigger from a standard 5-field crontab expression; errors name the field and value."""
    tz = parse_timezone(timezone)
    if not isinstance(expr, str) or not expr.strip():
        raise TriggerError("cron expression is empty (expected 5 fields: minute hour day-of-month month "
                           "day-of-week)")
    values = expr.split()
    if len(values) != 5:
        raise TriggerError(f"cron expression {expr!r} has {len(values)} field(s); expected 5 "
                           "(minute hour day-of-month month day-of-week)")
    kwargs: dict[str, str] = {}
    for label, key, value in zip(CRON_FIELDS, _APS_FIELDS, values, strict=True):
        try:
            aps_value = _dow_to_aps(value) if key == "day_of_week" else value
            CronTrigger(**{key: aps_value}, timezone=tz)
        except ValueError as exc:
            raise TriggerError(f"cron expression {expr!r}: invalid {label} field {value!r}: {exc}") from None
        kwargs[key] = aps_value
    try:
        return CronTrigger(**kwargs, timezone=tz)
    except ValueError as exc:
        raise TriggerError(f"cron expression {expr!r}: {exc}") from None


def next_run(expr: str, tz: str | None = "UTC", after: datetime | None = None) -> datetime | None:
    """The next firing time strictly after ``after`` (default now), as an aware UTC datetime."""
    trigger = parse_cron(expr, tz)
    after = after or _now()
    if after.tzinfo is None:
        raise TriggerError("next_run needs a timezone-aware 'after'")
    nxt = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    return nxt.astimezone(UTC) if nxt else None


def describe_cron(expr: str) -> str:
    """A short human description (the dashboard shows it next to the expression)."""
    f = expr.split()
    if len(f) != 5:
        return expr
    minute, hour, dom, month, dow = f
    if f == ["*"] * 5:
        return "Every minute"
    m_step = re.fullmatch(r"\*/(\d+)", minute)
    if m_step and f[1:] == ["*"] * 4:
        return f"Every {m_step.group(1)} minutes"
    if minute.isdigit() and f[1:] == ["*"] * 4:
        return f"Every hour at minute {int(minute)}"
    if minute.isdigit() and hour.isdigit():
        at = f"{int(hour):02d}:{int(minute):02d}"
        if (dom, month, dow) == ("*", "*", "*"):
            return "Daily at midnight" if at == "00:00" else f"Daily at {at}"
        if dom == "*" and month == "*":
            return f"At {at} on day-of-week {dow}"
        if month == "*" and dow == "*":
            return f"At {at} on day {dom} of the month"
    return f"Cron {expr}"


# --------------------------------------------------------------------------- conditions
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            d = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return _text(a) == _text(b)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set)):
        return list(value)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [value]


_MISSING = object()


def _lookup(data: dict[str, Any], field: str) -> Any:
    """A field of the event data; dotted names reach into nested maps."""
    if field in data:
        return data[field]
    node: Any = data
    for part in field.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _compare(op: str, actual: Any, expected: Any) -> tuple[bool, str | None]:
    """(result, why-not-comparable)."""
    if op == "equals":
        return _equal(actual, expected), None
    if op == "not_equals":
        return not _equal(actual, expected), None
    if op == "contains":
        if isinstance(actual, (list, tuple, set)):
            return any(_equal(a, expected) for a in actual), None
        return _text(expected) in _text(actual), None
    if op in ("in", "not_in"):
        hit = any(_equal(actual, e) for e in _as_list(expected))
        return (hit if op == "in" else not hit), None
    # gt, gte, lt, lte: numbers as numbers, else ISO datetimes; nothing else is ordered.
    a, b = _number(actual), _number(expected)
    if a is None or b is None:
        da, dbt = _datetime(actual), _datetime(expected)
        if da is None or dbt is None:
            return False, f"{actual!r} and {expected!r} are not both numbers (or both dates)"
        a, b = da.timestamp(), dbt.timestamp()
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op], None


def validate_conditions(conditions: Any) -> list[dict[str, Any]]:
    """Check and normalise a TriggerCondition list (rows without a field are refused)."""
    if conditions is None:
        return []
    if not isinstance(conditions, list):
        raise TriggerError("conditions must be a list of {field, operator, value}")
    out = []
    for i, c in enumerate(conditions):
        if not isinstance(c, dict):
            raise TriggerError(f"condition {i + 1}: not an object")
        field = c.get("field")
        if not isinstance(field, str) or not field.strip():
            raise TriggerError(f"condition {i + 1}: 'field' is required")
        op = c.get("operator")
        if op not in OPERATORS:
            raise TriggerError(f"condition {i + 1} ({field}): unknown operator {op!r} "
                               f"(expected one of {', '.join(OPERATORS)})")
        value = c.get("value")
        if not isinstance(value, (str, int, float, list)) or isinstance(value, bool):
            raise TriggerError(f"condition {i + 1} ({field}): value must be a string, number or list")
        if op in ("gt", "gte", "lt", "lte") and _number(value) is None and _datetime(value) is None:
            raise TriggerError(f"condition {i + 1} ({field}): {op} needs a number or a date, got {value!r}")
        out.append({"field": field.strip(), "operator": op, "value": value})
    return out


def evaluate_conditions(conditions: list[dict[str, Any]],
                        data: dict[str, Any] | None) -> tuple[bool, list[str], list[str]]:
    """(would_trigger, matched, failed); every condition must match; a missing field fails with a reason."""
    data = data or {}
    matched: list[str] = []
    failed: list[str] = []
    for c in conditions or []:
        field, op, value = c.get("field"), c.get("operator"), c.get("value")
        label = f"{field} {op} {value!r}"
        if op not in OPERATORS:
            failed.append(f"{label}: unknown operator")
            continue
        actual = _lookup(data, str(field))
        if actual is _MISSING:
            failed.append(f"{label}: field {field!r} is missing from the event data")
            continue
        ok, why = _compare(op, actual, value)
        if why:
            failed.append(f"{label}: {why}")
        elif ok:
            matched.append(f"{label} (got {actual!r})")
        else:
            failed.append(f"{label}: got {actual!r}")
    return not failed, matched, failed


# --------------------------------------------------------------------------- pipelines
def _param(name: str, type_: str, required: bool, description: str, default: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type_, "required": required, "description": description}
    if default is not None:
        out["default"] = default
    return out


_DEFAULT_BACKUP_SCOPE = ["images", "catalogs", "pipeline_configs", "job_history", "qa_ratings"]

PIPELINES: dict[str, dict[str, Any]] = {
    "reprocess-group": {
        "id": "reprocess-group", "name": "Reprocess observation group",
        "description": "Queue conversion of an observation group again (a pending group, or a failed/cancelled "
                       "one that had not yet converted). group_id defaults to the event's group_id.",
        "parameters": [_param("group_id", "string", True, "Observation group id (e.g. 2026-01-01T00:00:00)")],
    },
    "image-group": {
        "id": "image-group", "name": "Image observation group",
        "description": "Queue imaging of a calibrated observation group (or a failed/cancelled one whose last "
                       "completed state was calibrated). group_id defaults to the event's group_id.",
        "parameters": [_param("group_id", "string", True, "Observation group id")],
    },
    "retry-failed": {
        "id": "retry-failed", "name": "Retry failed jobs",
        "description": "Put failed jobs back in the queue with fresh attempts (their groups resume).",
        "parameters": [
            _param("job_type", "string", False, "Only jobs of this type (convert, solve, calibrate, image, "
                                                "measure)"),
            _param("limit", "number", False, "At most this many jobs", 50),
            _param("max_age_hours", "number", False, "Only jobs that failed within this many hours"),
        ],
    },
    "backup": {
        "id": "backup", "name": "Back up pipeline state",
        "description": "Record a backup (database copy always; files by scope); the service runs it.",
        "parameters": [
            _param("backup_type", "string", False, "full, incremental or differential", "full"),
            _param("scope", "array", False, "Scope keys to include: measurement_sets, images, catalogs, "
                                            "pipeline_configs, job_history, qa_ratings", _DEFAULT_BACKUP_SCOPE),
            _param("name", "string", False, "Backup name (default: trigger name and date)"),
            _param("kind", "string", False, "database, caltables, config or full: what retention and the "
                                            "metrics count it as (default: from type and scope)"),
            _param("only_if_changed", "boolean", False, "Only when the config file's content differs from the "
                                                       "last config backup (for kind config)"),
        ],
    },
}


def available_pipelines() -> list[dict[str, Any]]:
    """What a trigger may run (the dashboard's AvailablePipeline list)."""
    return [json.loads(json.dumps(p)) for p in PIPELINES.values()]


def _check_parameters(pipeline_id: str, params: dict[str, Any]) -> None:
    spec = {p["name"]: p for p in PIPELINES[pipeline_id]["parameters"]}
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise TriggerError(f"pipeline {pipeline_id}: unknown parameter(s) {', '.join(unknown)} "
                           f"(expected {', '.join(spec)})")
    kinds = {"string": (str,), "number": (int, float), "boolean": (bool,), "array": (list,)}
    for name, value in params.items():
        want = spec[name]["type"]
        if value is None:
            continue
        if not isinstance(value, kinds[want]) or (want == "number" and isinstance(value, bool)):
            raise TriggerError(f"pipeline {pipeline_id}: parameter {name} must be a {want}, got {value!r}")
    if pipeline_id == "backup":
        from engine.backups import BACKUP_TYPES, SCOPE_KEYS

        if params.get("backup_type") not in (None, *BACKUP_TYPES):
            raise TriggerError(f"pipeline backup: backup_type must be one of {', '.join(BACKUP_TYPES)}")
        bad = sorted(set(params.get("scope") or []) - set(SCOPE_KEYS))
        if bad:
            raise TriggerError(f"pipeline backup: unknown scope key(s) {', '.join(bad)}")
        if params.get("backup_type") == "incremental":
            raise TriggerError("pipeline backup: incremental needs a parent; use full or differential")
        if params.get("kind") not in (None, "database", "caltables", "config", "full", "differential"):
            raise TriggerError("pipeline backup: kind must be one of database, caltables, config, full")


def _resolved_params(pipeline_id: str, params: dict[str, Any], event_data: dict[str, Any]) -> dict[str, Any]:
    """Trigger parameters, defaults, and required ones taken from the event data by name."""
    out = dict(params)
    for p in PIPELINES[pipeline_id]["parameters"]:
        name = p["name"]
        if out.get(name) in (None, ""):
            if name in event_data and event_data[name] not in (None, ""):
                out[name] = event_data[name]
            elif "default" in p:
                out[name] = p["default"]
            elif p["required"]:
                raise TriggerError(f"pipeline {pipeline_id}: parameter {name} is required (set it on the trigger "
                                   "or send it in the event data)")
    return out


def _run_pipeline(settings: Any, db: Database, trig: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Perform a pipeline action (enqueue or record only); returns {"job_id", ...}; raises on failure."""
    from engine.processing.queue import JobQueue

    pid = trig["action"]
    by = f"trigger:{trig['name']}"[:64]
    retry_count = int(trig.get("retry_count") or 0)
    max_attempts = retry_count + 1 if retry_count > 0 else int(settings.engine.max_attempts)
    if pid in ("reprocess-group", "image-group"):
        from engine.processing import states
        from engine.processing.transitions import last_resting, transition

        group_id = str(params["group_id"])
        job_type, start = ("convert", states.PENDING) if pid == "reprocess-group" else ("image", states.CALIBRATED)
        with db.session() as s:
            group = s.get(m.ObservationGroup, group_id)
            if group is None:
                raise TriggerError(f"observation group {group_id} does not exist")
            if group.state in (states.FAILED, states.CANCELLED) and last_resting(s, group_id) == start:
                transition(s, group_id, group.state, start, reason=f"{pid} by {by}")
            elif group.state != start:
                raise TriggerError(f"group {group_id} is {group.state}; {pid} queues {job_type}, which starts "
                                   f"from {start}")
            job_id = JobQueue(db).enqueue(job_type, group_id=group_id, priority=int(trig.get("priority") or 100),
                                          max_attempts=max_attempts, created_by=by, session=s)
        return {"job_id": job_id, "group_id": group_id, "job_type": job_type}
    if pid == "retry-failed":
        from engine.services import PipelineControl

        with db.session() as s:
            q = select(m.Job.id).where(m.Job.state == "failed").order_by(m.Job.finished_at.desc())
            if params.get("job_type"):
                q = q.where(m.Job.type == params["job_type"])
            if params.get("max_age_hours") is not None:
                q = q.where(m.Job.finished_at >= _now() - timedelta(hours=float(params["max_age_hours"])))
            ids = list(s.scalars(q.limit(int(params.get("limit") or 50))))
        control = PipelineControl(db)
        retried, errors = [], []
        for jid in ids:
            try:
                control.retry(jid, by=by)
                retried.append(jid)
            except (ContimgError, KeyError) as exc:
                errors.append(f"{jid}: {exc}")
        if errors and not retried:
            raise TriggerError("no failed job could be retried: " + "; ".join(errors[:5]))
        return {"job_id": retried[0] if retried else None, "retried": retried, "errors": errors}
    if pid == "backup":
        from engine.backups import create_backup

        scope_keys = params.get("scope") or _DEFAULT_BACKUP_SCOPE
        backup_type = params.get("backup_type") or "full"
        if params.get("only_if_changed"):
            from engine.backups.schedule import config_changed

            if not config_changed(settings, db):
                why = ("no config file is in use" if settings.config_file is None
                       else "the config file has not changed since the last config backup")
                return {"job_id": None, "unchanged": why}
        name = params.get("name") or f"{trig['name']} {_now():%Y-%m-%d %H:%M}"
        backup_id = create_backup(settings, db, name=name, backup_type=backup_type,
                                  scope={k: True for k in scope_keys}, created_by=by,
                                  notes=f"created by trigger {trig['id']}", kind=params.get("kind"))
        return {"job_id": backup_id, "backup_id": backup_id}
    raise TriggerError(f"unknown pipeline {pid!r}")


# --------------------------------------------------------------------------- storage
def _trigger_type(event: str) -> str:
    return "schedule" if event == "schedule" else "manual" if event == "manual" else "event"


def _validate_common(data: dict[str, Any], out: dict[str, Any]) -> None:
    for key in DEFAULTS:
        if key in data and data[key] is not None:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or int(v) != v:
                raise TriggerError(f"{key} must be a non-negative integer, got {v!r}")
            if key == "max_concurrent" and v < 1:
                raise TriggerError("max_concurrent must be at least 1")
            out[key] = int(v)


def _schedule_fields(schedule: Any) -> dict[str, Any]:
    if not isinstance(schedule, dict) or not schedule.get("cron"):
        raise TriggerError("a schedule trigger needs schedule.cron (5-field cron expression)")
    cron = str(schedule["cron"]).strip()
    tz = str(schedule.get("timezone") or "UTC").strip()
    parse_cron(cron, tz)
    return {"schedule": " ".join(cron.split()), "timezone": tz,
            "schedule_description": schedule.get("description") or describe_cron(cron)}


def create_trigger(db: Database, data: dict[str, Any], user: str | None) -> dict[str, Any]:
    """Create a trigger from a dashboard body; an identical name+event+pipeline within 60 s is returned."""
    name = str(data.get("name") or "").strip()
    if not name:
        raise TriggerError("name is required")
    event = data.get("event") or "new_measurement_set"
    if event not in EVENTS:
        raise TriggerError(f"unknown event {event!r} (expected one of {', '.join(EVENTS)})")
    pipeline_id = data.get("pipeline_id")
    if pipeline_id not in PIPELINES:
        raise TriggerError(f"unknown pipeline {pipeline_id!r} (available: {', '.join(PIPELINES)})")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise TriggerError("parameters must be a map")
    _check_parameters(pipeline_id, params)
    values: dict[str, Any] = {"name": name, "description": data.get("description"), "event_pattern": event,
                              "trigger_type": _trigger_type(event), "action": pipeline_id,
                              "action_params": json.dumps(params), "conditions": validate_conditions(
                                  data.get("conditions")), **DEFAULTS}
    _validate_common(data, values)
    if event == "schedule":
        values.update(_schedule_fields(data.get("schedule")))
    elif data.get("schedule"):
        raise TriggerError(f"schedule is only for schedule triggers, not {event}")

    def _do() -> str:
        with db.session() as s:
            # Take the write lock first (no-op UPDATE) so concurrent retries of one POST see each other
            # (on PostgreSQL, where that takes no lock, an advisory one).
            if s.get_bind().dialect.name == "postgresql":
                writers_lock(s, "create_trigger")
            s.execute(update(m.PipelineTrigger).where(m.PipelineTrigger.id == "")
                      .values(updated_at=m.PipelineTrigger.updated_at))
            existing = s.scalar(select(m.PipelineTrigger.id).where(
                m.PipelineTrigger.name == name, m.PipelineTrigger.event_pattern == event,
                m.PipelineTrigger.action == pipeline_id,
                m.PipelineTrigger.created_at >= _now() - IDEMPOTENCE_WINDOW).limit(1))
            if existing:
                return existing
            row = m.PipelineTrigger(**values, enabled=True, created_by=user, updated_by=user)
            s.add(row)
            s.flush()
            return row.id
    tid = retry_busy(_do)
    return get_trigger(db, tid)  # type: ignore[return-value]


def update_trigger(db: Database, trigger_id: str, data: dict[str, Any], user: str | None) -> dict[str, Any]:
    """Change any of name, description, conditions, schedule, parameters and the numeric settings."""
    for key in ("event", "pipeline_id"):
        if key in data:
            with db.session() as s:
                row = s.get(m.PipelineTrigger, trigger_id)
                if row is None:
                    raise KeyError(trigger_id)
                current = row.event_pattern if key == "event" else row.action
            if data[key] != current:
                raise TriggerError(f"{key} cannot be changed; create a new trigger instead")
    changes: dict[str, Any] = {}
    if "name" in data:
        name = str(data["name"] or "").strip()
        if not name:
            raise TriggerError("name cannot be empty")
        changes["name"] = name
    if "description" in data:
        changes["description"] = data["description"]
    if "conditions" in data:
        changes["conditions"] = validate_conditions(data["conditions"])
    _validate_common(data, changes)
    with db.session() as s:
        row = s.get(m.PipelineTrigger, trigger_id)
        if row is None:
            raise KeyError(trigger_id)
        if "parameters" in data:
            params = data["parameters"] or {}
            if not isinstance(params, dict):
                raise TriggerError("parameters must be a map")
            _check_parameters(row.action, params)
            changes["action_params"] = json.dumps(params)
        if "schedule" in data and data["schedule"] is not None:
            if row.event_pattern != "schedule":
                raise TriggerError(f"schedule is only for schedule triggers, not {row.event_pattern}")
            changes.update(_schedule_fields(data["schedule"]))
        for key, value in changes.items():
            setattr(row, key, value)
        row.updated_by = user
        row.updated_at = _now()
    return get_trigger(db, trigger_id)  # type: ignore[return-value]


def set_status(db: Database, trigger_id: str, status: str, user: str | None) -> dict[str, Any]:
    """Enable or disable; enabling clears the error state."""
    if status not in ("enabled", "disabled"):
        raise TriggerError(f"status must be enabled or disabled, not {status!r}")
    with db.session() as s:
        row = s.get(m.PipelineTrigger, trigger_id)
        if row is None:
            raise KeyError(trigger_id)
        row.enabled = status == "enabled"
        if row.enabled:
            row.last_error = None
        row.updated_by, row.updated_at = user, _now()
    return get_trigger(db, trigger_id)  # type: ignore[return-value]


def delete_trigger(db: Database, trigger_id: str) -> None:
    """Delete a trigger and its execution history; deleting a missing one is not an error (retries)."""
    with db.session() as s:
        row = s.get(m.PipelineTrigger, trigger_id)
        if row is not None:
            s.query(m.TriggerExecution).filter(m.TriggerExecution.trigger_id == trigger_id).delete()
            s.delete(row)


def _status(row: m.PipelineTrigger) -> str:
    if not row.enabled:
        return "disabled"
    return "error" if row.last_error else "enabled"


def _trigger_dict(row: m.PipelineTrigger, counts: dict[str, int], last: datetime | None) -> dict[str, Any]:
    try:
        params = json.loads(row.action_params) if row.action_params else {}
    except ValueError:
        params = {}
    out: dict[str, Any] = {
        "id": row.id, "name": row.name, "description": row.description, "event": row.event_pattern,
        "status": _status(row), "pipeline_id": row.action,
        "pipeline_name": PIPELINES.get(row.action, {}).get("name", row.action),
        "conditions": list(row.conditions or []), "parameters": params, "priority": row.priority,
        "max_concurrent": row.max_concurrent, "retry_count": row.retry_count,
        "retry_delay_seconds": row.retry_delay_seconds, "cooldown_seconds": row.cooldown_seconds,
        "total_executions": sum(counts.values()), "successful_executions": counts.get("success", 0),
        "failed_executions": counts.get("failed", 0), "last_execution": _iso(last),
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
        "created_by": row.created_by or "", "updated_by": row.updated_by or row.created_by or "",
        "last_error": row.last_error,
    }
    if row.event_pattern == "schedule" and row.schedule:
        try:
            nxt = _iso(next_run(row.schedule, row.timezone)) if row.enabled else None
        except TriggerError:
            nxt = None
        out["schedule"] = {"cron": row.schedule, "description": row.schedule_description or describe_cron(
            row.schedule), "timezone": row.timezone, "next_run": nxt}
    return out


def _stats(s: Any, ids: list[str]) -> tuple[dict[str, dict[str, int]], dict[str, datetime]]:
    counts: dict[str, dict[str, int]] = {}
    last: dict[str, datetime] = {}
    if not ids:
        return counts, last
    for tid, status, n, latest in s.execute(
            select(m.TriggerExecution.trigger_id, m.TriggerExecution.status, func.count(),
                   func.max(m.TriggerExecution.started_at))
            .where(m.TriggerExecution.trigger_id.in_(ids), m.TriggerExecution.status != "skipped")
            .group_by(m.TriggerExecution.trigger_id, m.TriggerExecution.status)):
        counts.setdefault(tid, {})[status] = n
        latest = latest.replace(tzinfo=UTC) if latest and latest.tzinfo is None else latest
        if latest and (tid not in last or latest > last[tid]):
            last[tid] = latest
    return counts, last


def get_trigger(db: Database, trigger_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        row = s.get(m.PipelineTrigger, trigger_id)
        if row is None:
            return None
        counts, last = _stats(s, [row.id])
        return _trigger_dict(row, counts.get(row.id, {}), last.get(row.id) or row.last_triggered_at)


def list_triggers(db: Database, event: str | None = None, status: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(m.PipelineTrigger).order_by(m.PipelineTrigger.priority, m.PipelineTrigger.name)
        if event:
            q = q.where(m.PipelineTrigger.event_pattern == event)
        rows = list(s.scalars(q))
        counts, last = _stats(s, [r.id for r in rows])
        out = [_trigger_dict(r, counts.get(r.id, {}), last.get(r.id) or r.last_triggered_at) for r in rows]
    if status:
        out = [t for t in out if t["status"] == status]
    return out[:limit] if limit else out


def _execution_dict(e: m.TriggerExecution, trig: m.PipelineTrigger | None) -> dict[str, Any]:
    duration = (e.completed_at - e.started_at).total_seconds() if e.completed_at and e.started_at else None
    action = trig.action if trig else ""
    return {"id": e.id, "trigger_id": e.trigger_id, "trigger_name": trig.name if trig else "",
            "pipeline_id": action, "pipeline_name": PIPELINES.get(action, {}).get("name", action),
            "status": e.status, "event_type": e.event_type, "event_data": dict(e.event_data or {}),
            "job_id": e.job_id, "started_at": _iso(e.started_at), "completed_at": _iso(e.completed_at),
            "duration_seconds": duration, "error_message": e.error_message, "skip_reason": e.skip_reason}


def _executions(db: Database, trigger_id: str | None, limit: int) -> list[dict[str, Any]]:
    with db.session() as s:
        q = (select(m.TriggerExecution, m.PipelineTrigger)
             .join(m.PipelineTrigger, m.PipelineTrigger.id == m.TriggerExecution.trigger_id)
             .order_by(m.TriggerExecution.started_at.desc(), m.TriggerExecution.id.desc()).limit(limit))
        if trigger_id is not None:
            q = q.where(m.TriggerExecution.trigger_id == trigger_id)
        return [_execution_dict(e, t) for e, t in s.execute(q)]


def list_executions(db: Database, trigger_id: str, limit: int = 20) -> list[dict[str, Any]]:
    return _executions(db, trigger_id, limit)


def recent_executions(db: Database, limit: int = 10) -> list[dict[str, Any]]:
    return _executions(db, None, limit)


def get_execution(db: Database, execution_id: str) -> dict[str, Any] | None:
    with db.session() as s:
        e = s.get(m.TriggerExecution, execution_id)
        return _execution_dict(e, s.get(m.PipelineTrigger, e.trigger_id)) if e else None


def test_trigger(db: Database, trigger_id: str, test_data: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the trigger's conditions against sample data; records nothing."""
    with db.session() as s:
        row = s.get(m.PipelineTrigger, trigger_id)
        if row is None:
            raise KeyError(trigger_id)
        conditions = list(row.conditions or [])
    ok, matched, failed = evaluate_conditions(conditions, test_data or {})
    return {"would_trigger": ok, "matched_conditions": matched, "failed_conditions": failed}


test_trigger.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


# --------------------------------------------------------------------------- firing
def _set_last_error(s: Any, trigger_id: str, error: str | None) -> None:
    """Record (or clear) a trigger's last error without touching updated_at (not an edit)."""
    s.execute(update(m.PipelineTrigger).where(m.PipelineTrigger.id == trigger_id)
              .values(last_error=error, updated_at=m.PipelineTrigger.updated_at))


def _in_flight(s: Any, trigger_id: str) -> int:
    """Executions of this trigger still at work: pending/running rows, or successful ones whose job
    (queue row) is queued/running or whose backup is pending/running."""
    busy_jobs = select(m.Job.id).where(m.Job.state.in_(("queued", "running")))
    busy_backups = select(m.BackupRecord.id).where(m.BackupRecord.status.in_(("pending", "running")))
    return s.scalar(select(func.count()).select_from(m.TriggerExecution).where(
        m.TriggerExecution.trigger_id == trigger_id,
        or_(m.TriggerExecution.status.in_(("pending", "running")),
            (m.TriggerExecution.status == "success") & (m.TriggerExecution.job_id.in_(busy_jobs)
                                                        | m.TriggerExecution.job_id.in_(busy_backups))))) or 0


def fire(settings: Any, db: Database, trigger_id: str, event_type: str, event_data: dict[str, Any] | None,
         *, manual: bool = False) -> dict[str, Any]:
    """Fire a trigger: record an execution, skip it (with a reason) or run the pipeline action.

    Skipped when disabled (unless ``manual``), when conditions fail (a manual run with no
    event data does not evaluate them), while the cooldown runs, or when ``max_concurrent``
    executions are still at work. The action only enqueues/records: success carries the
    job id (the backup id for ``backup``, the first retried job for ``retry-failed``).
    """
    event_data = dict(event_data or {})
    # JSON-safe event data (datetimes from the bus become ISO strings).
    event_data = json.loads(json.dumps(event_data, default=str))

    def _open() -> tuple[str, dict[str, Any] | None]:
        with db.session() as s:
            # A no-op write first: takes SQLite's write lock so concurrent firings see each other.
            res = s.execute(update(m.PipelineTrigger).where(m.PipelineTrigger.id == trigger_id)
                            .values(updated_at=m.PipelineTrigger.updated_at))
            row = s.get(m.PipelineTrigger, trigger_id)
            if res.rowcount != 1 or row is None:
                raise KeyError(trigger_id)
            t = _now()
            skip: str | None = None
            if not row.enabled and not manual:
                skip = "trigger is disabled"
            if skip is None and row.conditions and not (manual and not event_data):
                ok, _matched, failed = evaluate_conditions(list(row.conditions), event_data)
                if not ok:
                    skip = "conditions not met: " + "; ".join(failed)
            if skip is None and row.cooldown_seconds and row.last_triggered_at is not None:
                left = row.last_triggered_at + timedelta(seconds=row.cooldown_seconds) - t
                if left > timedelta(0):
                    skip = f"cooldown: {left.total_seconds():.0f} s of {row.cooldown_seconds} s left"
            if skip is None:
                busy = _in_flight(s, trigger_id)
                if busy >= max(1, row.max_concurrent):
                    skip = f"max_concurrent reached: {busy} execution(s) of this trigger still at work"
            ex = m.TriggerExecution(trigger_id=trigger_id, event_type=event_type, event_data=event_data,
                                    started_at=t, status="skipped" if skip else "running", skip_reason=skip,
                                    completed_at=t if skip else None)
            s.add(ex)
            if skip is None:  # firing is not an edit: updated_at stays
                s.execute(update(m.PipelineTrigger).where(m.PipelineTrigger.id == trigger_id)
                          .values(last_triggered_at=t, updated_at=m.PipelineTrigger.updated_at))
            s.flush()
            trig = {"id": row.id, "name": row.name, "action": row.action, "priority": row.priority,
                    "retry_count": row.retry_count, "params": json.loads(row.action_params or "{}")}
            return ex.id, (None if skip else trig)

    execution_id, trig = retry_busy(_open)
    if trig is None:
        log.info("trigger %s skipped: %s", trigger_id, get_execution(db, execution_id)["skip_reason"])
        return get_execution(db, execution_id)  # type: ignore[return-value]
    result: dict[str, Any] = {}
    error: str | None = None
    try:
        params = _resolved_params(trig["action"], trig["params"], event_data)
        result = _run_pipeline(settings, db, trig, params)
    except (ContimgError, KeyError, ValueError, OperationalError) as exc:
        error = str(exc) if isinstance(exc, ContimgError) else f"{type(exc).__name__}: {exc}"

    def _close() -> None:
        with db.session() as s:
            ex = s.get_one(m.TriggerExecution, execution_id)
            ex.completed_at = _now()
            if error:
                ex.status, ex.error_message = "failed", error
            else:
                ex.status, ex.job_id = "success", result.get("job_id")
            _set_last_error(s, trigger_id, error)
    retry_busy(_close)
    if error:
        log.warning("trigger %s (%s) failed: %s", trig["name"], trig["action"], error)
    out = get_execution(db, execution_id)
    assert out is not None
    out["result"] = result
    return out


# --------------------------------------------------------------------------- engine events
def map_event(event: dict[str, Any], db: Database | None = None) -> tuple[str, dict[str, Any]] | None:
    """An engine bus event → (trigger event, event data), or None when no trigger listens to it."""
    etype = str(event.get("type") or "")
    data = {k: v for k, v in event.items() if k not in ("type",)}
    if etype in EVENTS:
        return etype, data
    if etype == "job.succeeded":
        if event.get("job_type") != "convert":
            return None
        out: dict[str, Any] = {"group_id": event.get("group_id"), "job_id": event.get("job_id"),
                               "at": event.get("at")}
        if db is not None and event.get("group_id"):
            with db.session() as s:
                ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == event["group_id"]))
                if ms is not None:
                    out.update(ms_path=ms.path, n_antennas=ms.n_antennas, n_channels=ms.n_channels,
                               flagged_fraction=ms.flagged_fraction)
                g = s.get(m.ObservationGroup, event["group_id"])
                if g is not None:
                    out.update(dec_deg=g.dec_deg, is_calibrator=g.is_calibrator, n_subbands=g.n_subbands)
        return "new_measurement_set", {k: v for k, v in out.items() if v is not None}
    if etype == "calibration.registered":
        return "calibration_complete", data
    if etype == "pointing.changed":
        return "data_quality_alert", {"alert_type": "pointing_change", **data}
    if etype.startswith("alert"):
        return "data_quality_alert", data
    if etype.startswith("storage"):
        return "storage_threshold", data
    return None


def on_event(settings: Any, db: Database, event: dict[str, Any]) -> list[dict[str, Any]]:
    """Fire every enabled event trigger listening to what ``event`` maps to; returns the executions."""
    mapped = map_event(event, db)
    if mapped is None:
        return []
    trigger_event, data = mapped
    with db.session() as s:
        ids = list(s.scalars(select(m.PipelineTrigger.id)
                             .where(m.PipelineTrigger.event_pattern == trigger_event,
                                    m.PipelineTrigger.enabled.is_(True))
                             .order_by(m.PipelineTrigger.priority, m.PipelineTrigger.created_at)))
    out = []
    for tid in ids:
        try:
            out.append(fire(settings, db, tid, trigger_event, data))
        except KeyError:  # deleted meanwhile
            continue
    return out


# --------------------------------------------------------------------------- scheduling
class TriggerScheduler:
    """Mirror enabled schedule triggers into an APScheduler 3 ``AsyncIOScheduler``.

    The scheduler only fires: each job runs ``fire(...)`` in a thread, and our tables
    keep the history. Call ``sync()`` at start and after trigger changes (``install()``
    also re-syncs periodically). ``listen(bus)`` is a task that fires event triggers from
    engine bus events. When a ``backup`` action fires through either, the recorded backup
    is run in a thread right after.
    """

    def __init__(self, settings: Any, db: Database, scheduler: Any, *, misfire_grace_time: int = 300,
                 run_backups: bool = True) -> None:
        self.settings = settings
        self.db = db
        self.scheduler = scheduler
        self.misfire_grace_time = misfire_grace_time
        self.run_backups = run_backups
        self._fingerprints: dict[str, tuple[str, str]] = {}

    def sync(self) -> dict[str, list[str]]:
        """Add, update and remove scheduler jobs to match the enabled schedule triggers in the DB."""
        with self.db.session() as s:
            rows = [(r.id, r.name, r.schedule, r.timezone) for r in s.scalars(
                select(m.PipelineTrigger).where(m.PipelineTrigger.event_pattern == "schedule",
                                                m.PipelineTrigger.enabled.is_(True)))]
        report: dict[str, list[str]] = {"added": [], "updated": [], "removed": [], "invalid": []}
        wanted: set[str] = set()
        for tid, name, cron, tz in rows:
            fingerprint = (cron or "", tz or "UTC")
            try:
                cron_trigger = parse_cron(cron or "", tz)
            except TriggerError as exc:
                report["invalid"].append(tid)
                self._set_error(tid, str(exc))
                continue
            wanted.add(tid)
            if self._fingerprints.get(tid) == fingerprint and self.scheduler.get_job(tid) is not None:
                continue
            self.scheduler.add_job(self.run_trigger, cron_trigger, args=[tid], id=tid, name=f"trigger {name}",
                                   replace_existing=True, misfire_grace_time=self.misfire_grace_time,
                                   coalesce=True, max_instances=1)
            report["updated" if tid in self._fingerprints else "added"].append(tid)
            self._fingerprints[tid] = fingerprint
        for tid in list(self._fingerprints):
            if tid not in wanted:
                if self.scheduler.get_job(tid) is not None:
                    self.scheduler.remove_job(tid)
                del self._fingerprints[tid]
                report["removed"].append(tid)
        return report

    def job_ids(self) -> list[str]:
        return sorted(self._fingerprints)

    def install(self, resync_interval_s: float = 60.0) -> None:
        """Also re-sync every ``resync_interval_s`` (picks up triggers changed by other processes)."""
        from apscheduler.triggers.interval import IntervalTrigger

        async def _resync() -> None:
            try:
                await asyncio.to_thread(self.sync)
            except Exception:  # noqa: BLE001
                log.exception("trigger re-sync failed")

        self.scheduler.add_job(_resync, IntervalTrigger(seconds=resync_interval_s), id=RESYNC_JOB_ID,
                               name="sync schedule triggers", replace_existing=True, coalesce=True,
                               max_instances=1, misfire_grace_time=int(resync_interval_s))

    async def listen(self, bus: Any, pattern: str = "*") -> None:
        """Consume engine bus events and fire event triggers (run as a task; cancel it to stop)."""
        sub = bus.subscribe(pattern)
        try:
            while True:
                event = await sub.get()
                if map_event(event) is None:
                    continue
                try:
                    executions = await asyncio.to_thread(on_event, self.settings, self.db, event)
                except Exception:  # noqa: BLE001 - one bad event must not stop the listener
                    log.exception("event triggers for %s failed", event.get("type"))
                    continue
                if self.run_backups:
                    for ex in executions:
                        await self._run_backup_of(ex)
        finally:
            bus.unsubscribe(sub)

    async def _run_backup_of(self, execution: dict[str, Any]) -> None:
        if execution.get("status") == "success" and execution.get("pipeline_id") == "backup" \
                and execution.get("job_id"):
            from engine.backups.schedule import run_scheduled_backup

            try:  # then the off-site copy of a full one and the [backups] retention
                await asyncio.to_thread(run_scheduled_backup, self.settings, self.db, execution["job_id"])
            except Exception:  # noqa: BLE001
                log.exception("backup %s of trigger %s failed", execution["job_id"], execution.get("trigger_id"))

    def _set_error(self, trigger_id: str, message: str) -> None:
        with self.db.session() as s:
            _set_last_error(s, trigger_id, message)

    async def run_trigger(self, trigger_id: str) -> dict[str, Any] | None:
        """The scheduler job: fire in a thread; never raises into the scheduler."""
        try:
            execution = await asyncio.to_thread(fire, self.settings, self.db, trigger_id, "schedule",
                                                {"scheduled_at": _now().isoformat()})
        except KeyError:
            log.warning("scheduled trigger %s no longer exists", trigger_id)
            return None
        except Exception:  # noqa: BLE001 - a scheduler job must not die silently
            log.exception("scheduled trigger %s failed", trigger_id)
            return None
        if self.run_backups:
            await self._run_backup_of(execution)
        return execution
