"""The engine's pause switch, kept in the database so every front end flips the same one."""

from __future__ import annotations

from engine.db import Database
from engine.db import models as m

PAUSE_KEY = "engine.paused"


def read_paused(db: Database) -> bool:
    with db.session() as s:
        row = s.get(m.KeyValue, PAUSE_KEY)
        return bool(row and row.value.get("paused"))


def write_paused(db: Database, paused: bool) -> None:
    with db.session() as s:
        row = s.get(m.KeyValue, PAUSE_KEY)
        if row is None:
            s.add(m.KeyValue(key=PAUSE_KEY, value={"paused": paused}))
        else:
            row.value = {"paused": paused}
