"""Opening the pipeline's database: SQLite (``pipeline.sqlite3``) or PostgreSQL.

SQLite, the default, is one file in the data dir, opened in WAL mode with foreign keys
on and a busy timeout, so the TUI, REST handlers (in threads) and the engine can share
it safely. PostgreSQL (``database.url = "postgresql+psycopg://…"``) is for several
hosts writing one job table (docs/scaling.md). The same models and Alembic migrations
serve both. Sessions are synchronous; async callers run them with ``asyncio.to_thread``.
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
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import ContimgError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD_REVISION_UNKNOWN = "none"
BUSY_TIMEOUT_MS = 10_000
SQLITE, POSTGRESQL = "sqlite", "postgresql"


class DatabaseError(ContimgError):
    """The database cannot be opened, migrated or read."""


class SqliteOnlyError(DatabaseError):
    """A feature that works on the SQLite file only was asked of a PostgreSQL database."""


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
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    return cfg


def mask_url(url: str) -> str:
    """The URL for messages: no password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def is_url(value: str | Path) -> bool:
    return isinstance(value, str) and "://" in value


def writers_lock(session: Session, name: str) -> None:
    """Serialise one kind of read-then-write transaction across processes and hosts.

    Two engines that read "no job for this group yet" at once would both queue one. On
    PostgreSQL a transaction-scoped advisory lock named ``name`` makes the second read
    wait for the first's commit. On SQLite a no-op UPDATE takes the database's write lock
    before the reads (Python's sqlite3 opens the transaction only at the first write, so
    without it the reads see no snapshot and two writers interleave). Both are released
    at commit or rollback."""
    if session.get_bind().dialect.name == POSTGRESQL:
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"contimg:{name}"})
    else:
        session.execute(text("UPDATE listing_versions SET version = version WHERE kind = ''"))


class Database:
    """The pipeline's database: its engine, session factory and migration helpers.

    ``Database(path)`` opens a SQLite file; ``Database("postgresql+psycopg://…")`` (or any
    SQLAlchemy URL string) opens that database; ``Database.from_settings(settings)`` opens
    what the settings name. ``path`` is the SQLite file, None on PostgreSQL.
    """

    def __init__(self, path: Path | str, *, pool_size: int = 5, max_overflow: int = 5,
                 connect_timeout_s: float = 10.0) -> None:
        if is_url(path):
            self.url = str(path)
            try:
                parsed = make_url(self.url)
            except ArgumentError as exc:
                raise DatabaseError(f"database URL {mask_url(self.url)!r} cannot be parsed: {exc}") from None
            self.dialect = parsed.get_backend_name()
            if self.dialect not in (SQLITE, POSTGRESQL):
                raise DatabaseError(f"database URL {mask_url(self.url)!r}: only sqlite and postgresql+psycopg "
                                    "databases are supported")
            if self.dialect == POSTGRESQL and parsed.get_driver_name() != "psycopg":
                raise DatabaseError(f"database URL {mask_url(self.url)!r}: write postgresql+psycopg:// "
                                    "(psycopg 3 is the driver contimg uses)")
            self.path: Path | None = Path(parsed.database) if self.dialect == SQLITE and parsed.database else None
        else:
            self.path = Path(path)
            self.url = f"sqlite:///{self.path}"
            self.dialect = SQLITE
        if self.dialect == SQLITE:
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                pool_size=8,
                max_overflow=8,
            )
            event.listen(self.engine, "connect", _set_pragmas)
        else:
            try:
                import psycopg  # noqa: F401 - the optional 'postgres' extra
            except ImportError:
                raise DatabaseError("a PostgreSQL database needs psycopg 3: pip install "
                                    "'contimg-console[postgres]'") from None
            # pre-ping: a server restart or a failover drops pooled connections; the next
            # checkout replaces them instead of failing a claim. Recycled hourly so a
            # long-lived console does not pin server-side memory.
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
                pool_recycle=3600,
                pool_timeout=30,
                connect_args={"connect_timeout": max(1, int(round(connect_timeout_s))),
                              "application_name": "contimg"},
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Database:
        """The database the settings name (``database.url``, else ``<data_dir>/pipeline.sqlite3``)."""
        cfg = settings.database
        if cfg.url is None:
            return cls(settings.db_path)
        return cls(cfg.url, pool_size=cfg.pool_size, max_overflow=cfg.max_overflow,
                   connect_timeout_s=cfg.connect_timeout_s)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == SQLITE

    @property
    def label(self) -> str:
        """For messages: the SQLite file, or the URL without its password."""
        return str(self.path) if self.is_sqlite and self.path is not None else mask_url(self.url)

    def require_sqlite(self, feature: str, instead: str) -> Path:
        """The SQLite file, or a SqliteOnlyError naming ``feature`` and what to use ``instead``."""
        if self.is_sqlite and self.path is not None:
            return self.path
        raise SqliteOnlyError(f"{feature} works on the SQLite database file only; this data dir's database is "
                              f"{self.label}: {instead}")

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
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        cfg = alembic_config(self.url)
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    # one migrator at a time: several hosts may start together on one database
                    conn.execute(text("SELECT pg_advisory_xact_lock(110110)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except sqlite3.DatabaseError as exc:  # pragma: no cover - depends on corruption
            raise DatabaseError(f"cannot migrate {self.label}: {exc}") from exc
        except DBAPIError as exc:
            if self.is_sqlite:
                raise
            raise DatabaseError(f"cannot migrate {self.label}: {exc.orig or exc}") from exc

    def downgrade(self, revision: str) -> None:
        """Back to ``revision`` (tests and operators undoing a migration by hand)."""
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

    def current_revision(self) -> str:
        try:
            with self.engine.connect() as conn:
                ctx = MigrationContext.configure(conn)
                return ctx.get_current_revision() or HEAD_REVISION_UNKNOWN
        except DBAPIError as exc:
            if self.is_sqlite:
                raise
            raise DatabaseError(f"cannot read {self.label}: {exc.orig or exc}") from exc

    @staticmethod
    def head_revision() -> str:
        script = ScriptDirectory.from_config(alembic_config("sqlite://"))
        return script.get_current_head() or HEAD_REVISION_UNKNOWN

    def integrity_check(self) -> str:
        """"ok" when sound.

        SQLite: ``PRAGMA integrity_check`` (every page, index and constraint of the file).
        PostgreSQL: the server answers, the schema's version row reads, and every table of the
        schema can be scanned (``SELECT 1 … LIMIT 1`` each); page-level checks are the
        server's (data checksums, ``pg_amcheck``), run by whoever administers it.
        """
        with self.engine.connect() as conn:
            if self.is_sqlite:
                return str(conn.execute(text("PRAGMA integrity_check")).scalar())
            problems = []
            tables = [r[0] for r in conn.execute(text(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY 1"))]
            for name in tables:
                try:
                    with conn.begin_nested():
                        conn.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1'))
                except DBAPIError as exc:
                    problems.append(f"{name}: {exc.orig or exc}")
            if "alembic_version" not in tables:
                problems.append("no alembic_version table (not a contimg database?)")
            return "ok" if not problems else "; ".join(problems)

    def dispose(self) -> None:
        self.engine.dispose()
