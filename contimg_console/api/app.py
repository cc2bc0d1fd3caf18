"""Build the aiohttp application: middlewares, routes from every module, OpenAPI."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from contimg_console import __version__
from contimg_console.api import (
    alert_routes,
    auth_routes,
    calibrator_routes,
    comments,
    health,
    health_routes,
    jobs,
    jupyter_routes,
    ops_routes,
    pipeline_routes,
    products,
    promql_routes,
    queries,
    ratings,
    retention_routes,
    unavailable,
    vo_routes,
    workflow_routes,
    ws,
)
from contimg_console.api.auth import make_authorizer
from contimg_console.api.errors import error_middleware
from contimg_console.api.listing import ListingCache, inline_versions
from contimg_console.api.routing import Router
from engine.products import Products

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def all_routers() -> list[Router]:
    return [health.router, auth_routes.router, jobs.router, products.router, health_routes.router, queries.router, comments.router,
            pipeline_routes.router, ops_routes.router, calibrator_routes.router, vo_routes.router,
            ws.router, ratings.router, alert_routes.router, retention_routes.router, workflow_routes.router,
            jupyter_routes.router, promql_routes.router, unavailable.router, _meta]


_meta = Router()


@_meta.route("GET", "/api/openapi.json", summary="This API's OpenAPI 3.1 document", role="public",
             response={"type": "object"}, tags=("meta",))
async def get_openapi(request: web.Request) -> dict[str, Any]:
    return request.app["openapi"]


def openapi_document() -> dict[str, Any]:
    combined = Router()
    for r in all_routers():
        combined.routes.extend(r.routes)
    return combined.openapi(
        title="contimg REST API", version=__version__,
        description="The API of the DSA-110 continuum imaging console, consumed by the web dashboard.",
    )


def build_app(runtime: Runtime) -> web.Application:
    from contimg_console.api.static import cors_middleware, install_dashboard

    api = runtime.settings.api
    middlewares = [timing_middleware, error_middleware]
    if api.cors_origins:
        middlewares.insert(0, cors_middleware(api.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=api.max_body_bytes)
    app["runtime"] = runtime
    listings = app["listings"] = ListingCache(Products(runtime.db).listing_versions,
                                              max_stale_s=api.listing_max_stale_s,
                                              inline_read=inline_versions(runtime.db))

    async def stop_listings(_: web.Application) -> None:
        listings.close()  # the build process starts with the first listing request

    app.on_cleanup.append(stop_listings)
    authorize = make_authorizer(runtime)
    for r in all_routers():
        r.install(app, authorize)
    app["openapi"] = openapi_document()
    if api.dashboard_dir is not None:
        install_dashboard(app, api.dashboard_dir)  # last: API routes win over the SPA catch-all
    return app


@web.middleware
async def timing_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request latency into the Prometheus histogram, labelled by route template, not raw path."""
    from contimg_console.api.prometheus import HTTP_LATENCY

    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        info = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        HTTP_LATENCY.labels(request.method, info, str(status)).observe(time.perf_counter() - start)


def access_logger() -> logging.Logger:
    return logging.getLogger("contimg.access")
