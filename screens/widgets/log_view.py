"""A log view through the line API: a cursor line, level and component filters, search highlights.

Only the rows on screen are rendered (``render_line``), so 10,000 lines scroll as fast
as 10; filtering rebuilds a list of indices, never widgets. ``follow`` keeps the cursor
on the newest line as lines arrive; moving the cursor up freezes the view (the operator
is reading), ``end`` or ``f`` on the screen follows again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
SHORT = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "CRIT"}
JOB_MARK = "▸"
ROOT = "contimg."


@dataclass(frozen=True)
class LogLine:
    """One record, prepared once: its text, level and the job it belongs to."""

    seq: int
    levelno: int
    level: str
    logger: str
    text: str
    job_id: str | None
    folded: str  # lower-case text for search

    @classmethod
    def of(cls, record: dict[str, Any]) -> LogLine:
        level = str(record.get("level", "INFO"))
        logger = str(record.get("logger", ""))
        component = logger.removeprefix(ROOT)
        at = record.get("timestamp")
        when = at.strftime("%H:%M:%S") if isinstance(at, datetime) else "--:--:--"
        message = " ⏎ ".join(str(record.get("message", "")).splitlines())
        job = record.get("job_id") or (record.get("extra") or {}).get("job_id")
        text = f"{when} {SHORT.get(level, level[:5]):<5} {component}: {message}"
        return cls(int(record.get("seq", 0)), LEVELS.get(level, 20), level, logger, text,
                   str(job) if job else None, text.lower())


class LogView(ScrollView, can_focus=True):
    """Lines with a cursor; the screen owns the filters' controls, this widget applies them."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="logs.up", tooltip="Previous line"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="logs.down", tooltip="Next line"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="logs.pageup", tooltip="One screen up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="logs.pagedown", tooltip="One screen down"),
        Binding("home,g", "first", "First line", show=False, id="logs.first", tooltip="Oldest line kept"),
        Binding("end,G", "last", "Last line", show=False, id="logs.last",
                tooltip="Newest line (and follow new lines)"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-view--cursor", "log-view--match", "log-view--error",
                                             "log-view--warning", "log-view--debug", "log-view--job",
                                             "log-view--empty"}
    DEFAULT_CSS = """
    LogView { height: 1fr; }
    LogView > .log-view--cursor { background: $primary 40%; color: $text; }
    LogView:focus > .log-view--cursor { background: $primary 70%; color: $text; text-style: bold; }
    LogView > .log-view--match { background: $warning 70%; color: $background; text-style: bold; }
    LogView > .log-view--error { color: $error; }
    LogView > .log-view--warning { color: $warning; }
    LogView > .log-view--debug { color: $text-muted; }
    LogView > .log-view--job { color: $accent; }
    LogView > .log-view--empty { color: $text-muted; }
    """

    #: Lines kept in the view (the ring buffer holds 5,000; the view keeps more as they arrive).
    MAX_LINES: ClassVar[int] = 20_000

    @dataclass
    class CursorMoved(Message):
        """The operator moved the cursor; ``follow`` says whether the view still follows."""

        view: LogView
        follow: bool

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[LogLine] = []
        self.shown: list[int] = []
        self.min_level = 0
        self.component = ""
        self.search = ""
        self.matches: list[int] = []  # positions in ``shown``
        self.cursor = -1
        self.follow = True
        self.empty_text = "No log records yet."
        self._width = 0

    # ---- data -----------------------------------------------------------------------------------
    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        new = [LogLine.of(r) for r in records]
        overflow = len(self.entries) + len(new) - self.MAX_LINES
        if overflow > 0:
            self._drop_oldest(overflow)
        start = len(self.entries)
        self.entries.extend(new)
        for i, line in enumerate(new, start):
            self._width = max(self._width, cell_len(line.text) + 2)
            if self._passes(line):
                if self.search and self.search in line.folded:
                    self.matches.append(len(self.shown))
                self.shown.append(i)
        if self.follow and self.shown:
            self.cursor = len(self.shown) - 1
        elif self.cursor < 0 and self.shown:
            self.cursor = 0
        self._resize()
        if self.follow:
            self._scroll_to_cursor()

    def _drop_oldest(self, n: int) -> None:
        seq = self.current_line.seq if self.current_line else None
        del self.entries[:n]
        self._rebuild(seq)

    def _passes(self, line: LogLine) -> bool:
        return line.levelno >= self.min_level and (not self.component or self.component in line.logger.lower())

    def set_filter(self, min_level: int | None = None, component: str | None = None) -> None:
        """Apply a minimum level and/or a component (a part of the logger name); keep the cursor's line."""
        if min_level is not None:
            self.min_level = min_level
        if component is not None:
            self.component = component.strip().lower()
        self._rebuild(self.current_line.seq if self.current_line else None)

    def set_search(self, text: str) -> None:
        self.search = text.strip().lower()
        self.matches = [pos for pos, i in enumerate(self.shown) if self.search and self.search in
                        self.entries[i].folded]
        self.refresh()

    def _rebuild(self, keep_seq: int | None) -> None:
        self.shown = [i for i, line in enumerate(self.entries) if self._passes(line)]
        self.set_search(self.search)
        if not self.shown:
            self.cursor = -1
        elif self.follow or keep_seq is None:
            self.cursor = len(self.shown) - 1 if self.follow else 0
        else:  # the same record, or the nearest one after it that passes
            self.cursor = next((pos for pos, i in enumerate(self.shown) if self.entries[i].seq >= keep_seq),
                               len(self.shown) - 1)
        self._resize()
        self._scroll_to_cursor()

    def _resize(self) -> None:
        self.virtual_size = Size(self._width, max(1, len(self.shown)))
        self.refresh()

    @property
    def current_line(self) -> LogLine | None:
        if 0 <= self.cursor < len(self.shown):
            return self.entries[self.shown[self.cursor]]
        return None

    @property
    def shown_lines(self) -> list[LogLine]:
        return [self.entries[i] for i in self.shown]

    # ---- search ---------------------------------------------------------------------------------
    def next_match(self, forward: bool = True) -> int | None:
        """Move to the next (or previous) match after the cursor, wrapping; its rank among the matches."""
        if not self.matches:
            return None
        if forward:
            rank = next((k for k, pos in enumerate(self.matches) if pos > self.cursor), 0)
        else:
            rank = next((k for k in range(len(self.matches) - 1, -1, -1) if self.matches[k] < self.cursor),
                        len(self.matches) - 1)
        self.move_to(self.matches[rank])
        self._scroll_to_match()
        return rank

    def _scroll_to_match(self) -> None:
        """Bring the match on the cursor line into view horizontally (long lines run past the edge)."""
        line = self.current_line
        width = self.scrollable_content_region.width
        if line is None or not self.search or not width:
            return
        start = line.folded.find(self.search) + 2  # after the job mark
        end = start + len(self.search)
        if start < self.scroll_x or end > self.scroll_x + width:
            self.scroll_to(x=max(0, end - width + 8) if end > width else 0, animate=False, immediate=True)

    def match_rank(self) -> int | None:
        """Which match the cursor is on (0-based), if any."""
        try:
            return self.matches.index(self.cursor)
        except ValueError:
            return None

    # ---- cursor ---------------------------------------------------------------------------------
    def move_to(self, pos: int, *, follow: bool | None = None) -> None:
        """Put the cursor on ``pos``; leaving the newest line stops following unless told otherwise."""
        if not self.shown:
            return
        self.cursor = max(0, min(len(self.shown) - 1, pos))
        self.follow = (self.cursor == len(self.shown) - 1 and self.follow) if follow is None else follow
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.CursorMoved(self, self.follow))

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow and self.shown:
            self.move_to(len(self.shown) - 1, follow=True)
        else:
            self.post_message(self.CursorMoved(self, self.follow))

    def _scroll_to_cursor(self) -> None:
        height = self.scrollable_content_region.height or self.size.height
        if self.cursor < 0 or not height:
            return
        if self.follow:
            self.scroll_to(y=max(0, len(self.shown) - height), animate=False, immediate=True)
        elif self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self.move_to(0, follow=False)

    def action_last(self) -> None:
        self.move_to(len(self.shown) - 1, follow=True)

    # ---- rendering ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        pos = scroll_y + y
        if not self.shown:
            if y == 0:
                text = Text(self.empty_text, style=base + self._fg("log-view--empty"))
                return Strip(text.render(self.app.console)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if pos >= len(self.shown):
            return Strip.blank(width, base)
        at_cursor = pos == self.cursor
        if at_cursor:  # the cursor's background under the line, the match highlights over it
            base = base + Style(bgcolor=self.get_component_rich_style("log-view--cursor").bgcolor)
        text = self._line_text(self.entries[self.shown[pos]], base, at_cursor)
        strip = Strip(text.render(self.app.console), cell_len(text.plain))
        return strip.crop_extend(scroll_x, scroll_x + width, base).apply_offsets(scroll_x, pos)

    def _fg(self, name: str) -> Style:
        """A component's colour and emphasis without its background (the cursor line keeps its own)."""
        s = self.get_component_rich_style(name)
        return Style(color=s.color, bold=s.bold, italic=s.italic, dim=s.dim)

    def _line_text(self, line: LogLine, base: Style, at_cursor: bool = False) -> Text:
        style = base
        if at_cursor:  # one legible colour on the cursor's background, whatever the level
            style = base + self._fg("log-view--cursor")
        elif line.levelno >= LEVELS["ERROR"]:
            style = base + self._fg("log-view--error")
        elif line.levelno >= LEVELS["WARNING"]:
            style = base + self._fg("log-view--warning")
        elif line.levelno < LEVELS["INFO"]:
            style = base + self._fg("log-view--debug")
        text = Text(no_wrap=True, end="")
        text.append(JOB_MARK + " " if line.job_id else "  ", style=base + self._fg("log-view--job"))
        text.append(line.text, style=style)
        if self.search:
            match = self.get_component_rich_style("log-view--match")
            n, start = len(self.search), line.folded.find(self.search)
            while start >= 0:
                text.stylize(match, start + 2, start + 2 + n)
                start = line.folded.find(self.search, start + n)
        return text
