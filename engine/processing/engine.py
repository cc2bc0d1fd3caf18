"""The async processing engine: claims jobs, runs stages on an executor, never blocks the loop.

One claim loop per process; each claimed job runs as an asyncio task that sends the
CPU-heavy stage to an executor (``engine.processing.executors``: this host's process
pool, or a dask cluster) and renews its lease by heartbeat. All database work runs in threads (``asyncio.to_thread``). Errors are
classified: permanent ones fail the group at once with the reason, transient ones
are retried with exponential backoff and jitter (tenacity's wait strategy) until
the job's attempts are spent. Expired leases are recovered at start-up and
periodically, so a killed process never leaves a job or a group stuck.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy
import sqlalchemy.exc
import tenacity
from sqlalchemy import select


from engine import events
from engine.db import Database
from engine.db import models as m
from engine.errors import PermanentStageError, StateError, TransientStageError
from engine.events import EventBus
from engine.logs import bind_job, get_logger
from engine.processing import states
from engine.processing.pause import read_paused, write_paused
from engine.processing.queue import FAILED, RUNNING, SUCCEEDED, JobQueue, JobView, now
from engine.processing.executors import DaskExecutor, LocalExecutor, make_executor
from engine.processing.stages import Stage, StageRegistry, Wait
from engine.processing.recovery import RecoveryReport, interrupt, reconcile, recover, worker_pid
from engine.processing.transitions import transition

log = get_logger("engine")
CALIBRATOR_PRIORITY = 10
TARGET_PRIORITY = 100


def classify(exc: BaseException) -> str:
    """``permanent`` or ``transient``: decides between failing now and retrying later."""
    if isinstance(exc, PermanentStageError):
        return "permanent"
    if isinstance(exc, (TransientStageError, OSError, BrokenProcessPool, TimeoutError, sqlite3.OperationalError,
                        sqlalchemy.exc.OperationalError)):
        return "transient"
    return "transient"


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Delay before attempt ``attempt + 1``: exponential from ``base`` up to ``cap``, with jitter."""
    wait = tenacity.wait_exponential_jitter(multiplier=base, max=cap, jitter=base / 2 if base else 0)
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return float(wait(state))


