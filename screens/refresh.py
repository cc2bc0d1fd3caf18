"""Non-overlapping refresh (dolphie's way): the next reload is armed only when the last one has arrived.

A one-shot timer re-armed from the load handler, never ``set_interval``, so a slow
database cannot pile up fetches; it stops while the screen is suspended (another mode
in front) and reloads at once when the screen comes back.
"""

from __future__ import annotations

from typing import Any

from textual.timer import Timer


class RearmedRefresh:
    """Mixin for screens: implement ``reload()``; call ``rearm()`` when a load has arrived."""

    _timer: Timer | None = None
    _active: bool = True

    def reload(self) -> None:
        raise NotImplementedError

    def refresh_data(self) -> None:
        self._stop_timer()
        self.reload()

    def rearm(self) -> None:
        self._stop_timer()
        interval = self.app.refresh_interval  # type: ignore[attr-defined]
        if self._active and interval:
            self._timer = self.set_timer(interval, self.refresh_data)  # type: ignore[attr-defined]

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def on_screen_suspend(self, _: Any = None) -> None:
        self._active = False
        self._stop_timer()

    def on_screen_resume(self, _: Any = None) -> None:
        self._active = True
        self.refresh_data()
