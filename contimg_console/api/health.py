"""Liveness and health: ``/api/health`` (dashboard app shell) and ``/api/v1/health``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel

from contimg_console import API_VERSION, SERVICE_NAME, __version__
from contimg_console.api.routing import Router

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime

router = Router()


class HealthQuery(BaseModel):
    detailed: bool = False


class ComponentHealth(BaseModel):
    status: Literal["healthy", "degraded", "stopped"]
    message: str = ""
    details: dict[str, Any] = {}


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    service: str
    version: str
    api_version: str
    timestamp: datetime
    components: dict[str, ComponentHealth] | None = None


def _runtime(request: web.Request) -> Runtime:
    return request.app["runtime"]


@router.route("GET", "/api/health", summary="Liveness and health", query=HealthQuery, response=HealthResponse,
              role="public", tags=("health",), aliases=("/api/v1/health",))
async def get_health(request: web.Request, query: HealthQuery) -> HealthResponse:
    runtime = _runtime(request)
    components = await runtime.health_components() if query.detailed else None
    if components is None:
        status = "healthy"
    else:
        status = "healthy" if all(c["status"] == "healthy" for c in components.values()) else "degraded"
    return HealthResponse(
        status=status, service=SERVICE_NAME, version=__version__, api_version=API_VERSION,
        timestamp=datetime.now(UTC),
        components={k: ComponentHealth(**v) for k, v in components.items()} if components else None,
    )
