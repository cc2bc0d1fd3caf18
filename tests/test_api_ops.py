"""Critical flows over HTTP: create, validate and restore a backup; create and execute a trigger."""

from __future__ import annotations

import asyncio
from typing import Any

from engine_helpers import seed_groups
from http_helpers import call


def tokens(rt: Any) -> dict[str, str]:
    rt.accounts.add_user("op", "operator-pass", "operator")
    rt.accounts.add_user("root", "admin-password", "admin")
    return {"op": rt.accounts.create_token("op", "t"), "admin": rt.accounts.create_token("root", "t")}


async def wait_status(rt: Any, path: str, done: set[str], timeout: float = 60) -> Any:
    for _ in range(int(timeout * 10)):
        status, body = await call(rt, "GET", path)
        if body.get("status") in done:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} stuck: {body}")


async def test_backup_validate_restore(runtime: Any) -> None:
    rt = runtime
    tok = tokens(rt)
    seed_groups(rt.db, 2)
    (rt.settings.caltables_dir / "set1.B").mkdir()
    (rt.settings.caltables_dir / "set1.B" / "table.dat").write_bytes(b"bandpass solutions")
    body = {"name": "nightly", "type": "full", "scope": {"measurement_sets": False, "images": True,
                                                         "catalogs": True, "pipeline_configs": True,
                                                         "job_history": True, "qa_ratings": True}}
    status, _ = await call(rt, "POST", "/api/v1/backups", json=body)
    assert status == 401
    status, b = await call(rt, "POST", "/api/v1/backups", tok["op"], json=body)
    assert status == 200 and b["status"] in ("pending", "running", "completed") and b["created_by"] == "op"
    status, again = await call(rt, "POST", "/api/v1/backups", tok["op"], json=body)
    assert again["id"] == b["id"]  # the dashboard's retried POST is the same backup
    done = await wait_status(rt, f"/api/v1/backups/{b['id']}", {"completed", "failed"})
    assert done["status"] == "completed" and done["item_count"] > 0 and done["checksum"], done
    status, listed = await call(rt, "GET", "/api/v1/backups", params={"limit": "20"})
    assert [x["id"] for x in listed["backups"]] == [b["id"]]
    status, v = await call(rt, "POST", f"/api/v1/backups/{b['id']}/validate", tok["op"])
    assert v["is_valid"] and v["checksum_verified"] and v["files_corrupted"] == 0

    # lose a calibration table, preview and restore it
    (rt.settings.caltables_dir / "set1.B" / "table.dat").unlink()
    req = {"backup_id": b["id"], "scope": {"catalogs": True}, "overwrite_existing": False, "dry_run": True}
    status, _ = await call(rt, "POST", f"/api/v1/backups/{b['id']}/restore/preview", tok["op"], json=req)
    assert status == 403  # restore needs admin
    status, prev = await call(rt, "POST", f"/api/v1/backups/{b['id']}/restore/preview", tok["admin"], json=req)
    assert status == 200 and prev["can_restore"] and prev["items_to_restore"] >= 1
    assert not (rt.settings.caltables_dir / "set1.B" / "table.dat").exists()  # the preview changed nothing
    status, job = await call(rt, "POST", f"/api/v1/backups/{b['id']}/restore", tok["admin"],
                             json={**req, "dry_run": False, "notes": "lost a table"})
    assert status == 200 and job["backup_id"] == b["id"] and job["started_by"] == "root"
    finished = await wait_status(rt, f"/api/v1/restores/{job['id']}", {"completed", "failed"})
    assert finished["status"] == "completed", finished
    assert (rt.settings.caltables_dir / "set1.B" / "table.dat").read_bytes() == b"bandpass solutions"
    status, rs = await call(rt, "GET", "/api/v1/restores", params={"limit": "5"})
    assert rs["restores"][0]["id"] == job["id"]
    status, hist = await call(rt, "GET", "/api/backup/history")
    assert hist[0]["id"] == b["id"]

    status, err = await call(rt, "DELETE", f"/api/v1/backups/{b['id']}", tok["op"])
    assert status == 403
    status, _ = await call(rt, "DELETE", f"/api/v1/backups/{b['id']}", tok["admin"])
    assert status == 200
    status, _ = await call(rt, "GET", f"/api/v1/backups/{b['id']}")
    assert status == 404


async def test_trigger_create_execute_history(runtime: Any) -> None:
    rt = runtime
    tok = tokens(rt)
    (gid,) = seed_groups(rt.db, 1)
    await rt.engine.pause()
    status, pipes = await call(rt, "GET", "/api/v1/api/v1/pipelines/available")
    assert "reprocess-group" in {p["id"] for p in pipes["pipelines"]}
    body = {"name": "reprocess", "event": "manual", "pipeline_id": "reprocess-group", "conditions": [],
            "parameters": {"group_id": gid}}
    status, t = await call(rt, "POST", "/api/v1/triggers", tok["op"], json=body)
    assert status == 200 and t["status"] == "enabled" and t["created_by"] == "op"
    status, listed = await call(rt, "GET", "/api/v1/api/v1/triggers?")
    assert [x["id"] for x in listed["triggers"]] == [t["id"]]
    status, ex = await call(rt, "POST", f"/api/v1/triggers/{t['id']}/execute", tok["op"], json={})
    assert status == 200 and ex["status"] == "success" and ex["job_id"], ex
    status, job = await call(rt, "GET", f"/absurd/tasks/{ex['job_id']}")
    assert job["task_name"] == "convert-uvh5-to-ms" and job["status"] == "pending"  # the engine is paused
    status, recent = await call(rt, "GET", "/api/v1/api/v1/triggers/executions/recent", params={"limit": "10"})
    assert recent["executions"][0]["id"] == ex["id"]
    status, hist = await call(rt, "GET", f"/api/triggers/{t['id']}/history")
    assert [h["id"] for h in hist] == [ex["id"]]

    status, err = await call(rt, "POST", "/api/v1/triggers", tok["op"],
                             json={"name": "bad cron", "event": "schedule", "pipeline_id": "retry-failed",
                                   "schedule": {"cron": "61 * * * *", "timezone": "UTC"}})
    assert status == 422 and "minute" in err["message"]
    status, sched = await call(rt, "POST", "/api/v1/triggers", tok["op"],
                               json={"name": "nightly retry", "event": "schedule", "pipeline_id": "retry-failed",
                                     "schedule": {"cron": "0 3 * * *", "timezone": "UTC",
                                                  "description": "nightly"}})
    assert status == 200 and sched["schedule"]["next_run"]
    assert sched["id"] in rt.triggers.job_ids()  # the scheduler fires it; our tables keep the history
    status, off = await call(rt, "PATCH", f"/api/v1/triggers/{sched['id']}/status", tok["op"],
                             json={"status": "disabled"})
    assert off["status"] == "disabled" and sched["id"] not in rt.triggers.job_ids()
    status, tr = await call(rt, "POST", f"/api/v1/triggers/{t['id']}/test", tok["op"],
                            json={"test_data": {"dec_deg": 54.6}})
    assert status == 200 and tr["would_trigger"] is True
