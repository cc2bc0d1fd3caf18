"""The built-in alerts, defined once: the console's own evaluator and Prometheus both use this table.

Each alert has one threshold, hold time, severity and text. ``metric``/``labels`` is what the
built-in evaluator compares (a sample from :func:`engine.alerting.sample_metrics`, or the REST
server's latency sample); ``promql`` is the same condition over ``/metrics`` with ``{threshold}``
filled in. ``packaging/prometheus/contimg-rules.yml`` is generated from this table
(``python -m engine.alerts.catalog > …``) and a test keeps the shipped file equal to it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class AlertDef:
    name: str
    summary: str
    severity: str
    threshold: float
    for_seconds: int
    promql: str
    metric: str | None  # None: Prometheus only (the built-in evaluator cannot watch its own process die)
    operator: str = ">"
    labels: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def policy_id(self) -> str:
        return "builtin-" + "".join("-" + c.lower() if c.isupper() else c for c in self.name).lstrip("-")

    @property
    def expr(self) -> str:
        return self.promql.format(threshold=f"{self.threshold:g}")

    @property
    def runbook_anchor(self) -> str:
        return "docs/runbook.md#" + self.name.lower()


def _dur(seconds: int) -> str:
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


BUILTIN: tuple[AlertDef, ...] = (
    AlertDef("StaleCalibration", "No valid calibration in 24+ hours", "critical", 86400, 1800,
             "time() - calibration_last_valid_timestamp > {threshold}", "calibration_age_seconds",
             description="Targets are imaged with an old solution or not at all; a calibrator transit "
                         "was missed or its solve failed QA."),
    AlertDef("ConversionBacklog", "More than 100 groups waiting for conversion", "warning", 100, 900,
             'sum(contimg_jobs{{type="convert", state="queued"}}) > {threshold}', "contimg_jobs",
             labels={"type": "convert", "state": "queued"},
             description="Conversion falls behind the correlator; the incoming disk fills next."),
    AlertDef("ImagingFailureRate", "More than 10% of imaging jobs failed in the last hour", "warning", 0.10, 600,
             'contimg_job_failure_ratio_1h{{type="image"}} > {threshold}', "contimg_job_failure_ratio_1h",
             labels={"type": "image"},
             description="Imaging jobs fail more often than bad data explains: look at their reasons."),
    AlertDef("DiskAlmostFull", "Data disk more than 85% full", "critical", 0.85, 600,
             "contimg_disk_usage_ratio > {threshold}", "contimg_disk_usage_ratio",
             description="At 100% conversions and backups fail; run retention or free space."),
    AlertDef("ApiSlow", "REST p95 latency above 2 s", "warning", 2, 600,
             "histogram_quantile(0.95, sum by (le) (rate(contimg_http_request_duration_seconds_bucket[5m])))"
             " > {threshold}", "contimg_http_p95_seconds",
             description="The dashboard and scripts wait; usually the database is busy or the host overloaded."),
    AlertDef("BackupStale", "No successful database backup in 2+ hours", "warning", 7200, 600,
             'time() - max(contimg_backup_last_success_timestamp{{type="database"}}) > {threshold}'
             ' or absent(contimg_backup_last_success_timestamp{{type="database"}})',
             "contimg_backup_age_seconds", labels={"type": "database"},
             description="Database backups are hourly; two missed runs mean a disk failure now loses hours."),
    AlertDef("ProcessingStuck", "Jobs are waiting but none finished for an hour", "critical", 3600, 300,
             "contimg_processing_stalled_seconds > {threshold}", "contimg_processing_stalled_seconds",
             description="The engine is paused, its workers hang, or every stage waits on a lock."),
    AlertDef("EngineDown", "The processing engine is not running", "critical", 0, 300,
             "contimg_engine_running == {threshold} or absent(contimg_engine_running)", None, operator="==",
             description="contimg serve is down or its engine did not start; Prometheus sees it from outside."),
)


def builtin_policies() -> list[dict[str, Any]]:
    """The alert policies the evaluator runs, one per catalogue entry it can watch from inside."""
    return [{"id": a.policy_id, "name": a.name, "description": a.summary + ". " + a.description,
             "severity": a.severity, "channels": ["webhook", "email"], "enabled": True,
             "rules": [{"metric": a.metric, "operator": a.operator, "threshold": a.threshold,
                        "labels": dict(a.labels), "for_seconds": a.for_seconds}]}
            for a in BUILTIN if a.metric is not None]


def prometheus_rules() -> str:
    groups = {"groups": [{"name": "contimg", "rules": [
        {"alert": a.name, "expr": a.expr, "for": _dur(a.for_seconds), "labels": {"severity": a.severity},
         "annotations": {"summary": a.summary, "description": a.description, "runbook": a.runbook_anchor}}
        for a in BUILTIN]}]}
    header = ("# GENERATED from engine/alerts/catalog.py (the one definition of contimg's alerts) by\n"
              "#   python -m engine.alerts.catalog > packaging/prometheus/contimg-rules.yml\n"
              "# Do not edit by hand: tests/test_alert_rules.py fails when this file and the catalogue differ.\n")
    return header + yaml.safe_dump(groups, sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(prometheus_rules())
