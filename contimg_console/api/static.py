"""Serving a built dashboard at ``/`` (SPA fallback to index.html) and the CORS allowlist.

Paths under /api, /absurd and /metrics never fall back to the SPA: an unknown API
path stays a JSON 404. Files are served only from inside the dashboard directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from contimg_console.api.errors import error_response

API_PREFIXES = ("/api/", "/absurd/", "/metrics")
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-API-Key"


def install_dashboard(app: web.Application, directory: Path) -> None:
    root = directory.resolve()
    index = root / "index.html"
    if not index.is_file():
        raise ValueError(f"dashboard dir {directory} has no index.html")

    async def serve(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(API_PREFIXES) or path in ("/api", "/absurd"):
            return error_response(404, f"no such endpoint: {request.method} {path}")
        candidate = (root / path.lstrip("/")).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return web.FileResponse(candidate)
        return web.FileResponse(index)  # client-side routes

    app.router.add_route("GET", "/{tail:.*}", serve)


def cors_middleware(origins: list[str]) -> Any:
    allowed = set(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and request.headers.get("Access-Control-Request-Method"):
            if origin not in allowed:
                return error_response(403, f"origin {origin} is not in api.cors_origins", code="FORBIDDEN")
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Allow-Credentials": "true",
                "Access-Control-Max-Age": "600", "Vary": "Origin"})
        response = await handler(request)
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    return middleware
