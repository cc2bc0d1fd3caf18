"""Create or edit a trigger: event, pipeline and its parameters, conditions, and a cron checked as you type.

The form builds the same body the dashboard posts and saves it through
``services.triggers`` (``engine.triggers.create_trigger`` / ``update_trigger``), so the
engine's own validation decides; its error stays in the form, next to what you typed.
Parameter fields come from the pipeline's parameter spec (required ones marked,
defaults filled). The cron line shows the engine's parse error naming the field, or
the expression's meaning and its next five runs on the service clock.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from engine.triggers import TriggerError
from screens.actions import OperatorActions
from screens.confirm import ConfirmScreen

#: The numeric settings every trigger has: (key, label, default).
LIMITS = (("priority", "Priority", 100), ("cooldown_seconds", "Cooldown s", 0),
          ("max_concurrent", "Max running", 1), ("retry_count", "Retries", 0))


def value_text(value: Any) -> str:
    """A stored condition or parameter value as the operator types it (lists comma-separated)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(text: str) -> int | float:
    f = float(text)
    return int(f) if f.is_integer() and "." not in text and "e" not in text.lower() else f


def condition_value(operator: str, text: str) -> Any:
    """What the engine stores for a typed value: a list for in/not_in, a number for ordering operators."""
    text = text.strip()
    if operator in ("in", "not_in"):
        return [v.strip() for v in text.split(",") if v.strip()]
    if operator in ("gt", "gte", "lt", "lte"):
        try:
            return _number(text)
        except ValueError:
            return text  # a date, or a mistake the engine names
    return text


class ConditionRow(Horizontal):
    """One condition: field, operator, value, and a button to drop it."""

    DEFAULT_CSS = """
    ConditionRow { height: 1; margin-bottom: 0; }
    ConditionRow .c-field { width: 1fr; }
    ConditionRow .c-op { width: 16; margin: 0 1; }
    ConditionRow .c-value { width: 1fr; }
    ConditionRow .c-remove { width: 5; min-width: 5; margin-left: 1; }
    """

    def __init__(self, operators: tuple[str, ...], field: str = "", operator: str = "equals",
                 value: Any = "") -> None:
        super().__init__(classes="condition")
        self.operators = operators
        self.initial = (field, operator if operator in operators else operators[0], value_text(value))

    def compose(self) -> ComposeResult:
        field, operator, value = self.initial
        yield Input(field, placeholder="field, e.g. dec_deg", classes="c-field", compact=True)
        yield Select([(o, o) for o in self.operators], value=operator, allow_blank=False, classes="c-op",
                     compact=True)
        yield Input(value, placeholder="value (lists: a, b)", classes="c-value", compact=True)
        yield Button("✕", classes="c-remove", compact=True, tooltip="Remove this condition")

    def condition(self) -> dict[str, Any] | None:
        """The row as the engine takes it; None for a row left entirely blank."""
        field = self.query_one(".c-field", Input).value.strip()
        text = self.query_one(".c-value", Input).value
        if not field and not text.strip():
            return None
        operator = str(self.query_one(".c-op", Select).value)
        return {"field": field, "operator": operator, "value": condition_value(operator, text)}

    @on(Button.Pressed, ".c-remove")
    def _remove(self, event: Button.Pressed) -> None:
        event.stop()
        parent = self.screen
        self.remove()
        if isinstance(parent, TriggerEditorScreen):
            parent.call_after_refresh(parent.check_conditions)


class ParamField(Vertical):
    """One parameter of the pipeline's spec: its input, marked when required, and what it means."""

    DEFAULT_CSS = """
    ParamField { height: auto; }
    ParamField > Horizontal { height: 1; }
    ParamField .note { padding: 0 0 0 13; }
    """

    def __init__(self, spec: dict[str, Any], value: Any) -> None:
        super().__init__(classes="param")
        self.spec = spec
        self.initial = value

    def compose(self) -> ComposeResult:
        name, kind = self.spec["name"], self.spec["type"]
        with Horizontal():
            yield Label(name + (" *" if self.spec.get("required") else ""), classes="label")
            if kind == "boolean":
                yield Checkbox("", bool(self.initial), compact=True, id=f"param-{name}")
            else:
                yield Input(value_text(self.initial), placeholder=kind + (" (comma-separated)" if kind == "array"
                                                                          else ""),
                            id=f"param-{name}", compact=True)
        hint = self.spec.get("description", "")
        if self.spec.get("required"):
            hint += " (required: set it here or the event data must carry it)"
        yield Static(escape(hint), classes="note")

    def value(self) -> tuple[Any, str | None]:
        """(value or None when left blank, problem)."""
        name, kind = self.spec["name"], self.spec["type"]
        widgets = self.query(f"#param-{name}")
        if not widgets:  # not composed yet: what it will show
            return (self.initial if self.initial not in ("", []) else None), None
        widget = widgets.first()
        if isinstance(widget, Checkbox):
            return widget.value, None
        text = widget.value.strip()  # type: ignore[attr-defined]
        if not text:
            return None, None
        if kind == "number":
            try:
                return _number(text), None
            except ValueError:
                return None, f"parameter {name} must be a number, got {text!r}"
        if kind == "array":
            return [v.strip() for v in text.split(",") if v.strip()], None
        return text, None


