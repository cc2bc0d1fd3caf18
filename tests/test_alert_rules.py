"""The shipped Prometheus rules are the catalogue's (engine/alerts/catalog.py), pass promtool's checks,
and each alert fires on the data it is about and stays quiet otherwise (``promtool test rules``);
a real ``/metrics`` body passes ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from http_helpers import call

from engine.alerts.catalog import BUILTIN, prometheus_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "packaging" / "prometheus" / "contimg-rules.yml"
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian 'prometheus') not installed")

H = 'contimg_http_request_duration_seconds_bucket{method="GET",route="/api/v1/jobs",status="200",le="%s"}'
# alert -> (interval, eval_time, labels of the firing alert, series that fire it, series that do not)
CASES: dict[str, tuple[str, str, dict[str, str], dict[str, str], dict[str, str]]] = {
    "StaleCalibration": ("5m", "25h", {}, {"calibration_last_valid_timestamp": "0x320"},
                         {"calibration_last_valid_timestamp": "0+300x320"}),
    "ConversionBacklog": ("1m", "20m", {}, {'contimg_jobs{type="convert",state="queued"}': "150x30"},
                          {'contimg_jobs{type="convert",state="queued"}': "50x30",
                           'contimg_jobs{type="image",state="queued"}': "500x30"}),
    "ImagingFailureRate": ("1m", "15m", {"type": "image"}, {'contimg_job_failure_ratio_1h{type="image"}': "0.25x30"},
                           {'contimg_job_failure_ratio_1h{type="image"}': "0.05x30",
                            'contimg_job_failure_ratio_1h{type="convert"}': "0.5x30"}),
    "DiskAlmostFull": ("1m", "15m", {}, {"contimg_disk_usage_ratio": "0.9x30"}, {"contimg_disk_usage_ratio": "0.5x30"}),
    "ApiSlow": ("1m", "20m", {}, {H % "1": "0x30", H % "2.5": "0x30", H % "5": "0+10x30", H % "+Inf": "0+10x30"},
                {H % "1": "0+10x30", H % "2.5": "0+10x30", H % "5": "0+10x30", H % "+Inf": "0+10x30"}),
    "BackupStale": ("5m", "3h", {}, {'contimg_backup_last_success_timestamp{type="database"}': "0x40"},
                    {'contimg_backup_last_success_timestamp{type="database"}': "0+300x40"}),
    "ProcessingStuck": ("1m", "10m", {}, {"contimg_processing_stalled_seconds": "4000x30"},
                        {"contimg_processing_stalled_seconds": "0x30"}),
    "EngineDown": ("1m", "10m", {}, {"contimg_engine_running": "0x30"}, {"contimg_engine_running": "1x30"}),
}


def test_the_shipped_rules_file_is_generated_from_the_catalogue() -> None:
    assert RULES.read_text() == prometheus_rules(), (
        "packaging/prometheus/contimg-rules.yml differs from engine/alerts/catalog.py; regenerate it with "
        "`python -m engine.alerts.catalog > packaging/prometheus/contimg-rules.yml`")


def test_the_roadmap_alerts_are_all_in_the_catalogue_and_in_the_evaluator() -> None:
    names = {a.name for a in BUILTIN}
    assert {"StaleCalibration", "ConversionBacklog", "ImagingFailureRate", "DiskAlmostFull", "ApiSlow",
            "BackupStale", "ProcessingStuck"} <= names
    assert set(CASES) == names  # a promtool case for every alert
    from engine.alerting import METRICS

    for a in BUILTIN:
        assert a.metric is None or a.metric in METRICS, a.name
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for a in BUILTIN:  # each alert's annotation points at a runbook section that exists
        assert f"### {a.name}" in runbook, a.name


@promtool
def test_promtool_check_rules() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(BUILTIN)} rules found" in out.stdout


def _seconds(interval: str) -> int:
    return int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600}[interval[-1]]


def _tests_file(tmp_path: Path) -> Path:
    by_name = {a.name: a for a in BUILTIN}
    tests = []
    for name, (interval, at, labels, fire, quiet) in CASES.items():
        a = by_name[name]
        expected = [{"exp_labels": {**labels, "severity": a.severity},
                     "exp_annotations": {"summary": a.summary, "description": a.description,
                                         "runbook": a.runbook_anchor}}]
        for series, exp in ((fire, expected), (quiet, [])):
            tests.append({"name": f"{name} {'fires' if exp else 'stays quiet'}", "interval": interval,
                          "input_series": [{"series": k, "values": v} for k, v in series.items()]
                          # every other alert's own metric present and healthy, so only this one can fire
                          + [{"series": "contimg_engine_running", "values": "1x400"}] * (name != "EngineDown")
                          + [{"series": 'contimg_backup_last_success_timestamp{type="database"}',
                              "values": f"0+{_seconds(interval)}x400"}] * (name != "BackupStale"),
                          "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": exp}]})
    tests.append({"name": "BackupStale fires when no database backup is exported at all", "interval": "1m",
                  "input_series": [{"series": "contimg_engine_running", "values": "1x30"}],
                  "alert_rule_test": [{"eval_time": "15m", "alertname": "BackupStale", "exp_alerts": [
                      {"exp_labels": {"type": "database", "severity": "warning"},
                       "exp_annotations": {"summary": by_name["BackupStale"].summary,
                                           "description": by_name["BackupStale"].description,
                                           "runbook": by_name["BackupStale"].runbook_anchor}}]}]})
    path = tmp_path / "contimg-rules.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return path


@promtool
def test_promtool_test_rules_a_firing_and_a_quiet_case_per_alert(tmp_path: Path) -> None:
    path = _tests_file(tmp_path)
    out = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


@promtool
def test_promtool_test_rules_catches_a_wrong_expectation(tmp_path: Path) -> None:
    path = _tests_file(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["tests"][0]["alert_rule_test"][0]["exp_alerts"] = []  # claim StaleCalibration stays quiet
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode != 0 and "StaleCalibration" in out.stdout + out.stderr


@promtool
async def test_promtool_check_metrics_on_a_real_metrics_body(runtime) -> None:
    await call(runtime, "GET", "/api/v1/jobs")  # one observed request in the latency histogram
    status, body = await call(runtime, "GET", "/metrics")
    assert status == 200 and "contimg_job_failure_ratio_1h" in body and "contimg_processing_stalled_seconds" in body
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
