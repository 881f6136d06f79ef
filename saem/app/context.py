"""The context builder: fit one turn's prompt into ``n_ctx`` by a stated policy, and report it.

    builder = ContextBuilder(prompts, n_ctx=4096, max_tokens=512, count_messages=llm.count_tokens,
                             count_text=llm.get_num_tokens)
    ctx = builder.build(ContextInput(question="top-p는?", language="ko", chunks=docs,
                                     history=history, memories=["my favourite sampler is top-p"]))
    llm.stream(ctx.messages); ctx.budget.parts; ctx.budget.dropped; ctx.sources   # [n] → chunk

**Layout** (fixed order, so earlier bytes stay the same from turn to turn and llama.cpp reuses
the KV cache of the shared prefix): one system message = system prompt → tool schemas →
recalled memories (kept in id order, so the same memories render identically) → rolling
summary of old turns; then the recent history as alternating user/assistant messages (citation
markers removed: they pointed at another turn's documents); then one user message = retrieved
chunks, numbered ``[1]..[n]`` in rank order inside ``<documents>`` → the question. Answers in the
history are clipped to ``history_answer_chars`` at a sentence end (earlier turns' documents are
not kept: each turn retrieves its own). The answer
reserve is ``max_tokens``: the rendered prompt may use at most ``n_ctx - max_tokens`` tokens.

**Counting**: ``count_messages`` counts the *rendered chat template* of the whole message list
with the model's own tokenizer (``LlamaCppChatModel.count_tokens``); it decides every fit.
``count_text`` only splits the total into parts for the report (the "template" part takes the
remainder, so parts sum to ``prompt_tokens``). Both are injectable (unit tests count words).

**Drop policy**, applied one step at a time until the prompt fits:

1. turns older than ``history_turns`` are always folded into the summary (one extractive line
   per turn: the first sentence of the question and of the answer; no model call); duplicate
   chunks (same id or same text) and duplicate memories are dropped up front;
2. the lowest-scoring chunk, while more than one is left;
3. the oldest recent turn, folded into a summary line;
4. memories beyond the best ``memory_keep``, lowest-ranked first;
5. the last chunk, truncated at a sentence boundary (the longest prefix of whole sentences
   that fits; dropped when not even one sentence fits);
6. then, only when still over: remaining memories, summary lines (oldest first), tool schemas;
7. the question, truncated to the longest prefix that fits (the caller shows a notice).

The system prompt and the question are never dropped. If the system prompt alone does not fit
(with an empty question), ``ConfigError`` is raised. Every drop or truncation is recorded in
``BudgetReport.dropped`` as ``(item, reason)``. Invariant: ``budget.prompt_tokens <= n_ctx -
max_tokens`` for every returned context (property-tested). Thread-safe: no state per call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from saem.app.prompts import PromptTemplates, neutralise
from saem.app.types import BudgetReport, Source
from saem.errors import ConfigError
from saem.text.markers import strip_markers
from saem.text.sentences import split_sentences

__all__ = [
    "ContextBuilder",
    "ContextInput",
    "BuiltContext",
    "approx_tokens",
    "plain_render",
    "strip_markers",
    "summary_line",
]

CountMessages = Callable[[Sequence[BaseMessage]], int]
CountText = Callable[[str], int]

_WS = re.compile(r"\s+")


def approx_tokens(text: str) -> int:
    """A conservative token estimate without a tokenizer: one per 3 UTF-8 bytes (≈ one per
    Hangul syllable, one per 3 Latin characters). For models that cannot count."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def plain_render(messages: Sequence[BaseMessage]) -> str:
    """A deterministic ChatML-like rendering, for models without their own template."""
    body = "".join(f"<|{m.type}|>\n{m.text}\n" for m in messages)
    return body + "<|ai|>\n"


def _first_sentence(text: str, limit: int) -> str:
    text = strip_markers(text).strip()
    spans = split_sentences(text)
    first = text[spans[0][0] : spans[0][1]] if spans else text
    first = _WS.sub(" ", first)
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def summary_line(question: str, answer: str) -> str:
    """The extractive summary of one turn: ``Q: <first sentence> → A: <first sentence>``."""
    return f"Q: {_first_sentence(question, 120)} → A: {_first_sentence(answer, 160)}"


