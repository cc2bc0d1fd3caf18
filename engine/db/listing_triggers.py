"""Which row changes move which listing's version counter (triggers, see migration 0006).

Only columns a listing shows are watched, so a job's lease heartbeat does not make
every dashboard poll rebuild the jobs list. The one table below generates both
dialects: SQLite triggers with the bump in their body, and on PostgreSQL one PL/pgSQL
trigger function (the listing kind is its argument) with row triggers of the same
names, events and watched columns. Both fire ``AFTER UPDATE OF <columns>`` when a
statement's SET names one of the columns, once per changed row.
"""

from __future__ import annotations

# listing kind -> [(table, columns watched on UPDATE, or None for any column)]
LISTING_TRIGGERS: dict[str, list[tuple[str, tuple[str, ...] | None]]] = {
    "jobs": [("jobs", ("state", "started_at", "finished_at", "created_at"))],
    "images": [("images", ("path", "qa_grade", "created_at", "job_id", "pointing_ra_deg", "pointing_dec_deg"))],
    "sources": [("sources", ("name", "ra_deg", "dec_deg", "latest_image_id", "n_images", "eta", "v",
                             "peak_flux_jy"))],
    "queries": [("saved_queries", None), ("saved_query_favorites", None)],
}


def _name(kind: str, table: str, op: str) -> str:
    return f"trg_listing_{kind}_{table}_{op.lower()}"


PG_FUNCTION = "listing_version_bump"


def _triggers():
    """(kind, table, op, event) of every listing trigger: the one walk both dialects share."""
    for kind, watched in LISTING_TRIGGERS.items():
        for table, columns in watched:
            for op in ("INSERT", "DELETE", "UPDATE"):
                yield kind, table, op, (f"UPDATE OF {', '.join(columns)}" if op == "UPDATE" and columns else op)


def create_statements(dialect: str = "sqlite") -> list[str]:
    if dialect == "postgresql":
        return _pg_create_statements()
    return [f"CREATE TRIGGER {_name(kind, table, op)} AFTER {event} ON {table} "
            f"BEGIN UPDATE listing_versions SET version = version + 1 WHERE kind = '{kind}'; END"
            for kind, table, op, event in _triggers()]


def drop_statements(dialect: str = "sqlite") -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {_name(kind, table, op)} ON {table}"
                for kind, table, op, _ in _triggers()] + [f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()"]
    return [f"DROP TRIGGER IF EXISTS {_name(kind, table, op)}" for kind, table, op, _ in _triggers()]


def _pg_create_statements() -> list[str]:
    out = [f"""CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE listing_versions SET version = version + 1 WHERE kind = TG_ARGV[0];
    RETURN NULL;
END
$$"""]
    out += [f"CREATE TRIGGER {_name(kind, table, op)} AFTER {event} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}('{kind}')" for kind, table, op, event in _triggers()]
    return out
