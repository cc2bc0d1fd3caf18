"""Alert policies and silences (spec §9), evaluated by engine.alerting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import Ok, rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router
from engine.alerting import AlertError, AlertPolicies, evaluate, sample_metrics
from engine.auth import Principal

router = Router()
Severity = Literal["info", "warning", "critical"]
Channel = Literal["email", "slack", "webhook"]


class Rule(BaseModel):
    metric: str = Field(min_length=1, max_length=128)
    labels: dict[str, str] | None = None
    operator: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    threshold: float = 1
    for_seconds: float | None = Field(None, ge=0, le=30 * 86400)


class PolicyInput(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=4000)
    severity: Severity = "warning"
    channels: list[Channel] = Field(default_factory=lambda: ["email"], min_length=1)
    enabled: bool = True
    rules: list[Rule] = Field(min_length=1, max_length=50)
    overrides: list[Rule] = Field(default_factory=list, max_length=50)
    repeat_interval_seconds: int | None = Field(None, ge=0, le=30 * 86400)


class Policy(PolicyInput):
    id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PolicyList(BaseModel):
    policies: list[Policy]
    total: int


class ListParams(BaseModel):
    severity: Severity | None = None
    enabled: bool | None = None
    search: str | None = Field(None, max_length=200)


class ToggleBody(BaseModel):
    enabled: bool


class DryRunBody(BaseModel):
    policy: PolicyInput


class SampleAlert(BaseModel):
    message: str
    severity: Severity
    labels: dict[str, str] | None = None


class DryRunAlert(BaseModel):
    policy_id: str
    policy_name: str
    would_fire: bool
    sample_alerts: list[SampleAlert]


class DryRun(BaseModel):
    results: list[DryRunAlert]
    evaluated_at: datetime


class Silence(BaseModel):
    id: str
    policy_id: str
    reason: str
    created_by: str | None = None
    starts_at: datetime
    ends_at: datetime
    created_at: datetime | None = None


class SilenceBody(BaseModel):
    reason: str = Field("Silenced from UI", max_length=1000)
    starts_at: datetime
    ends_at: datetime
    created_by: str | None = None


def store(request: web.Request) -> AlertPolicies:
    return AlertPolicies(rt(request).db)


def _input(body: PolicyInput) -> dict:
    data = body.model_dump()
    data["rules"] = [r.model_dump(exclude_none=True) for r in body.rules]
    data["overrides"] = [r.model_dump(exclude_none=True) for r in body.overrides]
    return data


async def _save(request: web.Request, body: PolicyInput, principal: Principal, policy_id: str | None) -> Policy:
    try:
        row = await asyncio.to_thread(store(request).save, _input(body), principal.username, policy_id)
    except AlertError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    if row is None:
        raise ApiError(404, f"no alert policy {policy_id!r}")
    return Policy(**row)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@router.route("GET", "/api/v1/alert-policies/silences", summary="All silences", response=list[Silence],
              tags=("alerts",))
async def all_silences(request: web.Request) -> list[Silence]:
    return [Silence(**x) for x in await asyncio.to_thread(store(request).silences)]


@router.route("POST", "/api/v1/alert-policies/dry-run", summary="Would this policy fire now?", body=DryRunBody,
              response=DryRun, role="operator", tags=("alerts",))
async def dry_run(request: web.Request, body: DryRunBody) -> DryRun:
    runtime = rt(request)
    data = _input(body.policy)
    try:
        from engine.alerting import validate_rules

        validate_rules(data["rules"])
    except AlertError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    samples = await asyncio.to_thread(sample_metrics, runtime.db, runtime.settings.data_dir)
    alerts = evaluate(data, samples)
    return DryRun(results=[DryRunAlert(policy_id="draft", policy_name=data["name"], would_fire=bool(alerts),
                                       sample_alerts=[SampleAlert(**a) for a in alerts[:20]])],
                  evaluated_at=datetime.now(UTC))


@router.route("GET", "/api/v1/alert-policies", summary="Alert policies", query=ListParams, response=PolicyList,
              tags=("alerts",))
async def list_policies(request: web.Request, query: ListParams) -> PolicyList:
    rows = await asyncio.to_thread(store(request).list, query.severity, query.enabled, query.search)
    return PolicyList(policies=[Policy(**r) for r in rows], total=len(rows))


@router.route("POST", "/api/v1/alert-policies", summary="Create an alert policy", body=PolicyInput, response=Policy,
              role="operator", tags=("alerts",))
async def create(request: web.Request, body: PolicyInput, principal: Principal) -> Policy:
    return await _save(request, body, principal, None)


@router.route("GET", "/api/v1/alert-policies/{id}", summary="One alert policy", response=Policy, tags=("alerts",))
async def get_one(request: web.Request) -> Policy:
    row = await asyncio.to_thread(store(request).get, request.match_info["id"])
    if row is None:
        raise ApiError(404, f"no alert policy {request.match_info['id']!r}")
    return Policy(**row)


@router.route("PUT", "/api/v1/alert-policies/{id}", summary="Replace an alert policy", body=PolicyInput,
              response=Policy, role="operator", tags=("alerts",))
async def replace(request: web.Request, body: PolicyInput, principal: Principal) -> Policy:
    return await _save(request, body, principal, request.match_info["id"])


@router.route("DELETE", "/api/v1/alert-policies/{id}", summary="Delete an alert policy", response=Ok,
              role="operator", tags=("alerts",))
async def delete(request: web.Request) -> Ok:
    if not await asyncio.to_thread(store(request).delete, request.match_info["id"]):
        raise ApiError(404, f"no alert policy {request.match_info['id']!r}")
    return Ok()


@router.route("POST", "/api/v1/alert-policies/{id}/toggle", summary="Enable or disable a policy", body=ToggleBody,
              response=Policy, role="operator", tags=("alerts",))
async def toggle(request: web.Request, body: ToggleBody) -> Policy:
    row = await asyncio.to_thread(store(request).toggle, request.match_info["id"], body.enabled)
    if row is None:
        raise ApiError(404, f"no alert policy {request.match_info['id']!r}")
    return Policy(**row)


@router.route("GET", "/api/v1/alert-policies/{id}/silences", summary="Silences of a policy", response=list[Silence],
              tags=("alerts",))
async def silences(request: web.Request) -> list[Silence]:
    return [Silence(**x) for x in await asyncio.to_thread(store(request).silences, request.match_info["id"])]


@router.route("POST", "/api/v1/alert-policies/{id}/silences", summary="Silence a policy for a while",
              body=SilenceBody, response=Silence, role="operator", tags=("alerts",))
async def silence(request: web.Request, body: SilenceBody, principal: Principal) -> Silence:
    try:
        row = await asyncio.to_thread(store(request).silence, request.match_info["id"], body.reason,
                                      _aware(body.starts_at), _aware(body.ends_at), principal.username)
    except AlertError as exc:
        raise ApiError(422, str(exc), code="VALIDATION_FAILED") from None
    if row is None:
        raise ApiError(404, f"no alert policy {request.match_info['id']!r}")
    return Silence(**row)
