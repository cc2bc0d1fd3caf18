"""Jobs (spec §16.1) and the task queue under ``/absurd`` (§16.2), served by our own engine queue.

Our job states map onto the dashboard's enumerations: queued → pending (or
``retrying`` once an attempt failed), running → claimed/running, succeeded →
completed, failed → failed, cancelled → cancelled (JobStatus has no cancelled: it
is shown as failed there; see docs/api.md).
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import ms_route, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.listing import NOT_MODIFIED
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.errors import StateError
from engine.processing import stats
from engine.processing.queue import JobView
from engine.services import PipelineControl

router = Router()
QUEUE = "dsa110-pipeline"

JobStatus = Literal["pending", "running", "completed", "failed"]
TaskStatus = Literal["pending", "claimed", "completed", "failed", "cancelled", "retrying"]


def job_status(j: JobView) -> JobStatus:
    from contimg_console.api.listing_rows import JOB_STATUS

    return JOB_STATUS.get(j.state, "failed")  # type: ignore[return-value]


def task_status(j: JobView) -> TaskStatus:
    if j.state == "queued":
        return "retrying" if j.attempts > 0 else "pending"
    return {"running": "claimed", "succeeded": "completed", "failed": "failed",  # type: ignore[return-value]
            "cancelled": "cancelled"}[j.state]


# ---- models --------------------------------------------------------------------
class JobSummary(BaseModel):
    run_id: str
    status: JobStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Provenance(BaseModel):
    runId: str | None = None
    msPath: str | None = None
    calTable: str | None = None
    calUrl: str | None = None
    pointingRaDeg: float | None = None
    pointingDecDeg: float | None = None
    qaGrade: Literal["good", "warn", "fail"] | None = None
    qaSummary: str | None = None
    logsUrl: str | None = None
    qaUrl: str | None = None
    msUrl: str | None = None
    imageUrl: str | None = None
    createdAt: datetime | None = None


class JobDetail(JobSummary):
    logs_url: str | None = None
    config: dict[str, Any] | None = None
    provenance: Provenance | None = None


class RunIds(BaseModel):
    runIds: list[str] = Field(max_length=1000)


class BulkResult(BaseModel):
    succeeded: list[str]
    failed: dict[str, str]


class IdsQuery(BaseModel):
    ids: str = Field(min_length=1, max_length=100_000)


class Task(BaseModel):
    task_id: str
    queue_name: str
    task_name: str
    params: dict[str, Any]
    priority: int
    status: TaskStatus
    created_at: datetime | None
    claimed_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    retry_count: int


class TaskList(BaseModel):
    tasks: list[Task]
    total: int


class TasksQuery(BaseModel):
    queue_name: str | None = None
    status: TaskStatus | None = None
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class PageQuery(BaseModel):
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class TaskId(BaseModel):
    task_id: str


class CancelBody(BaseModel):
    reason: str | None = Field(None, max_length=1000)


class SpawnTask(BaseModel):
    queue_name: str = Field(min_length=1, max_length=64)
    task_name: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(None, ge=0, le=1000)
    timeout_sec: float | None = Field(None, gt=0)


class QueueStats(BaseModel):
    queue_name: str
    pending: int
    claimed: int
    completed: int
    failed: int
    cancelled: int
    total: int


class Queues(BaseModel):
    queues: list[str]


class Worker(BaseModel):
    worker_id: str
    state: Literal["active", "idle", "stale", "crashed"]
    task_count: int
    current_task_id: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    uptime_seconds: float


class WorkerList(BaseModel):
    workers: list[Worker]
    total: int
    active: int
    idle: int
    stale: int
    crashed: int


class WorkerMetrics(BaseModel):
    total_workers: int
    active_workers: int
    idle_workers: int
    crashed_workers: int
    timed_out_workers: int
    avg_tasks_per_worker: float
    avg_worker_uptime_sec: float


class HealthMessage(BaseModel):
    level: Literal["alert", "warning"]
    message: str
    timestamp: datetime | None = None


class AbsurdHealth(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    message: str
    queue_depth: int
    database_available: bool
    worker_pool_healthy: bool
    alerts: list[HealthMessage]
    warnings: list[HealthMessage]


class StageCounts(BaseModel):
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0


class PipelineStatus(BaseModel):
    stages: dict[str, StageCounts]
    total: StageCounts
    worker_count: int
    last_updated: datetime
    is_healthy: bool


class QueueDepth(BaseModel):
    queue_depth: int
    pending: int
    running: int


class AbsurdMetrics(BaseModel):
    total_spawned: int
    total_claimed: int
    total_completed: int
    total_failed: int
    total_cancelled: int
    total_timed_out: int
    current_pending: int
    current_claimed: int
    avg_wait_time_sec: float
    avg_execution_time_sec: float
    p50_wait_time_sec: float
    p95_wait_time_sec: float
    p99_wait_time_sec: float
    p50_execution_time_sec: float
    p95_execution_time_sec: float
    p99_execution_time_sec: float
    throughput_1min: float
    throughput_5min: float
    throughput_15min: float
    success_rate_1min: float
    success_rate_5min: float
    success_rate_15min: float
    error_rate_1min: float
    error_rate_5min: float
    error_rate_15min: float


class Purged(BaseModel):
    purged: int


class DlqQuery(BaseModel):
    before: datetime | None = None


class LogLine(BaseModel):
    id: int
    at: datetime
    level: str
    message: str


class JobLogs(BaseModel):
    run_id: str
    lines: list[LogLine]
    next_after: int


class LogsQuery(BaseModel):
    after: int = Field(0, ge=0, le=2**62)
    limit: int = Field(500, ge=1, le=5000)


# ---- helpers --------------------------------------------------------------------
def control(request: web.Request) -> PipelineControl:
    return PipelineControl(rt(request).db)


def to_task(j: JobView) -> Task:
    return Task(task_id=j.id, queue_name=j.queue, task_name=stats.task_name(j.type), params=j.params,
                priority=j.priority, status=task_status(j), created_at=j.created_at, claimed_at=j.started_at,
                completed_at=j.finished_at, result=j.outcome, error=j.error, retry_count=max(0, j.attempts - 1))


def summary(j: JobView) -> JobSummary:
    return JobSummary(run_id=j.id, status=job_status(j), started_at=j.started_at, finished_at=j.finished_at)


async def _job(request: web.Request, job_id: str) -> JobView:
    job = await asyncio.to_thread(control(request).get_job, job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r}", code="NOT_FOUND", ref_id=job_id)
    return job


def provenance_of(request: web.Request, j: JobView) -> Provenance:
    info = rt(request).services.group_provenance(j.group_id) if j.group_id else {}
    ms_path = info.get("ms_path")
    return Provenance(runId=j.id, msPath=ms_path, calTable=info.get("cal_table"),
                      calUrl=f"/cal/{info['cal_table']}" if info.get("cal_table") else None,
                      pointingRaDeg=info.get("ra_deg"), pointingDecDeg=info.get("dec_deg"),
                      qaGrade=info.get("qa_grade"), qaSummary=info.get("qa_summary"), logsUrl=f"/logs/{j.id}",
                      qaUrl=f"/qa/job/{j.id}", msUrl=ms_route(ms_path) if ms_path else None,
                      imageUrl=f"/images/{info['image_id']}" if info.get("image_id") else None,
                      createdAt=j.created_at)


# ---- §16.1 jobs -----------------------------------------------------------------------
@router.route("GET", "/api/v1/jobs/export", summary="Export jobs as CSV", query=IdsQuery, tags=("jobs",),
              content_type="text/csv")
async def export_jobs(request: web.Request, query: IdsQuery) -> web.Response:
    ids = [i for i in query.ids.split(",") if i]
    jobs = await asyncio.gather(*(asyncio.to_thread(control(request).get_job, i) for i in ids))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run_id", "type", "group_id", "state", "attempts", "created_at", "started_at", "finished_at",
                "error"])
    for j in jobs:
        if j is not None:
            w.writerow([j.id, j.type, j.group_id, j.state, j.attempts, j.created_at, j.started_at, j.finished_at,
                        j.error or ""])
    return web.Response(text=buf.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="jobs.csv"'})


@router.route("GET", "/api/v1/jobs", summary="All jobs, newest first (the latest 5000)", response=list[JobSummary],
              responses=NOT_MODIFIED, tags=("jobs",))
async def list_jobs(request: web.Request) -> web.Response:
    from functools import partial

    from contimg_console.api import listing_rows
    from contimg_console.api.products import cached_listing

    return await cached_listing(request, "jobs", partial(listing_rows.jobs, rt(request).db.url),
                                in_process=True)


@router.route("GET", "/api/v1/jobs/{run_id}", summary="One job", response=JobDetail, tags=("jobs",))
async def get_job(request: web.Request) -> JobDetail:
    j = await _job(request, request.match_info["run_id"])
    prov = await asyncio.to_thread(provenance_of, request, j)
    return JobDetail(**summary(j).model_dump(), logs_url=f"/api/v1/jobs/{j.id}/logs",
                     config={"type": j.type, "group_id": j.group_id, "params": j.params, "state": j.state,
                             "attempts": j.attempts, "max_attempts": j.max_attempts, "error": j.error,
                             "error_kind": j.error_kind},
                     provenance=prov)


@router.route("GET", "/api/v1/jobs/{run_id}/provenance", summary="Provenance of a job", response=Provenance,
              tags=("jobs",))
async def job_provenance(request: web.Request) -> Provenance:
    j = await _job(request, request.match_info["run_id"])
    return await asyncio.to_thread(provenance_of, request, j)


@router.route("GET", "/api/v1/jobs/{run_id}/logs", summary="Captured log lines of a job (tail with ?after=)",
              query=LogsQuery, response=JobLogs, tags=("jobs",))
async def job_logs(request: web.Request, query: LogsQuery) -> JobLogs:
    j = await _job(request, request.match_info["run_id"])
    lines = await asyncio.to_thread(control(request).job_log, j.id, query.after, query.limit)
    return JobLogs(run_id=j.id, lines=[LogLine(**ln) for ln in lines],
                   next_after=lines[-1]["id"] if lines else query.after)


async def _rerun(request: web.Request, job_id: str, who: str) -> JobView:
    ctl = control(request)
    j = await _job(request, job_id)
    if j.state in ("queued", "running"):
        return j  # already (re)running: repeating the request is harmless (spec §1.5)
    try:
        new = await asyncio.to_thread(ctl.retry, job_id, who)
    except StateError as exc:
        if j.state == "succeeded":
            raise ApiError(409, f"job {job_id} succeeded; re-running a finished stage is not supported, "
                                f"requeue its group instead", code="INVALID_STATE") from None
        raise ApiError(409, str(exc), code="INVALID_STATE") from None
    rt(request).engine.poke()
    return new


@router.route("POST", "/api/v1/jobs/{run_id}/rerun", summary="Re-run a failed or cancelled job",
              response=JobSummary, role="operator", tags=("jobs",))
async def rerun(request: web.Request, principal: Principal) -> JobSummary:
    return summary(await _rerun(request, request.match_info["run_id"], principal.username))


async def _bulk(request: web.Request, ids: list[str], action: Any) -> BulkResult:
    ok: list[str] = []
    bad: dict[str, str] = {}
    for job_id in ids:
        try:
            await action(job_id)
            ok.append(job_id)
        except ApiError as exc:
            bad[job_id] = exc.message
        except (StateError, KeyError) as exc:
            bad[job_id] = str(exc)
    return BulkResult(succeeded=ok, failed=bad)


@router.route("POST", "/api/v1/jobs/bulk-rerun", summary="Re-run several jobs", body=RunIds, response=BulkResult,
              role="operator", tags=("jobs",))
async def bulk_rerun(request: web.Request, body: RunIds, principal: Principal) -> BulkResult:
    return await _bulk(request, body.runIds, lambda i: _rerun(request, i, principal.username))


async def _cancel(request: web.Request, job_id: str, who: str) -> JobView:
    j = await _job(request, job_id)
    if j.state == "cancelled":
        return j
    try:
        return await asyncio.to_thread(control(request).cancel, job_id, who)
    except StateError as exc:
        raise ApiError(409, str(exc), code="INVALID_STATE") from None


@router.route("POST", "/api/v1/jobs/bulk-cancel", summary="Cancel several jobs", body=RunIds, response=BulkResult,
              role="operator", tags=("jobs",))
async def bulk_cancel(request: web.Request, body: RunIds, principal: Principal) -> BulkResult:
    return await _bulk(request, body.runIds, lambda i: _cancel(request, i, principal.username))


# ---- §16.2 task queue ------------------------------------------------------------------
@router.route("GET", "/absurd/tasks", summary="List tasks", query=TasksQuery, response=TaskList, tags=("queue",))
async def list_tasks(request: web.Request, query: TasksQuery) -> TaskList:
    db = rt(request).services

    def work() -> TaskList:
        state = {"pending": "queued", "retrying": "queued", "claimed": "running", "completed": "succeeded",
                 "failed": "failed", "cancelled": "cancelled"}.get(query.status or "")
        jobs, total = db.jobs_page(state=state, queue=query.queue_name, limit=query.limit, offset=query.offset,
                                   retrying=None if query.status not in ("pending", "retrying")
                                   else query.status == "retrying")
        return TaskList(tasks=[to_task(j) for j in jobs], total=total)

    return await asyncio.to_thread(work)


@router.route("GET", "/absurd/tasks/{task_id}", summary="One task", response=Task, tags=("queue",))
async def get_task(request: web.Request) -> Task:
    return to_task(await _job(request, request.match_info["task_id"]))


@router.route("DELETE", "/absurd/tasks/{task_id}", summary="Cancel a task", body=CancelBody, response=Task,
              role="operator", tags=("queue",))
async def cancel_task(request: web.Request, body: CancelBody, principal: Principal) -> Task:
    who = principal.username + (f" ({body.reason})" if body.reason else "")
    return to_task(await _cancel(request, request.match_info["task_id"], who))


@router.route("POST", "/absurd/tasks/{task_id}/retry", summary="Retry a failed task", response=TaskId,
              role="operator", tags=("queue",))
async def retry_task(request: web.Request, principal: Principal) -> TaskId:
    return TaskId(task_id=(await _rerun(request, request.match_info["task_id"], principal.username)).id)


def stage_task(request: web.Request, task_name: str, params: dict[str, Any], where: str = "") -> tuple[str, str]:
    """(job type, group id) of a task the engine can run; 422 naming the field otherwise."""
    registry = rt(request).engine.registry
    job_type = stats.job_type_of(task_name)
    if registry.get(job_type) is None:
        raise ApiError(422, f"{where}task_name: unknown task {task_name!r}; installed: "
                            + ", ".join(stats.task_name(t) for t in registry.types()), code="VALIDATION_FAILED")
    group_id = params.get("group_id")
    if not isinstance(group_id, str) or not group_id:
        raise ApiError(422, f"{where}params.group_id (the observation group to process) is required",
                       code="VALIDATION_FAILED")
    return job_type, group_id


@router.route("POST", "/absurd/spawn", summary="Enqueue a task for a group", body=SpawnTask, response=TaskId,
              role="operator", tags=("queue",))
async def spawn(request: web.Request, body: SpawnTask, principal: Principal) -> TaskId:
    runtime = rt(request)
    job_type, group_id = stage_task(request, body.task_name, body.params)
    try:
        job_id = await asyncio.to_thread(runtime.services.spawn_stage, group_id, job_type, body.priority,
                                         principal.username)
    except KeyError:
        raise ApiError(404, f"no observation group {group_id!r}", code="NOT_FOUND") from None
    runtime.engine.poke()
    return TaskId(task_id=job_id)


@router.route("GET", "/absurd/queues", summary="Queue names", response=Queues, tags=("queue",))
async def queues(request: web.Request) -> Queues:
    names = await asyncio.to_thread(stats.queue_names, rt(request).db)
    return Queues(queues=sorted(set(names) | {QUEUE}))


def _queue_stats(name: str, counts: dict[str, int]) -> QueueStats:
    return QueueStats(queue_name=name, pending=counts.get("queued", 0), claimed=counts.get("running", 0),
                      completed=counts.get("succeeded", 0), failed=counts.get("failed", 0),
                      cancelled=counts.get("cancelled", 0), total=sum(counts.values()))


@router.route("GET", "/absurd/queues/stats", summary="Queue depth (fallback)", response=QueueDepth, tags=("queue",))
async def queue_depth(request: web.Request) -> QueueDepth:
    counts = await asyncio.to_thread(stats.queue_counts, rt(request).db)
    return QueueDepth(queue_depth=counts.get("queued", 0), pending=counts.get("queued", 0),
                      running=counts.get("running", 0))


@router.route("GET", "/absurd/queues/{queue_name}/stats", summary="Statistics of one queue", response=QueueStats,
              tags=("queue",))
async def queue_stats(request: web.Request) -> QueueStats:
    name = request.match_info["queue_name"]
    counts = await asyncio.to_thread(stats.queue_counts, rt(request).db, name)
    return _queue_stats(name, counts)


async def _workers(request: web.Request) -> list[Worker]:
    rows = await asyncio.to_thread(stats.workers, rt(request).db)
    return [Worker(**{k: v for k, v in r.items() if k != "stopped"}) for r in rows]


@router.route("GET", "/absurd/workers", summary="Workers", response=WorkerList, tags=("queue",))
async def list_workers(request: web.Request) -> WorkerList:
    ws = await _workers(request)
    count = {s: sum(1 for w in ws if w.state == s) for s in ("active", "idle", "stale", "crashed")}
    return WorkerList(workers=ws, total=len(ws), **count)


@router.route("GET", "/absurd/workers/metrics", summary="Worker metrics", response=WorkerMetrics, tags=("queue",))
async def worker_metrics(request: web.Request) -> WorkerMetrics:
    ws = await _workers(request)
    n = len(ws) or 1
    return WorkerMetrics(total_workers=len(ws), active_workers=sum(w.state == "active" for w in ws),
                         idle_workers=sum(w.state == "idle" for w in ws),
                         crashed_workers=sum(w.state == "crashed" for w in ws),
                         timed_out_workers=sum(w.state == "stale" for w in ws),
                         avg_tasks_per_worker=sum(w.task_count for w in ws) / n,
                         avg_worker_uptime_sec=sum(w.uptime_seconds for w in ws) / n)


@router.route("GET", "/absurd/workers/{worker_id}", summary="One worker", response=Worker, tags=("queue",))
async def get_worker(request: web.Request) -> Worker:
    wid = request.match_info["worker_id"]
    for w in await _workers(request):
        if w.worker_id == wid:
            return w
    raise ApiError(404, f"no worker {wid!r}")


@router.route("GET", "/absurd/metrics", summary="Queue metrics", response=AbsurdMetrics, tags=("queue",))
async def absurd_metrics(request: web.Request) -> AbsurdMetrics:
    db = rt(request).db
    counts, tp = await asyncio.gather(asyncio.to_thread(stats.queue_counts, db),
                                      asyncio.to_thread(stats.throughput, db))
    waits, durs = tp["waits_s"], tp["durations_s"]

    def rate(label: str, minutes: int) -> tuple[float, float, float]:
        c, f = tp[label]["completed"], tp[label]["failed"]
        done = c + f
        return c / minutes, (c / done if done else 1.0), (f / done if done else 0.0)

    r1, r5, r15 = rate("1min", 1), rate("5min", 5), rate("15min", 15)
    return AbsurdMetrics(
        total_spawned=sum(counts.values()), total_claimed=counts.get("running", 0) + counts.get("succeeded", 0)
        + counts.get("failed", 0), total_completed=counts.get("succeeded", 0), total_failed=counts.get("failed", 0),
        total_cancelled=counts.get("cancelled", 0), total_timed_out=0, current_pending=counts.get("queued", 0),
        current_claimed=counts.get("running", 0),
        avg_wait_time_sec=sum(waits) / len(waits) if waits else 0.0,
        avg_execution_time_sec=sum(durs) / len(durs) if durs else 0.0,
        p50_wait_time_sec=stats.percentile(waits, 0.5), p95_wait_time_sec=stats.percentile(waits, 0.95),
        p99_wait_time_sec=stats.percentile(waits, 0.99), p50_execution_time_sec=stats.percentile(durs, 0.5),
        p95_execution_time_sec=stats.percentile(durs, 0.95), p99_execution_time_sec=stats.percentile(durs, 0.99),
        throughput_1min=r1[0], throughput_5min=r5[0], throughput_15min=r15[0],
        success_rate_1min=r1[1], success_rate_5min=r5[1], success_rate_15min=r15[1],
        error_rate_1min=r1[2], error_rate_5min=r5[2], error_rate_15min=r15[2])


async def _health(request: web.Request) -> AbsurdHealth:
    runtime = rt(request)
    alerts: list[HealthMessage] = []
    warnings: list[HealthMessage] = []
    try:
        counts = await asyncio.to_thread(stats.queue_counts, runtime.db)
        db_ok = True
    except Exception as exc:  # noqa: BLE001 - reported as unhealthy
        counts, db_ok = {}, False
        alerts.append(HealthMessage(level="alert", message=f"database unavailable: {exc}"))
    eng = runtime.engine.status()
    pool_ok = bool(eng["running"])
    if not pool_ok:
        alerts.append(HealthMessage(level="alert", message="processing engine is not running"))
    if eng["paused"]:
        warnings.append(HealthMessage(level="warning", message="processing engine is paused"))
    depth = counts.get("queued", 0)
    if depth > 100:
        warnings.append(HealthMessage(level="warning", message=f"queue depth {depth} > 100"))
    if counts.get("failed"):
        warnings.append(HealthMessage(level="warning", message=f"{counts['failed']} failed jobs (dead-letter queue)"))
    status = "unhealthy" if alerts else ("degraded" if warnings else "healthy")
    message = "; ".join(m.message for m in alerts + warnings) or "engine running, queue healthy"
    return AbsurdHealth(status=status, message=message, queue_depth=depth, database_available=db_ok,
                        worker_pool_healthy=pool_ok, alerts=alerts, warnings=warnings)


@router.route("GET", "/absurd/health", summary="Queue health", response=AbsurdHealth, tags=("queue",))
async def absurd_health(request: web.Request) -> AbsurdHealth:
    return await _health(request)


@router.route("GET", "/absurd/health/detailed", summary="Queue health (fallback)", response=AbsurdHealth,
              tags=("queue",))
async def absurd_health_detailed(request: web.Request) -> AbsurdHealth:
    return await _health(request)


@router.route("GET", "/absurd/pipeline/status", summary="Per-stage job counts", response=PipelineStatus,
              tags=("queue",))
async def pipeline_status(request: web.Request) -> PipelineStatus:
    runtime = rt(request)
    per_stage = await asyncio.to_thread(stats.stage_counts, runtime.db)
    stages = {name: StageCounts(**per_stage.get(name, {})) for name in stats.DASHBOARD_STAGES}
    for name, counts in per_stage.items():
        stages.setdefault(name, StageCounts(**counts))
    total = StageCounts(**{k: sum(getattr(s, k) for s in stages.values())
                           for k in ("pending", "running", "completed", "failed")})
    health = await _health(request)
    return PipelineStatus(stages=stages, total=total, worker_count=runtime.engine.settings.engine.workers
                          if runtime.engine.started else 0, last_updated=datetime.now(UTC),
                          is_healthy=health.status == "healthy")


@router.route("GET", "/absurd/dlq", summary="Dead-letter queue: failed tasks", query=PageQuery, response=TaskList,
              tags=("queue",))
async def dlq(request: web.Request, query: PageQuery) -> TaskList:
    jobs, total = await asyncio.to_thread(rt(request).services.jobs_page, state="failed", limit=query.limit,
                                          offset=query.offset)
    return TaskList(tasks=[to_task(j) for j in jobs], total=total)


@router.route("POST", "/absurd/dlq/{task_id}/replay", summary="Replay a failed task", response=TaskId,
              role="operator", tags=("queue",))
async def dlq_replay(request: web.Request, principal: Principal) -> TaskId:
    return TaskId(task_id=(await _rerun(request, request.match_info["task_id"], principal.username)).id)


@router.route("DELETE", "/absurd/dlq", summary="Purge failed tasks (their groups stay failed)", query=DlqQuery,
              response=Purged, role="admin", tags=("queue",))
async def dlq_purge(request: web.Request, query: DlqQuery) -> Purged:
    n = await asyncio.to_thread(rt(request).services.purge_jobs, ("failed",), query.before)
    return Purged(purged=n)

