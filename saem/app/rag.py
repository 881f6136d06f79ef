"""The document answer strategy: condense → retrieve → context → generate.

    rag = RagStrategy(deps)                       # deps: saem.app.turn.TurnDeps
    for piece in run_turn(deps, rag, "What is LoRA?"):
        ...                                       # str tokens, then the Answer

Stages (each timed into the turn's trace; ``saem.app.chain`` runs them as named LCEL runnables):

* ``condense`` — with history and ``condense`` = ``auto`` (default: only when the question looks
  like a follow-up — pronouns, "and …", one or two words) or ``always``: one model call rewrites the
  question into a standalone one, used for retrieval only. Its prompt shares the system prompt and
  history with the answer prompt, so the KV cache prefix serves both calls.
* ``retrieve`` — ``k = retrieve_k`` chunks; ``abstained`` (nothing clears the threshold, no
  chunk at all, or — with ``abstain_on_missing_terms`` — the question names something no chunk
  mentions, such as "FlashAttention" over notes that never write it) means the answer says the
  documents do not contain it, **without a model call**.
* ``context`` — :class:`~saem.app.context.ContextBuilder` (policy and budget report there).
* ``generate`` — by the effective ``answer_mode``: ``extractive`` answers with the documents'
  own sentences (no model call); ``generate`` streams the model: the first ~24 letters are held
  back and checked against the expected language; on a mismatch the stream is dropped and the
  model asked once more with an explicit reminder; if that answer is still off, it is kept with
  a notice. ``hybrid`` generates once and falls back to the extractive answer when a check fails.

Each stage does nothing once an earlier one settled the turn (a memory command's reply, an
abstention), so the stages can run one by one as well as through :meth:`RagStrategy.answer`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from saem.app.context import ContextInput, plain_render
from saem.app.language import detect_language, language_matches
from saem.app.turn import Draft, TurnDeps, TurnState, timed
from saem.errors import ConfigError
from saem.models.protocols import PromptModel
from saem.text.markers import cited_numbers

__all__ = ["RagStrategy", "looks_like_followup"]

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


class RagStrategy:
    """Answer from the retrieved documents (see the module docstring). Stateless between turns:
    one instance serves every turn and thread over the same ``TurnDeps`` (``Saem`` holds one)."""

    memory = True

    def __init__(self, deps: TurnDeps) -> None:
        self.deps = deps

    def stages(self) -> list[tuple[str, Callable[[TurnState], None]]]:
        """The stages before generation, in order, by name."""
        return [("condense", self.condense), ("retrieve", self.retrieve), ("context", self.context)]

    def answer(self, state: TurnState) -> Iterator[str | Draft]:
        for name, stage in self.stages():
            timed(state, name, stage)
        yield from self.generate(state)

    # --- stages ---------------------------------------------------------------------------------

    def condense(self, state: TurnState) -> None:
        deps, mode = self.deps, self.deps.settings.condense
        if state.reply is not None or not state.history or mode == "off":
            return
        if mode == "auto" and not looks_like_followup(state.question):
            return
        ctx = deps.builder.build(
            ContextInput(
                state.question, state.language, history=state.history, memories=state.memories, template="condense"
            )
        )
        message, call = self._invoke(ctx.messages, kind="condense", max_tokens=64)
        state.calls.append(call)
        text = message.text.strip().splitlines()[0] if message.text.strip() else ""
        text = re.sub(r"^(?:standalone question|question|질문)\s*[:：]\s*", "", text, flags=re.I).strip().strip("\"'“”")
        if 0 < len(text) <= 3 * len(state.question) + 200:
            state.standalone = text

    def retrieve(self, state: TurnState) -> None:
        if state.reply is not None:
            return
        settings = self.deps.settings
        got = self.deps.retrieve(state.standalone, settings.retrieve_k)
        state.timings.update({f"retrieve.{k}": v for k, v in got.timings.items()})
        if got.missing_terms and not got.abstained and settings.abstain_on_missing_terms:
            quoted = ", ".join(f"'{t}'" for t in got.missing_terms)
            got = replace(got, abstained=True, reason=f"no document mentions {quoted}")
        state.retrieved = got

    def context(self, state: TurnState) -> None:
        if state.reply is not None or state.retrieved is None or state.retrieved.abstained:
            return
        deps = self.deps
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

    def generate(self, state: TurnState) -> Iterator[str | Draft]:
        """Yield the answer's tokens, then its :class:`Draft`."""
        deps, tool_calls = self.deps, []  # type: TurnDeps, list[dict[str, Any]]
        ctx = state.context
        mode = deps.settings.effective_answer_mode
        abstained = ctx is None
        if ctx is None:
            text = self._abstention(state)
            state.timings["ttft"] = time.perf_counter() - state.t0
            yield text
        elif mode == "extractive":
            text = self._extractive(state) or deps.prompts.message("abstain", state.language, reason="")
            state.timings["ttft"] = time.perf_counter() - state.t0
            # no model call, but the trace still shows the window a generation would have read
            state.prompt = self._render(ctx.messages)
            yield text
        else:
            hybrid = mode == "hybrid"
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
                pieces = self._attempt(state, ctx.messages, gate=attempt == 0, traces=traces, tool_calls=tool_calls)
                for piece in pieces:
                    if piece is None:
                        rejected = True
                        break
                    if not text:
                        state.timings["ttft"] = time.perf_counter() - state.t0
                    text += piece
                    yield piece
                state.calls.append(_call("answer" if attempt == 0 else "retry", traces, ctx.messages, deps))
                state.prompt = traces[-1].prompt if traces else self._render(ctx.messages)
                if not rejected:
                    break
            if retried and not language_matches(text, state.language):
                state.notices.append(deps.prompts.message("wrong_language", state.language))
            if hybrid:
                text = self._hybrid_gate(state, text)
            state.timings["generate"] = time.perf_counter() - t_gen
        yield Draft(text, abstained=abstained, tool_call_chunks=tool_calls)

    # --- generation ------------------------------------------------------------------------------

    def _invoke(self, messages: list[BaseMessage], *, kind: str, max_tokens: int) -> tuple[BaseMessage, dict[str, Any]]:
        traces: list[Any] = []
        model = self.deps.model
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "on_trace": traces.append} if _traces(model) else {}
        message = model.invoke(messages, stop=["\n"], **kwargs)
        return message, _call(kind, traces, messages, self.deps)

    def _attempt(
        self,
        state: TurnState,
        messages: list[BaseMessage],
        *,
        gate: bool,
        traces: list[Any],
        tool_calls: list[dict[str, Any]],
    ) -> Iterator[str | None]:
        """Stream one answer; yields tokens, or a single ``None`` when the gate rejects the language."""
        model = self.deps.model
        kwargs: dict[str, Any] = {"on_trace": traces.append} if _traces(model) else {}
        held, passed = "", not gate
        stream = model.stream(messages, **kwargs)
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

    def _abstention(self, state: TurnState) -> str:
        """The "not in the documents" answer; it names the missing terms when that was the reason."""
        deps, got = self.deps, state.retrieved
        if got is not None and got.missing_terms and deps.settings.abstain_on_missing_terms:
            terms = ", ".join(f"'{t}'" for t in got.missing_terms)
            try:
                return deps.prompts.message("abstain_missing", state.language, terms=terms)
            except ConfigError:  # a prompts_dir override written before this message existed
                pass
        return deps.prompts.message("abstain", state.language, reason=(got.reason if got else None) or "")

    def _extractive(self, state: TurnState) -> str:
        """The retrieved chunks' best sentences with [n] citations ('' when none fits)."""
        from saem.app.extractive import extractive_answer

        if state.context is not None:  # number sentences exactly as the sources shown to the model: [n]
            shown = [Document(page_content=src.text) for src in sorted(state.context.sources, key=lambda x: x.n)]
        else:
            shown = list(state.retrieved.documents) if state.retrieved else []
        return extractive_answer(state.question, shown, embeddings=self.deps.ltm.embeddings).text

    def _hybrid_gate(self, state: TurnState, generated: str) -> str:
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
        fallback = self._extractive(state)
        if not fallback:
            return generated
        state.notices.append(
            self.deps.prompts.message("extractive_fallback", state.language, reasons="; ".join(reasons))
        )
        return fallback

    def _render(self, messages: list[BaseMessage]) -> str:
        model = self.deps.model
        return model.render_prompt(messages) if isinstance(model, PromptModel) else plain_render(messages)


def _traces(model: BaseChatModel) -> bool:
    """Whether the model reports each call's ``ChatTrace`` (``on_trace=``)."""
    return "on_trace" in type(model).model_fields


def _call(kind: str, traces: list[Any], messages: list[BaseMessage], deps: TurnDeps) -> dict[str, Any]:
    """One model call for the trace: the model's own ``ChatTrace`` summary when it gives one."""
    if traces:
        return {"kind": kind, **traces[-1].summary()}
    return {"kind": kind, "prompt_tokens": deps.builder.count_messages(messages)}


def _letters(text: str) -> int:
    return sum(2 if "\uac00" <= ch <= "\ud7a3" else 1 for ch in text if ch.isalpha())
