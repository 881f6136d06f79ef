"""Result types of one retrieval: every hit with its rank and score at each stage.

    result = searcher.search("토크나이저는 무엇인가요?", k=5)
    if result.abstained:
        print("nothing relevant:", result.reason)
    for hit in result.hits:
        print(hit.rank, hit.score, hit.source, hit.dense_rank, hit.lexical_rank, hit.rerank_rank)
    docs = result.documents()          # LangChain Documents, metadata as in ``Hit.metadata``

Ranks are 1-based; a stage that did not see a hit leaves its rank (and score) ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langchain_core.documents import Document

__all__ = ["Hit", "RetrievalResult", "Searcher"]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk.

    ``score`` is what the final order is by: the reranker's score when the hit was reranked,
    else the fused score (relative score fusion by default, see ``saem.retrieval.hybrid``).
    ``cosine`` is the query–chunk cosine from the stored embedding (available for every
    candidate; the threshold is applied to it).
    """

    chunk_id: int
    text: str
    source: str
    start: int
    end: int
    heading: str
    page: int | None
    rank: int
    score: float
    fused_score: float
    fused_rank: int
    cosine: float
    dense_rank: int | None = None
    dense_score: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None
    rerank_rank: int | None = None
    rerank_score: float | None = None

    def metadata(self) -> dict[str, Any]:
        """The ``Document.metadata`` saem returns: ids, span, heading, scores and per-stage ranks."""
        return {
            "chunk_id": self.chunk_id,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "heading": self.heading,
            "page": self.page,
            "score": self.score,
            "rank": self.rank,
            "cosine": self.cosine,
            "dense_rank": self.dense_rank,
            "dense_score": self.dense_score,
            "lexical_rank": self.lexical_rank,
            "lexical_score": self.lexical_score,
            "fused_rank": self.fused_rank,
            "fused_score": self.fused_score,
            "rerank_rank": self.rerank_rank,
            "rerank_score": self.rerank_score,
        }

    def document(self) -> Document:
        return Document(page_content=self.text, metadata=self.metadata(), id=str(self.chunk_id))


@dataclass
class RetrievalResult:
    """What one query returned, and why.

    ``abstained`` is true when nothing cleared the score threshold (or nothing matched at all):
    ``hits`` is then empty and ``reason`` says which. ``warnings`` lists what was degraded but
    did not fail the query (a truncated query, a reranker that raised and was skipped).
    ``timings`` are seconds per stage. ``missing_terms`` are the question's name-like terms
    that no chunk contains (:mod:`saem.retrieval.coverage`); the hits are still returned, and
    the answer layer decides whether to abstain.
    """

    query: str
    hits: list[Hit]
    abstained: bool = False
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    reranker: str | None = None
    candidates: int = 0
    missing_terms: list[str] = field(default_factory=list)

    def documents(self) -> list[Document]:
        return [h.document() for h in self.hits]

    def __len__(self) -> int:
        return len(self.hits)


@runtime_checkable
class Searcher(Protocol):
    """The retrieval seam a turn uses: one method. ``HybridSearcher`` is one; ``saem.testing.
    FakeSearcher`` another; tests/retrieval/test_searcher_contract.py holds both to it.

    Contract: at most ``k`` hits, best first (``score`` descending, ``rank`` 1, 2, …); an
    abstention has no hits and a ``reason``; a malformed ``filters`` is a ``ValueError``.
    """

    def search(self, query: str, k: int = 5, *, filters: Mapping[str, Any] | None = None) -> RetrievalResult: ...
