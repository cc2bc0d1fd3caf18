"""Comments (spec §7): threads on sources, images, observations, jobs and Measurement Sets."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import require_user, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine.auth import Principal
from engine.comments import Comments

router = Router()
Target = Literal["source", "image", "observation", "job", "ms"]


class Comment(BaseModel):
    id: str
    target_type: Target
    target_id: str
    user_id: str
    username: str
    content: str
    is_pinned: bool
    is_resolved: bool
    parent_id: str | None
    reply_count: int
    created_at: datetime
    updated_at: datetime


class CommentThread(BaseModel):
    comment: Comment
    replies: list[Comment]


class Commenter(BaseModel):
    user_id: str
    username: str
    comment_count: int


class CommentStats(BaseModel):
    total_comments: int
    pinned_comments: int
    resolved_comments: int
    active_threads: int
    comments_today: int
    comments_this_week: int
    top_commenters: list[Commenter]
    target_distribution: dict[str, int]


class MentionedUser(BaseModel):
    user_id: str
    username: str
    email: str | None = None


class SearchQuery(BaseModel):
    target_type: Target | None = None
    target_id: str | None = Field(None, max_length=255)
    user_id: str | None = Field(None, max_length=64)
    search: str | None = Field(None, max_length=200)
    is_pinned: bool | None = None
    is_resolved: bool | None = None
    parent_id: str | None = None
    sort_by: Literal["created_at", "updated_at"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    limit: int = Field(500, ge=1, le=5000)
    offset: int = Field(0, ge=0, le=10_000_000)


class CreateComment(BaseModel):
    target_type: Target
    target_id: str = Field(min_length=1, max_length=255)
    content: str = Field(min_length=1, max_length=20000)
    parent_id: str | None = None


class UpdateComment(BaseModel):
    content: str | None = Field(None, min_length=1, max_length=20000)
    is_pinned: bool | None = None
    is_resolved: bool | None = None


def store(request: web.Request) -> Comments:
    return Comments(rt(request).db)


def author(principal: Principal) -> str:
    return require_user(principal, "commenting")


async def _change(request: web.Request, principal: Principal, **changes: object) -> Comment:
    try:
        row = await asyncio.to_thread(store(request).update, request.match_info["id"], author(principal), **changes)
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if row is None:
        raise ApiError(404, f"no comment {request.match_info['id']!r}")
    return Comment(**row)


@router.route("GET", "/api/v1/comments/stats", summary="Comment statistics", response=CommentStats,
              tags=("comments",))
async def stats(request: web.Request, principal: Principal) -> CommentStats:
    return CommentStats(**await asyncio.to_thread(store(request).stats, principal.username))


@router.route("GET", "/api/v1/comments/users", summary="Users who can be mentioned", response=list[MentionedUser],
              tags=("comments",))
async def users(request: web.Request) -> list[MentionedUser]:
    return [MentionedUser(**u) for u in await asyncio.to_thread(store(request).users)]


@router.route("GET", "/api/v1/comments", summary="Search comments", query=SearchQuery, response=list[Comment],
              tags=("comments",))
async def search(request: web.Request, query: SearchQuery, principal: Principal) -> list[Comment]:
    rows = await asyncio.to_thread(store(request).search, principal.username, **query.model_dump())
    return [Comment(**r) for r in rows]


@router.route("POST", "/api/v1/comments", summary="Comment or reply", body=CreateComment, response=Comment,
              tags=("comments",))
async def create(request: web.Request, body: CreateComment, principal: Principal) -> Comment:
    try:
        row = await asyncio.to_thread(store(request).create, author(principal), body.target_type, body.target_id,
                                      body.content, body.parent_id)
    except KeyError:
        raise ApiError(404, f"no parent comment {body.parent_id!r}") from None
    return Comment(**row)


@router.route("GET", "/api/v1/comments/{id}", summary="One comment", response=Comment, tags=("comments",))
async def get_one(request: web.Request, principal: Principal) -> Comment:
    row = await asyncio.to_thread(store(request).get, request.match_info["id"], principal.username)
    if row is None:
        raise ApiError(404, f"no comment {request.match_info['id']!r}")
    return Comment(**row)


@router.route("GET", "/api/v1/comments/{id}/thread", summary="A comment and its replies", response=CommentThread,
              tags=("comments",))
async def thread(request: web.Request, principal: Principal) -> CommentThread:
    row = await asyncio.to_thread(store(request).thread, request.match_info["id"], principal.username)
    if row is None:
        raise ApiError(404, f"no comment {request.match_info['id']!r}")
    return CommentThread(**row)


@router.route("PATCH", "/api/v1/comments/{id}", summary="Edit, pin or resolve a comment", body=UpdateComment,
              response=Comment, tags=("comments",))
async def patch(request: web.Request, body: UpdateComment, principal: Principal) -> Comment:
    return await _change(request, principal, **body.model_dump(exclude_unset=True))


@router.route("DELETE", "/api/v1/comments/{id}", summary="Delete a comment", status=204, tags=("comments",))
async def delete(request: web.Request, principal: Principal) -> None:
    try:
        found = await asyncio.to_thread(store(request).delete, request.match_info["id"], author(principal),
                                        principal.allows("admin"))
    except PermissionError as exc:
        raise ApiError(403, str(exc), code="FORBIDDEN") from None
    if not found:
        raise ApiError(404, f"no comment {request.match_info['id']!r}")


def _action(path: str, summary: str, **change: bool) -> None:
    async def handler(request: web.Request, principal: Principal) -> Comment:
        return await _change(request, principal, **change)

    handler.__name__ = "comment_" + path.rsplit("/", 1)[1]
    router.route("POST", path, summary=summary, response=Comment, tags=("comments",))(handler)


_action("/api/v1/comments/{id}/pin", "Pin a comment", is_pinned=True)
_action("/api/v1/comments/{id}/unpin", "Unpin a comment", is_pinned=False)
_action("/api/v1/comments/{id}/resolve", "Resolve a comment", is_resolved=True)
_action("/api/v1/comments/{id}/unresolve", "Reopen a comment", is_resolved=False)


def _on_target(target: str) -> None:
    async def handler(request: web.Request, principal: Principal) -> list[Comment]:
        rows = await asyncio.to_thread(store(request).search, principal.username, target_type=target,
                                       target_id=request.match_info["target_id"])
        return [Comment(**r) for r in rows]

    handler.__name__ = f"comments_on_{target}"
    router.route("GET", f"/api/v1/{target}s/{{target_id}}/comments", summary=f"Comments on one {target}",
                 response=list[Comment], tags=("comments",))(handler)


for _target in ("source", "image", "observation", "job", "ms"):
    _on_target(_target)
