"""Plain types passed between the ingestion stages: load → chunk → embed → catalogue.

A loader turns a file into a ``LoadedDocument``: the extracted text (the coordinate system for
every span) plus its structure. The chunker turns that into ``ChunkSpec`` s whose
``text == doc.text[start:end]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saem.store.catalogue import ChunkSpec  # the shape the store writes; made by the chunker

__all__ = ["Section", "LoadedDocument", "ChunkSpec", "CHUNKER_VERSION"]

# Bump when chunk boundaries change for the same input: stored chunks of an older version are
# re-made on the next ingest. Also bumped when the lexical analyzer's tokens change (the FTS5
# row is written with the chunk). 2: letter and digit runs are separate tokens ("q4" → "q", "4").
# 3: one-syllable Korean verb / adjective / adverb stems are no longer indexed. 4: lexical
# search indexes each chunk's headings with its text; English words are stemmed.
CHUNKER_VERSION = "4"


@dataclass(frozen=True)
class Section:
    """A structural region of the extracted text: ``text[start:end]``."""

    start: int
    end: int
    heading_path: tuple[str, ...] = ()  # e.g. ("Decoding", "Top-p")
    page: int | None = None  # 1-based, PDFs only


@dataclass(frozen=True)
class LoadedDocument:
    """What a loader extracted from one file."""

    text: str
    sections: tuple[Section, ...] = ()  # ordered, non-overlapping; may not cover all text
    title: str | None = None
    mime: str = "text/plain"
    encoding: str | None = None  # detected encoding for text formats
    metadata: dict[str, str] = field(default_factory=dict)
