"""Rows of the whole-table listings, built in the listing process (see api/listing.py).

Module-level functions of the database path, so they pickle into the build process
and never hold the console's GIL: building 100k rows of JSON in a thread would stall
the event loop for hundreds of milliseconds. Imports only the engine (no aiohttp).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson

from engine.db import Database

JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY
JOB_STATUS = {"queued": "pending", "running": "running", "succeeded": "completed"}  # anything else: failed


@cache
def _db(path: str) -> Database:
    return Database(path)


GZIP_LEVEL = 6  # 17.1 MB of 100k sources: 1.67 MB in 0.13 s (level 9: 1.60 MB in 0.5 s, level 5: 1.72 MB)


def encode(build: Callable[[], Any]) -> tuple[bytes, str, int]:
    """(the gzip of the JSON, a digest of the JSON, the JSON's length): datetimes as ISO 8601 with Z,
    non-finite floats as null. Only the gzip leaves the build process: the server decodes the JSON
    itself only for the rare client that does not take gzip."""
    raw = orjson.dumps(build(), option=JSON_OPTIONS)
    gz = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
    return gz, hashlib.blake2b(raw, digest_size=8).hexdigest(), len(raw)


def images(db_path: str) -> list[dict[str, Any]]:
    from engine.products import Products

    return Products(_db(db_path)).list_images()


def sources(db_path: str) -> list[dict[str, Any]]:
    from engine.products import Products

    return Products(_db(db_path)).list_sources()


def jobs(db_path: str, limit: int = 5000) -> list[dict[str, Any]]:
    from engine.processing.queue import JobQueue

    return [{"run_id": j.id, "status": JOB_STATUS.get(j.state, "failed"), "started_at": j.started_at,
             "finished_at": j.finished_at} for j in JobQueue(_db(db_path)).list(limit=limit)]


def saved_queries(db_path: str, username: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from engine.queries import SavedQueries

    return SavedQueries(_db(db_path)).list(username, **params)
