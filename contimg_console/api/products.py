"""Images (spec §14), sources (§15) and Measurement Sets (§17).

Files are served only for products the database knows: an MS path in a URL must
be a registered MS, an image id must exist — the server never reads an arbitrary
path a client names.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tarfile
import zipfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import numpy as np
from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api import listing_rows
from contimg_console.api.common import Ok, ms_route, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.jobs import Provenance
from contimg_console.api.listing import NOT_MODIFIED
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.products import Products, ms_antenna_layout

router = Router()
QAGrade = Literal["good", "warn", "fail"] | None


def products(request: web.Request) -> Products:
    return Products(rt(request).db)


# ---- models ---------------------------------------------------------------------
class ImageSummary(BaseModel):
    id: str
    path: str
    qa_grade: QAGrade = None
    created_at: datetime
    run_id: str | None = None
    pointing_ra_deg: float | None = None
    pointing_dec_deg: float | None = None


class ImageDetail(ImageSummary):
    ms_path: str | None = None
    cal_table: str | None = None
    qa_summary: str | None = None
    noise_jy: float | None = None
    dynamic_range: float | None = None
    beam_major_arcsec: float | None = None
    beam_minor_arcsec: float | None = None
    beam_pa_deg: float | None = None
    peak_flux_jy: float | None = None


class Point(BaseModel):
    x: float
    y: float


class Region(BaseModel):
    id: str = Field(max_length=64)
    shape: Literal["circle", "box", "ellipse", "polygon", "point"]
    x: float
    y: float
    radius: float | None = None
    width: float | None = None
    height: float | None = None
    points: list[Point] | None = Field(None, max_length=10000)
    text: str | None = Field(None, max_length=1000)
    color: str | None = Field(None, max_length=32)


class RegionsBody(BaseModel):
    format: Literal["ds9", "crtf", "json"]
    regions: list[Region] = Field(max_length=10000)


class RegionsSaved(BaseModel):
    saved: int
    updated_at: datetime


class MaskBody(BaseModel):
    format: Literal["ds9"]
    regions: str = Field(max_length=1_000_000)


class MaskSaved(BaseModel):
    id: str
    path: str
    format: str
    region_count: int
    created_at: datetime


class RatingBody(BaseModel):
    itemId: str
    confidence: Literal["true", "false", "unsure"]
    tagId: Literal["artifact", "good", "marginal", "rfi"]
    notes: str = Field("", max_length=4000)



class ThumbQuery(BaseModel):
    size: int | None = Field(None, ge=16, le=2048)


class FitsQuery(BaseModel):
    variant: Literal["image", "weights", "residual", "model", "psf"] = "image"


class BulkQuery(BaseModel):
    ids: str = Field(min_length=1, max_length=200_000)
    format: Literal["fits", "csv", "zip", "json"] = "zip"


class CutoutQuery(BaseModel):
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    unit: Literal["arcsec", "arcmin", "deg", "pixels"] = "arcmin"
    format: Literal["fits", "png"] = "fits"


class SourceSummary(BaseModel):
    id: str
    name: str | None = None
    ra_deg: float
    dec_deg: float
    image_id: str | None = None
    num_images: int | None = None
    eta: float | None = None
    v: float | None = None
    peak_flux_jy: float | None = None


class ContributingImage(BaseModel):
    image_id: str
    path: str
    ms_path: str | None = None
    qa_grade: QAGrade = None
    created_at: datetime | None = None
    flux_jy: float | None = None
    flux_error_jy: float | None = None


class SourceDetail(SourceSummary):
    flux_jy: float | None = None
    peak_flux: float | None = None
    integrated_flux: float | None = None
    contributing_images: list[ContributingImage] = []
    latest_image_id: str | None = None


class Variability(BaseModel):
    source_id: str
    n_epochs: int
    eta: float | None
    v: float | None
    chi2_nu: float | None
    modulation_index: float | None
    is_variable: bool
    light_curve: list[dict[str, Any]]


class ResolveQuery(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    service: Literal["all", "simbad", "ned", "vizier"] = "all"


class Resolved(BaseModel):
    object_name: str
    ra: float
    dec: float
    service: str


class CalibratorMatch(BaseModel):
    cal_table: str
    type: str


class MSMetadata(BaseModel):
    path: str
    pointing_ra_deg: float | None = None
    pointing_dec_deg: float | None = None
    created_at: datetime | None = None
    run_id: str | None = None
    qa_grade: QAGrade = None
    qa_summary: str | None = None
    cal_table: str | None = None
    scan_id: str | None = None
    num_channels: int | None = None
    integration_time_s: float | None = None
    calibrator_matches: list[CalibratorMatch] = []


class Antenna(BaseModel):
    id: int
    name: str
    x_m: float
    y_m: float
    flagged_pct: float
    baseline_count: int


class AntennaLayout(BaseModel):
    antennas: list[Antenna]
    array_center_lon: float
    array_center_lat: float
    total_baselines: int


class RasterQuery(BaseModel):
    xaxis: Literal["time", "baseline", "frequency"] = "time"
    yaxis: Literal["amp", "phase", "real", "imag"] = "amp"
    colormap: Literal["viridis", "plasma", "inferno", "magma", "cividis", "coolwarm", "RdBu", "Spectral"] = "viridis"
    width: int = Field(700, ge=64, le=4000)
    height: int = Field(450, ge=64, le=4000)


# ---- helpers -----------------------------------------------------------------------
async def _image(request: web.Request, image_id: str | None = None) -> dict[str, Any]:
    image_id = image_id or unquote(request.match_info["image_id"])
    img = await asyncio.to_thread(products(request).get_image, image_id)
    if img is None:
        raise ApiError(404, f"no image {image_id!r}", code="NOT_FOUND", ref_id=image_id)
    return img


def _file(path: str | None, content_type: str, what: str, filename: str | None = None) -> web.FileResponse:
    if not path or not os.path.isfile(path):
        raise ApiError(404, f"{what} is not on disk ({path or 'no file recorded'})", code="NOT_FOUND")
    headers = {"Content-Type": content_type, "Access-Control-Allow-Origin": "*"}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return web.FileResponse(path, headers=headers)


async def _ms(request: web.Request) -> dict[str, Any]:
    raw = request.match_info["ms_path"]
    path = unquote(raw)
    if not path.startswith("/"):
        path = "/" + path
    path = path.rstrip("/")
    record = await asyncio.to_thread(products(request).ms_record, path)
    if record is None:
        raise ApiError(404, f"no registered Measurement Set at {path}", code="MS_NOT_FOUND", ref_id=path)
    return record


# ---- images -----------------------------------------------------------------------------
@router.route("GET", "/api/v1/images/bulk-download", summary="Download several images", query=BulkQuery,
              tags=("images",), content_type="application/octet-stream")
async def bulk_download(request: web.Request, query: BulkQuery) -> web.StreamResponse:
    ids = [i for i in query.ids.split(",") if i][:500]
    imgs = [i for i in await asyncio.gather(*(asyncio.to_thread(products(request).get_image, x) for x in ids)) if i]
    if not imgs:
        raise ApiError(404, "none of the requested images exist", code="NOT_FOUND")
    if query.format == "json":
        return web.json_response([ImageDetail(**i).model_dump(mode="json") for i in imgs])
    if query.format == "csv":
        buf = io.StringIO()
        fields = list(ImageDetail.model_fields)
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        for i in imgs:
            w.writerow(ImageDetail(**i).model_dump(mode="json"))
        return web.Response(text=buf.getvalue(), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="images.csv"'})

    def build() -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for i in imgs:
                if os.path.isfile(i["path"]):
                    z.write(i["path"], arcname=Path(i["path"]).name)
        return out.getvalue()

    data = await asyncio.to_thread(build)
    return web.Response(body=data, content_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="images.zip"'})


async def cached_listing(request: web.Request, kind: str, build: Any, key: Any = None,
                         in_process: bool = False) -> web.Response:
    """A whole-table listing from the shared cache (see api/listing.py); ``build`` returns its rows."""
    return await request.app["listings"].respond(request, kind, key or kind, build, in_process)


@router.route("GET", "/api/v1/images", summary="All images, newest first", response=list[ImageSummary],
              responses=NOT_MODIFIED, tags=("images",))
async def list_images(request: web.Request) -> web.Response:
    return await cached_listing(request, "images", partial(listing_rows.images, rt(request).db.url),
                                in_process=True)


@router.route("GET", "/api/v1/images/{image_id}", summary="One image", response=ImageDetail, tags=("images",))
async def get_image(request: web.Request) -> ImageDetail:
    return ImageDetail(**await _image(request))


@router.route("DELETE", "/api/v1/images/{image_id}", summary="Delete an image and its products", response=Ok,
              role="operator", tags=("images",))
async def delete_image(request: web.Request) -> Ok:
    image_id = unquote(request.match_info["image_id"])
    result = await asyncio.to_thread(products(request).delete_image, image_id)
    if result is None:
        raise ApiError(404, f"no image {image_id!r}", code="NOT_FOUND")
    for path in result["files"]:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return Ok()


@router.route("GET", "/api/v1/images/{image_id}/provenance", summary="Provenance of an image", response=Provenance,
              tags=("images",))
async def image_provenance(request: web.Request) -> Provenance:
    i = await _image(request)
    return Provenance(runId=i.get("run_id"), msPath=i.get("ms_path"), calTable=i.get("cal_table"),
                      pointingRaDeg=i.get("pointing_ra_deg"), pointingDecDeg=i.get("pointing_dec_deg"),
                      qaGrade=i.get("qa_grade"), qaSummary=i.get("qa_summary"),
                      msUrl=ms_route(i["ms_path"]) if i.get("ms_path") else None, imageUrl=f"/images/{i['id']}",
                      logsUrl=f"/logs/{i['run_id']}" if i.get("run_id") else None, createdAt=i["created_at"])


def _sidecar(image_path: str, suffix: str) -> Path:
    return Path(image_path.removesuffix(".fits") + suffix)


@router.route("POST", "/api/v1/images/{image_id}/regions", summary="Save drawn regions", body=RegionsBody,
              response=RegionsSaved, role="viewer", tags=("images",))
async def save_regions(request: web.Request, body: RegionsBody) -> RegionsSaved:
    i = await _image(request)
    path = _sidecar(i["path"], ".regions.json")
    payload = {"format": body.format, "regions": [r.model_dump(mode="json") for r in body.regions]}
    await asyncio.to_thread(_atomic_write, path, json.dumps(payload).encode())
    return RegionsSaved(saved=len(body.regions), updated_at=datetime.now(UTC))


@router.route("POST", "/api/v1/images/{image_id}/masks", summary="Save a clean mask (DS9 region text)",
              body=MaskBody, response=MaskSaved, role="viewer", tags=("images",))
async def save_mask(request: web.Request, body: MaskBody) -> MaskSaved:
    i = await _image(request)
    shapes = [ln for ln in body.regions.splitlines()
              if ln.strip() and not ln.lstrip().startswith(("#", "global", "fk5", "image", "icrs", "physical"))]
    if not shapes:
        raise ApiError(422, "the DS9 region text has no shapes", code="VALIDATION_FAILED")
    now = datetime.now(UTC)
    mask_id = now.strftime("%Y%m%dT%H%M%S%f")
    path = _sidecar(i["path"], f".mask-{mask_id}.reg")
    await asyncio.to_thread(_atomic_write, path, body.regions.encode())
    return MaskSaved(id=mask_id, path=str(path), format="ds9", region_count=len(shapes), created_at=now)


@router.route("POST", "/api/v1/images/{image_id}/rating", summary="Quick QA rating of an image", body=RatingBody,
              response=Ok, role="viewer", tags=("images",))
async def rate_image(request: web.Request, body: RatingBody, principal: Principal) -> Ok:
    i = await _image(request)
    grade = {"good": "good", "marginal": "warn", "artifact": "fail", "rfi": "fail"}[body.tagId]
    if body.confidence == "false":
        grade = None  # the rater doubts the tag: keep the automatic grade, record the note
    note = f"{principal.username}: {body.tagId} ({body.confidence}) {body.notes}".strip()
    await asyncio.to_thread(products(request).set_image_rating, i["id"], grade, note)
    return Ok()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(path: str, size: int | None) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        if size:
            im.thumbnail((size, size))
        out = io.BytesIO()
        im.save(out, format="PNG")
        return out.getvalue()


@router.route("GET", "/api/v1/images/{image_id}/thumbnail", summary="PNG preview", query=ThumbQuery,
              role="public", tags=("images",), content_type="image/png")
async def thumbnail(request: web.Request, query: ThumbQuery) -> web.StreamResponse:
    i = await _image(request)
    if not i.get("png_path") or not os.path.isfile(i["png_path"]):
        raise ApiError(404, "no PNG preview on disk for this image", code="NOT_FOUND")
    if query.size is None:
        return _file(i["png_path"], "image/png", "PNG preview")
    data = await asyncio.to_thread(_png_bytes, i["png_path"], query.size)
    return web.Response(body=data, content_type="image/png", headers={"Access-Control-Allow-Origin": "*"})


@router.route("GET", "/api/v1/images/{image_id}/png", summary="PNG rendering", role="public", tags=("images",),
              content_type="image/png")
async def png(request: web.Request) -> web.StreamResponse:
    i = await _image(request)
    return _file(i.get("png_path"), "image/png", "PNG rendering")


@router.route("GET", "/api/v1/images/{image_id}/fits", summary="FITS file (image, residual, model, psf)",
              query=FitsQuery, role="public", tags=("images",), content_type="application/fits")
async def fits_file(request: web.Request, query: FitsQuery) -> web.StreamResponse:
    i = await _image(request)
    if query.variant == "weights":
        raise ApiError(404, "this image is not a mosaic: it has no weight map", code="NOT_FOUND")
    path = i["path"] if query.variant == "image" else i["path"].removesuffix("-image.fits") + f"-{query.variant}.fits"
    return _file(path, "application/fits", f"{query.variant} FITS", Path(path).name)


@router.route("GET", "/api/v1/images/{image_id}/cutout", summary="Cut-out around a position", query=CutoutQuery,
              role="public", tags=("images",), content_type="application/fits")
async def cutout(request: web.Request, query: CutoutQuery) -> web.Response:
    i = await _image(request)

    def work() -> tuple[bytes, str]:
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        from astropy.io import fits
        from astropy.nddata import Cutout2D
        from astropy.wcs import WCS

        with fits.open(i["path"], memmap=False) as hdul:
            data, header = hdul[0].data, hdul[0].header
            plane = data
            while plane.ndim > 2:
                plane = plane[0]
            wcs = WCS(header).celestial
            scale = {"arcsec": u.arcsec, "arcmin": u.arcmin, "deg": u.deg}
            size = ((query.height, query.width) if query.unit == "pixels"
                    else (query.height * scale[query.unit], query.width * scale[query.unit]))
            try:
                cut = Cutout2D(plane, SkyCoord(query.ra * u.deg, query.dec * u.deg), size, wcs=wcs)
            except Exception as exc:  # NoOverlapError, ValueError
                raise ApiError(422, f"cut-out not possible: {exc}", code="PHOTOMETRY_BAD_COORDS") from None
            if query.format == "png":
                return _render_png(cut.data, 256), "image/png"
            hdr = cut.wcs.to_header()
            for key in ("BMAJ", "BMIN", "BPA", "BUNIT", "DATE-OBS", "TELESCOP"):
                if key in header:
                    hdr[key] = header[key]
            out = io.BytesIO()
            fits.PrimaryHDU(cut.data.astype(np.float32), hdr).writeto(out)
            return out.getvalue(), "application/fits"

    data, ctype = await asyncio.to_thread(work)
    return web.Response(body=data, content_type=ctype)


class AnimationQuery(BaseModel):
    ra: float | None = Field(None, ge=0, lt=360, description="centre RA (deg); default: the image's pointing")
    dec: float | None = Field(None, ge=-90, le=90, description="centre Dec (deg); default: the image's pointing")
    size: int | None = Field(None, ge=16, le=1024, description="cut-out side in pixels; default: a quarter image")


@router.route("GET", "/api/v1/images/{image_id}/animation", summary="Animated cut-out: this patch of sky in every "
              "image covering it, in time order (GIF, one grey scale for all frames)", query=AnimationQuery,
              role="public", tags=("images",), content_type="image/gif")
async def animation(request: web.Request, query: AnimationQuery) -> web.Response:
    from engine.imaging.animation import animated_cutout

    i = await _image(request)
    ra = query.ra if query.ra is not None else i.get("pointing_ra_deg")
    dec = query.dec if query.dec is not None else i.get("pointing_dec_deg")
    if ra is None or dec is None:
        raise ApiError(422, "the image has no pointing recorded: give ra and dec", code="VALIDATION_FAILED")
    prods = products(request)

    def work() -> tuple[bytes, int]:
        return animated_cutout(i, prods.list_images(), ra, dec, query.size)

    try:
        gif, n = await asyncio.to_thread(work)
    except ValueError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    except OSError as exc:
        raise ApiError(404, f"the image file cannot be read: {exc}", code="FILE_MISSING") from None
    return web.Response(body=gif, content_type="image/gif", headers={"X-Frames": str(n)})


# ---- sources --------------------------------------------------------------------------------
@router.route("GET", "/api/v1/sources/export", summary="Export sources as CSV", query=BulkQuery, tags=("sources",),
              content_type="text/csv")
async def export_sources(request: web.Request, query: BulkQuery) -> web.Response:
    ids = set(i for i in query.ids.split(",") if i)
    rows = [r for r in await asyncio.to_thread(products(request).list_sources) if r["id"] in ids]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SourceSummary.model_fields))
    w.writeheader()
    for r in rows:
        w.writerow(SourceSummary(**r).model_dump(mode="json"))
    return web.Response(text=buf.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="sources.csv"'})


@router.route("GET", "/api/v1/sources", summary="All sources", response=list[SourceSummary],
              responses=NOT_MODIFIED, tags=("sources",))
async def list_sources(request: web.Request) -> web.Response:
    return await cached_listing(request, "sources", partial(listing_rows.sources, rt(request).db.url),
                                in_process=True)


async def _source(request: web.Request) -> dict[str, Any]:
    sid = unquote(request.match_info["source_id"])
    src = await asyncio.to_thread(products(request).get_source, sid)
    if src is None:
        raise ApiError(404, f"no source {sid!r}", code="NOT_FOUND", ref_id=sid)
    return src


@router.route("GET", "/api/v1/sources/{source_id}", summary="One source with its light curve",
              response=SourceDetail, tags=("sources",))
async def get_source(request: web.Request) -> SourceDetail:
    return SourceDetail(**await _source(request))


@router.route("GET", "/api/v1/sources/{source_id}/export", summary="Light curve as CSV", tags=("sources",),
              content_type="text/csv")
async def export_light_curve(request: web.Request) -> web.Response:
    src = await _source(request)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["mjd", "flux_jy", "flux_error_jy", "forced", "snr", "image_id", "image_path"])
    for c in src["contributing_images"]:
        w.writerow([c["mjd"], c["flux_jy"], c["flux_error_jy"], c["forced"], c["snr"], c["image_id"], c["path"]])
    return web.Response(text=buf.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{src["id"]}-lightcurve.csv"'})


@router.route("GET", "/api/v1/sources/{source_id}/contributing-images", summary="Images that measured a source",
              response=list[ContributingImage], tags=("sources",))
async def contributing_images(request: web.Request) -> list[ContributingImage]:
    return [ContributingImage(**c) for c in (await _source(request))["contributing_images"]]


@router.route("GET", "/api/v1/sources/{source_id}/variability", summary="Variability metrics", response=Variability,
              tags=("sources",), aliases=("/api/sources/{source_id}/variability",))
async def variability(request: web.Request) -> Variability:
    src = await _source(request)
    lc = [{"mjd": c["mjd"], "flux_jy": c["flux_jy"], "flux_error_jy": c["flux_error_jy"], "forced": c["forced"]}
          for c in src["contributing_images"]]
    eta, v = src["eta"], src["v"]
    return Variability(source_id=src["id"], n_epochs=len(lc), eta=eta, v=v, chi2_nu=src["chi2_nu"],
                       modulation_index=src["modulation_index"],
                       is_variable=bool((eta is not None and eta > 2) or (v is not None and v > 0.1)), light_curve=lc)


@router.route("GET", "/api/v1/external/sesame/resolve", summary="Resolve an object name (local catalogues)",
              query=ResolveQuery, response=Resolved, role="public", tags=("sources",))
async def resolve_name(request: web.Request, query: ResolveQuery) -> Resolved:
    from engine.calibration.catalogue import CatalogueError, find_calibrator

    name = query.name.strip()
    try:
        cal = await asyncio.to_thread(find_calibrator, name)
        return Resolved(object_name=cal.name, ra=cal.ra_deg, dec=cal.dec_deg, service="contimg calibrator catalogue")
    except (CatalogueError, KeyError, ValueError):
        pass
    for src in await asyncio.to_thread(products(request).list_sources):
        if name in (src["id"], src["name"]):
            return Resolved(object_name=src["name"] or src["id"], ra=src["ra_deg"], dec=src["dec_deg"],
                            service="contimg source table")
    raise ApiError(404, f"{name!r} is not in the local catalogues; external resolvers (Sesame, SIMBAD, NED) are "
                        f"not reachable from the pipeline host", code="NOT_FOUND")


# ---- measurement sets ---------------------------------------------------------------------------
@router.route("GET", "/api/v1/ms/{ms_path:.+}/metadata", summary="MS metadata", response=MSMetadata, tags=("ms",))
async def ms_metadata(request: web.Request) -> MSMetadata:
    return MSMetadata(**await _ms(request))


@router.route("GET", "/api/v1/ms/{ms_path:.+}/provenance", summary="MS provenance", response=Provenance,
              tags=("ms",))
async def ms_provenance(request: web.Request) -> Provenance:
    r = await _ms(request)
    return Provenance(runId=r["run_id"], msPath=r["path"], calTable=r["cal_table"],
                      pointingRaDeg=r["pointing_ra_deg"], pointingDecDeg=r["pointing_dec_deg"], qaGrade=r["qa_grade"],
                      qaSummary=r["qa_summary"], msUrl=ms_route(r["path"]),
                      logsUrl=f"/logs/{r['run_id']}" if r["run_id"] else None, createdAt=r["created_at"])


@router.route("GET", "/api/v1/ms/{ms_path:.+}/antennas", summary="Antenna layout with flag percentages",
              response=AntennaLayout, tags=("ms",), aliases=("/api/v1/v1/ms/{ms_path:.+}/antennas",))
async def ms_antennas(request: web.Request) -> AntennaLayout:
    r = await _ms(request)
    return AntennaLayout(**await asyncio.to_thread(ms_antenna_layout, r["path"]))


@router.route("GET", "/api/v1/ms/{ms_path:.+}/raster", summary="Visibility raster plot (PNG)", query=RasterQuery,
              role="public", tags=("ms",), content_type="image/png")
async def ms_raster(request: web.Request, query: RasterQuery) -> web.Response:
    r = await _ms(request)
    data = await asyncio.to_thread(_raster_png, r["path"], query)
    return web.Response(body=data, content_type="image/png")


@router.route("GET", "/api/v1/ms/{ms_path:.+}/download", summary="The MS as a tar archive", role="public",
              tags=("ms",), content_type="application/x-tar")
async def ms_download(request: web.Request) -> web.StreamResponse:
    r = await _ms(request)
    name = Path(r["path"]).name
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar",
                                       "Content-Disposition": f'attachment; filename="{name}.tar"'})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    class _Pipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            asyncio.run_coroutine_threadsafe(queue.put(bytes(b)), loop).result()
            return len(b)

    def produce() -> None:
        try:
            with tarfile.open(fileobj=_Pipe(), mode="w|") as tar:
                tar.add(r["path"], arcname=name)
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    while (chunk := await queue.get()) is not None:
        await resp.write(chunk)
    await task
    await resp.write_eof()
    return resp


# ---- rendering ---------------------------------------------------------------------------------------
_CMAPS = {  # a few anchor colours per map, interpolated linearly
    "viridis": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
    "plasma": [(13, 8, 135), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33)],
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
    "magma": [(0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191)],
    "cividis": [(0, 34, 78), (65, 77, 107), (124, 123, 120), (188, 175, 111), (254, 232, 56)],
    "coolwarm": [(59, 76, 192), (141, 176, 254), (221, 221, 221), (244, 154, 123), (180, 4, 38)],
    "RdBu": [(103, 0, 31), (214, 96, 77), (247, 247, 247), (67, 147, 195), (5, 48, 97)],
    "Spectral": [(158, 1, 66), (244, 109, 67), (255, 255, 191), (102, 194, 165), (94, 79, 162)],
}


def _colourise(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    v = np.asarray(values, float)
    finite = np.isfinite(v)
    lo, hi = (np.percentile(v[finite], [1, 99]) if finite.any() else (0.0, 1.0))
    x = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    anchors = np.asarray(_CMAPS[cmap], float)
    pos = x * (len(anchors) - 1)
    i = np.clip(pos.astype(int), 0, len(anchors) - 2)
    f = (pos - i)[..., None]
    rgb = anchors[i] * (1 - f) + anchors[i + 1] * f
    rgb[~finite] = 0
    return rgb.astype(np.uint8)


def _render_png(plane: np.ndarray, size: int) -> bytes:
    from PIL import Image

    rgb = _colourise(np.flipud(np.asarray(plane)), "inferno")
    im = Image.fromarray(rgb, "RGB")
    im.thumbnail((size, size))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def _raster_png(ms_path: str, q: RasterQuery) -> bytes:
    from casacore.tables import table
    from PIL import Image

    with table(ms_path, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        times = t.getcol("TIME")
        data = t.getcol("DATA")
        flags = t.getcol("FLAG")
    cross = a1 != a2
    vis = np.where(flags, np.nan, data)[cross].mean(axis=2)  # average the correlations
    value = {"amp": np.abs, "phase": np.angle, "real": np.real, "imag": np.imag}[q.yaxis](vis)
    ut, ti = np.unique(times[cross], return_inverse=True)
    bl = a1[cross].astype(np.int64) * 1000 + a2[cross]
    ub, bi = np.unique(bl, return_inverse=True)
    with np.errstate(invalid="ignore"):
        if q.xaxis == "time":  # rows: baselines, columns: time (averaged over frequency)
            grid = np.full((ub.size, ut.size), np.nan)
            grid[bi, ti] = np.nanmean(value, axis=1)
        elif q.xaxis == "baseline":  # rows: channels, columns: baselines (averaged over time)
            sums = np.zeros((ub.size, value.shape[1]))
            cnt = np.zeros_like(sums)
            ok = np.isfinite(value)
            np.add.at(sums, bi, np.where(ok, value, 0))
            np.add.at(cnt, bi, ok)
            grid = (sums / np.where(cnt, cnt, np.nan)).T
        else:  # rows: time, columns: frequency (averaged over baselines)
            sums = np.zeros((ut.size, value.shape[1]))
            cnt = np.zeros_like(sums)
            ok = np.isfinite(value)
            np.add.at(sums, ti, np.where(ok, value, 0))
            np.add.at(cnt, ti, ok)
            grid = sums / np.where(cnt, cnt, np.nan)
    im = Image.fromarray(_colourise(grid, q.colormap), "RGB").resize((q.width, q.height), Image.NEAREST)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()
