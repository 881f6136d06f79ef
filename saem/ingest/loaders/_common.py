"""Helpers shared by the loaders: text clean-up and heading → section bookkeeping."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from saem.errors import FileRejected
from saem.ingest.types import Section

__all__ = ["clean_text", "reject_if_binary", "sections_from_headings", "TextBuilder"]

# C0 controls except TAB, LF, VT, FF, CR (and DEL); their share tells binary from text.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_MAX_CONTROL_RATIO = 0.01
_WS = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Return ``text`` with CRLF/CR turned into LF, a leading BOM dropped, and NFC applied.

    Every loader passes its output through this before computing offsets, so spans refer to
    the cleaned text. NFC matters for Korean: macOS writes decomposed jamo, which would
    otherwise never match a query typed on another system.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def reject_if_binary(text: str, path: Path) -> None:
    """Raise ``FileRejected`` if ``text`` holds NULs or more than 1% control characters."""
    if "\x00" in text:
        raise FileRejected("binary content (NUL bytes) behind a text extension", path=path)
    if text and len(_CONTROL.findall(text)) > _MAX_CONTROL_RATIO * len(text):
        raise FileRejected("binary content (too many control characters) behind a text extension", path=path)


def sections_from_headings(text_len: int, headings: Iterable[tuple[int, int, str]]) -> tuple[Section, ...]:
    """Turn ``(offset, level, title)`` headings (ordered by offset) into covering sections.

    Each section runs from its heading to the next heading (of any level); text before the
    first heading becomes a section with an empty ``heading_path``. Levels are 1-based (h1 = 1);
    a heading closes every open heading of the same or deeper level.
    """
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    prev_start = 0
    prev_path: tuple[str, ...] = ()
    for offset, level, title in headings:
        if offset < prev_start or offset > text_len:
            continue
        if offset > prev_start:
            sections.append(Section(prev_start, offset, prev_path))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        prev_start, prev_path = offset, tuple(t for _, t in stack)
    if text_len > prev_start:
        sections.append(Section(prev_start, text_len, prev_path))
    return tuple(sections)


class TextBuilder:
    """Accumulates extracted text with block breaks, tracking the current offset.

    ``add`` appends text (NFC-normalised); ``brk`` requests a line break (1) or blank line (2)
    that is emitted lazily before the next text, so no document starts or ends with breaks
    and consecutive breaks collapse.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._len = 0
        self._pending = 0
        self._space = False
        self._last = "\n"

    def brk(self, n: int = 1) -> None:
        self._pending = max(self._pending, n)
        self._space = False

    def space(self) -> None:
        self._space = True

    def flush(self) -> int:
        """Emit pending breaks now; return the offset of the next character."""
        if self._pending and self._len:
            need = self._pending - (1 if self._last == "\n" else 0)
            if need > 0:
                self._emit("\n" * need)
        self._pending = 0
        return self._len

    def add(self, text: str) -> None:
        if not text:
            return
        text = clean_text(text)
        if self._pending:
            self.flush()
            self._space = False
        elif self._space and self._len and not self._last.isspace():
            self._emit(" ")
        self._space = False
        self._emit(text)

    def _emit(self, s: str) -> None:
        self._parts.append(s)
        self._len += len(s)
        self._last = s[-1]

    def text(self) -> str:
        return "".join(self._parts)

    def paragraph(self, text: str, level: int | None, headings: list[tuple[int, int, str]]) -> None:
        """One paragraph of a word-processor document: a heading (``level`` 1-based) stands
        between blank lines and is appended to ``headings`` as ``(offset, level, title)`` with
        its whitespace collapsed; body text ends its line."""
        if level is None:
            self.add(text)
            self.brk(1)
            return
        self.brk(2)
        headings.append((self.flush(), level, _WS.sub(" ", text)))
        self.add(text)
        self.brk(2)
