"""Calibration actions shared by the list and the detail view, and the "which set?" form.

Retire and reinstate ask for a reason (kept with the set, with who and when), then
confirm naming the set. Re-solve first asks the engine what a re-solve of this set
would do — its calibrator group must be back at ``converted`` for the solve stage — and
says so in the confirmation, or why it cannot be done from here.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine.services.calibrations import parse_dec, parse_epoch
from screens.actions import OperatorActions
from screens.prompt import PromptScreen


def operator_name() -> str:
    """Who acted, as kept with the set: the console and the login it runs under (SSH user)."""
    try:
        return f"console:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "console"


def utc(t: Any) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else "—"


@dataclass(frozen=True)
class SetRef:
    """The set an action is about, as the screen last read it."""

    id: int
    name: str
    status: str
    calibrator: str
    dec_deg: float


class CalibrationActions(OperatorActions):
    """Retire, reinstate and re-solve the set the host screen has selected (``selected_set``)."""

    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset({"retire", "reinstate", "resolve"})
    ACTION_BINDINGS: ClassVar[list[Binding]] = [
        Binding("x", "retire", "Retire", tooltip="Retire the set: the registry stops choosing it (asks why)",
                id="calibrations.retire"),
        Binding("u", "reinstate", "Reinstate", tooltip="Make a retired set active again (asks why)",
                id="calibrations.reinstate"),
        Binding("s", "resolve", "Re-solve", tooltip="Queue the solve stage again for the set's calibrator group",
                id="calibrations.resolve"),
    ]

    def selected_set(self) -> SetRef | None:
        raise NotImplementedError

    def action_retire(self) -> None:
        ref = self.selected_set()
        if ref is None:
            return
        if ref.status != "active":
            self.notify(f"{ref.name} is {ref.status}, not active: nothing to retire", severity="warning")
            return

        def asked(reason: str | None) -> None:
            if reason:
                self.confirm(f"Retire calibration set {ref.name} ({ref.calibrator})?\nThe registry stops choosing "
                             f"it; targets calibrated from now on get the next best set.\nReason: {reason}",
                             lambda: self._retire(ref, reason))

        self.app.push_screen(PromptScreen(f"Why retire {ref.name}? (kept with the set, with who and when)",  # type: ignore[attr-defined]
                                          placeholder="e.g. DSA-017 phase jumps; solved through RFI"), asked)

    def _retire(self, ref: SetRef, reason: str) -> None:
        self.run_service(f"retire {ref.name}", self.app.services.calibrations.retire,  # type: ignore[attr-defined]
                         ref.id, reason, operator_name(), done=str)

    def action_reinstate(self) -> None:
        ref = self.selected_set()
        if ref is None:
            return
        if ref.status != "retired":
            why = " (it failed QA: re-solve it instead)" if ref.status == "rejected" else ""
            self.notify(f"{ref.name} is {ref.status}; only a retired set can be reinstated{why}", severity="warning")
            return

        def asked(reason: str | None) -> None:
            if reason:
                self.confirm(f"Reinstate calibration set {ref.name} ({ref.calibrator})?\nThe registry may choose it "
                             f"again for targets in its window.\nReason: {reason}",
                             lambda: self._reinstate(ref, reason))

        self.app.push_screen(PromptScreen(f"Why reinstate {ref.name}? (kept with the set, with who and when)"),  # type: ignore[attr-defined]
                             asked)

    def _reinstate(self, ref: SetRef, reason: str) -> None:
        self.run_service(f"reinstate {ref.name}", self.app.services.calibrations.reinstate,  # type: ignore[attr-defined]
                         ref.id, reason, operator_name(), done=str)

    def action_resolve(self) -> None:
        ref = self.selected_set()
        if ref is None:
            return
        self._check_resolve(ref)

    @work(thread=True, exclusive=True, group="cal-resolve-plan", description="what a re-solve would do")
    def _check_resolve(self, ref: SetRef) -> None:
        try:
            plan = self.app.services.calibrations.resolve_plan(ref.id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown to the operator
            self.app.call_from_thread(self.notify, f"re-solve {ref.name}: {exc}", severity="error", timeout=8)  # type: ignore[attr-defined]
            return
        self.app.call_from_thread(self._plan_arrived, ref, plan)  # type: ignore[attr-defined]

    def _plan_arrived(self, ref: SetRef, plan: Any) -> None:
        if not plan.possible:
            self.notify(f"cannot re-solve {ref.name} from here: {plan.explanation}", severity="warning",  # type: ignore[attr-defined]
                        timeout=12)
            return
        self.confirm(f"Re-solve calibration set {ref.name}?\n{plan.explanation}.",
                     lambda: self.run_service(f"re-solve {ref.name}",
                                              self.app.services.calibrations.resolve,  # type: ignore[attr-defined]
                                              ref.id, operator_name(),
                                              done=lambda job: f"solve of group {plan.group_id} queued (job {job})"))


class WhichSetScreen(ModalScreen[None]):
    """Ask the registry which set(s) a target at a time and declination would get, and why."""

    BINDINGS = [Binding("escape", "dismiss", "Close", tooltip="Back to the list of sets", id="calibrations.close_form")]
    DEFAULT_CSS = """
    WhichSetScreen { align: center middle; }
    WhichSetScreen > Vertical { width: 78; max-width: 100%; height: auto; max-height: 100%;
                                border: round $primary; background: $panel; padding: 0 1; }
    WhichSetScreen Horizontal { height: auto; }
    WhichSetScreen Label { width: 22; padding: 1 0 0 0; }
    WhichSetScreen Input { width: 1fr; }
    WhichSetScreen #problem { color: $error; height: auto; }
    WhichSetScreen #decision { height: auto; margin-top: 1; }
    WhichSetScreen #decision.fail { color: $error; }
    WhichSetScreen #decision.wait { color: $warning; }
    """

    def __init__(self, when: str, dec: str) -> None:
        super().__init__()
        self.when = when
        self.dec = dec

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Which set would a target use?[/b]  The registry's own decision, judged now.")
            with Horizontal():
                yield Label("Time (MJD or UTC)")
                yield Input(self.when, placeholder="61373.25 or 2026-11-29 06:00", id="when")
            with Horizontal():
                yield Label("Declination (deg)")
                yield Input(self.dec, placeholder="55.57", id="dec")
            yield Static("", id="problem")
            yield Static("enter: ask the registry · escape: close", classes="hint")
            yield Static("", id="decision")

    def _problems(self) -> list[str]:
        out = []
        for field_id, parse in (("when", parse_epoch), ("dec", parse_dec)):
            try:
                parse(self.query_one(f"#{field_id}", Input).value)
            except ValueError as exc:
                out.append(str(exc))
        return out

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#problem", Static).update("\n".join(self._problems()))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        problems = self._problems()
        self.query_one("#problem", Static).update("\n".join(problems))
        if not problems:
            self._ask(self.query_one("#when", Input).value, self.query_one("#dec", Input).value)

    @work(thread=True, exclusive=True, group="cal-which", description="ask the registry")
    def _ask(self, when: str, dec: str) -> None:
        try:
            answer = self.app.services.calibrations.which_set(when, dec)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - shown in the form
            self.app.call_from_thread(self._show_error, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, answer)

    def _show_error(self, text: str) -> None:
        self.query_one("#problem", Static).update(text)

    def _show(self, a: Any) -> None:
        from rich.markup import escape

        lines = [f"target {utc(a.target_utc)} (MJD {a.target_mjd:.4f}), Dec {a.dec_deg:+.2f}°",
                 f"[b]{a.action}[/b]" + (f" ({a.mode})" if a.mode else "") + f": {escape(a.reason)}"]
        for u in a.sets:
            lines.append(f"  {escape(u['name'])}  {escape(u['calibrator'])}  MJD {u['mid_mjd']:.4f}  "
                         f"weight {u['weight']:.2f}")
        if a.warning and a.warning != a.reason:
            lines.append(f"warning: {escape(a.warning)}")
        if a.wait_until is not None:
            lines.append(f"waits until {utc(a.wait_until)} at the latest, then fails")
        out = self.query_one("#decision", Static)
        out.update("\n".join(lines))
        out.set_classes({"fail": "fail", "wait": "wait"}.get(a.action, ""))
