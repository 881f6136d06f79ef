"""``SaemRetriever``: the hybrid searcher as a LangChain ``BaseRetriever``.

    retriever = app.as_retriever(k=4)                         # or SaemRetriever(searcher=..., k=4)
    docs = retriever.invoke("LoRA는 무엇을 학습하나요?")
    docs = retriever.invoke("what is top-p?", k=2, filters={"source": {"$glob": "*.md"}})   # per call

Each ``Document`` has ``id`` = the chunk id and the metadata of
:meth:`saem.retrieval.types.Hit.metadata` (chunk_id, source, start, end, heading, score and
the per-stage ranks). When nothing clears the score threshold the list is empty; use
``HybridSearcher.search`` to see the reason. Passes langchain-tests' ``RetrieversIntegrationTests``.
Thread-safe (the searcher is); async calls run the sync search in an executor.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from saem.retrieval.hybrid import HybridSearcher

__all__ = ["SaemRetriever"]

_CALL_KWARGS = frozenset({"k", "filters"})


class SaemRetriever(BaseRetriever):
    """Hybrid retrieval (dense + FTS5 → score fusion → rerank → threshold) over one saem data dir.

    ``k`` and ``filters`` set at construction are defaults; both may be given per ``invoke``.
    Raises ``ValueError`` for a blank query or ``k < 1``, ``TypeError`` for other keywords.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: HybridSearcher = Field(exclude=True)
    k: int = Field(5, ge=1)
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        unknown = set(kwargs) - _CALL_KWARGS
        if unknown:
            raise TypeError(f"unexpected keyword arguments for SaemRetriever: {sorted(unknown)}")
        k = int(kwargs.get("k", self.k))
        filters = kwargs.get("filters", self.filters)
        result = self.searcher.search(query, k=k, filters=filters)
        for warning in result.warnings:
            run_manager.on_text(f"warning: {warning}\n")
        return result.documents()
