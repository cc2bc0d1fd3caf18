"""Login throttling: failed attempts per user name and per client address, in sliding windows.

A password guesser is stopped twice: by the name it attacks (few tries, any address) and by
the address it comes from (more tries, any name). While either window is full the login
answers 429 with ``Retry-After`` — even for the right password, or the limit would tell a
guesser when it had succeeded. A successful login clears the name's failures only.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 10_000  # a flood of made-up names must not grow memory without bound


class LoginLimiter:
    def __init__(self, per_user: int, per_address: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window_s = window_s
        self.clock = clock
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _window(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, username: str, address: str) -> tuple[str, int] | None:
        """(what is limited, seconds to wait) if this attempt must be refused, else None."""
        now = self.clock()
        worst: tuple[str, int] | None = None
        for kind, value in (("user", username.lower()), ("address", address)):
            q = self._window((kind, value), now)
            if len(q) >= self.limits[kind]:
                wait = max(1, math.ceil(q[-self.limits[kind]] + self.window_s - now))
                if worst is None or wait > worst[1]:
                    worst = (kind, wait)
        return worst

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        for key in (("user", username.lower()), ("address", address)):
            q = self._fails.setdefault(key, deque())
            q.append(now)
            self._fails.move_to_end(key)
        while len(self._fails) > MAX_KEYS:
            self._fails.popitem(last=False)

    def succeeded(self, username: str) -> None:
        self._fails.pop(("user", username.lower()), None)
