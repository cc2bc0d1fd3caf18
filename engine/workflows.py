"""Workflows: DAGs of stage tasks spawned together, and scheduled one-off tasks.

A workflow's tasks are pipeline stages for observation groups (the same tasks
``/absurd/spawn`` accepts). A task's job is created only when every task it depends
on has succeeded; the engine then runs it like any other job, with its own state
checks. ``advance`` moves workflows on — the runtime calls it on every job event and
every 30 s (jobs may change in another process). A failed or cancelled task fails the
workflow and cancels what has not started; a task never runs after its dependency
failed. Scheduled tasks are ordinary jobs whose ``run_after`` lies in the future.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from engine.db import Database
from engine.db import models as m
from engine.logs import get_logger

log = get_logger("workflows")

WORKFLOW_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINISHED_JOB_STATES = ("succeeded", "failed", "cancelled")


class WorkflowError(ValueError):
    """A workflow or task request that cannot be accepted; the message names the field."""


def _now() -> datetime:
    return datetime.now(UTC)


def check_dag(tasks: list[dict[str, Any]]) -> list[list[int]]:
    """Resolve ``depends_on`` to positions; refuse unknown names and cycles.

    An entry names a task (every task of that name) or, as ``#<n>``, the n-th task (0-based)."""
    by_name: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        by_name.setdefault(t["task_name"], []).append(i)
        by_name[f"#{i}"] = [i]  # by position, for workflows that run one task on several groups
    deps: list[list[int]] = []
    for i, t in enumerate(tasks):
        out: list[int] = []
        for name in t.get("depends_on") or []:
            if name not in by_name:
                raise WorkflowError(f"tasks[{i}].depends_on: no task named {name!r} in this workflow")
            out += [j for j in by_name[name] if j != i]
            if by_name[name] == [i]:
                raise WorkflowError(f"tasks[{i}].depends_on: a task cannot depend on itself")
        deps.append(sorted(set(out)))
    state = [0] * len(tasks)  # 0 new, 1 on the path, 2 done

    def visit(i: int, path: list[int]) -> None:
        if state[i] == 1:
            cycle = " -> ".join(tasks[j]["task_name"] for j in [*path[path.index(i):], i])
            raise WorkflowError(f"tasks: dependency cycle {cycle}")
        if state[i] == 0:
            state[i] = 1
            for j in deps[i]:
                visit(j, [*path, i])
            state[i] = 2

    for i in range(len(tasks)):
        visit(i, [])
    return deps


