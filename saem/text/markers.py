"""Citation markers in answers: ``[1]``, ``[1, 2]``, ``[1][2]`` — found, counted and removed by one rule.

    cited_numbers("a [1], b [2, 3]")   # {1, 2, 3}
    strip_markers("a [1], b [2, 3].")  # "a, b."

Every module that reads markers uses :data:`MARKER` or these functions (a second copy of the
rule once read ``[1, 2]`` as citing nothing). Numbers have one to four digits.
"""

from __future__ import annotations

import re

__all__ = ["MARKER", "MARKER_RUN_AT_END", "cited_numbers", "strip_markers"]

MARKER = re.compile(r"\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
"""One marker; group 1 holds its numbers (``"1, 2"``)."""
MARKER_RUN_AT_END = re.compile(rf"(?:\s*{MARKER.pattern})+\s*$")
"""Markers in a row at the end of a text (``"… [1][2] "``)."""
_STRIP = re.compile(rf"\s?{MARKER.pattern}")


def cited_numbers(text: str) -> set[int]:
    """The source numbers ``text`` cites: ``"a [1], b [2, 3]"`` → ``{1, 2, 3}``."""
    return {int(n) for m in MARKER.finditer(text) for n in m.group(1).split(",")}


def strip_markers(text: str) -> str:
    """``text`` without its citation markers (and the one space before each)."""
    return _STRIP.sub("", text)
