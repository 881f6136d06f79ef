"""Turn traces: what went into each chat turn and how long each stage took, in SQLite.

    store = TraceStore(MemoryDB.open(settings.db_path))   # creates the table (idempotent)
    store.add(TurnTrace(id=..., session_id="s1", ...))     # one short write transaction
    t = store.get(trace_id)                                # TurnTrace or None
    print(t.prompt); t.budget["parts"]; t.timings["retrieve"]; t.retrieved[0]["score"]

Table ``chat_traces`` (``saem.store.chat.TraceRow``, on its own ``MetaData``, so it shares
``saem.db`` with the catalogue and the memory tables without creating theirs): id (hex),
session, user, created_at, question and the standalone (condensed) question, language,
abstained, the fully rendered prompt of the answer call, prompt tokens, and JSON columns: budget
(tokens per part, drops), timings (seconds per stage), retrieved (ids, sources, scores, ranks),
model calls (``ChatTrace.summary()`` of every LLM call: condense, answer, retry), tool calls,
answer, citations, notices, and the retrieval stage's warnings (what it degraded without
failing: a query cut to the model's limit, a reranker that raised and was skipped, so the fused
order was kept). Every field of :class:`TurnTrace` that is not a column lives in the JSON
``data``; a field missing there (a row written before the field existed) reads back as its
default, and keys this version does not know are ignored.

Agent turns (``Saem.ask(..., tools=...)``) are traced in the same table: ``agent`` names the
runner (``router``/``loop``; ``""`` for a document turn), ``steps`` lists each route choice, model
call and tool call in order with its seconds, ``tool_calls`` each call's name, arguments,
status, reason and result summary, ``stop_reason`` why the run ended (see :func:`agent_trace`).

Rows are written once, after the turn. Prompts hold user data: a trace lives as long as its
session (``saem.memory.history.delete_session`` deletes it with the session, in the same
transaction), and forgetting a memory redacts its text in the user's traces
(``saem.memory.erase``), the only update a row ever gets.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from saem.store.chat import MemoryDB, TraceBase, TraceRow

if TYPE_CHECKING:
    from saem.agents.types import AgentResult

__all__ = ["TurnTrace", "TraceStore", "TraceRow", "agent_trace"]


@dataclass
class TurnTrace:
    """One turn, as stored. ``timings`` in seconds per stage (``load``, ``condense``,
    ``retrieve``, ``context``, ``ttft`` (from the start of the turn), ``generate``, ``total``;
    for an agent turn ``load``, ``route``, ``tools``, ``generate``, ``persist``, ``total``)."""

    id: str
    session_id: str
    user_id: str
    question: str
    standalone_question: str = ""
    language: str = "en"
    abstained: bool = False
    prompt: str = ""
    prompt_tokens: int = 0
    budget: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    model_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    memories: list[str] = field(default_factory=list)
    retrieval_reason: str | None = None
    created_at: float = 0.0
    agent: str = ""
    """``router`` or ``loop`` for an agent turn; ``""`` for a document turn."""
    stop_reason: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Agent turns: ``{"kind": "route"|"model"|"tool", "name", "detail", "seconds"}`` in order."""
    choice: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    """What retrieval degraded without failing the turn (``RetrievalResult.warnings``): a query
    cut to the length limit, a reranker that raised (the fused order was kept). Chain turns only."""

    _COLUMNS = (
        "id",
        "session_id",
        "user_id",
        "question",
        "standalone_question",
        "language",
        "abstained",
        "prompt",
        "prompt_tokens",
        "created_at",
    )


