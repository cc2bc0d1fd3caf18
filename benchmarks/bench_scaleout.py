"""Stages on dask.distributed against this host's process pool (issue 18).

1. Throughput: the same 8 tiny simulated groups through the real pipeline (ingest →
   convert → solve/calibrate → image → measure), once with ``engine.executor = "local"``
   (2 processes) and once on a ``LocalCluster`` of 2 single-threaded workers; wall time
   from the first file to the last group done. Goal: dask/local throughput ≥ 0.9.
2. Scheduling overhead: 60 trivial jobs (a stage that writes a 64 KB product) on each
   executor; the per-job difference in ms.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.settings import load_settings  # noqa: E402

GROUPS = 8
TRIVIAL_JOBS = 60


def _settings(root: Path, executor: dict[str, object]):  # type: ignore[no-untyped-def]
    return load_settings(None, {"data_dir": root / "data", "jupyter": {"mode": "off"}, "api": {"enabled": False},
                                "ingest": {"stable_s": 0, "poll_interval_s": 0.2},
                                "engine": {"poll_interval_s": 0.05, "workers": 2, **executor},
                                "imaging": {"params": {"fov_deg": 0.6, "niter": 300}}})


async def _pipeline(root: Path, files: list[Path], executor: dict[str, object]) -> float:
    from contimg_console.runtime import Runtime
    from engine_helpers import group_states

    settings = _settings(root, executor)
    settings.ensure_dirs()
    rt = Runtime(settings)
    await rt.start()
    try:
        t0 = time.perf_counter()
        for f in files:
            shutil.copy(f, settings.incoming_dir / f.name)
        while True:
            states = await asyncio.to_thread(group_states, rt.db)
            if len(states) == GROUPS and all(s in ("complete", "failed") for s in states.values()):
                return time.perf_counter() - t0
            await asyncio.sleep(0.2)
    finally:
        await rt.stop()


async def _trivial(root: Path, executor: dict[str, object]) -> float:
    from engine.db import Database
    from engine_helpers import group_states, make_engine, seed_groups
    from stagefuncs import registry_of

    settings = _settings(root, executor)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    db.upgrade()
    seed_groups(db, TRIVIAL_JOBS)
    engine, _ = make_engine(settings, db, registry_of("ok_stage", stages=1))
    await engine.start()
    try:
        t0 = time.perf_counter()
        while not all(s == "converted" for s in (await asyncio.to_thread(group_states, db)).values()):
            await asyncio.sleep(0.02)
        return (time.perf_counter() - t0) / TRIVIAL_JOBS
    finally:
        await engine.stop()
        db.dispose()


async def main() -> None:
    import distributed

    from engine.simulator import simulate

    os.environ["PYTHONPATH"] = f"{ROOT / 'tests'}{os.pathsep}{ROOT}"  # the dask workers import stagefuncs
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        sims = simulate(base / "sim", groups=GROUPS, preset="tiny", seed=11)
        files = [f for g in sims for f in g.files]
        local = await _pipeline(base / "local", files, {"executor": "local"})
        local_job = await _trivial(base / "local-trivial", {"executor": "local"})
        async with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, asynchronous=True,
                                            dashboard_address=None, silence_logs=40) as cluster:
            dask_cfg = {"executor": "dask", "dask_scheduler": cluster.scheduler_address}
            on_dask = await _pipeline(base / "dask", files, dask_cfg)
            dask_job = await _trivial(base / "dask-trivial", dask_cfg)
    ratio = local / on_dask
    print(f"{GROUPS} tiny groups end to end: local pool {local:.1f} s, dask LocalCluster(2) {on_dask:.1f} s; "
          f"throughput ratio dask/local {ratio:.2f} (goal ≥ 0.9)")
    print(f"per-job overhead (trivial stage, {TRIVIAL_JOBS} jobs): local {local_job * 1e3:.1f} ms, "
          f"dask {dask_job * 1e3:.1f} ms; dask adds {(dask_job - local_job) * 1e3:.1f} ms per job")


if __name__ == "__main__":
    asyncio.run(main())
