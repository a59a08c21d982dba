"""Records as the annotated text people read: every raw line in log order, each
followed by its note, a header where a scenario request begins and a marker
after the last one. `annotated_log` adds the index and the start-up fold;
live mode and the web page print these lines as they come.
"""

from __future__ import annotations

import os
from typing import IO, Iterable, Iterator

from . import fill as F
from .fill import AS_IS, LINE, TEXT, WIDE, slot
from .renderer import BATCH, Lines, Renderer

COLORS = {"pollable": "32", "thread-pooled": "36", "blocking": "31;1", "wakeup": "35;1"}


def use_color(stream: IO, choice: str = "auto") -> bool:
    """--color always|never|auto; auto: a terminal, unless NO_COLOR is set to something
    (https://no-color.org: an empty NO_COLOR does not count)."""
    if choice in ("always", "never"):
        return choice == "always"
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


class TextLines:
    """A record's lines of text, appended to a list; remembers the request it is in."""

    def __init__(self, headers: dict[str, str] | None = None, color: bool = False) -> None:
        self.headers = headers or {}
        self.color = color
        self.current: str | None = None
        self.opened: set[str] = set()  # the requests whose header is out
        self.form_key = ("text", color)

    def section(self, req: str | None, out: list[str]) -> None:
        """A header where a request begins, a marker where the requests end. Sections only
        move forward: a call is labelled by the window its start falls in, and one that began
        in an earlier window and is printed here (its `resumed>` line) stays in this one."""
        if req and req in self.opened and req != self.current:
            req = self.current
        if req and req != self.current:
            self.opened.add(req)
            out.append("")
            out.append(f"==== {req}: {self.headers.get(req, '')} ====".replace(":  ====", " ===="))
        elif req is None and self.current is not None:
            out.append(f"---- (after {self.current}) ----")
        self.current = req

    def add(self, rec: dict, out: list[str]) -> None:
        req = rec.get("request")
        if req != self.current:
            self.section(req, out)
        call = rec.get("call")
        if call is not None:
            if self.form_key not in call.forms:
                self._form(call)
            row = (call, rec["line"], rec["ts"], rec["duration"], rec["text"], None, req, call.forms)
            out.append(F.fill([row], 0, self.form_key, str)[0])
            return
        role = f"{rec.get('thread', ''):<5}"
        if rec["kind"] == "started":
            out.append(f"{rec['line']:>7} {role} {rec['text']}")
            return
        raw = rec.get("resumed_text") if rec.get("resumed_line") else rec.get("text")
        out.append(f"{rec['resumed_line'] or rec['line']:>7} {role} {raw}")
        note = self._note(rec)
        if note:
            out.append(note)
        for n, frame in rec.get("stack") or ():  # strace -k: where the call was made
            out.append(f"{n:>7} {role} {frame}")

    def add_copies(self, rows, out: list[str]) -> None:
        """Copied lines, through their calls' forms: one text for each run in one request."""
        key, i = self.form_key, 0
        while i < len(rows):
            if rows[i][6] != self.current:
                self.section(rows[i][6], out)
            end = i + 1
            while end < len(rows) and rows[end][6] == self.current:
                end += 1
            run = rows[i:end] if i or end < len(rows) else rows
            j = 0
            while j < len(run):
                text, j = F.fill(run, j, key, str)
                if text:
                    out.append(text)
                if j < len(run):
                    self._form(run[j][0])
            i = end

    def _form(self, call) -> tuple:
        """A call's line and note line, with slots for the line's number and text."""
        note = self._note(call.rec)
        form = call.forms[self.form_key] = ("", slot(LINE, WIDE), f" {call.rec.get('thread', ''):<5} ",
                                            slot(TEXT, AS_IS), f"\n{note}" if note else "")
        return form

    def _note(self, rec: dict) -> str:
        """The line under a call: its category and note ('' where there is no note)."""
        if not rec.get("note"):
            return ""
        cat = rec.get("category", "")
        tag = f"[{cat}]"
        if self.color and cat in COLORS:
            tag = f"\x1b[{COLORS[cat]}m{tag}\x1b[0m"
        return f"{'':>7} {'':5}   -> {tag} {rec['note']}"


def text_lines(records: Iterable[dict], headers: dict[str, str] | None = None,
               color: bool = False) -> Iterator[str]:
    """The annotated text, one string per output line."""
    lines = TextLines(headers, color)
    out: list[str] = []
    for rec in records:
        lines.add(rec, out)
        for text in out:
            yield from text.split("\n")  # a call's line and its note come as one text
        out.clear()


class Text(Renderer):
    """The annotated text to a stream, as it is."""

    def __init__(self, out: IO[str], headers: dict[str, str] | None = None, color: bool = False) -> None:
        self.text = TextLines(headers, color)
        self.lines = Lines(out)

    def add(self, rec: dict) -> None:
        self.text.add(rec, self.lines.batch)
        if len(self.lines.batch) >= BATCH:
            self.lines.flush()

    def add_copies(self, rows) -> None:
        self.text.add_copies(rows, self.lines.batch)
        self.lines.flush()  # a run of copies is one text: out with it

    def flush(self) -> None:
        self.lines.flush()

    def close(self) -> None:
        self.lines.flush()
