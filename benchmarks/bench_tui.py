"""The console at scale: the Queue over 100,000 groups (each with a job), driven by Textual's pilot.

Goals (issue 13): first paint ≤ 300 ms and page-down ≤ 50 ms at 100k rows. The
reference, measured in the same run on the same rows: a plain ``DataTable`` loading
all of them (what the Queue did before it was virtualised). Prints each figure, its
goal, and the ratio to the reference.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sqlalchemy import insert  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from engine.db import Database  # noqa: E402
from engine.db import models as m  # noqa: E402
from engine.processing.queue import new_id_bulk  # noqa: E402
from engine.services import Services  # noqa: E402
from engine.settings import load_settings  # noqa: E402
from screens.widgets.paged_table import PagedTable  # noqa: E402

N = 100_000
PRESSES = 30
SIZE = (120, 40)


def seed(db: Database) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = new_id_bulk(N)
    with db.engine.begin() as conn:
        conn.execute(insert(m.ObservationGroup), [
            {"id": f"2026-{i:07d}", "group_time": t0 + timedelta(seconds=309 * i), "state": "complete",
             "ingest_status": "ready", "n_subbands": 16, "missing_subbands": [], "warnings": [], "dec_deg": 54.57,
             "is_calibrator": False, "priority": 100, "state_changed_at": t0, "created_at": t0, "updated_at": t0}
            for i in range(N)])
        conn.execute(insert(m.Job), [
            {"id": jid, "type": "image", "queue": "dsa110-pipeline", "group_id": f"2026-{i:07d}", "params": {},
             "priority": 100, "state": "succeeded", "run_after": t0, "attempts": 1, "max_attempts": 3,
             "created_at": t0 + timedelta(microseconds=i)} for i, jid in enumerate(ids)])


async def wait_until(pilot, ready) -> None:  # type: ignore[no-untyped-def]
    while not ready():
        await pilot.pause(0.001)


async def bench_queue(services: Services) -> tuple[float, list[float]]:
    from contimg_console.app import ContimgApp

    app = ContimgApp(services, status=lambda: {"engine": "running 0/2", "rest": "http://127.0.0.1:8000"},
                     refresh_interval=0)
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen.query(PagedTable).first(None), PagedTable)
                         and app.screen.query_one(PagedTable).loaded_once
                         and not app.screen.query_one(PagedTable).pending)
        await pilot.pause()
        first = time.perf_counter() - t0
        table = app.screen.query_one(PagedTable)
        assert table.total == N, table.total
        times = []
        for _ in range(PRESSES):
            t = time.perf_counter()
            await pilot.press("pagedown")
            await wait_until(pilot, lambda: not table.pending)
            await pilot.pause()
            times.append(time.perf_counter() - t)
        await pilot.press("end")
        await wait_until(pilot, lambda: not table.pending)
        assert table.cursor == N - 1
        floor = []
        for _ in range(PRESSES):  # what pilot.press + a repaint cost with no work at all
            t = time.perf_counter()
            await pilot.press("f12")
            await pilot.pause()
            floor.append(time.perf_counter() - t)
    return first, times, floor


class PlainTable(App[None]):
    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Group", "State", "SB", "Dec°", "Calibrator", "Changed", "Error")
        table.add_rows((g.id, g.state, str(g.n_subbands), f"{g.dec_deg:.2f}", g.calibrator_name or "",
                        g.state_changed_at.strftime("%m-%d %H:%M"), g.error or "")
                       for g in self.services.queue.window(0, N).rows)
        table.focus()


async def bench_plain(services: Services) -> tuple[float, list[float]]:
    app = PlainTable(services)
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == N)
        await pilot.pause()
        first = time.perf_counter() - t0
        times = []
        for _ in range(PRESSES):
            t = time.perf_counter()
            await pilot.press("pagedown")
            await pilot.pause()
            times.append(time.perf_counter() - t)
    return first, times


class Bare(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable()


async def bench_boot() -> float:
    """The floor for first paint: Textual starting an app with one empty widget, here, now."""
    t0 = time.perf_counter()
    async with Bare().run_test(size=SIZE) as pilot:
        await pilot.pause()
        return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, {"data_dir": Path(tmp), "jupyter": {"mode": "off"}})
        settings.ensure_dirs()
        db = Database(settings.db_path)
        db.upgrade()
        seed(db)
        services = Services(db, settings)
        first, pages, floor = asyncio.run(bench_queue(services))
        ref_first, ref_pages = asyncio.run(bench_plain(services))
        boot = min(asyncio.run(bench_boot()) for _ in range(3))
        page, ref_page = statistics.median(pages), statistics.median(ref_pages)
        p95 = sorted(pages)[int(0.95 * len(pages))]
        print(f"Queue, {N:,} groups: first paint {first * 1e3:.0f} ms (goal 300 ms, ratio to goal "
              f"{first / 0.3:.2f}); plain DataTable {ref_first * 1e3:.0f} ms; ratio {first / ref_first:.3f}")
        print(f"  (boot floor: Textual starting an app with one empty table takes {boot * 1e3:.0f} ms here; "
              f"first paint above the floor {max(0.0, first - boot) * 1e3:.0f} ms)")
        print(f"Queue, {N:,} groups: page-down median {page * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms (goal 50 ms, "
              f"ratio to goal {page / 0.05:.2f}); plain DataTable {ref_page * 1e3:.1f} ms; "
              f"ratio {page / ref_page:.2f}")
        print(f"  (pilot floor: an unbound key + repaint costs {statistics.median(floor) * 1e3:.1f} ms here; "
              f"page-down above the floor {max(0.0, page - statistics.median(floor)) * 1e3:.1f} ms)")
        db.dispose()


if __name__ == "__main__":
    main()
