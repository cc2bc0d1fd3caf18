"""Backups & restores (spec §3) and pipeline triggers (§4), plus the roadmap's ``/api/backup`` and
``/api/triggers`` paths and the dashboard's doubled-prefix aliases (§1.2).

Backups and restores return at once and run in a worker thread; the dashboard
polls their records. Creating the same backup or trigger twice in quick
succession (the dashboard retries POSTs) returns the first one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine import backups as bk
from engine import triggers as tg
from engine.auth import Principal
from engine.logs import get_logger

router = Router()
log = get_logger("api.ops")
BackupType = Literal["full", "incremental", "differential"]
Status = Literal["pending", "running", "completed", "failed", "cancelled"]
TriggerEvent = Literal["new_measurement_set", "calibration_complete", "schedule", "manual", "data_quality_alert",
                       "storage_threshold"]


# ---- models ------------------------------------------------------------------------------------------
class Scope(BaseModel):
    measurement_sets: bool = True
    images: bool = True
    catalogs: bool = True
    pipeline_configs: bool = True
    job_history: bool = True
    qa_ratings: bool = True


class PartialScope(BaseModel):
    measurement_sets: bool | None = None
    images: bool | None = None
    catalogs: bool | None = None
    pipeline_configs: bool | None = None
    job_history: bool | None = None
    qa_ratings: bool | None = None


class Backup(BaseModel):
    id: str
    name: str
    type: BackupType
    status: Status
    scope: Scope
    size_bytes: int
    size_formatted: str
    item_count: int
    created_at: datetime
    completed_at: datetime | None = None
    created_by: str
    storage_location: str
    checksum: str | None = None
    parent_backup_id: str | None = None
    notes: str | None = None
    error_message: str | None = None


class BackupList(BaseModel):
    backups: list[Backup]


class BackupQuery(BaseModel):
    type: BackupType | None = None
    status: Status | None = None
    limit: int = Field(20, ge=1, le=1000)


class CreateBackup(BaseModel):
    name: str = Field("", max_length=255)
    type: BackupType = "full"
    scope: Scope = Field(default_factory=Scope)
    notes: str | None = Field(None, max_length=4000)
    parent_backup_id: str | None = None


class Validation(BaseModel):
    backup_id: str
    is_valid: bool
    checksum_verified: bool
    files_verified: int
    files_corrupted: int
    corrupted_files: list[str]
    validation_time_ms: float
    reason: str | None = None


class RestoreRequest(BaseModel):
    backup_id: str | None = None
    scope: PartialScope = Field(default_factory=PartialScope)
    overwrite_existing: bool = False
    dry_run: bool = False
    notes: str | None = Field(None, max_length=4000)


class Conflict(BaseModel):
    path: str
    existing_modified: str
    backup_modified: str


class RestorePreview(BaseModel):
    backup_id: str
    items_to_restore: int
    conflicts: list[Conflict]
    missing_dependencies: list[str]
    estimated_time_seconds: float
    warnings: list[str]
    can_restore: bool


class RestoreJob(BaseModel):
    id: str
    backup_id: str
    backup_name: str
    status: Status
    scope: dict[str, bool]
    items_restored: int
    items_total: int
    errors: list[str]
    started_at: datetime
    completed_at: datetime | None = None
    started_by: str
    notes: str | None = None


class RestoreList(BaseModel):
    restores: list[RestoreJob]


class LimitQuery(BaseModel):
    limit: int = Field(10, ge=1, le=1000)


class BackupStatus(BaseModel):
    running: list[Backup]
    last_completed: Backup | None
    total: int



class TriggerCondition(BaseModel):
    field: str = Field(min_length=1, max_length=128)
    operator: Literal["equals", "not_equals", "contains", "gt", "gte", "lt", "lte", "in", "not_in"]
    value: str | float | list[str]


class Schedule(BaseModel):
    cron: str = Field(max_length=128)
    description: str = ""
    timezone: str = "UTC"
    next_run: datetime | None = None


class Trigger(BaseModel):
    id: str
    name: str
    description: str | None = None
    event: TriggerEvent
    status: Literal["enabled", "disabled", "error"]
    pipeline_id: str
    pipeline_name: str
    conditions: list[TriggerCondition]
    schedule: Schedule | None = None
    parameters: dict[str, Any]
    priority: int
    max_concurrent: int
    retry_count: int
    retry_delay_seconds: int
    cooldown_seconds: int
    total_executions: int
    successful_executions: int
    failed_executions: int
    last_execution: datetime | None = None
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    updated_by: str | None = None


class TriggerList(BaseModel):
    triggers: list[Trigger]


class TriggerQuery(BaseModel):
    event: TriggerEvent | None = None
    status: Literal["enabled", "disabled", "error"] | None = None
    limit: int | None = Field(None, ge=1, le=10000)


class CreateTrigger(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    event: TriggerEvent = "new_measurement_set"
    pipeline_id: str
    conditions: list[TriggerCondition] = Field(default_factory=list)
    schedule: Schedule | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(None, ge=0, le=10000)
    max_concurrent: int | None = Field(None, ge=1, le=100)
    retry_count: int | None = Field(None, ge=0, le=100)
    retry_delay_seconds: int | None = Field(None, ge=0, le=10_000_000)
    cooldown_seconds: int | None = Field(None, ge=0, le=10_000_000)


class UpdateTrigger(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    conditions: list[TriggerCondition] | None = None
    schedule: Schedule | None = None
    parameters: dict[str, Any] | None = None
    priority: int | None = Field(None, ge=0, le=10000)
    max_concurrent: int | None = Field(None, ge=1, le=100)
    retry_count: int | None = Field(None, ge=0, le=100)
    retry_delay_seconds: int | None = Field(None, ge=0, le=10_000_000)
    cooldown_seconds: int | None = Field(None, ge=0, le=10_000_000)
    event: TriggerEvent | None = None
    pipeline_id: str | None = None


class StatusBody(BaseModel):
    status: Literal["enabled", "disabled"]


class ExecuteBody(BaseModel):
    event_data: dict[str, Any] = Field(default_factory=dict)


class TestBody(BaseModel):
    test_data: dict[str, Any]


class TestResult(BaseModel):
    would_trigger: bool
    matched_conditions: list[str]
    failed_conditions: list[str]


class Execution(BaseModel):
    id: str
    trigger_id: str
    trigger_name: str
    pipeline_id: str
    pipeline_name: str
    status: Literal["pending", "running", "success", "failed", "skipped"]
    event_type: str
    event_data: dict[str, Any] | None = None
    job_id: str | None = None
    started_at: datetime
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    error_message: str | None = None
    skip_reason: str | None = None


class ExecutionList(BaseModel):
    executions: list[Execution]


class Pipelines(BaseModel):
    pipelines: list[dict[str, Any]]


# ---- helpers -----------------------------------------------------------------------------------------
def _err(exc: Exception) -> ApiError:
    if isinstance(exc, KeyError):
        return ApiError(404, f"not found: {exc.args[0] if exc.args else exc}", code="NOT_FOUND")
    if isinstance(exc, bk.UnsafeEntryError):
        return ApiError(422, str(exc), code="VALIDATION_FAILED")
    text = str(exc)
    if "does not exist" in text or text.startswith("no trigger") or "not found" in text:
        return ApiError(404, text, code="NOT_FOUND")
    if " is running" in text or "is pending" in text or "only completed" in text or "refus" in text:
        return ApiError(409, text, code="INVALID_STATE")
    return ApiError(422, text, code="VALIDATION_FAILED")


async def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except (bk.BackupError, tg.TriggerError, KeyError) as exc:
        raise _err(exc) from None


def _background(request: web.Request, fn: Any, *args: Any) -> None:
    """Run long work off the loop; the record it updates is what the dashboard polls."""
    async def runner() -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except Exception:  # noqa: BLE001 - the record carries the error
            log.exception("%s failed", getattr(fn, "__name__", fn))

    rt(request).track(asyncio.create_task(runner()))


async def _backup(request: web.Request, backup_id: str) -> Backup:
    row = await asyncio.to_thread(bk.get_backup, rt(request).db, backup_id)
    if row is None:
        raise ApiError(404, f"no backup {backup_id!r}", code="NOT_FOUND")
    return Backup(**row)


# ---- §3 backups -----------------------------------------------------------------------------------------
@router.route("GET", "/api/v1/backups", summary="Backup history", query=BackupQuery, response=BackupList,
              role="viewer", tags=("backups",))
async def list_backups(request: web.Request, query: BackupQuery) -> BackupList:
    rows = await asyncio.to_thread(bk.list_backups, rt(request).db, query.limit, query.type, query.status)
    return BackupList(backups=[Backup(**r) for r in rows])


@router.route("GET", "/api/backup/history", summary="Backup history (roadmap path)", query=BackupQuery,
              response=list[Backup], role="viewer", tags=("backups",))
async def backup_history(request: web.Request, query: BackupQuery) -> list[Backup]:
    return (await list_backups(request, query)).backups


@router.route("GET", "/api/backup/status", summary="Running and last completed backup (roadmap path)",
              response=BackupStatus, role="viewer", tags=("backups",))
async def backup_status(request: web.Request) -> BackupStatus:
    rows = [Backup(**r) for r in await asyncio.to_thread(bk.list_backups, rt(request).db, 1000, None, None)]
    done = [b for b in rows if b.status == "completed"]
    return BackupStatus(running=[b for b in rows if b.status in ("pending", "running")],
                        last_completed=done[0] if done else None, total=len(rows))


@router.route("POST", "/api/v1/backups", summary="Create a backup (runs in the background)", body=CreateBackup,
              response=Backup, role="operator", tags=("backups",), aliases=("/api/backup/create",))
async def create_backup(request: web.Request, body: CreateBackup, principal: Principal) -> Backup:
    runtime = rt(request)
    name = body.name.strip() or f"Backup {datetime.now():%Y-%m-%d}"
    scope = body.scope.model_dump()
    key = bk.derive_request_key(name, body.type, scope, body.parent_backup_id, principal.username)
    backup_id = await _call(bk.create_backup, runtime.settings, runtime.db, name=name, backup_type=body.type,
                            scope=scope, created_by=principal.username, notes=body.notes,
                            parent_backup_id=body.parent_backup_id, request_key=key)
    current = await _backup(request, backup_id)
    if current.status == "pending":
        _background(request, bk.run_backup, runtime.settings, runtime.db, backup_id)
    return current


@router.route("GET", "/api/v1/backups/{id}", summary="One backup", response=Backup, role="viewer",
              tags=("backups",))
async def get_backup(request: web.Request) -> Backup:
    return await _backup(request, request.match_info["id"])


@router.route("DELETE", "/api/v1/backups/{id}", summary="Delete a backup and its files", response=Ok, role="admin",
              tags=("backups",), aliases=("/api/backup/{id}",))
async def delete_backup(request: web.Request) -> Ok:
    runtime = rt(request)
    await _call(bk.delete_backup, runtime.settings, runtime.db, request.match_info["id"])
    return Ok()


@router.route("POST", "/api/v1/backups/{id}/validate", summary="Verify every file of a backup",
              response=Validation, role="operator", tags=("backups",), aliases=("/api/backup/validate/{id}",))
async def validate_backup(request: web.Request) -> Validation:
    runtime = rt(request)
    return Validation(**await _call(bk.validate_backup, runtime.settings, runtime.db, request.match_info["id"]))


def _scope(req: RestoreRequest) -> dict[str, bool]:
    return {k: v for k, v in req.scope.model_dump().items() if v is not None}


@router.route("POST", "/api/v1/backups/{backup_id}/restore/preview", summary="What a restore would do",
              body=RestoreRequest, response=RestorePreview, role="admin", tags=("backups",))
async def restore_preview(request: web.Request, body: RestoreRequest) -> RestorePreview:
    runtime = rt(request)
    data = await _call(bk.restore_preview, runtime.settings, runtime.db, request.match_info["backup_id"],
                       _scope(body), body.overwrite_existing)
    return RestorePreview(**data)


@router.route("POST", "/api/v1/backups/{backup_id}/restore", summary="Restore from a backup (background)",
              body=RestoreRequest, response=RestoreJob, role="admin", tags=("backups",),
              aliases=("/api/backup/restore/{backup_id}",))
async def restore(request: web.Request, body: RestoreRequest, principal: Principal) -> RestoreJob:
    runtime = rt(request)
    backup_id = request.match_info["backup_id"]
    if body.dry_run:
        raise ApiError(422, "dry_run is true: use .../restore/preview for a preview", code="VALIDATION_FAILED")
    restore_id = await _call(bk.start_restore, runtime.settings, runtime.db, backup_id, scope=_scope(body),
                             overwrite_existing=body.overwrite_existing, started_by=principal.username,
                             notes=body.notes)
    _background(request, bk.run_restore, runtime.settings, runtime.db, restore_id)
    return RestoreJob(**await _call(bk.get_restore, runtime.db, restore_id))


@router.route("GET", "/api/v1/restores", summary="Restore history", query=LimitQuery, response=RestoreList,
              role="viewer", tags=("backups",))
async def restores(request: web.Request, query: LimitQuery) -> RestoreList:
    rows = await asyncio.to_thread(bk.list_restores, rt(request).db, query.limit)
    return RestoreList(restores=[RestoreJob(**r) for r in rows])


@router.route("GET", "/api/v1/restores/{id}", summary="One restore job", response=RestoreJob, role="viewer",
              tags=("backups",))
async def get_restore(request: web.Request) -> RestoreJob:
    row = await asyncio.to_thread(bk.get_restore, rt(request).db, request.match_info["id"])
    if row is None:
        raise ApiError(404, f"no restore {request.match_info['id']!r}", code="NOT_FOUND")
    return RestoreJob(**row)


# ---- §4 triggers ------------------------------------------------------------------------------------------------
def _resync(request: web.Request) -> None:
    sched = getattr(rt(request), "triggers", None)
    if sched is not None:
        sched.sync()


@router.route("GET", "/api/v1/triggers/executions/recent", summary="Recent trigger executions", query=LimitQuery,
              response=ExecutionList, role="viewer", tags=("triggers",),
              aliases=("/api/v1/api/v1/triggers/executions/recent",))
async def recent_executions(request: web.Request, query: LimitQuery) -> ExecutionList:
    rows = await asyncio.to_thread(tg.recent_executions, rt(request).db, query.limit)
    return ExecutionList(executions=[Execution(**r) for r in rows])


@router.route("GET", "/api/v1/triggers", summary="Triggers", query=TriggerQuery, response=TriggerList,
              role="viewer", tags=("triggers",), aliases=("/api/v1/api/v1/triggers",))
async def list_triggers(request: web.Request, query: TriggerQuery) -> TriggerList:
    rows = await asyncio.to_thread(tg.list_triggers, rt(request).db, query.event, query.status, query.limit)
    return TriggerList(triggers=[Trigger(**r) for r in rows])


@router.route("GET", "/api/triggers", summary="Triggers (roadmap path)", query=TriggerQuery,
              response=list[Trigger], role="viewer", tags=("triggers",))
async def list_triggers_roadmap(request: web.Request, query: TriggerQuery) -> list[Trigger]:
    return (await list_triggers(request, query)).triggers


@router.route("POST", "/api/v1/triggers", summary="Create a trigger", body=CreateTrigger, response=Trigger,
              role="operator", tags=("triggers",), aliases=("/api/triggers",))
async def create_trigger(request: web.Request, body: CreateTrigger, principal: Principal) -> Trigger:
    data = body.model_dump(exclude_none=True)
    row = await _call(tg.create_trigger, rt(request).db, data, principal.username)
    await asyncio.to_thread(_resync, request)
    return Trigger(**row)


@router.route("GET", "/api/v1/triggers/{id}", summary="One trigger", response=Trigger, role="viewer",
              tags=("triggers",), aliases=("/api/v1/api/v1/triggers/{id}", "/api/triggers/{id}"))
async def get_trigger(request: web.Request) -> Trigger:
    row = await asyncio.to_thread(tg.get_trigger, rt(request).db, request.match_info["id"])
    if row is None:
        raise ApiError(404, f"no trigger {request.match_info['id']!r}", code="NOT_FOUND")
    return Trigger(**row)


async def _update(request: web.Request, body: UpdateTrigger, principal: Principal) -> Trigger:
    data = body.model_dump(exclude_unset=True)
    row = await _call(tg.update_trigger, rt(request).db, request.match_info["id"], data, principal.username)
    await asyncio.to_thread(_resync, request)
    return Trigger(**row)


@router.route("PATCH", "/api/v1/triggers/{id}", summary="Update a trigger", body=UpdateTrigger, response=Trigger,
              role="operator", tags=("triggers",))
async def patch_trigger(request: web.Request, body: UpdateTrigger, principal: Principal) -> Trigger:
    return await _update(request, body, principal)


@router.route("PUT", "/api/triggers/{id}", summary="Update a trigger (roadmap path)", body=UpdateTrigger,
              response=Trigger, role="operator", tags=("triggers",))
async def put_trigger(request: web.Request, body: UpdateTrigger, principal: Principal) -> Trigger:
    return await _update(request, body, principal)


@router.route("DELETE", "/api/v1/triggers/{id}", summary="Delete a trigger", response=Ok, role="operator",
              tags=("triggers",), aliases=("/api/triggers/{id}",))
async def delete_trigger(request: web.Request) -> Ok:
    await _call(tg.delete_trigger, rt(request).db, request.match_info["id"])
    await asyncio.to_thread(_resync, request)
    return Ok()


@router.route("PATCH", "/api/v1/triggers/{id}/status", summary="Enable or disable a trigger", body=StatusBody,
              response=Trigger, role="operator", tags=("triggers",))
async def trigger_status(request: web.Request, body: StatusBody, principal: Principal) -> Trigger:
    row = await _call(tg.set_status, rt(request).db, request.match_info["id"], body.status, principal.username)
    await asyncio.to_thread(_resync, request)
    return Trigger(**row)


@router.route("POST", "/api/v1/triggers/{id}/execute", summary="Run a trigger now", body=ExecuteBody,
              response=Execution, role="operator", tags=("triggers",), aliases=("/api/triggers/{id}/execute",))
async def execute(request: web.Request, body: ExecuteBody) -> Execution:
    runtime = rt(request)
    row = await _call(tg.fire, runtime.settings, runtime.db, request.match_info["id"], "manual", body.event_data,
                      manual=True)
    result = row.get("result") or {}
    backup_id = result.get("backup_id") if isinstance(result, dict) else None
    if backup_id:
        _background(request, bk.run_backup, runtime.settings, runtime.db, backup_id)
    runtime.engine.poke()
    return Execution(**row)


@router.route("POST", "/api/v1/triggers/{id}/test", summary="Evaluate a trigger's conditions", body=TestBody,
              response=TestResult, role="operator", tags=("triggers",))
async def test_trigger(request: web.Request, body: TestBody) -> TestResult:
    return TestResult(**await _call(tg.test_trigger, rt(request).db, request.match_info["id"], body.test_data))


@router.route("GET", "/api/v1/triggers/{id}/executions", summary="Executions of a trigger", query=LimitQuery,
              response=ExecutionList, role="viewer", tags=("triggers",),
              aliases=("/api/v1/api/v1/triggers/{id}/executions",))
async def executions(request: web.Request, query: LimitQuery) -> ExecutionList:
    rows = await _call(tg.list_executions, rt(request).db, request.match_info["id"], query.limit)
    return ExecutionList(executions=[Execution(**r) for r in rows])


@router.route("GET", "/api/triggers/{id}/history", summary="Executions of a trigger (roadmap path)",
              query=LimitQuery, response=list[Execution], role="viewer", tags=("triggers",))
async def history(request: web.Request, query: LimitQuery) -> list[Execution]:
    return (await executions(request, query)).executions


@router.route("GET", "/api/v1/pipelines/available", summary="Pipelines a trigger can run", response=Pipelines,
              role="viewer", tags=("triggers",), aliases=("/api/v1/api/v1/pipelines/available",))
async def pipelines(request: web.Request) -> Pipelines:
    return Pipelines(pipelines=tg.available_pipelines())
