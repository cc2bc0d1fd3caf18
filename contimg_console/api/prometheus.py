"""Prometheus exposition: pipeline state read from the database at scrape time, plus HTTP latency.

Metric names match the alert rules in ``packaging/prometheus/contimg-rules.yml``
(e.g. ``calibration_last_valid_timestamp`` for the stale-calibration alert).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from engine.db import models as m
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
