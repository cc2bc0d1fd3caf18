"""Pipeline control, conversion views, log search and the session cookie, over HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
from http_helpers import call


async def test_pipeline_control_and_conversion(flow_runtime_factory: Any) -> None:
    async with flow_runtime_factory() as rt:
        status, reg = await call(rt, "GET", "/api/v1/pipeline/registered")
        assert reg["total"] == 1 and "convert" in reg["pipelines"][0]["description"]
        status, st = await call(rt, "GET", "/api/v1/pipeline/stages")
        assert {s["name"] for s in st["stages"]} == {"convert", "solve", "calibration", "imaging", "measure"}
        status, ex = await call(rt, "GET", "/api/v1/pipeline/executions", params={"limit": "20"})
        assert ex["total"] == 2 and all(e["status"] == "completed" for e in ex["executions"])
        assert [j["job_type"] for j in ex["executions"][0]["jobs"]][:2] == ["convert-uvh5-to-ms", "calibration-solve"]
        one = ex["executions"][0]["execution_id"]
        status, e = await call(rt, "GET", f"/api/v1/pipeline/executions/{one}")
        assert status == 200 and e["execution_id"] == one

        status, images = await call(rt, "GET", "/api/v1/images")
        status, img = await call(rt, "GET", f"/api/v1/images/{images[0]['id']}")
        # a complete group cannot be imaged again from here: the state machine says why
        status, err = await call(rt, "POST", "/api/v1/pipeline/image", rt.token, params={"ms_path": img["ms_path"]})
        assert status == 409 and "complete" in err["message"] and "calibrated" in err["message"]
        status, err = await call(rt, "POST", "/api/v1/pipeline/stage", rt.token,
                                 json={"stage": "imaging", "params": {"ms_path": "/nope.ms"}})
        assert status == 404 and err["code"] == "MS_NOT_FOUND"
        status, err = await call(rt, "POST", "/api/v1/pipeline/full", rt.token,
                                 json={"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"})
        assert status == 422
        # bulk retry of failures caused only by interruptions: operators only; nothing to do on a clean run
        status, _ = await call(rt, "POST", "/api/v1/pipeline/retry-failed", json={"reason": "interrupted"})
        assert status == 401
        status, err = await call(rt, "POST", "/api/v1/pipeline/retry-failed", rt.token, json={"reason": "maybe"})
        assert status == 422
        status, res = await call(rt, "POST", "/api/v1/pipeline/retry-failed", rt.token, json={})
        assert status == 200 and res["retried"] == [] and "interruptions" in res["message"]

        status, cst = await call(rt, "GET", "/api/v1/conversion/stats")
        assert cst["total_groups"] == 2 and cst["total_files"] == 32
        status, pend = await call(rt, "GET", "/api/v1/conversion/pending")
        assert pend["groups"] == []
        gid = ex["executions"][0]["execution_id"]
        status, gs = await call(rt, "GET", f"/api/v1/conversion/status/{gid}")
        assert gs["state"] == "complete" and len(gs["files"]) == 16 and gs["ms_path"].endswith(".ms")
        status, idx = await call(rt, "GET", "/api/v1/conversion/hdf5-index", params={"search": "_sb03", "limit": "10"})
        assert idx["total"] == 2
        status, err = await call(rt, "POST", "/api/v1/conversion/convert", rt.token, json={"group_id": gid})
        assert status == 409


async def test_reprocess_a_time_range_over_rest(flow_runtime_factory: Any, flow_data_root: Any, tmp_path: Any) -> None:
    import shutil

    root = tmp_path / "copy"
    # the reprocess changes the data: a copy, not the shared one (no runtime holds it: no WAL to take)
    shutil.copytree(flow_data_root, root, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    async with flow_runtime_factory(root) as rt:
        # archive reprocessing: a time range back to a stage, below live priority, and its progress
        window = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2100-01-01T00:00:00Z", "stage": "measure"}
        status, _ = await call(rt, "POST", "/api/v1/pipeline/reprocess", json=window)
        assert status == 401
        status, _ = await call(rt, "POST", "/api/v1/pipeline/reprocess", rt.token,
                               json={**window, "end_time": "1999-01-01T00:00:00Z"})
        assert status == 422
        status, res = await call(rt, "POST", "/api/v1/pipeline/reprocess", rt.token, json=window)
        assert status == 200 and len(res["queued"]) == 2 and res["skipped"] == {}
        status, prog = await call(rt, "GET", "/api/v1/pipeline/reprocess")
        assert status == 200 and sum(prog["jobs"].values()) == 2

async def test_log_search_and_tail(flow_runtime_factory: Any) -> None:
    async with flow_runtime_factory() as rt:
        status, jobs = await call(rt, "GET", "/api/v1/jobs")
        run_id = jobs[0]["run_id"]
        status, res = await call(rt, "GET", "/api/v1/logs/search", params={"labels.run_id": run_id, "limit": "200"})
        assert status == 200 and res["entries"] and all(e["labels"]["run_id"] == run_id for e in res["entries"])
        status, page = await call(rt, "GET", "/api/v1/logs/search", params={"limit": "5"})
        assert status == 200 and 0 < len(page["entries"]) <= 5 and page["next_cursor"]
        ts = [e["timestamp"] for e in page["entries"]]
        assert ts == sorted(ts)
        status, tail = await call(rt, "GET", "/api/v1/logs/search",
                                  params={"cursor": page["next_cursor"], "direction": "forward", "limit": "200"})
        assert status == 200
        assert all(int(e["cursor"]) > int(page["next_cursor"]) for e in tail["entries"])
        status, err = await call(rt, "GET", "/api/v1/logs/search", params={"level": "loud"})
        assert status == 422 and "loud" in err["message"]
        status, err = await call(rt, "GET", "/api/v1/logs/search", params={"start": "yesterday"})
        assert status == 422


async def test_session_cookie_authorises_plain_fetches(flow_runtime_factory: Any) -> None:
    async with flow_runtime_factory() as rt:
        rt.settings.api.anonymous_reads = "never"
        # unsafe=True: keep cookies for an IP address host, as browsers do for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(rt.api_url + "/api/v1/pipeline/stages") as resp:
                assert resp.status == 401
            async with http.post(rt.api_url + "/api/v1/auth/login",
                                 json={"username": "op", "password": "operator-pass"}) as resp:
                assert resp.status == 200 and "contimg_session" in resp.cookies
            async with http.get(rt.api_url + "/api/v1/pipeline/stages") as resp:  # cookie, no bearer
                assert resp.status == 200
