"""Task-queue workflows, scheduled tasks and pruning through HTTP, run by the real engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import make_settings
from engine_helpers import FAST, seed_groups
from http_helpers import call as http_call

from engine.db import models as m
from engine.processing.stats import task_name
from engine.workflows import WorkflowError, check_dag

CONVERT = task_name("convert")
pytestmark = pytest.mark.both_backends  # workflow tasks spawn jobs through the queue: on SQLite and PostgreSQL


async def start(tmp_path: Any, registry: str) -> Any:
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, engine={**FAST, "registry": registry}, ingest={"enabled": False})
    rt = Runtime(settings)
    await rt.start()
    rt.accounts.add_user("op", "operator-pass", "admin")
    rt.token = rt.accounts.create_token("op", "tests")
    return rt


async def call(rt: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    return await http_call(rt, method, path, rt.token, **kw)


def hold(rt: Any, n: int) -> list[str]:
    """Groups the engine does not start by itself (ingest not finished), so only the workflow moves them."""
    ids = seed_groups(rt.db, n)
    with rt.db.session() as s:
        for gid in ids:
            s.get(m.ObservationGroup, gid).ingest_status = "waiting"
    return ids


async def wait_status(rt: Any, wf_id: str, done: tuple[str, ...] = ("completed", "failed", "cancelled")) -> Any:
    for _ in range(300):
        _, wf = await call(rt, "GET", f"/absurd/workflows/{wf_id}")
        if wf["status"] in done:
            return wf
        await asyncio.sleep(0.1)
    raise AssertionError(wf)


async def test_a_task_runs_only_after_its_dependency_succeeded(tmp_path: Any) -> None:
    rt = await start(tmp_path, "stagefuncs:crash_registry")  # ok stages that take 0.4 s each
    try:
        g1, g2 = hold(rt, 2)
        body = {"name": "reprocess two groups in order", "metadata": {"why": "test"},
                "tasks": [{"task_name": CONVERT, "params": {"group_id": g1}},
                          {"task_name": CONVERT, "params": {"group_id": g2}, "depends_on": ["#0"]}]}
        status, out = await call(rt, "POST", "/absurd/workflows", json=body)
        assert status == 200, out
        _, wf = await call(rt, "GET", f"/absurd/workflows/{out['workflow_id']}")
        assert wf["status"] == "running" and [t["status"] for t in wf["tasks"]][1] == "pending"
        with rt.db.session() as s:  # the second group's job does not exist yet
            assert s.query(m.Job).filter(m.Job.group_id == g2).count() == 0
        wf = await wait_status(rt, out["workflow_id"])
        assert wf["status"] == "completed" and wf["completed_tasks"] == 2 and wf["metadata"] == {"why": "test"}
        first, second = wf["tasks"]
        assert wf["dag_edges"] == [[first["task_id"], second["task_id"]]] and second["depends_on"] == [first["task_id"]]
        with rt.db.session() as s:
            j1, j2 = s.get(m.Job, first["task_id"]), s.get(m.Job, second["task_id"])
            assert j1.finished_at <= j2.created_at  # spawned after the dependency finished
        _, listed = await call(rt, "GET", "/absurd/workflows?status=completed")
        assert listed["total"] == 1 and listed["workflows"][0]["task_count"] == 2
    finally:
        await rt.stop()


async def test_a_failed_task_fails_the_workflow_and_cancels_the_rest(tmp_path: Any) -> None:
    rt = await start(tmp_path, "stagefuncs:failing_registry")
    try:
        g1, g2 = hold(rt, 2)
        body = {"name": "doomed", "tasks": [{"task_name": CONVERT, "params": {"group_id": g1}},
                                            {"task_name": CONVERT, "params": {"group_id": g2}, "depends_on": ["#0"]}]}
        _, out = await call(rt, "POST", "/absurd/workflows", json=body)
        wf = await wait_status(rt, out["workflow_id"])
        assert wf["status"] == "failed" and wf["failed_tasks"] == 1
        assert [t["status"] for t in wf["tasks"]] == ["failed", "cancelled"]
        with rt.db.session() as s:
            assert s.query(m.Job).filter(m.Job.group_id == g2).count() == 0  # never ran after the failure
    finally:
        await rt.stop()


async def test_bad_workflows_scheduled_tasks_cancel_and_prune(tmp_path: Any) -> None:
    rt = await start(tmp_path, "stagefuncs:crash_registry")
    try:
        g1, g2 = hold(rt, 2)
        status, err = await call(rt, "POST", "/absurd/workflows", json={
            "name": "x", "tasks": [{"task_name": "teleport", "params": {"group_id": g1}}]})
        assert status == 422 and "tasks[0].task_name" in err["detail"]
        status, err = await call(rt, "POST", "/absurd/workflows", json={
            "name": "x", "tasks": [{"task_name": CONVERT, "params": {"group_id": g1}, "depends_on": ["#1"]},
                                   {"task_name": task_name("image"), "params": {"group_id": g1},
                                    "depends_on": [CONVERT]}]})
        assert status == 422 and "cycle" in err["detail"]

        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        status, task = await call(rt, "POST", "/absurd/scheduled", json={
            "queue_name": "dsa110-pipeline", "task_name": CONVERT, "params": {"group_id": g2}, "run_at": later})
        assert status == 200
        _, scheduled = await call(rt, "GET", "/absurd/scheduled")
        assert [t["task_id"] for t in scheduled["tasks"]] == [task["task_id"]]
        assert scheduled["tasks"][0]["status"] == "pending"
        status, err = await call(rt, "POST", "/absurd/scheduled", json={
            "queue_name": "q", "task_name": CONVERT, "params": {"group_id": g2}, "cron": "0 3 * * *"})
        assert status == 422 and "/api/v1/triggers" in err["detail"]

        # a workflow waiting behind a scheduled job of its first group can be cancelled before it runs
        _, out = await call(rt, "POST", "/absurd/workflows", json={
            "name": "later", "tasks": [{"task_name": CONVERT, "params": {"group_id": g2}},
                                       {"task_name": CONVERT, "params": {"group_id": g1}, "depends_on": ["#0"]}]})
        status, _ = await call(rt, "DELETE", f"/absurd/workflows/{out['workflow_id']}", json={"reason": "not now"})
        assert status == 200
        _, wf = await call(rt, "GET", f"/absurd/workflows/{out['workflow_id']}")
        assert wf["status"] == "cancelled" and wf["tasks"][1]["status"] == "cancelled"

        with rt.db.session() as s:
            old = datetime.now(UTC) - timedelta(days=40)
            s.add(m.Job(id="old-done", type="convert", state="succeeded", created_at=old, finished_at=old))
            s.add(m.Job(id="old-failed", type="convert", state="failed", created_at=old, finished_at=old))
        status, out = await call(rt, "POST", "/absurd/prune", json={"retention_days": 30})
        assert status == 200 and out == {"purged": 1}
        status, out = await call(rt, "POST", "/absurd/prune", json={"retention_days": 30,
                                                                     "statuses": ["failed", "pending"]})
        assert status == 422
        with rt.db.session() as s:
            assert s.get(m.Job, "old-failed") is not None and s.get(m.Job, task["task_id"]) is not None
    finally:
        await rt.stop()


def test_dag_checks() -> None:
    tasks = [{"task_name": "a"}, {"task_name": "b", "depends_on": ["a"]}, {"task_name": "c", "depends_on": ["a", "b"]}]
    assert check_dag(tasks) == [[], [0], [0, 1]]
    with pytest.raises(WorkflowError, match="no task named 'z'"):
        check_dag([{"task_name": "a", "depends_on": ["z"]}])
    with pytest.raises(WorkflowError, match="cannot depend on itself"):
        check_dag([{"task_name": "a", "depends_on": ["a"]}])
