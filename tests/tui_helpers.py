"""Building console apps for pilots and snapshots: seeded DB, fixed status, no clock."""

from __future__ import annotations

from typing import Any

from contimg_console.app import ContimgApp
from engine.db import Database
from engine.services import Services

FIXED_STATUS = {"engine": "running 0/2", "scheduler": "running", "rest": "http://127.0.0.1:8000",
                "jupyter": "http://127.0.0.1:8888", "jupyter_ok": True}


def make_app(db: Database, **kw: Any) -> ContimgApp:
    return ContimgApp(Services(db), status=lambda: dict(FIXED_STATUS), refresh_interval=0, **kw)


async def settle(pilot: Any) -> None:
    """Wait for refresh workers and the messages they post."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
