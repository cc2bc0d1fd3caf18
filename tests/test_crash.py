"""Crash test: SIGKILL ``contimg serve`` at random moments; in the end nothing is stuck or half-done."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import free_port
from engine.db import Database
from engine_helpers import seed_groups, start_serve
from stagefuncs import CHAIN, product_ok

TESTS = Path(__file__).resolve().parent


def _config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "crash.toml"
    cfg.write_text(f"""
[api]
port = {port}
[engine]
registry = "stagefuncs:crash_registry"
workers = 2
poll_interval_s = 0.05
heartbeat_s = 0.3
lease_s = 2
recover_interval_s = 0.5
retry_base_s = 0.05
retry_max_s = 0.2
max_attempts = 50
max_interruptions = 100  # the poison-pill guard has its own tests; here only survival counts
""")
    return cfg


def _states(db_path: Path) -> dict[str, str]:
    con = sqlite3.connect(db_path, timeout=10)
    try:
        return dict(con.execute("select id, state from observation_groups"))
    finally:
        con.close()


def run_crash_test(tmp_path: Path, groups: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    data.mkdir()
    db = Database(data / "pipeline.sqlite3")
    db.upgrade()
    ids = seed_groups(db, groups)
    db.dispose()
    cfg = _config(tmp_path, free_port())
    for _ in range(kills):
        proc = start_serve(data, cfg)
        time.sleep(rng.uniform(1.0, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _states(data / "pipeline.sqlite3")
    assert set(before.values()) != {"complete"}, "the kills must interrupt work for this test to mean anything"
    proc = start_serve(data, cfg)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if set(_states(data / "pipeline.sqlite3").values()) == {"complete"}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all complete: {_states(data / 'pipeline.sqlite3')}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    con = sqlite3.connect(data / "pipeline.sqlite3")
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert con.execute("select count(*) from jobs where state = 'running' or claimed_by is not null").fetchone()[0] == 0
    assert con.execute("select count(*) from jobs where state != 'succeeded'").fetchone()[0] == 0
    recovered = con.execute("select count(*) from state_transitions where reason like '%expired%' or reason like 'interrupted%' "
                            "or reason like 'released%'").fetchone()[0]
    if kills >= 10:
        assert recovered > 0, "some kill must have landed mid-stage"
    for gid in ids:
        trail = con.execute("select from_state, to_state from state_transitions where group_id = ? order by id",
                            (gid,)).fetchall()
        prev = "pending"
        for src, dst in trail:
            assert src == prev, (gid, trail)
            prev = dst
        assert prev == "complete"
        for stage, *_ in CHAIN:
            assert product_ok(data / "products" / f"{gid}.{stage}")
    con.close()


def test_crash_short(tmp_path: Path) -> None:
    run_crash_test(tmp_path, groups=6, kills=3, seed=7)


@pytest.mark.slow
def test_crash_long(tmp_path: Path) -> None:
    run_crash_test(tmp_path, groups=10, kills=20, seed=11)
