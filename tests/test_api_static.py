"""A built dashboard served at / with SPA fallback, beside the API; CORS for an allowed origin."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from conftest import make_settings


async def test_dashboard_and_cors(tmp_path: Path) -> None:
    from contimg_console.runtime import Runtime

    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>dashboard</html>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside")
    settings = make_settings(tmp_path, api={"dashboard_dir": str(dist), "cors_origins": ["http://dash.example"]})
    rt = Runtime(settings)
    await rt.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(rt.api_url + "/assets/app.js") as r:
                assert r.status == 200 and await r.text() == "console.log(1)"
            async with http.get(rt.api_url + "/images/123") as r:  # a client-side route
                assert r.status == 200 and "dashboard" in await r.text()
            async with http.get(rt.api_url + "/%2e%2e/secret.txt") as r:
                assert "outside" not in await r.text()
            async with http.get(rt.api_url + "/api/v1/nope") as r:
                assert r.status == 404 and (await r.json())["code"] == "NOT_FOUND"
            async with http.get(rt.api_url + "/api/health") as r:
                assert r.status == 200 and (await r.json())["status"] == "healthy"
            async with http.options(rt.api_url + "/api/v1/images", headers={
                    "Origin": "http://dash.example", "Access-Control-Request-Method": "GET"}) as r:
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "http://dash.example"
            async with http.get(rt.api_url + "/api/v1/images", headers={"Origin": "http://dash.example"}) as r:
                assert r.headers["Access-Control-Allow-Origin"] == "http://dash.example"
            async with http.get(rt.api_url + "/api/v1/images", headers={"Origin": "http://evil.example"}) as r:
                assert "Access-Control-Allow-Origin" not in r.headers
    finally:
        await rt.stop()
