"""What one chat turn returns: the answer, its citations, the sources shown, the token budget.

    answer = app.ask("top-p는 무엇을 조절하나요?", session_id="s1", user_id="alice")
    answer.text, answer.language, answer.abstained
    for c in answer.citations:            # one per distinct [n] (and quote) in the answer
        print(c.n, c.status, c.source, c.start, c.end, c.heading)
    answer.budget.parts                   # {"system": 120, "documents": 900, ...} tokens per part
    answer.budget.dropped                 # [("chunk 7 (rank 5)", "lowest score; over budget"), ...]

Everything here is a plain dataclass: JSON-friendly through ``to_dict``, no model objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from saem.agents.types import AgentStep, StopReason, ToolCallRecord

__all__ = ["Answer", "BudgetReport", "Citation", "Source", "CitationStatus"]

CitationStatus = Literal["verified", "unverified", "unsupported", "invalid"]


@dataclass(frozen=True)
class Source:
    """One retrieved chunk as it was shown to the model, under the number ``n`` ([n])."""

    n: int
    chunk_id: str
    source: str
    start: int | None
    end: int | None
    heading: str
    page: int | None
    score: float | None
    text: str


@dataclass(frozen=True)
class Citation:
    """One ``[n]`` in the answer, resolved against the sources of the turn.

    ``status``:

    * ``verified`` — the quoted text before the marker occurs in the cited chunk
      (``quote_start``/``quote_end`` are then offsets in the source document when exact);
    * ``unverified`` — a valid marker without a quote: it points at a real chunk, but nothing
      more can be checked mechanically (``overlap`` is the share of the claim's words found in it);
    * ``unsupported`` — the quote is not in the cited chunk: flagged, never shown as support;
    * ``invalid`` — ``n`` is not the number of any source (e.g. ``[9]`` with three sources).

    ``supported`` is true for verified and unverified citations only.
    """

    n: int
    status: CitationStatus
    chunk_id: str | None = None
    source: str | None = None
    start: int | None = None
    end: int | None = None
    heading: str | None = None
    page: int | None = None
    quote: str | None = None
    quote_start: int | None = None
    quote_end: int | None = None
    claim: str = ""
    overlap: float | None = None
    reason: str = ""

    @property
    def supported(self) -> bool:
        return self.status in ("verified", "unverified")


@dataclass
class BudgetReport:
    """How the prompt was fitted into the context window.

    ``prompt_tokens`` is counted by the model's tokenizer on the rendered chat template; the
    invariant is ``prompt_tokens <= n_ctx - reserved_output``. ``parts`` maps each part
    (system, tools, memories, summary, history, documents, question, template) to its tokens;
    they sum to ``prompt_tokens`` ("template" holds the chat template's own tokens and
    tokenisation seams). ``dropped`` lists ``(item, reason)`` for every drop or truncation.
    """

    n_ctx: int
    reserved_output: int
    prompt_tokens: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def limit(self) -> int:
        """The most prompt tokens allowed: ``n_ctx - reserved_output``."""
        return self.n_ctx - self.reserved_output

    @property
    def fits(self) -> bool:
        return self.prompt_tokens <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_ctx": self.n_ctx,
            "reserved_output": self.reserved_output,
            "prompt_tokens": self.prompt_tokens,
            "parts": dict(self.parts),
            "dropped": [list(d) for d in self.dropped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetReport:
        return cls(
            n_ctx=int(data["n_ctx"]),
            reserved_output=int(data["reserved_output"]),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            parts={str(k): int(v) for k, v in data.get("parts", {}).items()},
            dropped=[(str(a), str(b)) for a, b in data.get("dropped", [])],
        )


@dataclass
class Answer:
    """The result of one turn.

    ``abstained``: retrieval found nothing relevant, so ``text`` says the documents do not
    contain the answer and the model was not asked. ``notices`` are things the user should
    know (the answer is not in the question's language after a retry, the question was
    truncated, a memory was stored). ``memories`` are the texts of the recalled memories that
    went into the prompt. ``trace_id`` reads the full trace back (``Saem.trace``).

    Every turn returns an ``Answer``, whichever strategy answered it. When an agent answered
    (``Saem.ask(..., tools=...)``), ``agent`` names it (``"router"`` or ``"loop"``; ``""`` for a
    document answer) and ``tool_calls``, ``steps``, ``stop_reason`` and ``choice`` say what it did,
    as in ``saem.agents.AgentResult``; ``sources``, ``citations`` and ``budget`` stay empty then.

    In an LCEL stream, tokens (``str``) come first and the ``Answer`` last; ``__radd__`` lets
    LCEL fold ``"tok" + ... + answer`` into the answer, so ``chain.invoke`` returns it.
    """

    text: str
    citations: list[Citation] = field(default_factory=list)
    language: str = "en"
    abstained: bool = False
    budget: BudgetReport | None = None
    trace_id: str = ""
    sources: list[Source] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    memories: list[str] = field(default_factory=list)
    session_id: str = ""
    question: str = ""
    standalone_question: str = ""
    agent: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    steps: list[AgentStep] = field(default_factory=list)
    stop_reason: StopReason = "answer"
    choice: dict[str, Any] | None = None

    @property
    def supported_citations(self) -> list[Citation]:
        return [c for c in self.citations if c.supported]

    @property
    def unsupported_citations(self) -> list[Citation]:
        return [c for c in self.citations if not c.supported]

    def __radd__(self, other: object) -> Answer:
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["budget"] = self.budget.to_dict() if self.budget is not None else None
        return data
