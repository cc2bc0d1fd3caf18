"""The Backups screen's small dialogs: the new-backup form and a validation verdict.

The form says what each type means with the backup it would build on (read in a worker
when it opens), so an operator never starts an incremental that the engine will refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, Static

from engine.services.backups import FILE_SCOPES, BackupView, Validation
from engine.units import human_bytes

TYPES = ("full", "incremental", "differential")
#: Files a new backup holds by default besides the database (the schedules' default too).
DEFAULT_FILES = ("catalogs", "pipeline_configs", "images")


def when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "—"


def _base(b: BackupView | None) -> str:
    """The backup a new one builds on, with a warning when it failed its last validation."""
    if b is None:
        return ""
    text = f", '{b.name}' ({when(b.created_at)})"
    if b.validation_status == "invalid":
        text += ": it FAILED its last validation; a full backup is safer"
    return text


@dataclass(frozen=True)
class CreateRequest:
    """What the form asks the service for."""

    name: str
    backup_type: str
    files: dict[str, bool]


class CreateBackupScreen(ModalScreen[CreateRequest | None]):
    """A new backup: type, files besides the database copy, optional name."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="backup_form.cancel"),
        Binding("ctrl+s", "submit", "Create", tooltip="Start the backup", id="backup_form.create"),
    ]
    DEFAULT_CSS = """
    CreateBackupScreen { align: center middle; }
    CreateBackupScreen > Vertical { width: 76; height: auto; max-height: 100%; border: round $primary;
                                    background: $panel; padding: 0 1; }
    CreateBackupScreen .title { text-style: bold; color: $accent; }
    CreateBackupScreen .row { height: auto; margin-top: 1; }
    CreateBackupScreen .row Label { width: 7; padding: 0 1 0 0; }
    CreateBackupScreen #name { width: 1fr; }
    CreateBackupScreen RadioSet { layout: horizontal; width: 1fr; height: auto; }
    CreateBackupScreen RadioSet RadioButton { width: auto; margin-right: 3; }
    CreateBackupScreen #type-help { color: $text-muted; height: auto; padding-left: 7; }
    CreateBackupScreen #files { height: auto; width: 1fr; }
    CreateBackupScreen #problem { color: $error; height: auto; }
    CreateBackupScreen .buttons { height: auto; margin-top: 1; }
    CreateBackupScreen .buttons Button { margin-right: 2; }
    """

    def __init__(self, *, default_name: str) -> None:
        super().__init__()
        self.default_name = default_name
        self.last: BackupView | None = None
        self.last_full: BackupView | None = None
        self._loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("New backup · the database is always copied (jobs, history, QA ratings)",
                         classes="title")
            with Horizontal(classes="row"):
                yield Label("Name")
                yield Input(placeholder=self.default_name, id="name", compact=True, max_length=255)
            with Horizontal(classes="row"):
                yield Label("Type")
                with RadioSet(id="type", compact=True):
                    for i, t in enumerate(TYPES):
                        yield RadioButton(t, value=i == 0, id=f"type-{t}", compact=True)
            yield Static("", id="type-help")
            with Horizontal(classes="row"):
                yield Label("Files")
                yield SelectionList[str](*[(label, key, key in DEFAULT_FILES) for key, label in FILE_SCOPES],
                                         id="files", compact=True)
            yield Static("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._load()

    @work(thread=True, exclusive=True, group="backup-form", description="read the backups to build on")
    def _load(self) -> None:
        svc = self.app.services.backups  # type: ignore[attr-defined]
        last, last_full = svc.last_completed(), svc.last_completed("full")
        self.app.call_from_thread(self._loaded_parents, last, last_full)

    def _loaded_parents(self, last: BackupView | None, last_full: BackupView | None) -> None:
        self.last, self.last_full, self._loaded = last, last_full, True
        self._explain()

    @property
    def backup_type(self) -> str:
        pressed = self.query_one("#type", RadioSet).pressed_index
        return TYPES[pressed if pressed >= 0 else 0]

    def type_problem(self) -> str | None:
        """Why the chosen type cannot be made now (the engine would refuse it), or None."""
        if not self._loaded:
            return "still reading the existing backups…"
        if self.backup_type == "incremental" and self.last is None:
            return "an incremental needs a completed backup to build on: make a full backup first"
        if self.backup_type == "differential" and self.last_full is None:
            return "a differential needs a completed full backup: make a full backup first"
        return None

    def _explain(self) -> None:
        t = self.backup_type
        if t == "full":
            text = "full: every chosen file, whole"
            if self.last_full is not None:
                text += f" (the last full, '{self.last_full.name}', was {human_bytes(self.last_full.size_bytes)})"
        elif t == "incremental":
            text = "incremental: only the files changed since the newest completed backup"
            text += _base(self.last)
        else:
            text = "differential: the files changed since the last full backup"
            text += _base(self.last_full)
        self.query_one("#type-help", Static).update(escape(text))
        self.query_one("#problem", Static).update((self.type_problem() or "") if self._loaded else "")

    @on(RadioSet.Changed, "#type")
    def _type_changed(self) -> None:
        self._explain()

    @on(Input.Submitted, "#name")
    def _name_submitted(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#create")
    def _create_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        problem = self.type_problem()
        if problem:
            self.query_one("#problem", Static).update(problem)
            return
        chosen = set(self.query_one("#files", SelectionList).selected)
        self.dismiss(CreateRequest(self.query_one("#name", Input).value.strip(), self.backup_type,
                                   {key: key in chosen for key, _ in FILE_SCOPES}))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ValidationScreen(ModalScreen[None]):
    """The verdict of a validation, with the engine's reasons and the damaged files."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="backup_validation.close")]
    DEFAULT_CSS = """
    ValidationScreen { align: center middle; }
    ValidationScreen > VerticalScroll { width: 76; height: auto; max-height: 100%; background: $panel;
                                        padding: 0 1; }
    ValidationScreen > VerticalScroll.valid { border: round $success; }
    ValidationScreen > VerticalScroll.invalid { border: round $error; }
    ValidationScreen .verdict { text-style: bold; }
    ValidationScreen .valid .verdict { color: $success; }
    ValidationScreen .invalid .verdict { color: $error; }
    ValidationScreen .section { color: $accent; text-style: bold; margin-top: 1; }
    ValidationScreen .hint { padding: 0; }
    ValidationScreen #advice { margin-top: 1; }
    """

    def __init__(self, result: Validation) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        b = r.backup
        with VerticalScroll(classes="valid" if r.is_valid else "invalid"):
            yield Static(escape(f"Backup {b.label}: {'VALID' if r.is_valid else 'INVALID'}"), classes="verdict",
                         id="verdict")
            checked = r.files_verified + len(r.corrupted_files)
            lines = [f"{checked} file(s) checked against the manifest: {r.files_verified} intact, "
                     f"{len(r.corrupted_files)} missing or damaged",
                     "overall checksum verified" if r.checksum_verified else "overall checksum NOT verified"]
            yield Static(escape("\n".join(lines)), id="counts")
            if r.reason:
                yield Static("Why", classes="section")
                yield Static(escape(r.reason), id="reason")
            if r.corrupted_files:
                yield Static("Missing or damaged files", classes="section")
                yield Static(escape("\n".join(r.corrupted_files[:50])), id="corrupted")
            hint = ("a restore refuses an invalid backup; make a new one" if not r.is_valid
                    else "every file matches its checksum and the database copy passes its integrity check")
            yield Static(escape(hint), classes="hint", id="advice")
            yield Static("escape to close", classes="hint")
