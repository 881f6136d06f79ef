"""The RAG chain as LCEL runnables: load → condense → retrieve → build context → generate.

    chain = build_chain(deps)              # ChatEngine does this; ``engine.chain`` is the runnable
    for piece in chain.stream({"question": "top-p는?", "session_id": "s1", "user_id": "alice"}):
        print(piece if isinstance(piece, str) else piece.citations)   # tokens, then the Answer
    answer = chain.invoke("What is LoRA?")  # session "default", user "default"

Stages (each a named runnable, timed into the turn's trace):

* ``load`` — detect the question's language (Hangul share; ``answer_language`` may force one),
  read the session's recent history, recall the user's memories (top ``memory_k`` above
  ``memory_min_score``, then put in id order so the prompt prefix stays byte-stable). An
  explicit "remember …"/"forget …" message is carried out here and answered without retrieval
  or a model call.
* ``condense`` — with history and ``condense`` = ``auto`` (default: only when the question looks
  like a follow-up — pronouns, "and …", one or two words) or ``always``: one model call rewrites the
  question into a standalone one, used for retrieval only. Its prompt shares the system prompt and
  history with the answer prompt, so the KV cache prefix serves both calls.
* ``retrieve`` — ``k = retrieve_k`` chunks; ``abstained`` (nothing clears the threshold, no
  chunk at all, or — with ``abstain_on_missing_terms`` — the question names something no chunk
  mentions, such as "FlashAttention" over notes that never write it) means the answer says the
  documents do not contain it, **without a model call**.
* ``context`` — :class:`~saem.app.context.ContextBuilder` (policy and budget report there).
* ``generate`` — streams the model. The first ~24 letters are held back and checked against the
  expected language; on a mismatch the stream is dropped and the model asked once more with an
  explicit reminder; if that answer is still off, it is kept with a notice. Then citations are
  resolved against the numbered sources, the turn is appended to the session history, and the
  trace is written. Yields ``str`` tokens, then the :class:`~saem.app.types.Answer`.
* after the turn (``prefill_next_turn``, on by default) — when the model can ``prefill``, the
  next turn's leading messages (system prompt, memories, summary and history including this
  answer: exactly what the next context build will put first) are evaluated into the KV cache in
  the background while the user reads, so the next turn evaluates only its documents and
  question. It yields the model to any call and costs nothing when the next turn comes at once.

If the consumer stops iterating early the turn is not stored. Errors of the model or the
storage propagate (nothing half-written: history and trace are written after generation).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from sqlalchemy.exc import OperationalError

from saem.app.citations import resolve_citations
from saem.app.context import BuiltContext, ContextBuilder, ContextInput, plain_render
from saem.app.language import Language, detect_language, language_matches
from saem.app.prompts import PromptTemplates
from saem.app.traces import TraceStore, TurnTrace
from saem.app.types import Answer, BudgetReport
from saem.errors import ConfigError
from saem.memory.history import SQLiteChatMessageHistory
from saem.memory.longterm import LongTermMemory, parse_command
from saem.settings import effective_answer_mode
from saem.store.chat import MemoryDB
from saem.text.markers import cited_numbers

__all__ = ["ChainDeps", "TurnState", "Retrieved", "build_chain", "as_retrieve_fn", "looks_like_followup"]

logger = logging.getLogger("saem.app")

_GATE_LETTERS = 24
_FOLLOWUP = re.compile(
    r"\b(it|its|this|that|these|those|they|them|their|there|same|above|previous|also|too|else|more)\b"
    r"|^\s*(and|but|so|what about|how about|why|or)\b"
    r"|그것|그거|그게|그건|이것|이거|이게|이건|저것|거기|그럼|그러면|그래서|위의|앞의|방금|^\s*(또|더|그|이)\s",
    re.IGNORECASE,
)


def looks_like_followup(question: str) -> bool:
    """Whether ``question`` probably leans on the conversation: pronouns or demonstratives ("it",
    "that", "그거", "이건"), a leading "and/but/what about", or at most two words (not three:
    Korean packs a whole question into three, "어텐션은 무엇을 계산하나요?")."""
    return bool(_FOLLOWUP.search(question)) or len(question.split()) <= 2


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


def as_retrieve_fn(obj: Any) -> Callable[[str, int], Retrieved]:
    """Normalise a searcher (``.search(q, k=...)`` → ``RetrievalResult``) or a callable
    ``(query, k) -> RetrievalResult | list[Document]`` to ``(query, k) -> Retrieved``. A data
    dir whose database has no catalogue yet (memory used before any ingest) abstains."""
    fn: Callable[[str, int], Any] = (lambda q, k: obj.search(q, k=k)) if hasattr(obj, "search") else obj
    if not callable(fn):
        raise TypeError("searcher_or_retrieve_fn must have .search(q, k) or be a callable (q, k)")

    def retrieve(query: str, k: int) -> Retrieved:
        try:
            out = fn(query, k)
        except OperationalError as err:
            # the memory tables were created in saem.db before any ingest: no catalogue yet
            if "no such table" not in str(err):
                raise
            return Retrieved([], True, "nothing is ingested in this data dir yet")
        if hasattr(out, "documents") and hasattr(out, "abstained"):
            docs = list(out.documents())
            return Retrieved(docs, bool(out.abstained) or not docs, out.reason, dict(getattr(out, "timings", {})),
                             list(getattr(out, "missing_terms", None) or []),
                             [str(w) for w in getattr(out, "warnings", None) or []])  # fmt: skip
        docs = list(out)
        return Retrieved(docs, not docs, None if docs else "no chunk was retrieved")

    return retrieve


@dataclass
class ChainDeps:
    """Everything the chain needs; ``ChatEngine`` builds it from settings."""

    settings: Any
    model: BaseChatModel
    retrieve: Callable[[str, int], Retrieved]
    db: MemoryDB
    ltm: LongTermMemory
    traces: TraceStore
    prompts: PromptTemplates
    builder: ContextBuilder

    def opt(self, name: str, default: Any) -> Any:
        return getattr(self.settings, name, default)


@dataclass
class TurnState:
    """What flows between the stages of one turn."""

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


def build_chain(deps: ChainDeps) -> Runnable[Any, Any]:
    """The LCEL runnable of one chat turn (see the module docstring)."""

    def timed(name: str, fn: Callable[[TurnState], None]) -> Runnable[Any, Any]:
        def step(state: TurnState) -> TurnState:
            t = time.perf_counter()
            fn(state)
            state.timings[name] = state.timings.get(name, 0.0) + time.perf_counter() - t
            return state

        return RunnableLambda(step).with_config(run_name=name)

    def transform(states: Iterator[TurnState]) -> Iterator[Any]:
        for state in states:
            yield from _generate(deps, state)

    return (
        RunnableLambda(lambda inp: _start(deps, inp)).with_config(run_name="load")
        | timed("condense", lambda s: _condense(deps, s))
        | timed("retrieve", lambda s: _retrieve(deps, s))
        | timed("context", lambda s: _context(deps, s))
        | RunnableGenerator(transform).with_config(run_name="generate")
    )


# --- stages ------------------------------------------------------------------------------------


def _start(deps: ChainDeps, inp: Any) -> TurnState:
    t0 = time.perf_counter()
    if isinstance(inp, str):
        inp = {"question": inp}
    question = str(inp.get("question", "")).strip()
    if not question:
        raise ValueError("the question is empty: ask something")
    state = TurnState(
        question, str(inp.get("session_id") or "default"), str(inp.get("user_id") or "default"), uuid.uuid4().hex, t0
    )
    forced = deps.opt("answer_language", "auto")
    state.language = forced if forced in ("ko", "en") else detect_language(question, default="en") or "en"
    state.history = _recent_history(deps, state.session_id, state.user_id)
    decisions = deps.ltm.apply_command(state.user_id, question, source_session=state.session_id)
    if decisions is not None:
        state.reply = _command_reply(deps, state, decisions)
        state.remembered = [d.memory.id for d in decisions if d.action in ("ADD", "UPDATE") and d.memory]
    else:
        recalled = deps.ltm.recall(
            state.user_id, question, k=int(deps.opt("memory_k", 5)), min_score=float(deps.opt("memory_min_score", 0.2))
        )
        state.memories = [m.text for m in sorted(recalled, key=lambda m: m.id)]
    state.standalone = question
    state.timings["load"] = time.perf_counter() - t0
    return state


def _recent_history(deps: ChainDeps, session_id: str, user_id: str) -> list[BaseMessage]:
    """The messages a turn's context may use: recent turns plus those its summary lines fold."""
    turns = int(deps.opt("history_turns", 4)) + int(deps.opt("summary_lines", 8))
    return SQLiteChatMessageHistory(session_id, deps.db, user_id).last(2 * turns + 2)