class TriggerEditorScreen(OperatorActions, ModalScreen[dict[str, Any] | None]):
    """The trigger form; dismisses with the saved trigger (as REST returns it), or None."""

    WRITE_ACTIONS = frozenset({"save"})
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Save the trigger through the engine (errors stay in the form)",
                id="trigger_editor.save", priority=True),
        Binding("escape", "cancel", "Cancel", tooltip="Close the form without saving", id="trigger_editor.cancel"),
    ]
    DEFAULT_CSS = """
    TriggerEditorScreen { align: center middle; }
    TriggerEditorScreen #frame { width: 100%; max-width: 110; height: 1fr; border: round $primary;
                                 background: $panel; }
    TriggerEditorScreen #form { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    TriggerEditorScreen Horizontal { height: 1; }
    TriggerEditorScreen .label { width: 13; color: $text-muted; }
    TriggerEditorScreen .short { width: 12; }
    TriggerEditorScreen .limit-label { width: 13; padding-left: 2; color: $text-muted; }
    TriggerEditorScreen .section { color: $accent; text-style: bold; }
    TriggerEditorScreen .note { height: auto; padding: 0 0 0 13; color: $text-muted; }
    TriggerEditorScreen .problem { color: $error; height: auto; padding: 0 0 0 13; }
    TriggerEditorScreen .warning { color: $warning; height: auto; padding: 0 0 0 13; }
    TriggerEditorScreen #cron-description { color: $success; }
    TriggerEditorScreen #cron-next { color: $text; }
    TriggerEditorScreen #schedule { height: auto; }
    TriggerEditorScreen #params { height: auto; }
    TriggerEditorScreen #conditions { height: auto; }
    TriggerEditorScreen #add-condition { margin: 0 0 0 13; }
    TriggerEditorScreen #form-error { color: $error; height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self, trigger: dict[str, Any] | None = None, *, event: str = "new_measurement_set") -> None:
        super().__init__()
        self.trigger = trigger
        self.editing = trigger is not None
        self.initial_event = trigger["event"] if trigger else event
        self._pipeline_shown: str | None = None
        self._initial_body: dict[str, Any] = {}

    @property
    def _svc(self) -> Any:
        return self.app.services.triggers  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        svc = self._svc
        t = self.trigger or {}
        self.pipelines = {p["id"]: p for p in svc.pipelines()}
        pipeline_id = t.get("pipeline_id") or next(iter(self.pipelines))
        schedule = t.get("schedule") or {}
        with Vertical(id="frame"):
            with VerticalScroll(id="form"):
                with Horizontal():
                    yield Label("Name *", classes="label")
                    yield Input(t.get("name", ""), placeholder="what operators will call it", id="name",
                                compact=True)
                with Horizontal():
                    yield Label("Description", classes="label")
                    yield Input(t.get("description") or "", placeholder="optional", id="description", compact=True)
                with Horizontal():
                    yield Label("Event", classes="label")
                    yield Select([(e, e) for e in svc.events()], value=self.initial_event, allow_blank=False,
                                 id="event", compact=True, disabled=self.editing)
                with Horizontal():
                    yield Label("Pipeline", classes="label")
                    yield Select([(f"{p['id']}: {p['name']}", p["id"]) for p in self.pipelines.values()],
                                 value=pipeline_id, allow_blank=False, id="pipeline", compact=True,
                                 disabled=self.editing)
                yield Static("", id="pipeline-help", classes="note")
                if self.editing:
                    yield Static("(event and pipeline are fixed once created)", classes="note")
                with Vertical(id="schedule"):
                    yield Static("Schedule", classes="section")
                    with Horizontal():
                        yield Label("Cron *", classes="label")
                        yield Input(schedule.get("cron", "0 3 * * *" if not self.editing else ""),
                                    placeholder="minute hour day-of-month month day-of-week", id="cron",
                                    compact=True)
                    with Horizontal():
                        yield Label("Time zone", classes="label")
                        yield Input(schedule.get("timezone", "UTC"), placeholder="IANA name, e.g. UTC",
                                    id="timezone", compact=True)
                    yield Static("", id="cron-problem", classes="problem")
                    yield Static("", id="cron-description", classes="note")
                    yield Static("", id="cron-next", classes="note")
                yield Static("Parameters", classes="section")
                yield Vertical(id="params")
                yield Static("", id="params-warning", classes="warning")
                yield Static("Conditions (all must match the event data)", classes="section")
                yield Static("", id="event-fields", classes="note")
                with Vertical(id="conditions"):
                    for c in t.get("conditions") or []:
                        yield ConditionRow(svc.operators(), c.get("field", ""), c.get("operator", "equals"),
                                           c.get("value", ""))
                yield Button("+ Add condition", id="add-condition", compact=True)
                yield Static("", id="conditions-problem", classes="problem")
                yield Static("Limits", classes="section")
                for pair in (LIMITS[:2], LIMITS[2:]):
                    with Horizontal():
                        for i, (key, label, default) in enumerate(pair):
                            yield Label(label, classes="label" if i == 0 else "limit-label")
                            yield Input(str(t.get(key, default)), id=f"limit-{key}", classes="short", compact=True,
                                        type="integer")
            yield Static("", id="form-error")
        yield Footer()

    async def on_mount(self) -> None:
        t = self.trigger
        self.query_one("#frame").border_title = f"Edit trigger {escape(t['name'])}" if t else "New trigger"
        self.query_one("#frame").border_subtitle = "ctrl+s save · escape cancel"
        await self._show_pipeline(str(self.query_one("#pipeline", Select).value), (t or {}).get("parameters"))
        self._show_event(self.initial_event)
        self.query_one("#form-error", Static).display = False
        self.query_one("#conditions-problem", Static).display = False
        self.query_one("#name", Input).focus()
        self._initial_body = self.body()[0]

    # ---- event, pipeline and parameters ---------------------------------------------------------
    def _show_event(self, event: str) -> None:
        self.query_one("#schedule").display = event == "schedule"
        fields = self._svc.event_fields(event)
        self.query_one("#event-fields", Static).update(
            escape(f"{event} events carry: {', '.join(fields)}") if fields
            else f"{event} runs carry the data they are given (none: conditions are not checked)")
        if event == "schedule":
            self._refresh_cron()
        self._check_params()

    @on(Select.Changed, "#event")
    def _event_changed(self, event: Select.Changed) -> None:
        self._show_event(str(event.value))

    @on(Select.Changed, "#pipeline")
    async def _pipeline_changed(self, event: Select.Changed) -> None:
        if not self.editing and event.value != self._pipeline_shown:
            await self._show_pipeline(str(event.value), None)

    async def _show_pipeline(self, pipeline_id: str, current: dict[str, Any] | None) -> None:
        """Fields from the pipeline's parameter spec: stored values when editing, else the defaults."""
        self._pipeline_shown = pipeline_id
        spec = self.pipelines[pipeline_id]
        self.query_one("#pipeline-help", Static).update(escape(spec["description"]))
        box = self.query_one("#params", Vertical)
        await box.remove_children()
        fields = [ParamField(p, (current or {}).get(p["name"]) if current is not None else p.get("default"))
                  for p in spec["parameters"]]
        await box.mount_all(fields or [Static("none", classes="note")])
        self._check_params()

    @on(Input.Changed, ".param Input")
    def _param_changed(self) -> None:
        self._check_params()

    def _check_params(self) -> None:
        """Warn when a required parameter is blank and the event cannot supply it."""
        try:
            event = str(self.query_one("#event", Select).value)
            fields = list(self.query(ParamField))
        except Exception:  # noqa: BLE001 - before the form is mounted
            return
        blank = [f.spec["name"] for f in fields if f.spec.get("required") and f.value()[0] is None]
        warn = self.query_one("#params-warning", Static)
        if blank and event in ("schedule", "manual"):
            warn.update(f"{', '.join(blank)} is blank and a {event} event carries none: every run would fail "
                        "until it is set")
            warn.display = True
        else:
            warn.display = False

    # ---- cron, checked as it is typed ------------------------------------------------------------
    @on(Input.Changed, "#cron")
    @on(Input.Changed, "#timezone")
    def _cron_changed(self) -> None:
        self._refresh_cron()

    def _refresh_cron(self) -> None:
        self._preview(self.query_one("#cron", Input).value, self.query_one("#timezone", Input).value)

    @work(thread=True, exclusive=True, group="cron-preview", description="check the cron expression")
    def _preview(self, cron: str, timezone: str) -> None:
        from engine.services.triggers import CronPreview

        tz = (timezone or "UTC").strip() or "UTC"
        try:
            preview = self._svc.cron_preview(cron, tz)
        except Exception as exc:  # noqa: BLE001 - a keystroke must never take the console down
            preview = CronPreview(cron, tz, f"cannot check this expression: {type(exc).__name__}: {exc}", "", ())
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_preview, preview)

    def _show_preview(self, p: Any) -> None:
        if (p.cron, p.timezone) != (self.query_one("#cron", Input).value,
                                    (self.query_one("#timezone", Input).value or "UTC").strip() or "UTC"):
            return  # an older keystroke's answer
        problem = self.query_one("#cron-problem", Static)
        problem.update(escape(p.error or ""))
        problem.display = bool(p.error)
        described = self.query_one("#cron-description", Static)
        described.update("" if p.error else escape(p.description))
        described.display = not p.error
        runs = " · ".join(t.strftime("%a %m-%d %H:%M") for t in p.next_runs)
        nxt = self.query_one("#cron-next", Static)
        nxt.update(f"next (UTC): {runs}" if runs and not p.error else "")
        nxt.display = not p.error

    # ---- conditions -------------------------------------------------------------------------------
    @on(Button.Pressed, "#add-condition")
    async def _add_condition(self) -> None:
        row = ConditionRow(self._svc.operators())
        await self.query_one("#conditions", Vertical).mount(row)
        row.query_one(".c-field", Input).focus()

    @on(Input.Changed, ".condition Input")
    @on(Select.Changed, ".condition Select")
    def _condition_changed(self) -> None:
        self.check_conditions()

    def _conditions(self) -> list[dict[str, Any]]:
        return [c for c in (row.condition() for row in self.query(ConditionRow)) if c is not None]

    def check_conditions(self) -> str | None:
        """The engine's verdict on the condition rows, shown under them; returns the problem."""
        try:
            self._svc.check_conditions(self._conditions())
            problem = None
        except TriggerError as exc:
            problem = str(exc)
        box = self.query_one("#conditions-problem", Static)
        box.update(escape(problem or ""))
        box.display = bool(problem)
        return problem

    # ---- saving -------------------------------------------------------------------------------------
    def body(self) -> tuple[dict[str, Any], list[str]]:
        """The dashboard's create/update body from the form, and what the form itself cannot send."""
        problems: list[str] = []
        event = str(self.query_one("#event", Select).value)
        data: dict[str, Any] = {"name": self.query_one("#name", Input).value.strip(),
                                "description": self.query_one("#description", Input).value.strip() or None}
        if not self.editing:
            data["event"] = event
            data["pipeline_id"] = str(self.query_one("#pipeline", Select).value)
        params: dict[str, Any] = {}
        for f in self.query(ParamField):
            value, problem = f.value()
            if problem:
                problems.append(problem)
            elif value is not None:
                params[f.spec["name"]] = value
        data["parameters"] = params
        data["conditions"] = self._conditions()
        for key, label, _default in LIMITS:
            text = self.query_one(f"#limit-{key}", Input).value.strip()
            if text:
                try:
                    data[key] = int(text)
                except ValueError:
                    problems.append(f"{label.lower()} must be a whole number, got {text!r}")
        if event == "schedule":
            data["schedule"] = {"cron": self.query_one("#cron", Input).value.strip(),
                                "timezone": self.query_one("#timezone", Input).value.strip() or "UTC"}
        return data, problems

    def action_save(self) -> None:
        data, problems = self.body()
        if problems:
            self._show_error("; ".join(problems))
            return
        self._save(data)

    @work(thread=True, exclusive=True, group="trigger-save", description="save the trigger")
    def _save(self, data: dict[str, Any]) -> None:
        svc = self._svc
        try:
            row = svc.update(self.trigger["id"], data) if self.trigger else svc.create(data)
        except KeyError:
            self.app.call_from_thread(self._show_error, "this trigger no longer exists (deleted elsewhere?)")
        except Exception as exc:  # noqa: BLE001 - the engine's word goes into the form, never lost
            self.app.call_from_thread(self._show_error, str(exc) if isinstance(exc, TriggerError)
                                      else f"{type(exc).__name__}: {exc}")
        else:
            self.app.call_from_thread(self.dismiss, row)

    def _show_error(self, message: str) -> None:
        box = self.query_one("#form-error", Static)
        box.update(escape(f"not saved: {message}"))
        box.display = True

    def action_cancel(self) -> None:
        if self.body()[0] == self._initial_body:
            self.dismiss(None)
            return
        what = f"trigger {escape(repr(self.trigger['name']))}" if self.trigger else "the new trigger"
        self.app.push_screen(ConfirmScreen(f"Discard your changes to {what}?"),
                             lambda ok: self.dismiss(None) if ok else None)
