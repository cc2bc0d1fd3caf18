"""Ad-hoc Prometheus queries (spec MH-02), answered by the site's Prometheus server.

This service exposes its metrics at ``/metrics``; history lives in the Prometheus that
scrapes it (``packaging/prometheus``). With ``api.prometheus_url`` set, ``/metrics/query``
forwards the PromQL to that server's HTTP API (instant query, or a range query when
``start``/``end`` are given) and reshapes the answer; without it the route answers 503
naming the setting.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from contimg_console.api.common import rt
from contimg_console.api.errors import ApiError
from contimg_console.api.routing import Router

router = Router()


class PromQuery(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    start: float | None = Field(None, ge=0)
    end: float | None = Field(None, ge=0)
    step: float | None = Field(None, gt=0, le=86400)


class PromPoint(BaseModel):
    timestamp: float
    value: float | None


class PromSeries(BaseModel):
    metric: str
    labels: dict[str, str]
    values: list[PromPoint]


class PrometheusQueryResult(BaseModel):
    query: str
    resultType: Literal["vector", "matrix", "scalar", "string"]
    data: list[PromSeries]


def _num(v: str) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


def reshape(query: str, data: dict[str, Any]) -> PrometheusQueryResult:
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        ts, value = result
        point = PromPoint(timestamp=float(ts), value=_num(value) if kind == "scalar" else None)
        return PrometheusQueryResult(query=query, resultType=kind,
                                     data=[PromSeries(metric=kind if kind == "scalar" else str(value), labels={},
                                                      values=[point])])
    series = []
    for item in result:
        labels = dict(item.get("metric") or {})
        name = labels.pop("__name__", "") or query
        raw = item.get("values") or ([item["value"]] if "value" in item else [])
        series.append(PromSeries(metric=name, labels=labels,
                                 values=[PromPoint(timestamp=float(t), value=_num(v)) for t, v in raw]))
    return PrometheusQueryResult(query=query, resultType=kind, data=series)


@router.route("GET", "/api/v1/metrics/query", summary="Ad-hoc PromQL query, answered by the site's Prometheus",
              query=PromQuery, response=PrometheusQueryResult, tags=("metrics",),
              responses={503: "No Prometheus server configured or reachable", 502: "Prometheus failed"})
async def prom_query(request: web.Request, query: PromQuery) -> PrometheusQueryResult:
    base = rt(request).settings.api.prometheus_url
    if not base:
        raise ApiError(503, "no Prometheus server is configured (set api.prometheus_url to the server that scrapes "
                            "this host's /metrics)", code="SERVICE_UNAVAILABLE")
    if (query.start is None) != (query.end is None):
        raise ApiError(422, "give both start and end for a range query, or neither", code="VALIDATION_FAILED")
    if query.start is not None and query.end is not None:
        if query.end < query.start:
            raise ApiError(422, "end is before start", code="VALIDATION_FAILED")
        step = query.step or max(1.0, (query.end - query.start) / 250)
        path, params = "/api/v1/query_range", {"query": query.query, "start": query.start, "end": query.end,
                                               "step": step}
    else:
        path, params = "/api/v1/query", {"query": query.query, "time": time.time()}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8)) as http:
            async with http.get(base.rstrip("/") + path, params={k: str(v) for k, v in params.items()}) as resp:
                body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ApiError(503, f"Prometheus at {base} is not reachable: {exc}", code="SERVICE_UNAVAILABLE") from None
    if body.get("status") != "success":
        status = 422 if body.get("errorType") in ("bad_data", "execution") else 502
        raise ApiError(status, f"Prometheus: {body.get('error') or body}", code="PROMQL_ERROR")
    return reshape(query.query, body["data"])
