"""The dashboard's login flow (spec Appendix A.1): login, logout, refresh, me, status."""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from contimg_console.api.auth import SESSION_COOKIE, credentials
from contimg_console.api.common import Ok
from contimg_console.api.errors import ApiError, error_body
from contimg_console.api.login_limit import LoginLimiter
from contimg_console.api.routing import Router
from engine.auth import AuthError, Principal
from engine.db import models as m

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime

router = Router()


def _limiter(request: web.Request) -> LoginLimiter:
    """One limiter per application (per server), sized from ``[api]`` settings."""
    limiter = _LIMITERS.get(request.app)
    if limiter is None:
        api = _rt(request).settings.api
        limiter = _LIMITERS[request.app] = LoginLimiter(api.login_failures_per_user, api.login_failures_per_address,
                                                        api.login_window_s)
    return limiter


_LIMITERS: weakref.WeakKeyDictionary[web.Application, LoginLimiter] = weakref.WeakKeyDictionary()


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    remember_me: bool = False


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutBody(BaseModel):
    refresh_token: str | None = None


class UserOut(BaseModel):
    id: str
    username: str
    email: str
    role: Literal["viewer", "operator", "admin"]
    full_name: str | None = None
    created_at: datetime | None = None
    last_login: datetime | None = None


class Tokens(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class LoginResponse(BaseModel):
    user: UserOut
    tokens: Tokens


class AuthStatus(BaseModel):
    auth_enabled: bool
    auth_required: bool



def _rt(request: web.Request) -> Runtime:
    return request.app["runtime"]


def _user_out(runtime: Runtime, username: str) -> UserOut:
    with runtime.db.session() as s:
        u = s.scalar(select(m.User).where(m.User.username == username))
        if u is None:
            raise ApiError(401, "unknown user", code="UNAUTHORIZED")
        return UserOut(id=str(u.id), username=u.username, email=u.email or "", role=u.role,  # type: ignore[arg-type]
                       created_at=u.created_at, last_login=u.last_login_at)


def _issue(runtime: Runtime, principal: Principal, remember: bool) -> Tokens:
    api = runtime.settings.api
    access = runtime.accounts.create_token(principal.username, "dashboard session", principal.role, kind="access",
                                           ttl_s=api.access_token_ttl_s)
    refresh = runtime.accounts.create_token(principal.username, "dashboard refresh", principal.role,
                                            kind="refresh",
                                            ttl_s=api.refresh_token_ttl_s * (4 if remember else 1))
    return Tokens(access_token=access, refresh_token=refresh, expires_in=api.access_token_ttl_s)


@router.route("POST", "/api/v1/auth/login", summary="Log in with username and password", body=LoginBody,
              response=LoginResponse, role="public", tags=("auth",))
async def login(request: web.Request, body: LoginBody) -> web.Response:
    runtime = _rt(request)
    limiter = _limiter(request)
    address = request.remote or "unknown"
    refused = limiter.retry_after(body.username, address)
    if refused is not None:
        what, wait = refused
        message = (f"too many failed logins {'for this user' if what == 'user' else 'from this address'}; "
                   f"try again in {wait} s")
        return web.json_response(error_body(429, message, code="TOO_MANY_REQUESTS",
                                            action=f"wait {wait} s before logging in again"),
                                 status=429, headers={"Retry-After": str(wait)})

    def work() -> LoginResponse:
        try:
            principal = runtime.accounts.authenticate(body.username, body.password)
        except AuthError as exc:
            raise ApiError(401, str(exc), code="UNAUTHORIZED") from None
        return LoginResponse(user=_user_out(runtime, principal.username),
                             tokens=_issue(runtime, principal, body.remember_me))

    try:
        result = await asyncio.to_thread(work)
    except ApiError:
        limiter.failed(body.username, address)
        raise
    limiter.succeeded(body.username)
    # The dashboard's cleanup, pipeline-control and download calls send cookies, not the bearer token.
    response = web.json_response(result.model_dump(mode="json"))
    response.set_cookie(SESSION_COOKIE, result.tokens.access_token, max_age=runtime.settings.api.access_token_ttl_s,
                        httponly=True, samesite="Strict", path="/")
    return response


@router.route("POST", "/api/v1/auth/refresh", summary="Exchange a refresh token for a new access token",
              body=RefreshBody, response=Tokens, role="public", tags=("auth",))
async def refresh(request: web.Request, body: RefreshBody) -> Tokens:
    runtime = _rt(request)

    def work() -> Tokens:
        principal = runtime.accounts.resolve(body.refresh_token, kinds=("refresh",))
        if principal is None:
            raise ApiError(401, "invalid or expired refresh token", code="UNAUTHORIZED")
        runtime.accounts.revoke(body.refresh_token)  # rotate
        return _issue(runtime, principal, False)

    return await asyncio.to_thread(work)


@router.route("POST", "/api/v1/auth/logout", summary="Log out (revokes the session's tokens)", body=LogoutBody,
              response=Ok, role="public", tags=("auth",))
async def logout(request: web.Request, body: LogoutBody) -> web.Response:
    runtime = _rt(request)
    secrets = [t for t in (body.refresh_token, credentials(request)) if t]

    def work() -> None:
        for secret in secrets:
            runtime.accounts.revoke(secret)

    await asyncio.to_thread(work)
    response = web.json_response(Ok().model_dump())
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@router.route("GET", "/api/v1/auth/me", summary="The calling user", response=UserOut, role="viewer",
              tags=("auth",))
async def me(request: web.Request, principal: Principal) -> UserOut:
    if principal.user_id is None:
        raise ApiError(401, "not logged in (anonymous read access has no user)", code="UNAUTHORIZED")
    return await asyncio.to_thread(_user_out, _rt(request), principal.username)


@router.route("GET", "/api/v1/auth/status", summary="Whether authentication is enabled and required",
              response=AuthStatus, role="public", tags=("auth",))
async def auth_status(request: web.Request) -> AuthStatus:
    # Writes always need a token; reads may be anonymous (see api.anonymous_reads).
    return AuthStatus(auth_enabled=True, auth_required=True)
