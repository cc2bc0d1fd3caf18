"""Health, storage, metrics and Prometheus endpoints over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from engine.db import models as m
from engine.monitoring import mjd, raise_alert


async def call(rt: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, rt.api_url + path, **kw) as resp:
            return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())


def seed(rt: Any) -> None:
    now = mjd(datetime.now(UTC))
    with rt.db.session() as s:
        cs = m.CalibrationSet(name="set1", calibrator_name="J0834+5534", source_ms_path="/x.ms", refant="3",
                              dec_deg=54.57, mid_mjd=now - 0.1, valid_start_mjd=now - 0.6, valid_end_mjd=now + 0.4,
                              qa_metrics={"snr_median": 80}, qa_passed=True, status="active")
        cs.tables = [m.CalibrationTable(table_type="bandpass", path="/c/set1.B"),
                     m.CalibrationTable(table_type="gain", path="/c/set1.G")]
        s.add(cs)
        s.add(m.KeyValue(key="pointing.last", value={"dec_deg": 54.57, "group_id": "g"}))
    raise_alert(rt.db, "pointing_change", "warning", "pointing changed", "ingest")


async def test_health_pages(runtime: Any) -> None:
    rt = runtime
    seed(rt)
    status, sysrep = await call(rt, "GET", "/api/v1/health/system")
    assert status == 200 and isinstance(sysrep["services"], list)
    names = {s["name"] for s in sysrep["services"]}
    assert {"database", "engine", "scheduler", "disk", "ingest", "rest"} <= names
    assert sysrep["summary"]["total"] == len(sysrep["services"])

    status, win = await call(rt, "GET", "/api/v1/health/validity-windows")
    assert win["total_active_tables"] == 2 and win["active_sets"][0]["set_name"] == "set1"
    assert isinstance(win["active_sets"][0]["tables"][0]["created_at"], float)
    status, tl = await call(rt, "GET", "/api/v1/health/validity-windows/timeline",
                            params={"hours_back": "24", "hours_forward": "48"})
    assert tl["total_windows"] == 2 and all(w["is_current"] for w in tl["windows"])
    status, tl = await call(rt, "GET", "/api/v1/health/validity-windows/timeline",
                            params={"hours_back": "-1", "hours_forward": "48"})
    assert status == 422

    status, pt = await call(rt, "GET", "/api/v1/health/pointing")
    assert status == 200 and 0 <= pt["current_lst"] < 24
    assert pt["upcoming_transits"] and all(t["dec_deg"] for t in pt["upcoming_transits"])
    times = [t["transit_utc"] for t in pt["upcoming_transits"]]
    assert times == sorted(times)

    status, al = await call(rt, "GET", "/api/v1/health/alerts", params={"acknowledged": "false"})
    assert al["unacknowledged_count"] == 1 and al["alerts"][0]["alert_type"] == "pointing_change"
    alert_id = al["alerts"][0]["id"]
    status, _ = await call(rt, "POST", f"/api/v1/health/alerts/{alert_id}/acknowledge")
    assert status == 401  # writes need an operator
    rt.accounts.add_user("op", "operator-pass", "operator")
    token = rt.accounts.create_token("op", "t")
    status, _ = await call(rt, "POST", f"/api/v1/health/alerts/{alert_id}/acknowledge",
                           headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    status, al = await call(rt, "GET", "/api/v1/health/alerts", params={"acknowledged": "false"})
    assert al["alerts"] == [] and al["unacknowledged_count"] == 0

    status, fm = await call(rt, "GET", "/api/v1/health/flux-monitoring")
    assert status == 200 and fm["calibrators"] == [] and fm["message"]


async def test_storage_metrics_and_prometheus(runtime: Any) -> None:
    rt = runtime
    seed(rt)
    (rt.settings.ms_dir / "stale.ms.tmp").mkdir()
    status, st = await call(rt, "GET", "/api/v1/health/storage/summary")
    assert status == 200 and st["partitions"][0]["total_bytes"] > 0
    assert {d["name"] for d in st["directories"]} >= {"incoming", "ms", "images", "logs"}
    status, rec = await call(rt, "GET", "/api/v1/health/storage/cleanup-recommendations")
    assert status == 200 and isinstance(rec["candidates"], list)
    status, trends = await call(rt, "GET", "/api/v1/health/storage/trends", params={"days": "30"})
    assert status == 200 and isinstance(trends, list) and trends[0]["data_points"]
    status, dash = await call(rt, "GET", "/api/v1/metrics/dashboard")
    assert set(dash["pipeline"]) == {"jobs_per_hour", "avg_job_duration_sec", "success_rate_percent", "queue_depth",
                                     "active_workers", "total_workers"}
    assert {m_["id"] for m_ in dash["metrics"]} == {"cpu", "memory", "disk", "queue_depth"}
    status, svc = await call(rt, "GET", "/api/v1/services/status")
    assert status == 200 and svc["summary"]["total"] == len(svc["services"])
    assert all("responseTime" in s and "lastChecked" in s for s in svc["services"])
    status, text = await call(rt, "GET", "/metrics")
    assert status == 200
    assert "calibration_last_valid_timestamp" in text and "contimg_queue_depth" in text
    assert 'contimg_http_request_duration_seconds_count{method="GET",route="/api/v1/services/status"' in text
    line = next(ln for ln in text.splitlines() if ln.startswith("calibration_last_valid_timestamp"))
    assert float(line.split()[-1]) > 1.7e9


def test_storage_trend_from_samples(settings: object, db: object) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.monitoring import SAMPLES_KEY, storage_trend
    from engine.db import models as mm

    now = datetime.now(UTC)
    with db.session() as s:  # type: ignore[attr-defined]
        s.add(mm.KeyValue(key=SAMPLES_KEY, value={"samples": [
            [(now - timedelta(days=2)).timestamp(), 1_000_000_000, 10**12],
            [(now - timedelta(days=1)).timestamp(), 2_000_000_000, 10**12]]}))
    trend = storage_trend(db, settings, days=30, now=now)  # type: ignore[arg-type]
    points = trend["data_points"]
    assert [p["used_bytes"] for p in points[:2]] == [1_000_000_000, 2_000_000_000]
    assert points[2]["timestamp"] == now and trend["period_start"] < trend["period_end"]
    # a least-squares line through the three samples, recomputed here
    ts = [(p["timestamp"].timestamp()) / 86400 for p in points]
    us = [p["used_bytes"] for p in points]
    tm, um = sum(ts) / 3, sum(us) / 3
    expected = sum((t - tm) * (u - um) for t, u in zip(ts, us)) / sum((t - tm) ** 2 for t in ts)
    assert abs(trend["growth_rate_bytes_per_day"] - expected) <= 1e-6 * abs(expected)
    old = storage_trend(db, settings, days=1.5, now=now)  # type: ignore[arg-type]
    assert [p["used_bytes"] for p in old["data_points"][:1]] == [2_000_000_000]  # the 2-day sample is out