class Workflows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def spawn(self, name: str, tasks: list[dict[str, Any]], metadata: dict[str, Any], user: str) -> str:
        """``tasks``: [{task_name, job_type, params (with group_id), priority, depends_on}] already validated
        against the installed stages; returns the workflow id."""
        if not tasks:
            raise WorkflowError("tasks: a workflow needs at least one task")
        deps = check_dag(tasks)
        with self.db.session() as s:
            for i, t in enumerate(tasks):
                gid = (t.get("params") or {}).get("group_id")
                if not isinstance(gid, str) or s.get(m.ObservationGroup, gid) is None:
                    raise WorkflowError(f"tasks[{i}].params.group_id: no observation group {gid!r}")
            wf = m.Workflow(name=name, meta=metadata, created_by=user)
            s.add(wf)
            for i, t in enumerate(tasks):
                wf.tasks.append(m.WorkflowTask(position=i, task_name=t["task_name"], job_type=t["job_type"],
                                               params=dict(t.get("params") or {}), priority=t.get("priority") or 100,
                                               depends_on=deps[i]))
            s.flush()
            wf_id = wf.id
        self.advance(wf_id)
        return wf_id

    def advance(self, workflow_id: str | None = None) -> int:
        """Spawn ready tasks, settle finished workflows; returns how many jobs were created."""
        created = 0
        with self.db.session() as s:
            q = select(m.Workflow).where(m.Workflow.status.in_(("pending", "running")))
            if workflow_id:
                q = q.where(m.Workflow.id == workflow_id)
            for wf in s.scalars(q):
                jobs = {t.position: s.get(m.Job, t.job_id) if t.job_id else None for t in wf.tasks}
                state = {t.position: (jobs[t.position].state if jobs[t.position] else
                                      ("cancelled" if t.status == "cancelled" else "pending")) for t in wf.tasks}
                broken = [t for t in wf.tasks if state[t.position] in ("failed", "cancelled")]
                if broken:
                    t = broken[0]
                    job = jobs[t.position]
                    why = f"task {t.task_name} ({t.job_id or 'not started'}) {state[t.position]}"
                    self._stop(s, wf, "failed", why + (f": {job.error}" if job is not None and job.error else ""))
                    continue
                if all(v == "succeeded" for v in state.values()):
                    wf.status, wf.completed_at = "completed", _now()
                    continue
                for t in wf.tasks:
                    if t.job_id is None and t.status == "pending" and all(state[d] == "succeeded"
                                                                          for d in t.depends_on):
                        t.job_id = self._job_for(s, wf, t)
                        t.status = "spawned"
                        created += 1
                        if wf.status == "pending":
                            wf.status, wf.started_at = "running", _now()
        return created

    def _job_for(self, s: Any, wf: m.Workflow, t: m.WorkflowTask) -> str:
        """The job of a ready task: the engine may already have chained that stage for the group (then the
        workflow adopts it, whatever its state); otherwise a new one."""
        from engine.processing.queue import JobQueue

        gid = t.params.get("group_id")
        chained = s.scalar(select(m.Job.id).where(m.Job.type == t.job_type, m.Job.group_id == gid,
                                                  m.Job.created_at >= wf.created_at)
                           .order_by(m.Job.created_at.desc()).limit(1))
        if chained is not None:
            return chained
        return JobQueue(self.db).enqueue(t.job_type, group_id=gid, params={**t.params, "workflow_id": wf.id},
                                         priority=t.priority, created_by=wf.created_by, session=s)

    def _stop(self, s: Any, wf: m.Workflow, status: str, reason: str) -> None:
        from engine.processing.queue import QUEUED

        for t in wf.tasks:
            if t.job_id is None and t.status == "pending":
                t.status = "cancelled"
            elif t.job_id is not None:
                job = s.get(m.Job, t.job_id)
                if job is not None and job.state == QUEUED:
                    job.state, job.finished_at, job.error = "cancelled", _now(), f"workflow {status}: {reason}"
        wf.status, wf.completed_at, wf.error = status, _now(), reason

    def cancel(self, workflow_id: str, reason: str | None, by: str) -> bool:
        """Cancel what has not run; a running job finishes (the engine has no safe mid-stage stop)."""
        with self.db.session() as s:
            wf = s.get(m.Workflow, workflow_id)
            if wf is None:
                return False
            if wf.status in ("pending", "running"):
                self._stop(s, wf, "cancelled", f"cancelled by {by}" + (f": {reason}" if reason else ""))
            return True

    # ---- views --------------------------------------------------------------------------------------------
    def _summary(self, s: Any, wf: m.Workflow) -> dict[str, Any]:
        states = [s.get(m.Job, t.job_id).state if t.job_id and s.get(m.Job, t.job_id) else t.status
                  for t in wf.tasks]
        return {"workflow_id": wf.id, "name": wf.name, "status": wf.status, "task_count": len(wf.tasks),
                "completed_tasks": states.count("succeeded"), "failed_tasks": states.count("failed"),
                "created_at": wf.created_at, "started_at": wf.started_at, "completed_at": wf.completed_at,
                "metadata": dict(wf.meta or {})}

    def list(self, status: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self.db.session() as s:
            q = select(m.Workflow)
            if status:
                q = q.where(m.Workflow.status == status)
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(m.Workflow.created_at.desc()).limit(limit).offset(offset))
            return [self._summary(s, wf) for wf in rows], total

    def get(self, workflow_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            wf = s.get(m.Workflow, workflow_id)
            if wf is None:
                return None
            out = self._summary(s, wf)
            ids = {t.position: t.job_id or f"{wf.id}:{t.position}" for t in wf.tasks}
            tasks = []
            for t in wf.tasks:
                job = s.get(m.Job, t.job_id) if t.job_id else None
                tasks.append({"task_id": ids[t.position], "task_name": t.task_name, "job_state": job.state if job
                              else t.status, "depends_on": [ids[d] for d in t.depends_on],
                              "result": job.outcome if job else None, "error": job.error if job else None,
                              "claimed": job is not None and job.started_at is not None, "attempts": job.attempts
                              if job else 0})
            out["tasks"] = tasks
            out["dag_edges"] = [[ids[d], ids[t.position]] for t in wf.tasks for d in t.depends_on]
            return out


def scheduled_jobs(db: Database, limit: int = 500) -> list[Any]:
    """Queued jobs that wait for a time in the future."""
    from engine.processing.queue import JobView

    with db.session() as s:
        rows = s.scalars(select(m.Job).where(m.Job.state == "queued", m.Job.run_after > _now())
                         .order_by(m.Job.run_after).limit(limit))
        return [JobView.of(j) for j in rows]


def prune_jobs(db: Database, retention_days: float, queue: str | None, states: list[str]) -> int:
    """Delete finished jobs (and their logs) older than ``retention_days``; never queued or running ones."""
    bad = sorted(set(states) - set(FINISHED_JOB_STATES))
    if bad:
        raise WorkflowError(f"statuses: only finished tasks can be pruned, not {', '.join(bad)}")
    cutoff = _now() - timedelta(days=retention_days)
    with db.session() as s:
        q = delete(m.Job).where(m.Job.state.in_(states), m.Job.finished_at < cutoff)
        if queue:
            q = q.where(m.Job.queue == queue)
        q = q.where(m.Job.id.not_in(select(m.CleanupJob.job_id)))  # the cleanup wizard's history links them
        return s.execute(q).rowcount or 0