class TraceStore:
    """Read and write turn traces in a ``MemoryDB``. Thread- and process-safe; ``__init__``
    creates the table if missing (idempotent)."""

    def __init__(self, db: MemoryDB) -> None:
        self.db = db
        with db.write() as s:
            TraceBase.metadata.create_all(s.connection())

    def add(self, trace: TurnTrace, *, session: Session | None = None) -> str:
        """Store ``trace``; returns its id. In its own short transaction, or, given ``session``
        (a ``MemoryDB.write()`` session), in that one, so a turn's writes commit together."""
        record = asdict(trace)
        created = trace.created_at or time.time()
        data = {k: v for k, v in record.items() if k not in TurnTrace._COLUMNS}
        row = TraceRow(
            id=trace.id,
            session_id=trace.session_id,
            user_id=trace.user_id,
            created_at=created,
            question=trace.question,
            standalone_question=trace.standalone_question,
            language=trace.language,
            abstained=trace.abstained,
            prompt=trace.prompt,
            prompt_tokens=trace.prompt_tokens,
            data=json.dumps(data, ensure_ascii=False, default=str),
        )
        if session is not None:
            session.add(row)
            return trace.id
        with self.db.write() as s:
            s.add(row)
        return trace.id

    def get(self, trace_id: str) -> TurnTrace | None:
        """The trace with id ``trace_id``, or None."""
        with self.db.read() as s:
            row = s.get(TraceRow, trace_id)
            return _trace(row) if row is not None else None

    def for_session(self, session_id: str, *, limit: int | None = None) -> list[TurnTrace]:
        """The session's traces, oldest first (the last ``limit`` when given)."""
        with self.db.read() as s:
            query = select(TraceRow).where(TraceRow.session_id == session_id).order_by(TraceRow.created_at.desc())
            if limit is not None:
                query = query.limit(limit)
            return [_trace(r) for r in s.scalars(query)][::-1]

    def delete_for_session(self, session_id: str) -> int:
        """Delete the session's traces (whoever's they are); returns how many. ``delete_session``
        already does this for a user's session; this is for traces whose session row is gone."""
        with self.db.write() as s:
            result = s.execute(delete(TraceRow).where(TraceRow.session_id == session_id))
            return int(getattr(result, "rowcount", 0) or 0)


def _trace(row: TraceRow) -> TurnTrace:
    data = json.loads(row.data or "{}")
    known = set(TurnTrace.__dataclass_fields__) - set(TurnTrace._COLUMNS)
    return TurnTrace(
        id=row.id,
        session_id=row.session_id,
        user_id=row.user_id,
        question=row.question,
        standalone_question=row.standalone_question,
        language=row.language,
        abstained=bool(row.abstained),
        prompt=row.prompt,
        prompt_tokens=row.prompt_tokens,
        created_at=row.created_at,
        **{k: v for k, v in data.items() if k in known},
    )


def agent_trace(
    result: AgentResult,
    *,
    trace_id: str,
    session_id: str,
    user_id: str,
    question: str,
    agent: str,
    language: str = "en",
    prompt: str = "",
    prompt_tokens: int = 0,
    timings: dict[str, float] | None = None,
) -> TurnTrace:
    """The ``TurnTrace`` of one agent turn: its steps, tool calls (name, arguments, status,
    reason, summary, seconds) and per-kind timings. ``timings`` (e.g. ``load``, ``persist``,
    ``total``) are merged over the ``route``/``tools``/``generate`` sums taken from the steps."""
    sums: dict[str, float] = {}
    for step in result.steps:
        stage = {"route": "route", "tool": "tools"}.get(step.kind, "generate")
        sums[stage] = sums.get(stage, 0.0) + step.seconds
    notices = [] if result.stop_reason == "answer" else [f"the agent stopped early: {result.stop_reason}"]
    return TurnTrace(
        id=trace_id,
        session_id=session_id,
        user_id=user_id,
        question=question,
        standalone_question=question,
        language=language,
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        timings={**sums, **(timings or {})},
        model_calls=[{"kind": s.kind, "name": s.name, "seconds": s.seconds} for s in result.steps if s.kind != "tool"],
        tool_calls=[
            {
                "name": c.name,
                "arguments": _jsonable(c.arguments),
                "status": c.status,
                "reason": c.reason,
                "call_id": c.call_id,
                "summary": c.summary,
                "seconds": c.seconds,
                "fatal": c.fatal,
            }
            for c in result.tool_calls
        ],
        answer=result.text,
        notices=notices,
        agent=agent,
        stop_reason=result.stop_reason,
        steps=[{"kind": s.kind, "name": s.name, "detail": s.detail, "seconds": s.seconds} for s in result.steps],
        choice=_jsonable(result.choice) if result.choice is not None else None,
    )


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (a model's tool arguments may hold anything)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))
