"""Pipeline control (§16.3), HDF5 → MS conversion (A.3), calibrator views (§18.1) and log search (§11).

All actions go through the engine's queue; a stage is only queued for a group in
the state that stage starts from (409 otherwise, naming both states).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from contimg_console.api.common import rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.db import models as m
from engine.logs import ring_buffer
from engine.processing import stats

router = Router()
PIPELINE = "dsa110-continuum"
STAGE_TEXT = {
    "convert": "UVH5 subbands → Measurement Set (python-casacore)",
    "solve": "bandpass and gain solve on a calibrator transit, QA, registration",
    "calibrate": "apply the registry's calibration to a target",
    "image": "image Stokes I (built-in w-gridding imager or WSClean), QA",
    "measure": "source finding, forced photometry, crossmatch, variability",
}
DASH_STAGE = {"calibration": "calibrate", "imaging": "image", "conversion": "convert", "photometry": "measure",
              "calibration-solve": "solve"}


# ---- models ---------------------------------------------------------------------------------------
class Registered(BaseModel):
    pipelines: list[dict[str, Any]]
    total: int


class Stages(BaseModel):
    stages: list[dict[str, str]]
    total: int


class PipelineRunBody(BaseModel):
    pipeline_name: str
    params: dict[str, Any] = Field(default_factory=dict)


class RunResult(BaseModel):
    execution_id: str
    pipeline_name: str
    status: str
    message: str


class FullBody(BaseModel):
    start_time: datetime
    end_time: datetime
    input_dir: str | None = None
    output_dir: str | None = None
    run_calibration: bool = True
    run_imaging: bool = True
    imaging_params: dict[str, Any] | None = None


class FullResult(BaseModel):
    status: str
    task_ids: dict[str, str]
    time_range: dict[str, datetime]
    message: str


class RetryFailedBody(BaseModel):
    reason: Literal["interrupted", "any"] = "interrupted"


class RetryFailedResult(BaseModel):
    retried: list[str]
    skipped: dict[str, str]
    message: str


class ReprocessBody(BaseModel):
    start_time: datetime
    end_time: datetime
    stage: Literal["convert", "calibrate", "image", "measure"] = "calibrate"
    priority: int = Field(500, ge=0, le=1000)


class ReprocessResult(BaseModel):
    queued: dict[str, str]
    skipped: dict[str, str]
    message: str


class ReprocessProgress(BaseModel):
    jobs: dict[str, int]


class StageBody(BaseModel):
    stage: str
    params: dict[str, Any]
    priority: int | None = Field(None, ge=0, le=1000)


class TaskResult(BaseModel):
    task_id: str
    stage: str
    status: str


class MsQuery(BaseModel):
    ms_path: str = Field(min_length=1)
    apply_only: bool = True


class ImageQuery(BaseModel):
    ms_path: str = Field(min_length=1)
    imsize: int | None = Field(None, ge=64, le=20000)
    cell: str | None = None
    niter: int | None = Field(None, ge=0, le=10_000_000)
    threshold: str | None = None
    weighting: str | None = None
    robust: float | None = Field(None, ge=-2, le=2)


class ExecJob(BaseModel):
    job_id: str
    job_type: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None


class PipelineExecution(BaseModel):
    execution_id: str
    pipeline_name: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    jobs: list[ExecJob]


class PipelineExecutions(BaseModel):
    executions: list[PipelineExecution]
    total: int


class ExecQuery(BaseModel):
    limit: int = Field(20, ge=1, le=500)
    status_filter: str | None = None


class LogQuery(BaseModel):
    q: str | None = Field(None, max_length=500)
    level: str | None = None
    start: str | None = None
    end: str | None = None
    cursor: str | None = Field(None, max_length=64)
    limit: int = Field(200, ge=1, le=2000)
    direction: Literal["forward", "backward"] = "backward"


class LogEntry(BaseModel):
    id: str
    timestamp: datetime
    level: str
    message: str
    labels: dict[str, str]
    cursor: str


class LogSearch(BaseModel):
    entries: list[LogEntry]
    next_cursor: str | None
    prev_cursor: str | None
    has_more: bool
    stats: dict[str, float]


# ---- helpers ------------------------------------------------------------------------------------------
def _group_for_ms(s: Any, ms_path: str) -> m.ObservationGroup:
    ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.path == ms_path.rstrip("/")))
    if ms is None:
        raise ApiError(404, f"no registered Measurement Set at {ms_path}", code="MS_NOT_FOUND")
    return s.get_one(m.ObservationGroup, ms.group_id)


def _queue_stage(request: web.Request, group_id: str | None, ms_path: str | None, job_type: str,
                 priority: int | None, who: str, params: dict[str, Any] | None = None) -> str:
    runtime = rt(request)
    stage = runtime.engine.registry.get(job_type)
    if stage is None:
        raise ApiError(422, f"no stage {job_type!r}; installed: {', '.join(runtime.engine.registry.types())}")
    with runtime.db.session() as s:
        group = _group_for_ms(s, ms_path) if ms_path else s.get(m.ObservationGroup, group_id)
        if group is None:
            raise ApiError(404, f"no observation group {group_id!r}")
        if group.state != stage.start and group.state not in stage.also_from:
            raise ApiError(409, f"group {group.id} is {group.state}; {job_type} starts from {stage.start}",
                           code="INVALID_STATE")
        if not stage.applies(group):
            raise ApiError(409, f"{job_type} does not apply to group {group.id}", code="INVALID_STATE")
        return runtime.engine.queue.enqueue(job_type, group_id=group.id, priority=priority or 100, created_by=who,
                                            params=params or {}, session=s)


def _executions(request: web.Request, limit: int, status: str | None, group_id: str | None = None) -> list[PipelineExecution]:
    with rt(request).db.session() as s:
        q = select(m.ObservationGroup).order_by(m.ObservationGroup.group_time.desc()).limit(limit)
        if group_id:
            q = q.where(m.ObservationGroup.id == group_id)
        out = []
        for g in s.scalars(q):
            jobs = list(s.scalars(select(m.Job).where(m.Job.group_id == g.id).order_by(m.Job.created_at)))
            state = ("completed" if g.state == "complete" else "failed" if g.state in ("failed", "cancelled")
                     else "pending" if g.state == "pending" and not jobs else "running")
            if status and state != status:
                continue
            js = [ExecJob(job_id=j.id, job_type=stats.task_name(j.type),
                          status={"queued": "pending", "succeeded": "completed"}.get(j.state, j.state),
                          started_at=j.started_at, completed_at=j.finished_at, error=j.error) for j in jobs]
            out.append(PipelineExecution(execution_id=g.id, pipeline_name=PIPELINE, status=state,
                                 started_at=jobs[0].started_at if jobs else None,
                                 completed_at=g.state_changed_at if state in ("completed", "failed") else None,
                                 error=g.error, jobs=js))
        return out


# ---- §16.3 pipeline control ----------------------------------------------------------------------------------
@router.route("GET", "/api/v1/pipeline/registered", summary="Registered pipelines", response=Registered,
              tags=("pipeline",))
async def registered(request: web.Request) -> Registered:
    types = rt(request).engine.registry.types()
    return Registered(pipelines=[{"name": PIPELINE, "description": "ingest → " + " → ".join(types),
                                  "schedule": None, "is_scheduled": False}], total=1)


@router.route("GET", "/api/v1/pipeline/stages", summary="Installed stages", response=Stages, tags=("pipeline",))
async def stages(request: web.Request) -> Stages:
    names = {"calibrate": "calibration", "image": "imaging"}
    items = [{"name": names.get(t, t), "description": STAGE_TEXT.get(t, t)}
             for t in rt(request).engine.registry.types()]
    return Stages(stages=items, total=len(items))


@router.route("POST", "/api/v1/pipeline/run", summary="Run the pipeline for a group (params.group_id)",
              body=PipelineRunBody, response=RunResult, role="operator", tags=("pipeline",))
async def run_pipeline(request: web.Request, body: PipelineRunBody) -> RunResult:
    if body.pipeline_name != PIPELINE:
        raise ApiError(404, f"no pipeline {body.pipeline_name!r}; registered: {PIPELINE}")
    group_id = body.params.get("group_id")
    runtime = rt(request)
    if group_id:
        n = await asyncio.to_thread(runtime.engine.reconcile)
        runtime.engine.poke()
        return RunResult(execution_id=str(group_id), pipeline_name=PIPELINE, status="queued",
                         message=f"{n} group(s) handed to their next stage")
    n = await asyncio.to_thread(runtime.engine.reconcile)
    runtime.engine.poke()
    return RunResult(execution_id="all", pipeline_name=PIPELINE, status="queued",
                     message=f"{n} resting group(s) handed to their next stage")


@router.route("POST", "/api/v1/pipeline/full", summary="Retry every failed group in a time range", body=FullBody,
              response=FullResult, role="operator", tags=("pipeline",))
async def run_full(request: web.Request, body: FullBody, principal: Principal) -> FullResult:
    if body.end_time <= body.start_time:
        raise ApiError(422, "end_time must be after start_time", code="VALIDATION_FAILED")
    runtime = rt(request)
    start = body.start_time if body.start_time.tzinfo else body.start_time.replace(tzinfo=UTC)
    end = body.end_time if body.end_time.tzinfo else body.end_time.replace(tzinfo=UTC)

    def work() -> dict[str, str]:
        from engine.services import PipelineControl

        ctl = PipelineControl(runtime.db)
        ids: dict[str, str] = {}
        with runtime.db.session() as s:
            failed = list(s.execute(select(m.Job.id, m.Job.group_id).join(m.ObservationGroup)
                                    .where(m.ObservationGroup.group_time >= start, m.ObservationGroup.group_time <= end,
                                           m.ObservationGroup.state == "failed", m.Job.state == "failed")))
        for job_id, gid in failed:
            ctl.retry(job_id, principal.username)
            ids[gid] = job_id
        runtime.engine.reconcile()
        return ids

    ids = await asyncio.to_thread(work)
    runtime.engine.poke()
    return FullResult(status="queued", task_ids=ids, time_range={"start": start, "end": end},
                      message=f"{len(ids)} failed group(s) in range re-queued; groups still in progress continue")


@router.route("POST", "/api/v1/pipeline/retry-failed", summary="Retry failed jobs in bulk (by default those "
              "failed only through interruptions: crashes of their holder, not errors of their own)",
              body=RetryFailedBody, response=RetryFailedResult, role="operator", tags=("pipeline",))
async def retry_failed(request: web.Request, body: RetryFailedBody, principal: Principal) -> RetryFailedResult:
    from engine.services import PipelineControl

    runtime = rt(request)
    result = await asyncio.to_thread(PipelineControl(runtime.db).retry_failed, body.reason, principal.username)
    runtime.engine.poke()
    what = "failed only through interruptions" if body.reason == "interrupted" else "failed"
    return RetryFailedResult(**result, message=f"{len(result['retried'])} job(s) {what} queued again")


@router.route("POST", "/api/v1/pipeline/reprocess", summary="Send the groups of a time range back to a stage, "
              "at a priority below live data", body=ReprocessBody, response=ReprocessResult, role="operator",
              tags=("pipeline",))
async def reprocess(request: web.Request, body: ReprocessBody, principal: Principal) -> ReprocessResult:
    runtime = rt(request)
    start = body.start_time if body.start_time.tzinfo else body.start_time.replace(tzinfo=UTC)
    end = body.end_time if body.end_time.tzinfo else body.end_time.replace(tzinfo=UTC)
    if end <= start:
        raise ApiError(422, "end_time must be after start_time", code="VALIDATION_FAILED")
    result = await asyncio.to_thread(runtime.services.queue.reprocess_range, start, end, body.stage,
                                     by=principal.username, priority=body.priority)
    runtime.engine.poke()
    return ReprocessResult(**result, message=f"{len(result['queued'])} group(s) queued from {body.stage}, "
                                             f"{len(result['skipped'])} skipped")


@router.route("GET", "/api/v1/pipeline/reprocess", summary="Archive reprocessing: its jobs by state",
              response=ReprocessProgress, tags=("pipeline",))
async def reprocess_progress(request: web.Request) -> ReprocessProgress:
    return ReprocessProgress(jobs=await asyncio.to_thread(rt(request).services.queue.reprocess_progress))


@router.route("POST", "/api/v1/pipeline/stage", summary="Queue one stage for the group of an MS", body=StageBody,
              response=TaskResult, role="operator", tags=("pipeline",))
async def run_stage(request: web.Request, body: StageBody, principal: Principal) -> TaskResult:
    job_type = DASH_STAGE.get(body.stage, body.stage)
    ms_path, group_id = body.params.get("ms_path"), body.params.get("group_id")
    if not ms_path and not group_id:
        raise ApiError(422, "params.ms_path or params.group_id is required", code="VALIDATION_FAILED")
    task = await asyncio.to_thread(_queue_stage, request, group_id, ms_path, job_type, body.priority,
                                   principal.username)
    rt(request).engine.poke()
    return TaskResult(task_id=task, stage=body.stage, status="queued")


@router.route("POST", "/api/v1/pipeline/calibrate", summary="Calibrate one MS", query=MsQuery, response=TaskResult,
              role="operator", tags=("pipeline",))
async def calibrate(request: web.Request, query: MsQuery, principal: Principal) -> TaskResult:
    task = await asyncio.to_thread(_queue_stage, request, None, unquote(query.ms_path), "calibrate", None,
                                   principal.username)
    rt(request).engine.poke()
    return TaskResult(task_id=task, stage="calibration", status="queued")


@router.route("POST", "/api/v1/pipeline/image", summary="Image one MS", query=ImageQuery, response=TaskResult,
              role="operator", tags=("pipeline",))
async def image(request: web.Request, query: ImageQuery, principal: Principal) -> TaskResult:
    task = await asyncio.to_thread(_queue_stage, request, None, unquote(query.ms_path), "image", None,
                                   principal.username, query.model_dump(exclude_none=True, exclude={"ms_path"}))
    rt(request).engine.poke()
    return TaskResult(task_id=task, stage="imaging", status="queued")


@router.route("GET", "/api/v1/pipeline/executions", summary="PipelineExecutions (one per observation group)",
              query=ExecQuery, response=PipelineExecutions, tags=("pipeline",))
async def executions(request: web.Request, query: ExecQuery) -> PipelineExecutions:
    items = await asyncio.to_thread(_executions, request, query.limit, query.status_filter)
    return PipelineExecutions(executions=items, total=len(items))


@router.route("GET", "/api/v1/pipeline/executions/{execution_id}", summary="One execution", response=PipelineExecution,
              tags=("pipeline",))
async def execution(request: web.Request) -> PipelineExecution:
    items = await asyncio.to_thread(_executions, request, 1, None, request.match_info["execution_id"])
    if not items:
        raise ApiError(404, f"no execution {request.match_info['execution_id']!r}")
    return items[0]


# ---- A.3 conversion ------------------------------------------------------------------------------------------------
class PendingQuery(BaseModel):
    limit: int = Field(100, ge=1, le=5000)
    complete_only: bool = False
    include_files: bool = False
    since_hours: float = Field(168, gt=0, le=24 * 3650)


class IndexQuery(BaseModel):
    limit: int = Field(100, ge=1, le=5000)
    search: str | None = Field(None, max_length=200)


class ConvertBody(BaseModel):
    group_id: str
    priority: int | None = Field(None, ge=0, le=1000)
    force: bool = False


def _group_dict(s: Any, g: m.ObservationGroup, files: bool) -> dict[str, Any]:
    out = {"group_id": g.id, "timestamp": g.group_time, "state": g.state, "ingest_status": g.ingest_status,
           "num_subbands": g.n_subbands, "missing_subbands": g.missing_subbands, "is_complete": g.n_subbands == 16,
           "dec_deg": g.dec_deg, "is_calibrator": g.is_calibrator, "calibrator_name": g.calibrator_name,
           "error": g.error}
    if files:
        out["files"] = [{"path": f.path, "subband": f.subband, "status": f.status, "error": f.error}
                        for f in g.files]
    return out


@router.route("GET", "/api/v1/conversion/stats", summary="Conversion statistics", response={"type": "object"},
              tags=("conversion",))
async def conversion_stats(request: web.Request) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with rt(request).db.session() as s:
            files = {k: n for k, n in s.execute(select(m.Hdf5File.status, func.count()).group_by(m.Hdf5File.status))}
            groups = {k: n for k, n in s.execute(select(m.ObservationGroup.state, func.count())
                                                 .group_by(m.ObservationGroup.state))}
        converted = sum(n for k, n in groups.items() if k not in ("pending", "converting", "failed", "cancelled"))
        return {"total_files": sum(files.values()), "files_by_status": files, "total_groups": sum(groups.values()),
                "groups_by_state": groups, "pending_groups": groups.get("pending", 0),
                "converting_groups": groups.get("converting", 0), "converted_groups": converted,
                "failed_groups": groups.get("failed", 0)}

    return await asyncio.to_thread(work)


@router.route("GET", "/api/v1/conversion/pending", summary="Groups waiting for conversion", query=PendingQuery,
              response={"type": "object"}, tags=("conversion",))
async def conversion_pending(request: web.Request, query: PendingQuery) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=query.since_hours)
        with rt(request).db.session() as s:
            q = (select(m.ObservationGroup).where(m.ObservationGroup.state.in_(("pending", "converting")),
                                                  m.ObservationGroup.created_at >= since)
                 .order_by(m.ObservationGroup.group_time.desc()).limit(query.limit))
            if query.complete_only:
                q = q.where(m.ObservationGroup.n_subbands == 16)
            groups = [_group_dict(s, g, query.include_files) for g in s.scalars(q)]
        return {"groups": groups, "total": len(groups)}

    return await asyncio.to_thread(work)


@router.route("GET", "/api/v1/conversion/status/{group_id}", summary="Conversion state of a group",
              response={"type": "object"}, tags=("conversion",))
async def conversion_status(request: web.Request) -> dict[str, Any]:
    gid = unquote(request.match_info["group_id"])

    def work() -> dict[str, Any] | None:
        with rt(request).db.session() as s:
            g = s.get(m.ObservationGroup, gid)
            if g is None:
                return None
            out = _group_dict(s, g, True)
            ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.group_id == gid))
            out["ms_path"] = ms.path if ms else None
            return out

    result = await asyncio.to_thread(work)
    if result is None:
        raise ApiError(404, f"no group {gid!r}")
    return result


@router.route("GET", "/api/v1/conversion/hdf5-index", summary="Recorded incoming files", query=IndexQuery,
              response={"type": "object"}, tags=("conversion",))
async def hdf5_index(request: web.Request, query: IndexQuery) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with rt(request).db.session() as s:
            q = select(m.Hdf5File).order_by(m.Hdf5File.discovered_at.desc()).limit(query.limit)
            if query.search:
                q = q.where(m.Hdf5File.filename.contains(query.search, autoescape=True))
            files = [{"path": f.path, "filename": f.filename, "group_id": f.group_id, "subband": f.subband,
                      "timestamp": f.timestamp, "size_bytes": f.size_bytes, "status": f.status, "error": f.error,
                      "discovered_at": f.discovered_at} for f in s.scalars(q)]
        return {"files": files, "total": len(files)}

    return await asyncio.to_thread(work)


@router.route("POST", "/api/v1/conversion/convert", summary="Queue the conversion of a group", body=ConvertBody,
              response={"type": "object"}, role="operator", tags=("conversion",))
async def convert(request: web.Request, body: ConvertBody, principal: Principal) -> dict[str, Any]:
    job = await asyncio.to_thread(_queue_stage, request, body.group_id, None, "convert", body.priority,
                                  principal.username)
    rt(request).engine.poke()
    return {"job_id": job, "group_id": body.group_id, "status": "queued"}


# ---- §11 log search --------------------------------------------------------------------------------------------------
_LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50, "fatal": 50}


def _time(value: str | None, what: str) -> datetime | None:
    if not value:
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(422, f"{what}: {value!r} is neither an ISO time nor epoch milliseconds",
                       code="VALIDATION_FAILED") from None


@router.route("GET", "/api/v1/logs/search", summary="Search and tail logs (process log; job logs by run_id)",
              query=LogQuery, response=LogSearch, tags=("logs",))
async def log_search(request: web.Request, query: LogQuery) -> LogSearch:
    t0 = datetime.now(UTC)
    levels = None
    if query.level:
        names = [x.strip().lower() for x in query.level.split(",") if x.strip()]
        bad = [n for n in names if n not in _LEVELS]
        if bad:
            raise ApiError(422, f"unknown level(s) {', '.join(bad)}", code="VALIDATION_FAILED")
        levels = {_LEVELS[n] for n in names}
    start, end = _time(query.start, "start"), _time(query.end, "end")
    labels = {k[len("labels."):]: v for k, v in request.query.items() if k.startswith("labels.")}
    run_ids = [x for x in labels.get("run_id", "").split(",") if x]
    services = [x for x in labels.get("service", "").split(",") if x]
    try:
        after = int(query.cursor) if query.cursor else 0
    except ValueError:
        raise ApiError(422, f"cursor {query.cursor!r} is not one this server issued", code="VALIDATION_FAILED") from None

    def keep(level: str, message: str, at: datetime) -> bool:
        if levels and _LEVELS.get(level.lower(), 20) not in levels:
            return False
        if query.q and query.q.lower() not in message.lower():
            return False
        return not ((start and at < start) or (end and at > end))

    if run_ids:
        def work() -> list[LogEntry]:
            with rt(request).db.session() as s:
                q = select(m.JobLog).where(m.JobLog.job_id.in_(run_ids))
                q = q.where(m.JobLog.id > after) if query.direction == "forward" or not after else \
                    q.where(m.JobLog.id < after)
                q = q.order_by(m.JobLog.id.asc() if query.direction == "forward" else m.JobLog.id.desc())
                rows = [r for r in s.scalars(q.limit(query.limit * 4)) if keep(r.level, r.message, r.at)]
            return [LogEntry(id=f"job-{r.id}", timestamp=r.at, level=r.level.lower(), message=r.message,
                             labels={"run_id": r.job_id, "service": "engine"}, cursor=str(r.id))
                    for r in rows[:query.limit]]

        entries = await asyncio.to_thread(work)
    else:
        ring = ring_buffer()
        if query.direction == "forward":
            recs = ring.since(after, limit=100_000)
        else:
            recs = [r for r in ring.since(0, limit=100_000) if not after or r["seq"] < after][::-1]
        entries = []
        for r in recs:
            service = r["logger"].split(".")[1] if "." in r["logger"] else r["logger"]
            if services and service not in services:
                continue
            if not keep(r["level"], r["message"], r["timestamp"]):
                continue
            entries.append(LogEntry(id=f"log-{r['seq']}", timestamp=r["timestamp"], level=r["level"].lower(),
                                    message=r["message"], labels={"service": service, "logger": r["logger"]},
                                    cursor=str(r["seq"])))
            if len(entries) >= query.limit:
                break
    if query.direction == "backward":
        entries.reverse()  # oldest first on the page
    next_cursor = entries[-1].cursor if entries else query.cursor
    prev_cursor = entries[0].cursor if entries else None
    return LogSearch(entries=entries, next_cursor=next_cursor, prev_cursor=prev_cursor,
                     has_more=len(entries) >= query.limit,
                     stats={"fetched": len(entries), "duration_ms": (datetime.now(UTC) - t0).total_seconds() * 1000})
