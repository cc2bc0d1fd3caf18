"""Retention policies, their executions, and cleanup jobs: the service the REST routes and scheduler call.

Policies are stored in camelCase-free columns and returned in the dashboard's camelCase
shape. ``simulate`` never changes anything. ``execute`` acts (after a database backup
when the policy asks for one before deleting). A scheduled run skips policies that
require confirmation and raises an alert naming how much awaits it instead. Cleanup
jobs run as rows in ``jobs`` (type ``cleanup``, queue ``maintenance``) so the job
pages show them, with their log lines.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from engine import retention as rt
from engine.db import Database
from engine.db import models as m
from engine.logs import get_logger
from engine.units import human_bytes

log = get_logger("retention")

POLICY_FIELDS = {"name": "name", "description": "description", "dataType": "data_type", "priority": "priority",
                 "status": "status", "rules": "rules", "filePattern": "file_pattern",
                 "minFileSize": "min_file_size", "maxFileSize": "max_file_size",
                 "excludePatterns": "exclude_patterns", "requireConfirmation": "require_confirmation",
                 "createBackupBeforeDelete": "create_backup_before_delete"}
CLEANUP_QUEUE = "maintenance"


def _policy_out(p: m.RetentionPolicy, next_run: datetime | None = None) -> dict[str, Any]:
    out = {api: getattr(p, col) for api, col in POLICY_FIELDS.items()}
    out.update(id=p.id, createdAt=p.created_at, updatedAt=p.updated_at, createdBy=p.created_by,
               lastExecutedAt=p.last_executed_at,
               nextScheduledAt=next_run if p.status == "active" else None)
    out["excludePatterns"] = list(p.exclude_patterns or [])
    return out


def _execution_out(x: m.RetentionExecution) -> dict[str, Any]:
    return {"id": x.id, "policyId": x.policy_id or "", "startedAt": x.started_at, "completedAt": x.completed_at,
            "status": x.status, "itemsProcessed": x.items_processed, "itemsAffected": x.items_affected,
            "sizeFreedBytes": x.size_freed_bytes, "errorCount": len(x.errors or []), "errors": list(x.errors or []),
            "triggeredBy": x.triggered_by, "triggeredByUser": x.triggered_by_user}


def _candidate_out(c: rt.Candidate, now: datetime) -> dict[str, Any]:
    it = c.item
    return {"id": it.id, "path": str(it.path), "name": it.name, "dataType": it.data_type,
            "sizeBytes": it.size_bytes, "createdAt": it.created_at, "lastAccessedAt": it.last_accessed_at,
            "ageDays": round(it.age_days(now), 3), "triggeredByRule": c.rule, "action": c.action,
            "isProtected": it.protected, "protectionReason": it.reason}


def _cleanup_out(c: m.CleanupJob) -> dict[str, Any]:
    return {"id": c.id, "run_id": c.job_id, "status": c.status, "filters": c.filters, "action": c.action,
            "submitted_by": c.submitted_by, "submitted_at": c.submitted_at, "completed_at": c.completed_at,
            "items_processed": c.items_processed, "bytes_freed": c.bytes_freed, "error": c.error,
            "audit_note": c.audit_note}


class RetentionService:
    def __init__(self, settings: Any, db: Database) -> None:
        self.settings, self.db = settings, db
        self.next_run: datetime | None = None  # set by whoever schedules the daily run

    # ---- policies -------------------------------------------------------------------------------------------
    def list_policies(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [_policy_out(p, self.next_run) for p in
                    s.scalars(select(m.RetentionPolicy).order_by(m.RetentionPolicy.created_at))]

    def get_policy(self, policy_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            p = s.get(m.RetentionPolicy, policy_id)
            return _policy_out(p, self.next_run) if p else None

    def save_policy(self, data: dict[str, Any], user: str, policy_id: str | None = None) -> dict[str, Any] | None:
        """Create (no id) or merge ``data`` into an existing policy; ``None`` when the id is unknown.

        Creating the same policy again within a minute (clients retry POSTs) returns the first one."""
        if "rules" in data:
            rules = [dict(r) for r in data["rules"]]
            rt.validate_rules(rules)
            for i, r in enumerate(rules):
                r.setdefault("id", f"rule-{i + 1}")
            data = {**data, "rules": rules}
        with self.db.session() as s:
            if policy_id is None:
                recent = s.scalars(select(m.RetentionPolicy).where(
                    m.RetentionPolicy.name == data["name"], m.RetentionPolicy.created_by == user)).all()
                for p in recent:
                    if (datetime.now(UTC) - p.created_at).total_seconds() < 60 and all(
                            getattr(p, POLICY_FIELDS[k]) == v for k, v in data.items() if k in POLICY_FIELDS):
                        return _policy_out(p, self.next_run)
                p = m.RetentionPolicy(created_by=user)
                s.add(p)
            else:
                p = s.get(m.RetentionPolicy, policy_id)
                if p is None:
                    return None
            for api, col in POLICY_FIELDS.items():
                if api in data:
                    setattr(p, col, data[api])
            p.updated_at = datetime.now(UTC)
            s.flush()
            return _policy_out(p, self.next_run)

    def delete_policy(self, policy_id: str) -> bool:
        with self.db.session() as s:
            p = s.get(m.RetentionPolicy, policy_id)
            if p is None:
                return False
            s.delete(p)
            return True

    def _policy_dict(self, policy_id: str) -> dict[str, Any]:
        p = self.get_policy(policy_id)
        if p is None:
            raise KeyError(policy_id)
        return p

    # ---- simulate / execute ---------------------------------------------------------------------------------
    def simulate(self, policy_id: str) -> dict[str, Any]:
        policy = self._policy_dict(policy_id)
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        items = rt.inventory(self.settings, self.db, policy["dataType"])
        cands = rt.select_candidates(policy, items, now)
        active = [c for c in cands if not c.item.protected]
        by_action: dict[str, int] = {}
        for c in active:
            by_action[c.action] = by_action.get(c.action, 0) + 1
        warnings = []
        protected = len(cands) - len(active)
        if protected:
            warnings.append(f"{protected} matching item(s) are protected and will be kept")
        if policy["status"] != "active":
            warnings.append(f"the policy is {policy['status']}: scheduled runs skip it")
        if any(c.action == "delete" for c in active) and policy["dataType"] in ("measurement_set", "image"):
            warnings.append("delete removes files for good; the database keeps the rows and measurements")
        scan_s = time.perf_counter() - t0
        return {"policyId": policy_id, "simulatedAt": now, "candidates": [_candidate_out(c, now) for c in cands],
                "totalItems": len(active), "totalSizeBytes": sum(c.item.size_bytes for c in active),
                "byAction": by_action, "byDataType": {policy["dataType"]: len(active)} if active else {},
                "estimatedDurationSeconds": round(scan_s + 0.05 * len(active), 2), "warnings": warnings,
                "success": True, "errorMessage": None}

    def start_execution(self, policy_id: str, *, user: str | None, scheduled: bool = False) -> str:
        self._policy_dict(policy_id)
        with self.db.session() as s:
            ex = m.RetentionExecution(policy_id=policy_id, triggered_by="schedule" if scheduled else "manual",
                                      triggered_by_user=user)
            s.add(ex)
            s.flush()
            return ex.id

    def execute(self, policy_id: str, execution_id: str, *, scheduled: bool = False) -> dict[str, Any]:
        """Run a started execution to its end (in a worker thread); returns the execution."""
        try:
            policy = self._policy_dict(policy_id)
            now = datetime.now(UTC)
            items = rt.inventory(self.settings, self.db, policy["dataType"])
            cands = rt.select_candidates(policy, items, now, scheduled=scheduled)
            with self.db.session() as s:
                s.get(m.RetentionExecution, execution_id).items_processed = len(cands)
            if policy["createBackupBeforeDelete"] and any(c.action == "delete" and not c.item.protected
                                                          for c in cands):
                self._backup_first(policy)
            result = rt.run_candidates(self.settings, self.db, execution_id, cands,
                                       f"retention policy {policy['name']!r}")
            status = "completed" if not result["errors"] else "failed"
        except Exception as exc:  # noqa: BLE001 - recorded on the execution, never lost
            log.exception("retention policy %s failed", policy_id)
            with self.db.session() as s:
                ex = s.get(m.RetentionExecution, execution_id)
                ex.errors = [*(ex.errors or []), {"item": "", "error": f"{type(exc).__name__}: {exc}"}]
            status = "failed"
        with self.db.session() as s:
            ex = s.get(m.RetentionExecution, execution_id)
            ex.status, ex.completed_at = status, datetime.now(UTC)
            p = s.get(m.RetentionPolicy, policy_id)
            if p is not None:
                p.last_executed_at = ex.completed_at
            return _execution_out(ex)

    def _backup_first(self, policy: dict[str, Any]) -> None:
        from engine import backups

        backup_id = backups.create_backup(self.settings, self.db, name=f"before retention {policy['name']}",
                                          scope={"pipeline_configs": True, "job_history": True,
                                                 "qa_ratings": True}, created_by="retention")
        backups.run_backup(self.settings, self.db, backup_id)
        with self.db.session() as s:
            rec = s.get(m.BackupRecord, backup_id)
            if rec is None or rec.status != "completed":
                raise rt.RetentionError(f"the backup before deleting failed ({rec.error_message if rec else 'gone'}); "
                                        "nothing was deleted")

    def executions(self, policy_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(m.RetentionExecution).where(m.RetentionExecution.policy_id.is_not(None))
            if policy_id:
                q = q.where(m.RetentionExecution.policy_id == policy_id)
            q = q.order_by(m.RetentionExecution.started_at.desc()).limit(limit)
            return [_execution_out(x) for x in s.scalars(q)]

    def scheduled_run(self) -> list[str]:
        """The daily run: every active policy; those needing confirmation only raise an alert."""
        ran = []
        with self.db.session() as s:
            policies = [(p.id, p.name, p.require_confirmation)
                        for p in s.scalars(select(m.RetentionPolicy).where(m.RetentionPolicy.status == "active"))]
        for pid, name, confirm in policies:
            if confirm:
                sim = self.simulate(pid)
                if sim["totalItems"]:
                    from engine.monitoring import raise_alert

                    raise_alert(self.db, "retention", "info",
                                f"retention policy {name!r}: {sim['totalItems']} item(s), "
                                f"{human_bytes(sim['totalSizeBytes'])}, await confirmation (execute it to act)",
                                "retention", policy_id=pid)
                continue
            self.execute(pid, self.start_execution(pid, user=None, scheduled=True), scheduled=True)
            ran.append(pid)
        return ran

    # ---- cleanup wizard ---------------------------------------------------------------------------------------
    def _cleanup_candidates(self, filters: dict[str, Any], action: str) -> list[rt.Candidate]:
        now = datetime.now(UTC)
        types = filters.get("data_type") or ["temp", "log"]
        out: list[rt.Candidate] = []
        for t in types:
            items = rt.inventory(self.settings, self.db, rt.CLEANUP_TYPES[t])
            for it in items:
                age = it.age_days(now)
                if filters.get("min_age_days") is not None and age < filters["min_age_days"]:
                    continue
                if filters.get("max_age_days") is not None and age > filters["max_age_days"]:
                    continue
                if not rt._matches(it, filters.get("include_pattern"), [filters.get("exclude_pattern") or ""],
                                   filters.get("min_size_bytes"), filters.get("max_size_bytes")):
                    continue
                out.append(rt.Candidate(it, f"cleanup:{t}", action))
        return out

    def dry_run(self, filters: dict[str, Any]) -> dict[str, Any]:
        cands = self._cleanup_candidates(filters, "delete")
        active = [c for c in cands if not c.item.protected]
        by_cat: dict[str, dict[str, int]] = {}
        for c in active:
            cat = by_cat.setdefault(c.rule.split(":", 1)[1], {"count": 0, "bytes": 0})
            cat["count"] += 1
            cat["bytes"] += c.item.size_bytes
        total = sum(c.item.size_bytes for c in active)
        warnings = []
        if len(cands) > len(active):
            warnings.append(f"{len(cands) - len(active)} matching item(s) are protected and will be kept")
        if "ms" in (filters.get("data_type") or []):
            warnings.append("Measurement Sets cannot be re-created without the original HDF5 files")
        hints = [f"a retention policy for {t} would do this automatically" for t in sorted(by_cat)]
        return {"affected_count": len(active), "bytes_to_free": total, "size_formatted": human_bytes(total),
                "by_category": by_cat, "sample_paths": [str(c.item.path) for c in active[:20]],
                "warnings": warnings, "can_execute": bool(active), "retention_hints": hints}

    def submit_cleanup(self, filters: dict[str, Any], action: str, audit_note: str, user: str) -> dict[str, Any]:
        """Record the cleanup and its job; a repeat of a pending or running request returns it (clients retry)."""
        key = hashlib.sha256(json.dumps([filters, action, audit_note, user], sort_keys=True).encode()).hexdigest()
        with self.db.session() as s:
            same = s.scalars(select(m.CleanupJob).where(m.CleanupJob.request_key == key,
                                                       m.CleanupJob.status.in_(("pending", "running")))).first()
            if same is not None:
                return _cleanup_out(same)
            job = m.Job(type="cleanup", queue=CLEANUP_QUEUE, params={"filters": filters, "action": action},
                        state="running", started_at=datetime.now(UTC), attempts=1, max_attempts=1,
                        claimed_by="cleanup", created_by=user)
            s.add(job)
            s.flush()
            cj = m.CleanupJob(job_id=job.id, request_key=key, filters=filters, action=action, audit_note=audit_note,
                              submitted_by=user)
            s.add(cj)
            s.flush()
            return _cleanup_out(cj)

    def run_cleanup(self, cleanup_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            claimed = s.execute(update(m.CleanupJob).where(m.CleanupJob.id == cleanup_id,
                                                           m.CleanupJob.status == "pending")
                                .values(status="running")).rowcount
            cj = s.get(m.CleanupJob, cleanup_id)
            if not claimed:  # already running or done (a retried submit): one run per job
                return _cleanup_out(cj)
            filters, action, job_id, note = cj.filters, cj.action, cj.job_id, cj.audit_note
            s.add(m.JobLog(job_id=job_id, message=f"cleanup ({action}) started: {note}"))
            ex = m.RetentionExecution(cleanup_id=cleanup_id, triggered_by="manual", triggered_by_user=cj.submitted_by)
            s.add(ex)
            s.flush()
            execution_id = ex.id
        error = None
        try:
            cands = self._cleanup_candidates(filters, action)
            result = rt.run_candidates(self.settings, self.db, execution_id, cands, f"cleanup {cleanup_id} ({note})")
            processed, freed = result["affected"], result["freed"]
            if result["errors"]:
                error = f"{result['errors']} item(s) failed; see the job log"
        except Exception as exc:  # noqa: BLE001 - recorded on the job, never lost
            log.exception("cleanup %s failed", cleanup_id)
            processed, freed, error = 0, 0, f"{type(exc).__name__}: {exc}"
        now = datetime.now(UTC)
        with self.db.session() as s:
            ex = s.get(m.RetentionExecution, execution_id)
            ex.status, ex.completed_at = ("failed" if error else "completed"), now
            for failure in ex.errors or []:
                s.add(m.JobLog(job_id=job_id, level="ERROR", message=f"{failure['item']}: {failure['error']}"))
            for rec in (ex.actions or [])[:500]:
                s.add(m.JobLog(job_id=job_id, message=f"{rec['action']} {rec['path']}"
                               + (f" -> {rec['new_path']}" if rec.get("new_path") else "")))
            s.add(m.JobLog(job_id=job_id, level="ERROR" if error else "INFO",
                           message=f"cleanup finished: {processed} item(s), {human_bytes(freed)} freed"
                           + (f"; {error}" if error else "")))
            cj = s.get(m.CleanupJob, cleanup_id)
            cj.status, cj.completed_at = ("failed" if error else "completed"), now
            cj.items_processed, cj.bytes_freed, cj.error = processed, freed, error
            job = s.get(m.Job, job_id)
            job.state, job.finished_at, job.claimed_by = ("failed" if error else "succeeded"), now, None
            job.error, job.error_kind = error, ("cleanup" if error else None)
            job.outcome = {"items_processed": processed, "bytes_freed": freed}
            return _cleanup_out(cj)

    def cleanup_history(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [_cleanup_out(c) for c in s.scalars(
                select(m.CleanupJob).order_by(m.CleanupJob.submitted_at.desc()).limit(limit))]

    def get_cleanup(self, cleanup_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            c = s.get(m.CleanupJob, cleanup_id)
            return _cleanup_out(c) if c else None
