"""TAP 1.1 synchronous queries in ADQL over published, read-only views of the catalogue.

ADQL is parsed by sqlglot (a maintained, pure-Python SQL parser with an SQLite generator;
its T-SQL reader already understands ADQL's ``SELECT TOP n``) rather than
queryparser-python3, whose translators target MySQL and PostgreSQL/pg_sphere, not SQLite.
The syntax tree is checked (one query, only the published tables ``sources``,
``photometry`` and ``images``, geometry only as ``CONTAINS``/``INTERSECTS`` of a
``POINT`` and a ``CIRCLE`` and ``DISTANCE`` of two points) and rewritten into SQLite with
two spherical-geometry functions. It then runs on a read-only connection (``mode=ro``,
``PRAGMA query_only``) whose authorizer lets it read only the published columns, through
TEMP views that shadow the tables, under a progress handler that aborts it after the
statement timeout. ``MAXREC`` caps the rows (``QUERY_STATUS`` OVERFLOW says so).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from .votable import VOError, error_document, finite, table_document

DEFAULT_MAXREC = 10_000
HARD_MAXREC = 100_000
TIMEOUT_S = 10.0

# table -> (description, [(column, ADQL datatype, UCD, unit, description)])
PUBLISHED: dict[str, tuple[str, list[tuple[str, str, str, str, str]]]] = {
    "sources": ("Sources found by the pipeline, one row per sky position, with variability statistics", [
        ("id", "VARCHAR", "meta.id;meta.main", "", "source identifier"),
        ("name", "VARCHAR", "meta.id", "", "source name"),
        ("ra_deg", "DOUBLE", "pos.eq.ra;meta.main", "deg", "right ascension (ICRS)"),
        ("dec_deg", "DOUBLE", "pos.eq.dec;meta.main", "deg", "declination (ICRS)"),
        ("first_detected_at", "TIMESTAMP", "time.start", "", "first detection (UTC)"),
        ("last_detected_at", "TIMESTAMP", "time.end", "", "last detection (UTC)"),
        ("n_detections", "INTEGER", "meta.number", "", "number of detections"),
        ("n_images", "INTEGER", "meta.number", "", "number of images covering the source"),
        ("peak_flux_jy", "DOUBLE", "phot.flux.density;stat.max", "Jy", "brightest measured flux density"),
        ("mean_flux_jy", "DOUBLE", "phot.flux.density;stat.mean", "Jy", "mean flux density"),
        ("eta", "DOUBLE", "stat.fit.chi2", "", "variability eta"),
        ("v", "DOUBLE", "stat.stdev", "", "variability V (fractional rms)"),
        ("chi2_nu", "DOUBLE", "stat.fit.chi2", "", "reduced chi2 against a constant"),
        ("modulation_index", "DOUBLE", "stat.stdev", "", "modulation index"),
        ("catalogue_match", "VARCHAR", "meta.id.cross", "", "matched external catalogue entry")]),
    "photometry": ("One flux measurement of a source on an image (detections and forced photometry)", [
        ("id", "BIGINT", "meta.id;meta.main", "", "measurement identifier"),
        ("source_id", "VARCHAR", "meta.id", "", "the source (sources.id)"),
        ("image_id", "VARCHAR", "meta.id", "", "the image (images.id)"),
        ("mjd", "DOUBLE", "time.epoch", "d", "mid time of the image (MJD)"),
        ("ra_deg", "DOUBLE", "pos.eq.ra", "deg", "measured right ascension"),
        ("dec_deg", "DOUBLE", "pos.eq.dec", "deg", "measured declination"),
        ("peak_flux_jy", "DOUBLE", "phot.flux.density;stat.max", "Jy/beam", "peak brightness"),
        ("flux_jy", "DOUBLE", "phot.flux.density", "Jy", "flux density"),
        ("flux_err_jy", "DOUBLE", "stat.error;phot.flux.density", "Jy", "flux density error"),
        ("local_rms_jy", "DOUBLE", "stat.stdev;phot.flux.density", "Jy/beam", "local image noise"),
        ("snr", "DOUBLE", "stat.snr", "", "signal to noise"),
        ("forced", "BOOLEAN", "meta.code", "", "forced photometry (not a detection)")]),
    "images": ("Images made by the pipeline (file paths are not published)", [
        ("id", "VARCHAR", "meta.id;meta.main", "", "image identifier"),
        ("group_id", "VARCHAR", "meta.id", "", "observation group"),
        ("mid_mjd", "DOUBLE", "time.epoch", "d", "mid time (MJD)"),
        ("pointing_ra_deg", "DOUBLE", "pos.eq.ra;meta.main", "deg", "phase centre right ascension"),
        ("pointing_dec_deg", "DOUBLE", "pos.eq.dec;meta.main", "deg", "phase centre declination"),
        ("noise_jy", "DOUBLE", "stat.stdev;phot.flux.density", "Jy/beam", "image noise"),
        ("peak_flux_jy", "DOUBLE", "phot.flux.density;stat.max", "Jy/beam", "image peak"),
        ("dynamic_range", "DOUBLE", "stat.snr", "", "peak over noise"),
        ("beam_major_arcsec", "DOUBLE", "instr.beam;phys.angSize", "arcsec", "restoring beam major axis"),
        ("beam_minor_arcsec", "DOUBLE", "instr.beam;phys.angSize", "arcsec", "restoring beam minor axis"),
        ("beam_pa_deg", "DOUBLE", "instr.beam;pos.posAng", "deg", "restoring beam position angle"),
        ("qa_grade", "VARCHAR", "meta.code.qual", "", "QA grade"),
        ("created_at", "TIMESTAMP", "time.creation", "", "when the image was made (UTC)")]),
}
_COLS = {t: {c[0] for c in cols} for t, (_, cols) in PUBLISHED.items()}
META = {c[0]: {"ucd": c[2], "unit": c[3], "description": c[4]} for _, cols in PUBLISHED.values() for c in cols}

_FORBIDDEN = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Merge,
              exp.Into, exp.Pragma, exp.Attach, exp.Detach, exp.Transaction, exp.Commit, exp.Rollback)


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]
    overflow: bool
    sql: str


def _literal(node: exp.Expression) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in (node.args.get("this"), node.args.get("expression"), *node.args.get("expressions", []))
            if isinstance(a, exp.Expression)]


def _fname(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    return node.sql_name().upper() if isinstance(node, exp.Func) else ""


def _coords(node: exp.Expression, kind: str, n: int) -> list[exp.Expression]:
    """The numeric arguments of POINT/CIRCLE (a leading coordinate-system string is ADQL 2.0's, ignored
    if it is ICRS or empty)."""
    if _fname(node) != kind:
        raise VOError(f"ADQL: expected {kind}(...) here, got {node.sql()!r}")
    args = _args(node)
    if args and _literal(args[0]):
        frame = args[0].this.strip().upper()
        if frame not in ("", "ICRS", "J2000"):
            raise VOError(f"ADQL: coordinate system {args[0].this!r} is not supported (use 'ICRS')")
        args = args[1:]
    if len(args) != n:
        raise VOError(f"ADQL: {kind} takes {n} numbers, got {len(args)} in {node.sql()!r}")
    return args


def _rewrite(node: exp.Expression) -> exp.Expression:
    name = _fname(node)
    if name in ("CONTAINS", "INTERSECTS"):
        a, b = (_args(node) + [None, None])[:2]
        if a is None or b is None:
            raise VOError(f"ADQL: {name} needs two geometries")
        if name == "INTERSECTS" and _fname(a) == "CIRCLE":
            a, b = b, a
        if _fname(b) != "CIRCLE":
            raise VOError(f"ADQL: {name} supports a POINT and a CIRCLE only, not {b.sql()!r}")
        return exp.Anonymous(this="adql_contains_circle", expressions=[*_coords(a, "POINT", 2),
                                                                       *_coords(b, "CIRCLE", 3)])
    if name == "DISTANCE":
        args = _args(node)
        if len(args) == 4:
            return exp.Anonymous(this="adql_distance", expressions=args)
        if len(args) != 2:
            raise VOError(f"ADQL: DISTANCE takes two POINTs, got {node.sql()!r}")
        return exp.Anonymous(this="adql_distance", expressions=[*_coords(args[0], "POINT", 2),
                                                                *_coords(args[1], "POINT", 2)])
    if name in ("POINT", "CIRCLE", "BOX", "POLYGON", "REGION", "AREA", "CENTROID", "COORD1", "COORD2",
                "COORDSYS"):
        raise VOError(f"ADQL: {name} is supported only inside CONTAINS(POINT, CIRCLE) or DISTANCE(POINT, POINT)")
    return node


def translate(adql: str) -> str:
    """SQLite for one ADQL query over the published tables, or VOError naming what is not allowed."""
    if not adql or not adql.strip():
        raise VOError("QUERY is empty")
    try:
        trees = [t for t in sqlglot.parse(adql, read="tsql") if t is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise VOError(f"ADQL syntax error{where}: {first.get('description') or exc}") from None
    if len(trees) != 1:
        raise VOError(f"QUERY must be one SELECT statement, not {len(trees)}")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise VOError(f"QUERY must be a SELECT, not {tree.key.upper()}")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise VOError(f"QUERY may only read: {node.key.upper()} is not allowed")
        if isinstance(node, exp.Table):
            name = node.name.lower()
            if node.args.get("db") or node.args.get("catalog"):
                raise VOError(f"table {node.sql()!r}: use the unqualified names {', '.join(PUBLISHED)}")
            if name not in PUBLISHED and name not in ctes:
                raise VOError(f"table {node.name!r} is not published (tables: {', '.join(PUBLISHED)})")
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="sqlite")


def _contains_circle(ra: float | None, dec: float | None, ra0: float | None, dec0: float | None,
                     r: float | None) -> int | None:
    d = _distance(ra, dec, ra0, dec0)
    return None if d is None or r is None else int(d <= r)


def _distance(ra1: float | None, dec1: float | None, ra2: float | None, dec2: float | None) -> float | None:
    if None in (ra1, dec1, ra2, dec2):
        return None
    p1, p2, dl = math.radians(dec1), math.radians(dec2), math.radians(ra2 - ra1)  # type: ignore[operator]
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(min(1.0, max(0.0, h)))))


def _authorizer(action: int, a1: str | None, a2: str | None, dbname: str | None, source: str | None) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33)):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ and a1 in _COLS and (a2 == "" or a2 in _COLS[a1]):
        # through the published view only; column "" is a row count (count(*)), which discloses no values
        if a2 == "" or dbname == "temp" or (dbname == "main" and source == a1):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    for table, (_, cols) in PUBLISHED.items():
        conn.execute(f'CREATE TEMP VIEW "{table}" AS SELECT {", ".join(c[0] for c in cols)} FROM main."{table}"')
    conn.execute("PRAGMA query_only = ON")  # after the TEMP views: from here on nothing writes, not even temp
    conn.create_function("adql_contains_circle", 5, _contains_circle, deterministic=True)
    conn.create_function("adql_distance", 4, _distance, deterministic=True)
    conn.set_authorizer(_authorizer)
    return conn


def maxrec(params: Mapping[str, str]) -> int:
    raw = params.get("MAXREC")
    if raw is None or str(raw).strip() == "":
        return DEFAULT_MAXREC
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise VOError(f"MAXREC must be a whole number, not {raw!r}") from None
    if value < 0:
        raise VOError(f"MAXREC must be >= 0, not {value}")
    return min(value, HARD_MAXREC)


def unavailable_on(settings: Any) -> str | None:
    """Why the TAP service cannot run on this data dir's database (None: it can).

    Its safety rests on SQLite's authorizer and a read-only file connection; a PostgreSQL
    database would need a read-only role and views of its own, which are not done."""
    if getattr(settings, "database_is_sqlite", True):
        return None
    return ("the TAP service reads the SQLite database file (SQLite's authorizer keeps it to the published "
            f"columns); this data dir's database is {settings.database_label}, and TAP on PostgreSQL is not "
            "supported: use the REST listings (/api/v1/sources, /api/v1/images) or SQL with a read-only "
            "PostgreSQL role")


def execute(db_path: Path, adql: str, limit: int = DEFAULT_MAXREC, timeout_s: float = TIMEOUT_S) -> Result:
    """Run one ADQL query; at most ``limit`` rows, aborted after ``timeout_s`` seconds."""
    sql = translate(adql)
    if not Path(db_path).is_file():
        raise VOError("the pipeline database does not exist yet")
    conn = _connect(Path(db_path))
    deadline = time.monotonic() + timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 5_000)
    try:
        cur = conn.execute(sql)
        columns = [d[0] for d in cur.description or ()]
        rows = cur.fetchmany(limit + 1) if limit >= 0 else []
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise VOError(f"query exceeded the statement timeout of {timeout_s:g} s; narrow it (TOP, WHERE)") from None
        if "not authorized" in str(exc) or "prohibited" in str(exc):
            raise VOError(f"QUERY reads something that is not published ({exc})") from None
        raise VOError(f"query failed: {exc}") from None
    except sqlite3.Error as exc:
        raise VOError(f"query failed: {exc}") from None
    finally:
        conn.close()
    overflow = len(rows) > limit
    return Result(columns, [[finite(v) for v in r] for r in rows[:limit]], overflow, sql)


def sync(db_path: Path, params: Mapping[str, str], unavailable: str | None = None) -> bytes:
    """The /sync response for a TAP request's parameters (case-insensitive names); ``unavailable``
    (see ``unavailable_on``) answers every query with that error."""
    p = {k.upper(): v for k, v in params.items()}
    try:
        if unavailable:
            raise VOError(unavailable)
        request = p.get("REQUEST", "doQuery")
        if request.lower() != "doquery":
            raise VOError(f"REQUEST must be doQuery, not {request!r}")
        lang = p.get("LANG")
        if not lang:
            raise VOError("LANG is required (LANG=ADQL)")
        if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            raise VOError(f"LANG {lang!r} is not supported (use ADQL)")
        fmt = (p.get("RESPONSEFORMAT") or p.get("FORMAT") or "votable").lower()
        if fmt not in ("votable", "application/x-votable+xml", "text/xml", "application/xml",
                       "votable/td", "application/x-votable+xml;serialization=tabledata"):
            raise VOError(f"RESPONSEFORMAT {fmt!r} is not offered (only VOTable)")
        if "UPLOAD" in p:
            raise VOError("UPLOAD is not supported")
        res = execute(db_path, p.get("QUERY", ""), maxrec(p))
    except VOError as exc:
        return error_document(str(exc))
    return table_document(res.columns, res.rows, META, overflow=res.overflow)
