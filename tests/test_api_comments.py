"""Comments over HTTP: threads, replies, pins, resolution, ownership."""

from __future__ import annotations

from typing import Any

from http_helpers import call


async def test_comment_threads(runtime: Any) -> None:
    rt = runtime
    rt.accounts.add_user("ana", "ana-password", "viewer")
    rt.accounts.add_user("ben", "ben-password", "viewer")
    ana, ben = rt.accounts.create_token("ana", "t"), rt.accounts.create_token("ben", "t")
    body = {"target_type": "source", "target_id": "s1", "content": "Flux jumped in the last epoch, @ben?"}
    status, _ = await call(rt, "POST", "/api/v1/comments", json=body)
    assert status == 401
    status, c = await call(rt, "POST", "/api/v1/comments", ana, json=body)
    assert status == 200 and c["user_id"] == "me" and c["parent_id"] is None and c["reply_count"] == 0
    status, again = await call(rt, "POST", "/api/v1/comments", ana, json=body)
    assert again["id"] == c["id"]
    status, r = await call(rt, "POST", "/api/v1/comments", ben,
                           json={"target_type": "image", "target_id": "ignored", "content": "RFI", "parent_id": c["id"]})
    assert r["target_type"] == "source" and r["target_id"] == "s1" and r["parent_id"] == c["id"]
    status, listed = await call(rt, "GET", "/api/v1/comments", ben, params={"user_id": "me"})
    assert [x["id"] for x in listed] == [r["id"]]
    status, one = await call(rt, "GET", f"/api/v1/comments/{c['id']}", ben)
    assert one["reply_count"] == 1 and one["user_id"] == "ana"
    status, pinned = await call(rt, "POST", f"/api/v1/comments/{c['id']}/pin", ben)
    assert pinned["is_pinned"]
    status, res = await call(rt, "POST", f"/api/v1/comments/{c['id']}/resolve", ben)
    assert res["is_resolved"]
    status, thread = await call(rt, "GET", f"/api/v1/comments/{c['id']}/thread")
    assert [x["id"] for x in thread["replies"]] == [r["id"]]
    status, on = await call(rt, "GET", "/api/v1/sources/s1/comments")
    assert {x["id"] for x in on} == {c["id"], r["id"]}
    status, st = await call(rt, "GET", "/api/v1/comments/stats", ana)
    assert st["total_comments"] == 2 and st["target_distribution"]["source"] == 2
    assert set(st["target_distribution"]) == {"source", "image", "observation", "job", "ms"}
    status, users = await call(rt, "GET", "/api/v1/comments/users")
    assert {u["username"] for u in users} == {"ana", "ben"}
    status, _ = await call(rt, "DELETE", f"/api/v1/comments/{c['id']}", ben)
    assert status == 403
    status, _ = await call(rt, "PATCH", f"/api/v1/comments/{c['id']}", ben, json={"content": "edited"})
    assert status == 403
    status, _ = await call(rt, "DELETE", f"/api/v1/comments/{c['id']}", ana)
    assert status == 204
    status, _ = await call(rt, "GET", f"/api/v1/comments/{r['id']}")
    assert status == 404  # replies go with their thread
