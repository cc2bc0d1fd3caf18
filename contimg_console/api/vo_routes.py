"""VO export (spec §5): export jobs, previews, downloads and cone search; TAP is not offered."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine import vo_export as vo
from engine.auth import Principal

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


@router.route("POST", "/api/v1/vo/tap/query", summary="ADQL/TAP (not offered)", response={"type": "object"},
              tags=("vo",), responses={501: "Not implemented"})
async def tap(request: web.Request) -> None:
    raise ApiError(501, "TAP/ADQL is not offered; use saved queries or cone search", code="NOT_IMPLEMENTED")
