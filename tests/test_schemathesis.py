"""Schemathesis against a live server on loopback: no server errors, no response-schema violations.

The server runs read-only (no engine) on data the real pipeline produced, so the
read endpoints answer with real records. Writes are covered by their own tests
(schemathesis replaces the auth headers of operations with a security scheme).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, free_port
from test_serve import wait_for_health

# /metrics/query answers 503 without a Prometheus (its own test runs one); schemathesis counts any 5xx
EXCLUDE = r"/ws/|/download|/metrics$|/metrics/query"


@pytest.mark.timeout(900)
def test_schemathesis_reads(flow_data_root: Path, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is part of the test extra"
    port = free_port()
    env = {**os.environ, "CONTIMG_API__ANONYMOUS_READS": "always"}
    log = (tmp_path / "serve.log").open("w")  # a pipe nobody reads would fill and block the server
    server = subprocess.Popen([sys.executable, "-m", "contimg_console.cli", "--data-dir",
                               str(flow_data_root / "data"), "--read-only", "serve", "--port", str(port)], env=env,
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        wait_for_health(port, server)
        proc = subprocess.run(
            [st, "run", f"http://127.0.0.1:{port}/api/openapi.json", "--checks",
             "not_a_server_error,response_schema_conformance", "--max-examples", "3", "--include-method", "GET",
             "--phases", "examples,fuzzing,coverage", "--request-timeout", "20", "--seed", "1",
             "--exclude-path-regex", EXCLUDE],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)
        out = proc.stdout
        failures = out[out.find("FAILURES"):out.find("WARNINGS")] if "FAILURES" in out else ""
        tail = "\n".join(out.splitlines()[-40:])
        assert proc.returncode == 0, failures[:6000] or tail
        assert " passed" in tail and "failures" not in tail.split("Test cases:")[-1], tail
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
