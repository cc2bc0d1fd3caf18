"""Issue 20's worst night: ``contimg serve`` on a simulated feed, SIGKILLed again and again, then drained.

Every group must end where the same feed ends without kills, with the same products:
one MS and one image per group, the same sources and measurements, nothing partial.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import free_port
from engine.simulator import simulate
from engine_helpers import start_serve

def _config(root: Path) -> Path:
    cfg = root / "chaos.toml"
    cfg.write_text(f"""
[api]
port = {free_port()}
[jupyter]
mode = "off"
[ingest]
stable_s = 0
poll_interval_s = 0.2
[engine]
workers = 2
poll_interval_s = 0.1
heartbeat_s = 0.5
lease_s = 5
recover_interval_s = 0.5
retry_base_s = 0.2
retry_max_s = 1
interrupt_backoff_s = 0.2
[imaging.params]
fov_deg = 0.6
niter = 300
""")
    return cfg


def _query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _drained(db: Path, n_groups: int) -> bool:
    if not db.exists():
        return False
    try:
        groups = _query(db, "select state from observation_groups")
        busy = _query(db, "select count(*) from jobs where state in ('queued', 'running')")[0][0]
    except sqlite3.OperationalError:  # not migrated yet
        return False
    return len(groups) == n_groups and busy == 0 and all(s in ("complete", "failed") for (s,) in groups)


def _server_up(db: Path, pid: int) -> bool:
    try:
        return bool(_query(db, f"select 1 from workers where pid = {pid} and stopped_at is null"))
    except sqlite3.OperationalError:  # not created or not migrated yet
        return False


def run_feed(root: Path, feed: list[Path], n_groups: int, kills: int, seed: int) -> dict[str, object]:
    """Copy the feed into incoming, SIGKILL the server ``kills`` times at random moments, drain, report."""
    data = root / "data"
    (data / "incoming").mkdir(parents=True)
    for f in feed:
        shutil.copy(f, data / "incoming" / f.name)
    cfg = _config(root)
    rng = random.Random(seed)
    db = data / "pipeline.sqlite3"
    for _ in range(kills):
        proc = start_serve(data, cfg)
        time.sleep(rng.uniform(3.0, 12.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = start_serve(data, cfg)
    try:
        deadline = time.monotonic() + 400
        while not _server_up(db, proc.pid):
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            time.sleep(0.2)
        while not _drained(db, n_groups):
            assert time.monotonic() < deadline, _query(db, "select id, state, error from observation_groups")
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert _query(db, "pragma integrity_check") == [("ok",)]
    assert not list((data / "ms").glob("*.tmp*")) and not list((data / "images").rglob("*.tmp*"))
    return {
        "states": dict(_query(db, "select id, state from observation_groups")),
        "ms_per_group": dict(_query(db, "select group_id, count(*) from measurement_sets group by group_id")),
        "images_per_group": dict(_query(db, "select group_id, count(*) from images group by group_id")),
        "ms_dirs": len(list((data / "ms").glob("*.ms"))),
        "image_files": len(list((data / "images").rglob("*.fits"))),
        "sources": _query(db, "select count(*) from sources")[0][0],
        "photometry": _query(db, "select count(*) from photometry")[0][0],
        "errors": dict(_query(db, "select id, error from observation_groups where state = 'failed'")),
        "interrupted": _query(db, "select count(*) from state_transitions where reason like 'interrupted%'")[0][0],
        "poison": _query(db, "select count(*) from jobs where error_kind = 'poison'")[0][0],
    }


def chaos(tmp_path: Path, groups: int, kills: int, seed: int) -> None:
    feed_groups = simulate(tmp_path / "sim", groups=groups, preset="tiny", seed=seed)
    feed = [f for g in feed_groups for f in g.files]
    calm = run_feed(tmp_path / "calm", feed, groups, kills=0, seed=seed)
    rough = run_feed(tmp_path / "rough", feed, groups, kills=kills, seed=seed)
    print(f"without kills: {calm}\nwith {kills} kills: {rough}")
    assert rough["states"] == calm["states"], (rough["errors"], calm["errors"])
    for key in ("ms_per_group", "images_per_group", "ms_dirs", "image_files", "sources", "photometry"):
        assert rough[key] == calm[key], key
    assert all(n == 1 for n in rough["ms_per_group"].values())  # type: ignore[union-attr]
    assert rough["poison"] == 0


def test_chaos_short(tmp_path: Path) -> None:
    chaos(tmp_path, groups=3, kills=3, seed=11)


@pytest.mark.slow
def test_chaos_long(tmp_path: Path) -> None:
    chaos(tmp_path, groups=4, kills=15, seed=11)