def _command_reply(deps: ChainDeps, state: TurnState, decisions: Sequence[Any]) -> str:
    command = parse_command(state.question)
    fact = command.fact if command else state.question
    lang = state.language
    if command is not None and command.action == "forget":
        removed = [d for d in decisions if d.action == "DELETE"]
        return (
            deps.prompts.message("forgot", lang, len(removed), fact)
            if removed
            else (deps.prompts.message("nothing_to_forget", lang, fact))
        )
    if decisions and decisions[0].action == "NOOP":
        return deps.prompts.message("already_remembered", lang, fact)
    return deps.prompts.message("remembered", lang, fact)


def _condense(deps: ChainDeps, state: TurnState) -> None:
    mode = str(deps.opt("condense", "auto"))
    if state.reply is not None or not state.history or mode == "off":
        return
    if mode == "auto" and not looks_like_followup(state.question):
        return
    ctx = deps.builder.build(
        ContextInput(
            state.question, state.language, history=state.history, memories=state.memories, template="condense"
        )
    )
    message, call = _invoke(deps, ctx.messages, kind="condense", max_tokens=64)
    state.calls.append(call)
    text = message.text.strip().splitlines()[0] if message.text.strip() else ""
    text = re.sub(r"^(?:standalone question|question|질문)\s*[:：]\s*", "", text, flags=re.I).strip().strip("\"'“”")
    if 0 < len(text) <= 3 * len(state.question) + 200:
        state.standalone = text


