"""Where a stage's CPU work runs: this host's process pool, or a dask.distributed cluster.

The engine keeps everything that makes a job safe — claims, leases, heartbeats, retries,
state transitions — and hands an executor only the stage call (``run_in_worker``). An
executor also says whether an exception means the job's worker died (an interruption,
see ``engine.processing.recovery``) and, when it can tell, whose worker it was.

``engine.executor = "local"`` (default): a ``ProcessPoolExecutor`` of ``engine.workers``
spawned processes, niced below the console. A dead worker breaks the whole pool; the
executor finds which process died by itself (the pool SIGTERMs the rest), and replaces
the pool. ``"dask"``: a ``distributed.Client`` to ``engine.dask_scheduler``; the data
dir must be shared storage visible to every worker (checked at start).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from engine.errors import ContimgError
from engine.logs import get_logger
from engine.processing.stages import run_in_worker

log = get_logger("engine")


class ExecutorError(ContimgError):
    """The executor cannot run stages (scheduler unreachable, workers cannot see the data dir)."""


@dataclass(frozen=True)
class Death:
    """A job's worker died under it. ``crashed``: pid → exit code of the processes that died by
    themselves (None: cannot tell, so every job that was in the pool may be the cause)."""

    crashed: dict[int, int] | None


def _lower_priority(nice: int) -> None:
    """Stage workers yield the CPU to the console's own process: the TUI and the REST API stay responsive
    while a conversion or an imaging run keeps both cores busy (idle CPU still goes to the stages)."""
    if nice > 0:
        os.nice(nice)


class LocalExecutor:
    """This host's process pool, replaced when a worker dies."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._broken: dict[Any, dict[int, int] | None] = {}  # broken pool → its crashed workers
        self._procs: dict[Any, dict[int, Any]] = {}  # broken pool → its processes when it broke
        self.stopping = False

    def _new_pool(self) -> ProcessPoolExecutor:
        cfg = self.settings.engine
        return ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_lower_priority, initargs=(cfg.worker_nice,))

    async def start(self) -> None:
        self._pool = self._new_pool()

    def submit(self, path: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        assert self._pool is not None
        pool = self._pool
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, run_in_worker, path, params)
        except BrokenProcessPool as exc:
            exc.pool = pool  # type: ignore[attr-defined]
            raise
        future.add_done_callback(lambda f, p=pool: _tag_pool(f, p))
        return future

    async def death(self, exc: BaseException) -> Death | None:
        """A Death if ``exc`` says the job's worker died (and the pool is replaced), else None."""
        if not isinstance(exc, BrokenProcessPool):
            return None
        pool = getattr(exc, "pool", None)
        # on the loop, before anyone shuts the pool down (which forgets its processes)
        procs = {} if pool is None else self._procs.setdefault(pool, dict(pool._processes or {}))
        self._replace(pool)
        return Death(await asyncio.to_thread(self._crashed, pool, procs))

    def _crashed(self, pool: Any, procs: dict[int, Any]) -> dict[int, int] | None:
        """Every job of a broken pool asks; the first answer (after the exits are reaped) serves the rest."""
        if pool is None:
            return None
        with self._lock:
            if pool in self._broken:  # keyed by the object: a dead pool's id could be a new pool's
                return self._broken[pool]
            deadline = time.monotonic() + 3.0
            for proc in procs.values():
                proc.join(max(0.0, deadline - time.monotonic()))
            crashed = {pid: proc.exitcode for pid, proc in procs.items()
                       if proc.exitcode is not None and proc.exitcode != -signal.SIGTERM}
            self._broken[pool] = crashed or None
            while len(self._broken) > 8:
                old = next(iter(self._broken))
                del self._broken[old]
                self._procs.pop(old, None)
            return crashed or None

    def _replace(self, broken: ProcessPoolExecutor | None) -> None:
        if broken is not None and self._pool is broken and not self.stopping:
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            log.warning("a stage worker process died; the process pool was replaced")

    async def stop(self) -> None:
        self.stopping = True
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            self._pool = None


def _tag_pool(future: Any, pool: ProcessPoolExecutor) -> None:
    """Remember which pool a BrokenProcessPool came from, so only that pool is replaced."""
    if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
        future.exception().pool = pool


def _missing_dirs(paths: list[str]) -> list[str]:
    """Run on each dask worker: which of the data dir's folders it cannot see."""
    return [p for p in paths if not os.path.isdir(p)]


class DaskExecutor:
    """Stages on a dask.distributed cluster; the job table stays the system of record."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.client: Any = None
        self.stopping = False

    async def start(self) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # an optional extra
            raise ExecutorError("engine.executor = \"dask\" needs dask.distributed: pip install "
                                "'contimg-console[dask]'") from exc
        address = self.settings.engine.dask_scheduler
        if not address:
            raise ExecutorError("engine.executor = \"dask\" needs engine.dask_scheduler (e.g. tcp://host:8786)")
        try:
            self.client = await Client(address, asynchronous=True, timeout=self.settings.engine.dask_connect_s)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"cannot reach the dask scheduler at {address}: {exc}") from exc
        try:
            await self.check_shared_storage()
        except BaseException:
            await self.stop()
            raise

    async def check_shared_storage(self) -> None:
        """Every worker must see the data dir's folders where this host sees them (shared storage)."""
        s = self.settings
        paths = [str(p) for p in (s.data_dir, s.incoming_dir, s.ms_dir, s.caltables_dir, s.images_dir)]
        missing = await self.client.run(_missing_dirs, paths)
        if not missing:
            raise ExecutorError(f"the dask cluster at {s.engine.dask_scheduler} has no workers")
        bad = {w: m for w, m in missing.items() if m}
        if bad:
            lines = "; ".join(f"{w} cannot see {', '.join(m)}" for w, m in sorted(bad.items()))
            raise ExecutorError(f"dask workers must see the data dir on shared storage: {lines}")
        log.info("dask executor: %d workers at %s see the data dir", len(missing), s.engine.dask_scheduler)

    def submit(self, path: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        key = f"{params.get('_job_id', 'job')}-{params.get('_attempt', 0)}-{time.monotonic_ns()}"
        future = self.client.submit(run_in_worker, path, params, key=key, pure=False)
        return asyncio.ensure_future(future.result())

    async def death(self, exc: BaseException) -> Death | None:
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):  # the task's workers kept dying under it: its own doing
            return Death(None)
        return None

    async def stop(self) -> None:
        self.stopping = True
        if self.client is not None:
            await self.client.close()
            self.client = None


def make_executor(settings: Any) -> LocalExecutor | DaskExecutor:
    kind = settings.engine.executor
    if kind == "dask":
        return DaskExecutor(settings)
    return LocalExecutor(settings)
