"""A rule-based sentence splitter for Korean and English, in linear time.

``split_sentences(text)`` returns ``(start, end)`` spans into ``text``: each span is trimmed
(no leading/trailing whitespace), spans are ordered and disjoint, and whitespace-only text
yields none. Boundaries:

* after ``. ! ? …`` (with any closing quotes/brackets) followed by whitespace or the end;
* after ``。 ！ ？`` even without following space (CJK punctuation);
* after a Korean sentence ending ``다. 요. 까? 죠.`` (a Hangul syllable + ``.?!``) even when the
  next sentence follows without a space (``했다.그리고``);
* at every newline (``break_on_newline=False`` keeps single newlines inside a sentence;
  blank lines always break).

Not boundaries: a period not followed by space (decimals ``0.9``, versions ``3.11.7``,
``e.g.,``), known abbreviations (``e.g. i.e. etc. Mr. Dr. vs. cf. Fig. No.`` …), single
capital initials (``J. R. R. Tolkien``), list numbers at line start (``1. Install``) and a
period followed by a lowercase Latin letter (``approx. five``). No model, no dictionary:
deterministic and fast enough for whole corpora.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences", "ABBREVIATIONS"]

ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al fig figs no nos vol vols pp p mr mrs ms dr prof sr jr st mt inc ltd co corp "
    "approx dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ph.d "
    "eq eqs sec ch op ed eds".split()
)

_CLOSERS = "\"'”’)\\]」』》〉"
# Group 1: a Latin-style terminator that needs following whitespace (checked in code);
# group 2: a CJK terminator or a Hangul syllable + terminator (no space needed);
# group 3: a newline run.
_BOUNDARY = re.compile(
    rf"(?P<cjk>[。！？]+[{_CLOSERS}]*|(?<=[\uac00-\ud7a3])[.?!]+[{_CLOSERS}]*(?=[\uac00-\ud7a3]))"
    rf"|(?P<latin>(?:[.!?]+|…+)[{_CLOSERS}]*(?=\s|$))"
    r"|(?P<nl>\n[ \t\f\v\r]*(?:\n[ \t\f\v\r]*)*)"
)
_WORD_BEFORE = re.compile(r"(\S+)$")
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*(?:\d{1,3}|[A-Za-z]|[ivxIVX]{1,4})$")
_NON_SPACE = re.compile(r"\S")


def split_sentences(
    text: str, start: int = 0, end: int | None = None, *, break_on_newline: bool = True
) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` as absolute offsets (see the module docstring)."""
    end = len(text) if end is None else min(end, len(text))
    spans: list[tuple[int, int]] = []
    seg_start = start
    for m in _BOUNDARY.finditer(text, start, end):
        kind = m.lastgroup
        if kind == "nl":
            if not break_on_newline and "\n" not in m.group()[1:]:
                continue
        elif kind == "latin" and not _is_latin_boundary(text, m.start(), m.end(), end):
            continue
        cut = m.start() if kind == "nl" else m.end()
        _append(text, seg_start, cut, spans)
        seg_start = m.end()
    _append(text, seg_start, end, spans)
    return spans


def _is_latin_boundary(text: str, dot: int, after: int, end: int) -> bool:
    if text[dot] != ".":
        return True  # ! ? … always end a sentence when followed by space
    word_match = _WORD_BEFORE.search(text, max(0, dot - 32), dot)
    word = word_match.group(1) if word_match else ""
    stripped = word.lstrip(_CLOSERS + "(\"'“‘[").lower()
    if stripped in ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isupper() and word.isalpha():
        return False  # an initial: "J. R. R."
    if _LIST_NUMBER.search(text, max(0, dot - 8), dot):
        return False  # "1. Install" at line start
    nxt = _NON_SPACE.search(text, after, min(end, after + 64))
    if nxt is not None and "a" <= text[nxt.start()] <= "z" and "\n" not in text[after : nxt.start()]:
        return False  # "approx. five", "cf. the manual"
    return True


def _append(text: str, a: int, b: int, spans: list[tuple[int, int]]) -> None:
    m = _NON_SPACE.search(text, a, b)
    if m is None:
        return
    a = m.start()
    while b > a and text[b - 1].isspace():
        b -= 1
    spans.append((a, b))
