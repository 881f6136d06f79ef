"""One chat turn, whichever strategy answers it: load → answer strategy → record.

    deps = TurnDeps.build(settings, model, searcher, db, ltm, traces)   # what ``Saem`` holds
    for piece in run_turn(deps, RagStrategy(deps), {"question": "top-p는?", "session_id": "s1"}):
        print(piece if isinstance(piece, str) else piece.citations)   # tokens, then the Answer
    answer = ask_turn(deps, RagStrategy(deps), "And temperature?", session_id="s1")

Steps (the same for every strategy):

1. :func:`start` — check the question, decide the answer language (:func:`answer_language`:
   ``answer_language`` forces one, else the question's Hangul share), read the session's recent
   history **once** (``SessionForbidden`` for another user's session, before any model call).
   For a strategy with ``memory`` (the document answer): an explicit "remember …"/"forget …"
   message is carried out here and answered without retrieval or a model call; otherwise the
   user's memories are recalled (top ``memory_k`` above ``memory_min_score``, in id order so the
   prompt prefix stays byte-stable).
2. the strategy's ``answer(state)`` — yields ``str`` tokens, then one :class:`Draft`:
   ``saem.app.rag.RagStrategy`` (condense → retrieve → context → generate) or
   ``saem.app.agent.AgentStrategy`` (router, or the model → tools → model loop).
3. :func:`record` — the :class:`~saem.app.types.Answer`, then the question and the answer are
   appended to the session (the answer's ``response_metadata`` holds the trace id, and for an
   agent its name, stop reason and a summary of the tool calls), a memory command's facts get
   their provenance, facts are extracted (``memory_extract``), and the trace is written. Then,
   for a ``memory`` strategy (``prefill_next_turn``), the next turn's leading messages are
   evaluated into the model's KV cache in the background, from the history already in hand.

Transactions: the history append, the provenance update and the trace are separate short write
transactions today, all after every model call except fact extraction's (which needs the stored
question's ``seq``). ``SQLiteChatMessageHistory.append`` and ``LongTermMemory.set_source`` take
no session yet; :meth:`TraceStore.add` does (``session=``), ready to join them in one.

If the consumer stops iterating early the turn is not stored. Errors of the model or the
storage propagate; nothing is written before the answer is complete. Turns of different
sessions may run in parallel threads over one ``TurnDeps`` (the model serialises its own use);
two turns of one session at once each store their question and answer together.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from sqlalchemy.exc import OperationalError

from saem.app.citations import resolve_citations
from saem.app.context import BuiltContext, ContextBuilder, ContextInput
from saem.app.language import Language, detect_language
from saem.app.prompts import PromptTemplates
from saem.app.traces import TraceStore, TurnTrace, agent_trace
from saem.app.types import Answer, BudgetReport
from saem.memory.history import SQLiteChatMessageHistory
from saem.memory.longterm import LongTermMemory, parse_command
from saem.models.protocols import PromptModel
from saem.retrieval.types import RetrievalResult, Searcher
from saem.settings import Settings
from saem.store.chat import MemoryDB

if TYPE_CHECKING:
    from saem.agents.types import AgentResult

__all__ = [
    "Draft",
    "Retrieved",
    "Strategy",
    "TurnDeps",
    "TurnState",
    "answer_language",
    "as_retrieve_fn",
    "ask_turn",
    "finish",
    "record",
    "run_turn",
    "start",
    "timed",
]

logger = logging.getLogger("saem.app")


@dataclass
class Retrieved:
    """What the retrieve stage got. ``warnings``: what retrieval degraded without failing (a
    truncated query, a reranker that raised and was skipped); they go into the turn's trace."""

    documents: list[Document]
    abstained: bool
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    missing_terms: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def as_retrieve_fn(
    obj: Searcher | Callable[[str, int], RetrievalResult | list[Document]],
) -> Callable[[str, int], Retrieved]:
    """Normalise a :class:`~saem.retrieval.types.Searcher` or a callable ``(query, k) ->
    RetrievalResult | list[Document]`` to ``(query, k) -> Retrieved``. A data dir whose
    database has no catalogue yet (memory used before any ingest) abstains."""
    if isinstance(obj, Searcher):
        searcher = obj
        fn: Callable[[str, int], RetrievalResult | list[Document]] = lambda q, k: searcher.search(q, k=k)  # noqa: E731
    elif callable(obj):
        fn = obj
    else:
        raise TypeError("searcher_or_retrieve_fn must have .search(q, k) or be a callable (q, k)")

    def retrieve(query: str, k: int) -> Retrieved:
        try:
            out = fn(query, k)
        except OperationalError as err:
            # the memory tables were created in saem.db before any ingest: no catalogue yet
            if "no such table" not in str(err):
                raise
            return Retrieved([], True, "nothing is ingested in this data dir yet")
        if isinstance(out, RetrievalResult):
            docs = out.documents()
            return Retrieved(docs, out.abstained or not docs, out.reason, dict(out.timings), list(out.missing_terms),
                             [str(w) for w in out.warnings])  # fmt: skip
        docs = list(out)
        return Retrieved(docs, not docs, None if docs else "no chunk was retrieved")

    return retrieve


