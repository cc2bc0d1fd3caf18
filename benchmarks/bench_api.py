"""REST list endpoints at the old pipeline's scale, under concurrency 50, on loopback.

Seeds a database with 16k MS, 16k images, 100k sources and 1M photometry rows
(``--scale`` shrinks it), serves it with the real runtime (engine running), and
measures p50/p95/p99 latency and requests/s for /images, /sources, /jobs, /health
and /queries with an aiohttp client. Goal from the issue: p99 ≤ 25 ms; the old
FastAPI backend measured median 41–264 ms and p95 154–306 ms on such endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from engine.db import Database  # noqa: E402
from engine.db import models as m  # noqa: E402
from engine.settings import load_settings  # noqa: E402

GOAL_P99_MS = 25.0
ENDPOINTS = ["/api/v1/images", "/api/v1/sources", "/api/v1/jobs", "/api/health", "/api/v1/queries"]


def seed(db: Database, scale: float) -> dict[str, int]:
    n_ms, n_img, n_src, n_phot = (int(x * scale) for x in (16_000, 16_000, 100_000, 1_000_000))
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with db.engine.begin() as c:
        c.execute(insert(m.ObservationGroup), [
            {"id": f"g{i:06d}", "group_time": t0 + timedelta(seconds=309 * i), "state": "complete",
             "ingest_status": "ready", "n_subbands": 16, "missing_subbands": [], "warnings": [], "is_calibrator": False,
             "priority": 100, "state_changed_at": t0, "created_at": t0, "updated_at": t0} for i in range(n_ms)])
        c.execute(insert(m.MeasurementSet), [{"group_id": f"g{i:06d}", "path": f"/data/ms/g{i:06d}.ms",
                                              "cal_sets_applied": [], "created_at": t0} for i in range(n_ms)])
        c.execute(insert(m.Job), [{"id": f"j{i:030d}", "type": "image", "queue": "dsa110-pipeline",
                                   "group_id": f"g{i:06d}", "params": {}, "priority": 100, "state": "succeeded",
                                   "run_after": t0, "attempts": 1, "max_attempts": 3,
                                   "created_at": t0 + timedelta(seconds=i)} for i in range(n_ms)])
        c.execute(insert(m.Image), [{"id": f"i{i:030d}", "group_id": f"g{i:06d}", "path": f"/data/img/{i}-image.fits",
                                     "backend": "builtin", "params": {}, "qa_grade": "good",
                                     "pointing_ra_deg": (i * 0.0215) % 360, "pointing_dec_deg": 54.57,
                                     "created_at": t0 + timedelta(seconds=309 * i)} for i in range(n_img)])
        c.execute(insert(m.Source), [{"id": f"s{i:030d}", "name": f"DSA J{i:07d}", "ra_deg": (i * 0.0036) % 360,
                                      "dec_deg": 54.57 + (i % 100) * 0.01, "n_detections": 10, "n_images": 10,
                                      "peak_flux_jy": 0.01 * (i % 500)} for i in range(n_src)])
        chunk = 100_000
        for start in range(0, n_phot, chunk):
            c.execute(insert(m.Photometry), [{"source_id": f"s{(i % n_src):030d}", "image_id": f"i{(i % n_img):030d}",
                                              "mjd": 60000 + i / 1000, "flux_jy": 0.1, "forced": False,
                                              "created_at": t0} for i in range(start, min(n_phot, start + chunk))])
    return {"ms": n_ms, "images": n_img, "sources": n_src, "photometry": n_phot}


async def load(url: str, path: str, total: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def one() -> None:
            async with sem:
                t = time.perf_counter()
                async with http.get(url + path) as resp:
                    await resp.read()
                    assert resp.status == 200, (path, resp.status)
                latencies.append((time.perf_counter() - t) * 1000)
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        return sorted(latencies), time.perf_counter() - start


async def main(scale: float, requests: int, concurrency: int) -> None:
    from contimg_console.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, {"data_dir": Path(tmp) / "data", "api": {"port": 0},
                                        "logging": {"level": "WARNING"}})
        settings.ensure_dirs()
        db = Database(settings.db_path)
        db.upgrade()
        t = time.perf_counter()
        counts = seed(db, scale)
        db.dispose()
        print(f"seeded {counts} in {time.perf_counter() - t:.1f} s")
        rt = Runtime(settings)
        await rt.start()
        try:
            for path in ENDPOINTS:
                n = requests if path != "/api/v1/jobs" else max(concurrency, requests // 20)
                lat, wall = await load(rt.api_url, path, n, concurrency)
                q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
                print(f"{path:<18} n={n:<5} p50 {q(0.5):8.1f} ms  p95 {q(0.95):8.1f} ms  p99 {q(0.99):8.1f} ms  "
                      f"{n / wall:7.1f} req/s  p99/goal {q(0.99) / GOAL_P99_MS:6.2f}  "
                      f"(mean {statistics.mean(lat):.1f} ms)")
        finally:
            await rt.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the old pipeline's row counts")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=50)
    a = ap.parse_args()
    asyncio.run(main(a.scale, a.requests, a.concurrency))
