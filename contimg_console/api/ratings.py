"""QA ratings (spec §8): star ratings with quality flags per category, summaries, the review queue."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.ratings import Ratings

router = Router()
Target = Literal["source", "image"]
Category = Literal["overall", "flux", "morphology", "position", "calibration"]
Flag = Literal["good", "uncertain", "bad", "needs_review"]
Priority = Literal["high", "medium", "low"]


class Rating(BaseModel):
    id: str
    target_type: Target
    target_id: str
    user_id: str
    username: str
    category: Category
    value: int
    flag: Flag
    comment: str | None = None
    created_at: datetime
    updated_at: datetime


class SubmitRating(BaseModel):
    target_type: Target
    target_id: str = Field(min_length=1, max_length=255)
    category: Category = "overall"
    value: int = Field(ge=1, le=5)
    flag: Flag = "good"
    comment: str | None = Field(None, max_length=4000)


class UpdateRating(BaseModel):
    category: Category | None = None
    value: int | None = Field(None, ge=1, le=5)
    flag: Flag | None = None
    comment: str | None = Field(None, max_length=4000)


class RatingSummary(BaseModel):
    target_type: str
    target_id: str
    category: str
    average_rating: float
    rating_count: int
    flag_distribution: dict[str, int]
    recent_ratings: list[Rating]


class CategorySummary(BaseModel):
    average: float
    count: int


class TargetSummary(BaseModel):
    target_type: str
    target_id: str
    overall_average: float
    total_ratings: int
    categories: dict[str, CategorySummary]
    primary_flag: Flag
    needs_attention: bool


class Rater(BaseModel):
    user_id: str
    username: str
    rating_count: int


class RatingStats(BaseModel):
    total_ratings: int
    sources_rated: int
    images_rated: int
    average_rating: float
    ratings_today: int
    ratings_this_week: int
    top_raters: list[Rater]
    flag_distribution: dict[str, int]


class QueueItem(BaseModel):
    target_type: Target
    target_id: str
    name: str
    reason: str
    priority: Priority
    created_at: datetime


class QueueBody(BaseModel):
    target_type: Target
    target_id: str = Field(min_length=1, max_length=255)
    name: str = Field("", max_length=255)
    priority: Priority = "medium"
    reason: str = Field("", max_length=4000)


class QueueQuery(BaseModel):
    priority: Priority | None = None


class SummaryQuery(BaseModel):
    category: Category = "overall"


def store(request: web.Request) -> Ratings:
    return Ratings(rt(request).db)


def rater(principal: Principal) -> str:
    return require_user(principal, "rating")


@router.route("GET", "/api/v1/ratings/stats", summary="Rating statistics", response=RatingStats, tags=("ratings",))
async def stats(request: web.Request, principal: Principal) -> RatingStats:
    return RatingStats(**await asyncio.to_thread(store(request).stats, principal.username))


@router.route("GET", "/api/v1/ratings/queue", summary="Review queue", query=QueueQuery, response=list[QueueItem],
              tags=("ratings",))
async def queue(request: web.Request, query: QueueQuery) -> list[QueueItem]:
    return [QueueItem(**q) for q in await asyncio.to_thread(store(request).queue, query.priority)]


@router.route("POST", "/api/v1/ratings/queue", summary="Add to the review queue", body=QueueBody,
              response=QueueItem, tags=("ratings",))
async def enqueue(request: web.Request, body: QueueBody, principal: Principal) -> QueueItem:
    row = await asyncio.to_thread(store(request).enqueue, rater(principal), body.target_type, body.target_id,
                                  body.priority, body.reason)
    return QueueItem(**row)


@router.route("DELETE", "/api/v1/ratings/queue/{target_type}/{target_id}", summary="Remove from the review queue",
              response=Ok, tags=("ratings",))
async def dequeue(request: web.Request, principal: Principal) -> Ok:
    rater(principal)
    if not await asyncio.to_thread(store(request).dequeue, request.match_info["target_type"],
                                   request.match_info["target_id"]):
        raise ApiError(404, "not in the review queue")
    return Ok()


@router.route("GET", "/api/v1/ratings/user/{user_id}", summary="A user's ratings ('me' for the caller)",
              response=list[Rating], tags=("ratings",))
async def by_user(request: web.Request, principal: Principal) -> list[Rating]:
    rows = await asyncio.to_thread(store(request).by_user, principal.username, request.match_info["user_id"])
    return [Rating(**r) for r in rows]


@router.route("POST", "/api/v1/ratings", summary="Rate a source or image (again: replaces your rating)",
              body=SubmitRating, response=Rating, tags=("ratings",))
async def submit(request: web.Request, body: SubmitRating, principal: Principal) -> Rating:
    row = await asyncio.to_thread(store(request).submit, rater(principal), body.target_type, body.target_id,
                                  body.category, body.value, body.flag, body.comment)
    return Rating(**row)


@router.route("PATCH", "/api/v1/ratings/{rating_id}", summary="Change your rating", body=UpdateRating,
              response=Rating, tags=("ratings",))
async def update(request: web.Request, body: UpdateRating, principal: Principal) -> Rating:
    try:
        row = await asyncio.to_thread(store(request).update, request.match_info["rating_id"], rater(principal),
                                      body.model_dump(exclude_unset=True))
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if row is None:
        raise ApiError(404, f"no rating {request.match_info['rating_id']!r}")
    return Rating(**row)


@router.route("DELETE", "/api/v1/ratings/{rating_id}", summary="Delete a rating", response=Ok, tags=("ratings",))
async def delete(request: web.Request, principal: Principal) -> Ok:
    try:
        found = await asyncio.to_thread(store(request).delete, request.match_info["rating_id"], rater(principal),
                                        principal.allows("admin"))
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if not found:
        raise ApiError(404, f"no rating {request.match_info['rating_id']!r}")
    return Ok()


def _target(request: web.Request) -> tuple[str, str]:
    target_type = request.match_info["target_type"]
    if target_type not in ("source", "image"):
        raise ApiError(404, f"ratings are kept for sources and images, not {target_type!r}")
    return target_type, request.match_info["target_id"]


@router.route("GET", "/api/v1/ratings/{target_type:source|image}/{target_id}", summary="Ratings of one object",
              response=list[Rating], tags=("ratings",))
async def for_target(request: web.Request, principal: Principal) -> list[Rating]:
    tt, tid = _target(request)
    return [Rating(**r) for r in await asyncio.to_thread(store(request).for_target, principal.username, tt, tid)]


@router.route("GET", "/api/v1/ratings/{target_type:source|image}/{target_id}/summary",
              summary="Rating summary of one object", query=SummaryQuery, response=RatingSummary, tags=("ratings",))
async def summary(request: web.Request, query: SummaryQuery, principal: Principal) -> RatingSummary:
    tt, tid = _target(request)
    return RatingSummary(**await asyncio.to_thread(store(request).summary, principal.username, tt, tid,
                                                   query.category))


@router.route("GET", "/api/v1/ratings/{target_type:source|image}/{target_id}/complete-summary",
              summary="All categories of one object", response=TargetSummary, tags=("ratings",))
async def complete_summary(request: web.Request, principal: Principal) -> TargetSummary:
    tt, tid = _target(request)
    return TargetSummary(**await asyncio.to_thread(store(request).complete_summary, principal.username, tt, tid))


