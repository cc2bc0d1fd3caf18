"""Saved queries: structured filters over whitelisted columns, compiled to SQLAlchemy — never raw SQL.

A query is a list of conditions ``{field, operator, value}`` joined by AND. The
dashboard edits them as text; that text is a small filter language, not SQL:

    peak_flux_jy > 0.5 AND dec_deg >= 50 AND name ~ "J08" AND qa_grade IN (good, warn)

Fields are the whitelisted columns of the target type; ``{{name}}`` placeholders are
parameters filled in at run time. Anything else — a semicolon, a sub-query, an
unknown column — is refused with a message that names it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError


class QueryError(ContimgError):
    """A filter that cannot be parsed or refers to something not allowed."""


TARGETS: dict[str, tuple[type, dict[str, Any]]] = {
    "image": (m.Image, {k: getattr(m.Image, k) for k in (
        "id", "path", "ms_path", "qa_grade", "noise_jy", "peak_flux_jy", "dynamic_range", "beam_major_arcsec",
        "beam_minor_arcsec", "pointing_ra_deg", "pointing_dec_deg", "mid_mjd", "backend", "created_at", "group_id")}),
    "source": (m.Source, {k: getattr(m.Source, k) for k in (
        "id", "name", "ra_deg", "dec_deg", "peak_flux_jy", "mean_flux_jy", "n_detections", "n_images", "eta", "v",
        "chi2_nu", "modulation_index", "first_detected_at", "last_detected_at")}),
    "job": (m.Job, {k: getattr(m.Job, k) for k in (
        "id", "type", "state", "group_id", "attempts", "priority", "error", "created_at", "started_at",
        "finished_at")}),
    "ms": (m.MeasurementSet, {k: getattr(m.MeasurementSet, k) for k in (
        "id", "path", "group_id", "n_rows", "n_channels", "n_antennas", "start_mjd", "end_mjd", "phase_ra_deg",
        "phase_dec_deg", "flagged_fraction", "qa_grade", "created_at")}),
    "observation": (m.ObservationGroup, {k: getattr(m.ObservationGroup, k) for k in (
        "id", "group_time", "dec_deg", "state", "n_subbands", "is_calibrator", "calibrator_name", "error",
        "start_mjd", "end_mjd")}),
}
ALIASES = {"images": "image", "sources": "source", "jobs": "job", "observations": "observation", "mss": "ms"}
OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "contains", "in", "not_in", "is_null", "not_null")
_SYMBOLS = {"=": "equals", "==": "equals", "!=": "not_equals", "<>": "not_equals", ">": "gt", ">=": "gte", "<": "lt",
            "<=": "lte", "~": "contains", "in": "in", "not in": "not_in", "is null": "is_null",
            "is not null": "not_null", "contains": "contains", "like": "contains"}
_COND = re.compile(
    r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|!=|<>|==|=|>|<|~|not\s+in\b|in\b|is\s+not\s+null\b|"
    r"is\s+null\b|contains\b|like\b)\s*(?P<value>.*?)\s*$", re.IGNORECASE | re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_ROWS = 10_000


def target_of(name: str) -> tuple[type, dict[str, Any]]:
    key = ALIASES.get(name, name)
    if key not in TARGETS:
        raise QueryError(f"unknown target type {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[key]


def placeholders(text: str) -> list[str]:
    seen: list[str] = []
    for name in _PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


def _split_and(text: str) -> list[str]:
    parts, buf, quote = [], [], ""
    tokens = re.split(r"(\s+and\s+|\"|')", text, flags=re.IGNORECASE)
    for tok in tokens:
        if tok in ('"', "'"):
            quote = "" if quote == tok else (quote or tok)
            buf.append(tok)
        elif quote == "" and re.fullmatch(r"\s+and\s+", tok or "", flags=re.IGNORECASE):
            parts.append("".join(buf))
            buf = []
        elif tok:
            buf.append(tok)
    parts.append("".join(buf))
    return [p for p in (p.strip() for p in parts) if p]


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_query_string(text: str) -> list[dict[str, Any]]:
    """The filter language → structured conditions. Refuses anything that is not a condition."""
    if not text or not text.strip():
        return []
    if ";" in text or "--" in text or "/*" in text:
        raise QueryError("query text may not contain ';', '--' or '/*': it is a filter, not SQL")
    body = re.sub(r"^\s*where\s+", "", text.strip(), flags=re.IGNORECASE)
    conditions = []
    for part in _split_and(body):
        mo = _COND.match(part)
        if not mo:
            raise QueryError(f"cannot read condition {part!r}: expected FIELD OPERATOR VALUE "
                             f"(operators: = != > >= < <= ~ IN, NOT IN, IS NULL)")
        op = _SYMBOLS[re.sub(r"\s+", " ", mo["op"].lower())]
        raw = mo["value"]
        if op in ("in", "not_in"):
            inner = raw.strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                raise QueryError(f"{mo['field']} {mo['op']}: expected a list in parentheses, got {raw!r}")
            value: Any = [_literal(v) for v in inner[1:-1].split(",") if v.strip()]
        elif op in ("is_null", "not_null"):
            if raw.strip():
                raise QueryError(f"unexpected text after {mo['op']!r}: {raw!r}")
            value = None
        else:
            if not raw:
                raise QueryError(f"condition on {mo['field']!r} has no value")
            value = _literal(raw)
        conditions.append({"field": mo["field"], "operator": op, "value": value})
    return conditions


def _fill(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    if isinstance(value, str):
        names = _PLACEHOLDER.findall(value)
        if names:
            missing = [n for n in names if n not in params]
            if missing:
                raise QueryError(f"parameter(s) {', '.join(missing)} not given")
            if _PLACEHOLDER.fullmatch(value.strip()):
                return _literal(str(params[names[0]]))
            return _PLACEHOLDER.sub(lambda mo: str(params[mo.group(1)]), value)
    return value


def validate_filters(target: str, conditions: list[dict[str, Any]]) -> None:
    """Check fields, operators and every value that is not a ``{{parameter}}``."""
    concrete = [c for c in conditions if not _PLACEHOLDER.search(str(c.get("value")))]
    compile_filters(target, concrete)
    _, columns = target_of(target)
    for c in conditions:
        if c.get("field") not in columns:
            raise QueryError(f"unknown field {c.get('field')!r} for {target}; allowed: {', '.join(sorted(columns))}")
        if c.get("operator") not in OPERATORS:
            raise QueryError(f"unknown operator {c.get('operator')!r}; allowed: {', '.join(OPERATORS)}")


def compile_filters(target: str, conditions: list[dict[str, Any]], params: dict[str, Any] | None = None) -> Select:
    model, columns = target_of(target)
    clauses = []
    for cond in conditions:
        field, op = cond.get("field"), cond.get("operator")
        if field not in columns:
            raise QueryError(f"unknown field {field!r} for {target}; allowed: {', '.join(sorted(columns))}")
        if op not in OPERATORS:
            raise QueryError(f"unknown operator {op!r}; allowed: {', '.join(OPERATORS)}")
        col = columns[field]
        value = _fill(cond.get("value"), params or {})
        if isinstance(col.type, m.UTCDateTime) and value is not None and op not in ("in", "not_in"):
            value = _as_datetime(field, value)
        if op == "equals":
            clauses.append(col == value)
        elif op == "not_equals":
            clauses.append(or_(col != value, col.is_(None)))
        elif op in ("gt", "gte", "lt", "lte"):
            if not isinstance(value, (int, float, datetime)):
                raise QueryError(f"{field} {op}: expected a number or time, got {value!r}")
            clauses.append({"gt": col > value, "gte": col >= value, "lt": col < value, "lte": col <= value}[op])
        elif op == "contains":
            clauses.append(func.lower(col).contains(str(value).lower(), autoescape=True))
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise QueryError(f"{field} {op}: expected a non-empty list")
            clauses.append(col.in_(value) if op == "in" else col.not_in(value))
        elif op == "is_null":
            clauses.append(col.is_(None))
        else:
            clauses.append(col.is_not(None))
    return select(model).where(and_(True, *clauses))


def _as_datetime(field: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        raise QueryError(f"{field}: {value!r} is not an ISO time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run_filters(db: Database, target: str, conditions: list[dict[str, Any]], params: dict[str, Any] | None = None,
                limit: int = 1000) -> dict[str, Any]:
    _, columns = target_of(target)
    limit = max(1, min(limit, MAX_ROWS))
    start = time.perf_counter()
    q = compile_filters(target, conditions, params).limit(limit + 1)
    with db.session() as s:
        rows = list(s.scalars(q))
    truncated = len(rows) > limit
    names = list(columns)
    out = [{n: _plain(getattr(r, n)) for n in names} for r in rows[:limit]]
    return {"columns": names, "rows": out, "row_count": len(out), "truncated": truncated,
            "execution_time_ms": (time.perf_counter() - start) * 1000}


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


# ---- saved queries -------------------------------------------------------------------------------------
def _row(q: m.SavedQuery, user: str, favs: set[str], owner_names: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": q.id, "name": q.name, "description": q.description or "", "query_string": q.query_string,
            "target_type": q.target_type, "visibility": q.visibility,
            "owner_id": "me" if q.created_by == user else q.created_by, "owner_name": q.created_by,
            "is_favorite": q.id in favs, "run_count": q.run_count, "last_run_at": q.last_run_at,
            "created_at": q.created_at, "updated_at": q.updated_at, "tags": list(q.tags or []),
            "parameters": list(q.parameters or []), "filters": q.filters}


def _params_from(text: str, given: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    given = list(given or [])
    known = {p["name"] for p in given}
    for name in placeholders(text):
        if name not in known:
            given.append({"name": name, "type": "string", "required": True})
    return given


class SavedQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _favs(self, s: Any, user: str) -> set[str]:
        return set(s.scalars(select(m.SavedQueryFavorite.query_id).where(m.SavedQueryFavorite.username == user)))

    def _visible(self, user: str) -> Any:
        return or_(m.SavedQuery.created_by == user, m.SavedQuery.visibility.in_(("team", "public")))

    def list(self, user: str, *, search: str | None = None, target_type: str | None = None,
             visibility: str | None = None, owner_id: str | None = None, is_favorite: bool | None = None,
             tags: list[str] | None = None, sort_by: str = "updated_at", sort_order: str = "desc",
             limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
        with self.db.session() as s:
            favs = self._favs(s, user)
            q = select(m.SavedQuery).where(self._visible(user))
            if search:
                like = f"%{search.lower()}%"
                q = q.where(or_(func.lower(m.SavedQuery.name).like(like),
                                func.lower(func.coalesce(m.SavedQuery.description, "")).like(like)))
            if target_type:
                q = q.where(m.SavedQuery.target_type == target_type)
            if visibility:
                q = q.where(m.SavedQuery.visibility == visibility)
            if owner_id:
                q = q.where(m.SavedQuery.created_by == (user if owner_id == "me" else owner_id))
            if is_favorite:
                q = q.where(m.SavedQuery.id.in_(favs or {""}))
            col = getattr(m.SavedQuery, sort_by)
            q = q.order_by(col.desc() if sort_order == "desc" else col.asc()).limit(limit).offset(offset)
            rows = [_row(r, user, favs) for r in s.scalars(q)]
        if tags:
            rows = [r for r in rows if set(tags) & set(r["tags"])]
        return rows

    def get(self, query_id: str, user: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            q = s.get(m.SavedQuery, query_id)
            if q is None or not (q.created_by == user or q.visibility in ("team", "public")):
                return None
            return _row(q, user, self._favs(s, user))

    def create(self, user: str, data: dict[str, Any]) -> dict[str, Any]:
        text = data.get("query_string") or ""
        filters = data.get("filters")
        conditions = filters if filters is not None else parse_query_string(text)
        validate_filters(data["target_type"], conditions)  # refuse unknown fields now, not at run time
        import json

        with self.db.session() as s:
            recent = s.scalar(select(m.SavedQuery).where(
                m.SavedQuery.created_by == user, m.SavedQuery.name == data["name"],
                m.SavedQuery.query_string == text, m.SavedQuery.target_type == data["target_type"],
                m.SavedQuery.created_at >= datetime.now(UTC) - timedelta(seconds=60)))
            if recent is not None:  # the dashboard retries POSTs: the same query twice is one query
                return _row(recent, user, self._favs(s, user))
            q = m.SavedQuery(name=data["name"], description=data.get("description") or "", query_string=text,
                             filters=json.dumps(conditions), target_type=data["target_type"],
                             visibility=data.get("visibility", "private"), tags=list(data.get("tags") or []),
                             parameters=_params_from(text, data.get("parameters")), created_by=user,
                             forked_from=data.get("forked_from"))
            s.add(q)
            s.flush()
            return _row(q, user, set())

    def update(self, query_id: str, user: str, data: dict[str, Any]) -> dict[str, Any] | None:
        import json

        with self.db.session() as s:
            q = s.get(m.SavedQuery, query_id)
            if q is None:
                return None
            if q.created_by != user:
                raise PermissionError(f"query {query_id} belongs to {q.created_by}")
            for key in ("name", "description", "visibility", "tags", "target_type"):
                if key in data and data[key] is not None:
                    setattr(q, key, data[key])
            if data.get("query_string") is not None or data.get("target_type") is not None:
                text = data.get("query_string", q.query_string) or ""
                conditions = parse_query_string(text)
                validate_filters(q.target_type, conditions)
                q.query_string, q.filters = text, json.dumps(conditions)
                q.parameters = _params_from(text, data.get("parameters"))
            q.updated_at = datetime.now(UTC)
            return _row(q, user, self._favs(s, user))

    def delete(self, query_id: str, user: str) -> bool:
        with self.db.session() as s:
            q = s.get(m.SavedQuery, query_id)
            if q is None:
                return False
            if q.created_by != user:
                raise PermissionError(f"query {query_id} belongs to {q.created_by}")
            s.delete(q)
            return True

    def favorite(self, query_id: str, user: str, on: bool) -> dict[str, Any] | None:
        with self.db.session() as s:
            if self.get(query_id, user) is None:
                return None
            fav = s.get(m.SavedQueryFavorite, (query_id, user))
            if on and fav is None:
                s.add(m.SavedQueryFavorite(query_id=query_id, username=user))
            elif not on and fav is not None:
                s.delete(fav)
        return self.get(query_id, user)

    def clone(self, query_id: str, user: str) -> dict[str, Any] | None:
        src = self.get(query_id, user)
        if src is None:
            return None
        return self.create(user, {"name": f"{src['name']} (copy)" if src["owner_id"] == "me" else src["name"],
                                  "description": src["description"], "query_string": src["query_string"],
                                  "target_type": src["target_type"], "visibility": "private", "tags": src["tags"],
                                  "parameters": src["parameters"], "forked_from": src["id"]})

    def run(self, user: str, *, query_id: str | None, query_string: str | None, target_type: str | None,
            params: dict[str, Any], limit: int) -> dict[str, Any]:
        import json

        if query_id:
            with self.db.session() as s:
                q = s.get(m.SavedQuery, query_id)
                if q is None or not (q.created_by == user or q.visibility in ("team", "public")):
                    raise KeyError(query_id)
                target, conditions = q.target_type, json.loads(q.filters or "[]")
                required = [p["name"] for p in (q.parameters or []) if p.get("required")]
        else:
            if not target_type:
                raise QueryError("an ad-hoc query needs target_type")
            target, conditions, required = target_type, parse_query_string(query_string or ""), []
        missing = [n for n in required if n not in params]
        if missing:
            raise QueryError(f"parameter(s) {', '.join(missing)} required")
        result = run_filters(self.db, target, conditions, params, limit)
        if query_id:
            with self.db.session() as s:
                q = s.get_one(m.SavedQuery, query_id)
                q.run_count += 1
                q.last_run_at = datetime.now(UTC)
                s.add(m.SavedQueryRun(query_id=query_id, username=user, row_count=result["row_count"]))
        return result

    def history(self, user: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.execute(select(m.SavedQueryRun, m.SavedQuery.name).join(m.SavedQuery)
                             .where(m.SavedQueryRun.username == user).order_by(m.SavedQueryRun.run_at.desc())
                             .limit(limit))
            return [{"query_id": r.query_id, "query_name": name, "run_at": r.run_at} for r, name in rows]

    def stats(self, user: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        with self.db.session() as s:
            qs = list(s.scalars(select(m.SavedQuery).where(self._visible(user))))
            day = s.scalar(select(func.count()).select_from(m.SavedQueryRun)
                           .where(m.SavedQueryRun.run_at >= now - timedelta(days=1))) or 0
            week = s.scalar(select(func.count()).select_from(m.SavedQueryRun)
                            .where(m.SavedQueryRun.run_at >= now - timedelta(days=7))) or 0
        tags = Counter(t for q in qs for t in (q.tags or []))
        top = sorted(qs, key=lambda q: -q.run_count)[:5]
        return {"total_queries": len(qs), "public_queries": sum(q.visibility == "public" for q in qs),
                "team_queries": sum(q.visibility == "team" for q in qs),
                "private_queries": sum(q.visibility == "private" for q in qs), "queries_run_today": day,
                "queries_run_this_week": week,
                "popular_tags": [{"tag": t, "count": n} for t, n in tags.most_common(10)],
                "top_queries": [{"id": q.id, "name": q.name, "run_count": q.run_count, "owner_name": q.created_by}
                                for q in top]}

    def record_use(self, query_id: str, user: str) -> bool:
        with self.db.session() as s:
            q = s.get(m.SavedQuery, query_id)
            if q is None:
                return False
            q.run_count += 1
            q.last_run_at = datetime.now(UTC)
            s.add(m.SavedQueryRun(query_id=query_id, username=user, row_count=0))
            return True