@dataclass
class TurnDeps:
    """Everything a turn needs; :meth:`build` makes it from the settings."""

    settings: Settings
    model: BaseChatModel
    retrieve: Callable[[str, int], Retrieved]
    db: MemoryDB
    ltm: LongTermMemory
    traces: TraceStore
    prompts: PromptTemplates
    builder: ContextBuilder

    @classmethod
    def build(
        cls,
        settings: Settings,
        model: BaseChatModel,
        retrieve: Searcher | Callable[[str, int], RetrievalResult | list[Document]],
        db: MemoryDB,
        ltm: LongTermMemory,
        traces: TraceStore,
        *,
        prompts: PromptTemplates | None = None,
        count_messages: Callable[[Sequence[BaseMessage]], int] | None = None,
        count_text: Callable[[str], int] | None = None,
    ) -> TurnDeps:
        """The turn's dependencies over one store (``db`` with its ``ltm`` and ``traces``: pass
        the ones the caller reads and deletes through, so there is one of each). Cheap: loads no
        model (the chat model loads on its first call, the embedder on the first recall or search).

        ``retrieve``: a :class:`~saem.retrieval.types.Searcher` or ``(query, k)`` callable (see
        :func:`as_retrieve_fn`). The prompts are ``settings.prompts_dir``'s unless given. A
        :class:`~saem.models.protocols.PromptModel` brings its own window (``n_ctx``,
        ``max_tokens``: the loaded model's wins over the settings it may have been built from) and
        counts tokens on its rendered chat template; any other model gets the settings' window and
        estimates (``approx_tokens``). ``count_messages=``/``count_text=`` override both.

        Settings a turn reads: ``n_ctx`` and ``max_tokens`` (unless the model has its own),
        ``retrieve_k``, ``history_turns``, ``summary_lines``, ``memory_k``, ``memory_keep``,
        ``memory_min_score``, ``memory_extract``, ``history_answer_chars``, ``condense``,
        ``answer_language``, ``answer_mode``, ``abstain_on_missing_terms``, ``prefill_next_turn``,
        ``prompts_dir``. ``ConfigError`` when ``max_tokens`` leaves no room in ``n_ctx``.
        """
        prompts = prompts or PromptTemplates.from_settings(settings)
        n_ctx, max_tokens = settings.n_ctx, settings.max_tokens
        if isinstance(model, PromptModel):
            n_ctx, max_tokens = model.n_ctx, model.max_tokens
            if count_messages is None:
                count_messages = model.count_tokens
                if count_text is None:
                    count_text = model.get_num_tokens
        builder = ContextBuilder(
            prompts,
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            count_messages=count_messages,
            count_text=count_text,
            history_turns=settings.history_turns,
            memory_keep=settings.memory_keep,
            summary_lines=settings.summary_lines,
            history_answer_chars=settings.history_answer_chars,
        )
        return cls(settings, model, as_retrieve_fn(retrieve), db, ltm, traces, prompts, builder)


