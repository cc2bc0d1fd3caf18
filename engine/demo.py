"""Demo feed: simulated DSA-110 groups dropped into ``incoming/`` every few seconds.

A newcomer sees groups flow through every installed stage within a minute: the
first group holds a J0834+555 transit (solved and registered as calibration), the
later ones are targets calibrated from it. Files are simulated into a staging dir
beside the demo data dir and copied into ``incoming/`` one group at a time, the way
the correlator delivers them. Used only by ``contimg demo`` on its own data dir.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from engine.logs import get_logger
from engine.units import cancel_and_wait

log = get_logger("demo")

DEMO_OVERRIDES: dict[str, Any] = {
    "ingest": {"stable_s": 1.0, "poll_interval_s": 1.0, "incomplete_wait_s": 30.0},
    "engine": {"poll_interval_s": 0.5, "retry_base_s": 2.0, "retry_max_s": 10.0},
    "imaging": {"params": {"fov_deg": 0.6, "niter": 300}},
}


class DemoFeeder:
    def __init__(self, incoming: Path, staging: Path, *, groups: int = 6, interval_s: float = 8.0,
                 preset: str = "tiny", seed: int = 1) -> None:
        self.incoming, self.staging = incoming, staging
        self.groups, self.interval_s, self.preset, self.seed = groups, interval_s, preset, seed
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-feed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _simulate(self) -> list[list[Path]]:
        from engine.simulator import simulate

        shutil.rmtree(self.staging, ignore_errors=True)
        sims = simulate(self.staging, groups=self.groups, preset=self.preset, seed=self.seed)
        return [sorted(g.files) for g in sims]

    async def _run(self) -> None:
        try:
            batches = await asyncio.to_thread(self._simulate)
        except Exception:  # noqa: BLE001 - the demo must say why it stopped
            log.exception("demo: simulating groups failed")
            return
        log.info("demo: %d simulated groups ready; delivering one every %.0f s", len(batches), self.interval_s)
        for files in batches:
            await asyncio.to_thread(self._deliver, files)
            self.delivered += 1
            log.info("demo: delivered group %d/%d (%s)", self.delivered, len(batches), files[0].name.split("_sb")[0])
            await asyncio.sleep(self.interval_s)

    def _deliver(self, files: list[Path]) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        for f in files:
            tmp = self.incoming / ("." + f.name)  # hidden while copying: ingest skips dot files
            shutil.copyfile(f, tmp)
            tmp.rename(self.incoming / f.name)
