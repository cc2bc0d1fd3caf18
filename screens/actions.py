"""Operator actions on any screen: read-only gating, confirmation, and service calls off the loop.

A screen lists the actions that change something in ``WRITE_ACTIONS``; in a read-only
console ``check_action`` answers ``None`` for them, so the footer shows them greyed and
the help screen says why (:data:`READ_ONLY_REASON`). ``run_service`` calls the service
API in a thread worker and reports the outcome as a notification, so no screen repeats
the try/notify/refresh dance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from textual.dom import DOMNode
from textual.worker import Worker

from screens.confirm import ConfirmScreen

READ_ONLY_REASON = "read-only console (started with --read-only): actions that change the pipeline are disabled"


def is_read_only(node: DOMNode) -> bool:
    return bool(getattr(node.app, "read_only", False))


class OperatorActions:
    """Mixin for screens (and modal screens) with actions that change pipeline state."""

    #: Action names (without ``action_``) that write; disabled in a read-only console.
    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.WRITE_ACTIONS and is_read_only(self):  # type: ignore[arg-type]
            return None
        return True

    def disabled_reason(self, action: str) -> str | None:
        """Why an action is disabled here, or None if it is not."""
        if action in self.WRITE_ACTIONS and is_read_only(self):  # type: ignore[arg-type]
            return READ_ONLY_REASON
        return None

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        """Ask yes/no (the question names the object); run ``then`` only on yes."""
        self.app.push_screen(ConfirmScreen(question), lambda ok: then() if ok else None)  # type: ignore[attr-defined]

    def run_service(self, label: str, fn: Callable[..., Any], *args: Any,
                    done: Callable[[Any], str | None] | None = None, **kwargs: Any) -> Worker[Any]:
        """Run ``fn(*args, **kwargs)`` in a thread; notify ``label failed: …`` or ``done(result)``'s text.

        ``done`` runs on the event loop with the result and returns the message to show
        (None for no message). Without it the message is ``label: done``.
        """
        app = self.app  # type: ignore[attr-defined]

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every failure is shown to the operator
                app.call_from_thread(app.notify, f"{label} failed: {exc}", severity="error", timeout=8)
                return
            app.call_from_thread(self._service_done, label, result, done)

        return self.run_worker(job, thread=True, group="actions", description=label,  # type: ignore[attr-defined]
                               exit_on_error=False)

    def _service_done(self, label: str, result: Any, done: Callable[[Any], str | None] | None) -> None:
        message = done(result) if done is not None else f"{label}: done"
        if message:
            self.notify(message)  # type: ignore[attr-defined]
        refresh = getattr(self, "refresh_data", None)
        if callable(refresh):
            refresh()
