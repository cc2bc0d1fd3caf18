"""QA ratings over HTTP: submit (once per user and category), summaries, stats, review queue."""

from __future__ import annotations

from typing import Any

from http_helpers import call


async def test_ratings_flow(runtime: Any) -> None:
    rt = runtime
    rt.accounts.add_user("ana", "ana-password", "viewer")
    rt.accounts.add_user("ben", "ben-password", "viewer")
    ana, ben = rt.accounts.create_token("ana", "t"), rt.accounts.create_token("ben", "t")
    body = {"target_type": "source", "target_id": "s1", "category": "overall", "value": 4, "flag": "good"}
    status, _ = await call(rt, "POST", "/api/v1/ratings", json=body)
    assert status == 401
    status, err = await call(rt, "POST", "/api/v1/ratings", ana, json={**body, "value": 0})
    assert status == 422  # the page starts at 0 stars
    status, r1 = await call(rt, "POST", "/api/v1/ratings", ana, json=body)
    assert status == 200 and r1["user_id"] == "me" and r1["value"] == 4
    status, again = await call(rt, "POST", "/api/v1/ratings", ana, json={**body, "value": 2, "flag": "bad"})
    assert again["id"] == r1["id"] and again["value"] == 2  # one rating per user and category
    await call(rt, "POST", "/api/v1/ratings", ben, json={**body, "value": 5})
    await call(rt, "POST", "/api/v1/ratings", ben, json={**body, "category": "flux", "value": 3})
    status, summ = await call(rt, "GET", "/api/v1/ratings/source/s1/summary", ana, params={"category": "overall"})
    assert summ["rating_count"] == 2 and summ["average_rating"] == 3.5 and summ["flag_distribution"]["bad"] == 1
    status, full = await call(rt, "GET", "/api/v1/ratings/source/s1/complete-summary", ana)
    assert full["total_ratings"] == 3 and full["categories"]["flux"]["count"] == 1 and full["needs_attention"]
    status, mine = await call(rt, "GET", "/api/v1/ratings/user/me", ben)
    assert len(mine) == 2 and all(r["user_id"] == "me" for r in mine)
    status, st = await call(rt, "GET", "/api/v1/ratings/stats", ana)
    assert st["total_ratings"] == 3 and st["sources_rated"] == 1 and set(st["flag_distribution"]) == {
        "good", "uncertain", "bad", "needs_review"}
    status, _ = await call(rt, "PATCH", f"/api/v1/ratings/{r1['id']}", ben, json={"value": 1})
    assert status == 403
    status, q = await call(rt, "POST", "/api/v1/ratings/queue", ana,
                           json={"target_type": "image", "target_id": "i9", "name": "x", "priority": "high",
                                 "reason": "sidelobes"})
    assert status == 200 and q["priority"] == "high"
    status, queue = await call(rt, "GET", "/api/v1/ratings/queue")
    assert [i["target_id"] for i in queue] == ["i9"]
    status, _ = await call(rt, "DELETE", "/api/v1/ratings/queue/image/i9", ana)
    assert status == 200
    status, _ = await call(rt, "GET", "/api/v1/ratings/job/j1")
    assert status == 404
