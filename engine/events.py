"""In-process event bus: the engine publishes, the TUI, websockets, metrics and triggers listen.

Events are plain dicts (``{"type": ..., "at": ..., **data}``). Publishing is safe from
worker threads; each subscriber gets its own bounded queue so a slow consumer
drops its own oldest events instead of blocking the engine.
"""

from __future__ import annotations

import asyncio
import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Event = dict[str, Any]

GROUP_READY = "group.ready"
JOB_STARTED = "job.started"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_RETRYING = "job.retrying"
JOB_CANCELLED = "job.cancelled"
JOB_LOG = "job.log"
STATE_CHANGED = "state.changed"
CALIBRATION_REGISTERED = "calibration.registered"
POINTING_CHANGED = "pointing.changed"
ENGINE_PAUSED = "engine.paused"
ENGINE_RESUMED = "engine.resumed"


@dataclass(eq=False)
class Subscription:
    pattern: str
    queue: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop
    dropped: int = 0

    def matches(self, event_type: str) -> bool:
        return fnmatch.fnmatchcase(event_type, self.pattern)

    async def get(self) -> Event:
        return await self.queue.get()


@dataclass
class EventBus:
    maxsize: int = 1000
    _subs: list[Subscription] = field(default_factory=list)
    _callbacks: list[tuple[str, Callable[[Event], None]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, pattern: str = "*") -> Subscription:
        sub = Subscription(pattern, asyncio.Queue(self.maxsize), asyncio.get_running_loop())
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def on(self, pattern: str, callback: Callable[[Event], None]) -> None:
        """Synchronous listener, called in the publisher's thread (keep it quick)."""
        with self._lock:
            self._callbacks.append((pattern, callback))

    def publish(self, event_type: str, **data: Any) -> Event:
        event: Event = {"type": event_type, "at": datetime.now(UTC).isoformat(), **data}
        with self._lock:
            subs = [s for s in self._subs if s.matches(event_type)]
            callbacks = [cb for p, cb in self._callbacks if fnmatch.fnmatchcase(event_type, p)]
        for sub in subs:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is sub.loop:
                self._put(sub, event)
            elif not sub.loop.is_closed():
                sub.loop.call_soon_threadsafe(self._put, sub, event)
        for cb in callbacks:
            cb(event)
        return event

    @staticmethod
    def _put(sub: Subscription, event: Event) -> None:
        if sub.queue.full():
            sub.queue.get_nowait()
            sub.dropped += 1
        sub.queue.put_nowait(event)
