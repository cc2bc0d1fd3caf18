"""Whole-table listings served from shared bytes, rebuilt only when their data change.

The dashboard downloads whole catalogues (spec: /images, /sources, /jobs have no
pagination) and polls them. Building 100k rows of JSON per request cannot meet a
25 ms budget, so each listing is built once per change of its version counter
(kept exact by SQLite triggers, whoever writes), compressed once, and served with
an ETag so polling browsers revalidate with a 304.

Freshness: every request waits for a version read that *started after it arrived*.
On SQLite that read is done on the event loop itself (one indexed SELECT of four rows
on a connection of our own, ~10 us: cheaper than a thread hop, which under load costs
the loop a GIL hand-off to the engine's threads); otherwise, or when SQLite is busy,
concurrent requests share one read in a thread. When the version has moved, one
rebuild runs; while it runs, requests get the previous body if that body was confirmed
current no longer than ``max_stale_s`` ago (HTTP's stale-while-revalidate), otherwise
they wait for the rebuild. With ``max_stale_s = 0`` a client always sees its own write.

Serving: builds run in a build process (or a thread) and hand back only the gzip of the
JSON (1.7 MB for 100k sources, not 17 MB through the pipe); a full answer is that one
shared ``bytes`` object written to the socket as it is (Content-Length, Content-Encoding:
gzip), never copied or recompressed per request. A client whose Accept-Encoding refuses
gzip gets the JSON, decoded once per version in a thread and kept.
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

from contimg_console.api.listing_rows import encode

NOT_MODIFIED = {304: "Not modified: If-None-Match matched the ETag"}


@dataclass
class Body:
    version: int
    gz: bytes  # the gzip of the JSON, as sent
    etag: str
    size: int  # length of the JSON
    confirmed_at: float = 0.0  # monotonic start of the last version read that matched this body
    _raw: bytes | None = field(default=None, repr=False)

    @property
    def raw(self) -> bytes:
        """The JSON (decoded from the gzip on first use, then kept)."""
        if self._raw is None:
            self._raw = gzip.decompress(self.gz)
        return self._raw


VERSIONS_SQL = "SELECT kind, version FROM listing_versions"


class SqliteVersions:
    """Reads the version counters from the SQLite file on the calling thread, on a connection of
    its own (autocommit, query_only, no busy wait: a busy database raises and the caller falls back
    to a read in a thread). The statement runs to completion, so no read snapshot is held open."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> dict[str, int]:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
            self._conn = conn
        return dict(self._conn.execute(VERSIONS_SQL).fetchall())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def inline_versions(db: Any) -> SqliteVersions | None:
    """The cheap on-loop version read for a SQLite ``engine.db.Database``; None for other databases."""
    path = getattr(db, "path", None)
    if path is None or getattr(db, "dialect", "sqlite") != "sqlite":
        return None
    return SqliteVersions(path)


class VersionReader:
    """Version reads never older than the request: ``inline`` (cheap, on the loop) when given and
    it answers; otherwise coalesced reads in a thread, at most one in flight plus one queued."""

    def __init__(self, read: Callable[[], dict[str, int]], inline: Callable[[], dict[str, int]] | None = None) -> None:
        self._read = read
        self.inline = inline
        self.inline_reads = self.thread_reads = 0
        self._current: asyncio.Task[tuple[float, dict[str, int]]] | None = None
        self._queued: asyncio.Task[tuple[float, dict[str, int]]] | None = None
        self._reading: asyncio.Task[tuple[float, dict[str, int]]] | None = None

    async def _run(self, after: asyncio.Task[tuple[float, dict[str, int]]] | None) -> tuple[float, dict[str, int]]:
        if after is not None:
            await asyncio.wait([after])
            self._current, self._queued = asyncio.current_task(), None  # type: ignore[assignment]
        self._reading = asyncio.current_task()  # from here on, a new request must not join this read
        started = time.monotonic()
        self.thread_reads += 1
        return started, await asyncio.to_thread(self._read)

    async def read(self) -> tuple[float, dict[str, int]]:
        """(monotonic time the read started, versions)."""
        if self.inline is not None:
            started = time.monotonic()
            try:
                versions = self.inline()
            except sqlite3.Error:
                pass  # busy (or the file went away): the read in a thread waits the database's busy timeout
            else:
                self.inline_reads += 1
                return started, versions
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
                 max_entries: int = 256, inline_read: Callable[[], dict[str, int]] | None = None) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self.versions = VersionReader(read_versions, inline_read)
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
        close = getattr(self.versions.inline, "close", None)
        if close is not None:
            close()

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
            gz, digest, size = await asyncio.get_running_loop().run_in_executor(self._pool, encode, build)
        else:
            gz, digest, size = await asyncio.to_thread(encode, build)
        body = Body(version, gz, f'"{kind}-{version}-{digest}"', size, read_at)
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
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and _matches(if_none_match, body.etag):
            return web.Response(status=304, headers=headers)
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=body.gz, content_type="application/json", headers=headers)
        if body._raw is None:
            await asyncio.to_thread(lambda: body.raw)  # 17 MB of JSON: decoded once, off the loop
        return web.Response(body=body.raw, content_type="application/json", headers=headers)


def _warm() -> None:
    import engine.processing.queue  # noqa: F401
    import engine.products  # noqa: F401


@lru_cache(maxsize=256)
def _etags(header: str) -> frozenset[str]:
    return frozenset(t.strip().removeprefix("W/") for t in header.split(",") if t.strip())


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison; ``*`` matches any current representation."""
    tags = _etags(if_none_match)
    return etag in tags or "*" in tags


@lru_cache(maxsize=256)
def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 12.5.3) takes gzip: ``gzip``/``x-gzip`` with q > 0,
    or else ``*`` with q > 0. Browsers send one of a few values, so the answers are kept."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in header.split(","):
        name, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            k, _, v = param.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v.strip())
                except ValueError:
                    q = 0.0
        name = name.lower()
        if name in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif name == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0
