"""Alert policies: CRUD and dry run over HTTP, and the evaluator firing, holding and being silenced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine_helpers import seed_groups
from http_helpers import call

from engine.alerting import Evaluator
from engine.db import models as m

POLICY = {"name": "queue backing up", "description": "", "severity": "critical", "channels": ["email"],
          "enabled": True, "rules": [{"metric": "contimg_queue_depth", "operator": ">", "threshold": 1}],
          "overrides": []}


async def test_policies_and_evaluation(runtime: Any) -> None:
    rt = runtime
    await rt.engine.pause()
    rt.accounts.add_user("op", "operator-pass", "operator")
    tok = rt.accounts.create_token("op", "t")
    status, err = await call(rt, "POST", "/api/v1/alert-policies", tok,
                             json={**POLICY, "rules": [{"metric": "cpu_temperature", "operator": ">", "threshold": 1}]})
    assert status == 422 and "unknown metric" in err["message"]
    status, dry = await call(rt, "POST", "/api/v1/alert-policies/dry-run", tok, json={"policy": POLICY})
    assert status == 200 and dry["results"][0]["would_fire"] is False  # nothing queued yet
    seed_groups(rt.db, 3)
    rt.engine._reconcile_requested = True
    rt.engine.poke()
    for _ in range(50):
        if len(rt.services.jobs_page(state="queued")[0]) == 3:
            break
        import asyncio

        await asyncio.sleep(0.1)
    status, dry = await call(rt, "POST", "/api/v1/alert-policies/dry-run", tok, json={"policy": POLICY})
    assert dry["results"][0]["would_fire"] is True and "= 3 > 1" in dry["results"][0]["sample_alerts"][0]["message"]

    status, p = await call(rt, "POST", "/api/v1/alert-policies", tok, json=POLICY)
    assert status == 200 and p["id"] and p["rules"][0]["metric"] == "contimg_queue_depth"
    status, listed = await call(rt, "GET", "/api/v1/alert-policies")
    assert listed["total"] == 1

    ev = Evaluator(rt.db, rt.settings.data_dir)
    now = datetime.now(UTC)
    assert ev.run(now) == [p["id"]]
    assert ev.run(now + timedelta(minutes=1)) == []  # repeat interval (default 1 h)
    status, alerts = await call(rt, "GET", "/api/v1/health/alerts")
    fired = [a for a in alerts["alerts"] if a["alert_type"] == "policy"]
    assert len(fired) == 1 and fired[0]["severity"] == "critical" and "contimg_queue_depth" in fired[0]["message"]

    status, sil = await call(rt, "POST", f"/api/v1/alert-policies/{p['id']}/silences", tok,
                             json={"reason": "maintenance", "starts_at": now.isoformat(),
                                   "ends_at": (now + timedelta(hours=3)).isoformat()})
    assert status == 200 and sil["created_by"] == "op"
    assert ev.run(now + timedelta(hours=2)) == []  # past the repeat interval but silenced
    assert ev.run(now + timedelta(hours=4)) == [p["id"]]
    status, all_sil = await call(rt, "GET", "/api/v1/alert-policies/silences")
    assert [x["policy_id"] for x in all_sil] == [p["id"]]

    held = {**POLICY, "name": "held", "rules": [{"metric": "contimg_queue_depth", "operator": ">", "threshold": 1,
                                                 "for_seconds": 600}]}
    status, h = await call(rt, "POST", "/api/v1/alert-policies", tok, json=held)
    ev2 = Evaluator(rt.db, rt.settings.data_dir)
    assert h["id"] not in ev2.run(now + timedelta(hours=5))  # must hold for 10 minutes first
    assert h["id"] in ev2.run(now + timedelta(hours=5, minutes=11))
    status, off = await call(rt, "POST", f"/api/v1/alert-policies/{h['id']}/toggle", tok, json={"enabled": False})
    assert off["enabled"] is False
    status, _ = await call(rt, "DELETE", f"/api/v1/alert-policies/{h['id']}", tok)
    assert status == 200
    with rt.db.session() as s:
        assert s.get(m.AlertPolicy, h["id"]) is None
