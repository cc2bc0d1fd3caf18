"""Saved queries end to end over HTTP: save, load, star, clone, run — and no SQL ever gets through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from http_helpers import call

from engine.db import models as m
from engine.queries import QueryError, compile_filters, parse_query_string


@pytest.fixture
def users(runtime: Any) -> dict[str, str]:
    rt = runtime
    rt.accounts.add_user("ana", "ana-password", "viewer")
    rt.accounts.add_user("ben", "ben-password", "operator")
    with rt.db.session() as s:
        for i, (flux, dec) in enumerate([(0.2, 54.0), (1.5, 55.0), (3.0, 56.0), (0.9, 20.0)]):
            s.add(m.Source(id=f"s{i}", name=f"DSA J08{i}", ra_deg=128.0 + i, dec_deg=dec, peak_flux_jy=flux,
                           n_detections=i + 1, first_detected_at=datetime(2026, 1, 1, tzinfo=UTC)))
    return {"ana": rt.accounts.create_token("ana", "t"), "ben": rt.accounts.create_token("ben", "t")}


async def test_save_and_load_a_query(runtime: Any, users: dict[str, str]) -> None:
    rt = runtime
    body = {"name": "Bright north", "description": "", "query_string": "peak_flux_jy > {{min_flux}} AND dec_deg >= 50",
            "target_type": "source", "visibility": "team", "tags": ["bright", "north"]}
    status, err = await call(rt, "POST", "/api/v1/queries", json=body)
    assert status == 401  # anonymous: no owner
    status, q = await call(rt, "POST", "/api/v1/queries", users["ana"], json=body)
    assert status == 200 and q["owner_id"] == "me" and q["owner_name"] == "ana"
    assert q["parameters"] == [{"name": "min_flux", "type": "string", "default_value": None, "description": None,
                                "required": True}]
    status, again = await call(rt, "POST", "/api/v1/queries", users["ana"], json=body)
    assert again["id"] == q["id"]  # a retried POST does not duplicate

    status, listed = await call(rt, "GET", "/api/v1/queries", users["ben"], params={"visibility": "team"})
    assert [x["id"] for x in listed] == [q["id"]] and listed[0]["owner_id"] == "ana"
    status, mine = await call(rt, "GET", "/api/v1/queries", users["ana"], params={"owner_id": "me"})
    assert len(mine) == 1

    status, res = await call(rt, "POST", "/api/v1/queries/run", users["ben"],
                             json={"query_id": q["id"], "parameters": {"min_flux": "1.0"}})
    assert status == 200 and sorted(r["id"] for r in res["rows"]) == ["s1", "s2"] and not res["truncated"]
    status, err = await call(rt, "POST", "/api/v1/queries/run", users["ben"], json={"query_id": q["id"]})
    assert status == 422 and "min_flux" in err["message"]

    status, starred = await call(rt, "POST", f"/api/v1/queries/{q['id']}/favorite", users["ben"])
    assert starred["is_favorite"] is True
    status, favs = await call(rt, "GET", "/api/v1/queries", users["ben"], params={"is_favorite": "true"})
    assert [f["id"] for f in favs] == [q["id"]]
    status, unstarred = await call(rt, "DELETE", f"/api/v1/queries/{q['id']}/favorite", users["ben"])
    assert unstarred["is_favorite"] is False

    status, fork = await call(rt, "POST", f"/api/saved-queries/{q['id']}/fork", users["ben"])
    assert fork["owner_id"] == "me" and fork["visibility"] == "private" and fork["id"] != q["id"]
    status, err = await call(rt, "DELETE", f"/api/v1/queries/{q['id']}", users["ben"])
    assert status == 403
    status, stats = await call(rt, "GET", "/api/v1/queries/stats", users["ben"])
    assert stats["total_queries"] == 2 and stats["queries_run_today"] == 1
    assert {"tag": "bright", "count": 2} in stats["popular_tags"]
    status, hist = await call(rt, "GET", "/api/v1/queries/history", users["ben"])
    assert hist[0]["query_id"] == q["id"]
    status, _ = await call(rt, "DELETE", f"/api/v1/queries/{q['id']}", users["ana"])
    assert status == 204
    status, _ = await call(rt, "GET", f"/api/v1/queries/{q['id']}", users["ana"])
    assert status == 404


@pytest.mark.parametrize("text", [
    "peak_flux_jy > 1; DROP TABLE sources",
    "1=1 OR 1=1",
    "password_hash = 'x'",
    "dec_deg > (SELECT 1)",
    "name = 'a' -- comment",
])
async def test_sql_is_refused(runtime: Any, users: dict[str, str], text: str) -> None:
    status, err = await call(runtime, "POST", "/api/v1/queries", users["ana"],
                             json={"name": "evil", "query_string": text, "target_type": "source",
                                   "visibility": "private"})
    assert status == 422 and err["code"] == "VALIDATION_FAILED"
    status, err = await call(runtime, "POST", "/api/v1/queries/run", users["ana"],
                             json={"query_string": text, "target_type": "source"})
    assert status == 422
    with runtime.db.session() as s:
        assert s.query(m.Source).count() == 4


def test_filter_language() -> None:
    conds = parse_query_string('name ~ "J08" AND n_detections IN (1, 2) AND eta IS NULL AND dec_deg <= 55.5')
    assert conds == [{"field": "name", "operator": "contains", "value": "J08"},
                     {"field": "n_detections", "operator": "in", "value": [1, 2]},
                     {"field": "eta", "operator": "is_null", "value": None},
                     {"field": "dec_deg", "operator": "lte", "value": 55.5}]
    compile_filters("source", conds)
    with pytest.raises(QueryError, match="unknown field 'state' for source"):
        compile_filters("source", [{"field": "state", "operator": "equals", "value": "x"}])
    with pytest.raises(QueryError, match="expected a number"):
        compile_filters("source", [{"field": "dec_deg", "operator": "gt", "value": "north"}])
