"""Structure- and sentence-aware chunking, sized by the embedder's own tokenizer.

Usage::

    from saem.ingest.chunking import chunk_document

    chunks = chunk_document(doc, count_tokens=lambda s: len(tok(s)), chunk_tokens=256, overlap_tokens=32)
    assert all(c.text == doc.text[c.start:c.end] for c in chunks)

Contract of ``chunk_document``:

* Every chunk is a span: ``chunk.text == doc.text[chunk.start:chunk.end]``; it starts and ends
  on non-whitespace, so whitespace-only chunks never occur. Chunks are ordered by ``start``.
* ``chunk.n_tokens == count_tokens(chunk.text) <= chunk_tokens``. The one exception (the
  indivisible case): a single character whose own count exceeds the budget.
* Top-level sections are never merged: sections are grouped by their heading path down to the
  first level at which the document's headings differ, and no chunk crosses a group. Inside a
  group, sub-sections are merged while small; a chunk that is at least half full ends at a
  sub-section boundary. ``heading_path`` is the common prefix of the paths a chunk covers;
  ``page`` is the page where it starts (pages are not boundaries: paragraphs run across them).
* Chunks are packed from whole sentences (``saem.text.sentences``). A sentence longer than
  the budget is split at word boundaries, or at character boundaries if it has no spaces.
* Consecutive chunks in the same sub-section overlap by whole trailing sentences totalling at
  most ``overlap_tokens`` (counted without the tokenizer's fixed overhead, e.g. ``[CLS]``); if the
  last sentence alone is longer, by a word-aligned tail of it.
* Cost: ``count_tokens`` is called a few times per chunk on chunk-sized text (sizes are
  estimated from a running tokens-per-character ratio, then verified), so total work is linear
  in the text length. Deterministic: the same input gives the same chunks.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from saem.ingest.types import ChunkSpec, LoadedDocument, Section
from saem.text.sentences import split_sentences

__all__ = ["chunk_document"]

_NON_SPACE = re.compile(r"\S")
_SPACE_RUN = re.compile(r"\s+")
_SAMPLE_CHARS = 2000
_FILL = 0.9  # aim below the budget so the first verification usually passes
_SOFT_BOUNDARY = 0.5  # a chunk at least this full ends at a sub-section boundary
_MAX_CHARS_PER_TOKEN = 32  # a span longer than budget * this is split without counting it whole
_MAX_GROW = 3  # extra verified sentences per chunk when the estimate undershoots


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    path: tuple[str, ...]
    page: int | None


def chunk_document(
    doc: LoadedDocument,
    *,
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[ChunkSpec]:
    """Split ``doc.text`` into chunks (see the module docstring for the contract).

    Raises ``ValueError`` if ``chunk_tokens`` is not above the tokenizer's fixed overhead or
    ``overlap_tokens`` is not in ``[0, chunk_tokens)``.
    """
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError(f"need 0 <= overlap_tokens < chunk_tokens, got {overlap_tokens} and {chunk_tokens}")
    overhead = max(0, count_tokens(""))
    if chunk_tokens <= overhead:
        raise ValueError(f"chunk_tokens={chunk_tokens} leaves no room after the tokenizer's {overhead} special tokens")
    text = doc.text
    packer = _Packer(text, count_tokens, chunk_tokens, overlap_tokens, overhead)
    chunks: list[ChunkSpec] = []
    for group in _groups(_regions(doc)):
        units = [_Unit(a, b, r.heading_path, r.page) for r in group for a, b in split_sentences(text, r.start, r.end)]
        if units:
            chunks.extend(packer.pack(units))
    return chunks


def _regions(doc: LoadedDocument) -> list[Section]:
    """The sections, sorted and clipped to be disjoint, plus structure-less gaps between them."""
    out: list[Section] = []
    pos = 0
    n = len(doc.text)
    for s in sorted(doc.sections, key=lambda s: (s.start, s.end)):
        start, end = max(s.start, pos, 0), min(s.end, n)
        if end <= start:
            continue
        if start > pos:
            out.append(Section(pos, start))
        out.append(Section(start, end, s.heading_path, s.page))
        pos = end
    if pos < n:
        out.append(Section(pos, n))
    return out


def _groups(regions: list[Section]) -> Iterator[list[Section]]:
    """Consecutive regions sharing the top-level key (heading path down to the first divergence)."""
    paths = [r.heading_path for r in regions if r.heading_path]
    depth = 0
    if paths:
        first = paths[0]
        depth = min(len(p) for p in paths)
        for p in paths:
            while depth and p[:depth] != first[:depth]:
                depth -= 1
    for _, group in itertools.groupby(regions, key=lambda r: r.heading_path[: depth + 1]):
        yield list(group)


class _Packer:
    def __init__(self, text: str, count_tokens: Callable[[str], int], budget: int, overlap: int, overhead: int) -> None:
        self.text = text
        self._count_tokens = count_tokens
        self.budget = budget
        self.overlap = overlap
        self.overhead = overhead
        self.ratio = 0.25  # content tokens per character, re-measured per group and per chunk

    # -- measuring ---------------------------------------------------------------------------
    def count(self, a: int, b: int) -> int:
        return self._count_tokens(self.text[a:b])

    def estimate(self, a: int, b: int) -> int:
        return self.overhead + math.ceil((b - a) * self.ratio)

    def learn(self, a: int, b: int, n_tokens: int) -> None:
        if b > a and n_tokens > self.overhead:
            self.ratio = max((n_tokens - self.overhead) / (b - a), 1e-3)

    # -- packing -----------------------------------------------------------------------------
    def pack(self, units: list[_Unit]) -> list[ChunkSpec]:
        sample_end = min(units[-1].end, units[0].start + _SAMPLE_CHARS)
        self.learn(units[0].start, sample_end, self.count(units[0].start, sample_end))
        units = [piece for u in units for piece in self._fit(u)]
        chunks: list[ChunkSpec] = []
        carry: tuple[int, int] | None = None  # (first unit index, start offset) of the overlap
        i, n = 0, len(units)
        while i < n:
            a, head = carry if carry is not None else (i, units[i].start)
            b = i + 1
            while b < n:
                if units[b].path != units[b - 1].path and self.estimate(head, units[b - 1].end) >= (
                    _SOFT_BOUNDARY * self.budget
                ):
                    break
                if self.estimate(head, units[b].end) > self.budget:
                    break
                b += 1
            n_tokens = self.count(head, units[b - 1].end)
            while n_tokens > self.budget:
                if b - 1 > i:
                    b = self._shrink(head, i, b, units, n_tokens)
                elif a < i or head > units[i].start:
                    a, head = i, units[i].start  # give up the overlap before a new sentence
                else:
                    break  # indivisible: one character over budget
                n_tokens = self.count(head, units[b - 1].end)
            for _ in range(_MAX_GROW):  # the estimate may have been pessimistic: verify one more
                if b >= n or n_tokens >= self.budget or units[b].path != units[b - 1].path:
                    break
                grown = self.count(head, units[b].end)
                if grown > self.budget:
                    break
                b, n_tokens = b + 1, grown
            self.learn(head, units[b - 1].end, n_tokens)
            covered = units[a:b]
            chunks.append(
                ChunkSpec(
                    text=self.text[head : units[b - 1].end],
                    start=head,
                    end=units[b - 1].end,
                    heading_path=_common_prefix([u.path for u in covered]),
                    page=covered[0].page,
                    n_tokens=n_tokens,
                )
            )
            carry = self._overlap(a, head, b, units) if b < n and units[b].path == units[b - 1].path else None
            i = b
        return chunks

    def _shrink(self, head: int, i: int, b: int, units: list[_Unit], n_tokens: int) -> int:
        """Drop trailing units (at least one, never unit ``i``) to remove the estimated excess."""
        span = max(units[b - 1].end - head, 1)
        per_char = max((n_tokens - self.overhead) / span, 1e-3)
        excess_chars = (n_tokens - self.budget) / per_char
        end_target = units[b - 1].end - excess_chars
        b -= 1
        while b - 1 > i and units[b - 1].end > end_target:
            b -= 1
        return b

    def _overlap(self, a: int, head: int, b: int, units: list[_Unit]) -> tuple[int, int] | None:
        """Where the next chunk starts: whole trailing sentences, else a word-aligned tail."""
        if self.overlap == 0:
            return None
        end = units[b - 1].end
        path = units[b - 1].path

        def start_of(k: int) -> int:
            return head if k == a else units[k].start

        def content(start: int) -> int:
            return self.count(start, end) - self.overhead

        k = b
        while (
            k - 1 >= a
            and units[k - 1].path == path
            and self.estimate(start_of(k - 1), end) - self.overhead <= (self.overlap)
        ):
            k -= 1
        while k < b and content(start_of(k)) > self.overlap:
            k += 1
        if k < b:
            return k, start_of(k)
        # The last sentence alone is longer than the overlap: take a tail of it, from a word start.
        first = start_of(b - 1)
        pos = end - int(self.overlap / self.ratio * _FILL)
        if pos <= first or pos >= end:
            return None
        if (m := _SPACE_RUN.search(self.text, pos, end)) is not None and m.end() < end:
            pos = m.end()
        pos = _char_boundary(self.text, pos, first)
        if pos <= first or content(pos) > self.overlap:
            return None
        return b - 1, pos

    # -- long sentences ----------------------------------------------------------------------
    def _fit(self, unit: _Unit) -> Sequence[_Unit]:
        """``unit`` itself, or word/character-aligned pieces of it that each fit the budget.

        Pieces are sized to ``budget - overlap`` so that a piece plus the overlap carried into
        it still fits one chunk.
        """
        limit = max(self.budget - self.overlap, self.overhead + 1)
        length = unit.end - unit.start
        if self.estimate(unit.start, unit.end) <= _SOFT_BOUNDARY * limit:
            return (unit,)
        if length <= limit * _MAX_CHARS_PER_TOKEN and self.count(unit.start, unit.end) <= limit:
            return (unit,)
        pieces: list[_Unit] = []
        pos, end = unit.start, unit.end
        while pos < end:
            m = _NON_SPACE.search(self.text, pos, end)
            if m is None:
                break
            pos = m.start()
            target = max(1, int((limit - self.overhead) / self.ratio * _FILL))
            cut = self._cut(pos, min(end, pos + target), end)
            n_tokens = self.count(pos, cut)
            while n_tokens > limit and cut - pos > 1:
                shorter = min(cut - pos - 1, int((cut - pos) * limit / n_tokens * _FILL))
                cut = self._cut(pos, pos + max(1, shorter), end)
                n_tokens = self.count(pos, cut)
            self.learn(pos, cut, n_tokens)
            pieces.append(_Unit(pos, cut, unit.path, unit.page))
            pos = cut
        return pieces

    def _cut(self, pos: int, cut: int, end: int) -> int:
        """A cut in ``(pos, cut]``: the last whitespace in its second half, else a character boundary;
        trailing whitespace is excluded from the piece."""
        if cut < end:
            lo = pos + (cut - pos) // 2
            space = max(
                self.text.rfind(" ", lo, cut), self.text.rfind("\t", lo, cut), self.text.rfind("\u3000", lo, cut)
            )
            cut = space if space > pos else _char_boundary(self.text, cut, pos + 1)
        while cut > pos + 1 and self.text[cut - 1].isspace():
            cut -= 1
        return cut


def _char_boundary(text: str, pos: int, floor: int) -> int:
    """Move ``pos`` back so it does not split a base character from its combining marks."""
    while pos > floor and pos < len(text) and unicodedata.combining(text[pos]):
        pos -= 1
    return pos


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    depth = len(first)
    for p in paths[1:]:
        while depth and p[:depth] != first[:depth]:
            depth -= 1
    return first[:depth]
