"""The host install: the systemd unit verifies and is hardened; ``contimg serve`` tells systemd it is
ready (sd_notify) and, on SIGTERM while a stage runs, releases the job (queued, attempt given back)
and exits 0 well inside the unit's TimeoutStopSec. The one-file binary is built and run in
tests/test_binary.py (slow)."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port
from engine.db import Database
from engine_helpers import seed_groups, start_serve
from stagefuncs import registry_of

UNIT = REPO / "packaging" / "contimg.service"


def sleepy_registry():  # engine.registry = "test_packaging:sleepy_registry"
    return registry_of("sleepy_stage", stages=1, sleep=300)


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNIT)
    return cp


def test_unit_runs_the_binary_with_readiness_restart_and_hardening() -> None:
    svc = _unit()["Service"]
    assert svc["Type"] == "notify" and svc["ExecStart"] == "/opt/contimg/bin/contimg serve"
    assert svc["Restart"] == "on-failure" and svc["KillSignal"] == "SIGTERM"
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes"
    data_dir = svc["Environment"].split("=", 1)[1] if "CONTIMG_DATA_DIR" in svc["Environment"] else None
    assert svc["ReadWritePaths"] == "/data/contimg" and data_dir in (None, "/data/contimg")
    # the engine's grace for running stages fits well inside systemd's patience
    from engine.settings import EngineSettings

    assert EngineSettings().shutdown_grace_s * 3 <= float(svc["TimeoutStopSec"])


def _verify_root(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    binary = root / "opt/contimg/bin/contimg"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")  # verify checks that ExecStart is an executable file
    binary.chmod(0o755)
    (root / "etc/systemd/system/contimg.service").write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "contimg.service"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir(),
                    reason="systemd-analyze (Debian 'systemd') not installed")
def test_systemd_analyze_verify_passes_and_would_catch_mistakes(tmp_path: Path) -> None:
    out = _verify_root(tmp_path / "good", UNIT.read_text())
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    bad = UNIT.read_text().replace("Type=notify", "Type=notifyy").replace("[Unit]", "[Unit]\nStartLimitBurstt=1")
    out = _verify_root(tmp_path / "bad", bad)
    assert "Failed to parse service type" in out.stderr and "Unknown key" in out.stderr


def test_serve_notifies_ready_and_sigterm_mid_stage_releases_the_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = Database(data / "pipeline.sqlite3")
    db.upgrade()
    seed_groups(db, 1)
    db.dispose()
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f"""
[api]
port = {free_port()}
[engine]
registry = "test_packaging:sleepy_registry"
workers = 1
poll_interval_s = 0.05
shutdown_grace_s = 2
[jupyter]
mode = "off"
""")
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(60)
    os.environ["NOTIFY_SOCKET"] = sock_path  # start_serve passes the environment on
    try:
        proc = start_serve(data, cfg)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1") and "serving REST" in ready
        con = sqlite3.connect(data / "pipeline.sqlite3", timeout=10)
        deadline = time.monotonic() + 60
        while con.execute("select count(*) from jobs where state = 'running'").fetchone()[0] == 0:
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(0.1)
        time.sleep(0.5)  # inside the 300 s stage
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stop_s = time.monotonic() - t0
        assert sock.recv(4096).decode().startswith("STOPPING=1")
        state, claimed, attempts, error = con.execute(
            "select state, claimed_by, attempts, error from jobs").fetchone()
        con.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        sock.close()
    assert state == "queued" and claimed is None, (state, claimed, error)  # released, not failed
    assert attempts == 0  # the interrupted attempt was given back
    assert stop_s < 20, f"stop took {stop_s:.1f} s"
