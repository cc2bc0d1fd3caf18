"""One backup in detail: what it holds, what it builds on, why it failed, and its restores.

Opened from the Backups screen (``d`` / enter); read in a worker like the group detail.
"""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.services.backups import BackupDetail, RestoreView, scope_text
from engine.units import human_bytes
from screens.backup_dialogs import when


def restore_outcome(r: RestoreView) -> str:
    """A restore's outcome in one short line; a staged database says when it takes effect."""
    if r.status in ("pending", "running"):
        return f"{r.status}…"
    if r.status == "failed":
        # The engine names the backup by its full id; eight characters identify it on one line.
        reason = r.hard_errors[0].replace(r.backup_id, r.backup_id[:8]) if r.hard_errors else "no reason recorded"
        return f"failed: {reason}"
    parts = [f"{r.status} {r.items_restored}/{r.items_total}"]
    if r.skipped:
        parts.append(f"{len(r.skipped)} kept")
    if r.database == "staged":
        parts.append("db staged: next start")
    elif r.database == "superseded":
        parts.append("db superseded")
    return ", ".join(parts)


class BackupDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="backup_detail.close")]
    DEFAULT_CSS = """
    BackupDetailScreen { align: center middle; }
    BackupDetailScreen > VerticalScroll { width: 96%; height: 94%; border: round $primary; background: $panel; }
    BackupDetailScreen .section { color: $accent; text-style: bold; margin-top: 1; padding: 0 1; }
    BackupDetailScreen .body { padding: 0 1; }
    BackupDetailScreen .error { color: $error; padding: 0 1; }
    """

    def __init__(self, backup_id: str) -> None:
        super().__init__()
        self.backup_id = backup_id

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("loading…  (escape to close)", id="title", classes="body")
            yield Static("", id="error", classes="error")
            yield Static("Backup", classes="section")
            yield Static("", id="facts", classes="body")
            yield Static("Contents", classes="section")
            yield Static("", id="contents", classes="body")
            yield Static("Builds on", classes="section")
            yield Static("", id="chain", classes="body")
            yield Static("Restores from it", classes="section")
            yield Static("", id="restores", classes="body")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="backup-detail", description="read backup detail")
    def _load(self) -> None:
        try:
            detail = self.app.services.backups.detail(self.backup_id)  # type: ignore[attr-defined]
        except KeyError:
            detail = None
        self.app.call_from_thread(self._show, detail)

    def _show(self, d: BackupDetail | None) -> None:
        title = self.query_one("#title", Static)
        if d is None:
            title.update(f"backup {escape(self.backup_id)}: not found (deleted?)")
            return
        b = d.backup
        title.update(f"[b]{escape(b.name)}[/b] · {b.type} · {b.status} · {escape(scope_text(b.scope))}")
        err = self.query_one("#error", Static)
        problems = [f"error: {b.error}"] if b.error else []
        if d.manifest_problem:
            problems.append(d.manifest_problem)
        err.update(escape("\n".join(problems)))
        err.display = bool(problems)
        validated = (f"{b.validation_status} at {when(b.validated_at)} UTC" if b.validation_status
                     else "never validated (v on the list validates)")
        size = human_bytes(b.size_bytes) if b.status == "completed" else (
            f"{human_bytes(b.written_bytes or 0)} written so far" if b.status == "running" else "—")
        facts = [f"id          {b.id}",
                 f"created     {when(b.created_at)} UTC by {b.created_by or '—'}",
                 f"completed   {when(b.completed_at)}" + (" UTC" if b.completed_at else ""),
                 f"size        {size}, {b.item_count} file(s)",
                 f"validated   {validated}",
                 f"stored in   {b.location or '—'}",
                 f"checksum    {b.checksum or '—'}"]
        if b.notes:
            facts.append(f"notes       {b.notes}")
        self.query_one("#facts", Static).update(escape("\n".join(facts)))
        self.query_one("#contents", Static).update(escape(
            "\n".join(f"{top:<10} {n:>5} file(s) {human_bytes(size):>10}"
                      for top, (n, size) in sorted(d.contents.items()))
            or ("nothing yet" if b.status != "completed" else "no files listed")))
        chain = "\n".join(f"{p.type:<12} '{p.name}' ({when(p.created_at)}, {p.status})" for p in d.chain)
        if not chain:
            chain = ("nothing: a full backup is whole on its own" if b.type == "full"
                     else "its parent backup is missing: it cannot be restored")
        self.query_one("#chain", Static).update(escape(chain))
        lines = []
        for r in d.restores:
            lines.append(f"{when(r.started_at)}  by {r.started_by or '—'}: {restore_outcome(r)}")
            if r.database == "staged":
                lines.append("  its database copy is staged: it replaces the live one at the next start")
            lines += [f"  {e}" for e in r.errors[:10]]
        self.query_one("#restores", Static).update(escape("\n".join(lines) or "none"))
