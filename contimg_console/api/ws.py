"""Live updates over WebSocket: pipeline events, and the log lines and state of one job."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from contimg_console.api.common import rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router

router = Router()
PING_S = 20.0


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client frames so pings/closes are processed."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


@router.route("GET", "/api/v1/ws/pipeline", summary="WebSocket: job, state and calibration events",
              tags=("live",), responses={101: "Switching protocols"})
async def ws_pipeline(request: web.Request) -> web.WebSocketResponse:
    runtime = rt(request)
    ws = web.WebSocketResponse(heartbeat=PING_S)
    await ws.prepare(request)
    sub = runtime.bus.subscribe("*")
    reader = asyncio.create_task(_drain_client(ws))
    try:
        await ws.send_json({"type": "hello", "engine": runtime.engine.state_label()})
        while not ws.closed and not reader.done():
            get = asyncio.create_task(sub.get())
            done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                await ws.send_str(json.dumps(get.result(), default=str))
            else:
                get.cancel()
    finally:
        runtime.bus.unsubscribe(sub)
        reader.cancel()
        await ws.close()
    return ws


@router.route("GET", "/api/v1/ws/jobs/{id}", summary="WebSocket: log lines and state of one job", tags=("live",),
              responses={101: "Switching protocols"})
async def ws_job(request: web.Request) -> web.WebSocketResponse:
    runtime = rt(request)
    job_id = request.match_info["id"]
    if await asyncio.to_thread(runtime.engine.queue.get, job_id) is None:
        raise ApiError(404, f"no job {job_id!r}")
    ws = web.WebSocketResponse(heartbeat=PING_S)
    await ws.prepare(request)
    reader = asyncio.create_task(_drain_client(ws))
    after, last_state = 0, None
    try:
        while not ws.closed and not reader.done():
            job = await asyncio.to_thread(runtime.engine.queue.get, job_id)
            lines: list[dict[str, Any]] = await asyncio.to_thread(runtime.engine.queue.log_tail, job_id, after, 500)
            for line in lines:
                await ws.send_str(json.dumps({"type": "log", **line}, default=str))
                after = line["id"]
            if job is not None and job.state != last_state:
                last_state = job.state
                await ws.send_json({"type": "state", "job_id": job_id, "state": job.state, "attempts": job.attempts,
                                    "error": job.error})
            if job is None or job.state in ("succeeded", "failed", "cancelled") and not lines:
                break
            await asyncio.sleep(1.0)
    finally:
        reader.cancel()
        await ws.close()
    return ws
