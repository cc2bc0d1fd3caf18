"""Retention policies (spec §10.1, camelCase) and the data-cleanup wizard (§10.2), served by engine.retention."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.retention import RetentionError

router = Router()

DataType = Literal["measurement_set", "calibration", "image", "source_catalog", "job_log", "temporary"]
TriggerType = Literal["age", "size", "count", "manual"]
Action = Literal["delete", "archive", "compress", "notify"]
Priority = Literal["low", "medium", "high", "critical"]
Status = Literal["active", "paused", "disabled", "expired"]
Unit = Literal["days", "hours", "GB", "TB", "count"]
EXECUTE_WAIT_S = 5.0


class RetentionRuleInput(BaseModel):
    name: str = Field("", max_length=255)
    description: str | None = Field(None, max_length=4000)
    triggerType: TriggerType
    action: Action
    threshold: float = Field(0, ge=0)
    thresholdUnit: Unit | None = None
    enabled: bool = True


class RetentionRule(RetentionRuleInput):
    id: str


class RetentionPolicyForm(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    dataType: DataType
    priority: Priority
    status: Status
    rules: list[RetentionRuleInput] = Field(min_length=1, max_length=50)
    filePattern: str | None = Field(None, max_length=1000)
    minFileSize: int | None = Field(None, ge=0)
    maxFileSize: int | None = Field(None, ge=0)
    excludePatterns: list[str] | None = Field(None, max_length=100)
    requireConfirmation: bool
    createBackupBeforeDelete: bool


class RetentionPolicyPatch(BaseModel):
    """RE-03 merges: the editor sends the whole form, the pause toggle only ``status``."""

    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    dataType: DataType | None = None
    priority: Priority | None = None
    status: Status | None = None
    rules: list[RetentionRuleInput] | None = Field(None, min_length=1, max_length=50)
    filePattern: str | None = Field(None, max_length=1000)
    minFileSize: int | None = Field(None, ge=0)
    maxFileSize: int | None = Field(None, ge=0)
    excludePatterns: list[str] | None = Field(None, max_length=100)
    requireConfirmation: bool | None = None
    createBackupBeforeDelete: bool | None = None


class RetentionPolicy(BaseModel):
    id: str
    name: str
    description: str | None = None
    dataType: DataType
    priority: Priority
    status: Status
    rules: list[RetentionRule]
    filePattern: str | None = None
    minFileSize: int | None = None
    maxFileSize: int | None = None
    excludePatterns: list[str] = []
    requireConfirmation: bool
    createBackupBeforeDelete: bool
    createdAt: datetime
    updatedAt: datetime
    createdBy: str | None = None
    lastExecutedAt: datetime | None = None
    nextScheduledAt: datetime | None = None


class RetentionCandidate(BaseModel):
    id: str
    path: str
    name: str
    dataType: str
    sizeBytes: int
    createdAt: datetime
    lastAccessedAt: datetime | None = None
    ageDays: float
    triggeredByRule: str
    action: Action
    isProtected: bool
    protectionReason: str | None = None


class RetentionSimulation(BaseModel):
    policyId: str
    simulatedAt: datetime
    candidates: list[RetentionCandidate]
    totalItems: int
    totalSizeBytes: int
    byAction: dict[str, int]
    byDataType: dict[str, int]
    estimatedDurationSeconds: float
    warnings: list[str]
    success: bool
    errorMessage: str | None = None


class RetentionExecutionError(BaseModel):
    item: str
    error: str


class RetentionExecution(BaseModel):
    id: str
    policyId: str
    startedAt: datetime
    completedAt: datetime | None = None
    status: Literal["running", "completed", "failed", "cancelled"]
    itemsProcessed: int
    itemsAffected: int
    sizeFreedBytes: int
    errorCount: int
    errors: list[RetentionExecutionError] = []
    triggeredBy: Literal["schedule", "manual"]
    triggeredByUser: str | None = None


class RetentionExecutionQuery(BaseModel):
    policy_id: str | None = Field(None, max_length=64)


def _svc(request: web.Request) -> Any:
    return rt(request).retention


def _policy_id(request: web.Request) -> str:
    return unquote(request.match_info["policy_id"])


def _bad(exc: Exception) -> ApiError:
    return ApiError(422, str(exc), code="VALIDATION_FAILED")


@router.route("GET", "/api/v1/retention/policies", summary="Retention policies", response=list[RetentionPolicy],
              tags=("retention",))
async def list_policies(request: web.Request) -> list[RetentionPolicy]:
    return [RetentionPolicy(**p) for p in await asyncio.to_thread(_svc(request).list_policies)]


@router.route("POST", "/api/v1/retention/policies", summary="Create a retention policy", body=RetentionPolicyForm,
              response=RetentionPolicy, role="operator", tags=("retention",))
async def create_policy(request: web.Request, body: RetentionPolicyForm, principal: Principal) -> RetentionPolicy:
    user = require_user(principal, "creating a retention policy")
    try:
        out = await asyncio.to_thread(_svc(request).save_policy, body.model_dump(exclude_none=True), user)
    except RetentionError as exc:
        raise _bad(exc) from None
    return RetentionPolicy(**out)


@router.route("PUT", "/api/v1/retention/policies/{policy_id}", summary="Update (merge) a retention policy",
              body=RetentionPolicyPatch, response=RetentionPolicy, role="operator", tags=("retention",))
async def update_policy(request: web.Request, body: RetentionPolicyPatch) -> RetentionPolicy:
    pid = _policy_id(request)
    try:
        out = await asyncio.to_thread(_svc(request).save_policy, body.model_dump(exclude_unset=True), "", pid)
    except RetentionError as exc:
        raise _bad(exc) from None
    if out is None:
        raise ApiError(404, f"no retention policy {pid!r}", code="NOT_FOUND")
    return RetentionPolicy(**out)


@router.route("DELETE", "/api/v1/retention/policies/{policy_id}", summary="Delete a retention policy",
              response=Ok, role="operator", tags=("retention",))
async def delete_policy(request: web.Request) -> Ok:
    pid = _policy_id(request)
    if not await asyncio.to_thread(_svc(request).delete_policy, pid):
        raise ApiError(404, f"no retention policy {pid!r}", code="NOT_FOUND")
    return Ok()


@router.route("POST", "/api/v1/retention/policies/{policy_id}/simulate",
              summary="What a policy would do now (changes nothing)", response=RetentionSimulation, role="operator",
              tags=("retention",))
async def simulate(request: web.Request) -> RetentionSimulation:
    pid = _policy_id(request)
    try:
        return RetentionSimulation(**await asyncio.to_thread(_svc(request).simulate, pid))
    except KeyError:
        raise ApiError(404, f"no retention policy {pid!r}", code="NOT_FOUND") from None


@router.route("POST", "/api/v1/retention/policies/{policy_id}/execute", summary="Run a policy now",
              response=RetentionExecution, role="operator", tags=("retention",))
async def execute(request: web.Request, principal: Principal) -> RetentionExecution:
    pid = _policy_id(request)
    svc = _svc(request)
    try:
        execution_id = await asyncio.to_thread(svc.start_execution, pid, user=principal.username)
    except KeyError:
        raise ApiError(404, f"no retention policy {pid!r}", code="NOT_FOUND") from None
    task = asyncio.create_task(asyncio.to_thread(svc.execute, pid, execution_id))
    rt(request).track(task)
    try:  # small runs answer with their result; long ones keep going and RE-07 shows them
        return RetentionExecution(**await asyncio.wait_for(asyncio.shield(task), EXECUTE_WAIT_S))
    except TimeoutError:
        rows = await asyncio.to_thread(svc.executions, pid, 20)
        return RetentionExecution(**next(r for r in rows if r["id"] == execution_id))


@router.route("GET", "/api/v1/retention/executions", summary="Retention runs, newest first", query=RetentionExecutionQuery,
              response=list[RetentionExecution], tags=("retention",))
async def executions(request: web.Request, query: RetentionExecutionQuery) -> list[RetentionExecution]:
    return [RetentionExecution(**x) for x in await asyncio.to_thread(_svc(request).executions, query.policy_id)]


# ---- cleanup wizard (§10.2): plain fetches, snake_case --------------------------------------------------------
class CleanupFilters(BaseModel):
    min_age_days: float | None = Field(None, ge=0)
    max_age_days: float | None = Field(None, ge=0)
    min_size_bytes: int | None = Field(None, ge=0)
    max_size_bytes: int | None = Field(None, ge=0)
    tags: list[str] | None = Field(None, max_length=50)
    status: list[Literal["pending", "processed", "archived", "deleted"]] | None = None
    data_type: list[Literal["ms", "image", "log", "temp", "cache"]] | None = None
    include_pattern: str | None = Field(None, max_length=1000)
    exclude_pattern: str | None = Field(None, max_length=1000)


class CleanupCategory(BaseModel):
    count: int
    bytes: int


class CleanupDryRunResult(BaseModel):
    affected_count: int
    bytes_to_free: int
    size_formatted: str
    by_category: dict[str, CleanupCategory]
    sample_paths: list[str]
    warnings: list[str]
    can_execute: bool
    retention_hints: list[str] = []


class CleanupSubmit(BaseModel):
    filters: CleanupFilters
    action: Literal["archive", "delete"]
    audit_note: str = Field(min_length=1, max_length=4000)
    skip_confirmation: bool = False


class CleanupJob(BaseModel):
    id: str
    run_id: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    filters: CleanupFilters
    action: Literal["archive", "delete"]
    submitted_by: str
    submitted_at: datetime
    completed_at: datetime | None = None
    items_processed: int | None = None
    bytes_freed: int | None = None
    error: str | None = None
    audit_note: str


class CleanupHistoryQuery(BaseModel):
    limit: int = Field(20, ge=1, le=500)


def _filters(f: CleanupFilters) -> dict[str, Any]:
    data = f.model_dump(exclude_none=True)
    if f.tags:
        raise ApiError(422, "filters.tags: data products carry no tags here; leave it out",
                       code="VALIDATION_FAILED")
    if f.status and set(f.status) - {"processed"}:
        raise ApiError(422, "filters.status: only 'processed' (data on disk) can be cleaned up",
                       code="VALIDATION_FAILED")
    for lo, hi in (("min_age_days", "max_age_days"), ("min_size_bytes", "max_size_bytes")):
        if data.get(lo) is not None and data.get(hi) is not None and data[lo] > data[hi]:
            raise ApiError(422, f"filters.{lo} is larger than filters.{hi}", code="VALIDATION_FAILED")
    return data


@router.route("POST", "/api/v1/cleanup/dry-run", summary="Cleanup impact estimate (changes nothing)",
              body=CleanupFilters, response=CleanupDryRunResult, tags=("cleanup",), read_only=True)
async def dry_run(request: web.Request, body: CleanupFilters) -> CleanupDryRunResult:
    return CleanupDryRunResult(**await asyncio.to_thread(_svc(request).dry_run, _filters(body)))


@router.route("POST", "/api/v1/cleanup/submit", summary="Submit a cleanup job", body=CleanupSubmit,
              response=CleanupJob, role="operator", tags=("cleanup",))
async def submit(request: web.Request, body: CleanupSubmit, principal: Principal) -> CleanupJob:
    user = require_user(principal, "submitting a cleanup")
    svc = _svc(request)
    job = await asyncio.to_thread(svc.submit_cleanup, _filters(body.filters), body.action, body.audit_note, user)
    if job["status"] == "pending":
        rt(request).track(asyncio.create_task(asyncio.to_thread(svc.run_cleanup, job["id"])))
    return CleanupJob(**job)


@router.route("GET", "/api/v1/cleanup/history", summary="Cleanup jobs, newest first", query=CleanupHistoryQuery,
              response=list[CleanupJob], tags=("cleanup",))
async def history(request: web.Request, query: CleanupHistoryQuery) -> list[CleanupJob]:
    return [CleanupJob(**c) for c in await asyncio.to_thread(_svc(request).cleanup_history, query.limit)]


@router.route("GET", "/api/v1/cleanup/jobs/{job_id}", summary="One cleanup job", response=CleanupJob,
              tags=("cleanup",))
async def cleanup_job(request: web.Request) -> CleanupJob:
    cid = request.match_info["job_id"]
    job = await asyncio.to_thread(_svc(request).get_cleanup, cid)
    if job is None:
        raise ApiError(404, f"no cleanup job {cid!r}", code="NOT_FOUND")
    return CleanupJob(**job)
