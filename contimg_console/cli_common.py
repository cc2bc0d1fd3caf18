"""What every ``contimg`` subcommand module shares: exit codes and the database of the data dir."""

from __future__ import annotations

from engine.settings import Settings

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    from engine.db import Database

    settings.ensure_dirs()
    return Database.from_settings(settings)


def migrated_database(settings: Settings):  # type: ignore[no-untyped-def]
    """The data dir's database, migrated to head (what every command that reads or writes it needs)."""
    db = _database(settings)
    db.upgrade()
    return db
