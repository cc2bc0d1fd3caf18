"""Queue overhead: claim + transition + complete per job with 10k queued; paging 100k jobs; job-table write rate.

Goals (issue: processing engine): ≤ 5 ms median per job cycle with 10k queued jobs,
≤ 20 ms per page when listing 100k jobs page by page. Prints each figure and its
ratio to the goal, then the job table's write rate: one client, and several worker
processes claiming at once (as several hosts would), in job cycles and transactions
per second.

``--database sqlite`` (a temp file), ``postgresql`` (a temp server of its own, started
like the tests' with Debian's binaries, fsync and synchronous commits on as in
production), ``both`` (the default: SQLite, then PostgreSQL when its binaries exist), or
a ``postgresql+psycopg://…`` URL of an empty database to use.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import insert  # noqa: E402

from engine.db import Database  # noqa: E402
from engine.db import models as m  # noqa: E402
from engine.processing import states  # noqa: E402
from engine.processing.queue import SUCCEEDED, JobQueue, new_id_bulk  # noqa: E402
from engine.processing.transitions import transition  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seed(db: Database, n_groups: int, prefix: str = "g") -> None:
    with db.engine.begin() as conn:
        for lo in range(0, n_groups, 10_000):
            hi = min(n_groups, lo + 10_000)
            conn.execute(insert(m.ObservationGroup), [
                {"id": f"{prefix}{i:06d}", "group_time": T0 + timedelta(seconds=309 * i), "state": "pending",
                 "ingest_status": "ready", "n_subbands": 16, "missing_subbands": [], "warnings": [],
                 "is_calibrator": False, "priority": 100, "state_changed_at": T0, "created_at": T0,
                 "updated_at": T0} for i in range(lo, hi)])
            conn.execute(insert(m.Job), [
                {"id": jid, "type": "convert", "queue": "dsa110-pipeline", "group_id": f"{prefix}{i:06d}",
                 "params": {}, "priority": 100, "state": "queued", "run_after": T0, "attempts": 0,
                 "max_attempts": 3, "created_at": T0 + timedelta(microseconds=i)}
                for i, jid in zip(range(lo, hi), new_id_bulk(hi - lo), strict=True)])
    if db.dialect == "postgresql":  # what autovacuum does within a minute of a bulk insert: fresh planner stats
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE observation_groups, jobs")


def cycle(db: Database, queue: JobQueue, worker: str) -> bool:
    """One job through the table as the engine moves it: 3 transactions, 4 statements that write
    (claim; group to working + its audit row; group to done + audit row + job finished)."""
    job = queue.claim(worker, ["convert"], 60)
    if job is None:
        return False
    with db.session() as s:
        transition(s, job.group_id, states.PENDING, states.CONVERTING, worker=worker, job_id=job.id)
    with db.session() as s:
        transition(s, job.group_id, states.CONVERTING, states.CONVERTED, worker=worker, job_id=job.id)
        queue.finish(s, job.id, worker, SUCCEEDED, outcome={"ok": True})
    return True


def _worker(url: str, name: str, seconds: float, start_at: float, out: multiprocessing.Queue) -> None:
    db = Database(url)
    queue = JobQueue(db)
    n = 0
    while time.time() < start_at:
        time.sleep(0.005)
    end = time.monotonic() + seconds
    while time.monotonic() < end and cycle(db, queue, name):
        n += 1
    db.dispose()
    out.put(n)


def concurrent_rate(url: str, workers: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 3.0  # every process imported and connected before the clock starts
    procs = [ctx.Process(target=_worker, args=(url, f"bench-{k}", seconds, start_at, out)) for k in range(workers)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    return sum(counts) / seconds


def run(url: str, label: str, *, workers: int, seconds: float) -> None:
    db = Database(url)
    db.upgrade()
    queue = JobQueue(db)
    seed(db, 10_000)
    cycles = []
    for _ in range(500):
        start = time.perf_counter()
        assert cycle(db, queue, "bench")
        cycles.append(time.perf_counter() - start)
    median_ms = statistics.median(cycles) * 1000
    print(f"[{label}] job cycle (claim + 2 transitions + complete), 10k queued: median {median_ms:.2f} ms, "
          f"p95 {sorted(cycles)[int(0.95 * len(cycles))] * 1000:.2f} ms; goal 5 ms; ratio {median_ms / 5:.2f}")
    one = 1 / statistics.mean(cycles)
    print(f"[{label}] job-table write rate, one client: {one:.0f} job cycles/s = {one * 3:.0f} transactions/s "
          f"({one:.0f} claims/s, {one * 2:.0f} transitions/s)")

    seed(db, 20_000, prefix="c")  # enough queued that no claimer runs dry within the phase
    rate = concurrent_rate(url, workers, seconds)
    print(f"[{label}] job-table write rate, {workers} worker processes claiming at once for {seconds:g} s: "
          f"{rate:.0f} job cycles/s = {rate * 3:.0f} transactions/s ({rate:.0f} claims/s, {rate * 2:.0f} "
          f"transitions/s); 16k groups in 24 h need ~0.9 jobs/s")

    extra = 90_000
    with db.engine.begin() as conn:
        for chunk in range(0, extra, 10_000):
            conn.execute(insert(m.Job), [
                {"id": jid, "type": "image", "queue": "dsa110-pipeline", "params": {}, "priority": 100,
                 "state": "succeeded", "run_after": T0, "attempts": 1, "max_attempts": 3,
                 "created_at": T0 + timedelta(seconds=chunk + i)}
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
    print(f"[{label}] paging {total} jobs by 100: median {med:.2f} ms/page, worst {worst:.2f} ms/page; goal 20 ms; "
          f"ratio {med / 20:.2f} (worst {worst / 20:.2f})")
    db.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default="both",
                    help="sqlite | postgresql | both | a postgresql+psycopg:// URL of an empty database")
    ap.add_argument("--workers", type=int, default=4, help="concurrent claiming processes (default 4)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the concurrent phase (default 10)")
    args = ap.parse_args(argv)
    which = args.database
    if "://" in which:
        run(which, "postgresql" if which.startswith("postgresql") else "url", workers=args.workers,
            seconds=args.seconds)
        return 0
    if which in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "sqlite", workers=args.workers, seconds=args.seconds)
    if which in ("postgresql", "both"):
        from pg_server import PgServer, Unavailable

        try:
            server = PgServer(durable=True).start()
        except Unavailable as exc:
            if which == "postgresql":
                print(f"bench_queue: PostgreSQL: {exc}", file=sys.stderr)
                return 1
            print(f"[postgresql] skipped: {exc}")
            return 0
        try:
            run(server.create_database("bench"), f"postgresql {server.version // 10000}", workers=args.workers,
                seconds=args.seconds)
        finally:
            server.stop()
    if which not in ("sqlite", "postgresql", "both"):
        ap.error(f"--database {which!r}: sqlite, postgresql, both or a postgresql+psycopg:// URL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
