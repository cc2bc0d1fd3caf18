"""Building console apps for pilots and snapshots: seeded DB, fixed status, no clock."""

from __future__ import annotations

from typing import Any

from datetime import UTC, datetime

from engine.db import Database
from engine.services import Services
from engine.settings import Settings, load_settings

#: The console's clock in pilots and snapshots: ages and "next run" times never drift.
FIXED_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

FIXED_STATUS = {"engine": "running 0/2", "scheduler": "running", "rest": "http://127.0.0.1:8000",
                "jupyter": "http://127.0.0.1:8888", "jupyter_ok": True}


def settings_for(db: Database) -> Settings:
    """The settings of the data dir that holds ``db`` (the ``db`` fixture's). A PostgreSQL database (named by
    CONTIMG_DATABASE__URL, see conftest) has no data dir of its own: it gets a new empty one."""
    if db.path is None:
        import tempfile
        from pathlib import Path

        data_dir = Path(tempfile.mkdtemp(prefix="contimg-data-"))
    else:
        data_dir = db.path.parent
    return load_settings(None, {"data_dir": data_dir, "jupyter": {"mode": "off"}})


def make_app(db: Database, *, settings: Settings | None = None, clock: Any = None, **kw: Any) -> Any:
    from contimg_console.app import ContimgApp  # here: engine-only tests import this module too

    services = Services(db, settings or settings_for(db), clock=clock or (lambda: FIXED_NOW))
    return ContimgApp(services, status=lambda: dict(FIXED_STATUS), refresh_interval=0, **kw)


async def settle(pilot: Any) -> None:
    """Wait for refresh workers and the messages they post."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
