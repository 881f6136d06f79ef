"""``Saem``: the one object an application holds.

    from saem import Saem
    app = Saem(data_dir="./.saem", n_threads=2)   # cheap: nothing is loaded yet
    app.check_models()                            # resolve and load each model, report status
    report = app.ingest("docs/")                  # incremental: run it again, it writes nothing
    print(app.stats())

Construction is cheap; models load lazily, once, when first needed. Every component receives
``app.settings`` explicitly. Reading and deleting what is stored — ``sessions``, ``history``,
``delete_session``, ``memories``, ``forget(id=...)``, ``trace``, ``stats`` — opens only the
database and never builds a model (``forget(query=...)`` builds the embedder, not the chat model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from saem.models.check import ModelStatus, check_models
from saem.models.embedders import embedder_id
from saem.settings import Settings

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import Runnable
    from pydantic import BaseModel

    from saem.app.rag import RagStrategy
    from saem.app.traces import TraceStore, TurnTrace
    from saem.app.turn import TurnDeps
    from saem.app.types import Answer
    from saem.ingest.report import IngestProgress, IngestReport, Stats
    from saem.memory.history import SessionInfo
    from saem.memory.longterm import LongTermMemory, Memory
    from saem.retrieval.hybrid import HybridSearcher
    from saem.retrieval.types import RetrievalResult
    from saem.store.chat import MemoryDB

__all__ = ["Saem"]


class Saem:
    """Facade over ingestion, retrieval, memory and chat turns for one data dir.

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
        self._chat_model: BaseChatModel | None = None
        self._turn_parts: _Turns | None = None
        self._store: _Store | None = None

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

                kind: str = self.settings.rerank
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

        What the search degraded without failing (a query cut to the length limit, a reranker
        that raised so the fused order was kept) is only logged here: call :meth:`search` for
        the same hits with ``warnings``, the abstention ``reason`` and the timings.
        """
        return self.search(query, k=k, filters=filters).documents()

    def search(self, query: str, k: int = 5, filters: dict[str, Any] | None = None) -> RetrievalResult:
        """:meth:`retrieve` with everything the search knows: a ``RetrievalResult`` whose ``hits``
        are the same chunks (``.documents()`` gives the Documents ``retrieve`` returns), plus
        ``warnings`` (a truncated query, a failed reranker), ``abstained``/``reason``,
        ``reranker``, ``missing_terms`` and ``timings``. Same errors as ``retrieve``."""
        return self.searcher.search(query, k=k, filters=filters)

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:
        """This data dir as a LangChain retriever; ``kwargs``: ``k`` (default ``retrieve_k``), ``filters``.

        The retriever returns Documents like :meth:`retrieve`; each search warning reaches the
        run's callbacks as ``on_text("warning: ...")`` (e.g. ``StdOutCallbackHandler`` prints it).
        """
        from saem.retrieval.retriever import SaemRetriever

        kwargs.setdefault("k", self.settings.retrieve_k)
        return SaemRetriever(searcher=self.searcher, **kwargs)

    # --- conversation ------------------------------------------------------------------------

    @property
    def chat_model(self) -> BaseChatModel:
        """The configured chat model (built on first access; llama.cpp loads on its first call)."""
        with self._lock:
            if self._chat_model is None:
                from saem.models.factory import load_chat_model

                self._chat_model = load_chat_model(self.settings)
            return self._chat_model

    def _turns(self) -> _Turns:
        """What a chat turn runs on (``saem.app.turn``), built on first use around the searcher,
        the chat model and the one store of :meth:`_memory` (its database, long-term memory and
        traces: a turn writes through the same objects ``memories``/``forget``/``trace`` read);
        dropped by :meth:`configure`. Builds the searcher and the chat model (neither loads)."""
        searcher, model, store = self.searcher, self.chat_model, self._memory()
        with self._lock:
            if self._turn_parts is None:
                from saem.app.chain import build_chain
                from saem.app.rag import RagStrategy
                from saem.app.turn import TurnDeps

                deps = TurnDeps.build(self.settings, model, searcher, store.db, store.ltm, store.traces)
                self._turn_parts = _Turns(deps, RagStrategy(deps), build_chain(deps))
            return self._turn_parts

    def _memory(self) -> _Store:
        """The store alone: the memory database of ``settings.db_path`` (opened, and its tables
        created, on first use; shared with the turns), long-term memory over it whose embedder is
        built only when something is embedded, and the trace store. Builds no model."""
        with self._lock:
            path = self.settings.db_path
            if self._store is None or self._store.path != path:
                from saem.app.traces import TraceStore
                from saem.memory.longterm import LongTermMemory
                from saem.store.chat import MemoryDB

                db = MemoryDB.open(path)
                ltm = LongTermMemory(db, _deferred_embeddings(lambda: self.embedder))
                self._store = _Store(path, db, ltm, TraceStore(db))
            return self._store

    @property
    def chain(self) -> Runnable[Any, Any]:
        """The document turn of ``ask`` as an LCEL runnable (the same steps, each a named
        runnable): input ``{"question", "session_id", "user_id"}``; tokens, then the ``Answer``."""
        return self._turns().chain

    def ask(
        self,
        question: str,
        *,
        session_id: str = "default",
        user_id: str = "default",
        tools: str | Sequence[str] | None = None,
        agent: str = "router",
        confirm: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> Answer:
        """Answer ``question`` from the documents, in the session; the turn is stored and traced.

        With ``tools`` (``"default"`` or a list of tool names) an agent answers instead
        (``agent="router"``: one grammar-constrained choice, fit for small models; ``"loop"``:
        model → tools → model); the ``Answer`` then also carries ``agent``, ``tool_calls``,
        ``steps``, ``stop_reason`` and ``choice`` (what an ``AgentResult`` holds). Destructive
        tools run only when ``confirm(name, args)`` says yes. An agent turn is stored and traced
        like a document turn, so the next ``ask`` remembers it; ``SessionForbidden`` for another
        user's session, ``ValueError`` for a blank question or an unknown ``agent``.
        """
        if tools is None:
            from saem.app.turn import ask_turn

            turns = self._turns()
            return ask_turn(turns.deps, turns.rag, question, session_id=session_id, user_id=user_id)
        return self._agent(question, session_id=session_id, user_id=user_id, tools=tools, agent=agent, confirm=confirm)

    def stream(self, question: str, *, session_id: str = "default", user_id: str = "default") -> Iterator[Any]:
        """Yield answer tokens (``str``) as they come, then the final ``Answer``. The turn is
        stored when the ``Answer`` is produced (not if the caller stops before)."""
        from saem.app.turn import run_turn

        turns = self._turns()
        return run_turn(turns.deps, turns.rag, {"question": question, "session_id": session_id, "user_id": user_id})

    def history(self, session_id: str) -> list[BaseMessage]:
        """The session's messages, oldest first ([] for an unknown session). Store only."""
        from saem.memory.history import session_messages

        return session_messages(self._memory().db, session_id)

    def sessions(self, user_id: str | None = None) -> list[SessionInfo]:
        """Sessions, most recent first (one user's, or all). Store only."""
        from saem.memory.history import list_sessions

        return list_sessions(self._memory().db, user_id)

    def delete_session(self, session_id: str, *, user_id: str = "default") -> bool:
        """Delete one of the user's sessions with everything holding its text (messages, title,
        state, turn traces) in one transaction, overwritten on disk and checkpointed out of the
        WAL; False, deleting nothing, if the user has no such session (another user's included).
        The user's long-term memories stay (see :meth:`forget`). Store only."""
        from saem.memory.history import delete_session

        return delete_session(self._memory().db, user_id, session_id)

    def memories(self, user_id: str) -> list[Memory]:
        """The user's long-term memories, oldest first. Store only."""
        return self._memory().ltm.memories(user_id)

    def forget(self, user_id: str, *, id: int | None = None, query: str | None = None) -> list[Memory]:
        """Remove the user's memory ``id`` or those close to ``query``; returns what was removed.
        The removed texts are also redacted from the user's turn traces, so no copy remains (see
        ``LongTermMemory.forget``). By ``id``: store only; by ``query``: builds the embedder."""
        return self._memory().ltm.forget(user_id, id=id, query=query)

    def trace(self, trace_id: str) -> TurnTrace | None:
        """The stored trace of a turn (rendered prompt, budget, timings, retrieved ids, tool calls),
        or None. Store only."""
        return self._memory().traces.get(trace_id)

    def configure(self, **changes: Any) -> None:
        """Change settings for the next turns (e.g. ``temperature=0``); validated like any setting."""
        self.settings = self.settings.with_overrides(**changes)
        with self._lock:
            model = self._chat_model
            if model is not None:
                fields = {k: v for k, v in changes.items() if k in type(model).model_fields}
                self._chat_model = model.model_copy(update=fields) if fields else model
            self._turn_parts = None  # rebuilt on next use around the same loaded model

    # --- agents and extraction -----------------------------------------------------------------

    def _agent(
        self,
        question: str,
        *,
        session_id: str,
        user_id: str,
        tools: str | Sequence[str],
        agent: str,
        confirm: Callable[[str, dict[str, Any]], bool] | None,
    ) -> Answer:
        """One agent turn: the document turn's steps (history, language, storage, trace) answered
        by an :class:`~saem.app.agent.AgentStrategy` over the built-in tools bound to this data dir."""
        from saem.app.agent import AgentStrategy, tool_session
        from saem.app.turn import ask_turn

        deps = self._turns().deps
        session = tool_session(
            tools,
            retrieve=lambda q, k: self.retrieve(q, k),
            memory=deps.ltm,
            user_id=user_id,
            list_sources=lambda: [s.path for s in self._sources()],
            confirm=confirm,
        )
        strategy = AgentStrategy(
            self.chat_model,
            session,
            agent=agent,
            history_turns=self.settings.history_turns,
            loop=self.settings.agent_loop,
        )
        return ask_turn(deps, strategy, question, session_id=session_id, user_id=user_id)

    def _sources(self) -> list[Any]:
        from saem.store.catalogue import Catalogue, Source

        cat = Catalogue.open(self.settings.db_path, readonly=True)
        try:
            with cat.read() as s:
                return list(s.query(Source).order_by(Source.path).all())
        finally:
            cat.close()

    def extract(
        self, schema: type[BaseModel], *, text: str | None = None, query: str | None = None, retries: int = 2
    ) -> BaseModel:
        """A validated ``schema`` object from ``text`` or from the documents ``query`` retrieves.

        Retries show the model its validation error; after ``retries`` it raises
        ``StructuredOutputError`` with the raw output.
        """
        from saem.agents.extract import extract

        if (text is None) == (query is None):
            raise ValueError("extract needs exactly one of text= or query=")
        if text is not None:
            return extract(self.chat_model, schema, text=text, retries=retries)
        docs = self.retrieve(query or "", self.settings.retrieve_k)
        return extract(self.chat_model, schema, documents=docs, retries=retries)


class _Store(NamedTuple):
    path: Path
    db: MemoryDB
    ltm: LongTermMemory
    traces: TraceStore


class _Turns(NamedTuple):
    deps: TurnDeps
    rag: RagStrategy  # the document answer: stateless, one for every turn and thread
    chain: Runnable[Any, Any]


def _deferred_embeddings(get: Callable[[], Embeddings]) -> Embeddings:
    """An ``Embeddings`` that calls ``get()`` when it first embeds (or is asked its ``model_id``),
    so a store opened to read or delete never resolves an embedding model."""
    from langchain_core.embeddings import Embeddings

    class Deferred(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return get().embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            return get().embed_query(text)

        @property
        def model_id(self) -> str:
            return embedder_id(get())

    return Deferred()
