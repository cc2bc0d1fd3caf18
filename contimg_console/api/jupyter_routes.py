"""Jupyter (spec §6): kernels, sessions and notebooks of the Jupyter server, templates from engine.notebooks.

When no server can be reached every route answers 503 with the reason, which makes
the page show its own "not available" panel (spec §1.4).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from contimg_console.jupyter import (
    JupyterGateway,
    JupyterRequestError,
    JupyterUnavailable,
    notebook_path,
)
from engine.notebooks import TEMPLATES, TemplateError, render, sqlite_only

router = Router()
T = TypeVar("T")
TAGS = ("jupyter",)
UNAVAILABLE = {503: "No Jupyter server to talk to (detail says why)", 502: "The Jupyter server failed"}


class JupyterKernel(BaseModel):
    id: str
    name: str
    display_name: str
    language: str
    status: Literal["idle", "busy", "starting", "error", "dead"]
    last_activity: datetime | None = None
    execution_count: int = 0
    connections: int = 0


class JupyterNotebook(BaseModel):
    id: str
    name: str
    path: str
    type: Literal["notebook", "file", "directory"]
    created: datetime | None = None
    last_modified: datetime | None = None
    size: int | None = None
    kernel_id: str | None = None
    content_type: str | None = None


class NotebookRef(BaseModel):
    name: str
    path: str


class JupyterSession(BaseModel):
    id: str
    notebook: NotebookRef
    kernel: JupyterKernel
    created: datetime | None = None


class TemplateParam(BaseModel):
    name: str
    type: Literal["string", "number", "boolean", "source_id", "image_id"]
    required: bool
    description: str


class NotebookTemplate(BaseModel):
    id: str
    name: str
    description: str
    category: Literal["source_analysis", "image_inspection", "data_exploration", "custom"]
    parameters: list[TemplateParam]


class KernelUsage(BaseModel):
    python3: int
    julia: int | None = None
    r: int | None = None


class JupyterStats(BaseModel):
    total_notebooks: int
    active_kernels: int
    total_sessions: int
    kernel_usage: KernelUsage
    disk_usage_mb: float
    max_disk_mb: float


class JupyterUrl(BaseModel):
    url: str


class StartKernel(BaseModel):
    name: str = Field("python3", min_length=1, max_length=64)


class CreateSession(BaseModel):
    notebook_path: str = Field(min_length=1, max_length=1000)


class LaunchBody(BaseModel):
    template_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    parameters: dict[str, str | float | bool | None] = Field(default_factory=dict)
    kernel_name: str | None = Field(None, max_length=64)


class Launched(BaseModel):
    notebook: JupyterNotebook
    session: JupyterSession


class NotebooksQuery(BaseModel):
    path: str = Field("", max_length=1000)


def _gw(request: web.Request) -> JupyterGateway:
    return rt(request).jupyter


async def _j(call: Awaitable[T]) -> T:
    try:
        return await call
    except JupyterUnavailable as exc:
        raise ApiError(503, str(exc), code="SERVICE_UNAVAILABLE") from None
    except JupyterRequestError as exc:
        code = {404: "NOT_FOUND", 409: "CONFLICT", 422: "VALIDATION_FAILED"}.get(exc.status, "JUPYTER_ERROR")
        status = exc.status if exc.status in (400, 403, 404, 409, 422) else 502
        raise ApiError(status, str(exc), code=code) from None
    except TemplateError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None


def _safe_path(path: str) -> str:
    """A path inside the notebooks root: relative, no '..', no hidden parts."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." or p.startswith(".") for p in parts):
        raise ApiError(422, f"path {path!r} must stay inside the notebooks folder (no '..' or hidden parts)",
                       code="VALIDATION_FAILED")
    return "/".join(parts)


