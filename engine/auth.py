"""Users, passwords and API tokens.

Passwords are stored as scrypt hashes with a per-user salt; tokens are random
256-bit strings of which only a SHA-256 digest is stored (a token is as strong
as a key, so a slow hash would add nothing but latency on every request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from engine.db import Database
from engine.db import models as m
from engine.errors import ContimgError

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {"public": -1, "viewer": 0, "operator": 1, "admin": 2}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class AuthError(ContimgError):
    """Bad credentials, unknown user or invalid role."""


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    user_id: int | None = None
    via: str = "token"  # token | session | anonymous

    def allows(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_b64, digest_b64 = stored.split("$", 2)
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_user(self, username: str, password: str | None, role: str) -> int:
        _check_role(role)
        if not username or len(username) > 64:
            raise AuthError("username must be 1–64 characters")
        with self.db.session() as s:
            if s.scalar(select(m.User).where(m.User.username == username)):
                raise AuthError(f"user {username!r} already exists")
            user = m.User(username=username, role=role, password_hash=hash_password(password) if password else None)
            s.add(user)
            s.flush()
            return user.id

    def authenticate(self, username: str, password: str) -> Principal:
        with self.db.session() as s:
            user = s.scalar(select(m.User).where(m.User.username == username))
            if user is None or user.disabled or not verify_password(password, user.password_hash):
                raise AuthError("invalid username or password")
            user.last_login_at = datetime.now(UTC)
            return Principal(user.username, user.role, user.id, "session")

    def create_token(self, username: str, name: str, role: str | None = None, kind: str = "api",
                     ttl_s: float | None = None) -> str:
        """Create a token for an existing user; returns the secret (shown once)."""
        with self.db.session() as s:
            user = s.scalar(select(m.User).where(m.User.username == username))
            if user is None:
                raise AuthError(f"no user {username!r}")
            role = role or user.role
            _check_role(role)
            if ROLE_RANK[role] > ROLE_RANK[user.role]:
                raise AuthError(f"a token cannot exceed its user's role ({user.role})")
            secret = ("ci_" if kind == "api" else "cs_") + secrets.token_urlsafe(32)
            expires = datetime.now(UTC) + timedelta(seconds=ttl_s) if ttl_s else None
            s.add(m.ApiToken(name=name, user_id=user.id, kind=kind, token_hash=token_digest(secret),
                             prefix=secret[:8], role=role, expires_at=expires))
            return secret

    def resolve(self, secret: str, kinds: tuple[str, ...] = ("api", "access")) -> Principal | None:
        now = datetime.now(UTC)
        with self.db.session() as s:
            row = s.execute(
                select(m.ApiToken, m.User).join(m.User).where(m.ApiToken.token_hash == token_digest(secret))
            ).first()
            if row is None:
                return None
            token, user = row
            if token.kind not in kinds or token.revoked_at or user.disabled:
                return None
            if token.expires_at and token.expires_at <= now:
                return None
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
                token.last_used_at = now
            return Principal(user.username, token.role, user.id, "token")

    def revoke(self, secret: str) -> bool:
        with self.db.session() as s:
            token = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == token_digest(secret)))
            if token is None or token.revoked_at:
                return False
            token.revoked_at = datetime.now(UTC)
            return True

    def list_users(self) -> list[dict[str, object]]:
        with self.db.session() as s:
            return [{"id": u.id, "username": u.username, "role": u.role, "disabled": u.disabled}
                    for u in s.scalars(select(m.User).order_by(m.User.username))]
