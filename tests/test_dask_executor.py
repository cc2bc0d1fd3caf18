"""Stages on dask.distributed (issue 18): the job table stays the system of record; a lost worker loses nothing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import select

distributed = pytest.importorskip("distributed")

from conftest import database_of  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.db import models as m  # noqa: E402
from engine.processing import states  # noqa: E402
from engine.processing.executors import ExecutorError  # noqa: E402
from engine_helpers import fast_settings, group_states, make_engine, run_until, seed_groups  # noqa: E402
from stagefuncs import product_ok, registry_of  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture
async def cluster(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{TESTS.parent}")  # the workers import stagefuncs
    async with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, asynchronous=True,
                                        dashboard_address=None, silence_logs=40) as c:
        yield c


def _db(settings) -> Database:  # type: ignore[no-untyped-def]
    return database_of(settings)


@pytest.mark.both_backends  # on PostgreSQL this is the several-hosts set-up: workers write job logs to the server
async def test_groups_complete_on_dask_and_a_killed_worker_loses_nothing(tmp_path, cluster) -> None:  # type: ignore[no-untyped-def]
    settings = fast_settings(tmp_path, executor="dask", dask_scheduler=cluster.scheduler_address)
    db = _db(settings)
    ids = seed_groups(db, 4)
    engine, _ = make_engine(settings, db, registry_of("sleepy_stage", stages=2, sleep=1.0))
    await engine.start()
    try:
        async with distributed.Client(cluster.scheduler_address, asynchronous=True) as client:
            await run_until(db, lambda: any(s == states.CONVERTING for s in group_states(db).values()))
            pids = await client.run(os.getpid)
            os.kill(next(iter(pids.values())), 9)  # a worker dies mid-stage
        await run_until(db, lambda: set(group_states(db).values()) == {states.CALIBRATED}, timeout=120)
    finally:
        await engine.stop()
    with db.session() as s:
        jobs = list(s.scalars(select(m.Job)))
        logged = {(r.job_id, r.level) for r in s.scalars(select(m.JobLog))}
    assert len(jobs) == 8 and all(j.state == "succeeded" for j in jobs)  # one job per stage and group
    assert all((j.id, "WORKER") in logged and (j.id, "INFO") in logged for j in jobs)  # written by the dask workers
    assert sorted(j.group_id for j in jobs) == sorted(ids * 2)
    for gid in ids:
        for stage in ("convert", "calibrate"):
            assert product_ok(settings.data_dir / "products" / f"{gid}.{stage}")
    assert not list((settings.data_dir / "products").glob("*.tmp"))


async def test_workers_that_cannot_see_the_data_dir_stop_the_start(tmp_path, cluster) -> None:  # type: ignore[no-untyped-def]
    settings = fast_settings(tmp_path, executor="dask", dask_scheduler=cluster.scheduler_address)
    db = _db(settings)
    missing = settings.ms_dir
    missing.rmdir()  # this host's view and the workers' differ: shared storage is not shared
    engine, _ = make_engine(settings, db, registry_of("ok_stage"))
    with pytest.raises(ExecutorError, match=f"must see the data dir on shared storage: .* cannot see {missing}"):
        await engine.start()
    await engine.stop()


async def test_an_unreachable_scheduler_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import free_port

    settings = fast_settings(tmp_path, executor="dask", dask_scheduler=f"tcp://127.0.0.1:{free_port()}",
                             dask_connect_s=1)
    engine, _ = make_engine(settings, _db(settings), registry_of("ok_stage"))
    with pytest.raises(ExecutorError, match="cannot reach the dask scheduler at tcp://127.0.0.1"):
        await engine.start()
    await engine.stop()
    await asyncio.sleep(0)
