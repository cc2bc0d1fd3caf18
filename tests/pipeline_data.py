"""A data dir that went through the whole pipeline once (shared by API tests of products)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from conftest import make_settings
from engine.settings import Settings
from engine_helpers import group_states

FLOW_OVERRIDES = {"ingest": {"stable_s": 0, "poll_interval_s": 0.2}, "engine": {"poll_interval_s": 0.1},
                  "imaging": {"params": {"fov_deg": 0.6, "niter": 300}}}


async def _run(settings: Settings, files: list[Path], timeout: float = 300) -> None:
    from contimg_console.runtime import Runtime

    rt = Runtime(settings)
    await rt.start()
    try:
        for f in files:
            shutil.copy(f, settings.incoming_dir / f.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            states = await asyncio.to_thread(group_states, rt.db)
            if states and all(s in ("complete", "failed") for s in states.values()):
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"pipeline did not finish: {await asyncio.to_thread(group_states, rt.db)}")
    finally:
        await rt.stop()


def build(root: Path, *, groups: int = 2, preset: str = "tiny", seed: int = 5) -> Settings:
    from engine.simulator import simulate

    settings = make_settings(root, **FLOW_OVERRIDES)
    sims = simulate(root / "sim", groups=groups, preset=preset, seed=seed)
    asyncio.run(_run(settings, [f for g in sims for f in g.files]))
    return settings
