"""VO export and the calibrator-imaging views on pipeline-produced data, over HTTP."""

from __future__ import annotations

import asyncio
import io
from typing import Any
from urllib.parse import quote

import aiohttp
from astropy.io.votable import parse_single_table


async def call(rt: Any, method: str, path: str, token: str | None = None, raw: bool = False,
               **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, rt.api_url + path, headers=headers, **kw) as resp:
            if raw:
                return resp.status, await resp.read()
            return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())


async def test_vo_export_and_cone_search(flow_runtime_factory: Any) -> None:
    async with flow_runtime_factory() as rt:
        _, sources = await call(rt, "GET", "/api/v1/sources")
        centre = sources[0]
        cone = {"ra": centre["ra_deg"], "dec": centre["dec_deg"], "radius_arcmin": 10}
        status, pre = await call(rt, "POST", "/api/v1/vo/exports/preview", json={"data_type": "sources",
                                                                                   "cone_search": cone})
        assert status == 200 and pre["estimated_records"] >= 1
        assert {c["name"] for c in pre["available_columns"]} >= {"ra_deg", "dec_deg"}
        body = {"name": "near", "format": "votable", "filter": {"data_type": "sources", "cone_search": cone}}
        status, job = await call(rt, "POST", "/api/v1/vo/exports", rt.token, json=body)
        assert status == 200 and job["created_by"] == "op"
        for _ in range(100):
            status, job = await call(rt, "GET", f"/api/v1/api/v1/vo/exports/{job['id']}")
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "completed" and job["record_count"] == pre["estimated_records"], job
        status, data = await call(rt, "GET", job["download_url"], raw=True)
        table = parse_single_table(io.BytesIO(data)).to_table()
        assert len(table) == job["record_count"] and str(table["ra_deg"].unit) == "deg"
        status, listed = await call(rt, "GET", "/api/v1/api/v1/vo/exports", params={"limit": "50"})
        assert [e["id"] for e in listed["exports"]] == [job["id"]]
        status, cs = await call(rt, "POST", "/api/v1/vo/cone-search", json={**cone, "limit": 100})
        assert cs["total_matches"] == pre["estimated_records"]
        seps = [s["separation_arcsec"] for s in cs["sources"]]
        assert seps == sorted(seps) and seps[0] < 1 and max(seps) <= 600
        status, err = await call(rt, "POST", "/api/v1/vo/exports/preview", json={"data_type": "spectra"})
        assert status == 422
        status, _ = await call(rt, "DELETE", f"/api/v1/vo/exports/{job['id']}", rt.token)
        assert status == 200


async def test_calibrator_imaging_views(flow_runtime_factory: Any) -> None:
    async with flow_runtime_factory() as rt:
        status, cals = await call(rt, "GET", "/api/v1/calibrator-imaging/calibrators", params={"status": "active"})
        names = {c["name"] for c in cals}
        assert "J0834+5534" in names and len(cals) >= 10  # only sourced calibrators are built in
        status, cov = await call(rt, "GET", "/api/v1/calibrator-imaging/data-coverage")
        assert cov["has_data"] and cov["total_groups"] == 2 and cov["recommended_days_back"] >= 7
        status, tr = await call(rt, "GET", f"/api/v1/calibrator-imaging/calibrators/{quote('J0834+5534')}/transits",
                                params={"days_back": str(cov["recommended_days_back"]), "days_forward": "2"})
        with_data = [t for t in tr if t["has_data"]]
        assert len(with_data) == 1 and with_data[0]["num_subband_groups"] == 2
        status, obs = await call(rt, "GET", f"/api/v1/calibrator-imaging/calibrators/{quote('J0834+5534')}/observations",
                                 params={"transit_time_iso": with_data[0]["transit_time_iso"],
                                         "window_minutes": "60"})
        assert sorted(o["observation_id"] for o in obs) == sorted(with_data[0]["observation_ids"])
        assert all(len(o["file_paths"]) == 16 for o in obs)
        status, health = await call(rt, "GET", "/api/v1/calibrator-imaging/health")
        assert health["status"] == "healthy" and health["output_ms_dir_exists"]
        status, err = await call(rt, "GET", "/api/v1/calibrator-imaging/calibrators/NOPE/transits")
        assert status == 404
        _, jobs = await call(rt, "GET", "/absurd/tasks", params={"limit": "100"})
        solve = next(t for t in jobs["tasks"] if t["task_name"] == "calibration-solve")
        status, info = await call(rt, "GET", f"/api/v1/calibrator-imaging/job/{solve['task_id']}")
        assert info["status"] == "completed" and info["result"]["ms_path"].endswith(".ms")
        assert info["result"]["cal_table_path"].endswith(".G")
