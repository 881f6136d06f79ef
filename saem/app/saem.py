"""``Saem``: the one object an application holds.

    from saem import Saem
    app = Saem(data_dir="./.saem", n_threads=2)   # cheap: nothing is loaded yet
    app.check_models()                            # resolve and load each model, report status
    report = app.ingest("docs/")                  # incremental: run it again, it writes nothing
    print(app.stats())

Construction is cheap; models load lazily, once, when first needed. Every component receives
``app.settings`` explicitly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saem.models.check import ModelStatus, check_models
from saem.settings import Settings

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever

    from saem.ingest.report import IngestProgress, IngestReport, Stats
    from saem.retrieval.hybrid import HybridSearcher

__all__ = ["Saem"]


class Saem:
    """Facade over ingestion, retrieval, memory and the chat chain for one data dir.

    ``embedder=`` injects any LangChain ``Embeddings`` (tests use a deterministic fake);
    without it, ``load_embedder(settings)`` builds the configured one on first need.

    Thread-safety: one ``Saem`` may be shared by threads; model access is serialised inside
    the model wrappers. Ingests into one data dir are serialised by a lock file (across
    processes too): a second one raises ``StorageBusy`` unless given ``wait`` seconds.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config_file: str | Path | None = None,
        embedder: Embeddings | None = None,
        **overrides: Any,
    ):
        if settings is not None and (overrides or config_file):
            settings = settings.with_overrides(**overrides)
        self.settings = settings if settings is not None else Settings.load(overrides, config_file=config_file)
        self._embedder = embedder
        self._lock = threading.Lock()
        self._searcher: HybridSearcher | None = None

    def __repr__(self) -> str:
        return f"Saem(data_dir={str(self.settings.data_dir)!r})"

    def check_models(self, *, load: bool = True) -> list[ModelStatus]:
        """Resolve (and load) the configured models; see ``saem models``."""
        return check_models(self.settings, load=load)

    @property
    def embedder(self) -> Embeddings:
        """The embedder (built on first access, weights loaded on first use). Raises ``ModelError``."""
        with self._lock:
            if self._embedder is None:
                from saem.models.embedders import load_embedder

                self._embedder = load_embedder(self.settings)
            return self._embedder

    def ingest(
        self,
        *paths: str | Path,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        dry_run: bool = False,
        prune: bool = True,
        progress: Callable[[IngestProgress], None] | None = None,
        wait: float = 0.0,
    ) -> IngestReport:
        """Ingest files and folders into the data dir; see ``saem.ingest.pipeline`` for the contract.

        Incremental and idempotent; crash-safe (rerun after a kill). Per-file problems are in
        the report, never raised. Raises ``StorageBusy`` (another ingest runs longer than
        ``wait`` seconds) or ``ModelError`` (no usable embedder, and only if one is needed).
        """
        from saem.ingest.pipeline import ingest

        return ingest(
            self.settings,
            paths,
            embedder=self.embedder,
            include=include,
            exclude=exclude,
            dry_run=dry_run,
            prune=prune,
            progress=progress,
            lock_timeout=wait,
        )

    def stats(self) -> Stats:
        """What the data dir holds (sources, chunks, index vectors, model, dim, generation). Read-only."""
        from saem.ingest.pipeline import stats

        return stats(self.settings)

    @property
    def searcher(self) -> HybridSearcher:
        """The hybrid searcher over the data dir (built once; the index reloads after an ingest).

        ``app.searcher.search(q, k)`` returns a ``RetrievalResult`` with per-stage ranks, timings,
        warnings and — when nothing is relevant — ``abstained`` and ``reason``.
        """
        embedder = self.embedder
        with self._lock:
            if self._searcher is None:
                from saem.retrieval.hybrid import HybridConfig, HybridSearcher
                from saem.retrieval.rerank import load_reranker

                kind = str(getattr(self.settings, "rerank", "auto"))
                if kind == "auto":  # a configured cross-encoder, else none (measured: bench/retrieval.py)
                    kind = "cross-encoder" if self.settings.rerank_model.lower() not in {"none", "off", ""} else "none"
                if kind == "cross-encoder":
                    kind = self.settings.rerank_model
                reranker = load_reranker(kind, self.settings, embedder=embedder)
                self._searcher = HybridSearcher(
                    self.settings.data_dir,
                    embedder,
                    reranker=reranker,
                    config=HybridConfig.from_settings(self.settings),
                )
            return self._searcher

    def retrieve(self, query: str, k: int = 5, filters: dict[str, Any] | None = None) -> list[Document]:
        """The ``k`` most relevant chunks for ``query`` as Documents (hybrid search; see ``saem.retrieval``).

        Metadata: chunk_id, source, start, end, heading, page, score, cosine, and per stage
        dense_rank/lexical_rank/fused_rank/rerank_rank (None when a stage did not see the chunk)
        with their scores. An empty list means nothing cleared the score threshold (or nothing
        is ingested). Read-only and thread-safe. Raises ``ValueError`` for a blank query,
        ``ConfigError`` when the data dir was embedded by another model, ``ModelError``.
        """
        return self.searcher.search(query, k=k, filters=filters).documents()

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:
        """This data dir as a LangChain retriever; ``kwargs``: ``k`` (default ``retrieve_k``), ``filters``."""
        from saem.retrieval.retriever import SaemRetriever

        kwargs.setdefault("k", self.settings.retrieve_k)
        return SaemRetriever(searcher=self.searcher, **kwargs)
