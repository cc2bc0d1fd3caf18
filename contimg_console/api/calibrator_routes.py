"""Calibrator imaging workflow (spec §18.1): calibrators, transits, observations, and the three
steps (make MS, calibrate, image) mapped onto the engine's stages for the chosen group.
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
from engine.monitoring import from_mjd, mjd

router = Router()
SIDEREAL_DAY = 0.99726957


class CalibratorInfo(BaseModel):
    id: int
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float | None
    status: str


class StatusQuery(BaseModel):
    status: str | None = None


class TransitQuery(BaseModel):
    days_back: float = Field(7, ge=0, le=3650)
    days_forward: float = Field(2, ge=0, le=365)


class TransitInfo(BaseModel):
    transit_time_iso: datetime
    transit_time_mjd: float
    has_data: bool
    num_subband_groups: int
    observation_ids: list[str]


class ObsQuery(BaseModel):
    transit_time_iso: datetime
    window_minutes: float = Field(60, gt=0, le=24 * 60)


class ObservationInfo(BaseModel):
    observation_id: str
    start_time_iso: datetime
    mid_time_iso: datetime
    end_time_iso: datetime
    num_subbands: int
    file_paths: list[str]
    delta_from_transit_min: float


class GenerateBody(BaseModel):
    calibrator_name: str
    observation_id: str
    output_name: str | None = None


class CalibrateBody(BaseModel):
    ms_path: str
    calibrator_name: str


class ImageBody(BaseModel):
    ms_path: str
    imsize: int | None = Field(None, ge=64, le=20000)
    cell: str | None = None
    niter: int | None = Field(None, ge=0, le=10_000_000)
    threshold: str | None = None


class StepResult(BaseModel):
    job_id: str
    status: str
    ms_path: str | None = None
    cal_table_path: str | None = None
    image_path: str | None = None


class CalJobInfo(BaseModel):
    job_id: str
    job_type: str
    status: Literal["pending", "running", "completed", "failed"]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    result: dict[str, Any] | None


class PhotQuery(BaseModel):
    source_name: str


class PhotometryResult(BaseModel):
    source_name: str
    ra_deg: float
    dec_deg: float
    peak_flux_jy: float
    integrated_flux_jy: float
    rms_jy: float
    snr: float


class DataCoverage(BaseModel):
    has_data: bool
    earliest_time_iso: datetime | None = None
    latest_time_iso: datetime | None = None
    earliest_mjd: float | None = None
    latest_mjd: float | None = None
    total_files: int | None = None
    total_groups: int | None = None
    days_since_latest: float | None = None
    total_days_span: float | None = None
    recommended_days_back: float | None = None
    message: str | None = None


def _catalogue(request: web.Request) -> list[Any]:
    from engine.calibration.catalogue import merged_catalogue

    return merged_catalogue(rt(request).settings.calibration.catalogue_files or None)


def _cal(request: web.Request, name: str) -> Any:
    from engine.calibration.catalogue import CatalogueError, find_calibrator

    try:
        return find_calibrator(name, _catalogue(request))
    except (CatalogueError, KeyError, ValueError):
        raise ApiError(404, f"no calibrator {name!r} in the catalogue", code="NOT_FOUND") from None


@router.route("GET", "/api/v1/calibrator-imaging/calibrators", summary="Calibrators in the catalogue",
              query=StatusQuery, response=list[CalibratorInfo], tags=("calibration",))
async def calibrators(request: web.Request, query: StatusQuery) -> list[CalibratorInfo]:
    cats = await asyncio.to_thread(_catalogue, request)
    return [CalibratorInfo(id=i, name=c.name, ra_deg=c.ra_deg, dec_deg=c.dec_deg, flux_jy=c.flux_jy, status="active")
            for i, c in enumerate(cats, 1)]


def _groups_near(request: web.Request, t: datetime, window: timedelta) -> list[m.ObservationGroup]:
    with rt(request).db.session() as s:
        return list(s.scalars(select(m.ObservationGroup).where(
            m.ObservationGroup.group_time >= t - window, m.ObservationGroup.group_time <= t + window)
            .order_by(m.ObservationGroup.group_time)))


@router.route("GET", "/api/v1/calibrator-imaging/calibrators/{name}/transits", summary="Transits of a calibrator",
              query=TransitQuery, response=list[TransitInfo], tags=("calibration",))
async def transits(request: web.Request, query: TransitQuery) -> list[TransitInfo]:
    import numpy as np

    from engine.calibration.transit import meridian_ra_deg

    cal = await asyncio.to_thread(_cal, request, unquote(request.match_info["name"]))
    now = mjd(datetime.now(UTC))
    start = now - query.days_back

    def work() -> list[TransitInfo]:
        import bisect

        lst = float(np.ravel(meridian_ra_deg(start))[0])
        t = start + ((cal.ra_deg - lst) % 360.0) / 360.0 * SIDEREAL_DAY
        window = timedelta(minutes=15)
        groups = _groups_near(request, from_mjd((start + now + query.days_forward) / 2),
                              timedelta(days=(now + query.days_forward - start) / 2 + 1))
        times = [g.group_time for g in groups]  # one query for the whole range, then bisect per transit
        out = []
        while t <= now + query.days_forward:
            when = from_mjd(t)
            lo, hi = bisect.bisect_left(times, when - window), bisect.bisect_right(times, when + window)
            near = groups[lo:hi]
            out.append(TransitInfo(transit_time_iso=when, transit_time_mjd=t, has_data=bool(near),
                                   num_subband_groups=len(near), observation_ids=[g.id for g in near]))
            t += SIDEREAL_DAY
        return out[::-1]

    return await asyncio.to_thread(work)


@router.route("GET", "/api/v1/calibrator-imaging/calibrators/{name}/observations",
              summary="Observation groups around a transit", query=ObsQuery, response=list[ObservationInfo],
              tags=("calibration",))
async def observations(request: web.Request, query: ObsQuery) -> list[ObservationInfo]:
    await asyncio.to_thread(_cal, request, unquote(request.match_info["name"]))
    t = query.transit_time_iso if query.transit_time_iso.tzinfo else query.transit_time_iso.replace(tzinfo=UTC)

    def work() -> list[ObservationInfo]:
        out = []
        with rt(request).db.session() as s:
            for g in s.scalars(select(m.ObservationGroup).where(
                    m.ObservationGroup.group_time >= t - timedelta(minutes=query.window_minutes),
                    m.ObservationGroup.group_time <= t + timedelta(minutes=query.window_minutes))
                    .order_by(m.ObservationGroup.group_time)):
                start = g.group_time
                mid, end = start + timedelta(seconds=154.5), start + timedelta(seconds=309)
                files = [f.path for f in g.files if f.status == "grouped"]
                out.append(ObservationInfo(observation_id=g.id, start_time_iso=start, mid_time_iso=mid,
                                           end_time_iso=end, num_subbands=g.n_subbands, file_paths=files,
                                           delta_from_transit_min=(mid - t).total_seconds() / 60))
        return out

    return await asyncio.to_thread(work)


def _queue(request: web.Request, group_id: str, job_type: str, who: str) -> str:
    from contimg_console.api.pipeline_routes import _queue_stage

    return _queue_stage(request, group_id, None, job_type, 10, who)


def _group_of_ms(request: web.Request, ms_path: str) -> str:
    with rt(request).db.session() as s:
        ms = s.scalar(select(m.MeasurementSet).where(m.MeasurementSet.path == ms_path.rstrip("/")))
        if ms is None:
            raise ApiError(404, f"no registered Measurement Set at {ms_path}", code="MS_NOT_FOUND")
        return ms.group_id


@router.route("POST", "/api/v1/calibrator-imaging/generate-ms", summary="Convert a calibrator observation",
              body=GenerateBody, response=StepResult, role="operator", tags=("calibration",))
async def generate_ms(request: web.Request, body: GenerateBody, principal: Principal) -> StepResult:
    job = await asyncio.to_thread(_queue, request, body.observation_id, "convert", principal.username)
    rt(request).engine.poke()
    return StepResult(job_id=job, status="pending")


@router.route("POST", "/api/v1/calibrator-imaging/calibrate", summary="Solve on a converted calibrator MS",
              body=CalibrateBody, response=StepResult, role="operator", tags=("calibration",))
async def calibrate(request: web.Request, body: CalibrateBody, principal: Principal) -> StepResult:
    gid = await asyncio.to_thread(_group_of_ms, request, body.ms_path)
    job = await asyncio.to_thread(_queue, request, gid, "solve", principal.username)
    rt(request).engine.poke()
    return StepResult(job_id=job, status="pending")


@router.route("POST", "/api/v1/calibrator-imaging/image", summary="Image a calibrated MS", body=ImageBody,
              response=StepResult, role="operator", tags=("calibration",))
async def image(request: web.Request, body: ImageBody, principal: Principal) -> StepResult:
    gid = await asyncio.to_thread(_group_of_ms, request, body.ms_path)
    job = await asyncio.to_thread(_queue, request, gid, "image", principal.username)
    rt(request).engine.poke()
    return StepResult(job_id=job, status="pending")


@router.route("GET", "/api/v1/calibrator-imaging/job/{job_id}", summary="Progress of a workflow step",
              response=CalJobInfo, tags=("calibration",))
async def job(request: web.Request) -> CalJobInfo:
    runtime = rt(request)
    j = await asyncio.to_thread(runtime.engine.queue.get, request.match_info["job_id"])
    if j is None:
        raise ApiError(404, f"no job {request.match_info['job_id']!r}")
    status = {"queued": "pending", "running": "running", "succeeded": "completed"}.get(j.state, "failed")
    result = None
    if status == "completed":
        info = await asyncio.to_thread(runtime.services.group_provenance, j.group_id) if j.group_id else {}
        out = j.outcome or {}
        result = {"ms_path": out.get("ms_path") or info.get("ms_path"),
                  "cal_table_path": out.get("gain_table") or info.get("cal_table"),
                  "image_path": (out.get("products") or {}).get("image") if isinstance(out.get("products"), dict)
                  else None}
        if result["image_path"] is None and info.get("image_id"):
            img = await asyncio.to_thread(_image_path, request, info["image_id"])
            result["image_path"] = img
    return CalJobInfo(job_id=j.id, job_type=j.type, status=status, created_at=j.created_at, started_at=j.started_at,
                      completed_at=j.finished_at, error_message=j.error, result=result)


def _image_path(request: web.Request, image_id: str) -> str | None:
    with rt(request).db.session() as s:
        img = s.get(m.Image, image_id)
        return img.path if img else None


@router.route("GET", "/api/v1/calibrator-imaging/photometry/{image_path:.+}", summary="Calibrator flux in an image",
              query=PhotQuery, response=PhotometryResult, tags=("calibration",))
async def photometry(request: web.Request, query: PhotQuery) -> PhotometryResult:
    path = unquote(request.match_info["image_path"])
    if not path.startswith("/"):
        path = "/" + path
    cal = await asyncio.to_thread(_cal, request, query.source_name)
    known = await asyncio.to_thread(_image_known, request, path)
    if not known:
        raise ApiError(404, f"no registered image at {path}", code="NOT_FOUND")

    def work() -> dict[str, Any]:
        from astropy.io import fits

        from engine.sources.photometry import forced_photometry

        with fits.open(path, memmap=False) as hdul:
            data, header = hdul[0].data, hdul[0].header
            row = forced_photometry(data, header, [cal.ra_deg], [cal.dec_deg])[0]
        if not row.get("inside"):
            raise ApiError(422, f"{cal.name} lies outside this image", code="PHOTOMETRY_BAD_COORDS")
        return row

    row = await asyncio.to_thread(work)
    return PhotometryResult(source_name=cal.name, ra_deg=cal.ra_deg, dec_deg=cal.dec_deg,
                            peak_flux_jy=float(row.get("peak_jy", row["flux_jy"])),
                            integrated_flux_jy=float(row["flux_jy"]), rms_jy=float(row["local_rms_jy"]),
                            snr=float(row["snr"]))


def _image_known(request: web.Request, path: str) -> bool:
    with rt(request).db.session() as s:
        return s.scalar(select(m.Image.id).where(m.Image.path == path)) is not None


@router.route("GET", "/api/v1/calibrator-imaging/health", summary="Workflow configuration", response={"type": "object"},
              tags=("calibration",))
async def health(request: web.Request) -> dict[str, Any]:
    s = rt(request).settings

    def entry(path: Any, **extra: Any) -> dict[str, Any]:
        return {"path": str(path), "exists": path.exists(), **extra}

    def work() -> dict[str, Any]:
        incoming = sum(1 for _ in s.incoming_dir.glob("*.hdf5")) if s.incoming_dir.exists() else 0
        ms_count = sum(1 for _ in s.ms_dir.glob("*.ms")) if s.ms_dir.exists() else 0
        conf = {"hdf5_db": entry(s.db_path), "products_db": entry(s.db_path), "calibrators_db": entry(s.db_path),
                "incoming_dir": entry(s.incoming_dir, hdf5_file_count=incoming),
                "output_ms_dir": entry(s.ms_dir, ms_file_count=ms_count), "output_images_dir": entry(s.images_dir)}
        ok = all(v["exists"] for v in conf.values())
        return {"status": "healthy" if ok else "degraded", "configuration": conf,
                "hdf5_db_exists": s.db_path.exists(), "calibrators_db_exists": s.db_path.exists(),
                "incoming_dir_exists": s.incoming_dir.exists(), "output_ms_dir_exists": s.ms_dir.exists(),
                "output_images_dir_exists": s.images_dir.exists()}

    return await asyncio.to_thread(work)


@router.route("GET", "/api/v1/calibrator-imaging/data-coverage", summary="Time span of the recorded data",
              response=DataCoverage, tags=("calibration",))
async def coverage(request: web.Request) -> DataCoverage:
    def work() -> DataCoverage:
        with rt(request).db.session() as s:
            lo, hi, n = s.execute(select(func.min(m.Hdf5File.timestamp), func.max(m.Hdf5File.timestamp),
                                         func.count()).where(m.Hdf5File.timestamp.is_not(None))).one()
            groups = s.scalar(select(func.count()).select_from(m.ObservationGroup)) or 0
        if not n:
            return DataCoverage(has_data=False, total_files=0, total_groups=groups, recommended_days_back=7,
                                message="no subband files recorded yet")
        lo = lo if lo.tzinfo else lo.replace(tzinfo=UTC)
        hi = hi if hi.tzinfo else hi.replace(tzinfo=UTC)
        since = (datetime.now(UTC) - hi).total_seconds() / 86400
        return DataCoverage(has_data=True, earliest_time_iso=lo, latest_time_iso=hi, earliest_mjd=mjd(lo),
                            latest_mjd=mjd(hi), total_files=n, total_groups=groups, days_since_latest=since,
                            total_days_span=(hi - lo).total_seconds() / 86400,
                            recommended_days_back=max(7.0, since + 1))

    return await asyncio.to_thread(work)
