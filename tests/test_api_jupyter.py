"""The Jupyter page against a real, managed jupyter_server with real ipykernel kernels."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import make_settings
from http_helpers import call as http_call
from nbclient import NotebookClient


async def call(rt: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    return await http_call(rt, method, path, rt.token, **kw)


@pytest.fixture
async def jrt(tmp_path: Path):  # type: ignore[no-untyped-def]
    from contimg_console.runtime import Runtime

    settings = make_settings(tmp_path, jupyter={"mode": "managed", "port": 0}, ingest={"enabled": False})
    rt = Runtime(settings)
    await rt.start()
    rt.accounts.add_user("op", "operator-pass", "operator")
    rt.token = rt.accounts.create_token("op", "tests")
    for _ in range(300):
        if rt.jupyter.unavailable is None:
            break
        await asyncio.sleep(0.1)
    assert rt.jupyter.unavailable is None, rt.jupyter.unavailable
    try:
        yield rt
    finally:
        await rt.stop()


async def test_launch_a_template_and_run_it_against_the_pipeline_database(jrt: Any) -> None:
    with sqlite3.connect(jrt.settings.db_path) as c:
        c.execute("INSERT INTO images (id, path, backend, params, created_at) VALUES ('img1', '/nowhere.fits', "
                  "'builtin', '{}', '2026-11-29 01:00:00')")
        c.execute("INSERT INTO sources (id, name, ra_deg, dec_deg, n_detections, n_images, eta, v) "
                  "VALUES ('s1', 'DSA J0834+5534', 128.7287, 55.5725, 2, 2, 3.5, 0.2)")
        c.executemany("INSERT INTO photometry (source_id, image_id, mjd, flux_jy, forced, created_at) "
                      "VALUES ('s1', 'img1', ?, ?, 0, '2026-11-29 01:00:00')", [(61000.1, 8.1), (61000.2, 8.5)])
    status, templates = await call(jrt, "GET", "/api/v1/jupyter/templates")
    assert status == 200 and {t["category"] for t in templates} >= {"source_analysis", "image_inspection"}
    status, err = await call(jrt, "POST", "/api/v1/jupyter/launch",
                             json={"template_id": "source-light-curve", "name": "lc", "parameters": {}})
    assert status == 422 and "parameters.source_id" in err["detail"]
    status, out = await call(jrt, "POST", "/api/v1/jupyter/launch", json={
        "template_id": "source-light-curve", "name": "J0834 light curve", "parameters": {"source_id": "s1"}})
    assert status == 200, out
    nb_path = jrt.settings.notebooks_dir / out["notebook"]["path"]
    assert nb_path.name == "J0834-light-curve.ipynb" and nb_path.exists()
    assert out["session"]["notebook"]["path"] == out["notebook"]["path"]
    assert out["notebook"]["kernel_id"] == out["session"]["kernel"]["id"]

    _, notebooks = await call(jrt, "GET", "/api/v1/jupyter/notebooks")
    assert [(n["name"], n["kernel_id"]) for n in notebooks] == [(nb_path.name, out["session"]["kernel"]["id"])]
    status, one = await call(jrt, "GET", f"/api/v1/jupyter/notebooks/{notebooks[0]['id']}")
    assert status == 200 and one["type"] == "notebook"
    _, sessions = await call(jrt, "GET", "/api/v1/jupyter/sessions")
    assert [s["id"] for s in sessions] == [out["session"]["id"]]
    _, stats = await call(jrt, "GET", "/api/v1/jupyter/stats")
    assert stats["total_notebooks"] == 1 and stats["active_kernels"] == 1 and stats["kernel_usage"]["python3"] == 1
    _, url = await call(jrt, "GET", "/api/v1/jupyter/url")
    assert url["url"] == jrt.jupyter.base_url

    # the notebook really runs: a kernel of its own executes every cell against the pipeline database
    nb = nbformat.read(nb_path, as_version=4)
    await asyncio.to_thread(NotebookClient(nb, kernel_name="python3", timeout=120).execute)
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "DSA J0834+5534" in text and "8100.000 mJy" in text and "mean 8300.000 mJy" in text

    status, _ = await call(jrt, "DELETE", f"/api/v1/jupyter/sessions/{out['session']['id']}")
    assert status == 200
    status, _ = await call(jrt, "DELETE", f"/api/v1/jupyter/notebooks/{notebooks[0]['id']}")
    assert status == 200 and not nb_path.exists()


async def test_kernels_lifecycle_and_bad_input(jrt: Any) -> None:
    status, k = await call(jrt, "POST", "/api/v1/jupyter/kernels", json={"name": "python3"})
    assert status == 200 and k["language"] == "python" and k["status"] in ("starting", "idle", "busy")
    for action in ("restart", "interrupt"):
        status, _ = await call(jrt, "POST", f"/api/v1/jupyter/kernels/{k['id']}/{action}")
        assert status == 200, action
    _, listed = await call(jrt, "GET", "/api/v1/jupyter/kernels")
    assert [x["id"] for x in listed] == [k["id"]]
    status, _ = await call(jrt, "DELETE", f"/api/v1/jupyter/kernels/{k['id']}")
    assert status == 200
    status, err = await call(jrt, "GET", f"/api/v1/jupyter/kernels/{k['id']}")
    assert status == 404, err
    status, err = await call(jrt, "POST", "/api/v1/jupyter/kernels", json={"name": "fortran77"})
    assert status == 422 and "fortran77" in err["detail"]
    status, err = await call(jrt, "POST", "/api/v1/jupyter/sessions", json={"notebook_path": "../../etc/passwd"})
    assert status == 422 and "inside the notebooks folder" in err["detail"]
    status, err = await call(jrt, "GET", "/api/v1/jupyter/notebooks/bm9wZQ")  # "nope"
    assert status == 404, err


async def test_switched_off_answers_503_with_the_reason(tmp_path: Path) -> None:
    from contimg_console.runtime import Runtime

    rt = Runtime(make_settings(tmp_path, ingest={"enabled": False}))
    await rt.start()
    rt.accounts.add_user("op", "operator-pass", "operator")
    rt.token = rt.accounts.create_token("op", "tests")
    try:
        for path in ("/api/v1/jupyter/kernels", "/api/v1/jupyter/notebooks", "/api/v1/jupyter/sessions",
                     "/api/v1/jupyter/url"):
            status, err = await call(rt, "GET", path)
            assert status == 503 and "jupyter.mode = off" in err["detail"], path
    finally:
        await rt.stop()


def test_the_managed_server_dies_with_a_console_killed_by_sigkill(tmp_path: Path) -> None:
    """kill -9 of the console leaves no Jupyter server behind holding the port."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, free_port

    port, jport = free_port(), free_port()
    env = {**os.environ, "CONTIMG_JUPYTER__PORT": str(jport), "CONTIMG_JUPYTER__MODE": "managed"}
    proc = subprocess.Popen([sys.executable, "-m", "contimg_console.cli", "--data-dir", str(tmp_path / "data"),
                             "serve", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        token_file = tmp_path / "data" / "notebooks" / ".jupyter-token"
        deadline = time.time() + 60
        while time.time() < deadline and not _listening(jport):
            time.sleep(0.2)
        assert _listening(jport) and token_file.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.time() + 20
    while time.time() < deadline and _listening(jport):
        time.sleep(0.2)
    assert not _listening(jport)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
