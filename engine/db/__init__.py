"""The unified database ``pipeline.sqlite3``: ORM classes, engine and migrations."""

from engine.db.database import Database, HEAD_REVISION_UNKNOWN, writers_lock

__all__ = ["Database", "HEAD_REVISION_UNKNOWN", "writers_lock"]
