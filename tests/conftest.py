"""Shared fixtures: real SQLite files (or a real PostgreSQL server), real runtimes on loopback, never the
real data dir.

Two database backends: SQLite (every test) and PostgreSQL (tests marked ``both_backends`` run once on
each, ``[sqlite]`` and ``[postgresql]``). The PostgreSQL variant gets a fresh database copied from a
migrated template on a server this session starts in a temp dir (tests/pg_server.py), named by
``CONTIMG_DATABASE__URL`` so every settings object of the test, and every ``contimg`` subprocess it
starts, opens it. Without PostgreSQL binaries those variants skip and say why.
"""

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
BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run on SQLite and on PostgreSQL (the backend fixture)")
    config.addinivalue_line("markers", "sqlite_only: inherently about the SQLite file (in a both_backends module)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    node = metafunc.definition
    if ("backend" in metafunc.fixturenames and node.get_closest_marker("both_backends")
            and not node.get_closest_marker("sqlite_only")):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


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


@pytest.fixture(scope="session")
def pg_server():  # type: ignore[no-untyped-def]
    """A PostgreSQL server for the whole session (skips, with the reason, where none can start)."""
    from pg_server import PgServer, Unavailable

    try:
        server = PgServer().start()
        server.migrated_template()
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """"sqlite" or "postgresql" (parametrised for ``both_backends`` tests; "sqlite" otherwise)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(autouse=True)
def _database_backend(_isolated_home: None, backend: str, request: pytest.FixtureRequest,
                      monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """On PostgreSQL: a fresh database at head for this test, named in CONTIMG_DATABASE__URL."""
    if backend != "postgresql":
        yield None
        return
    server = request.getfixturevalue("pg_server")
    name = server.fresh_database()
    url = server.url(name)
    monkeypatch.setenv("CONTIMG_DATABASE__URL", url)
    # set up before this fixture, so torn down after it: its tree is still there to check below
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    try:
        yield url
        if tmp is not None:  # the PostgreSQL variant really ran on PostgreSQL
            stray = sorted(tmp.rglob("pipeline.sqlite3"))
            assert not stray, f"a PostgreSQL test wrote a SQLite database: {stray}"
    finally:
        server.drop_database(name)  # WITH (FORCE): what a killed subprocess left connected goes too


def database_of(settings: Settings) -> Database:
    """The settings' database, migrated to head (its data dir created)."""
    settings.ensure_dirs()
    database = Database.from_settings(settings)
    database.upgrade()
    return database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    # listings exact (no stale-while-revalidate window): a test sees its own write at once;
    # test_api_listings covers the window itself
    # no Jupyter server per runtime (test_api_jupyter starts its own)
    # no built-in backup schedules (trigger listings start empty; test_backup_cli seeds them itself)
    # no built-in alert policies (listings start empty; test_alert_delivery seeds them itself)
    base: dict[str, object] = {"data_dir": tmp_path / "data", "api": {"port": 0, "listing_max_stale_s": 0},
                               "jupyter": {"mode": "off"}, "backups": {"schedules": False}, "alerts": {"builtin": False}}
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
    database = database_of(settings)
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


@pytest.fixture(scope="session")
def flow_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir that went through the whole real pipeline once (tiny preset, two groups)."""
    from pipeline_data import build

    root = tmp_path_factory.mktemp("flow")
    build(root)
    return root


@pytest.fixture
def flow_runtime_factory(flow_data_root: Path):  # type: ignore[no-untyped-def]
    """Start a runtime (ingest off) on the shared pipeline data (or a copy of it at ``root``), with an
    operator token in ``rt.token``."""
    from contextlib import asynccontextmanager

    from contimg_console.runtime import Runtime
    from pipeline_data import FLOW_OVERRIDES

    @asynccontextmanager
    async def factory(root: Path | None = None):  # type: ignore[no-untyped-def]
        settings = make_settings(root or flow_data_root, **{**FLOW_OVERRIDES, "ingest": {"enabled": False}})
        rt = Runtime(settings)
        await rt.start()
        if "op" not in {u["username"] for u in rt.accounts.list_users()}:
            rt.accounts.add_user("op", "operator-pass", "operator")
        rt.token = rt.accounts.create_token("op", "tests")
        try:
            yield rt
        finally:
            await rt.stop()

    return factory