def _retrieve(deps: ChainDeps, state: TurnState) -> None:
    if state.reply is not None:
        return
    got = deps.retrieve(state.standalone, int(deps.opt("retrieve_k", 5)))
    state.timings.update({f"retrieve.{k}": v for k, v in got.timings.items()})
    if got.missing_terms and not got.abstained and deps.opt("abstain_on_missing_terms", True):
        quoted = ", ".join(f"'{t}'" for t in got.missing_terms)
        got = replace(got, abstained=True, reason=f"no document mentions {quoted}")
    state.retrieved = got


def _context(deps: ChainDeps, state: TurnState) -> None:
    if state.reply is not None or state.retrieved is None or state.retrieved.abstained:
        return
    state.context = deps.builder.build(
        ContextInput(
            state.question,
            state.language,
            chunks=state.retrieved.documents,
            history=state.history,
            memories=state.memories,
        )
    )
    if state.context.question_truncated:
        state.notices.append(
            deps.prompts.message("question_truncated", state.language, *state.context.question_truncated)
        )


# --- generation --------------------------------------------------------------------------------


def _supports_trace(model: BaseChatModel) -> bool:
    return "on_trace" in type(model).model_fields


def _record(kind: str, traces: list[Any], messages: list[BaseMessage], deps: ChainDeps) -> dict[str, Any]:
    """One model call for the trace: the model's own ``ChatTrace`` summary when it gives one."""
    if traces:
        return {"kind": kind, **traces[-1].summary()}
    return {"kind": kind, "prompt_tokens": deps.builder.count_messages(messages)}


def _invoke(
    deps: ChainDeps, messages: list[BaseMessage], *, kind: str, max_tokens: int
) -> tuple[BaseMessage, dict[str, Any]]:
    traces: list[Any] = []
    kwargs: dict[str, Any] = (
        {"max_tokens": max_tokens, "on_trace": traces.append} if _supports_trace(deps.model) else {}
    )
    message = deps.model.invoke(messages, stop=["\n"], **kwargs)
    return message, _record(kind, traces, messages, deps)


