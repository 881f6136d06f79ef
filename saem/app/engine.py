"""``ChatEngine``: chat turns (``saem.app.turn``) over sessions, long-term memory and traces.

    engine = ChatEngine(settings, searcher_or_retrieve_fn=app.searcher, chat_model=llm,
                        memory_db=settings.db_path, embeddings=app.embedder)
    answer = engine.ask("top-p는 무엇을 조절하나요?", session_id="s1", user_id="alice")
    for piece in engine.stream("And temperature?", session_id="s1", user_id="alice"):
        print(piece, end="") if isinstance(piece, str) else print("\\n", piece.citations)
    engine.history("s1"); engine.sessions("alice"); engine.memories("alice")
    engine.forget("alice", query="favourite sampler"); engine.trace(answer.trace_id).prompt

Contract:

* Construction opens (and creates) the memory and trace tables; it loads no model. The chat
  model loads on its first call; the embedder on the first memory recall or search.
* ``ask``/``stream`` run one turn (``saem.app.turn``), answered by the documents
  (``saem.app.rag.RagStrategy``) unless another ``strategy`` is given (``saem.app.agent``);
  ``engine.chain`` is the same document turn as an LCEL runnable. Each completed turn is
  appended to the session history and traced. A session belongs to the user who started it
  (``SessionForbidden`` for another user). Blank questions raise ``ValueError``.
* Thread-safe: turns of different sessions may run in parallel threads (the model serialises
  its own use); two turns of one session at once interleave their history writes.
* Tokens are counted with the model's ``count_tokens`` (the rendered chat template) when it has
  one, else estimated (``approx_tokens``); ``count_messages=``/``count_text=`` override both.

Settings read (a ``saem.settings.Settings``): ``n_ctx`` and ``max_tokens`` (unless the model
has its own), ``retrieve_k``, ``history_turns``, ``summary_lines``, ``memory_k``,
``memory_keep``, ``memory_min_score``, ``memory_extract``, ``history_answer_chars``,
``condense``, ``answer_language``, ``answer_mode``, ``abstain_on_missing_terms``,
``prefill_next_turn``, ``prompts_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from sqlalchemy.engine import URL

from saem.app.chain import build_chain
from saem.app.context import ContextBuilder
from saem.app.prompts import PromptTemplates
from saem.app.rag import RagStrategy
from saem.app.traces import TraceStore, TurnTrace
from saem.app.turn import Strategy, TurnDeps, as_retrieve_fn, run_turn
from saem.app.types import Answer
from saem.memory.history import SessionInfo, list_sessions, session_messages
from saem.memory.longterm import LongTermMemory, Memory
from saem.models.protocols import PromptModel
from saem.settings import Settings
from saem.store.chat import MemoryDB

__all__ = ["ChatEngine"]


class ChatEngine:
    """Ask, stream, and inspect conversations (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        searcher_or_retrieve_fn: Any,
        chat_model: BaseChatModel,
        memory_db: MemoryDB | str | Path | URL,
        embeddings: Embeddings,
        prompts: PromptTemplates | None = None,
        count_messages: Callable[[Sequence[BaseMessage]], int] | None = None,
        count_text: Callable[[str], int] | None = None,
    ) -> None:
        self.settings = settings
        self.model = chat_model
        self.db = MemoryDB.open(memory_db)
        self.ltm = LongTermMemory(self.db, embeddings)
        self.traces = TraceStore(self.db)
        self.prompts = prompts or PromptTemplates.from_settings(settings)
        # the loaded model's window wins over the settings it may have been built from
        n_ctx, max_tokens = settings.n_ctx, settings.max_tokens
        if isinstance(chat_model, PromptModel):
            n_ctx, max_tokens = chat_model.n_ctx, chat_model.max_tokens
            if count_messages is None:
                count_messages = chat_model.count_tokens
                if count_text is None:
                    count_text = chat_model.get_num_tokens
        self.builder = ContextBuilder(
            self.prompts,
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            count_messages=count_messages,
            count_text=count_text,
            history_turns=settings.history_turns,
            memory_keep=settings.memory_keep,
            summary_lines=settings.summary_lines,
            history_answer_chars=settings.history_answer_chars,
        )
        self.deps = TurnDeps(
            settings,
            chat_model,
            as_retrieve_fn(searcher_or_retrieve_fn),
            self.db,
            self.ltm,
            self.traces,
            self.prompts,
            self.builder,
        )
        self.rag = RagStrategy(self.deps)
        self.chain: Runnable[Any, Any] = build_chain(self.deps)
        """The LCEL runnable: input ``{"question", "session_id", "user_id"}`` (or a str);
        ``invoke`` → ``Answer``; ``stream`` → ``str`` tokens, then the ``Answer``."""

    def ask(
        self,
        question: str,
        *,
        session_id: str = "default",
        user_id: str = "default",
        strategy: Strategy | None = None,
    ) -> Answer:
        """Answer ``question`` in the session (created on first use); stores the turn and its
        trace. ``strategy``: who answers (default: the documents, ``self.rag``)."""
        answer: Answer | None = None
        for piece in self.stream(question, session_id=session_id, user_id=user_id, strategy=strategy):
            if isinstance(piece, Answer):
                answer = piece
        assert answer is not None  # run_turn always ends with the Answer
        return answer

    def stream(
        self,
        question: str,
        *,
        session_id: str = "default",
        user_id: str = "default",
        strategy: Strategy | None = None,
    ) -> Iterator[str | Answer]:
        """Yield answer tokens (``str``) as they come, then the final ``Answer``. The turn is
        stored when the ``Answer`` is produced (not if the caller stops before)."""
        inp = {"question": question, "session_id": session_id, "user_id": user_id}
        yield from run_turn(self.deps, strategy or self.rag, inp)

    def history(self, session_id: str, *, user_id: str | None = None) -> list[BaseMessage]:
        """The session's messages, oldest first ([] for an unknown session). With ``user_id``,
        another user's session raises ``SessionForbidden``."""
        return session_messages(self.db, session_id, user_id=user_id)

    def sessions(self, user_id: str | None = None) -> list[SessionInfo]:
        """Sessions, most recently updated first: the user's, or everyone's when ``user_id`` is None."""
        return list_sessions(self.db, user_id)

    def memories(self, user_id: str) -> list[Memory]:
        """The user's long-term memories, oldest first."""
        return self.ltm.memories(user_id)

    def forget(self, user_id: str, *, id: int | None = None, query: str | None = None) -> list[Memory]:
        """Delete the user's memory ``id``, or those close to ``query``; returns what was removed."""
        return self.ltm.forget(user_id, id=id, query=query)

    def trace(self, trace_id: str) -> TurnTrace | None:
        """The stored trace of one turn (``Answer.trace_id``), or None."""
        return self.traces.get(trace_id)

    def warm_up(self) -> float:
        """Load the chat model now (seconds taken); otherwise the first turn does it."""
        t = time.perf_counter()
        from saem.models.llamacpp import LlamaCppChatModel

        if isinstance(self.model, LlamaCppChatModel):
            self.model.loaded_engine  # noqa: B018  (loads the GGUF)
        return time.perf_counter() - t
