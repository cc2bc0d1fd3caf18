"""Queue overhead: claim + transition + complete per job with 10k queued; paging 100k jobs.

Goals (issue: processing engine): ≤ 5 ms median per job cycle with 10k queued jobs,
≤ 20 ms per page when listing 100k jobs page by page. Prints each figure and its
ratio to the goal.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from engine.db import Database  # noqa: E402
from engine.db import models as m  # noqa: E402
from engine.processing import states  # noqa: E402
from engine.processing.queue import SUCCEEDED, JobQueue, new_id_bulk  # noqa: E402
from engine.processing.transitions import transition  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "bench.sqlite3")
        db.upgrade()
        queue = JobQueue(db)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        n_groups = 10_000
        with db.engine.begin() as conn:
            conn.execute(insert(m.ObservationGroup), [
                {"id": f"g{i:06d}", "group_time": t0 + timedelta(seconds=309 * i), "state": "pending",
                 "ingest_status": "ready", "n_subbands": 16, "missing_subbands": [], "warnings": [],
                 "is_calibrator": False, "priority": 100, "state_changed_at": t0, "created_at": t0,
                 "updated_at": t0} for i in range(n_groups)])
            conn.execute(insert(m.Job), [
                {"id": jid, "type": "convert", "queue": "dsa110-pipeline", "group_id": f"g{i:06d}", "params": {},
                 "priority": 100, "state": "queued", "run_after": t0, "attempts": 0, "max_attempts": 3,
                 "created_at": t0 + timedelta(microseconds=i)} for i, jid in enumerate(new_id_bulk(n_groups))])
        cycles = []
        for _ in range(500):
            start = time.perf_counter()
            job = queue.claim("bench", ["convert"], 60)
            assert job is not None
            with db.session() as s:
                transition(s, job.group_id, states.PENDING, states.CONVERTING, worker="bench", job_id=job.id)
            with db.session() as s:
                transition(s, job.group_id, states.CONVERTING, states.CONVERTED, worker="bench", job_id=job.id)
                queue.finish(s, job.id, "bench", SUCCEEDED, outcome={"ok": True})
            cycles.append(time.perf_counter() - start)
        median_ms = statistics.median(cycles) * 1000
        print(f"job cycle (claim + 2 transitions + complete), 10k queued: median {median_ms:.2f} ms, "
              f"p95 {sorted(cycles)[int(0.95 * len(cycles))] * 1000:.2f} ms; goal 5 ms; ratio {median_ms / 5:.2f}")

        extra = 90_000
        with db.engine.begin() as conn:
            for chunk in range(0, extra, 10_000):
                conn.execute(insert(m.Job), [
                    {"id": jid, "type": "image", "queue": "dsa110-pipeline", "params": {}, "priority": 100,
                     "state": "succeeded", "run_after": t0, "attempts": 1, "max_attempts": 3,
                     "created_at": t0 + timedelta(seconds=chunk + i)}
                    for i, jid in enumerate(new_id_bulk(10_000))])
        pages, before, total = [], None, 0
        while True:
            start = time.perf_counter()
            page = queue.list(limit=100, before=before)
            pages.append(time.perf_counter() - start)
            if not page:
                break
            total += len(page)
            before = (page[-1].created_at, page[-1].id)
        worst = max(pages) * 1000
        med = statistics.median(pages) * 1000
        print(f"paging {total} jobs by 100: median {med:.2f} ms/page, worst {worst:.2f} ms/page; goal 20 ms; "
              f"ratio {med / 20:.2f} (worst {worst / 20:.2f})")
        db.dispose()


if __name__ == "__main__":
    main()
