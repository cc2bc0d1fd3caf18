"""Whole-table listings served from shared bytes, rebuilt only when their data change.

The dashboard downloads whole catalogues (spec: /images, /sources, /jobs have no
pagination) and polls them. Building 100k rows of JSON per request cannot meet a
25 ms budget, so each listing is built once per change of its version counter
(kept exact by SQLite triggers, whoever writes), compressed once, and served with
an ETag so polling browsers revalidate with a 304.

Freshness: every request waits for a version read that *started after it arrived*
(concurrent requests share one read). When the version has moved, one rebuild runs;
while it runs, requests get the previous body if that body was confirmed current no
longer than ``max_stale_s`` ago (HTTP's stale-while-revalidate), otherwise they wait
for the rebuild. With ``max_stale_s = 0`` a client always sees its own write. Reads
and builds run in threads; the event loop only hands out bytes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from contimg_console.api.listing_rows import encode

NOT_MODIFIED = {304: "Not modified: If-None-Match matched the ETag"}


@dataclass
class Body:
    version: int
    raw: bytes
    gz: bytes
    etag: str
    confirmed_at: float = 0.0  # monotonic start of the last version read that matched this body


class VersionReader:
    """Coalesces version reads: at most one in flight plus one queued behind it."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read
        self._current: asyncio.Task[tuple[float, dict[str, int]]] | None = None
        self._queued: asyncio.Task[tuple[float, dict[str, int]]] | None = None
        self._reading: asyncio.Task[tuple[float, dict[str, int]]] | None = None

    async def _run(self, after: asyncio.Task[tuple[float, dict[str, int]]] | None) -> tuple[float, dict[str, int]]:
        if after is not None:
            await asyncio.wait([after])
            self._current, self._queued = asyncio.current_task(), None  # type: ignore[assignment]
        self._reading = asyncio.current_task()  # from here on, a new request must not join this read
        started = time.monotonic()
        return started, await asyncio.to_thread(self._read)

    async def read(self) -> tuple[float, dict[str, int]]:
        """(monotonic time the read started, versions)."""
        current = self._current
        if current is None or current.done():
            task = self._current = asyncio.create_task(self._run(None))
        elif self._reading is not current:  # created but not yet reading: its snapshot is still ahead of us
            task = current
        else:  # the read in flight started before this request: wait for the next one
            if self._queued is None:
                self._queued = asyncio.create_task(self._run(current))
            task = self._queued
        return await asyncio.shield(task)


class ListingCache:
    """``build`` callables given with ``in_process=True`` run in one separate build process (they must
    pickle: module functions of plain arguments, see api/listing_rows.py); others in a thread."""

    def __init__(self, read_versions: Callable[[], dict[str, int]], *, max_stale_s: float = 0.0,
                 max_entries: int = 256) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self.versions = VersionReader(read_versions)
        self.max_stale_s = max_stale_s
        self._bodies: OrderedDict[Hashable, Body] = OrderedDict()
        self._builds: dict[Hashable, asyncio.Task[Body]] = {}
        self.max_entries = max_entries
        self.builds = 0

    def start(self) -> None:
        """Start the build process (it imports the engine once, ~1 s; later builds pay nothing for it)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self._pool.submit(_warm)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def body(self, kind: str, key: Hashable, build: Callable[[], Any], in_process: bool = False) -> Body:
        """The current bytes of listing ``key`` (of version counter ``kind``); ``build`` returns rows."""
        read_at, versions = await self.versions.read()
        version = versions.get(kind, -1)
        hit = self._bodies.get(key)
        if hit is not None and hit.version == version:
            hit.confirmed_at = max(hit.confirmed_at, read_at)
            self._bodies.move_to_end(key)
            return hit
        while True:  # one build per key at a time; a request never takes a body older than its read
            task = self._builds.get(key)
            if task is None or task.done():
                task = self._builds[key] = asyncio.create_task(self._build(kind, key, version, read_at, build,
                                                                           in_process))
            if hit is not None and time.monotonic() - hit.confirmed_at <= self.max_stale_s:
                return hit  # stale-while-revalidate: the rebuild goes on without this request
            body = await asyncio.shield(task)
            if body.version >= version:
                return body

    async def _build(self, kind: str, key: Hashable, version: int, read_at: float, build: Callable[[], Any],
                     in_process: bool) -> Body:
        if in_process:
            self.start()
            raw, gz, digest = await asyncio.get_running_loop().run_in_executor(self._pool, encode, build)
        else:
            raw, gz, digest = await asyncio.to_thread(encode, build)
        body = Body(version, raw, gz, f'"{kind}-{version}-{digest}"', read_at)
        self.builds += 1
        current = self._bodies.get(key)
        if current is None or current.version < version:  # a slower, older build never replaces a newer one
            self._bodies[key] = body
        self._bodies.move_to_end(key)
        while len(self._bodies) > self.max_entries:
            old, _ = self._bodies.popitem(last=False)
            self._builds.pop(old, None)
        return body

    async def respond(self, request: web.Request, kind: str, key: Hashable, build: Callable[[], Any],
                      in_process: bool = False) -> web.Response:
        body = await self.body(kind, key, build, in_process)
        headers = {"ETag": body.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if body.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=body.gz, content_type="application/json", headers=headers)
        return web.Response(body=body.raw, content_type="application/json", headers=headers)


def _warm() -> None:
    import engine.processing.queue  # noqa: F401
    import engine.products  # noqa: F401


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
