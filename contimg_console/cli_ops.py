"""``contimg engine|status|retry|reprocess``: the operator's view of the queue, whether or not a server runs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from contimg_console.cli_common import EXIT_RUNTIME, migrated_database
from engine.errors import ContimgError
from engine.settings import Settings


def cmd_engine(settings: Settings, args: argparse.Namespace) -> int:
    from engine.processing.pause import write_paused

    db = migrated_database(settings)
    write_paused(db, args.action == "pause")
    print(f"engine {'paused' if args.action == 'pause' else 'resumed'} ({settings.database_label})")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from engine.processing.status import pipeline_status

    db = migrated_database(settings)
    report = pipeline_status(db)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"engine: {'PAUSED' if report['paused'] else 'not paused'}")
    print("groups by state:" + ("" if report["groups"] else " none"))
    for state, n in report["groups"].items():
        print(f"  {state:<24} {n}")
    print("jobs by state:" + ("" if report["jobs"] else " none"))
    for state, n in report["jobs"].items():
        print(f"  {state:<24} {n}")
    print(f"leases held: {len(report['leases'])}")
    for lease in report["leases"]:
        print(f"  {lease['id']} {lease['type']} group {lease['group_id']} by {lease['claimed_by']} "
              f"until {lease['lease_until']}")
    print(f"failed jobs: {len(report['failed'])}")
    for job in report["failed"]:
        kind = f" [{job['error_kind']}]" if job["error_kind"] else ""
        print(f"  {job['id']} {job['type']} group {job['group_id']} after {job['attempts']} attempts"
              f"{kind}: {job['error']}")
    if report["interrupted_not_failed"]:
        print(f"jobs interrupted by crashes and requeued (no attempt spent): {report['interrupted_not_failed']}")
    return 0


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.services import Services

    def when(text: str, flag: str) -> datetime:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise ContimgError(f"{flag} {text!r}: give an ISO time such as 2026-11-29T06:00") from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    db = migrated_database(settings)
    try:
        result = Services(db, settings).queue.reprocess_range(
            when(args.since, "--from"), when(args.until, "--to"), args.stage,
            by=os.environ.get("USER", "operator"), priority=args.priority)
    except ValueError as exc:
        raise ContimgError(str(exc)) from None
    print(f"{len(result['queued'])} group(s) queued from {args.stage} at priority {args.priority}; "
          f"{len(result['skipped'])} skipped")
    for gid, why in result["skipped"].items():
        print(f"  skipped {gid}: {why}")
    return 0


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    from engine.services import PipelineControl

    db = migrated_database(settings)
    control = PipelineControl(db)
    if args.failed:
        result = control.retry_failed(args.reason, by=f"cli:{os.environ.get('USER', 'operator')}")
        print(f"retried {len(result['retried'])} failed job(s)"
              + (" that failed only through interruptions" if args.reason == "interrupted" else ""))
        for job_id in result["retried"]:
            print(f"  {job_id}")
        for job_id, why in result["skipped"].items():
            print(f"  not retried {job_id}: {why}")
        return 0 if not result["skipped"] else EXIT_RUNTIME
    if not args.jobs:
        raise ContimgError("give job ids, or --failed [--reason interrupted|any]")
    code = 0
    for job_id in args.jobs:
        try:
            job = control.retry(job_id, by=f"cli:{os.environ.get('USER', 'operator')}")
            print(f"{job.id} {job.type} group {job.group_id}: queued again")
        except (ContimgError, KeyError) as exc:
            print(f"{job_id}: not retried: {exc}", file=sys.stderr)
            code = EXIT_RUNTIME
    return code
