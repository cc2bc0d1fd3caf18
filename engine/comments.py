"""Comments on data products: threads, pins, resolution, mentions — owned by real users."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from engine.db import Database
from engine.db import models as m

TARGETS = ("source", "image", "observation", "job", "ms")
_MENTION = re.compile(r"@([A-Za-z0-9_.-]{1,64})")


def _out(c: m.Comment, user: str, replies: int) -> dict[str, Any]:
    return {"id": c.id, "target_type": c.target_type, "target_id": c.target_id,
            "user_id": "me" if c.author == user else c.author, "username": c.author, "content": c.body,
            "is_pinned": c.pinned, "is_resolved": c.resolved, "parent_id": c.parent_id, "reply_count": replies,
            "created_at": c.created_at, "updated_at": c.updated_at, "mentions": list(c.mentions or [])}


class Comments:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _replies(self, s: Any, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = s.execute(select(m.Comment.parent_id, func.count()).where(m.Comment.parent_id.in_(ids))
                         .group_by(m.Comment.parent_id))
        return {pid: n for pid, n in rows}

    def search(self, user: str, *, target_type: str | None = None, target_id: str | None = None,
               user_id: str | None = None, search: str | None = None, is_pinned: bool | None = None,
               is_resolved: bool | None = None, parent_id: str | None = None, sort_by: str = "created_at",
               sort_order: str = "desc", limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(m.Comment)
            if target_type:
                q = q.where(m.Comment.target_type == target_type)
            if target_id:
                q = q.where(m.Comment.target_id == target_id)
            if user_id:
                q = q.where(m.Comment.author == (user if user_id == "me" else user_id))
            if search:
                q = q.where(func.lower(m.Comment.body).contains(search.lower(), autoescape=True))
            if is_pinned is not None:
                q = q.where(m.Comment.pinned.is_(is_pinned))
            if is_resolved is not None:
                q = q.where(m.Comment.resolved.is_(is_resolved))
            if parent_id:
                q = q.where(m.Comment.parent_id == parent_id)
            col = getattr(m.Comment, sort_by)
            q = q.order_by(col.desc() if sort_order == "desc" else col.asc()).limit(limit).offset(offset)
            rows = list(s.scalars(q))
            counts = self._replies(s, [c.id for c in rows])
            return [_out(c, user, counts.get(c.id, 0)) for c in rows]

    def get(self, comment_id: str, user: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            c = s.get(m.Comment, comment_id)
            return _out(c, user, self._replies(s, [c.id]).get(c.id, 0)) if c else None

    def thread(self, comment_id: str, user: str) -> dict[str, Any] | None:
        root = self.get(comment_id, user)
        if root is None:
            return None
        return {"comment": root, "replies": self.search(user, parent_id=comment_id, sort_order="asc")}

    def create(self, user: str, target_type: str, target_id: str, content: str,
               parent_id: str | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            if parent_id:
                parent = s.get(m.Comment, parent_id)
                if parent is None:
                    raise KeyError(parent_id)
                target_type, target_id = parent.target_type, parent.target_id
            recent = s.scalar(select(m.Comment).where(
                m.Comment.author == user, m.Comment.body == content, m.Comment.target_id == target_id,
                m.Comment.parent_id.is_(None) if parent_id is None else m.Comment.parent_id == parent_id,
                m.Comment.created_at >= datetime.now(UTC) - timedelta(seconds=60)))
            if recent is not None:  # a retried POST is the same comment
                return _out(recent, user, self._replies(s, [recent.id]).get(recent.id, 0))
            c = m.Comment(target_type=target_type, target_id=target_id, parent_id=parent_id, author=user,
                          body=content, mentions=sorted(set(_MENTION.findall(content))))
            s.add(c)
            s.flush()
            return _out(c, user, 0)

    def update(self, comment_id: str, user: str, *, content: str | None = None, is_pinned: bool | None = None,
               is_resolved: bool | None = None) -> dict[str, Any] | None:
        with self.db.session() as s:
            c = s.get(m.Comment, comment_id)
            if c is None:
                return None
            if content is not None:
                if c.author != user:
                    raise PermissionError("only the author may edit a comment")
                c.body, c.edited, c.mentions = content, True, sorted(set(_MENTION.findall(content)))
            if is_pinned is not None:
                c.pinned = is_pinned
            if is_resolved is not None and is_resolved != c.resolved:
                c.resolved = is_resolved
                c.resolved_by, c.resolved_at = (user, datetime.now(UTC)) if is_resolved else (None, None)
            c.updated_at = datetime.now(UTC)
            s.flush()
            return _out(c, user, self._replies(s, [c.id]).get(c.id, 0))

    def delete(self, comment_id: str, user: str, may_moderate: bool) -> bool:
        with self.db.session() as s:
            c = s.get(m.Comment, comment_id)
            if c is None:
                return False
            if c.author != user and not may_moderate:
                raise PermissionError("only the author (or an admin) may delete a comment")
            s.delete(c)
            return True

    def stats(self, user: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        with self.db.session() as s:
            rows = list(s.execute(select(m.Comment.author, m.Comment.target_type, m.Comment.pinned, m.Comment.resolved,
                                         m.Comment.parent_id, m.Comment.created_at)))
        authors = Counter(r.author for r in rows)
        dist = {t: 0 for t in TARGETS}
        for r in rows:
            dist[r.target_type] = dist.get(r.target_type, 0) + 1
        return {"total_comments": len(rows), "pinned_comments": sum(r.pinned for r in rows),
                "resolved_comments": sum(r.resolved for r in rows),
                "active_threads": sum(1 for r in rows if r.parent_id is None and not r.resolved),
                "comments_today": sum(r.created_at >= now - timedelta(days=1) for r in rows),
                "comments_this_week": sum(r.created_at >= now - timedelta(days=7) for r in rows),
                "top_commenters": [{"user_id": "me" if a == user else a, "username": a, "comment_count": n}
                                   for a, n in authors.most_common(10)],
                "target_distribution": dist}

    def users(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [{"user_id": u.username, "username": u.username, "email": u.email}
                    for u in s.scalars(select(m.User).where(m.User.disabled.is_(False)).order_by(m.User.username))]


