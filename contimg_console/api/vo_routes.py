"""VO (spec §5): export jobs, previews, downloads, the dashboard's cone search and TAP query, and the
IVOA services themselves: Simple Cone Search 1.03 (``/vo/scs``) and TAP 1.1 sync (``/vo/tap``)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine import vo_export as vo
from engine.auth import Principal
from engine.vo import scs, tap, vosi
from engine.vo.votable import MEDIA_TYPE, VOError, error_document, table_document

router = Router()
Fmt = Literal["votable", "fits", "csv", "json"]
DataType = Literal["sources", "images", "catalogs", "spectra"]
MEDIA = {"votable": "application/x-votable+xml", "fits": "application/fits", "csv": "text/csv",
         "json": "application/json"}


class Cone(BaseModel):
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    radius_arcmin: float = Field(gt=0, le=600)


class TimeRange(BaseModel):
    start: datetime
    end: datetime


class ExportFilter(BaseModel):
    data_type: DataType
    cone_search: Cone | None = None
    time_range: TimeRange | None = None
    magnitude_range: dict[str, float] | None = None
    quality_flags: list[str] | None = None
    limit: int | None = Field(None, ge=1, le=1_000_000)
    columns: list[str] | None = None


class ExportJob(BaseModel):
    id: str
    name: str
    format: Fmt
    data_type: DataType
    filter: dict[str, Any]
    status: Literal["pending", "processing", "completed", "failed", "expired"]
    record_count: int
    file_size_bytes: int
    file_size_formatted: str
    created_at: datetime
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    download_url: str | None = None
    error_message: str | None = None
    created_by: str


class ExportList(BaseModel):
    exports: list[ExportJob]


class ExportListParams(BaseModel):
    status: Literal["pending", "processing", "completed", "failed", "expired"] | None = None
    format: Fmt | None = None
    limit: int = Field(50, ge=1, le=1000)


class CreateExport(BaseModel):
    name: str | None = Field(None, max_length=255)
    format: Fmt = "votable"
    filter: ExportFilter


class ExportColumn(BaseModel):
    name: str
    ucd: str
    description: str
    data_type: str
    unit: str | None = None
    required: bool


class Columns(BaseModel):
    columns: list[ExportColumn]


class Preview(BaseModel):
    estimated_records: int
    estimated_size_bytes: int
    estimated_time_seconds: float
    available_columns: list[ExportColumn]
    warnings: list[str]


class ConeBody(BaseModel):
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    radius_arcmin: float = Field(gt=0, le=600)
    limit: int = Field(100, ge=1, le=100_000)


class ConeHit(BaseModel):
    id: str
    name: str
    ra: float
    dec: float
    separation_arcsec: float


class ConeResult(BaseModel):
    total_matches: int
    search_ra: float
    search_dec: float
    search_radius: float
    sources: list[ConeHit]



def _flt(f: ExportFilter) -> dict[str, Any]:
    if f.data_type == "spectra":
        raise ApiError(422, "spectra are not produced by this continuum pipeline", code="VALIDATION_FAILED")
    return f.model_dump(mode="json", exclude_none=True)


@router.route("GET", "/api/v1/vo/exports", summary="Export jobs", query=ExportListParams, response=ExportList,
              tags=("vo",), aliases=("/api/v1/api/v1/vo/exports",))
async def list_exports(request: web.Request, query: ExportListParams) -> ExportList:
    rows = await asyncio.to_thread(vo.list_exports, rt(request).db, query.status, query.format, query.limit)
    return ExportList(exports=[ExportJob(**r) for r in rows])


@router.route("POST", "/api/v1/vo/exports/preview", summary="Estimate an export", body=ExportFilter,
              response=Preview, tags=("vo",), read_only=True)
async def preview(request: web.Request, body: ExportFilter) -> Preview:
    return Preview(**await asyncio.to_thread(vo.preview, rt(request).db, _flt(body)))


@router.route("POST", "/api/v1/vo/exports", summary="Create an export job (runs in the background)",
              body=CreateExport, response=ExportJob, tags=("vo",))
async def create(request: web.Request, body: CreateExport, principal: Principal) -> ExportJob:
    user = require_user(principal, "exporting")
    runtime = rt(request)
    name = body.name or f"{body.filter.data_type.capitalize()} Export"
    row = await asyncio.to_thread(vo.create, runtime.db, name=name, fmt=body.format, flt=_flt(body.filter),
                                  created_by=user)
    if row["status"] == "pending":
        runtime.track(asyncio.create_task(asyncio.to_thread(vo.run_export, runtime.db, runtime.settings.exports_dir,
                                                            row["id"])))
    return ExportJob(**row)


@router.route("GET", "/api/v1/vo/exports/{id}", summary="One export job", response=ExportJob, tags=("vo",),
              aliases=("/api/v1/api/v1/vo/exports/{id}",))
async def get_export(request: web.Request) -> ExportJob:
    row = await asyncio.to_thread(vo.get_export, rt(request).db, request.match_info["id"])
    if row is None:
        raise ApiError(404, f"no export {request.match_info['id']!r}")
    return ExportJob(**row)


@router.route("GET", "/api/v1/vo/exports/{id}/download", summary="Download a finished export", role="public",
              tags=("vo",), content_type="application/octet-stream")
async def download(request: web.Request) -> web.StreamResponse:
    row = await asyncio.to_thread(vo.get_export, rt(request).db, request.match_info["id"])
    if row is None or row["status"] != "completed" or not row.get("file_path"):
        raise ApiError(404, f"no finished export {request.match_info['id']!r}")
    name = f"{row['name'].replace(' ', '_')}{vo.FORMATS[row['format']]}"
    return web.FileResponse(row["file_path"], headers={"Content-Type": MEDIA[row["format"]],
                                                       "Content-Disposition": f'attachment; filename="{name}"'})


@router.route("DELETE", "/api/v1/vo/exports/{id}", summary="Delete an export", response=Ok, tags=("vo",))
async def delete(request: web.Request, principal: Principal) -> Ok:
    require_user(principal, "deleting exports")
    if not await asyncio.to_thread(vo.delete_export, rt(request).db, request.match_info["id"]):
        raise ApiError(404, f"no export {request.match_info['id']!r}")
    return Ok()


@router.route("GET", "/api/v1/vo/columns/{data_type}", summary="Columns of an export type", response=Columns,
              tags=("vo",), aliases=("/api/v1/api/v1/vo/columns/{data_type}",))
async def cols(request: web.Request) -> Columns:
    try:
        return Columns(columns=[ExportColumn(**c) for c in vo.columns(request.match_info["data_type"])])
    except vo.ExportError as exc:
        raise ApiError(404, str(exc)) from None


@router.route("POST", "/api/v1/vo/cone-search", summary="Cone search over the source table", body=ConeBody,
              response=ConeResult, tags=("vo",), read_only=True)
async def cone(request: web.Request, body: ConeBody) -> ConeResult:
    return ConeResult(**await asyncio.to_thread(vo.cone_search, rt(request).db, body.ra, body.dec,
                                                body.radius_arcmin, body.limit))


class TapQueryBody(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)


class TAPResult(BaseModel):
    query_id: str
    status: Literal["queued", "executing", "completed", "error", "aborted"]
    result_count: int | None = None
    result_url: str | None = None
    error_message: str | None = None


VO_TAGS = ("vo",)
_VOT = {"Content-Type": MEDIA_TYPE}


def _vot(body: bytes) -> web.Response:
    return web.Response(body=body, headers=_VOT)


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


async def _params(request: web.Request) -> dict[str, str]:
    """Query string plus, for POST, the form body (TAP clients POST form-encoded parameters)."""
    params = {k: v for k, v in request.query.items()}
    if request.method == "POST":
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


@router.route("GET", "/api/v1/vo/scs", summary="IVOA Simple Cone Search 1.03: RA, DEC, SR in degrees, VERB 1-3",
              tags=VO_TAGS, content_type=MEDIA_TYPE)
async def scs_search(request: web.Request) -> web.Response:
    return _vot(await asyncio.to_thread(scs.search, rt(request).db, dict(request.query)))


async def _sync(request: web.Request) -> web.Response:
    params = await _params(request)
    settings = rt(request).settings
    return _vot(await asyncio.to_thread(tap.sync, settings.db_path, params, tap.unavailable_on(settings)))


@router.route("GET", "/api/v1/vo/tap/sync", summary="TAP sync query (LANG=ADQL&QUERY=…[&MAXREC=n])", tags=VO_TAGS,
              content_type=MEDIA_TYPE)
async def tap_sync_get(request: web.Request) -> web.Response:
    return await _sync(request)


@router.route("POST", "/api/v1/vo/tap/sync", summary="TAP sync query, form-encoded (how pyvo and TOPCAT send it)",
              tags=VO_TAGS, content_type=MEDIA_TYPE, read_only=True)
async def tap_sync_post(request: web.Request) -> web.Response:
    return await _sync(request)


def _tap_base(request: web.Request) -> str:
    return str(request.url.with_path("/api/v1/vo/tap").with_query(None))


@router.route("GET", "/api/v1/vo/tap/capabilities", summary="VOSI capabilities of the TAP service", tags=VO_TAGS,
              content_type="text/xml")
async def tap_capabilities(request: web.Request) -> web.Response:
    return _xml(vosi.capabilities(_tap_base(request)))


@router.route("GET", "/api/v1/vo/tap/tables", summary="VOSI tables: the published tables and columns", tags=VO_TAGS,
              content_type="text/xml")
async def tap_tables(request: web.Request) -> web.Response:
    return _xml(vosi.tables())


@router.route("GET", "/api/v1/vo/tap/availability", summary="VOSI availability", tags=VO_TAGS,
              content_type="text/xml")
async def tap_availability(request: web.Request) -> web.Response:
    path = rt(request).settings.db_path
    unavailable = tap.unavailable_on(rt(request).settings)
    if unavailable:
        return _xml(vosi.availability(False, unavailable))
    up = await asyncio.to_thread(os.access, path, os.R_OK)
    return _xml(vosi.availability(up, "accepting queries" if up else f"database {path} is not readable"))


def _tap_dir(request: web.Request):
    return rt(request).settings.exports_dir / "tap"


def _run_dashboard_query(db_path, folder, query_id: str, query: str, unavailable: str | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if unavailable:
            raise VOError(unavailable)
        res = tap.execute(db_path, query)
        body = table_document(res.columns, res.rows, tap.META, overflow=res.overflow)
        out = {"query_id": query_id, "status": "completed", "result_count": len(res.rows),
               "result_url": f"/api/v1/vo/tap/query/{query_id}/result"}
    except VOError as exc:
        body = error_document(str(exc))
        out = {"query_id": query_id, "status": "error", "error_message": str(exc)}
    tmp = folder / f"{query_id}.vot.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, folder / f"{query_id}.vot")
    (folder / f"{query_id}.json").write_text(json.dumps(out))
    return out


@router.route("POST", "/api/v1/vo/tap/query", summary="ADQL query through the TAP service (runs at once)",
              body=TapQueryBody, response=TAPResult, tags=VO_TAGS, read_only=True)
async def tap_query(request: web.Request, body: TapQueryBody) -> TAPResult:
    runtime = rt(request)
    out = await asyncio.to_thread(_run_dashboard_query, runtime.settings.db_path, _tap_dir(request),
                                  uuid.uuid4().hex, body.query, tap.unavailable_on(runtime.settings))
    return TAPResult(**out)


def _query_id(request: web.Request) -> str:
    qid = request.match_info["query_id"]
    if len(qid) != 32 or any(c not in "0123456789abcdef" for c in qid):
        raise ApiError(404, f"no TAP query {qid!r}")
    return qid


@router.route("GET", "/api/v1/vo/tap/query/{query_id}", summary="A dashboard TAP query's status",
              response=TAPResult, tags=VO_TAGS)
async def tap_query_status(request: web.Request) -> TAPResult:
    path = _tap_dir(request) / f"{_query_id(request)}.json"
    try:
        return TAPResult(**json.loads(await asyncio.to_thread(path.read_text)))
    except FileNotFoundError:
        raise ApiError(404, f"no TAP query {request.match_info['query_id']!r}") from None


@router.route("GET", "/api/v1/vo/tap/query/{query_id}/result", summary="A dashboard TAP query's VOTable",
              tags=VO_TAGS, content_type=MEDIA_TYPE)
async def tap_query_result(request: web.Request) -> web.StreamResponse:
    path = _tap_dir(request) / f"{_query_id(request)}.vot"
    if not path.is_file():
        raise ApiError(404, f"no TAP result {request.match_info['query_id']!r}")
    return web.FileResponse(path, headers=_VOT)
