"""Health, metrics and storage (spec §12–13), the service probe, and Prometheus ``/metrics``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine import monitoring
from engine.auth import Principal
from engine.processing import stats

router = Router()
ServiceStatusType = Literal["running", "stopped", "degraded", "error", "unknown", "healthy", "unhealthy"]


class ServiceHealth(BaseModel):
    name: str
    status: ServiceStatusType
    message: str | None = None
    response_time_ms: float | None = None
    details: dict[str, Any] | None = None
    checked_at: datetime | None = None


class HealthSummary(BaseModel):
    total: int
    running: int = 0
    stopped: int = 0
    degraded: int = 0
    error: int = 0
    healthy: int = 0
    unhealthy: int = 0


class SystemHealthReport(BaseModel):
    overall_status: ServiceStatusType
    services: list[ServiceHealth]
    docker_available: bool = False
    systemd_available: bool = False
    summary: HealthSummary
    checked_at: datetime
    check_duration_ms: float


class ValidityWindowInfo(BaseModel):
    set_name: str
    table_type: str
    path: str
    status: str
    valid_start_mjd: float | None = None
    valid_end_mjd: float | None = None
    cal_field: str | None = None
    refant: str | None = None
    created_at: float


class ActiveSet(BaseModel):
    set_name: str
    tables: list[ValidityWindowInfo]
    earliest_start_mjd: float | None = None
    latest_end_mjd: float | None = None
    table_count: int


class ActiveValidityWindows(BaseModel):
    query_mjd: float
    query_iso: datetime
    active_sets: list[ActiveSet]
    total_active_tables: int
    overlapping_sets: int


class MjdQuery(BaseModel):
    mjd: float | None = Field(None, gt=0, lt=200000)


class TimelineQuery(BaseModel):
    hours_back: float = Field(24, ge=0, le=24 * 365)
    hours_forward: float = Field(48, ge=0, le=24 * 365)


class TimelineEntry(BaseModel):
    set_name: str
    table_type: str
    cal_field: str | None = None
    refant: str | None = None
    start_mjd: float
    end_mjd: float
    start_iso: datetime
    end_iso: datetime
    duration_hours: float
    is_current: bool


class ValidityTimeline(BaseModel):
    timeline_start: datetime
    timeline_end: datetime
    current_time: datetime
    current_mjd: float
    windows: list[TimelineEntry]
    total_windows: int | None = None
    message: str | None = None


class FluxCalibrator(BaseModel):
    calibrator_name: str
    n_measurements: int
    latest_mjd: float | None = None
    latest_flux_ratio: float | None = None
    mean_flux_ratio: float | None = None
    flux_ratio_std: float | None = None
    is_stable: bool
    alerts_count: int


class FluxMonitoringSummary(BaseModel):
    calibrators: list[FluxCalibrator]
    total_measurements: int | None = None
    total_alerts: int | None = None
    last_check_time: datetime | None = None
    message: str | None = None


class FluxMeasurement(BaseModel):
    mjd: float
    timestamp_iso: datetime
    flux_ratio: float
    observed_flux_jy: float
    catalog_flux_jy: float
    phase_rms_deg: float | None = None
    amp_rms: float | None = None
    image_id: str | None = None
    beam_gain: float | None = None
    snr: float | None = None


class FluxStats(BaseModel):
    mean_flux_ratio: float | None
    std_flux_ratio: float | None
    min_flux_ratio: float | None
    max_flux_ratio: float | None


class FluxHistory(BaseModel):
    calibrator_name: str
    measurements: list[FluxMeasurement]
    stats: FluxStats


class FluxHistoryQuery(BaseModel):
    days: float = Field(30, gt=0, le=3650)


class Transit(BaseModel):
    calibrator: str
    ra_deg: float
    dec_deg: float
    transit_utc: datetime
    time_to_transit_sec: float
    lst_at_transit: float
    elevation_at_transit: float
    status: Literal["in_progress", "upcoming", "scheduled"]


class PointingStatus(BaseModel):
    current_lst: float
    current_lst_deg: float
    active_calibrator: str | None = None
    upcoming_transits: list[Transit]
    timestamp: datetime


class AlertsQuery(BaseModel):
    severity: Literal["info", "warning", "critical"] | None = None
    acknowledged: bool | None = None
    limit: int = Field(100, ge=1, le=1000)


class MonitoringAlert(BaseModel):
    id: int
    alert_type: str
    severity: Literal["info", "warning", "critical"]
    calibrator_name: str | None = None
    message: str
    triggered_at: datetime
    source: str | None = None
    created_at: datetime | None = None
    acknowledged: bool
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


class AlertsResponse(BaseModel):
    alerts: list[MonitoringAlert]
    total_count: int | None = None
    unacknowledged_count: int | None = None
    message: str | None = None



class ProbedService(BaseModel):
    name: str
    port: int
    description: str
    status: Literal["running", "stopped", "degraded", "error", "checking", "unknown"]
    responseTime: float
    lastChecked: datetime
    error: str | None
    details: dict[str, Any] | None


class ServicesStatus(BaseModel):
    services: list[ProbedService]
    summary: dict[str, int]
    timestamp: datetime


class MetricPoint(BaseModel):
    timestamp: float
    value: float


class SystemMetric(BaseModel):
    id: str
    name: str
    description: str
    unit: str
    current: float
    trend: Literal["up", "down", "stable"]
    trendPercent: float
    status: Literal["healthy", "warning", "critical"]
    history: list[MetricPoint]


class MetricsDashboard(BaseModel):
    resources: dict[str, float]
    pipeline: dict[str, float]
    metrics: list[SystemMetric]
    updated_at: datetime


class HistoryQuery(BaseModel):
    hours: float = Field(24, gt=0, le=24 * 90)


class DiskPartition(BaseModel):
    mount_point: str
    device: str
    filesystem: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    usage_percent: float
    total_formatted: str
    used_formatted: str
    free_formatted: str


class DirectoryUsage(BaseModel):
    path: str
    name: str
    size_bytes: int
    size_formatted: str
    file_count: int
    last_modified: datetime | None = None
    category: Literal["hdf5", "ms", "images", "calibration", "logs", "other"]


class StorageAlert(BaseModel):
    severity: Literal["info", "warning", "critical"]
    message: str
    path: str | None = None
    threshold_percent: float | None = None
    current_percent: float | None = None


class StorageSummary(BaseModel):
    partitions: list[DiskPartition]
    directories: list[DirectoryUsage]
    alerts: list[StorageAlert]
    total_pipeline_data_bytes: int
    total_pipeline_data_formatted: str
    checked_at: datetime
    check_duration_ms: float | None = None


class CleanupCandidate(BaseModel):
    path: str
    size_bytes: int
    size_formatted: str
    age_days: float
    last_accessed: datetime | None = None
    reason: str
    category: Literal["old_ms", "old_images", "old_logs", "temp", "orphaned"]
    safe_to_delete: bool


class CleanupRecommendations(BaseModel):
    candidates: list[CleanupCandidate]
    total_reclaimable_bytes: int
    total_reclaimable_formatted: str
    generated_at: datetime


class TrendPoint(BaseModel):
    timestamp: datetime
    used_bytes: int
    usage_percent: float


class StorageTrend(BaseModel):
    mount_point: str
    data_points: list[TrendPoint]
    growth_rate_bytes_per_day: float
    days_until_full: float | None = None
    period_start: datetime
    period_end: datetime


class DaysQuery(BaseModel):
    days: float = Field(30, gt=0, le=3650)


# ---- system health ----------------------------------------------------------------------------
async def _services(request: web.Request) -> list[ServiceHealth]:
    runtime = rt(request)
    now = datetime.now(UTC)
    comps = await runtime.health_components()
    out = []
    for name, c in comps.items():
        status = {"healthy": "healthy", "degraded": "degraded", "stopped": "stopped"}.get(c["status"], "unknown")
        out.append(ServiceHealth(name=name, status=status, message=c["message"], details=c["details"],
                                 checked_at=now))
    ingest = runtime.ingest
    out.append(ServiceHealth(name="ingest", status="running" if ingest._task and not ingest._task.done() else "stopped",
                             message=f"watching {runtime.settings.incoming_dir}", checked_at=now))
    out.append(ServiceHealth(name="rest", status="running", message=runtime.api_url, checked_at=now))
    return out


@router.route("GET", "/api/v1/health/system", summary="Health of every service", response=SystemHealthReport,
              tags=("health",))
async def health_system(request: web.Request) -> SystemHealthReport:
    t0 = time.perf_counter()
    services = await _services(request)
    counts = {k: sum(1 for s in services if s.status == k)
              for k in ("running", "stopped", "degraded", "error", "healthy", "unhealthy")}
    bad = counts["stopped"] + counts["error"] + counts["unhealthy"]
    overall = "unhealthy" if bad else ("degraded" if counts["degraded"] else "healthy")
    return SystemHealthReport(overall_status=overall, services=services, summary=HealthSummary(total=len(services),
                              **counts), checked_at=datetime.now(UTC),
                              check_duration_ms=(time.perf_counter() - t0) * 1000,
                              systemd_available=_systemd())


def _systemd() -> bool:
    import os

    return os.path.isdir("/run/systemd/system")


@router.route("GET", "/api/v1/health/validity-windows", summary="Calibration sets valid at a time",
              query=MjdQuery, response=ActiveValidityWindows, tags=("health", "calibration"))
async def validity_windows(request: web.Request, query: MjdQuery) -> ActiveValidityWindows:
    at = query.mjd or monitoring.mjd(datetime.now(UTC))
    return ActiveValidityWindows(**await asyncio.to_thread(monitoring.active_validity, rt(request).db, at))


@router.route("GET", "/api/v1/health/validity-windows/timeline", summary="Validity windows around now",
              query=TimelineQuery, response=ValidityTimeline, tags=("health", "calibration"))
async def validity_timeline(request: web.Request, query: TimelineQuery) -> ValidityTimeline:
    return ValidityTimeline(**await asyncio.to_thread(monitoring.validity_timeline, rt(request).db, query.hours_back,
                                                      query.hours_forward))


@router.route("GET", "/api/v1/health/flux-monitoring", summary="Calibrator flux monitoring: observed over catalogue "
              "flux of calibrators measured in calibrated images", response=FluxMonitoringSummary,
              tags=("health", "calibration"))
async def flux_monitoring(request: web.Request) -> FluxMonitoringSummary:
    runtime = rt(request)
    data = await asyncio.to_thread(monitoring.flux_monitoring_summary, runtime.db,
                                   runtime.settings.calibration.flux_alert_fraction)
    return FluxMonitoringSummary(**data)


@router.route("GET", "/api/v1/health/flux-monitoring/{calibrator_name}/history",
              summary="Flux measurements of one calibrator", query=FluxHistoryQuery, response=FluxHistory,
              tags=("health", "calibration"))
async def flux_history(request: web.Request, query: FluxHistoryQuery) -> FluxHistory:
    name = unquote(request.match_info["calibrator_name"])
    data = await asyncio.to_thread(monitoring.flux_history, rt(request).db, name, query.days)
    if data is None:
        raise ApiError(404, f"calibrator {name!r} has never been measured", code="NOT_FOUND")
    return FluxHistory(**data)


@router.route("GET", "/api/v1/health/pointing", summary="Current LST and upcoming calibrator transits",
              response=PointingStatus, tags=("health",))
async def pointing(request: web.Request) -> PointingStatus:
    runtime = rt(request)
    data = await asyncio.to_thread(monitoring.pointing_status, runtime.db, runtime.settings)
    return PointingStatus(**data)


@router.route("GET", "/api/v1/health/alerts", summary="Monitoring alerts", query=AlertsQuery,
              response=AlertsResponse, tags=("health",))
async def alerts(request: web.Request, query: AlertsQuery) -> AlertsResponse:
    data = await asyncio.to_thread(monitoring.list_alerts, rt(request).db, query.severity, query.acknowledged,
                                   query.limit)
    return AlertsResponse(**data)


@router.route("POST", "/api/v1/health/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert", response=Ok,
              role="operator", tags=("health",))
async def acknowledge(request: web.Request, principal: Principal) -> Ok:
    raw = request.match_info["alert_id"]
    if not raw.isdigit():
        raise ApiError(422, f"alert id must be an integer, got {raw!r}", code="VALIDATION_FAILED")
    if not await asyncio.to_thread(monitoring.acknowledge_alert, rt(request).db, int(raw), principal.username):
        raise ApiError(404, f"no alert {raw}")
    return Ok()


@router.route("GET", "/api/v1/services/status", summary="Service probe", response=ServicesStatus, role="public",
              tags=("health",))
async def services_status(request: web.Request) -> ServicesStatus:
    runtime = rt(request)
    now = datetime.now(UTC)
    port = int((runtime.api_url or ":0").rsplit(":", 1)[1])
    items = []
    for s in await _services(request):
        status = {"healthy": "running", "running": "running", "degraded": "degraded", "stopped": "stopped"}.get(
            s.status, "unknown")
        items.append(ProbedService(name=s.name, port=port if s.name in ("rest",) else 0,
                                   description=s.message or s.name, status=status, responseTime=0.0,
                                   lastChecked=now, error=None if status in ("running",) else s.message,
                                   details=s.details))
    running = sum(1 for i in items if i.status == "running")
    return ServicesStatus(services=items, summary={"total": len(items), "running": running,
                                                   "stopped": len(items) - running}, timestamp=now)


async def _dashboard(request: web.Request) -> MetricsDashboard:
    runtime = rt(request)
    db = runtime.db
    counts, tp = await asyncio.gather(asyncio.to_thread(stats.queue_counts, db), asyncio.to_thread(stats.throughput, db))
    res = monitoring.resources()
    done = tp["1h"]["completed"] + tp["1h"]["failed"]
    durs = tp["durations_s"]
    disk = await asyncio.to_thread(monitoring.storage_summary, runtime.settings)
    disk_pct = disk["partitions"][0]["usage_percent"]
    eng = runtime.engine.status()
    pipeline = {"jobs_per_hour": float(tp["1h"]["completed"]),
                "avg_job_duration_sec": sum(durs) / len(durs) if durs else 0.0,
                "success_rate_percent": 100.0 * tp["1h"]["completed"] / done if done else 100.0,
                "queue_depth": float(counts.get("queued", 0)), "active_workers": float(len(eng["active_jobs"])),
                "total_workers": float(eng["workers"] if eng["running"] else 0)}

    def metric(mid: str, name: str, desc: str, unit: str, value: float, warn: float, crit: float) -> SystemMetric:
        status = "critical" if value >= crit else ("warning" if value >= warn else "healthy")
        return SystemMetric(id=mid, name=name, description=desc, unit=unit, current=value, trend="stable",
                            trendPercent=0.0, status=status, history=[])

    metrics = [
        metric("cpu", "CPU", "host CPU use", "%", res["cpu_percent"], 85, 95),
        metric("memory", "Memory", "host memory use", "%", res["memory_percent"], 85, 95),
        metric("disk", "Disk", "data dir partition use", "%", disk_pct, 85, 95),
        metric("queue_depth", "Queue depth", "jobs waiting", "jobs", pipeline["queue_depth"], 100, 500),
    ]
    return MetricsDashboard(resources={**res, "disk_io_mbps": 0.0, "network_io_mbps": 0.0}, pipeline=pipeline,
                            metrics=metrics, updated_at=datetime.now(UTC))


@router.route("GET", "/api/v1/metrics/dashboard", summary="Resource and pipeline metrics",
              response=MetricsDashboard, tags=("metrics",))
async def metrics_dashboard(request: web.Request) -> MetricsDashboard:
    return await _dashboard(request)


@router.route("GET", "/api/v1/metrics/{metric_id}/history", summary="One metric (current value; no history kept)",
              query=HistoryQuery, response=SystemMetric, tags=("metrics",))
async def metric_history(request: web.Request, query: HistoryQuery) -> SystemMetric:
    mid = request.match_info["metric_id"]
    for metric in (await _dashboard(request)).metrics:
        if metric.id == mid:
            return metric
    raise ApiError(404, f"no metric {mid!r}; known: cpu, memory, disk, queue_depth")


# ---- storage ---------------------------------------------------------------------------------------------
@router.route("GET", "/api/v1/health/storage/summary", summary="Disk and data-dir usage", response=StorageSummary,
              tags=("storage",))
async def storage_summary(request: web.Request) -> StorageSummary:
    return StorageSummary(**await asyncio.to_thread(monitoring.storage_summary, rt(request).settings))


@router.route("GET", "/api/v1/health/storage/cleanup-recommendations", summary="What could be deleted, and why",
              response=CleanupRecommendations, tags=("storage",))
async def cleanup_recommendations(request: web.Request) -> CleanupRecommendations:
    runtime = rt(request)
    return CleanupRecommendations(**await asyncio.to_thread(monitoring.cleanup_candidates, runtime.settings,
                                                            runtime.db))


@router.route("GET", "/api/v1/health/storage/trends", summary="Disk usage over time (hourly samples)",
              query=DaysQuery, response=list[StorageTrend], tags=("storage",))
async def storage_trends(request: web.Request, query: DaysQuery) -> list[StorageTrend]:
    runtime = rt(request)
    data = await asyncio.to_thread(monitoring.storage_trend, runtime.db, runtime.settings, query.days)
    return [StorageTrend(**data)]


# ---- Prometheus ------------------------------------------------------------------------------------------------
@router.route("GET", "/metrics", summary="Prometheus metrics", role="public", tags=("metrics",),
              content_type="text/plain")
async def prometheus(request: web.Request) -> web.Response:
    from contimg_console.api.prometheus import render

    body, ctype = await asyncio.to_thread(render, rt(request))
    return web.Response(body=body, headers={"Content-Type": ctype})
