"""The shipped Prometheus rules and config pass promtool, and a real Prometheus scraping a real runtime
answers PromQL through /api/v1/metrics/query."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import free_port, make_settings

PACKAGING = Path(__file__).resolve().parent.parent / "packaging" / "prometheus"
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="prometheus/promtool not installed (.ci/run installs them)")


@needs_prometheus
def test_shipped_rules_and_config_are_valid() -> None:
    for args in (["check", "rules", str(PACKAGING / "contimg-rules.yml")],
                 ["check", "config", str(PACKAGING / "prometheus.yml")]):
        out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


async def get(rt: Any, path: str, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(rt.api_url + path, params=params) as resp:
            return resp.status, await resp.json()


@needs_prometheus
async def test_promql_through_the_api_from_a_prometheus_scraping_us(tmp_path: Path) -> None:
    from contimg_console.runtime import Runtime

    prom_port = free_port()
    rt = Runtime(make_settings(tmp_path, api={"prometheus_url": f"http://127.0.0.1:{prom_port}"},
                               ingest={"enabled": False}))
    await rt.start()
    target = rt.api_url.removeprefix("http://")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"global:\n  scrape_interval: 1s\nrule_files: ['{PACKAGING / 'contimg-rules.yml'}']\n"
                   f"scrape_configs:\n  - job_name: contimg\n    static_configs:\n      - targets: ['{target}']\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        result: Any = None
        while time.time() - t0 < 60:
            status, result = await get(rt, "/api/v1/metrics/query", query='up{job="contimg"}')
            if status == 200 and result["data"]:
                break
            await asyncio.sleep(0.5)
        assert status == 200 and result["resultType"] == "vector", result
        series = result["data"][0]
        assert series["metric"] == "up" and series["labels"]["job"] == "contimg"
        assert series["values"][0]["value"] == 1.0
        await asyncio.sleep(2.5)
        now = time.time()
        status, ranged = await get(rt, "/api/v1/metrics/query", query="up", start=now - 10, end=now, step=1)
        assert status == 200 and ranged["resultType"] == "matrix" and len(ranged["data"][0]["values"]) >= 2
        status, err = await get(rt, "/api/v1/metrics/query", query="up{")
        assert status == 422 and "Prometheus" in err["detail"]
        status, err = await get(rt, "/api/v1/metrics/query", query="up", start=now)
        assert status == 422 and "both start and end" in err["detail"]
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        await rt.stop()


async def test_without_prometheus_the_query_says_which_setting_is_missing(runtime: Any) -> None:
    status, err = await get(runtime, "/api/v1/metrics/query", query="up")
    assert status == 503 and "api.prometheus_url" in err["detail"]
