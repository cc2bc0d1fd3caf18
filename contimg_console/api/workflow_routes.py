"""Task-queue workflows, scheduled tasks and pruning (spec §16.2, QU-13 … QU-18, QU-22), by engine.workflows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import rt
from contimg_console.api.errors import ApiError
from contimg_console.api.jobs import (
    CancelBody,
    Purged,
    SpawnTask,
    TaskId,
    TaskList,
    TaskStatus,
    stage_task,
    to_task,
)
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.workflows import WorkflowError, Workflows, prune_jobs, scheduled_jobs

router = Router()
WorkflowStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


class WorkflowTaskIn(BaseModel):
    task_name: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list, max_length=100)


class SpawnWorkflow(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    tasks: list[WorkflowTaskIn] = Field(min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class WorkflowId(BaseModel):
    workflow_id: str


class Workflow(BaseModel):
    workflow_id: str
    name: str
    status: WorkflowStatus
    task_count: int
    completed_tasks: int
    failed_tasks: int
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    metadata: dict[str, Any] = {}


class WorkflowList(BaseModel):
    workflows: list[Workflow]
    total: int


class WorkflowTask(BaseModel):
    task_id: str
    task_name: str
    status: TaskStatus
    depends_on: list[str]
    result: dict[str, Any] | None = None
    error: str | None = None


class WorkflowDetail(Workflow):
    tasks: list[WorkflowTask]
    dag_edges: list[list[str]]


class WorkflowQuery(BaseModel):
    status: WorkflowStatus | None = None
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class ScheduleTask(SpawnTask):
    run_at: datetime | None = None
    cron: str | None = Field(None, max_length=200)


class PruneBody(BaseModel):
    retention_days: float = Field(30, ge=0, le=36500)
    queue_name: str | None = Field(None, max_length=64)
    statuses: list[Literal["completed", "failed", "cancelled"]] = Field(default_factory=lambda: ["completed"])


def _workflows(request: web.Request) -> Workflows:
    return Workflows(rt(request).db)


def _task_status(state: str, attempts: int) -> TaskStatus:
    if state in ("pending", "spawned", "queued"):
        return "retrying" if state == "queued" and attempts > 0 else "pending"
    return {"running": "claimed", "succeeded": "completed", "failed": "failed",  # type: ignore[return-value]
            "cancelled": "cancelled"}[state]


@router.route("POST", "/absurd/workflows", summary="Spawn a workflow (a DAG of stage tasks)", body=SpawnWorkflow,
              response=WorkflowId, role="operator", tags=("queue",))
async def spawn_workflow(request: web.Request, body: SpawnWorkflow, principal: Principal) -> WorkflowId:
    tasks = []
    for i, t in enumerate(body.tasks):
        job_type, _ = stage_task(request, t.task_name, t.params, where=f"tasks[{i}].")
        tasks.append({"task_name": t.task_name, "job_type": job_type, "params": t.params, "depends_on": t.depends_on})
    try:
        wf_id = await asyncio.to_thread(_workflows(request).spawn, body.name, tasks, body.metadata,
                                        principal.username)
    except WorkflowError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    rt(request).engine.poke()
    return WorkflowId(workflow_id=wf_id)


@router.route("GET", "/absurd/workflows", summary="Workflows, newest first", query=WorkflowQuery,
              response=WorkflowList, tags=("queue",))
async def list_workflows(request: web.Request, query: WorkflowQuery) -> WorkflowList:
    rows, total = await asyncio.to_thread(_workflows(request).list, query.status, query.limit, query.offset)
    return WorkflowList(workflows=[Workflow(**r) for r in rows], total=total)


@router.route("GET", "/absurd/workflows/{workflow_id}", summary="One workflow with its tasks and DAG",
              response=WorkflowDetail, tags=("queue",))
async def get_workflow(request: web.Request) -> WorkflowDetail:
    wf_id = request.match_info["workflow_id"]
    wf = await asyncio.to_thread(_workflows(request).get, wf_id)
    if wf is None:
        raise ApiError(404, f"no workflow {wf_id!r}", code="NOT_FOUND")
    tasks = [WorkflowTask(task_id=t["task_id"], task_name=t["task_name"],
                          status=_task_status(t["job_state"], t["attempts"]), depends_on=t["depends_on"],
                          result=t["result"], error=t["error"]) for t in wf.pop("tasks")]
    return WorkflowDetail(**wf, tasks=tasks)


@router.route("DELETE", "/absurd/workflows/{workflow_id}", summary="Cancel a workflow (tasks not yet running)",
              body=CancelBody, response=WorkflowId, role="operator", tags=("queue",))
async def cancel_workflow(request: web.Request, body: CancelBody, principal: Principal) -> WorkflowId:
    wf_id = request.match_info["workflow_id"]
    if not await asyncio.to_thread(_workflows(request).cancel, wf_id, body.reason, principal.username):
        raise ApiError(404, f"no workflow {wf_id!r}", code="NOT_FOUND")
    return WorkflowId(workflow_id=wf_id)


@router.route("GET", "/absurd/scheduled", summary="Tasks waiting for a time in the future", response=TaskList,
              tags=("queue",))
async def list_scheduled(request: web.Request) -> TaskList:
    jobs = await asyncio.to_thread(scheduled_jobs, rt(request).db)
    return TaskList(tasks=[to_task(j) for j in jobs], total=len(jobs))


@router.route("POST", "/absurd/scheduled", summary="Schedule a task for a later time", body=ScheduleTask,
              response=TaskId, role="operator", tags=("queue",))
async def schedule_task(request: web.Request, body: ScheduleTask, principal: Principal) -> TaskId:
    if body.cron:
        raise ApiError(422, "cron: recurring work is a schedule trigger here — create one at /api/v1/triggers "
                            "(event 'schedule') with the pipeline to run", code="VALIDATION_FAILED")
    job_type, group_id = stage_task(request, body.task_name, body.params)
    run_at = body.run_at or datetime.now(UTC)
    if run_at.tzinfo is None:
        raise ApiError(422, "run_at: give a time zone (e.g. 2026-12-01T03:00:00Z)", code="VALIDATION_FAILED")
    runtime = rt(request)

    def enqueue() -> str:
        from engine.db import models as m
        from engine.processing.queue import JobQueue

        with runtime.db.session() as s:
            if s.get(m.ObservationGroup, group_id) is None:
                raise KeyError(group_id)
            return JobQueue(runtime.db).enqueue(job_type, group_id=group_id, priority=body.priority or 100,
                                                run_after=run_at, created_by=principal.username, dedupe=False,
                                                session=s)
    try:
        return TaskId(task_id=await asyncio.to_thread(enqueue))
    except KeyError:
        raise ApiError(404, f"no observation group {group_id!r}", code="NOT_FOUND") from None


@router.route("POST", "/absurd/prune", summary="Delete finished tasks older than retention_days", body=PruneBody,
              response=Purged, role="admin", tags=("queue",))
async def prune(request: web.Request, body: PruneBody) -> Purged:
    states = [{"completed": "succeeded"}.get(x, x) for x in body.statuses]
    try:
        n = await asyncio.to_thread(prune_jobs, rt(request).db, body.retention_days, body.queue_name, states)
    except WorkflowError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    return Purged(purged=n)