@dataclass
class TurnState:
    """What flows between the steps of one turn."""

    question: str
    session_id: str
    user_id: str
    trace_id: str
    t0: float
    language: Language = "en"
    history: list[BaseMessage] = field(default_factory=list)
    memories: list[str] = field(default_factory=list)
    reply: str | None = None  # a memory command's fixed reply
    remembered: list[int] = field(default_factory=list)  # memory ids a command wrote (ADD/UPDATE)
    standalone: str = ""
    retrieved: Retrieved | None = None
    context: BuiltContext | None = None
    timings: dict[str, float] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    prompt: str = ""


@dataclass
class Draft:
    """What a strategy answered: the ``text``; ``abstained`` when it says the documents do not
    hold the answer; the tool-call chunks a chat model streamed (kept in the trace); for an
    agent, its name (``router``/``loop``) and its run."""

    text: str
    abstained: bool = False
    tool_call_chunks: list[dict[str, Any]] = field(default_factory=list)
    agent: str = ""
    result: AgentResult | None = None


class Strategy(Protocol):
    """How a turn is answered. ``answer`` yields ``str`` tokens, then one :class:`Draft`; it may
    fill ``state`` (retrieved chunks, context, model calls, rendered prompt, notices).
    ``memory``: the turn recalls the user's memories, carries out memory commands, extracts
    facts afterwards and prefills the next turn (the document answer does; an agent has memory
    tools instead)."""

    memory: bool

    def answer(self, state: TurnState) -> Iterator[str | Draft]: ...


def answer_language(settings: Settings, question: str) -> Language:
    """The language to answer ``question`` in: ``answer_language`` when it forces one, else the
    question's (Hangul share; English when too short to tell)."""
    forced = settings.answer_language
    if forced == "ko" or forced == "en":
        return forced
    return detect_language(question, default="en") or "en"


def timed(state: TurnState, name: str, stage: Callable[[TurnState], None]) -> TurnState:
    """Run ``stage(state)``, adding its seconds to ``state.timings[name]``."""
    t = time.perf_counter()
    stage(state)
    state.timings[name] = state.timings.get(name, 0.0) + time.perf_counter() - t
    return state


def run_turn(deps: TurnDeps, strategy: Strategy, inp: Any) -> Iterator[str | Answer]:
    """One turn (see the module docstring): ``inp`` is ``{"question", "session_id", "user_id"}``
    or a question; yields tokens, then the stored :class:`Answer`."""
    state = start(deps, inp, memory=strategy.memory)
    yield from finish(deps, strategy, state, strategy.answer(state))


def ask_turn(
    deps: TurnDeps, strategy: Strategy, question: str, *, session_id: str = "default", user_id: str = "default"
) -> Answer:
    """:func:`run_turn` to its end: the stored :class:`Answer` (its tokens are not kept)."""
    *_, answer = run_turn(deps, strategy, {"question": question, "session_id": session_id, "user_id": user_id})
    if not isinstance(answer, Answer):  # finish always ends with the Answer
        raise RuntimeError(f"{type(strategy).__name__}'s turn ended without an Answer")
    return answer


def start(deps: TurnDeps, inp: Any, *, memory: bool = True) -> TurnState:
    """Step 1: the checked question, its language, the recent history and (``memory``) the
    recalled memories or a memory command's reply. Raises ``ValueError`` for a blank question."""
    t0 = time.perf_counter()
    if isinstance(inp, str):
        inp = {"question": inp}
    question = str(inp.get("question", "")).strip()
    if not question:
        raise ValueError("the question is empty: ask something")
    state = TurnState(
        question, str(inp.get("session_id") or "default"), str(inp.get("user_id") or "default"), uuid.uuid4().hex, t0
    )
    state.language = answer_language(deps.settings, question)
    state.history = SQLiteChatMessageHistory(state.session_id, deps.db, state.user_id).last(_window(deps.settings))
    if memory:
        decisions = deps.ltm.apply_command(state.user_id, question, source_session=state.session_id)
        if decisions is not None:
            state.reply = _command_reply(deps, state, decisions)
            state.remembered = [d.memory.id for d in decisions if d.action in ("ADD", "UPDATE") and d.memory]
        else:
            s = deps.settings
            recalled = deps.ltm.recall(state.user_id, question, k=s.memory_k, min_score=s.memory_min_score)
            state.memories = [m.text for m in sorted(recalled, key=lambda m: m.id)]
    state.standalone = question
    state.timings["load"] = time.perf_counter() - t0
    return state


