"""The demo feed delivers simulated groups into incoming/ the way the correlator does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.demo import DemoFeeder


async def test_feeder_delivers_complete_groups(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    feeder = DemoFeeder(incoming, tmp_path / "staging", groups=2, interval_s=0.1)
    await feeder.start()
    for _ in range(300):
        if feeder.delivered == 2:
            break
        await asyncio.sleep(0.1)
    await feeder.stop()
    names = sorted(p.name for p in incoming.iterdir())
    assert feeder.delivered == 2 and len(names) == 32
    assert not [n for n in names if n.startswith(".")]  # nothing left half-copied
    assert all(n.endswith(".hdf5") and "_sb" in n for n in names)


def test_demo_settings_never_use_the_real_data_dir(tmp_path: Path) -> None:
    from contimg_console.cli import _parser, demo_settings
    from engine.settings import default_data_dir

    settings = demo_settings(_parser().parse_args(["demo"]))
    assert settings.data_dir != default_data_dir() and settings.data_dir.name == "contimg-demo"
    assert settings.ingest.stable_s == 1.0 and settings.imaging.params["fov_deg"] == 0.6
