"""Dashboard features whose backing capability this service does not have (yet).

Reads answer with the truthful, correctly shaped empty result (nothing exists,
because nothing can be created), so the dashboard's circuit breaker is not
tripped (spec §1.5); actions answer 501 with a message naming what is missing.
No placeholder data anywhere.
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