def _attempt(
    deps: ChainDeps,
    state: TurnState,
    messages: list[BaseMessage],
    *,
    gate: bool,
    traces: list[Any],
    tool_calls: list[dict[str, Any]],
) -> Iterator[str | None]:
    """Stream one answer; yields tokens, or a single ``None`` when the gate rejects the language."""
    kwargs: dict[str, Any] = {"on_trace": traces.append} if _supports_trace(deps.model) else {}
    held, passed = "", not gate
    stream = deps.model.stream(messages, **kwargs)
    try:
        for chunk in stream:
            for tc in getattr(chunk, "tool_call_chunks", None) or []:
                tool_calls.append(dict(tc))
            piece = chunk.text if isinstance(chunk.content, str) else ""
            if not piece:
                continue
            if passed:
                yield piece
                continue
            held += piece
            if _letters(held) >= _GATE_LETTERS:
                if not language_matches(held, state.language):
                    yield None
                    return
                passed = True
                yield held
        if not passed and held:
            yield held
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _letters(text: str) -> int:
    return sum(2 if "\uac00" <= ch <= "\ud7a3" else 1 for ch in text if ch.isalpha())


def _generate(deps: ChainDeps, state: TurnState) -> Iterator[str | Answer]:
    tool_calls: list[dict[str, Any]] = []
    ctx = state.context
    if state.reply is not None or ctx is None:
        if state.reply is not None:
            text = state.reply
        else:
            text = _abstention(deps, state)
        state.timings["ttft"] = time.perf_counter() - state.t0
        yield text
    elif answer_mode(deps) == "extractive":
        text = _extractive(deps, state) or deps.prompts.message("abstain", state.language, reason="")
        state.timings["ttft"] = time.perf_counter() - state.t0
        # no model call, but the trace still shows the window a generation would have read
        state.prompt = _render(deps, ctx.messages)
        yield text
    else:
        hybrid = answer_mode(deps) == "hybrid"
        t_gen = time.perf_counter()
        text, retried = "", False
        for attempt in range(1 if hybrid else 2):  # hybrid falls back instead of retrying
            traces: list[Any] = []
            if attempt == 1:
                ctx = deps.builder.build(
                    ContextInput(
                        state.question,
                        state.language,
                        chunks=state.retrieved.documents if state.retrieved else [],
                        history=state.history,
                        memories=state.memories,
                        retry=True,
                    )
                )
                state.context, retried = ctx, True
            text, rejected = "", False
            for piece in _attempt(deps, state, ctx.messages, gate=attempt == 0, traces=traces, tool_calls=tool_calls):
                if piece is None:
                    rejected = True
                    break
                if not text:
                    state.timings["ttft"] = time.perf_counter() - state.t0
                text += piece
                yield piece
            state.calls.append(_record("answer" if attempt == 0 else "retry", traces, ctx.messages, deps))
            state.prompt = traces[-1].prompt if traces else _render(deps, ctx.messages)
            if not rejected:
                break
        if retried and not language_matches(text, state.language):
            state.notices.append(deps.prompts.message("wrong_language", state.language))
        if hybrid:
            text = _hybrid_gate(deps, state, text)
        state.timings["generate"] = time.perf_counter() - t_gen
    yield _finish(deps, state, text, tool_calls)


def _abstention(deps: ChainDeps, state: TurnState) -> str:
    """The "not in the documents" answer; it names the missing terms when that was the reason."""
    got = state.retrieved
    if got is not None and got.missing_terms and deps.opt("abstain_on_missing_terms", True):
        terms = ", ".join(f"'{t}'" for t in got.missing_terms)
        try:
            return deps.prompts.message("abstain_missing", state.language, terms=terms)
        except ConfigError:  # a prompts_dir override written before this message existed
            pass
    return deps.prompts.message("abstain", state.language, reason=(got.reason if got else None) or "")


def answer_mode(deps: ChainDeps) -> str:
    """The turn's answer mode (:func:`saem.settings.effective_answer_mode` decides ``auto``)."""
    return effective_answer_mode(str(deps.opt("answer_mode", "auto")), str(deps.opt("chat_model", "")))


