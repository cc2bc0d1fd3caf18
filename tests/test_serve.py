"""``contimg serve`` headless: answers on loopback, exits 0 on SIGTERM within 5 s."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import contimg_cmd, free_port


def wait_for_health(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early (code {proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as resp:
                return json.load(resp)
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not answer /api/health")


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(contimg_cmd("--data-dir", str(tmp_path / "d"), "serve", "--port", str(port)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        body = wait_for_health(port, proc)
        assert body["status"] == "healthy"
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        rc = proc.wait(timeout=10)
        assert rc == 0
        assert time.monotonic() - start < 5
        log = (tmp_path / "d" / "logs" / "contimg.log").read_text()
        assert "runtime started" in log and "runtime stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
