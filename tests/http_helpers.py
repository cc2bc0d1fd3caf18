"""One HTTP helper for the REST tests: a real aiohttp client against the runtime on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp


async def call(rt: Any, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
    """(status, body): JSON decoded, anything else as text; ``token`` is sent as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, rt.api_url + path, headers=headers, **kw) as resp:
            return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())
