"""Seeding groups and driving an in-process engine for tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from conftest import make_settings
from engine.db import Database
from engine.db import models as m
from engine.events import EventBus
from engine.processing.engine import Engine
from engine.processing.stages import StageRegistry

FAST = {"poll_interval_s": 0.05, "heartbeat_s": 0.3, "lease_s": 3, "recover_interval_s": 0.5,
        "retry_base_s": 0.05, "retry_max_s": 0.2, "workers": 2, "shutdown_grace_s": 5}


def fast_settings(tmp_path: Path, **engine: Any):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, engine={**FAST, **engine})


def seed_groups(db: Database, n: int, *, calibrators: int = 0) -> list[str]:
    t0 = datetime(2026, 11, 29, 8, tzinfo=UTC)
    ids = []
    with db.session() as s:
        for i in range(n):
            gid = (t0 + timedelta(seconds=309 * i)).strftime("%Y-%m-%dT%H:%M:%S")
            s.add(m.ObservationGroup(id=gid, group_time=t0 + timedelta(seconds=309 * i), n_subbands=16,
                                     dec_deg=54.57, is_calibrator=i < calibrators))
            ids.append(gid)
    return ids


def group_states(db: Database) -> dict[str, str]:
    with db.session() as s:
        return {g.id: g.state for g in s.scalars(select(m.ObservationGroup))}


async def run_until(db: Database, predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out; states: {await asyncio.to_thread(group_states, db)}")


def make_engine(settings: Any, db: Database, registry: StageRegistry) -> tuple[Engine, EventBus]:
    bus = EventBus()
    return Engine(settings, db, bus, registry), bus


def start_serve(data: Path, cfg: Path) -> Any:
    """``contimg serve`` on ``data`` in its own session (so killpg takes its pool workers too)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{REPO}"}
    return subprocess.Popen([sys.executable, "-m", "contimg_console.cli", "--data-dir", str(data), "--config",
                             str(cfg), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
