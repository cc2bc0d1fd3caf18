"""Prometheus exposition: pipeline state read from the database at scrape time, plus HTTP latency.

Metric names match the alert rules in ``packaging/prometheus/contimg-rules.yml``
(e.g. ``calibration_last_valid_timestamp`` for the stale-calibration alert).
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from engine.db import models as m
from engine.alerting import pipeline_health_samples
from engine.monitoring import last_valid_calibration

if TYPE_CHECKING:
    from contimg_console.runtime import Runtime

HTTP_LATENCY = Histogram("contimg_http_request_duration_seconds", "REST request latency",
                         ["method", "route", "status"], registry=None,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class PipelineCollector:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Any:
        db = self.runtime.db
        with db.session() as s:
            groups = list(s.execute(select(m.ObservationGroup.state, func.count()).group_by(m.ObservationGroup.state)))
            jobs = list(s.execute(select(m.Job.type, m.Job.state, func.count()).group_by(m.Job.type, m.Job.state)))
            images = s.scalar(select(func.count()).select_from(m.Image)) or 0
            sources = s.scalar(select(func.count()).select_from(m.Source)) or 0
            unacked = s.scalar(select(func.count()).select_from(m.Alert).where(m.Alert.acknowledged.is_(False))) or 0
        g = GaugeMetricFamily("contimg_groups", "Observation groups by processing state", labels=["state"])
        for state, n in groups:
            g.add_metric([state], n)
        yield g
        j = GaugeMetricFamily("contimg_jobs", "Jobs by type and state", labels=["type", "state"])
        for jtype, state, n in jobs:
            j.add_metric([jtype, state], n)
        yield j
        depth = sum(n for _, state, n in jobs if state == "queued")
        yield GaugeMetricFamily("contimg_queue_depth", "Jobs waiting to run", value=depth)
        last = last_valid_calibration(db)
        yield GaugeMetricFamily("calibration_last_valid_timestamp",
                                "Unix time of the newest active calibration set (0 if none)",
                                value=last.timestamp() if last else 0)
        from engine.backups.records import backup_metrics  # BackupStale (packaging/prometheus) reads these

        per_kind = backup_metrics(db)
        last_ok = GaugeMetricFamily("contimg_backup_last_success_timestamp",
                                    "Unix time the newest completed backup of each type finished (0 if none)",
                                    labels=["type"])
        size = GaugeMetricFamily("contimg_backup_size_bytes", "Size of the newest completed backup of each type",
                                 labels=["type"])
        took = GaugeMetricFamily("contimg_backup_duration_seconds",
                                 "How long the newest completed backup of each type ran", labels=["type"])
        for kind, row in sorted(per_kind.items()):
            last_ok.add_metric([kind], row["last_success"])
            if "size_bytes" in row:
                size.add_metric([kind], row["size_bytes"])
                took.add_metric([kind], row["duration_seconds"])
        yield last_ok
        yield size
        yield took
        yield GaugeMetricFamily("contimg_images", "Images in the database", value=images)
        yield GaugeMetricFamily("contimg_sources", "Sources in the database", value=sources)
        yield GaugeMetricFamily("contimg_alerts_unacknowledged", "Unacknowledged alerts", value=unacked)
        du = shutil.disk_usage(self.runtime.settings.data_dir)
        yield GaugeMetricFamily("contimg_disk_usage_ratio", "Used fraction of the data dir's partition",
                                value=du.used / du.total)
        eng = self.runtime.engine.status()
        yield GaugeMetricFamily("contimg_engine_running", "1 if the processing engine runs", value=int(eng["running"]))
        yield GaugeMetricFamily("contimg_engine_paused", "1 if the engine is paused", value=int(eng["paused"]))
        yield GaugeMetricFamily("contimg_engine_active_jobs", "Jobs running now", value=len(eng["active_jobs"]))
        health = pipeline_health_samples(db)  # the numbers the built-in evaluator alerts on, too
        ratio = GaugeMetricFamily("contimg_job_failure_ratio_1h", "Failed / finished jobs of the last hour",
                                  labels=["type"])
        for name, labels, value in health:
            if name == "contimg_job_failure_ratio_1h":
                ratio.add_metric([labels["type"]], value)
        yield ratio
        stalled = next(v for n, _, v in health if n == "contimg_processing_stalled_seconds")
        yield GaugeMetricFamily("contimg_processing_stalled_seconds",
                                "Seconds jobs have waited with none finishing (0 if none wait)", value=stalled)


class LatencyWindow:
    """REST p95 over the last ``window_s`` from the latency histogram, for the built-in ApiSlow alert.

    The histogram counts since start; the evaluator calls this every minute, so the difference to the
    oldest snapshot still inside the window is what Prometheus's ``rate(...[5m])`` would see, and the
    quantile is interpolated inside its bucket the way ``histogram_quantile`` does."""

    def __init__(self, window_s: float = 300.0) -> None:
        self.window_s = window_s
        self._snaps: list[tuple[float, dict[float, float]]] = []

    @staticmethod
    def _buckets() -> dict[float, float]:
        out: dict[float, float] = {}
        for metric in HTTP_LATENCY.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    out[le] = out.get(le, 0.0) + sample.value
        return out

    def samples(self, now: float | None = None) -> list[tuple[str, dict[str, str], float]]:
        now = time.monotonic() if now is None else now
        current = self._buckets()
        self._snaps = [(t, b) for t, b in self._snaps if t >= now - self.window_s]
        base = self._snaps[0][1] if self._snaps else {}
        self._snaps.append((now, current))
        delta = sorted((le, n - base.get(le, 0.0)) for le, n in current.items())
        p95 = quantile(0.95, delta)
        return [] if p95 is None else [("contimg_http_p95_seconds", {}, p95)]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile`` over cumulative (upper bound, count) pairs ending with +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le  # Prometheus answers the highest finite bound
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-12)
        prev_le, prev_n = le, n
    return prev_le


_registries: dict[int, CollectorRegistry] = {}


def registry_for(runtime: Runtime) -> CollectorRegistry:
    reg = _registries.get(id(runtime))
    if reg is None:
        reg = CollectorRegistry()
        reg.register(PipelineCollector(runtime))
        reg.register(HTTP_LATENCY)
        _registries.clear()  # one runtime per process in production; tests make many
        _registries[id(runtime)] = reg
    return reg


def render(runtime: Runtime) -> tuple[bytes, str]:
    return generate_latest(registry_for(runtime)), CONTENT_TYPE_LATEST
