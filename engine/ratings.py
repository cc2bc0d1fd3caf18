"""QA ratings of sources and images by people, and the review queue.

One rating per user, target and category: submitting again replaces it (the
dashboard retries POSTs). Summaries are computed from the rows, never stored.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.db import Database
from engine.db import models as m

FLAGS = ("good", "uncertain", "bad", "needs_review")
CATEGORIES = ("overall", "flux", "morphology", "position", "calibration")


def _out(r: m.Rating, user: str) -> dict[str, Any]:
    return {"id": r.id, "target_type": r.target_type, "target_id": r.target_id,
            "user_id": "me" if r.username == user else r.username, "username": r.username, "category": r.category,
            "value": r.value, "flag": r.flag or "good", "comment": r.comment, "created_at": r.created_at,
            "updated_at": r.updated_at}


class Ratings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(self, user: str, target_type: str, target_id: str, category: str, value: int, flag: str,
               comment: str | None) -> dict[str, Any]:
        with self.db.session() as s:
            r = s.scalar(select(m.Rating).where(m.Rating.target_type == target_type, m.Rating.target_id == target_id,
                                                m.Rating.username == user, m.Rating.category == category))
            if r is None:
                r = m.Rating(target_type=target_type, target_id=target_id, username=user, category=category,
                             value=value, flag=flag, comment=comment)
                s.add(r)
            else:
                r.value, r.flag, r.comment, r.updated_at = value, flag, comment, datetime.now(UTC)
            s.flush()
            return _out(r, user)

    def update(self, rating_id: str, user: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        with self.db.session() as s:
            r = s.get(m.Rating, rating_id)
            if r is None:
                return None
            if r.username != user:
                raise PermissionError("only the rater may change a rating")
            for key in ("value", "flag", "comment", "category"):
                if key in changes and changes[key] is not None:
                    setattr(r, key, changes[key])
            r.updated_at = datetime.now(UTC)
            return _out(r, user)

    def delete(self, rating_id: str, user: str, may_moderate: bool) -> bool:
        with self.db.session() as s:
            r = s.get(m.Rating, rating_id)
            if r is None:
                return False
            if r.username != user and not may_moderate:
                raise PermissionError("only the rater (or an admin) may delete a rating")
            s.delete(r)
            return True

    def for_target(self, user: str, target_type: str, target_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(m.Rating).where(m.Rating.target_type == target_type, m.Rating.target_id == target_id)
                             .order_by(m.Rating.updated_at.desc()))
            return [_out(r, user) for r in rows]

    def by_user(self, user: str, whose: str) -> list[dict[str, Any]]:
        who = user if whose == "me" else whose
        with self.db.session() as s:
            rows = s.scalars(select(m.Rating).where(m.Rating.username == who).order_by(m.Rating.updated_at.desc()))
            return [_out(r, user) for r in rows]

    def summary(self, user: str, target_type: str, target_id: str, category: str) -> dict[str, Any]:
        rows = [r for r in self.for_target(user, target_type, target_id) if r["category"] == category]
        flags = Counter(r["flag"] for r in rows)
        return {"target_type": target_type, "target_id": target_id, "category": category,
                "average_rating": sum(r["value"] for r in rows) / len(rows) if rows else 0.0,
                "rating_count": len(rows), "flag_distribution": {f: flags.get(f, 0) for f in FLAGS},
                "recent_ratings": rows[:10]}

    def complete_summary(self, user: str, target_type: str, target_id: str) -> dict[str, Any]:
        rows = self.for_target(user, target_type, target_id)
        cats = {}
        for c in CATEGORIES:
            vals = [r["value"] for r in rows if r["category"] == c]
            cats[c] = {"average": sum(vals) / len(vals) if vals else 0.0, "count": len(vals)}
        flags = Counter(r["flag"] for r in rows)
        primary = flags.most_common(1)[0][0] if flags else "needs_review"
        return {"target_type": target_type, "target_id": target_id,
                "overall_average": sum(r["value"] for r in rows) / len(rows) if rows else 0.0,
                "total_ratings": len(rows), "categories": cats, "primary_flag": primary,
                "needs_attention": bool(flags.get("bad") or flags.get("needs_review")) or not rows}

    def stats(self, user: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        with self.db.session() as s:
            rows = list(s.scalars(select(m.Rating)))
        raters = Counter(r.username for r in rows)
        flags = Counter(r.flag or "good" for r in rows)
        return {"total_ratings": len(rows),
                "sources_rated": len({r.target_id for r in rows if r.target_type == "source"}),
                "images_rated": len({r.target_id for r in rows if r.target_type == "image"}),
                "average_rating": sum(r.value for r in rows) / len(rows) if rows else 0.0,
                "ratings_today": sum(r.updated_at >= now - timedelta(days=1) for r in rows),
                "ratings_this_week": sum(r.updated_at >= now - timedelta(days=7) for r in rows),
                "top_raters": [{"user_id": "me" if u == user else u, "username": u, "rating_count": n}
                               for u, n in raters.most_common(10)],
                "flag_distribution": {f: flags.get(f, 0) for f in FLAGS}}

    # ---- review queue ------------------------------------------------------------------
    def _name(self, s: Any, target_type: str, target_id: str) -> str:
        if target_type == "source":
            src = s.get(m.Source, target_id)
            return (src.name or src.id) if src else target_id
        img = s.get(m.Image, target_id)
        return Path(img.path).name if img else target_id

    def queue(self, priority: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(m.ReviewQueueItem).order_by(m.ReviewQueueItem.added_at)
            if priority:
                q = q.where(m.ReviewQueueItem.priority == priority)
            return [{"target_type": i.target_type, "target_id": i.target_id,
                     "name": self._name(s, i.target_type, i.target_id), "reason": i.reason or "",
                     "priority": i.priority, "created_at": i.added_at} for i in s.scalars(q)]

    def enqueue(self, user: str, target_type: str, target_id: str, priority: str, reason: str) -> dict[str, Any]:
        with self.db.session() as s:
            item = s.scalar(select(m.ReviewQueueItem).where(m.ReviewQueueItem.target_type == target_type,
                                                            m.ReviewQueueItem.target_id == target_id))
            if item is None:
                item = m.ReviewQueueItem(target_type=target_type, target_id=target_id, priority=priority,
                                         reason=reason, added_by=user)
                s.add(item)
            else:
                item.priority, item.reason = priority, reason
            s.flush()
            return {"target_type": target_type, "target_id": target_id, "name": self._name(s, target_type, target_id),
                    "reason": reason, "priority": priority, "created_at": item.added_at}

    def dequeue(self, target_type: str, target_id: str) -> bool:
        with self.db.session() as s:
            item = s.scalar(select(m.ReviewQueueItem).where(m.ReviewQueueItem.target_type == target_type,
                                                            m.ReviewQueueItem.target_id == target_id))
            if item is None:
                return False
            s.delete(item)
            return True
