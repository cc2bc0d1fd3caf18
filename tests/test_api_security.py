"""Probing the REST server as an outsider: writes refuse anonymous callers before reading the body,
and password guessing is throttled per user name and per address with 429 + Retry-After."""

from __future__ import annotations

import re

import aiohttp
import pytest
from http_helpers import call

from contimg_console.api.app import all_routers
from contimg_console.api.login_limit import LoginLimiter

BAD_BODY = b'{"definitely_not_a_field": [1, 2, 3], "name": 12345'  # malformed and schema-less


async def _raw(rt, method: str, path: str, body: bytes, token: str | None = None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    async with aiohttp.ClientSession() as http:
        async with http.request(method, rt.api_url + path, data=body, headers=headers) as resp:
            return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())


def _write_routes() -> list[tuple[str, str, str]]:
    out = []
    for r in all_routers():
        for spec in r.routes:
            if spec.method == "GET" or spec.role == "public" or spec.read_only:
                continue
            path = re.sub(r"\{(\w+)(?::[^}]*)?\}", "1", spec.path)
            out.append((spec.method, path, spec.role))
    return out


def test_the_probe_covers_the_routes_found_by_the_original_report() -> None:
    paths = {(m, p) for m, p, _ in _write_routes()}
    assert ("POST", "/api/v1/queries") in paths and ("POST", "/api/v1/comments") in paths
    assert len(paths) > 40  # every write route of every module, not a hand-picked list


async def test_every_write_route_answers_anonymous_with_401_before_body_validation(runtime) -> None:
    wrong = []
    for method, path, role in _write_routes():
        for body in (BAD_BODY, b'{"x": 1}'):
            status, payload = await _raw(runtime, method, path, body)
            if status != 401 or (isinstance(payload, dict) and "details" in payload and payload["details"]):
                wrong.append((method, path, role, status, str(payload)[:120]))
    assert not wrong, wrong


async def test_401_names_what_is_needed_and_leaks_no_schema(runtime) -> None:
    status, body = await _raw(runtime, "POST", "/api/v1/comments", BAD_BODY)
    assert status == 401 and body["code"] == "UNAUTHORIZED"
    assert "logged-in user" in body["message"] and "target_type" not in str(body)


async def test_read_only_posts_stay_open_to_anonymous_readers(runtime) -> None:
    status, body = await call(runtime, "POST", "/api/v1/vo/cone-search", json={"ra": 10.0, "dec": 20.0,
                                                                               "radius_arcmin": 5})
    assert status == 200, body
    status, body = await call(runtime, "POST", "/api/v1/vo/cone-search", json={"ra": "north"})
    assert status == 422  # a reader still gets told what is wrong with a read


async def test_a_logged_in_viewer_still_gets_422_for_a_bad_body(runtime) -> None:
    runtime.accounts.add_user("vera", "correct horse battery", "viewer")
    token = runtime.accounts.create_token("vera", "t")
    status, body = await _raw(runtime, "POST", "/api/v1/comments", BAD_BODY, token)
    assert status == 400 and body["code"] == "MALFORMED_JSON"
    status, body = await call(runtime, "POST", "/api/v1/comments", token=token, json={"x": 1})
    assert status == 422


@pytest.fixture
def settings(tmp_path):
    from conftest import make_settings

    return make_settings(tmp_path, api={"login_failures_per_user": 3, "login_failures_per_address": 5,
                                        "login_window_s": 60})


async def _login(rt, user: str, password: str):
    async with aiohttp.ClientSession() as http:
        async with http.post(rt.api_url + "/api/v1/auth/login", json={"username": user, "password": password}) as r:
            return r.status, r.headers.get("Retry-After"), await r.json()


async def test_login_is_throttled_per_user_with_429_and_retry_after(runtime) -> None:
    runtime.accounts.add_user("olga", "the right password", "operator")
    for _ in range(3):
        status, _, _ = await _login(runtime, "olga", "guess")
        assert status == 401
    status, retry, body = await _login(runtime, "olga", "the right password")
    assert status == 429 and body["code"] == "TOO_MANY_REQUESTS"
    assert retry is not None and 1 <= int(retry) <= 60
    assert "for this user" in body["message"] and f"{retry} s" in body["message"]
    status, _, _ = await _login(runtime, "OLGA", "guess")  # the name is not escaped by changing case
    assert status == 429


async def test_login_is_throttled_per_address_across_names(runtime) -> None:
    runtime.accounts.add_user("pat", "pat's password", "viewer")
    for i in range(5):
        status, _, _ = await _login(runtime, f"nobody{i}", "guess")
        assert status == 401
    status, retry, body = await _login(runtime, "pat", "pat's password")
    assert status == 429 and "from this address" in body["message"] and int(retry) >= 1


async def test_a_successful_login_clears_the_user_count(runtime) -> None:
    runtime.accounts.add_user("sam", "sam's password", "viewer")
    for _ in range(2):
        assert (await _login(runtime, "sam", "guess"))[0] == 401
    assert (await _login(runtime, "sam", "sam's password"))[0] == 200
    for _ in range(2):
        assert (await _login(runtime, "sam", "guess"))[0] == 401
    assert (await _login(runtime, "sam", "sam's password"))[0] == 200


def test_limiter_windows_slide_and_memory_is_bounded() -> None:
    now = [1000.0]
    lim = LoginLimiter(2, 100, 60, clock=lambda: now[0])
    lim.failed("a", "10.0.0.1")
    now[0] += 30
    lim.failed("a", "10.0.0.1")
    assert lim.retry_after("a", "10.0.0.2") == ("user", 30)
    now[0] += 31  # the first failure left the window
    assert lim.retry_after("a", "10.0.0.2") is None
    for i in range(20_000):
        lim.failed(f"u{i}", "10.0.0.9")
    assert len(lim._fails) <= 10_000