@dataclass
class ContextInput:
    """One turn's raw material. ``chunks`` best first (metadata ``score``, ``chunk_id``,
    ``source``, ``start``, ``end``, ``heading``, ``page``); ``history`` oldest first; ``memories``
    best first; ``tools`` as JSON-schema dicts or strings; ``template``: ``answer`` or
    ``condense`` (the user message); ``retry`` adds the answer-language reminder."""

    question: str
    language: str = "en"
    chunks: Sequence[Document] = ()
    history: Sequence[BaseMessage] = ()
    memories: Sequence[str] = ()
    tools: Sequence[dict[str, Any] | str] = ()
    template: str = "answer"
    retry: bool = False


@dataclass
class BuiltContext:
    """The fitted prompt: ``messages`` to send, the ``budget`` report, the ``sources`` numbered as
    the model saw them, and what survived of memories, summary, history and the question."""

    messages: list[BaseMessage]
    budget: BudgetReport
    sources: list[Source]
    memories: list[str]
    summary: list[str]
    history: list[BaseMessage]
    question: str
    question_truncated: tuple[int, int] | None = None  # (kept, total) characters


@dataclass
class _Chunk:
    doc: Document
    text: str
    score: float
    rank: int
    cut: bool = False

    @property
    def label(self) -> str:
        cid = self.doc.metadata.get("chunk_id", self.doc.id)
        return f"chunk {cid} (rank {self.rank})"


@dataclass
class _State:
    chunks: list[_Chunk]
    turns: list[list[BaseMessage]]
    summary: list[str]
    memories: list[str]
    tools: list[str]
    question: str
    dropped: list[tuple[str, str]] = field(default_factory=list)


