"""Shared fixtures: real SQLite files, real runtimes on loopback, never the real data dir."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.db import Database
from engine.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the operator's config or touches the real data dir."""
    home = tmp_path_factory.mktemp("home")
    (home / ".config").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for key in list(os.environ):
        if key.startswith("CONTIMG_"):
            monkeypatch.delenv(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {"data_dir": tmp_path / "data", "api": {"port": 0}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    return load_settings(None, base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def db(settings: Settings) -> Database:
    settings.ensure_dirs()
    database = Database(settings.db_path)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    from contimg_console.runtime import Runtime

    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def contimg_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "contimg_console.cli", *args]
