"""Crash test: SIGKILL ``contimg serve`` at random moments; in the end nothing is stuck or half-done.

On SQLite and on PostgreSQL (the served process and its pool workers open the test's database through
CONTIMG_DATABASE__URL)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import free_port, make_settings
from engine.db import Database
from engine_helpers import seed_groups, start_serve
from stagefuncs import CHAIN, product_ok

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.both_backends


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


def _states(db: Database) -> dict[str, str]:
    with db.engine.connect() as con:
        return dict(con.execute(text("select id, state from observation_groups")).all())


def run_crash_test(tmp_path: Path, groups: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    data.mkdir()
    db = Database.from_settings(make_settings(tmp_path))  # data_dir is tmp_path/data
    db.upgrade()
    ids = seed_groups(db, groups)
    db.dispose()
    cfg = _config(tmp_path, free_port())
    for _ in range(kills):
        proc = start_serve(data, cfg)
        time.sleep(rng.uniform(1.0, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _states(db)
    assert set(before.values()) != {"complete"}, "the kills must interrupt work for this test to mean anything"
    proc = start_serve(data, cfg)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if set(_states(db).values()) == {"complete"}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all complete: {_states(db)}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    assert db.integrity_check() == "ok"
    con = db.engine.connect()
    one = lambda sql: con.execute(text(sql)).scalar_one()  # noqa: E731
    assert one("select count(*) from jobs where state = 'running' or claimed_by is not null") == 0
    assert one("select count(*) from jobs where state != 'succeeded'") == 0
    recovered = one("select count(*) from state_transitions where reason like '%expired%' or reason like 'interrupted%' "
                    "or reason like 'released%'")
    if kills >= 10:
        assert recovered > 0, "some kill must have landed mid-stage"
    for gid in ids:
        trail = con.execute(text("select from_state, to_state from state_transitions where group_id = :g order by id"),
                            {"g": gid}).all()
        prev = "pending"
        for src, dst in trail:
            assert src == prev, (gid, trail)
            prev = dst
        assert prev == "complete"
        for stage, *_ in CHAIN:
            assert product_ok(data / "products" / f"{gid}.{stage}")
    con.close()
    db.dispose()


def test_crash_short(tmp_path: Path) -> None:
    run_crash_test(tmp_path, groups=6, kills=3, seed=7)


@pytest.mark.slow
def test_crash_long(tmp_path: Path) -> None:
    run_crash_test(tmp_path, groups=10, kills=20, seed=11)