def _window(settings: Settings) -> int:
    """How many recent messages a turn reads: its recent turns plus those its summary folds."""
    return 2 * (settings.history_turns + settings.summary_lines) + 2


def _command_reply(deps: TurnDeps, state: TurnState, decisions: Sequence[Any]) -> str:
    command = parse_command(state.question)
    fact = command.fact if command else state.question
    lang = state.language
    if command is not None and command.action == "forget":
        removed = [d for d in decisions if d.action == "DELETE"]
        if removed:
            return deps.prompts.message("forgot", lang, len(removed), fact)
        return deps.prompts.message("nothing_to_forget", lang, fact)
    if decisions and decisions[0].action == "NOOP":
        return deps.prompts.message("already_remembered", lang, fact)
    return deps.prompts.message("remembered", lang, fact)


def finish(
    deps: TurnDeps, strategy: Strategy, state: TurnState, pieces: Iterator[str | Draft]
) -> Iterator[str | Answer]:
    """Steps 2 and 3 after :func:`start`: a memory command's reply (``pieces``, a not yet
    started generator, is then never run), or the strategy's ``pieces``, then the recorded
    :class:`Answer`."""
    draft: Draft | None = None
    if state.reply is not None:
        state.timings["ttft"] = time.perf_counter() - state.t0
        yield state.reply
        draft = Draft(state.reply)
    else:
        for piece in pieces:
            if isinstance(piece, Draft):
                draft = piece
            else:
                yield piece
    if draft is None:
        raise RuntimeError(f"{type(strategy).__name__}.answer yielded no Draft")
    yield record(deps, strategy, state, draft)


def record(deps: TurnDeps, strategy: Strategy, state: TurnState, draft: Draft) -> Answer:
    """Step 3: the Answer, stored in the session with its provenance, memories and trace."""
    answer = _answer(deps, state, draft)
    t = time.perf_counter()
    meta: dict[str, Any] = {"trace_id": state.trace_id}
    if draft.result is not None:
        meta |= {"agent": draft.agent, "stop_reason": answer.stop_reason, "tool_calls": _call_summary(draft.result)}
    # question, answer, the provenance of what this turn remembered and the trace: one transaction
    with deps.db.write() as s:
        turn, _ = SQLiteChatMessageHistory(state.session_id, deps.db, state.user_id).append(
            [HumanMessage(state.question), AIMessage(answer.text, response_metadata=meta)], session=s
        )  # provenance of what this turn remembers: the seq of its stored question
        if state.remembered:
            deps.ltm.set_source(
                state.user_id, state.remembered, source_session=state.session_id, source_turn=turn, session=s
            )
        state.timings["persist"] = time.perf_counter() - t
        state.timings["total"] = time.perf_counter() - state.t0
        deps.traces.add(_trace(deps, state, draft, answer), session=s)
    if strategy.memory and deps.settings.memory_extract and state.reply is None:
        # a model call: after the turn is stored, in its own transaction; a failure loses nothing
        try:
            deps.ltm.extract_facts(
                deps.model,
                state.user_id,
                f"User: {state.question}\nAssistant: {answer.text}",
                source_session=state.session_id,
                source_turn=turn,
            )
        except Exception as err:
            logger.warning("memory extraction failed: %s", err)
    if strategy.memory and deps.settings.prefill_next_turn:
        _prefill_next_turn(deps, state, [*state.history, HumanMessage(state.question), AIMessage(answer.text)])
    return answer


