"""Running a trigger by hand, from the list or from the test dialog, and saying what came of it.

``run_now`` fires as REST's ``execute`` does; a ``backup`` action only records a pending
backup, so it is then run in its own app-level worker (the operator hears of the firing
at once, and of the backup when it ends, even if the dialog that started it is closed).
"""

from __future__ import annotations

from typing import Any

from textual.markup import escape

from screens.actions import OperatorActions


def q(name: str) -> str:
    """A trigger name quoted for a message (markup-safe: names may hold brackets)."""
    return escape(repr(name))


class TriggerRuns(OperatorActions):
    """``fire_trigger`` for screens that run triggers."""

    def fire_trigger(self, trigger_id: str, name: str, event_data: dict[str, Any] | None = None) -> None:
        svc = self.app.services.triggers  # type: ignore[attr-defined]
        self.run_service(f"run {name}", svc.run_now, trigger_id, event_data, done=self._ran)

    def _ran(self, ex: dict[str, Any]) -> str | None:
        name, status = ex["trigger_name"], ex["status"]
        self.trigger_ran(ex)
        if status == "skipped":
            self.notify(f"{q(name)} skipped: {escape(ex['skip_reason'] or '')}",  # type: ignore[attr-defined]
                        severity="warning", timeout=8)
            return None
        if status == "failed":
            self.notify(f"{q(name)} failed: {escape(ex['error_message'] or '')}",  # type: ignore[attr-defined]
                        severity="error", timeout=10)
            return None
        result = ex.get("result") or {}
        if result.get("backup_id"):
            self._run_backup(result["backup_id"])
            return f"{q(name)} recorded backup {result['backup_id']}; running it now"
        if ex.get("job_id"):
            return f"{q(name)} ran: {ex['pipeline_id']} queued job {ex['job_id']}"
        return f"{q(name)} ran: {ex['pipeline_id']} found nothing to do"

    def trigger_ran(self, execution: dict[str, Any]) -> None:
        """Hook: a screen may show the execution itself."""

    def _run_backup(self, backup_id: str) -> None:
        app = self.app  # type: ignore[attr-defined]
        svc = app.services.triggers

        def job() -> None:
            try:
                b = svc.run_backup(backup_id)
            except Exception as exc:  # noqa: BLE001 - shown to the operator
                app.call_from_thread(app.notify, f"backup {backup_id} failed: {escape(str(exc))}", severity="error",
                                     timeout=10)
                return
            if b is None:
                app.call_from_thread(app.notify, f"backup {backup_id} vanished before it ran", severity="error")
            elif b["status"] != "completed":
                app.call_from_thread(app.notify, f"backup {q(b['name'])} {b['status']}: "
                                     f"{escape(b.get('error_message') or '')}", severity="error", timeout=10)
            else:
                app.call_from_thread(app.notify, f"backup {q(b['name'])} completed ({b['size_formatted']})")

        app.run_worker(job, thread=True, group="trigger-backup", description=f"backup {backup_id}",
                       exit_on_error=False)
