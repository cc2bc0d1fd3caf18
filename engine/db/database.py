"""Opening ``pipeline.sqlite3``: pragmas, sessions and Alembic migrations.

SQLite is opened in WAL mode with foreign keys on and a busy timeout, so the
TUI, REST handlers (in threads) and the engine can share one file safely.
Sessions are synchronous; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import ContimgError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD_REVISION_UNKNOWN = "none"
BUSY_TIMEOUT_MS = 10_000


class DatabaseError(ContimgError):
    """The database cannot be opened, migrated or read."""


def _set_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


class Database:
    """One SQLite file, its engine, session factory and migration helpers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.engine: Engine = create_engine(
            self.url,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(self.engine, "connect", _set_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # ---- migrations ------------------------------------------------------
    def upgrade(self, revision: str = "head") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, revision)
            except sqlite3.DatabaseError as exc:  # pragma: no cover - depends on corruption
                raise DatabaseError(f"cannot migrate {self.path}: {exc}") from exc

    def current_revision(self) -> str:
        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            return ctx.get_current_revision() or HEAD_REVISION_UNKNOWN

    @staticmethod
    def head_revision() -> str:
        script = ScriptDirectory.from_config(alembic_config("sqlite://"))
        return script.get_current_head() or HEAD_REVISION_UNKNOWN

    def integrity_check(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA integrity_check")).scalar())

    def dispose(self) -> None:
        self.engine.dispose()