def _answer(deps: TurnDeps, state: TurnState, draft: Draft) -> Answer:
    ctx = state.context
    sources = ctx.sources if ctx is not None else []
    result = draft.result
    budget = ctx.budget if ctx is not None else None
    if budget is None and result is None:
        budget = BudgetReport(deps.builder.n_ctx, deps.builder.max_tokens)
    answer = Answer(
        text=draft.text.strip(),
        citations=resolve_citations(draft.text, sources) if result is None else [],
        language=state.language,
        abstained=draft.abstained,
        budget=budget,
        trace_id=state.trace_id,
        sources=list(sources),
        notices=list(state.notices),
        memories=list(ctx.memories if ctx is not None else state.memories),
        session_id=state.session_id,
        question=state.question,
        standalone_question=state.standalone,
    )
    if result is not None:
        answer.agent, answer.choice, answer.stop_reason = draft.agent, result.choice, result.stop_reason
        answer.tool_calls, answer.steps = list(result.tool_calls), list(result.steps)
    return answer


def _call_summary(result: AgentResult) -> list[dict[str, Any]]:
    return [{"name": c.name, "status": c.status, "reason": c.reason, "summary": c.summary} for c in result.tool_calls]


def _trace(deps: TurnDeps, state: TurnState, draft: Draft, answer: Answer) -> TurnTrace:
    if draft.result is not None:
        return agent_trace(
            draft.result,
            trace_id=state.trace_id,
            session_id=state.session_id,
            user_id=state.user_id,
            question=state.question,
            agent=draft.agent,
            language=state.language,
            prompt=state.prompt,
            prompt_tokens=deps.builder.count_text(state.prompt) if state.prompt else 0,
            timings=state.timings,
        )
    retrieved = state.retrieved
    return TurnTrace(
        id=state.trace_id,
        session_id=state.session_id,
        user_id=state.user_id,
        question=state.question,
        standalone_question=state.standalone,
        language=state.language,
        abstained=answer.abstained,
        prompt=state.prompt,
        prompt_tokens=answer.budget.prompt_tokens if answer.budget else 0,
        budget=answer.budget.to_dict() if answer.budget else {},
        timings=dict(state.timings),
        retrieved=[_doc_summary(d) for d in (retrieved.documents if retrieved else [])],
        model_calls=state.calls,
        tool_calls=draft.tool_call_chunks,
        answer=answer.text,
        citations=[asdict(c) for c in answer.citations],
        notices=answer.notices,
        memories=answer.memories,
        retrieval_reason=retrieved.reason if retrieved else None,
        warnings=list(retrieved.warnings) if retrieved else [],
    )


def _prefill_next_turn(deps: TurnDeps, state: TurnState, history: list[BaseMessage]) -> None:
    """Start evaluating the next turn's leading messages (system prompt, memories, summary and
    history including this answer: exactly what its context build puts first) into the model's
    KV cache, in the background; ``history`` is this turn's plus its own question and answer, so
    the session is not read again."""
    if not isinstance(deps.model, PromptModel):
        return
    prefill = deps.model.prefill
    try:
        window = history[-_window(deps.settings) :]
        # the same build the next turn makes, minus its documents and question: the builder's
        # layout puts them last, in the final user message, which is left out
        ctx = deps.builder.build(ContextInput("?", state.language, history=window, memories=state.memories))
        prefill(ctx.messages[:-1])
    except Exception as err:  # an optimisation only: the answer is already stored
        logger.warning("could not prefill the next turn: %s", err)


def _doc_summary(doc: Document) -> dict[str, Any]:
    keys = (
        "chunk_id",
        "source",
        "start",
        "end",
        "heading",
        "score",
        "rank",
        "cosine",
        "dense_rank",
        "lexical_rank",
        "fused_rank",
        "rerank_rank",
        "rerank_score",
    )
    return {k: doc.metadata.get(k) for k in keys if k in doc.metadata}
