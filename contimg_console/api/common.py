"""Small helpers shared by the route modules."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel

from engine.auth import Principal

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime


def rt(request: web.Request) -> Runtime:
    return request.app["runtime"]


def ms_route(path: str) -> str:
    """The dashboard's in-app route of an MS page (the path percent-encoded into one segment)."""
    return "/ms/" + quote(path, safe="")



class Ok(BaseModel):
    """The body of an action whose only news is that it worked."""

    ok: bool = True


def require_user(principal: Principal, doing: str) -> str:
    """The caller's username for things a person owns; anonymous read access has no user."""
    from contimg_console.api.errors import ApiError

    if principal.user_id is None:
        raise ApiError(401, f"{doing} needs a logged-in user", code="UNAUTHORIZED")
    return principal.username
