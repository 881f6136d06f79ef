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
from saem.settings import Settings

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import Runnable
    from pydantic import BaseModel

    from saem.agents.types import AgentResult
    from saem.app.engine import ChatEngine
    from saem.app.traces import TraceStore, TurnTrace
    from saem.app.types import Answer
    from saem.ingest.report import IngestProgress, IngestReport, Stats
    from saem.memory.history import SessionInfo
    from saem.memory.longterm import LongTermMemory, Memory
    from saem.retrieval.hybrid import HybridSearcher
    from saem.retrieval.types import RetrievalResult
    from saem.store.chat import MemoryDB

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
        self._chat_model: BaseChatModel | None = None
        self._engine: ChatEngine | None = None
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

    @property
    def engine(self) -> ChatEngine:
        """The chat engine: chain, sessions, long-term memory and traces in ``saem.db``."""
        searcher, model, embedder, db = self.searcher, self.chat_model, self.embedder, self._memory().db
        with self._lock:
            if self._engine is None:
                from saem.app.engine import ChatEngine

                self._engine = ChatEngine(
                    self.settings,
                    searcher_or_retrieve_fn=searcher,
                    chat_model=model,
                    memory_db=db,
                    embeddings=embedder,
                )
            return self._engine

    def _memory(self) -> _Store:
        """The store alone: the memory database of ``settings.db_path`` (opened, and its tables
        created, on first use; shared with the engine), long-term memory over it whose embedder is
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
        """The LCEL runnable behind ``ask``: input ``{"question", "session_id", "user_id"}``."""
        return self.engine.chain

    def ask(
        self,
        question: str,
        *,
        session_id: str = "default",
        user_id: str = "default",
        tools: str | Sequence[str] | None = None,
        agent: str = "router",
        confirm: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> Answer | AgentResult:
        """Answer ``question`` from the documents, in the session; the turn is stored and traced.

        With ``tools`` (``"default"`` or a list of tool names) an agent answers instead
        (``agent="router"``: one grammar-constrained choice, fit for small models; ``"loop"``:
        model → tools → model) and an ``AgentResult`` comes back (``text``, ``tool_calls``,
        ``steps``, ``trace_id``). Destructive tools run only when ``confirm(name, args)`` says yes.
        An agent turn is stored and traced like a chain turn, so the next ``ask`` remembers it;
        ``SessionForbidden`` for another user's session, ``ValueError`` for a blank question.
        """
        if tools is None:
            return self.engine.ask(question, session_id=session_id, user_id=user_id)
        return self._agent(question, session_id=session_id, user_id=user_id, tools=tools, agent=agent, confirm=confirm)

    def stream(self, question: str, *, session_id: str = "default", user_id: str = "default") -> Iterator[Any]:
        """Yield answer tokens (``str``) as they come, then the final ``Answer``."""
        return self.engine.stream(question, session_id=session_id, user_id=user_id)

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
            self._engine = None  # rebuilt on next use around the same loaded model

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
    ) -> AgentResult:
        """One agent turn, stored like a chain turn: the session's recent turns go in as history
        (``SessionForbidden`` for another user's session, before any model call); afterwards the
        question and the answer are appended in one transaction (the answer's
        ``response_metadata`` holds the trace id and a summary of the tool calls; tool messages
        are not stored, so the chain's context builder sees a plain user/assistant turn) and the
        steps are traced. Refused or failed tool calls are part of the stored turn; an error of
        the model propagates and stores nothing (as in the chain)."""
        import dataclasses
        import time
        import uuid

        from langchain_core.messages import AIMessage, HumanMessage

        from saem.agents.builtin import DEFAULT_TOOLS, builtin_tools
        from saem.agents.loop import AgentLoop
        from saem.agents.registry import ToolRegistry
        from saem.agents.router import Router
        from saem.app.language import detect_language
        from saem.app.traces import agent_trace
        from saem.memory.history import SQLiteChatMessageHistory

        question = question.strip()
        if not question:
            raise ValueError("the question is empty: ask something")
        if agent not in ("router", "loop"):
            raise ValueError(f"agent must be 'router' or 'loop', not {agent!r}")
        t0 = time.perf_counter()
        engine = self.engine
        history = SQLiteChatMessageHistory(session_id, engine.db, user_id)
        turns = int(getattr(self.settings, "history_turns", 4))
        earlier = _plain_turns(history.last(2 * turns + 2), turns)  # SessionForbidden for another user
        registry = ToolRegistry(
            builtin_tools(
                retrieve=lambda q, k: self.retrieve(q, k),
                memory=engine.ltm,
                user_id=user_id,
                list_sources=lambda: [s.path for s in self._sources()],
            ),
            timeout=30.0,
            max_tool_calls=8,
        )
        allow = [n for n in DEFAULT_TOOLS if n in registry] if tools == "default" else list(tools)
        session = registry.session(allow=allow, confirm=confirm)
        runner: Router | AgentLoop
        if agent == "router":
            runner = Router(self.chat_model, session)
        else:
            runner = AgentLoop(self.chat_model, session)
        timings = {"load": time.perf_counter() - t0}
        result: AgentResult = runner.run(question, history=earlier)
        trace_id = uuid.uuid4().hex
        result = dataclasses.replace(result, trace_id=trace_id)

        t = time.perf_counter()
        summary = [
            {"name": c.name, "status": c.status, "reason": c.reason, "summary": c.summary} for c in result.tool_calls
        ]
        meta = {"trace_id": trace_id, "agent": agent, "stop_reason": result.stop_reason, "tool_calls": summary}
        history.append([HumanMessage(question), AIMessage(result.text, response_metadata=meta)])
        timings["persist"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        prompt = _render_prompt(runner.model, runner.last_messages, session.tools if agent == "loop" else None)
        forced = getattr(self.settings, "answer_language", "auto")
        language = forced if forced in ("ko", "en") else detect_language(question, default="en") or "en"
        engine.traces.add(
            agent_trace(
                result,
                trace_id=trace_id,
                session_id=session_id,
                user_id=user_id,
                question=question,
                agent=agent,
                language=language,
                prompt=prompt,
                prompt_tokens=engine.builder.count_text(prompt) if prompt else 0,
                timings=timings,
            )
        )
        return result

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
            real = get()
            return str(getattr(real, "model_id", None) or type(real).__name__)

    return Deferred()


def _plain_turns(messages: Sequence[BaseMessage], turns: int) -> list[BaseMessage]:
    """The last ``turns`` complete turns of ``messages`` as plain user/assistant text messages
    (tool messages, tool-call-only replies and metadata left out; citation markers removed,
    since they pointed at another turn's documents)."""
    from langchain_core.messages import AIMessage, HumanMessage

    from saem.app.context import strip_markers

    pairs: list[list[BaseMessage]] = []
    for m in messages:
        if m.type == "human":
            pairs.append([HumanMessage(m.text)])
        elif m.type == "ai" and m.text.strip() and pairs and len(pairs[-1]) == 1:
            pairs[-1].append(AIMessage(strip_markers(m.text).strip()))
    complete = [p for p in pairs if len(p) == 2]
    return [m for p in complete[-turns:] for m in p] if turns > 0 else []


def _render_prompt(model: Any, messages: Sequence[BaseMessage], tools: Sequence[Any] | None) -> str:
    """The prompt of an agent's last model call as the model renders it (its chat template, with
    the bound tools), else a plain rendering."""
    from saem.app.context import plain_render

    if not messages:
        return ""
    render = getattr(model, "render_prompt", None)
    if callable(render):
        try:
            return str(render(list(messages), tools=tools) if tools else render(list(messages)))
        except Exception:  # a prompt that cannot be rendered must not lose the stored turn
            pass
    return plain_render(messages)
