"""The REST skeleton on a real server on 127.0.0.1: health, errors, limits, OpenAPI, login."""

from __future__ import annotations

import aiohttp
import pytest
from openapi_spec_validator import validate

from contimg_console.api.app import openapi_document


async def _get(rt: object, path: str, **kw: object) -> tuple[int, object]:
    async with aiohttp.ClientSession() as http:
        async with http.get(rt.api_url + path, **kw) as resp:  # type: ignore[attr-defined]
            return resp.status, await resp.json()


async def test_health_both_paths(runtime: object) -> None:
    for path in ("/api/health", "/api/v1/health"):
        status, body = await _get(runtime, path)
        assert status == 200
        assert body["status"] == "healthy" and body["service"] == "contimg" and body["api_version"] == "v1"
        assert body["version"] and body["timestamp"].endswith("Z")
        assert body["components"] is None


async def test_health_detailed(runtime: object) -> None:
    status, body = await _get(runtime, "/api/health", params={"detailed": "true"})
    assert status == 200
    comps = body["components"]
    assert set(comps) == {"database", "engine", "scheduler", "disk"}
    assert comps["database"]["details"]["revision"] == runtime.db.head_revision()  # type: ignore[attr-defined]
    assert comps["engine"]["status"] == "healthy"
    assert 0 <= comps["disk"]["details"]["used_percent"] <= 100


async def test_bad_query_is_422_with_field_details(runtime: object) -> None:
    status, body = await _get(runtime, "/api/health", params={"detailed": "perhaps"})
    assert status == 422
    assert body["code"] == "VALIDATION_FAILED" and body["http_status"] == 422
    assert body["detail"] == body["message"] and "detailed" in body["detail"]
    assert body["details"]["errors"][0]["field"] == "detailed"


async def test_unknown_path_is_json_404(runtime: object) -> None:
    status, body = await _get(runtime, "/api/v1/no-such-thing")
    assert status == 404 and body["code"] == "NOT_FOUND" and "no-such-thing" in body["message"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{not json", 400, "MALFORMED_JSON"),
        (b"[1, 2]", 422, "VALIDATION_FAILED"),
        (b'{"username": ""}', 422, "VALIDATION_FAILED"),
        (b'{"username": "nobody", "password": "x"}', 401, "UNAUTHORIZED"),
    ],
)
async def test_login_bad_bodies(runtime: object, payload: bytes, status: int, code: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(runtime.api_url + "/api/v1/auth/login", data=payload,  # type: ignore[attr-defined]
                             headers={"Content-Type": "application/json"}) as resp:
            body = await resp.json()
    assert resp.status == status and body["code"] == code and body["http_status"] == status


async def test_oversized_body_is_413(runtime: object) -> None:
    big = b'{"username": "' + b"x" * (2 * 1024 * 1024) + b'", "password": "p"}'
    async with aiohttp.ClientSession() as http:
        async with http.post(runtime.api_url + "/api/v1/auth/login", data=big,  # type: ignore[attr-defined]
                             headers={"Content-Type": "application/json"}) as resp:
            body = await resp.json()
    assert resp.status == 413 and body["code"] == "PAYLOAD_TOO_LARGE"


async def test_login_me_refresh_logout(runtime: object) -> None:
    runtime.accounts.add_user("ana", "correct horse", "operator")  # type: ignore[attr-defined]
    base = runtime.api_url + "/api/v1/auth"  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/login", json={"username": "ana", "password": "wrong one"}) as resp:
            assert resp.status == 401
        async with http.post(base + "/login", json={"username": "ana", "password": "correct horse"}) as resp:
            assert resp.status == 200
            login = await resp.json()
        assert login["user"]["username"] == "ana" and login["user"]["role"] == "operator"
        tokens = login["tokens"]
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with http.get(base + "/me", headers=auth) as resp:
            assert resp.status == 200 and (await resp.json())["username"] == "ana"
        async with http.post(base + "/refresh", json={"refresh_token": tokens["refresh_token"]}) as resp:
            assert resp.status == 200
            fresh = await resp.json()
        async with http.post(base + "/refresh", json={"refresh_token": tokens["refresh_token"]}) as resp:
            assert resp.status == 401  # rotated: the old refresh token is spent
        auth2 = {"Authorization": f"Bearer {fresh['access_token']}"}
        async with http.post(base + "/logout", json={}, headers=auth2) as resp:
            assert resp.status == 200
        async with http.get(base + "/me", headers=auth2) as resp:
            assert resp.status == 401
        async with http.get(base + "/me", headers={"Authorization": "Bearer nonsense"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "UNAUTHORIZED"


async def test_openapi_covers_every_route_and_validates(runtime: object) -> None:
    status, doc = await _get(runtime, "/api/openapi.json")
    assert status == 200
    validate(doc)
    app_routes = set()
    for resource in runtime._runner.app.router.resources():  # type: ignore[attr-defined]
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method != "HEAD":
                app_routes.add((route.method.lower(), path))
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert app_routes == documented
    assert doc["openapi"] == "3.1.0"


def test_openapi_document_builds_offline() -> None:
    doc = openapi_document()
    validate(doc)
    assert "/api/health" in doc["paths"] and "/api/v1/health" in doc["paths"]
