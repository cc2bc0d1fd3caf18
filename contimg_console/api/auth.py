"""Who is calling: bearer tokens, X-API-Key, and anonymous reads on loopback.

Reads may be anonymous only when configured (default: from loopback addresses);
writes need operator; restore, backup delete and token admin need admin.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from typing import TYPE_CHECKING

from aiohttp import web

from contimg_console.api.errors import ApiError
from engine.auth import Principal

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime

ANONYMOUS = Principal("anonymous", "viewer", None, "anonymous")
PUBLIC = Principal("anonymous", "public", None, "anonymous")


@functools.lru_cache(maxsize=1024)
def _address_is_loopback(peer: str) -> bool:
    """Cached: a poll's peer address is parsed once, not on every request."""
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def _is_loopback(request: web.Request) -> bool:
    return _address_is_loopback(request.remote or "")


SESSION_COOKIE = "contimg_session"


def credentials(request: web.Request) -> str | None:
    """Bearer token, X-API-Key, or the session cookie set at login (for the dashboard's plain fetches)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def make_authorizer(runtime: Runtime):  # type: ignore[no-untyped-def]
    settings = runtime.settings.api

    async def authorize(request: web.Request, role: str) -> Principal:
        secret = credentials(request)
        principal: Principal | None = None
        if secret:
            principal = await asyncio.to_thread(runtime.accounts.resolve, secret)
            if principal is None:
                raise ApiError(401, "invalid or expired token", code="UNAUTHORIZED")
        if role == "public":
            return principal or PUBLIC
        if principal is None:
            anonymous_ok = settings.anonymous_reads == "always" or (
                settings.anonymous_reads == "loopback" and _is_loopback(request))
            if role == "viewer" and anonymous_ok:
                return ANONYMOUS
            raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'",
                           code="UNAUTHORIZED")
        if not principal.allows(role):
            raise ApiError(403, f"role {principal.role!r} may not do this; {role} required", code="FORBIDDEN")
        request["principal"] = principal
        return principal

    return authorize
