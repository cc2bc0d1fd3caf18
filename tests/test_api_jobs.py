"""Jobs (§16.1) and the /absurd task queue (§16.2) against a running engine, over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import make_settings
from engine_helpers import FAST, group_states, run_until, seed_groups

pytestmark = pytest.mark.both_backends  # the REST job queue over a running engine, on SQLite and PostgreSQL


@pytest.fixture
async def jobs_rt(tmp_path: Path):  # type: ignore[no-untyped-def]
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, engine={**FAST, "registry": "stagefuncs:failing_registry"})
    rt = Runtime(settings)
    await rt.start()
    rt.accounts.add_user("op", "operator-pass", "operator")
    rt.op_token = rt.accounts.create_token("op", "tests")
    try:
        yield rt
    finally:
        await rt.stop()


async def call(rt: Any, method: str, path: str, *, token: str | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, rt.api_url + path, headers=headers, **kw) as resp:
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (await resp.json()) if "json" in ctype else await resp.text()


async def test_failed_jobs_flow_through_the_api(jobs_rt: Any) -> None:
    rt = jobs_rt
    ids = seed_groups(rt.db, 2)
    await run_until(rt.db, lambda: set(group_states(rt.db).values()) == {"failed"})

    status, jobs = await call(rt, "GET", "/api/v1/jobs")
    assert status == 200 and isinstance(jobs, list) and len(jobs) == 2
    assert set(jobs[0]) == {"run_id", "status", "started_at", "finished_at"}
    assert {j["status"] for j in jobs} == {"failed"}
    run_id = jobs[0]["run_id"]

    status, prov = await call(rt, "GET", f"/api/v1/jobs/{run_id}/provenance")
    assert status == 200 and prov["runId"] == run_id and prov["logsUrl"] == f"/logs/{run_id}"
    status, detail = await call(rt, "GET", f"/api/v1/jobs/{run_id}")
    assert detail["config"]["error_kind"] == "permanent" and "checksum mismatch" in detail["config"]["error"]
    status, logs = await call(rt, "GET", f"/api/v1/jobs/{run_id}/logs")
    assert any("failed" in ln["message"] for ln in logs["lines"])

    status, err = await call(rt, "GET", "/api/v1/jobs/nope/provenance")
    assert status == 404 and err["code"] == "NOT_FOUND"

    # writes need an operator token
    status, err = await call(rt, "POST", f"/api/v1/jobs/{run_id}/rerun")
    assert status == 401
    status, body = await call(rt, "POST", f"/api/v1/jobs/{run_id}/rerun", token=rt.op_token)
    assert status == 200 and body["status"] in ("pending", "running", "failed")
    await run_until(rt.db, lambda: set(group_states(rt.db).values()) == {"failed"})

    status, tasks = await call(rt, "GET", "/absurd/tasks", params={"status": "failed", "limit": "20"})
    assert status == 200 and tasks["total"] == 2
    task = tasks["tasks"][0]
    assert task["task_name"] == "convert-uvh5-to-ms" and task["queue_name"] == "dsa110-pipeline"
    assert task["status"] == "failed" and task["error"]

    status, qs = await call(rt, "GET", "/absurd/queues/dsa110-pipeline/stats")
    assert qs == {"queue_name": "dsa110-pipeline", "pending": 0, "claimed": 0, "completed": 0, "failed": 2,
                  "cancelled": 0, "total": 2}
    status, dlq = await call(rt, "GET", "/absurd/dlq")
    assert dlq["total"] == 2
    status, ps = await call(rt, "GET", "/absurd/pipeline/status")
    assert ps["stages"]["convert-uvh5-to-ms"]["failed"] == 2 and ps["total"]["failed"] == 2
    assert set(ps["stages"]) >= {"imaging", "calibration-solve", "photometry"}
    status, health = await call(rt, "GET", "/absurd/health")
    assert health["status"] == "degraded" and health["worker_pool_healthy"] and health["database_available"]
    status, workers = await call(rt, "GET", "/absurd/workers")
    assert workers["total"] >= 1 and workers["workers"][0]["worker_id"] == rt.engine.worker_id
    status, one = await call(rt, "GET", f"/absurd/workers/{rt.engine.worker_id}")
    assert status == 200 and one["state"] in ("active", "idle")
    status, metrics = await call(rt, "GET", "/absurd/metrics")
    assert metrics["total_failed"] == 2

    status, csv_text = await call(rt, "GET", "/api/v1/jobs/export", params={"ids": run_id})
    assert status == 200 and run_id in csv_text and csv_text.startswith("run_id,")
    assert ids


async def test_cancel_and_bulk_actions(jobs_rt: Any) -> None:
    rt = jobs_rt
    await rt.engine.pause()
    seed_groups(rt.db, 3)
    await run_until(rt.db, lambda: len(rt.services.jobs_page(state="queued")[0]) == 3)
    tasks = (await call(rt, "GET", "/absurd/tasks"))[1]["tasks"]
    assert {t["status"] for t in tasks} == {"pending"}
    first, *rest = [t["task_id"] for t in tasks]
    status, body = await call(rt, "DELETE", f"/absurd/tasks/{first}", token=rt.op_token,
                              json={"reason": "Cancelled by user"})
    assert status == 200 and body["status"] == "cancelled"
    status, again = await call(rt, "DELETE", f"/absurd/tasks/{first}", token=rt.op_token)
    assert status == 200  # repeating a cancel is harmless
    status, bulk = await call(rt, "POST", "/api/v1/jobs/bulk-cancel", token=rt.op_token,
                              json={"runIds": [*rest, "missing"]})
    assert sorted(bulk["succeeded"]) == sorted(rest) and "missing" in bulk["failed"]
    assert set(group_states(rt.db).values()) == {"cancelled"}
    status, err = await call(rt, "POST", "/api/v1/jobs/bulk-cancel", token=rt.op_token, json={"runIds": "x"})
    assert status == 422 and err["details"]["errors"][0]["field"] == "runIds"


async def test_spawn_validates_task_and_group(jobs_rt: Any) -> None:
    rt = jobs_rt
    (gid,) = seed_groups(rt.db, 1)
    status, err = await call(rt, "POST", "/absurd/spawn", token=rt.op_token,
                             json={"queue_name": "dsa110-pipeline", "task_name": "teleport", "params": {}})
    assert status == 422 and "unknown task" in err["message"]
    status, err = await call(rt, "POST", "/absurd/spawn", token=rt.op_token,
                             json={"queue_name": "dsa110-pipeline", "task_name": "convert-uvh5-to-ms",
                                   "params": {}})
    assert status == 422 and "group_id" in err["message"]
    status, body = await call(rt, "POST", "/absurd/spawn", token=rt.op_token,
                              json={"queue_name": "dsa110-pipeline", "task_name": "convert-uvh5-to-ms",
                                    "params": {"group_id": gid}})
    assert status == 200 and body["task_id"]


async def test_websockets_stream_events_and_job_logs(jobs_rt: Any) -> None:
    rt = jobs_rt
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(rt.api_url + "/api/v1/ws/pipeline") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            seed_groups(rt.db, 1)
            rt.engine._reconcile_requested = True
            rt.engine.poke()
            seen = []
            while "job.failed" not in seen:
                seen.append((await ws.receive_json(timeout=30))["type"])
            assert "job.started" in seen
        jobs = (await call(rt, "GET", "/api/v1/jobs"))[1]
        async with http.ws_connect(rt.api_url + f"/api/v1/ws/jobs/{jobs[0]['run_id']}") as ws:
            msgs = []
            async for msg in ws:
                msgs.append(msg.json())
            assert any(m["type"] == "log" and "failed" in m["message"] for m in msgs)
            assert any(m["type"] == "state" and m["state"] == "failed" for m in msgs)