class ContextBuilder:
    """Fits a turn into the window (see the module docstring for the layout and the policy)."""

    def __init__(
        self,
        prompts: PromptTemplates,
        *,
        n_ctx: int,
        max_tokens: int,
        count_messages: CountMessages | None = None,
        count_text: CountText | None = None,
        history_turns: int = 4,
        memory_keep: int = 2,
        summary_lines: int = 8,
        history_answer_chars: int = 600,
    ) -> None:
        if max_tokens >= n_ctx:
            raise ConfigError(f"max_tokens ({max_tokens}) must be below n_ctx ({n_ctx})", key="max_tokens")
        self.prompts = prompts
        self.n_ctx, self.max_tokens = n_ctx, max_tokens
        self.count_messages: CountMessages = count_messages or (lambda ms: approx_tokens(plain_render(ms)))
        self.count_text: CountText = count_text or approx_tokens
        self.history_turns, self.memory_keep, self.summary_lines = history_turns, memory_keep, summary_lines
        self.history_answer_chars = history_answer_chars

    @property
    def limit(self) -> int:
        return self.n_ctx - self.max_tokens

    # --- composition ---------------------------------------------------------------------------

    def _system(self, s: _State, lang: str) -> str:
        return self.prompts.render("system", lang, tools=s.tools, memories=s.memories, summary=s.summary)

    def _user(self, s: _State, inp: ContextInput) -> str:
        docs = [
            {
                "n": n,
                "source": Path(str(c.doc.metadata.get("source", "") or "")).name.replace('"', "'"),
                "heading": neutralise(str(c.doc.metadata.get("heading") or "")).replace('"', "'").replace("\n", " "),
                "text": neutralise(c.text),
            }
            for n, c in enumerate(s.chunks, 1)
        ]
        return self.prompts.render(
            inp.template, inp.language, documents=docs, question=neutralise(s.question), retry=inp.retry
        )

    def _messages(self, s: _State, inp: ContextInput) -> list[BaseMessage]:
        history = [m for turn in s.turns for m in turn]
        return [SystemMessage(self._system(s, inp.language)), *history, HumanMessage(self._user(s, inp))]

    def _total(self, s: _State, inp: ContextInput) -> int:
        return self.count_messages(self._messages(s, inp))

    # --- the build ----------------------------------------------------------------------------

    def build(self, inp: ContextInput) -> BuiltContext:
        """Fit ``inp`` into ``n_ctx - max_tokens``; raises ``ConfigError`` if even the system
        prompt with an empty question does not fit."""
        s = self._initial(inp)
        total = self._total(s, inp)
        limit = self.limit
        truncated: tuple[int, int] | None = None
        while total > limit:
            over = f"over budget ({total} > {limit} tokens)"
            if len(s.chunks) > 1:
                victim = min(reversed(s.chunks), key=lambda c: c.score)  # lowest score; ties: lowest rank
                s.chunks.remove(victim)
                s.dropped.append((victim.label, f"lowest score ({victim.score:.3g}); {over}"))
            elif s.turns:
                turn = s.turns.pop(0)
                s.summary.append(_turn_line(turn))
                s.dropped.append(("oldest turn", f"folded into the summary; {over}"))
            elif len(s.memories) > self.memory_keep:
                gone = s.memories.pop()
                s.dropped.append((f"memory {gone!r}", f"beyond the top {self.memory_keep}; {over}"))
            elif s.chunks and not s.chunks[0].cut:
                self._truncate_chunk(s, inp, over)
            elif s.chunks:
                gone_chunk = s.chunks.pop()
                s.dropped.append((gone_chunk.label, f"dropped: does not fit even truncated; {over}"))
            elif s.memories:
                gone = s.memories.pop()
                s.dropped.append((f"memory {gone!r}", over))
            elif s.summary:
                s.summary.pop(0)
                s.dropped.append(("oldest summary line", over))
            elif s.tools:
                s.tools = []
                s.dropped.append(("tool schemas", over))
            else:
                truncated = self._truncate_question(s, inp, over)
            total = self._total(s, inp)
        return self._finish(s, inp, total, truncated)

    def _initial(self, inp: ContextInput) -> _State:
        dropped: list[tuple[str, str]] = []
        chunks: list[_Chunk] = []
        seen_ids: dict[str, int] = {}
        seen_text: dict[str, int] = {}
        for rank, doc in enumerate(inp.chunks, 1):
            cid = str(doc.metadata.get("chunk_id", doc.id if doc.id is not None else f"#{rank}"))
            key = _WS.sub(" ", doc.page_content).strip().lower()
            score = doc.metadata.get("score")
            chunk = _Chunk(doc, doc.page_content, float(score) if score is not None else -float(rank), rank)
            first = seen_ids.get(cid, seen_text.get(key))
            if first is not None:
                dropped.append((chunk.label, f"duplicate of the chunk at rank {first}"))
                continue
            seen_ids[cid], seen_text[key] = rank, rank
            chunks.append(chunk)
        memories: list[str] = []
        for m in inp.memories:
            text = _WS.sub(" ", str(m)).strip()
            if text and text not in memories:
                memories.append(text)
            elif text:
                dropped.append((f"memory {text!r}", "duplicate"))
        turns = _turns(inp.history, self.history_answer_chars)
        summary: list[str] = []
        while len(turns) > self.history_turns:
            summary.append(_turn_line(turns.pop(0)))
        if summary:
            dropped.append((f"{len(summary)} oldest turn(s)", f"beyond history_turns={self.history_turns}; summarised"))
        if len(summary) > self.summary_lines:
            n = len(summary) - self.summary_lines
            summary = summary[n:]
            dropped.append((f"{n} summary line(s)", f"beyond summary_lines={self.summary_lines}"))
        tools = [t if isinstance(t, str) else json.dumps(t, ensure_ascii=False, sort_keys=True) for t in inp.tools]
        return _State(chunks, turns, summary, [neutralise(m) for m in memories], tools, inp.question, dropped)

    def _truncate_chunk(self, s: _State, inp: ContextInput, over: str) -> None:
        chunk = s.chunks[0]
        spans = split_sentences(chunk.text)
        full = chunk.text

        def fits(k: int) -> bool:
            chunk.text = full[: spans[k - 1][1]] + " …"
            return self._total(s, inp) <= self.limit

        lo, hi = 0, len(spans) - 1  # the largest k in [1, len-1] that fits; 0 = none
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        chunk.cut = True
        if lo == 0:
            chunk.text = full
            s.chunks.pop()
            s.dropped.append((chunk.label, f"dropped: not even its first sentence fits; {over}"))
            return
        chunk.text = full[: spans[lo - 1][1]] + " …"
        s.dropped.append((chunk.label, f"truncated at a sentence boundary: {lo} of {len(spans)} sentences; {over}"))

    def _truncate_question(self, s: _State, inp: ContextInput, over: str) -> tuple[int, int]:
        full = s.question
        lo, hi = 0, len(full)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            s.question = full[:mid]
            if self._total(s, inp) <= self.limit:
                lo = mid
            else:
                hi = mid - 1
        s.question = full[:lo]
        if self._total(s, inp) > self.limit:
            raise ConfigError(
                f"the system prompt alone needs more than n_ctx - max_tokens = {self.limit} tokens",
                key="n_ctx",
                hint="raise n_ctx, lower max_tokens, or shorten the system prompt template",
            )
        s.dropped.append(("question", f"truncated to {lo} of {len(full)} characters; {over}"))
        return lo, len(full)

    def _finish(self, s: _State, inp: ContextInput, total: int, truncated: tuple[int, int] | None) -> BuiltContext:
        messages = self._messages(s, inp)
        base = self.count_text("")

        def ct(text: str) -> int:  # tokens of a part, without the counter's fixed overhead
            return max(self.count_text(text) - base, 0) if text else 0

        system_text, user_text = messages[0].text, messages[-1].text
        parts = {
            "tools": sum(ct(t) for t in s.tools),
            "memories": sum(ct(f"- {m}") for m in s.memories),
            "summary": sum(ct(f"- {line}") for line in s.summary),
            "history": sum(ct(m.text) for m in messages[1:-1]),
            "question": ct(s.question),
        }
        parts["system"] = max(ct(system_text) - parts["tools"] - parts["memories"] - parts["summary"], 0)
        parts["documents"] = max(ct(user_text) - parts["question"], 0) if s.chunks else 0
        parts["template"] = total - sum(parts.values())
        order = ("system", "tools", "memories", "summary", "history", "documents", "question", "template")
        budget = BudgetReport(self.n_ctx, self.max_tokens, total, {k: parts[k] for k in order}, s.dropped)
        sources = [
            Source(
                n=n,
                chunk_id=str(c.doc.metadata.get("chunk_id", c.doc.id)),
                source=str(c.doc.metadata.get("source", "")),
                start=c.doc.metadata.get("start"),
                end=c.doc.metadata.get("end"),
                heading=str(c.doc.metadata.get("heading") or ""),
                page=c.doc.metadata.get("page"),
                score=c.doc.metadata.get("score"),
                text=c.text,
            )
            for n, c in enumerate(s.chunks, 1)
        ]
        return BuiltContext(messages, budget, sources, s.memories, s.summary, messages[1:-1], s.question, truncated)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to whole sentences within ``limit`` characters (at least the first sentence)."""
    if len(text) <= limit:
        return text
    spans = split_sentences(text)
    end = next((b for a, b in reversed(spans) if b <= limit), spans[0][1] if spans else limit)
    return text[:end] + " …"


def _turns(history: Sequence[BaseMessage], answer_chars: int) -> list[list[BaseMessage]]:
    """History as turns (a user message and the answer to it), as plain text messages; answers
    without citation markers and clipped to ``answer_chars`` (deterministic: byte-stable)."""
    turns: list[list[BaseMessage]] = []
    for m in history:
        if m.type == "human":
            turns.append([HumanMessage(m.text)])
        elif m.type == "ai" and m.text.strip() and turns:
            turns[-1].append(AIMessage(_clip(strip_markers(m.text).strip(), answer_chars)))
    # a turn without an answer (the model failed) would break alternation in strict templates
    return [t for t in turns if len(t) == 2]


def _turn_line(turn: list[BaseMessage]) -> str:
    return neutralise(summary_line(turn[0].text, turn[1].text if len(turn) > 1 else ""))
