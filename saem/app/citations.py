"""Citations: find the ``[n]`` markers in an answer, map them to the turn's sources, check quotes.

    cites = resolve_citations('Top-p keeps "the smallest set of tokens" [1]. See [9].', sources)
    [(c.n, c.status) for c in cites]        # [(1, 'verified'), (9, 'invalid')]

Markers: ``[1]``, ``[1, 2]`` and ``[1][2]`` (the rule: :mod:`saem.text.markers`). Each distinct
``(n, quote)`` becomes one :class:`~saem.app.types.Citation`, in order of first appearance. A *quote* is text in double
quotes (``"…"``, ``“…”``) or Korean brackets (``「…」``, ``『…』``) that ends right before the
marker (only spaces or ``.,:;`` between). It is checked against the text of the cited chunk *as
the model saw it*: exactly first (then ``quote_start``/``quote_end`` are offsets in the source
document), else after normalising case, width (NFKC), whitespace and quote/dash styles; an
ellipsis inside a quote matches its pieces in order. See ``Citation`` for the statuses.

The *claim* of a marker is the sentence it sits in (Korean-aware splitter); ``overlap`` is the
share of the claim's words (Hangul as syllable bigrams) found in the chunk — information for a
reader, not a verdict (an answer in Korean may cite an English chunk). Pure functions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

from saem.app.types import Citation, Source
from saem.text.markers import MARKER, MARKER_RUN_AT_END
from saem.text.sentences import split_sentences

__all__ = ["Marker", "parse_markers", "resolve_citations", "verify_quote"]

_QUOTE_BEFORE = re.compile(r"(?:\"([^\"\n]{2,}?)\"|“([^”\n]{2,}?)”|「([^」\n]{2,}?)」|『([^』\n]{2,}?)』)[\s.,:;]*$")
_WORDS = re.compile(r"[0-9a-z]+|[\uac00-\ud7a3]+")
_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.)\s*")
_FOLD = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "\u00a0": " "})


@dataclass(frozen=True)
class Marker:
    """One number inside a marker: ``n``, where the marker sits, the quote and claim before it."""

    n: int
    start: int
    end: int
    quote: str | None
    claim: str


def parse_markers(text: str) -> list[Marker]:
    """Every cited number in ``text``, in order (``[1, 2]`` gives two markers at one place)."""
    sentences = split_sentences(text)
    out: list[Marker] = []
    for m in MARKER.finditer(text):
        before = text[max(0, m.start() - 600) : m.start()]
        # markers in a row ("[1][2]") share the quote in front of the first
        before = MARKER_RUN_AT_END.sub("", before)
        q = _QUOTE_BEFORE.search(before)
        quote = next((g for g in q.groups() if g), None) if q else None
        claim = _claim(text, sentences, m.start())
        for raw in m.group(1).split(","):
            out.append(Marker(int(raw), m.start(), m.end(), quote.strip() if quote else None, claim))
    return out


def _claim(text: str, sentences: list[tuple[int, int]], at: int) -> str:
    for a, b in sentences:
        if a <= at <= b:
            return re.sub(r"\s+([.,;:!?。])", r"\1", MARKER.sub("", text[a:b])).strip()
    return ""


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).lower()
    return re.sub(r"\s+", " ", text).strip()


def _features(text: str) -> set[str]:
    out: set[str] = set()
    for tok in _WORDS.findall(_norm(text)):
        if "\uac00" <= tok[0] <= "\ud7a3" and len(tok) > 1:
            out.update(tok[i : i + 2] for i in range(len(tok) - 1))
        elif len(tok) > 1 or tok.isdigit():
            out.add(tok)
    return out


def verify_quote(quote: str, chunk_text: str) -> tuple[bool, int | None]:
    """Whether ``quote`` occurs in ``chunk_text`` (see the module docstring); the exact offset
    in ``chunk_text`` when it occurs verbatim, else None."""
    quote = quote.strip().rstrip(".,;:")
    if not quote:
        return False, None
    at = chunk_text.find(quote)
    if at != -1:
        return True, at
    hay = _norm(chunk_text)
    pos = 0
    for piece in (p for p in _ELLIPSIS.split(_norm(quote)) if p):
        found = hay.find(piece, pos)
        if found == -1:
            return False, None
        pos = found + len(piece)
    return pos > 0, None


def resolve_citations(text: str, sources: Sequence[Source]) -> list[Citation]:
    """The citations of ``text`` against ``sources`` (numbered 1..n as shown to the model)."""
    by_n = {s.n: s for s in sources}
    out: list[Citation] = []
    seen: set[tuple[int, str | None]] = set()
    for mk in parse_markers(text):
        key = (mk.n, mk.quote)
        if key in seen:
            continue
        seen.add(key)
        src = by_n.get(mk.n)
        if src is None:
            reason = (
                f"there is no source [{mk.n}]; the sources are [1]..[{len(sources)}]"
                if sources
                else ("there were no sources in this turn")
            )
            out.append(Citation(n=mk.n, status="invalid", quote=mk.quote, claim=mk.claim, reason=reason))
            continue
        claim_words = _features(mk.claim)
        overlap = len(claim_words & _features(src.text)) / len(claim_words) if claim_words else None
        base = Citation(
            n=mk.n,
            status="unverified",
            chunk_id=src.chunk_id,
            source=src.source,
            start=src.start,
            end=src.end,
            heading=src.heading,
            page=src.page,
            quote=mk.quote,
            claim=mk.claim,
            overlap=overlap,
            reason="no quote to check",
        )
        if mk.quote is None:
            out.append(base)
            continue
        ok, at = verify_quote(mk.quote, src.text)
        if not ok:
            out.append(replace(base, status="unsupported", reason=f"the quote is not in source [{mk.n}]"))
            continue
        q_start = q_end = None
        if at is not None and src.start is not None:
            q_start = src.start + at
            q_end = q_start + len(mk.quote.strip().rstrip(".,;:"))
        out.append(
            replace(base, status="verified", quote_start=q_start, quote_end=q_end, reason="quote found in the source")
        )
    return out
