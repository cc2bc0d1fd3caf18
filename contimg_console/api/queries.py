"""Saved queries (spec §2, shared-queries contract) and the roadmap's ``/api/saved-queries`` aliases.

Queries are structured filters over whitelisted columns (engine.queries); the text
the dashboard edits is a small filter language, never SQL. Saving needs a logged-in
user (the owner is that user); anyone may read team and public queries.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.listing import NOT_MODIFIED
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.queries import QueryError, SavedQueries

router = Router()
Target = Literal["source", "image", "job", "observation", "ms"]
Visibility = Literal["private", "team", "public"]


class QueryParameter(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    type: Literal["string", "number", "date", "boolean"] = "string"
    default_value: str | None = None
    description: str | None = None
    required: bool = True


class FilterCondition(BaseModel):
    field: str = Field(max_length=64)
    operator: Literal["equals", "not_equals", "gt", "gte", "lt", "lte", "contains", "in", "not_in", "is_null",
                      "not_null"]
    value: Any = None


class SavedQuery(BaseModel):
    id: str
    name: str
    description: str
    query_string: str
    target_type: str
    visibility: Visibility
    owner_id: str
    owner_name: str
    is_favorite: bool
    run_count: int
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tags: list[str]
    parameters: list[QueryParameter]


class CreateQuery(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str = Field("", max_length=4000)
    query_string: str = Field("", max_length=10000)
    target_type: Target
    visibility: Visibility = "private"
    tags: list[str] = Field(default_factory=list, max_length=50)
    parameters: list[QueryParameter] | None = None
    filters: list[FilterCondition] | None = None


class UpdateQuery(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    query_string: str | None = Field(None, max_length=10000)
    target_type: Target | None = None
    visibility: Visibility | None = None
    tags: list[str] | None = Field(None, max_length=50)
    parameters: list[QueryParameter] | None = None


class QueryListParams(BaseModel):
    search: str | None = Field(None, max_length=200)
    target_type: Target | None = None
    visibility: Visibility | None = None
    owner_id: str | None = None
    is_favorite: bool | None = None
    tags: list[str] | None = None
    sort_by: Literal["name", "created_at", "updated_at", "run_count"] = "updated_at"
    sort_order: Literal["asc", "desc"] = "desc"
    limit: int = Field(500, ge=1, le=5000)
    offset: int = Field(0, ge=0, le=10_000_000)


class QueryRunBody(BaseModel):
    query_id: str | None = None
    query_string: str | None = Field(None, max_length=10000)
    target_type: Target | None = None
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    limit: int = Field(1000, ge=1, le=10000)


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]]
    row_count: int
    execution_time_ms: float
    truncated: bool


class HistoryItem(BaseModel):
    query_id: str
    query_name: str
    run_at: datetime


class TagCount(BaseModel):
    tag: str
    count: int


class TopQuery(BaseModel):
    id: str
    name: str
    run_count: int
    owner_name: str


class QueryStats(BaseModel):
    total_queries: int
    public_queries: int
    team_queries: int
    private_queries: int
    queries_run_today: int
    queries_run_this_week: int
    popular_tags: list[TagCount]
    top_queries: list[TopQuery]



def store(request: web.Request) -> SavedQueries:
    return SavedQueries(rt(request).db)


def owner(principal: Principal) -> str:
    return require_user(principal, "saving queries")


def _qerr(exc: QueryError) -> ApiError:
    return ApiError(422, str(exc), code="VALIDATION_FAILED")


async def _get(request: web.Request, principal: Principal) -> SavedQuery:
    qid = request.match_info["id"]
    row = await asyncio.to_thread(store(request).get, qid, principal.username)
    if row is None:
        raise ApiError(404, f"no query {qid!r}", code="NOT_FOUND")
    return SavedQuery(**row)


@router.route("GET", "/api/v1/queries/stats", summary="Query statistics", response=QueryStats, tags=("queries",))
async def stats(request: web.Request, principal: Principal) -> QueryStats:
    return QueryStats(**await asyncio.to_thread(store(request).stats, principal.username))


@router.route("GET", "/api/v1/queries/favorites", summary="The caller's favourite queries",
              response=list[SavedQuery], tags=("queries",))
async def favorites(request: web.Request, principal: Principal) -> list[SavedQuery]:
    rows = await asyncio.to_thread(store(request).list, principal.username, is_favorite=True)
    return [SavedQuery(**r) for r in rows]


@router.route("GET", "/api/v1/queries/history", summary="The caller's recent runs", response=list[HistoryItem],
              tags=("queries",))
async def history(request: web.Request, principal: Principal) -> list[HistoryItem]:
    return [HistoryItem(**r) for r in await asyncio.to_thread(store(request).history, principal.username)]


@router.route("GET", "/api/v1/queries", summary="List saved queries", query=QueryListParams, response=list[SavedQuery],
              responses=NOT_MODIFIED, tags=("queries",), aliases=("/api/saved-queries",))
async def list_queries(request: web.Request, query: QueryListParams, principal: Principal) -> web.Response:
    from contimg_console.api.products import cached_listing

    params = query.model_dump()
    queries = store(request)

    def build() -> list[dict[str, Any]]:
        return [SavedQuery(**r).model_dump(mode="json") for r in queries.list(principal.username, **params)]

    key = ("queries", principal.username, json.dumps(params, sort_keys=True, default=str))
    return await cached_listing(request, "queries", build, key)


@router.route("POST", "/api/v1/queries/run", summary="Run a saved or ad-hoc query (read-only filters)",
              body=QueryRunBody, response=QueryResult, tags=("queries",), read_only=True)
async def run(request: web.Request, body: QueryRunBody, principal: Principal) -> QueryResult:
    if not body.query_id and not body.query_string:
        raise ApiError(422, "give query_id or query_string", code="VALIDATION_FAILED")
    try:
        result = await asyncio.to_thread(store(request).run, principal.username, query_id=body.query_id,
                                         query_string=body.query_string, target_type=body.target_type,
                                         params=body.parameters, limit=body.limit)
    except QueryError as exc:
        raise _qerr(exc) from None
    except KeyError:
        raise ApiError(404, f"no query {body.query_id!r}", code="NOT_FOUND") from None
    return QueryResult(**result)


@router.route("GET", "/api/v1/queries/{id}", summary="One saved query", response=SavedQuery, tags=("queries",),
              aliases=("/api/saved-queries/{id}",))
async def get_query(request: web.Request, principal: Principal) -> SavedQuery:
    return await _get(request, principal)


@router.route("POST", "/api/v1/queries", summary="Save a query", body=CreateQuery, response=SavedQuery,
              tags=("queries",), aliases=("/api/saved-queries",))
async def create(request: web.Request, body: CreateQuery, principal: Principal) -> SavedQuery:
    user = owner(principal)
    data = body.model_dump()
    if body.filters is not None:
        data["filters"] = [c.model_dump() for c in body.filters]
    else:
        data.pop("filters")
    if body.parameters is not None:
        data["parameters"] = [p.model_dump() for p in body.parameters]
    try:
        return SavedQuery(**await asyncio.to_thread(store(request).create, user, data))
    except QueryError as exc:
        raise _qerr(exc) from None


async def _update(request: web.Request, body: UpdateQuery, principal: Principal) -> SavedQuery:
    user = owner(principal)
    data = body.model_dump(exclude_unset=True)
    if body.parameters is not None:
        data["parameters"] = [p.model_dump() for p in body.parameters]
    try:
        row = await asyncio.to_thread(store(request).update, request.match_info["id"], user, data)
    except QueryError as exc:
        raise _qerr(exc) from None
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if row is None:
        raise ApiError(404, f"no query {request.match_info['id']!r}", code="NOT_FOUND")
    return SavedQuery(**row)


@router.route("PATCH", "/api/v1/queries/{id}", summary="Update a saved query", body=UpdateQuery,
              response=SavedQuery, tags=("queries",))
async def patch(request: web.Request, body: UpdateQuery, principal: Principal) -> SavedQuery:
    return await _update(request, body, principal)


@router.route("PUT", "/api/saved-queries/{id}", summary="Update a saved query (roadmap path)", body=UpdateQuery,
              response=SavedQuery, tags=("queries",))
async def put(request: web.Request, body: UpdateQuery, principal: Principal) -> SavedQuery:
    return await _update(request, body, principal)


@router.route("DELETE", "/api/v1/queries/{id}", summary="Delete a saved query", status=204, tags=("queries",),
              aliases=("/api/saved-queries/{id}",))
async def delete(request: web.Request, principal: Principal) -> None:
    user = owner(principal)
    try:
        found = await asyncio.to_thread(store(request).delete, request.match_info["id"], user)
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if not found:
        raise ApiError(404, f"no query {request.match_info['id']!r}", code="NOT_FOUND")


async def _favorite(request: web.Request, principal: Principal, on: bool) -> SavedQuery:
    row = await asyncio.to_thread(store(request).favorite, request.match_info["id"], owner(principal), on)
    if row is None:
        raise ApiError(404, f"no query {request.match_info['id']!r}", code="NOT_FOUND")
    return SavedQuery(**row)


@router.route("POST", "/api/v1/queries/{id}/favorite", summary="Star a query", response=SavedQuery,
              tags=("queries",))
async def star(request: web.Request, principal: Principal) -> SavedQuery:
    return await _favorite(request, principal, True)


@router.route("DELETE", "/api/v1/queries/{id}/favorite", summary="Un-star a query", response=SavedQuery,
              tags=("queries",))
async def unstar(request: web.Request, principal: Principal) -> SavedQuery:
    return await _favorite(request, principal, False)


@router.route("POST", "/api/v1/queries/{id}/clone", summary="Clone (fork) a query into your own",
              response=SavedQuery, tags=("queries",), aliases=("/api/saved-queries/{id}/fork",))
async def clone(request: web.Request, principal: Principal) -> SavedQuery:
    row = await asyncio.to_thread(store(request).clone, request.match_info["id"], owner(principal))
    if row is None:
        raise ApiError(404, f"no query {request.match_info['id']!r}", code="NOT_FOUND")
    return SavedQuery(**row)


@router.route("POST", "/api/v1/queries/{id}/use", summary="Record a use of a query", response=Ok, tags=("queries",))
async def use(request: web.Request, principal: Principal) -> Ok:
    if not await asyncio.to_thread(store(request).record_use, request.match_info["id"], principal.username):
        raise ApiError(404, f"no query {request.match_info['id']!r}", code="NOT_FOUND")
    return Ok()
