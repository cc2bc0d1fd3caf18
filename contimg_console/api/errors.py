"""One JSON error shape for every response (spec §1.4), and the middleware that enforces it.

Every error carries ``detail`` and ``message`` (same text), an UPPER_SNAKE ``code``,
``http_status`` and, for validation failures, field-level ``details``. Unexpected
exceptions become 500 with a ``trace_id`` that is also in the log.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from engine.errors import StateError
from engine.logs import get_logger

log = get_logger("api")

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_FAILED",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "SERVICE_UNAVAILABLE",
}


class ApiError(Exception):
    """Raise from a handler to answer with the standard error body."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None, action: str = "", ref_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _STATUS_CODES.get(status, "ERROR")
        self.details = details
        self.action = action
        self.ref_id = ref_id


def error_body(status: int, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
               action: str = "", ref_id: str = "", trace_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "detail": message,
        "message": message,
        "code": code or _STATUS_CODES.get(status, "ERROR"),
        "http_status": status,
        "user_message": message,
        "action": action,
        "ref_id": ref_id,
    }
    if details is not None:
        body["details"] = details
    if trace_id:
        body["trace_id"] = trace_id
    return body


def error_response(status: int, message: str, **kw: Any) -> web.Response:
    return web.json_response(error_body(status, message, **kw), status=status)


def validation_details(exc: ValidationError, where: str) -> dict[str, Any]:
    fields = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        fields.append({"field": loc, "location": where, "message": err["msg"], "type": err["type"]})
    return {"errors": fields}


def validation_message(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or where
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {where}: " + "; ".join(parts)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, code=exc.code, details=exc.details, action=exc.action,
                              ref_id=exc.ref_id)
    except StateError as exc:
        return error_response(409, str(exc), code="INVALID_STATE")
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size  # noqa: SLF001 - the configured limit, for the message
        return error_response(413, f"request body too large (limit {limit} bytes)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        if exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        resp = error_response(exc.status, message)
        for header in ("Allow",):
            if header in exc.headers:
                resp.headers[header] = exc.headers[header]
        return resp
    except json.JSONDecodeError as exc:  # pragma: no cover - handled in body parsing
        return error_response(400, f"malformed JSON body: {exc}")
    except Exception:
        trace_id = uuid.uuid4().hex[:16]
        log.exception("unhandled error in %s %s", request.method, request.path, extra={"trace_id": trace_id})
        return error_response(500, "internal error; see the server log", trace_id=trace_id)