@router.route("GET", "/api/v1/jupyter/kernels", summary="Running kernels", response=list[JupyterKernel],
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def kernels(request: web.Request) -> list[JupyterKernel]:
    return [JupyterKernel(**k) for k in await _j(_gw(request).kernels())]


@router.route("GET", "/api/v1/jupyter/kernels/{id}", summary="One kernel", response=JupyterKernel, role="operator",
              tags=TAGS, responses=UNAVAILABLE)
async def kernel(request: web.Request) -> JupyterKernel:
    return JupyterKernel(**await _j(_gw(request).kernel(request.match_info["id"])))


@router.route("POST", "/api/v1/jupyter/kernels", summary="Start a kernel", body=StartKernel, response=JupyterKernel,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def start_kernel(request: web.Request, body: StartKernel) -> JupyterKernel:
    return JupyterKernel(**await _j(_gw(request).start_kernel(body.name)))


@router.route("POST", "/api/v1/jupyter/kernels/{id}/restart", summary="Restart a kernel", response=Ok,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def restart_kernel(request: web.Request) -> Ok:
    await _j(_gw(request).kernel_action(request.match_info["id"], "restart"))
    return Ok()


@router.route("POST", "/api/v1/jupyter/kernels/{id}/interrupt", summary="Interrupt a kernel", response=Ok,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def interrupt_kernel(request: web.Request) -> Ok:
    await _j(_gw(request).kernel_action(request.match_info["id"], "interrupt"))
    return Ok()


@router.route("DELETE", "/api/v1/jupyter/kernels/{id}", summary="Shut a kernel down", response=Ok, role="operator",
              tags=TAGS, responses=UNAVAILABLE)
async def shutdown_kernel(request: web.Request) -> Ok:
    await _j(_gw(request).shutdown_kernel(request.match_info["id"]))
    return Ok()


@router.route("GET", "/api/v1/jupyter/notebooks", summary="Notebooks and files in the notebooks folder",
              query=NotebooksQuery, response=list[JupyterNotebook], role="operator", tags=TAGS, responses=UNAVAILABLE)
async def notebooks(request: web.Request, query: NotebooksQuery) -> list[JupyterNotebook]:
    return [JupyterNotebook(**n) for n in await _j(_gw(request).contents(_safe_path(query.path)))]


@router.route("GET", "/api/v1/jupyter/notebooks/{id}", summary="One notebook", response=JupyterNotebook,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def notebook(request: web.Request) -> JupyterNotebook:
    path = _safe_path(await _j(_decoded(request.match_info["id"])))
    return JupyterNotebook(**await _j(_gw(request).entry(path)))


@router.route("DELETE", "/api/v1/jupyter/notebooks/{id}", summary="Delete a notebook", response=Ok, role="operator",
              tags=TAGS, responses=UNAVAILABLE)
async def delete_notebook(request: web.Request) -> Ok:
    path = _safe_path(await _j(_decoded(request.match_info["id"])))
    await _j(_gw(request).delete(path))
    return Ok()


async def _decoded(notebook_id: str) -> str:
    return notebook_path(notebook_id)


@router.route("GET", "/api/v1/jupyter/sessions", summary="Notebook sessions", response=list[JupyterSession],
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def sessions(request: web.Request) -> list[JupyterSession]:
    return [JupyterSession(**s) for s in await _j(_gw(request).sessions())]


@router.route("POST", "/api/v1/jupyter/sessions", summary="Open a notebook in a new kernel session",
              body=CreateSession, response=JupyterSession, role="operator", tags=TAGS, responses=UNAVAILABLE)
async def create_session(request: web.Request, body: CreateSession) -> JupyterSession:
    path = _safe_path(body.notebook_path)
    await _j(_gw(request).entry(path))  # 404 for a notebook that does not exist
    return JupyterSession(**await _j(_gw(request).create_session(path)))


@router.route("DELETE", "/api/v1/jupyter/sessions/{id}", summary="Close a session (and its kernel)", response=Ok,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def delete_session(request: web.Request) -> Ok:
    await _j(_gw(request).delete_session(request.match_info["id"]))
    return Ok()


@router.route("GET", "/api/v1/jupyter/templates", summary="Notebook templates", response=list[NotebookTemplate],
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def templates(request: web.Request) -> list[NotebookTemplate]:
    return [NotebookTemplate(**t.as_dict()) for t in TEMPLATES.values()]


@router.route("POST", "/api/v1/jupyter/launch", summary="Create a notebook from a template and open a session",
              body=LaunchBody, response=Launched, role="operator", tags=TAGS, responses=UNAVAILABLE)
async def launch(request: web.Request, body: LaunchBody) -> Launched:
    gw = _gw(request)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", body.name).strip("-.") or "notebook"
    path = stem if stem.endswith(".ipynb") else f"{stem}.ipynb"
    kernel_name = body.kernel_name or "python3"
    try:
        sqlite_only(rt(request).settings)
    except TemplateError as exc:
        raise ApiError(409, str(exc), code="CONFLICT") from None
    text = await _j(asyncio.to_thread(render, body.template_id, body.parameters,
                                      str(rt(request).settings.db_path), kernel_name))
    saved = await _j(gw.save_notebook(path, text))
    session = await _j(gw.create_session(path, kernel_name))
    saved["kernel_id"] = session["kernel"]["id"]
    return Launched(notebook=JupyterNotebook(**saved), session=JupyterSession(**session))


@router.route("GET", "/api/v1/jupyter/stats", summary="Notebook, kernel and disk figures", response=JupyterStats,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def stats(request: web.Request) -> JupyterStats:
    gw = _gw(request)
    ks, ss = await _j(gw.kernels()), await _j(gw.sessions())
    root = rt(request).settings.notebooks_dir
    used, count = await asyncio.to_thread(_usage, root)
    usage: dict[str, int] = {"python3": 0}
    for k in ks:
        key = "r" if k["name"] in ("ir", "r") else "julia" if k["name"].startswith("julia") else "python3"
        usage[key] = usage.get(key, 0) + 1
    return JupyterStats(total_notebooks=count, active_kernels=len(ks), total_sessions=len(ss),
                        kernel_usage=KernelUsage(**usage), disk_usage_mb=round(used / 1e6, 3),
                        max_disk_mb=gw.cfg.max_disk_mb)


def _usage(root: Any) -> tuple[int, int]:
    size = count = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            size += os.path.getsize(os.path.join(dirpath, f))
            count += f.endswith(".ipynb")
    return size, count


@router.route("GET", "/api/v1/jupyter/url", summary="The Jupyter server's URL for browsers", response=JupyterUrl,
              role="operator", tags=TAGS, responses=UNAVAILABLE)
async def url(request: web.Request) -> JupyterUrl:
    gw = _gw(request)
    if gw.unavailable or not gw.public_url:
        raise ApiError(503, gw.unavailable or "no Jupyter server URL", code="SERVICE_UNAVAILABLE")
    return JupyterUrl(url=gw.public_url)
