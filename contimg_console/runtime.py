"""The Runtime: one object that starts and stops every service on one asyncio loop.

Start order: data dir and logging → database (migrated to head) → event bus →
processing engine → APScheduler → REST server (AppRunner + TCPSite, never
``web.run_app``). Stop runs in reverse. The TUI and headless ``contimg serve``
both drive the same Runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import shutil
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.auth import Accounts
from engine.db import Database
from engine.errors import ConfigError, ContimgError
from engine.events import EventBus
from engine.ingest import Ingestor, IngestService
from engine.logs import RingBufferHandler, get_logger, setup_logging
from engine.processing.engine import Engine
from engine.services import Services
from engine.settings import Settings

log = get_logger("runtime")


class StartupError(ContimgError):
    """A service could not start (port in use, database unreadable, ...)."""


class Runtime:
    def __init__(self, settings: Settings, *, with_api: bool = True, console_log: bool = False) -> None:
        self.settings = settings
        self.with_api = with_api and settings.api.enabled
        self.console_log = console_log
        self.db = Database.from_settings(settings)
        self.bus = EventBus()
        self.services = Services(self.db, settings)
        self.accounts = Accounts(self.db)
        self.engine = Engine(settings, self.db, self.bus)
        self.ingest = IngestService(Ingestor(settings, self.db, self.bus), settings.ingest.poll_interval_s)
        self.scheduler: AsyncIOScheduler | None = None
        self.triggers: Any = None
        from engine.retention_service import RetentionService

        self.retention = RetentionService(settings, self.db)
        from contimg_console.jupyter import JupyterGateway

        self.jupyter = JupyterGateway(settings)
        self._background: set[asyncio.Task[Any]] = set()
        self._trigger_listener: asyncio.Task[None] | None = None
        self._workflow_driver: asyncio.Task[None] | None = None
        self._jupyter_start: asyncio.Task[None] | None = None
        self.log_ring: RingBufferHandler | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.api_url: str | None = None
        self.started = False
        self._datadir_lock: Any = None  # shared flock on <data_dir>/.contimg.lock (see engine.backups.lock)

    # ---- workflows: spawn a task's job once its dependencies succeeded ------------
    async def _advance_workflows(self) -> None:
        from engine.workflows import Workflows

        try:
            if await asyncio.to_thread(Workflows(self.db).advance):
                self.engine.poke()
        except Exception:  # noqa: BLE001 - the next job event or the 30 s tick tries again
            log.exception("advancing workflows failed")

    async def _drive_workflows(self) -> None:
        sub = self.bus.subscribe("job.*")
        try:
            while True:
                event = await sub.get()
                if event["type"] == "job.log":
                    continue
                while not sub.queue.empty():  # one pass for a burst of events
                    sub.queue.get_nowait()
                await self._advance_workflows()
        finally:
            self.bus.unsubscribe(sub)

    # ---- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        s.ensure_dirs()
        self.log_ring = setup_logging(s.logs_dir, s.logging.level, s.logging.max_bytes, s.logging.backups,
                                      console=self.console_log)
        from engine import backups
        from engine.backups.lock import DataDirBusy, DataDirLock

        if self._datadir_lock is None:  # held while we run: an offline restore refuses to swap the DB under us
            try:
                self._datadir_lock = DataDirLock(s.data_dir, exclusive=False,
                                                 purpose="contimg read-only console" if s.read_only
                                                 else "contimg runtime").acquire()
            except DataDirBusy as exc:
                raise StartupError(f"{exc}; start again when it has finished") from None
        applied = await asyncio.to_thread(backups.apply_pending_restore, s)  # before anything opens the DB
        if applied:
            log.warning("applied a staged database restore", extra={"restore": str(applied)})
        try:
            await asyncio.to_thread(self.db.upgrade)
        except Exception as exc:
            raise StartupError(f"database {self.db.label}: {exc}") from None
        log.info("database ready", extra={"path": self.db.label, "revision": self.db.current_revision()})
        if self.with_api:  # bind first: a busy port fails before any work starts
            await self._start_api()
            if not s.read_only:  # the Jupyter page's server starts beside us; until it answers, 503 says so
                self._jupyter_start = asyncio.create_task(self.jupyter.start(), name="jupyter-start")
            elif s.jupyter.mode == "managed":
                self.jupyter.unavailable = "a read-only console does not start a Jupyter server"
        if not s.read_only:
            await self.engine.start()
            if s.ingest.enabled:
                await self.ingest.start()
        from engine.convert import remove_stale_temporaries

        await asyncio.to_thread(remove_stale_temporaries, s.ms_dir)  # debris of conversions killed mid-write
        interrupted = await asyncio.to_thread(backups.recover_interrupted, s, self.db)
        if interrupted:
            log.warning("backups/restores interrupted by a previous stop marked failed",
                        extra={"ids": interrupted})
        from engine.retention import recover_interrupted

        if await asyncio.to_thread(recover_interrupted, self.db, s):
            log.warning("retention runs or cleanup jobs interrupted by a previous stop marked failed")
        self.scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        self.scheduler.start()
        if not s.read_only:
            from contimg_console.api.prometheus import LatencyWindow
            from engine.alerting import Evaluator, ensure_builtin_policies
            from engine.alerts.delivery import Notifier
            from engine.triggers import TriggerScheduler

            if s.alerts.builtin:
                await asyncio.to_thread(ensure_builtin_policies, self.db)
            evaluator = Evaluator(self.db, s.data_dir, notifier=Notifier(s.alerts, self.db),
                                  extra_samples=LatencyWindow().samples)

            async def evaluate_alerts() -> None:
                try:
                    await asyncio.to_thread(evaluator.run)
                except Exception:  # noqa: BLE001 - next minute again
                    log.exception("alert policy evaluation failed")

            self.scheduler.add_job(evaluate_alerts, "interval", seconds=60, id="alert-policies",
                                   replace_existing=True)

            async def sample_storage() -> None:
                from engine.monitoring import record_storage_sample

                try:
                    await asyncio.to_thread(record_storage_sample, self.db, s)
                except Exception:  # noqa: BLE001 - next hour again
                    log.exception("storage sample failed")

            self.scheduler.add_job(sample_storage, "interval", hours=1, id="storage-sample", replace_existing=True,
                                   next_run_time=datetime.now(UTC))

            if s.retention.enabled:
                from engine.triggers import parse_cron

                async def run_retention() -> None:
                    try:
                        await asyncio.to_thread(self.retention.scheduled_run)
                    except Exception:  # noqa: BLE001 - tomorrow again; each run is recorded
                        log.exception("scheduled retention run failed")
                    self.retention.next_run = self.scheduler.get_job("retention").next_run_time

                job = self.scheduler.add_job(run_retention, parse_cron(s.retention.schedule_cron), id="retention",
                                             replace_existing=True)
                self.retention.next_run = job.next_run_time

            self._workflow_driver = asyncio.create_task(self._drive_workflows(), name="workflows")
            self.scheduler.add_job(self._advance_workflows, "interval", seconds=30, id="workflows",
                                   replace_existing=True)

            from engine.backups import schedule as backup_schedule

            await asyncio.to_thread(backup_schedule.seed_schedules, s, self.db)  # once; never recreated
            self.track(asyncio.create_task(asyncio.to_thread(backup_schedule.backup_config_if_changed, s, self.db),
                                           name="config-backup"))
            self.triggers = TriggerScheduler(s, self.db, self.scheduler)
            await asyncio.to_thread(self.triggers.sync)
            self.triggers.install()
            self.services.on_triggers_changed = self.triggers.sync  # the console's edits reschedule at once
            self._trigger_listener = asyncio.create_task(self.triggers.listen(self.bus), name="trigger-events")
        self.started = True
        # Everything imported and built so far lives as long as the process: move it out of
        # the cyclic GC's reach, so a full collection no longer stalls the loop for tens of ms.
        gc.freeze()
        log.info("runtime started", extra={"api": self.api_url, "read_only": s.read_only})

    async def _start_api(self) -> None:
        from contimg_console.api.app import ACCESS_LOG_FORMAT, access_logger, build_app

        try:
            app = build_app(self)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self._runner = web.AppRunner(app, access_log=access_logger(), access_log_format=ACCESS_LOG_FORMAT,
                                     handle_signals=False)
        await self._runner.setup()
        host, port = self.settings.api.host, self.settings.api.port
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"cannot serve REST on {host}:{port}: address already in use "
                                   f"(choose another with --port)") from None
            raise StartupError(f"cannot serve REST on {host}:{port}: {exc.strerror or exc}") from None
        sockets = self._site._server.sockets if self._site._server else []  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1] if sockets else port
        self.api_url = f"http://{host}:{bound}"

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task (backup, restore) alive and let stop() wait for it."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        if self._jupyter_start is not None and not self._jupyter_start.done():
            self._jupyter_start.cancel()  # the gateway stops a half-started server itself
            with contextlib.suppress(asyncio.CancelledError):
                await self._jupyter_start
        await self.jupyter.stop()
        if self._background:  # a backup or restore in flight: give it a moment, its record says the rest
            await asyncio.wait(list(self._background), timeout=self.settings.engine.shutdown_grace_s)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        for task in (self._trigger_listener, self._workflow_driver):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                    pass
        self._trigger_listener = self._workflow_driver = None
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.ingest.stop()
        await self.engine.stop()
        self.db.dispose()
        if self.started:
            log.info("runtime stopped")
        self.started = False
        if self._datadir_lock is not None:
            self._datadir_lock.release()
            self._datadir_lock = None

    # ---- status -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Cheap, non-blocking summary for the TUI header."""
        return {
            "engine": self.engine.state_label(),
            "scheduler": "running" if self.scheduler and self.scheduler.running else "stopped",
            "rest": self.api_url or ("disabled" if not self.with_api else "stopped"),
            "read_only": self.settings.read_only,
            "jupyter": self.jupyter.unavailable or self.jupyter.public_url or "",
            "jupyter_ok": self.jupyter.unavailable is None,
            "startup_recovery": (self.engine.startup_recovery.short()
                                 if self.engine.startup_recovery is not None else None),
        }

    async def health_components(self) -> dict[str, dict[str, Any]]:
        def db_check() -> dict[str, Any]:
            try:
                rev = self.db.current_revision()
                head = self.db.head_revision()
                ok = rev == head
                return {"status": "healthy" if ok else "degraded",
                        "message": f"revision {rev}" + ("" if ok else f" (head is {head})"),
                        "details": {"path": self.db.label, "dialect": self.db.dialect, "revision": rev}}
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                return {"status": "degraded", "message": f"database error: {exc}", "details": {}}

        db = await asyncio.to_thread(db_check)
        eng = self.engine.status()
        disk = shutil.disk_usage(self.settings.data_dir)
        return {
            "disk": {"status": "healthy" if disk.used / disk.total < 0.85 else "degraded",
                     "message": f"{disk.free / 1e9:.1f} GB free",
                     "details": {"total_bytes": disk.total, "used_bytes": disk.used, "free_bytes": disk.free,
                                 "used_percent": round(100 * disk.used / disk.total, 1)}},
            "database": db,
            "engine": {"status": "healthy" if eng["running"] else ("degraded" if not self.settings.read_only
                                                                     else "stopped"),
                       "message": self.engine.state_label(), "details": eng},
            "scheduler": {"status": "healthy" if self.scheduler and self.scheduler.running else "degraded",
                          "message": f"{len(self.scheduler.get_jobs()) if self.scheduler else 0} scheduled jobs",
                          "details": {}},
        }


def check_settings(settings: Settings) -> None:
    """Fail early, with one line, on a data dir we cannot write."""
    try:
        settings.ensure_dirs()
    except ConfigError:
        raise


logging.getLogger("aiohttp.access").propagate = False
