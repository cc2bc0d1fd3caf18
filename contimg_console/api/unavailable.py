"""Dashboard features whose backing capability this service does not have (yet).

Reads answer with the truthful, correctly shaped empty result (nothing exists,
because nothing can be created), so the dashboard's circuit breaker is not
tripped (spec §1.5); actions answer 501 with a message naming what is missing.
Jupyter answers 503 on its three lists, which makes the page show its own
"not available" panel (spec §1.4). No placeholder data anywhere.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router

router = Router()


def _missing(feature: str) -> ApiError:
    return ApiError(501, f"{feature} is not available in this version of contimg", code="NOT_IMPLEMENTED")




class SessionList(BaseModel):
    sessions: list[dict[str, Any]]
    total: int
    available_ports: int = 0


class CartaStatus(BaseModel):
    available: bool
    message: str


def _read(path: str, summary: str, response: Any, value: Any, tags: tuple[str, ...]) -> None:
    async def handler(request: web.Request) -> Any:
        return value() if callable(value) else value

    handler.__name__ = "empty_" + path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace("-", "_")
    router.route("GET", path, summary=summary + " (none: feature not available)", response=response,
                 tags=tags)(handler)


def _action(method: str, path: str, summary: str, feature: str, tags: tuple[str, ...], role: str = "operator",
            status: int = 501) -> None:
    async def handler(request: web.Request) -> Any:
        if status == 503:
            raise ApiError(503, f"{feature} is not configured on this host", code="SERVICE_UNAVAILABLE")
        raise _missing(feature)

    handler.__name__ = f"na_{method.lower()}_" + path.strip("/").replace("/", "_").replace("{", "").replace(
        "}", "").replace("-", "_").replace(".", "_")
    router.route(method, path, summary=summary + " (not available)", role=role,  # type: ignore[arg-type]
                 tags=tags, responses={status: "Not available"}, response={"type": "object"})(handler)


# ---- Jupyter (§6): 503 everywhere → the page's own "not available" panel ------------------------------
for _m, _p in (("GET", "/api/v1/jupyter/kernels"), ("GET", "/api/v1/jupyter/kernels/{id}"),
               ("POST", "/api/v1/jupyter/kernels"), ("POST", "/api/v1/jupyter/kernels/{id}/restart"),
               ("POST", "/api/v1/jupyter/kernels/{id}/interrupt"), ("DELETE", "/api/v1/jupyter/kernels/{id}"),
               ("GET", "/api/v1/jupyter/notebooks"), ("GET", "/api/v1/jupyter/notebooks/{id}"),
               ("DELETE", "/api/v1/jupyter/notebooks/{id}"), ("GET", "/api/v1/jupyter/sessions"),
               ("POST", "/api/v1/jupyter/sessions"), ("DELETE", "/api/v1/jupyter/sessions/{id}"),
               ("GET", "/api/v1/jupyter/templates"), ("POST", "/api/v1/jupyter/launch"),
               ("GET", "/api/v1/jupyter/stats"), ("GET", "/api/v1/jupyter/url")):
    _action(_m, _p, "Jupyter", "Jupyter", ("jupyter",), role="viewer" if _m == "GET" else "operator", status=503)

# ---- CARTA and interactive imaging (Appendix A.2, A.4) -----------------------------------------------------------
_read("/api/v1/carta/status", "CARTA availability", CartaStatus,
      CartaStatus(available=False, message="no CARTA server is configured"), ("carta",))
_read("/api/v1/carta/sessions", "CARTA sessions", list[dict[str, Any]], list, ("carta",))
_action("POST", "/api/v1/carta/open", "Open a file in CARTA", "CARTA", ("carta",), role="viewer")
_action("DELETE", "/api/v1/carta/sessions/{session_id}", "Close a CARTA session", "CARTA", ("carta",))
_read("/api/v1/imaging/sessions", "Interactive imaging sessions", SessionList,
      lambda: SessionList(sessions=[], total=0), ("imaging",))
_action("POST", "/api/v1/imaging/interactive", "Start interactive CLEAN", "interactive imaging "
        "(use /api/v1/pipeline/image)", ("imaging",))
_action("DELETE", "/api/v1/imaging/sessions/{session_id}", "Stop an interactive session", "interactive imaging",
        ("imaging",))