def _extractive(deps: ChainDeps, state: TurnState) -> str:
    """The retrieved chunks' best sentences with [n] citations ('' when none fits)."""
    from saem.app.extractive import extractive_answer

    if state.context is not None:  # number sentences exactly as the sources shown to the model: [n]
        shown = [Document(page_content=src.text) for src in sorted(state.context.sources, key=lambda x: x.n)]
    else:
        shown = list(state.retrieved.documents) if state.retrieved else []
    embeddings = getattr(deps.ltm, "embeddings", None)
    return extractive_answer(state.question, shown, embeddings=embeddings).text


def _hybrid_gate(deps: ChainDeps, state: TurnState, generated: str) -> str:
    """Keep the generated answer if it passes the checks, else the extractive one (reason in notices/trace)."""
    from saem.app.extractive import check_generated

    ctx = state.context
    sources = ctx.sources if ctx is not None else []
    cited = cited_numbers(generated)
    cited_texts = [s.text for s in sources if s.n in cited] or [s.text for s in sources]
    reasons = check_generated(
        generated,
        question_language=state.language,
        answer_language=detect_language(generated, default=state.language) or state.language,
        cited_texts=cited_texts if cited else [],
    )
    if not reasons:
        return generated
    fallback = _extractive(deps, state)
    if not fallback:
        return generated
    state.notices.append(deps.prompts.message("extractive_fallback", state.language, reasons="; ".join(reasons)))
    return fallback


def _render(deps: ChainDeps, messages: list[BaseMessage]) -> str:
    render = getattr(deps.model, "render_prompt", None)
    return str(render(messages)) if callable(render) else plain_render(messages)


def _finish(deps: ChainDeps, state: TurnState, text: str, tool_calls: list[dict[str, Any]]) -> Answer:
    ctx = state.context
    sources = ctx.sources if ctx is not None else []
    answer = Answer(
        text=text.strip(),
        citations=resolve_citations(text, sources),
        language=state.language,
        abstained=state.reply is None and ctx is None,
        budget=ctx.budget if ctx is not None else BudgetReport(deps.builder.n_ctx, deps.builder.max_tokens),
        trace_id=state.trace_id,
        sources=list(sources),
        notices=list(state.notices),
        memories=list(ctx.memories if ctx is not None else state.memories),
        session_id=state.session_id,
        question=state.question,
        standalone_question=state.standalone,
    )
    t = time.perf_counter()
    turn, _ = SQLiteChatMessageHistory(state.session_id, deps.db, state.user_id).append(
        [HumanMessage(state.question), AIMessage(answer.text, response_metadata={"trace_id": state.trace_id})]
    )  # provenance of what this turn remembers: the seq of its stored question
    if state.remembered:
        deps.ltm.set_source(state.user_id, state.remembered, source_session=state.session_id, source_turn=turn)
    if deps.opt("memory_extract", False) and state.reply is None:
        try:
            deps.ltm.extract_facts(
                deps.model,
                state.user_id,
                f"User: {state.question}\nAssistant: {answer.text}",
                source_session=state.session_id,
                source_turn=turn,
            )
        except Exception as err:  # a failed extraction must not lose the answer
            logger.warning("memory extraction failed: %s", err)
    state.timings["persist"] = time.perf_counter() - t
    state.timings["total"] = time.perf_counter() - state.t0
    retrieved = state.retrieved
    deps.traces.add(
        TurnTrace(
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
            tool_calls=tool_calls,
            answer=answer.text,
            citations=[asdict(c) for c in answer.citations],
            notices=answer.notices,
            memories=answer.memories,
            retrieval_reason=retrieved.reason if retrieved else None,
            warnings=list(retrieved.warnings) if retrieved else [],
        )
    )
    if deps.opt("prefill_next_turn", True):
        _prefill_next_turn(deps, state)
    return answer


def _prefill_next_turn(deps: ChainDeps, state: TurnState) -> None:
    """Start evaluating the next turn's leading messages into the model's KV cache (see above)."""
    prefill = getattr(deps.model, "prefill", None)
    if not callable(prefill):
        return
    try:
        history = _recent_history(deps, state.session_id, state.user_id)
        # the same build the next turn makes, minus its documents and question: the builder's
        # layout puts them last, in the final user message, which is left out
        ctx = deps.builder.build(ContextInput("?", state.language, history=history, memories=state.memories))
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