class Engine:
    def __init__(self, settings: Any, db: Database, bus: EventBus, registry: StageRegistry | None = None) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.queue = JobQueue(db)
        if registry is None:
            from engine.processing.stages import resolve
            registry = resolve(settings.engine.registry)()
        self.registry = registry
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10000}"
        self.executor: LocalExecutor | DaskExecutor | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._recover_task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._per_stage: dict[str, int] = {}
        self._stopping = False
        self._paused = False
        self._wake = asyncio.Event()
        self._reconcile_requested = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.started = False
        bus.on(events.GROUP_READY, self._on_group_ready)
        bus.on(events.CALIBRATION_REGISTERED, self._on_calibration)
        self._release_requested = False
        self.last_recovery = RecoveryReport()  # the last recovery pass that reclaimed anything
        self.startup_recovery: RecoveryReport | None = None  # what start-up found after an unclean stop

    # ---- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        cfg = self.settings.engine
        self._event_loop = asyncio.get_running_loop()
        self._paused = await asyncio.to_thread(self._read_paused, cfg.start_paused)
        await asyncio.to_thread(self._register_worker)
        recovered = await asyncio.to_thread(self.recover)
        if recovered:
            self.startup_recovery = self.last_recovery
            log.warning("start-up after an unclean stop: %s", self.last_recovery.describe())
        queued = await asyncio.to_thread(self.reconcile)
        if queued:
            log.info("queued %d jobs for groups waiting in a resting state", queued)
        executor = make_executor(self.settings)
        try:
            await executor.start()
        except BaseException:
            await asyncio.to_thread(self._unregister_worker)
            raise
        self.executor = executor
        self._stopping = False
        self._loop_task = asyncio.create_task(self._claim_loop(), name="engine-claim")
        self._recover_task = asyncio.create_task(self._recover_loop(), name="engine-recover")
        self.started = True
        log.info("engine started", extra={"worker": self.worker_id, "workers": cfg.workers, "paused": self._paused,
                                          "stages": self.registry.types()})

    async def stop(self) -> None:
        """Drain: stop claiming, let running jobs finish within the grace period, release the rest."""
        if not self.started:
            return
        self._stopping = True
        self._wake.set()
        for task in (self._loop_task, self._recover_task):
            if task:
                task.cancel()
        if self._running:
            done, pending = await asyncio.wait(list(self._running.values()),
                                               timeout=self.settings.engine.shutdown_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        if self.executor is not None:
            await self.executor.stop()
            self.executor = None
        await asyncio.to_thread(self._unregister_worker)
        self.started = False
        log.info("engine stopped")

    # ---- control ---------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    async def pause(self) -> None:
        self._paused = True
        await asyncio.to_thread(self._write_paused, True)
        self.bus.publish(events.ENGINE_PAUSED)

    async def resume(self) -> None:
        self._paused = False
        await asyncio.to_thread(self._write_paused, False)
        self._wake.set()
        self.bus.publish(events.ENGINE_RESUMED)

    def _on_calibration(self, event: dict[str, Any]) -> None:
        self._release_requested = True
        self.poke()

    def _on_group_ready(self, event: dict[str, Any]) -> None:
        self._reconcile_requested = True
        self.poke()

    def poke(self) -> None:
        """New work may be ready: skip the rest of the poll interval (safe from any thread)."""
        loop = self._event_loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def state_label(self) -> str:
        if not self.started:
            return "stopped"
        if self._paused:
            return f"paused ({len(self._running)} running)"
        return f"running {len(self._running)}/{self.settings.engine.workers}"

    def status(self) -> dict[str, Any]:
        return {"running": self.started, "paused": self._paused, "worker_id": self.worker_id,
                "active_jobs": sorted(self._running), "workers": self.settings.engine.workers,
                "stages": self.registry.types()}

    # ---- persistence helpers (threads) ------------------------------------
    def _read_paused(self, default: bool = False) -> bool:
        return read_paused(self.db) or default

    def _write_paused(self, paused: bool) -> None:
        write_paused(self.db, paused)

    def _register_worker(self) -> None:
        with self.db.session() as s:
            w = s.get(m.Worker, self.worker_id)
            if w is None:
                s.add(m.Worker(id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid()))
            else:
                w.last_seen, w.stopped_at = now(), None

    def _unregister_worker(self) -> None:
        with self.db.session() as s:
            w = s.get(m.Worker, self.worker_id)
            if w is not None:
                w.stopped_at, w.current_job_id = now(), None

    def _beat_worker(self) -> None:
        with self.db.session() as s:
            w = s.get(m.Worker, self.worker_id)
            if w is not None:
                w.last_seen = now()

    def _touch_worker(self, current: str | None, finished: bool = False) -> None:
        with self.db.session() as s:
            w = s.get(m.Worker, self.worker_id)
            if w is not None:
                w.last_seen, w.current_job_id = now(), current
                if finished:
                    w.task_count += 1

    # ---- recovery (engine.processing.recovery) ----------------------------------
    def recover(self) -> int:
        """Reclaim running jobs whose holder died (interrupted) or whose lease ran out; returns how many."""
        report = recover(self.db, self.registry, self.settings, self.worker_id)
        if report.reclaimed:
            log.warning("lease recovery: %s", report.describe(),
                        extra={"requeued": report.requeued, "failed": report.failed, "expired": report.expired})
        self.last_recovery = report if report.reclaimed else self.last_recovery
        return report.reclaimed

    def reconcile(self) -> int:
        """Queue the next stage of every group resting without a job (crash between commits, new stage)."""
        return reconcile(self.db, self._enqueue_next)

    async def _recover_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.engine.recover_interval_s)
            try:
                await asyncio.to_thread(self._beat_worker)
                n = await asyncio.to_thread(self.recover)
                n += await asyncio.to_thread(self.reconcile)
                if n:
                    log.warning("recovered %d jobs with expired leases", n)
                    self._wake.set()
            except Exception:  # noqa: BLE001 - keep recovering
                log.exception("lease recovery failed")

    # ---- claiming -------------------------------------------------------------
    def _claimable_types(self) -> list[str]:
        caps = self.settings.engine.stage_concurrency
        return [t for t in self.registry.types() if self._per_stage.get(t, 0) < caps.get(t, self.settings.engine.workers)]

    async def _claim_loop(self) -> None:
        cfg = self.settings.engine
        while not self._stopping:
            claimed = None
            try:  # the flag may be flipped by another front end (CLI, REST) through the database
                self._paused = await asyncio.to_thread(self._read_paused, False)
            except Exception:  # noqa: BLE001
                log.exception("reading the pause flag failed")
            if self._release_requested:
                self._release_requested = False
                try:
                    await asyncio.to_thread(self.release_waiting)
                except Exception:  # noqa: BLE001
                    log.exception("releasing waiting jobs failed")
            if self._reconcile_requested:
                self._reconcile_requested = False
                try:
                    await asyncio.to_thread(self.reconcile)
                except Exception:  # noqa: BLE001
                    log.exception("reconcile failed")
            if not self._paused and len(self._running) < cfg.workers:
                types = self._claimable_types()
                try:
                    claimed = await asyncio.to_thread(self.queue.claim, self.worker_id, types, cfg.lease_s)
                except Exception:  # noqa: BLE001 - DB hiccup: log and retry next tick
                    log.exception("claim failed")
            if claimed is not None:
                self._per_stage[claimed.type] = self._per_stage.get(claimed.type, 0) + 1
                task = asyncio.create_task(self._run_job(claimed), name=f"job-{claimed.id}")
                self._running[claimed.id] = task
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=cfg.poll_interval_s)
            except TimeoutError:
                pass

    # ---- running one job -------------------------------------------------------
    async def _run_job(self, job: JobView) -> None:
        bind_job(job.id)  # this task's log lines (and its threads') carry the job id: the console jumps to the job
        stage = self.registry.get(job.type)
        try:
            assert stage is not None, f"no stage for job type {job.type}"
            params = await asyncio.to_thread(self._begin, job, stage)
            if params is None:
                return
            self.bus.publish(events.JOB_STARTED, job_id=job.id, job_type=job.type, group_id=job.group_id,
                             attempt=job.attempts)
            await asyncio.to_thread(self._touch_worker, job.id)
            outcome = await self._execute(job, stage, params)
        except asyncio.CancelledError:
            # Shutdown past the grace period: give the job back without spending the attempt.
            await asyncio.shield(asyncio.to_thread(self._release, job, stage))
            raise
        except _LeaseLost:
            log.warning("job %s lost its lease; result discarded", job.id)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is recorded
            death = await self.executor.death(exc) if self.executor is not None else None
            if death is not None:  # its worker died: an interruption, not a failure
                await asyncio.to_thread(self._interrupted, job, death.crashed)
            else:
                await asyncio.to_thread(self._fail, job, stage, exc)
        else:
            await asyncio.to_thread(self._succeed, job, stage, outcome)
        finally:
            self._running.pop(job.id, None)
            self._per_stage[job.type] = max(0, self._per_stage.get(job.type, 1) - 1)
            self._wake.set()
            try:
                await asyncio.to_thread(self._touch_worker, None, True)
            except Exception:  # noqa: BLE001
                pass

    async def _execute(self, job: JobView, stage: Stage, params: dict[str, Any]) -> dict[str, Any]:
        assert self.executor is not None
        future = self.executor.submit(stage.run, params)
        # A future abandoned at shutdown (pool terminated) must not log "exception never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        hb = self.settings.engine.heartbeat_s
        while True:
            done, _ = await asyncio.wait({future}, timeout=hb)
            if done:
                return future.result()
            ok = await asyncio.to_thread(self.queue.heartbeat, job.id, self.worker_id, self.settings.engine.lease_s)
            if not ok:
                future.cancel()
                raise _LeaseLost(job.id)

    def _begin(self, job: JobView, stage: Stage) -> dict[str, Any] | None:
        with self.db.session() as s:
            group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
            if group is None or (group.state != stage.start and group.state not in stage.also_from):
                found = group.state if group else "missing"
                msg = f"group {job.group_id} is {found}, stage {stage.job_type} needs {stage.start}"
                self.queue.finish(s, job.id, self.worker_id, "cancelled", error=msg, error_kind="state")
                log.warning(msg)
                return None
            if stage.gate is not None:
                try:
                    verdict = stage.gate(s, group, self.settings)
                except PermanentStageError as exc:
                    self._fail_in(s, job, group, group.state, f"{type(exc).__name__}: {exc}")
                    return None
                if verdict is not None:
                    self._hold(s, job, group, verdict)
                    return None
            transition(s, group.id, group.state, stage.working, reason=f"{stage.job_type} started",
                       worker=self.worker_id, attempt=job.attempts, job_id=job.id)
            params = stage.prepare(s, group, self.settings)
        params.update(_db_url=self.db.url, _job_id=job.id, _attempt=job.attempts)
        return params

    def _hold(self, s: Any, job: JobView, group: m.ObservationGroup, verdict: Wait) -> None:
        """Park the group in waiting_for_calibration and the job until the next check (no attempt spent)."""
        t = now()
        if verdict.deadline is not None and t >= verdict.deadline:
            self._fail_in(s, job, group, group.state, f"gave up waiting at {verdict.deadline:%Y-%m-%d %H:%M} UTC: "
                                                     f"{verdict.reason}")
            return
        if group.state != states.WAITING:
            transition(s, group.id, group.state, states.WAITING, reason=verdict.reason, worker=self.worker_id,
                       attempt=job.attempts, job_id=job.id)
        group.wait_deadline = verdict.deadline
        self.queue.finish(s, job.id, self.worker_id, "queued", error=verdict.reason, error_kind="waiting",
                          retry_at=t + timedelta(seconds=verdict.recheck_s))
        s.execute(sqlalchemy.update(m.Job).where(m.Job.id == job.id).values(attempts=m.Job.attempts - 1))
        log.info("group %s waits: %s", group.id, verdict.reason)

    def _fail_in(self, s: Any, job: JobView, group: m.ObservationGroup, state: str, message: str) -> None:
        transition(s, group.id, state, states.FAILED, reason=message, error=message, worker=self.worker_id,
                   attempt=job.attempts, job_id=job.id)
        self.queue.finish(s, job.id, self.worker_id, FAILED, error=message, error_kind="permanent")
        s.add(m.JobLog(job_id=job.id, level="ERROR", message=message))
        log.error("job %s failed: %s", job.id, message)

    def release_waiting(self) -> int:
        """A calibration set registered: let every waiting target check again now."""
        with self.db.session() as s:
            waiting = select(m.ObservationGroup.id).where(m.ObservationGroup.state == states.WAITING)
            res = s.execute(sqlalchemy.update(m.Job).where(m.Job.state == "queued", m.Job.group_id.in_(waiting))
                            .values(run_after=now()))
            return res.rowcount or 0

    def _succeed(self, job: JobView, stage: Stage, outcome: dict[str, Any]) -> None:
        try:
            with self.db.session() as s:
                group = s.get_one(m.ObservationGroup, job.group_id)
                published = stage.record(s, group, outcome, self.settings) or []
                transition(s, group.id, stage.working, stage.done, reason=f"{stage.job_type} succeeded",
                           worker=self.worker_id, attempt=job.attempts, job_id=job.id)
                self.queue.finish(s, job.id, self.worker_id, SUCCEEDED, outcome=_summarise(outcome))
                nxt = self._enqueue_next(s, group, stage.done)
        except Exception as exc:  # recording failed: treat like a stage failure
            log.exception("recording the outcome of job %s failed", job.id)
            self._fail(job, stage, exc)
            return
        log.info("job %s (%s) succeeded for group %s", job.id, job.type, job.group_id)
        for event_type, data in published:
            self.bus.publish(event_type, **data)
        self.bus.publish(events.JOB_SUCCEEDED, job_id=job.id, job_type=job.type, group_id=job.group_id)
        self.bus.publish(events.STATE_CHANGED, group_id=job.group_id, state=stage.done, previous=stage.working)
        if nxt:
            self._wake.set()

    def _enqueue_next(self, s: Any, group: m.ObservationGroup, state: str) -> str | None:
        stage = self.registry.next_for(group, state)
        if stage is None:
            return None
        cfg = self.settings.engine
        return self.queue.enqueue(stage.job_type, group_id=group.id, session=s,
                                  priority=CALIBRATOR_PRIORITY if group.is_calibrator else group.priority,
                                  max_attempts=stage.max_attempts or cfg.max_attempts)

    def _fail(self, job: JobView, stage: Stage, exc: BaseException) -> None:
        kind = classify(exc)
        message = f"{type(exc).__name__}: {exc}"
        cfg = self.settings.engine
        retry = kind == "transient" and job.attempts < job.max_attempts
        retry_at = now() + timedelta(seconds=backoff_s(job.attempts, cfg.retry_base_s, cfg.retry_max_s)) \
            if retry else None
        try:
            with self.db.session() as s:
                group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
                if group is not None and stage.on_failure is not None:
                    stage.on_failure(s, group, exc, self.settings)
                if group is not None and group.state == stage.working:
                    if retry:
                        transition(s, group.id, stage.working, stage.start, worker=self.worker_id,
                                   attempt=job.attempts, job_id=job.id,
                                   reason=f"attempt {job.attempts} failed ({kind}); retry at {retry_at:%H:%M:%S}")
                    else:
                        transition(s, group.id, stage.working, states.FAILED, worker=self.worker_id,
                                   attempt=job.attempts, job_id=job.id, reason=message, error=message)
                self.queue.finish(s, job.id, self.worker_id, FAILED, error=message, error_kind=kind,
                                  retry_at=retry_at)
                s.add(m.JobLog(job_id=job.id, level="ERROR",
                               message=f"attempt {job.attempts} failed: {message}"))
        except StateError as lost:
            log.warning("could not record failure of %s: %s", job.id, lost)
            return
        if retry:
            log.warning("job %s attempt %d failed (%s), retrying at %s: %s", job.id, job.attempts, kind,
                        retry_at, message)
            self.bus.publish(events.JOB_RETRYING, job_id=job.id, job_type=job.type, group_id=job.group_id,
                             error=message, retry_at=retry_at.isoformat() if retry_at else None)
        else:
            log.error("job %s failed (%s): %s", job.id, kind, message)
            self.bus.publish(events.JOB_FAILED, job_id=job.id, job_type=job.type, group_id=job.group_id,
                             error=message, kind=kind)
            self.bus.publish(events.STATE_CHANGED, group_id=job.group_id, state=states.FAILED,
                             previous=stage.working)

    def _interrupted(self, job: JobView, crashed: dict[int, int] | None) -> None:
        """The pool broke under ``job``: its own worker died (counts towards the poison pill) or another's did."""
        report = RecoveryReport()
        with self.db.session() as s:
            row = s.get(m.Job, job.id)
            if row is None or row.state != RUNNING or row.claimed_by != self.worker_id:
                return
            pid = worker_pid(s, job.id)
            own = crashed is None or (pid is not None and pid in crashed)  # unknown: count it, to be safe
            if own:
                code = crashed.get(pid) if crashed and pid is not None else None
                how = f" (exit code {code})" if code is not None else ""
                reason = f"its worker process {pid or ''} died{how}".replace("  ", " ")
            else:
                reason = "another job's worker process died and took the process pool with it"
            interrupt(s, row, self.registry, self.settings, reason, report, counts=own)
        what = "failed as a poison pill" if report.failed else "requeued without spending an attempt"
        log.warning("job %s interrupted: %s; %s", job.id, reason, what)
        if report.failed:
            self.bus.publish(events.JOB_FAILED, job_id=job.id, job_type=job.type, group_id=job.group_id,
                             error=reason, kind="poison")

    def _release(self, job: JobView, stage: Stage) -> None:
        with self.db.session() as s:
            group = s.get(m.ObservationGroup, job.group_id) if job.group_id else None
            if group is not None and group.state == stage.working:
                transition(s, group.id, stage.working, stage.start, worker=self.worker_id, attempt=job.attempts,
                           job_id=job.id, reason="released at shutdown")
        self.queue.release(job.id, self.worker_id, "released at shutdown")


class _LeaseLost(Exception):
    pass


def _summarise(outcome: dict[str, Any]) -> dict[str, Any]:
    """Keep JSON-friendly scalars and small lists of the outcome for the job row."""
    out: dict[str, Any] = {}
    for key, value in outcome.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, (list, tuple)) and len(value) <= 64:
            out[key] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        elif isinstance(value, dict) and len(value) <= 64:
            out[key] = {str(k): (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                        for k, v in value.items()}
    return out


__all__ = ["Engine", "classify", "backoff_s", "RUNNING"]
