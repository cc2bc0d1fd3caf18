"""Whole-table listings: exact freshness for any writer, ETag revalidation, gzip negotiation, the bytes served,
inline and coalesced version reads."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import TypeAdapter

from contimg_console.api.jobs import JobSummary
from contimg_console.api.listing import ListingCache, SqliteVersions, VersionReader, accepts_gzip
from contimg_console.api.products import ImageSummary, SourceSummary


async def fetch(rt: Any, path: str, **headers: str) -> tuple[int, bytes, Any]:
    headers = {"Accept-Encoding": "identity", **headers}
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(rt.api_url + path, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers


def versions(db_path: Any) -> dict[str, int]:
    with sqlite3.connect(db_path) as c:
        return dict(c.execute("SELECT kind, version FROM listing_versions"))


async def test_a_write_by_another_process_is_seen_at_once_and_revalidation_works(runtime: Any) -> None:
    status, body, headers = await fetch(runtime, "/api/v1/sources")
    assert status == 200 and orjson.loads(body) == []
    etag = headers["ETag"]
    assert headers["Cache-Control"] == "no-cache"
    status, body, _ = await fetch(runtime, "/api/v1/sources", **{"If-None-Match": etag})
    assert status == 304 and body == b""

    # the CLI (or a restore, or a script) writes through its own connection: no in-process hook sees it
    with sqlite3.connect(runtime.settings.db_path) as c:
        c.execute("INSERT INTO sources (id, name, ra_deg, dec_deg, n_detections, n_images, peak_flux_jy) "
                  "VALUES ('s1', 'DSA J0834+5534', 128.7287, 55.5725, 3, 3, 8.4)")
    status, body, headers = await fetch(runtime, "/api/v1/sources", **{"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag
    rows = TypeAdapter(list[SourceSummary]).validate_json(body)
    assert [(r.id, r.name, r.peak_flux_jy, r.num_images) for r in rows] == [("s1", "DSA J0834+5534", 8.4, 3)]


async def test_gzip_body_is_the_same_json(runtime: Any) -> None:
    with sqlite3.connect(runtime.settings.db_path) as c:
        c.executemany("INSERT INTO images (id, path, backend, params, qa_grade, created_at, pointing_dec_deg) "
                      "VALUES (?, ?, 'builtin', '{}', 'good', ?, 54.57)",
                      [(f"i{k}", f"/data/images/{k}-image.fits", f"2026-11-29 0{k}:00:00.000000") for k in range(3)])
    _, plain, _ = await fetch(runtime, "/api/v1/images")
    status, packed, headers = await fetch(runtime, "/api/v1/images", **{"Accept-Encoding": "gzip, br"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(packed) == plain
    rows = TypeAdapter(list[ImageSummary]).validate_json(plain)
    assert [r.id for r in rows] == ["i2", "i1", "i0"]  # newest first
    assert rows[0].created_at == datetime(2026, 11, 29, 2, tzinfo=UTC)
    assert orjson.loads(plain)[0]["created_at"] == "2026-11-29T02:00:00Z"


def add_sources(db_path: Any, n: int, start: int = 0) -> None:
    with sqlite3.connect(db_path) as c:
        c.executemany("INSERT INTO sources (id, name, ra_deg, dec_deg, n_detections, n_images, peak_flux_jy, eta, v) "
                      "VALUES (?, ?, ?, 54.5, 3, 3, ?, 1.5, 0.05)",
                      [(f"s{k:06d}", f"DSA J{k:07d}", k * 0.001, 0.01 * k) for k in range(start, start + n)])


async def test_full_answer_is_the_shared_precompressed_body_with_its_length(runtime: Any) -> None:
    """Every gzip answer of one version is the same bytes, exactly Content-Length long, and decodes to the
    identity answer, which is the JSON of every row; a write makes a new body (and ETag) at once."""
    add_sources(runtime.settings.db_path, 5000)
    answers = [await fetch(runtime, "/api/v1/sources", **{"Accept-Encoding": "gzip, deflate, br, zstd"})
               for _ in range(3)]
    assert {a[0] for a in answers} == {200} and len({a[1] for a in answers}) == 1
    _, packed, headers = answers[0]
    assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(packed)
    assert headers["Content-Type"].startswith("application/json")
    status, plain, plain_headers = await fetch(runtime, "/api/v1/sources")
    assert status == 200 and "Content-Encoding" not in plain_headers
    assert int(plain_headers["Content-Length"]) == len(plain)
    assert gzip.decompress(packed) == plain and plain_headers["ETag"] == headers["ETag"]
    rows = TypeAdapter(list[SourceSummary]).validate_json(plain)
    assert len(rows) == 5000 and rows[1234].id == "s001234" and rows[1234].name == "DSA J0001234"
    cached = runtime._runner.app["listings"]._bodies["sources"]
    assert cached.gz == packed and cached.size == len(plain)  # the bytes served are the cached body itself

    add_sources(runtime.settings.db_path, 1, start=5000)  # another process writes: the next answer has it
    status, packed2, headers2 = await fetch(runtime, "/api/v1/sources", **{"Accept-Encoding": "gzip",
                                                                           "If-None-Match": headers["ETag"]})
    assert status == 200 and headers2["ETag"] != headers["ETag"]
    assert len(orjson.loads(gzip.decompress(packed2))) == 5001


async def test_accept_encoding_is_negotiated_by_its_q_values(runtime: Any) -> None:
    with sqlite3.connect(runtime.settings.db_path) as c:
        c.execute("INSERT INTO images (id, path, backend, params, qa_grade, created_at) "
                  "VALUES ('i1', '/data/images/i1-image.fits', 'builtin', '{}', 'good', '2026-11-29 01:00:00.000000')")
    _, plain, _ = await fetch(runtime, "/api/v1/images")
    for header, gzipped in [("gzip", True), ("GZIP", True), ("x-gzip", True), ("*", True),
                            ("br;q=1.0, gzip;q=0.5", True), ("gzip;q=0", False), ("gzip; q=0.000, *", False),
                            ("identity", False), ("br", False), ("*;q=0", False), ("", False), ("gzip;q=bogus", False)]:
        status, body, headers = await fetch(runtime, "/api/v1/images", **{"Accept-Encoding": header})
        assert status == 200 and headers["Vary"] == "Accept-Encoding", header
        assert (headers.get("Content-Encoding") == "gzip") is gzipped, header
        assert (gzip.decompress(body) if gzipped else body) == plain, header
        assert accepts_gzip(header) is gzipped


async def test_if_none_match_lists_weak_tags_and_star(runtime: Any) -> None:
    _, _, headers = await fetch(runtime, "/api/v1/jobs")
    etag = headers["ETag"]
    for header in (etag, f'W/{etag}', f'"other", {etag}', "*"):
        status, body, h304 = await fetch(runtime, "/api/v1/jobs", **{"If-None-Match": header})
        assert status == 304 and body == b"" and h304["ETag"] == etag, header
        assert h304["Cache-Control"] == "no-cache"
    status, _, _ = await fetch(runtime, "/api/v1/jobs", **{"If-None-Match": '"jobs-0-0000000000000000"'})
    assert status == 200


async def test_sqlite_version_reads_run_on_the_loop_and_see_every_commit(runtime: Any) -> None:
    """On SQLite no request waits for a thread: the read is on the loop, and still sees a write committed
    by another process just before the request."""
    reader = runtime._runner.app["listings"].versions
    assert isinstance(reader.inline, SqliteVersions)
    before = reader.thread_reads
    etag = None
    for k in range(5):
        add_sources(runtime.settings.db_path, 1, start=k)
        status, body, headers = await fetch(runtime, "/api/v1/sources", **({"If-None-Match": etag} if etag else {}))
        assert status == 200 and len(orjson.loads(body)) == k + 1
        etag = headers["ETag"]
        assert (await fetch(runtime, "/api/v1/sources", **{"If-None-Match": etag}))[0] == 304
    assert reader.inline_reads >= 10 and reader.thread_reads == before


def test_inline_version_read_holds_no_snapshot(tmp_path: Any) -> None:
    """After a read the WAL can be checkpointed to empty: the inline reader keeps no read transaction open."""
    path = tmp_path / "v.sqlite3"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE listing_versions (kind TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        c.executemany("INSERT INTO listing_versions VALUES (?, 0)", [("jobs",), ("sources",)])
    reader = SqliteVersions(path)
    try:
        assert reader() == {"jobs": 0, "sources": 0}
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("UPDATE listing_versions SET version = 7 WHERE kind = 'sources'")
        assert reader() == {"jobs": 0, "sources": 7}
        busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        writer.close()
        with pytest.raises(sqlite3.OperationalError):  # a reader never writes
            reader._conn.execute("UPDATE listing_versions SET version = 0")  # type: ignore[union-attr]
    finally:
        reader.close()


async def test_a_failing_inline_read_falls_back_to_the_shared_read() -> None:
    calls = {"inline": 0, "thread": 0}

    def busy() -> dict[str, int]:
        calls["inline"] += 1
        raise sqlite3.OperationalError("database is locked")

    def slow() -> dict[str, int]:
        calls["thread"] += 1
        return {"k": 4}

    reader = VersionReader(slow, busy)
    results = await asyncio.gather(*(reader.read() for _ in range(10)))
    assert {r[1]["k"] for r in results} == {4} and calls == {"inline": 10, "thread": 1}
    assert reader.inline_reads == 0 and reader.thread_reads == 1


async def test_only_listed_job_columns_move_the_jobs_version(runtime: Any) -> None:
    path = runtime.settings.db_path
    t0 = datetime(2026, 11, 29, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as c:
        # a job type no stage of this engine claims, so the running engine leaves it alone
        c.execute("INSERT INTO jobs (id, type, queue, params, priority, state, run_after, attempts, max_attempts, "
                  "created_at) VALUES ('j1', 'external', 'q', '{}', 100, 'queued', ?, 0, 3, ?)", (t0, t0))
    before = versions(path)["jobs"]
    with sqlite3.connect(path) as c:  # a lease heartbeat is not news for the jobs list
        c.execute("UPDATE jobs SET heartbeat_at = ?, lease_until = ? WHERE id = 'j1'", (t0, t0))
    assert versions(path)["jobs"] == before
    _, body, headers = await fetch(runtime, "/api/v1/jobs")
    assert [j.status for j in TypeAdapter(list[JobSummary]).validate_json(body)] == ["pending"]
    with sqlite3.connect(path) as c:
        c.execute("UPDATE jobs SET state = 'running', started_at = ? WHERE id = 'j1'", (t0,))
    assert versions(path)["jobs"] == before + 1
    status, body, _ = await fetch(runtime, "/api/v1/jobs", **{"If-None-Match": headers["ETag"]})
    assert status == 200 and orjson.loads(body)[0]["status"] == "running"


async def test_saved_queries_list_is_fresh_after_a_write_through_the_api(runtime: Any) -> None:
    runtime.accounts.add_user("ana", "ana-password", "viewer")
    token = runtime.accounts.create_token("ana", "t")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(runtime.api_url + "/api/v1/queries") as resp:
            assert await resp.json() == []
        body = {"name": "bright", "query_string": "peak_flux_jy > 1", "target_type": "source"}
        async with http.post(runtime.api_url + "/api/v1/queries", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
        async with http.get(runtime.api_url + "/api/v1/queries") as resp:
            assert [q["name"] for q in await resp.json()] == ["bright"]


async def test_version_reads_are_shared_but_never_older_than_the_request() -> None:
    """Requests share one read; one arriving while a read is in flight waits for the next read."""
    started: list[int] = []
    gate = threading.Event()
    value = {"v": 0}

    def read() -> dict[str, int]:
        v = value["v"]  # the snapshot a read sees is taken when it starts
        started.append(v)
        gate.wait(5)
        return {"k": v}

    reader = VersionReader(lambda: read())
    first = [asyncio.create_task(reader.read()) for _ in range(20)]
    await asyncio.sleep(0.05)
    value["v"] = 1  # a write lands while the first read is in flight
    late = [asyncio.create_task(reader.read()) for _ in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    assert {r[1]["k"] for r in await asyncio.gather(*first)} == {0}
    assert {r[1]["k"] for r in await asyncio.gather(*late)} == {1}
    assert started == [0, 1]  # 40 requests, two reads
    assert (await asyncio.wait_for(reader.read(), 5))[1] == {"k": 1}


async def test_stale_while_revalidate_is_bounded() -> None:
    """Within max_stale_s of its last confirmation the old body is served while the rebuild runs;
    after that, requests wait for the rebuild; an exact cache (0 s) always waits."""
    version = {"v": 1}
    release = threading.Event()

    def rows() -> list[int]:
        v = version["v"]
        if v > 1:
            release.wait(5)  # a slow rebuild
        return [v]

    cache = ListingCache(lambda: {"k": version["v"]}, max_stale_s=0.5)
    assert orjson.loads((await cache.body("k", "k", rows)).raw) == [1]
    version["v"] = 2
    stale = await asyncio.wait_for(cache.body("k", "k", rows), 1)  # the rebuild is blocked, yet no wait
    assert orjson.loads(stale.raw) == [1]
    await asyncio.sleep(0.6)  # beyond the window: the next request waits for version 2
    waiting = asyncio.create_task(cache.body("k", "k", rows))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    release.set()
    assert orjson.loads((await asyncio.wait_for(waiting, 5)).raw) == [2]
    assert cache.builds == 2  # one rebuild, shared

    exact = ListingCache(lambda: {"k": version["v"]}, max_stale_s=0)
    assert orjson.loads((await exact.body("k", "k", rows)).raw) == [2]
    version["v"] = 3
    assert orjson.loads((await asyncio.wait_for(exact.body("k", "k", rows), 5)).raw) == [3]


async def test_listing_version_survives_bulk_changes(db: Any) -> None:
    """Triggers count rows: deleting many rows in one statement still moves the version once per row."""
    from engine.products import Products

    prods = Products(db)
    start = prods.listing_versions()
    assert set(start) == {"jobs", "images", "sources", "queries"}
    with db.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO sources (id, ra_deg, dec_deg, n_detections, n_images) "
                          "VALUES ('a', 1, 2, 0, 0), ('b', 3, 4, 0, 0)")
        c.exec_driver_sql("DELETE FROM sources")
    assert prods.listing_versions()["sources"] == start["sources"] + 4


async def test_animated_cutout_frames_share_one_scale_in_time_order(runtime: Any, tmp_path: Any) -> None:
    """Three days at the same LST: a source at 1, 2, 4 Jy; the GIF shows it brightening on one grey scale."""
    import io

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
    from PIL import Image

    w = WCS(naxis=2)
    w.wcs.crpix, w.wcs.cdelt = [32.5, 32.5], [-0.01, 0.01]
    w.wcs.crval, w.wcs.ctype = [128.73, 55.57], ["RA---SIN", "DEC--SIN"]
    rows = []
    for day, flux in ((2, 4.0), (0, 1.0), (1, 2.0)):  # inserted out of order on purpose
        data = np.random.default_rng(day).normal(0, 0.01, (64, 64)).astype(np.float32)
        data[31:34, 31:34] += flux
        path = tmp_path / f"day{day}-image.fits"
        fits.PrimaryHDU(data, w.to_header()).writeto(path)
        rows.append((f"img{day}", str(path), f"2026-11-{25 + day} 08:00:00.000000"))
    with sqlite3.connect(runtime.settings.db_path) as c:
        c.executemany("INSERT INTO images (id, path, backend, params, created_at, pointing_ra_deg, pointing_dec_deg) "
                      "VALUES (?, ?, 'builtin', '{}', ?, 128.73, 55.57)", rows)
    status, gif, headers = await fetch(runtime, "/api/v1/images/img1/animation?size=32")
    assert status == 200 and headers["Content-Type"] == "image/gif" and headers["X-Frames"] == "3"
    im = Image.open(io.BytesIO(gif))
    peaks = []
    for k in range(im.n_frames):
        im.seek(k)
        grey = np.asarray(im.convert("L"), dtype=float)
        peaks.append(grey[grey.shape[0] // 2 - 8: grey.shape[0] // 2 + 8, grey.shape[1] // 2 - 8:
                          grey.shape[1] // 2 + 8].max())
    assert peaks[0] < peaks[1] < peaks[2]  # oldest first, and brightening is visible: one scale for all
    status, _, _ = await fetch(runtime, "/api/v1/images/img1/animation?ra=10&dec=-30")
    assert status == 422
